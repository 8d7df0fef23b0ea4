package bpf

import (
	"bufio"
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/cilium/ebpf"
	"github.com/cilium/ebpf/link"
	"golang.org/x/sys/unix"
)

// cgroupCaps: loading sock_ops and cgroup/setsockopt programs and attaching
// them to a cgroup (CAP_BPF alone gets EPERM).
var cgroupCaps = []int{unix.CAP_BPF, unix.CAP_NET_ADMIN}

// defaultBPFFS is where a bpffs is mounted when none is.
const defaultBPFFS = "/sys/fs/bpf"

// pinDir is kadiag's directory inside bpffs: one subdirectory per cgroup,
// named by the cgroup's id so that a re-run finds and replaces it.
const pinDir = "kadiag"

// Names of a policy's pins.
const (
	pinSockOps    = "sockops"
	pinSetsockopt = "setsockopt"
	pinInfo       = "info"
)

// Policy is kadiag's pair of programs attached to one cgroup v2 directory.
type Policy struct {
	Cgroup   string    // the cgroup directory
	CgroupID uint64    // its inode number, the kernel's cgroup id
	Settings Settings  // what the programs enforce
	Since    time.Time // when it was attached (or last replaced)
	// Pinned is the bpffs directory holding the attachment, or "" when the
	// policy lives only as long as the kadiag process holding it.
	Pinned string
	// Replaced tells that an earlier kadiag policy on the cgroup was replaced.
	Replaced bool
	// Holder is the pid of the kadiag holding an unpinned policy (--hold).
	Holder int

	links []link.Link
}

// Close releases the process's handles. A pinned policy stays attached; a
// held one (Pinned "") is detached.
func (p *Policy) Close() error {
	var errs []error
	for _, l := range p.links {
		errs = append(errs, l.Close())
	}
	p.links = nil
	return errors.Join(errs...)
}

// CgroupID returns the id of a cgroup directory (its inode number).
func CgroupID(dir string) (uint64, error) {
	var st unix.Stat_t
	if err := unix.Stat(dir, &st); err != nil {
		return 0, err
	}
	return st.Ino, nil
}

// Attach loads the programs for s and attaches them to the cgroup v2
// directory dir. With pin, the attachment is pinned in bpffs (mounted at
// /sys/fs/bpf if no bpffs is mounted) and outlives the caller; otherwise it
// ends with Close or the caller's exit. An earlier kadiag policy on the
// same cgroup is replaced, never stacked: pinned links are updated in place
// with the new programs.
func Attach(dir string, s Settings, pin bool) (*Policy, error) {
	if err := s.Validate(); err != nil {
		return nil, err
	}
	if err := need("attach BPF programs to a cgroup", cgroupCaps...); err != nil {
		return nil, err
	}
	id, err := CgroupID(dir)
	if err != nil {
		return nil, fmt.Errorf("cgroup %s: %w", dir, err)
	}
	p := &Policy{Cgroup: dir, CgroupID: id, Settings: s, Since: time.Now(), Holder: os.Getpid()}
	if pin {
		p.Holder = 0
	}
	info, err := newInfo(p)
	if err != nil {
		return nil, err
	}
	defer info.Close()
	ops, err := newSockOps(s, info)
	if err != nil {
		return nil, err
	}
	defer ops.Close()
	sso, err := newSetsockopt(s)
	if err != nil {
		return nil, err
	}
	defer sso.Close()

	var pdir string
	if fs, err := bpffs(pin); err == nil {
		pdir = filepath.Join(fs, pinDir, "cgroup-"+strconv.FormatUint(id, 10))
	} else if pin {
		return nil, err
	}
	if pdir != "" {
		if _, err := os.Stat(pdir); err == nil {
			if pin {
				if err := replacePinned(pdir, p, ops, sso); err == nil {
					return p, nil
				}
			}
			// Held now, or the pinned links went stale: start over.
			if err := os.RemoveAll(pdir); err != nil {
				return nil, fmt.Errorf("remove the earlier policy %s: %w", pdir, err)
			}
			p.Replaced = true
		}
	}
	for _, a := range []struct {
		prog *ebpf.Program
		typ  ebpf.AttachType
	}{{ops, ebpf.AttachCGroupSockOps}, {sso, ebpf.AttachCGroupSetsockopt}} {
		l, err := link.AttachCgroup(link.CgroupOptions{Path: dir, Attach: a.typ, Program: a.prog})
		if err != nil {
			p.Close()
			return nil, loadErr("attach to cgroup "+dir, cgroupCaps, err)
		}
		p.links = append(p.links, l)
	}
	if !pin {
		return p, nil
	}
	if err := p.pin(pdir, info); err != nil {
		os.RemoveAll(pdir)
		p.Close()
		return nil, err
	}
	return p, nil
}

