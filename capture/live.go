package capture

import (
	"context"
	"errors"
	"fmt"
	"io"
	"maps"
	"net"
	"sync"
	"time"

	"github.com/gopacket/gopacket/afpacket"
	"github.com/gopacket/gopacket/layers"
	"github.com/gopacket/gopacket/pcapgo"
	"github.com/kadiag/kadiag/internal/atomicfile"
	knetns "github.com/kadiag/kadiag/internal/netns"
	"github.com/vishvananda/netlink"
	"github.com/vishvananda/netns"
	"golang.org/x/sys/unix"
)

// LiveOptions say where to capture.
type LiveOptions struct {
	// Pid captures in this process's network namespace, only its ports.
	Pid int
	// Netns captures in the namespace at this path (e.g. /run/netns/NAME or
	// /proc/PID/ns/net). Ignored when Pid is set.
	Netns string
	// Iface captures on one interface; empty: every interface that is up.
	Iface string
	// Write, when set, saves the packets as pcapng, atomically.
	Write string
	// Snaplen is how many bytes of each packet are kept (128 when zero).
	Snaplen int
	// Ready, when set, is called once every capture socket is open (tests
	// start traffic only then).
	Ready func()
}

// ErrNoInterface is returned (wrapped) when nothing can be captured on.
var ErrNoInterface = errors.New("no interface to capture on")

// handle is one open AF_PACKET socket on one interface.
type handle struct {
	tp       *afpacket.TPacket
	name     string
	linkType layers.LinkType
	ngIndex  int
	netOff   uint32
	loopback bool
}

// portRefresh is how often --pid looks for new sockets of the process.
const portRefresh = 2 * time.Second

// Live captures TCP inside a network namespace until ctx is done, then
// reports every flow seen. Packets are analysed as they arrive, so memory
// grows with flows, not with packets.
func Live(ctx context.Context, lo LiveOptions, opts Options) (*Result, error) {
	if lo.Snaplen <= 0 {
		lo.Snaplen = 128
	}
	path, what := lo.Netns, "netns "+lo.Netns
	if lo.Pid > 0 {
		path, what = fmt.Sprintf("/proc/%d/ns/net", lo.Pid), fmt.Sprintf("pid %d", lo.Pid)
	}
	if path == "" {
		return nil, errors.New("live capture needs --pid or --netns")
	}
	ns, err := netns.GetFromPath(path)
	if err != nil {
		return nil, fmt.Errorf("open network namespace of %s: %w (is it running, and are you root?)", what, err)
	}
	defer ns.Close()
	if lo.Pid > 0 {
		if opts.Ports, err = processPorts(lo.Pid); err != nil {
			return nil, err
		}
	}

	handles, err := openHandles(ns, lo, opts.Ports)
	if err != nil {
		return nil, fmt.Errorf("capture in %s: %w", what, err)
	}
	closeAll := func() {
		for _, h := range handles {
			h.tp.Close()
		}
	}

	var out *atomicfile.File
	var ng *pcapgo.NgWriter
	if lo.Write != "" {
		if out, err = atomicfile.Create(lo.Write, 0o644); err != nil {
			closeAll()
			return nil, fmt.Errorf("create %s: %w", lo.Write, err)
		}
		defer out.Abort() // no-op after Commit
		if ng, err = newNgWriter(out, handles, lo.Snaplen); err != nil {
			closeAll()
			return nil, fmt.Errorf("write %s: %w", lo.Write, err)
		}
	}
	if lo.Ready != nil {
		lo.Ready()
	}

	a := NewAnalyzer(opts)
	var (
		mu      sync.Mutex
		wg      sync.WaitGroup
		readErr error
		wErr    error
	)
	for _, h := range handles {
		wg.Add(1)
		go func(h *handle) {
			defer wg.Done()
			for ctx.Err() == nil {
				data, ci, err := h.tp.ZeroCopyReadPacketData()
				if err != nil {
					if errors.Is(err, afpacket.ErrTimeout) || errors.Is(err, unix.EINTR) {
						continue
					}
					if ctx.Err() == nil {
						mu.Lock()
						readErr = fmt.Errorf("read from %s: %w", h.name, err)
						mu.Unlock()
					}
					return
				}
				mu.Lock()
				a.Feed(h.linkType, data, ci)
				if ng != nil && wErr == nil {
					ci.InterfaceIndex = h.ngIndex
					ci.AncillaryData = nil
					wErr = ng.WritePacket(ci, data)
				}
				mu.Unlock()
			}
		}(h)
	}
	if lo.Pid > 0 {
		// A process opens new connections while it is watched: follow its
		// ports, keeping the old ones so flows already seen stay whole.
		wg.Add(1)
		go func() {
			defer wg.Done()
			tick := time.NewTicker(portRefresh)
			defer tick.Stop()
			ports := opts.Ports
			for {
				select {
				case <-ctx.Done():
					return
				case <-tick.C:
				}
				now, err := processPorts(lo.Pid)
				if err != nil {
					continue // gone or between sockets: keep the last filter
				}
				grown := false
				for p := range now {
					if !ports[p] {
						grown = true
					}
				}
				if !grown {
					continue
				}
				next := maps.Clone(ports)
				maps.Copy(next, now)
				ports = next
				for _, h := range handles {
					if prog, err := tcpFilter(h.netOff, ports, uint32(lo.Snaplen), h.loopback); err == nil {
						h.tp.SetBPF(prog)
					}
				}
				mu.Lock()
				a.opts.Ports = ports
				mu.Unlock()
			}
		}()
	}
	<-ctx.Done()
	wg.Wait()
	end := time.Now()
	closeAll()

	res := a.Result(end)
	res.Source = what
	if readErr != nil {
		res.ReadError = readErr.Error()
		return res, readErr
	}
	if ng != nil {
		if wErr == nil {
			wErr = ng.Flush()
		}
		if wErr == nil {
			wErr = out.Commit()
		}
		if wErr != nil {
			return res, fmt.Errorf("write %s: %w (nothing was saved under that name)", lo.Write, wErr)
		}
	}
	return res, nil
}

