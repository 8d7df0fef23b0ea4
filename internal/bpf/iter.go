package bpf

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"io"

	"github.com/cilium/ebpf"
	"github.com/cilium/ebpf/asm"
	knetns "github.com/kadiag/kadiag/internal/netns"
	vns "github.com/vishvananda/netns"
	"golang.org/x/sys/unix"
)

// iterCaps: a tracing program (the TCP iterator) needs CAP_BPF and
// CAP_PERFMON, not CAP_NET_ADMIN.
var iterCaps = []int{unix.CAP_BPF, unix.CAP_PERFMON}

// Values are a socket's keepalive options as the kernel reports them.
type Values struct {
	Keepalive     bool
	IdleS         int
	IntervalS     int
	Count         int
	UserTimeoutMs int
}

// IterResult is what the iterator found and did on one socket.
type IterResult struct {
	Cookie        uint64
	Before, After Values
	// Errs holds the setsockopt error of each option the iterator had to
	// set and could not, by option name ("TCP_KEEPIDLE").
	Errs map[string]error
}

// iterOptions is the order of the record's fields: the settings' options
// and TCP_USER_TIMEOUT read-only when the settings leave it alone.
func (s Settings) iterOptions() []option {
	o := s.options()
	if s.UserTimeout == 0 {
		o = append(o, option{level: solTCP, name: tcpUserTimeout, readOnly: true})
	}
	return o
}

var optionNames = [5]string{"SO_KEEPALIVE", "TCP_KEEPIDLE", "TCP_KEEPINTVL", "TCP_KEEPCNT", "TCP_USER_TIMEOUT"}

// iterInstructions visits every TCP socket of the namespace; for a full
// socket whose cookie is in the map it enforces the settings and writes a
// record (cookie, then before, after and setsockopt result per option).
func iterInstructions(s Settings, cookies *ebpf.Map, metaOff, seqOff, skOff int16, dry bool) asm.Instructions {
	opts := s.iterOptions()
	rec := &record{off: -16 - int16((recordSize(len(opts))+7)&^7)}
	var b builder
	b.emit(
		asm.Mov.Reg(asm.R6, asm.R1),
		asm.LoadMem(asm.R7, asm.R6, skOff, asm.DWord),
		asm.JEq.Imm(asm.R7, 0, "out"),
		// Time-wait and request sockets have no options to set.
		asm.Mov.Reg(asm.R1, asm.R7),
		asm.FnSkcToTcpSock.Call(),
		asm.JEq.Imm(asm.R0, 0, "out"),
		asm.Mov.Reg(asm.R8, asm.R0),
		asm.Mov.Reg(asm.R1, asm.R7),
		asm.FnGetSocketCookie.Call(),
		asm.StoreMem(asm.RFP, -16, asm.R0, asm.DWord),
		asm.StoreMem(asm.RFP, rec.off, asm.R0, asm.DWord),
		asm.LoadMapPtr(asm.R1, cookies.FD()),
		asm.Mov.Reg(asm.R2, asm.RFP),
		asm.Add.Imm(asm.R2, -16),
		asm.FnMapLookupElem.Call(),
		asm.JEq.Imm(asm.R0, 0, "out"),
	)
	b.enforce(asm.R8, opts, dry, rec)
	b.seqWrite(metaOff, seqOff, rec.off, int32(recordSize(len(opts))))
	b.exit()
	return b.insns
}