// replacePinned swaps the programs of a pinned policy in place: the cgroup
// is never without one.
func replacePinned(pdir string, p *Policy, ops, sso *ebpf.Program) error {
	for _, x := range []struct {
		name string
		prog *ebpf.Program
	}{{pinSockOps, ops}, {pinSetsockopt, sso}} {
		l, err := link.LoadPinnedLink(filepath.Join(pdir, x.name), nil)
		if err != nil {
			p.Close()
			return err
		}
		p.links = append(p.links, l)
		if err := l.Update(x.prog); err != nil {
			p.Close()
			return err
		}
	}
	p.Pinned, p.Replaced = pdir, true
	return writeInfo(pdir, p)
}

func (p *Policy) pin(pdir string, info *ebpf.Map) error {
	if err := os.MkdirAll(pdir, 0o700); err != nil {
		return fmt.Errorf("bpffs directory %s: %w", pdir, err)
	}
	for i, name := range []string{pinSockOps, pinSetsockopt} {
		if err := p.links[i].Pin(filepath.Join(pdir, name)); err != nil {
			return fmt.Errorf("pin %s: %w", name, err)
		}
	}
	p.Pinned = pdir
	if err := info.Pin(filepath.Join(pdir, pinInfo)); err != nil {
		return fmt.Errorf("policy record %s: %w", pdir, err)
	}
	return nil
}

// newInfo creates the policy's record: a one-entry array map that --list
// reads, through its pin or through the program it is tied to.
func newInfo(p *Policy) (*ebpf.Map, error) {
	m, err := ebpf.NewMap(&ebpf.MapSpec{Name: "kadiag_info", Type: ebpf.Array, KeySize: 4, ValueSize: infoSize, MaxEntries: 1})
	if err != nil {
		return nil, loadErr("create the policy record", cgroupCaps, err)
	}
	if err := m.Put(uint32(0), encodeInfo(p)); err != nil {
		m.Close()
		return nil, fmt.Errorf("policy record: %w", err)
	}
	return m, nil
}

// info is the pinned record --list reads: settings, cgroup and time.
const (
	infoSize    = 512
	infoMagic   = 0x6b616431 // "kad1"
	infoPathMax = infoSize - 40
)

func encodeInfo(p *Policy) []byte {
	b := make([]byte, infoSize)
	le := binary.LittleEndian
	le.PutUint32(b[0:], infoMagic)
	le.PutUint32(b[4:], uint32(p.Settings.Idle/time.Second))
	le.PutUint32(b[8:], uint32(p.Settings.Interval/time.Second))
	le.PutUint32(b[12:], uint32(p.Settings.Count))
	le.PutUint32(b[16:], uint32(p.Settings.UserTimeout/time.Millisecond))
	le.PutUint32(b[20:], uint32(p.Holder))
	le.PutUint64(b[24:], uint64(p.Since.Unix()))
	le.PutUint64(b[32:], p.CgroupID)
	copy(b[40:infoSize-1], p.Cgroup)
	return b
}

func decodeInfo(b []byte) (Policy, bool) {
	le := binary.LittleEndian
	if len(b) != infoSize || le.Uint32(b) != infoMagic {
		return Policy{}, false
	}
	path := b[40:]
	if i := bytes.IndexByte(path, 0); i >= 0 {
		path = path[:i]
	}
	return Policy{
		Settings: Settings{
			Idle:        time.Duration(le.Uint32(b[4:])) * time.Second,
			Interval:    time.Duration(le.Uint32(b[8:])) * time.Second,
			Count:       int(le.Uint32(b[12:])),
			UserTimeout: time.Duration(le.Uint32(b[16:])) * time.Millisecond,
		},
		Holder:   int(le.Uint32(b[20:])),
		Since:    time.Unix(int64(le.Uint64(b[24:])), 0),
		CgroupID: le.Uint64(b[32:]),
		Cgroup:   string(path),
	}, true
}

