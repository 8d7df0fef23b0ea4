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
	"golang.org/x/sync/errgroup"
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

// exitLinger is how long a capture of --pid goes on after the process
// exited, for the packets its exit set off (FIN, RST, the peers' answers).
const exitLinger = 500 * time.Millisecond

// ErrTargetExited ends a live capture of --pid when the process exits: the
// report covers the capture until then and says so in a note.
var ErrTargetExited = errors.New("the captured process exited")

// Live captures TCP inside a network namespace until ctx is done, a reader
// fails or, with Pid, the process exits; then it reports every flow seen,
// with a note saying why the capture stopped when it stopped on its own.
// Packets are analysed as they arrive, so memory grows with flows, not
// with packets. A reader's failure is returned (with the report) and named
// in Result.ReadError; the process's exit is not an error.
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
	pidfd := -1
	if lo.Pid > 0 {
		// Opened before the namespace, so a pid reused meanwhile is caught
		// by the namespace lookup failing, not watched by mistake.
		fd, err := unix.PidfdOpen(lo.Pid, 0)
		if err != nil {
			return nil, fmt.Errorf("open network namespace of %s: %w (is it running, and are you root?)", what, err)
		}
		pidfd = fd
		defer unix.Close(pidfd)
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
		mu   sync.Mutex // a and the writer
		wErr error
	)
	// The first of the readers, the exit watch or ctx to end stops all.
	g, gctx := errgroup.WithContext(ctx)
	for _, h := range handles {
		g.Go(func() error {
			for gctx.Err() == nil {
				data, ci, err := h.tp.ZeroCopyReadPacketData()
				if err != nil {
					if errors.Is(err, afpacket.ErrTimeout) || errors.Is(err, unix.EINTR) {
						continue
					}
					if gctx.Err() != nil {
						return nil
					}
					return &ReaderError{Iface: h.name, Err: readCause(ns, h.name, err)}
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
			return nil
		})
	}
	var exited time.Time
	if pidfd >= 0 {
		g.Go(func() error {
			if !waitExit(gctx, pidfd) {
				return nil
			}
			exited = time.Now()
			// The exit closes the process's sockets: their FINs and the
			// peers' answers are still on the way.
			select {
			case <-gctx.Done():
			case <-time.After(exitLinger):
			}
			return ErrTargetExited
		})
		// A process opens new connections while it is watched: follow its
		// ports, keeping the old ones so flows already seen stay whole.
		g.Go(func() error {
			followPorts(gctx, lo, handles, opts.Ports, func(ports map[uint16]bool) {
				mu.Lock()
				a.opts.Ports = ports
				mu.Unlock()
			})
			return nil
		})
	}
	stopErr := g.Wait()
	end := time.Now()
	closeAll()

	res := a.Result(end)
	res.Source = what
	var readErr *ReaderError
	switch {
	case errors.Is(stopErr, ErrTargetExited):
		res.Notes = append(res.Notes, fmt.Sprintf("the capture stopped on its own: pid %d exited at %s", lo.Pid, exited.UTC().Format(time.RFC3339Nano)))
	case errors.As(stopErr, &readErr):
		res.ReadError = readErr.Error()
		res.Notes = append(res.Notes, "the capture stopped on its own: "+readErr.Error()+"; the report covers the packets until then")
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

// ReaderError is a capture socket that failed: the live capture stopped.
type ReaderError struct {
	Iface string
	Err   error
}

func (e *ReaderError) Error() string { return fmt.Sprintf("read from %s: %v", e.Iface, e.Err) }
func (e *ReaderError) Unwrap() error { return e.Err }

// ErrInterfaceGone is the cause of a ReaderError whose interface was removed
// or went down during the capture.
var ErrInterfaceGone = errors.New("the interface was removed or went down")

// readCause names why a capture socket failed: the kernel flags the socket
// with ENETDOWN (afpacket reports a bare poll error) when its interface is
// removed or goes down.
func readCause(ns netns.NsHandle, iface string, err error) error {
	if !errors.Is(err, afpacket.ErrPoll) {
		return err
	}
	var up bool
	lerr := knetns.Do(ns, func() error {
		l, err := netlink.LinkByName(iface)
		if err == nil {
			up = l.Attrs().Flags&net.FlagUp != 0
		}
		return err
	})
	if lerr != nil || !up {
		return ErrInterfaceGone
	}
	return err
}

// waitExit reports whether the process behind pidfd exited before ctx ended;
// a pidfd becomes readable when its process exits.
func waitExit(ctx context.Context, pidfd int) bool {
	for ctx.Err() == nil {
		fds := []unix.PollFd{{Fd: int32(pidfd), Events: unix.POLLIN}}
		n, err := unix.Poll(fds, 100)
		if err != nil && !errors.Is(err, unix.EINTR) {
			return false // cannot watch: the capture runs until ctx ends
		}
		if n > 0 && fds[0].Revents != 0 {
			return true
		}
	}
	return false
}

// followPorts widens the capture to the process's new ports every
// portRefresh until ctx ends; set hands the grown set to the analyzer.
func followPorts(ctx context.Context, lo LiveOptions, handles []*handle, ports map[uint16]bool, set func(map[uint16]bool)) {
	tick := time.NewTicker(portRefresh)
	defer tick.Stop()
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
		set(ports)
	}
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