// SetByCookie enforces s on the TCP sockets of network namespace ns whose
// cookies (inet_diag's idiag_cookie, ss -e's sk:) are listed, through an
// iter/tcp program, and returns what it found and did on each socket it
// met. With dry it only reads. The iterator walks the namespace of the
// thread that opens it: it is opened inside ns (unless same, the caller's
// own namespace).
func SetByCookie(ns vns.NsHandle, same bool, cookies []uint64, s Settings, dry bool) ([]IterResult, error) {
	if err := s.Validate(); err != nil {
		return nil, err
	}
	spec, err := kernelSpec()
	if err != nil {
		return nil, err
	}
	if err := need("run a BPF TCP iterator", iterCaps...); err != nil {
		return nil, err
	}
	var fs fields
	metaOff := fs.get("bpf_iter__tcp", "meta").off
	seqOff := fs.get("bpf_iter_meta", "seq").off
	skOff := fs.get("bpf_iter__tcp", "sk_common").off
	if fs.err != nil {
		return nil, fs.err
	}
	m, err := ebpf.NewMap(&ebpf.MapSpec{Name: "kadiag_cookies", Type: ebpf.Hash, KeySize: 8, ValueSize: 4, MaxEntries: uint32(max(len(cookies), 1))})
	if err != nil {
		return nil, loadErr("create the cookie map", iterCaps, err)
	}
	defer m.Close()
	for _, c := range cookies {
		if err := m.Put(c, uint32(1)); err != nil {
			return nil, fmt.Errorf("cookie map: %w", err)
		}
	}
	iterate := func(dry bool) ([]IterResult, error) {
		prog, it, err := loadIter("kadiag_iter_tcp", "tcp", iterInstructions(s, m, metaOff, seqOff, skOff, dry), "iter/tcp program", spec)
		if err != nil {
			return nil, err
		}
		defer prog.Close()
		defer it.Close()
		var out []byte
		run := func() error {
			r, err := it.Open()
			if err != nil {
				return err
			}
			defer r.Close()
			out, err = io.ReadAll(r)
			return err
		}
		if same {
			err = run()
		} else {
			err = knetns.Do(ns, run)
		}
		if err != nil {
			if errors.Is(err, unix.EPERM) {
				if cerr := need("enter the process's network namespace", unix.CAP_SYS_ADMIN); cerr != nil {
					return nil, cerr
				}
			}
			return nil, fmt.Errorf("run the TCP iterator: %w", err)
		}
		return decodeRecords(out, s.iterOptions())
	}
	// When a record does not fit in what is left of the seq_file buffer,
	// the kernel drops it and runs the program again on the same socket:
	// the second run sees the options the first one set. So a read-only
	// pass takes the values before, and the writing pass the values after
	// and the errors.
	before, err := iterate(true)
	if err != nil || dry {
		return merge(before, nil), err
	}
	after, err := iterate(false)
	if err != nil {
		return nil, err
	}
	return merge(before, after), nil
}

// merge joins the records of the read-only and the writing pass by cookie,
// in the order the sockets were first met. A socket met twice in one pass
// keeps its first values from the read-only pass and its last from the
// writing pass.
func merge(before, after []IterResult) []IterResult {
	var out []IterResult
	idx := map[uint64]int{}
	for _, r := range before {
		if _, ok := idx[r.Cookie]; ok {
			continue
		}
		idx[r.Cookie] = len(out)
		r.After, r.Errs = r.Before, nil
		out = append(out, r)
	}
	for _, r := range after {
		i, ok := idx[r.Cookie]
		if !ok {
			idx[r.Cookie] = len(out)
			out = append(out, r) // opened between the passes
			continue
		}
		o := &out[i]
		o.After = r.After
		for k, v := range r.Errs {
			if o.Errs == nil {
				o.Errs = map[string]error{}
			}
			o.Errs[k] = v
		}
	}
	return out
}

func decodeRecords(b []byte, opts []option) ([]IterResult, error) {
	size := recordSize(len(opts))
	if len(b)%size != 0 {
		return nil, fmt.Errorf("TCP iterator: %d bytes of output, not a multiple of %d", len(b), size)
	}
	var out []IterResult
	le := binary.LittleEndian
	for ; len(b) > 0; b = b[size:] {
		r := IterResult{Cookie: le.Uint64(b)}
		for i, o := range opts {
			f := bytes.NewReader(b[8+i*12 : 8+i*12+12])
			var v [3]int32
			binary.Read(f, le, &v)
			idx := optionIndex(o)
			setField(&r.Before, idx, int(v[0]))
			setField(&r.After, idx, int(v[1]))
			if v[2] != notSet && v[2] != 0 {
				if r.Errs == nil {
					r.Errs = map[string]error{}
				}
				r.Errs[optionNames[idx]] = unix.Errno(-v[2])
			}
		}
		out = append(out, r)
	}
	return out, nil
}

func optionIndex(o option) int {
	switch {
	case o.level == solSocket:
		return 0
	case o.name == tcpKeepidle:
		return 1
	case o.name == tcpKeepintvl:
		return 2
	case o.name == tcpKeepcnt:
		return 3
	}
	return 4
}

func setField(v *Values, idx, x int) {
	switch idx {
	case 0:
		v.Keepalive = x != 0
	case 1:
		v.IdleS = x
	case 2:
		v.IntervalS = x
	case 3:
		v.Count = x
	case 4:
		v.UserTimeoutMs = x
	}
}