// writeInfo rewrites a pinned policy's record after its programs were
// replaced (the new sock_ops program holds a record of its own, with the
// same content).
func writeInfo(pdir string, p *Policy) error {
	path := filepath.Join(pdir, pinInfo)
	m, err := ebpf.LoadPinnedMap(path, nil)
	if err != nil {
		return fmt.Errorf("policy record %s: %w", path, err)
	}
	defer m.Close()
	if err := m.Put(uint32(0), encodeInfo(p)); err != nil {
		return fmt.Errorf("policy record %s: %w", path, err)
	}
	return nil
}

func readInfo(pdir string) (Policy, error) {
	m, err := ebpf.LoadPinnedMap(filepath.Join(pdir, pinInfo), nil)
	if err != nil {
		return Policy{}, err
	}
	defer m.Close()
	b := make([]byte, infoSize)
	if err := m.Lookup(uint32(0), &b); err != nil {
		return Policy{}, err
	}
	p, ok := decodeInfo(b)
	if !ok {
		return Policy{}, fmt.Errorf("%s: not a kadiag policy record", pdir)
	}
	p.Pinned = pdir
	return p, nil
}

// Detach removes the pinned kadiag policy of the cgroup directory dir and
// returns what it was.
func Detach(dir string) (Policy, error) {
	if err := need("detach BPF programs from a cgroup", cgroupCaps...); err != nil {
		return Policy{}, err
	}
	fs, err := bpffs(false)
	if err != nil {
		return Policy{}, fmt.Errorf("cgroup %s: %w (kadiag fix --list shows where kadiag policies are)", dir, ErrNotAttached)
	}
	var pdir string
	if id, err := CgroupID(dir); err == nil {
		pdir = filepath.Join(fs, pinDir, "cgroup-"+strconv.FormatUint(id, 10))
	} else {
		// The cgroup was removed (its links are defunct, their pins stay):
		// find its record by the path it was attached with.
		ps, _ := List()
		root, _ := CgroupMount()
		for _, p := range ps {
			if p.Cgroup == filepath.Clean(dir) || (root != "" && p.Cgroup == filepath.Join(root, dir)) {
				pdir = p.Pinned
			}
		}
		if pdir == "" {
			return Policy{}, fmt.Errorf("cgroup %s: %w (kadiag fix --list shows where kadiag policies are)", dir, ErrNotAttached)
		}
	}
	p, err := readInfo(pdir)
	if err != nil {
		if errors.Is(err, os.ErrNotExist) {
			return Policy{}, fmt.Errorf("cgroup %s: %w (kadiag fix --list shows where kadiag policies are)", dir, ErrNotAttached)
		}
		return Policy{}, err
	}
	// Unpinning the last reference detaches the links.
	if err := os.RemoveAll(pdir); err != nil {
		return Policy{}, fmt.Errorf("remove %s: %w", pdir, err)
	}
	return p, nil
}

// Held returns the kadiag policies held by running kadiag processes
// (--hold), found through the kernel's list of BPF links: a cgroup link
// whose sock_ops program is kadiag's, and the record tied to it. Walking
// the kernel's links needs CAP_SYS_ADMIN; without it Held returns a
// *CapabilityError.
func Held() ([]Policy, error) {
	if err := need("list the policies held by running kadiag processes", unix.CAP_SYS_ADMIN); err != nil {
		return nil, err
	}
	out := []Policy{}
	it := new(link.Iterator)
	defer it.Close()
	for it.Next() {
		li, err := it.Link.Info()
		if err != nil || li.Type != link.CgroupType {
			continue
		}
		cg := li.Cgroup()
		if cg == nil || ebpf.AttachType(cg.AttachType) != ebpf.AttachCGroupSockOps {
			continue
		}
		p, ok := heldRecord(li.Program)
		if ok && p.Holder != 0 && p.CgroupID == cg.CgroupId {
			out = append(out, p)
		}
	}
	if err := it.Err(); err != nil {
		return nil, err
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Cgroup < out[j].Cgroup })
	return out, nil
}