// openHandles opens one AF_PACKET socket per interface inside ns. Sockets
// keep the namespace they were created in, so the thread switches in, opens
// them and switches back.
func openHandles(ns netns.NsHandle, lo LiveOptions, ports map[uint16]bool) (hs []*handle, err error) {
	err = knetns.Do(ns, func() error {
		var err error
		hs, err = openHandlesHere(lo, ports)
		return err
	})
	if err != nil {
		for _, h := range hs {
			h.tp.Close()
		}
		return nil, err
	}
	return hs, nil
}

// openHandlesHere opens the handles in the calling thread's namespace.
func openHandlesHere(lo LiveOptions, ports map[uint16]bool) (hs []*handle, err error) {
	links, err := netlink.LinkList()
	if err != nil {
		return nil, fmt.Errorf("list interfaces: %w", err)
	}
	for _, l := range links {
		attrs := l.Attrs()
		if lo.Iface != "" && attrs.Name != lo.Iface {
			continue
		}
		if lo.Iface == "" && attrs.Flags&net.FlagUp == 0 {
			continue
		}
		var lt layers.LinkType
		var netOff uint32
		switch attrs.EncapType {
		case "ether", "loopback":
			lt, netOff = layers.LinkTypeEthernet, 14
		case "none":
			lt, netOff = layers.LinkTypeRaw, 0
		default:
			if lo.Iface != "" {
				return nil, fmt.Errorf("interface %s has link type %q; kadiag captures Ethernet, loopback and raw IP devices", attrs.Name, attrs.EncapType)
			}
			continue
		}
		h, err := openHandle(attrs.Name, lt, netOff, attrs.EncapType == "loopback", ports, lo.Snaplen)
		if err != nil {
			for _, h := range hs {
				h.tp.Close()
			}
			return nil, err
		}
		hs = append(hs, h)
	}
	if len(hs) == 0 {
		if lo.Iface != "" {
			return nil, fmt.Errorf("%w: no interface named %q in that namespace", ErrNoInterface, lo.Iface)
		}
		return nil, fmt.Errorf("%w: no interface is up in that namespace", ErrNoInterface)
	}
	return hs, nil
}

func openHandle(name string, lt layers.LinkType, netOff uint32, loopback bool, ports map[uint16]bool, snaplen int) (*handle, error) {
	tp, err := afpacket.NewTPacket(
		afpacket.OptInterface(name),
		afpacket.OptTPacketVersion(afpacket.TPacketVersion3),
		afpacket.OptFrameSize(4096),
		afpacket.OptBlockSize(1<<20),
		afpacket.OptNumBlocks(8),
		afpacket.OptPollTimeout(100*time.Millisecond),
		afpacket.OptBlockTimeout(10*time.Millisecond),
		// The kernel strips 802.1Q tags into metadata; put them back so the
		// saved file shows what was on the wire.
		afpacket.OptAddVLANHeader(true),
	)
	if err != nil {
		return nil, fmt.Errorf("AF_PACKET socket on %s: %w (capturing needs root or CAP_NET_RAW)", name, err)
	}
	prog, err := tcpFilter(netOff, ports, uint32(snaplen), loopback)
	if err == nil {
		err = tp.SetBPF(prog)
	}
	if err != nil {
		tp.Close()
		return nil, fmt.Errorf("kernel filter on %s: %w", name, err)
	}
	return &handle{tp: tp, name: name, linkType: lt, netOff: netOff, loopback: loopback}, nil
}

func newNgWriter(w io.Writer, hs []*handle, snaplen int) (*pcapgo.NgWriter, error) {
	iface := func(h *handle) pcapgo.NgInterface {
		return pcapgo.NgInterface{Name: h.name, LinkType: h.linkType, SnapLength: uint32(snaplen),
			TimestampResolution: 9, OS: "Linux"}
	}
	ng, err := pcapgo.NewNgWriterInterface(w, iface(hs[0]), pcapgo.NgWriterOptions{
		SectionInfo: pcapgo.NgSectionInfo{Application: "kadiag capture"}})
	if err != nil {
		return nil, err
	}
	for i, h := range hs {
		if i == 0 {
			continue
		}
		if h.ngIndex, err = ng.AddInterface(iface(h)); err != nil {
			return nil, err
		}
	}
	return ng, nil
}