func heldRecord(id ebpf.ProgramID) (Policy, bool) {
	prog, err := ebpf.NewProgramFromID(id)
	if err != nil {
		return Policy{}, false
	}
	defer prog.Close()
	pi, err := prog.Info()
	if err != nil || pi.Name != "kadiag_sockops" {
		return Policy{}, false
	}
	ids, ok := pi.MapIDs()
	if !ok {
		return Policy{}, false
	}
	for _, mid := range ids {
		m, err := ebpf.NewMapFromID(mid)
		if err != nil {
			continue
		}
		b := make([]byte, infoSize)
		err = m.Lookup(uint32(0), &b)
		m.Close()
		if err != nil {
			continue
		}
		if p, ok := decodeInfo(b); ok {
			return p, true
		}
	}
	return Policy{}, false
}

// List returns the pinned kadiag policies, by cgroup path.
func List() ([]Policy, error) {
	fs, err := bpffs(false)
	if err != nil {
		return []Policy{}, nil
	}
	ents, err := os.ReadDir(filepath.Join(fs, pinDir))
	if errors.Is(err, os.ErrNotExist) {
		return []Policy{}, nil
	}
	if err != nil {
		if errors.Is(err, os.ErrPermission) {
			return nil, fmt.Errorf("read the pinned policies in %s: %w (bpffs is readable by root only: run as root)", fs, err)
		}
		return nil, err
	}
	out := []Policy{}
	for _, e := range ents {
		if !e.IsDir() || !strings.HasPrefix(e.Name(), "cgroup-") {
			continue
		}
		p, err := readInfo(filepath.Join(fs, pinDir, e.Name()))
		if err != nil {
			continue
		}
		out = append(out, p)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Cgroup < out[j].Cgroup })
	return out, nil
}

// bpffs returns a mounted bpffs, from /proc/self/mountinfo. With mount, it
// mounts one at /sys/fs/bpf when there is none.
func bpffs(mount bool) (string, error) {
	if p, ok := findMount("bpf"); ok {
		return p, nil
	}
	if !mount {
		return "", errors.New("no bpffs mounted")
	}
	if err := need("mount a bpffs at "+defaultBPFFS, unix.CAP_SYS_ADMIN); err != nil {
		return "", err
	}
	if err := os.MkdirAll(defaultBPFFS, 0o700); err != nil {
		return "", fmt.Errorf("mount bpffs: %w", err)
	}
	if err := unix.Mount("bpf", defaultBPFFS, "bpf", 0, "mode=0700"); err != nil {
		return "", fmt.Errorf("mount bpffs at %s: %w (mount one: mount -t bpf bpf %s)", defaultBPFFS, err, defaultBPFFS)
	}
	return defaultBPFFS, nil
}

// findMount returns the mount point of the first filesystem of type fstype
// in /proc/self/mountinfo.
func findMount(fstype string) (string, bool) {
	f, err := os.Open("/proc/self/mountinfo")
	if err != nil {
		return "", false
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		// id parent major:minor root mountpoint options [optional...] - fstype source super
		fields := strings.Fields(sc.Text())
		for i, fl := range fields {
			if fl == "-" && i+1 < len(fields) && i >= 5 {
				if fields[i+1] == fstype {
					return unescapeMount(fields[4]), true
				}
				break
			}
		}
	}
	return "", false
}

// unescapeMount undoes mountinfo's octal escapes (\040 for a space).
func unescapeMount(s string) string {
	if !strings.Contains(s, `\`) {
		return s
	}
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		if s[i] == '\\' && i+3 < len(s) {
			if v, err := strconv.ParseUint(s[i+1:i+4], 8, 8); err == nil {
				b.WriteByte(byte(v))
				i += 3
				continue
			}
		}
		b.WriteByte(s[i])
	}
	return b.String()
}

// CgroupMount returns the cgroup v2 mount point (hybrid hosts mount it at
// /sys/fs/cgroup/unified, unified ones at /sys/fs/cgroup).
func CgroupMount() (string, bool) { return findMount("cgroup2") }
