package fix

import (
	"bufio"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"

	"github.com/kadiag/kadiag/internal/bpf"
	"golang.org/x/sys/unix"
)

// ResolveCgroup turns a cgroup given as a directory of the cgroup v2 mount
// (/sys/fs/cgroup/unified/kubepods.slice) or as a path inside the hierarchy
// as /proc/PID/cgroup prints it (/kubepods.slice) into the directory. The
// mount is found in /proc/self/mountinfo: hybrid hosts mount cgroup v2 at
// /sys/fs/cgroup/unified, not /sys/fs/cgroup.
func ResolveCgroup(path string) (string, error) {
	root, ok := bpf.CgroupMount()
	if !ok {
		return "", fmt.Errorf("%w: no cgroup v2 mounted (mount one: mount -t cgroup2 none /sys/fs/cgroup/unified)", ErrNoCgroup2)
	}
	dir := path
	if !isCgroup2(dir) {
		dir = filepath.Join(root, path)
	}
	if !isCgroup2(dir) {
		return "", fmt.Errorf("%w: %s (cgroup v2 is mounted at %s)", ErrNoCgroup2, path, root)
	}
	return filepath.Clean(dir), nil
}

func isCgroup2(dir string) bool {
	var st unix.Statfs_t
	if err := unix.Statfs(dir, &st); err != nil || st.Type != unix.CGROUP2_SUPER_MAGIC {
		return false
	}
	fi, err := os.Stat(dir)
	return err == nil && fi.IsDir()
}

// CgroupOf returns the cgroup v2 directory process pid runs in.
func CgroupOf(pid int) (string, error) {
	f, err := os.Open("/proc/" + strconv.Itoa(pid) + "/cgroup")
	if err != nil {
		return "", procErr(pid, "read its cgroup", err)
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		if rest, ok := strings.CutPrefix(sc.Text(), "0::"); ok {
			return ResolveCgroup(rest)
		}
	}
	return "", fmt.Errorf("pid %d: %w: it is in no cgroup v2 (no 0:: line in /proc/%d/cgroup)", pid, ErrNoCgroup2, pid)
}

func policyOf(p *bpf.Policy) Policy {
	return Policy{Cgroup: p.Cgroup, CgroupID: p.CgroupID, Pinned: p.Pinned, HolderPID: p.Holder, Since: p.Since.UTC(), Replaced: p.Replaced,
		Settings: Settings{Idle: p.Settings.Idle, Interval: p.Settings.Interval, Count: p.Settings.Count, UserTimeout: p.Settings.UserTimeout}.json()}
}

// Held is a cgroup policy that lasts while the caller holds it (--hold).
type Held struct{ p *bpf.Policy }

// Release detaches a held policy.
func (h *Held) Release() error { return h.p.Close() }

// Cgroup attaches the policy to cgroup directory dir: pinned in bpffs (it
// outlives kadiag), or, with hold, until the returned Held is released or
// kadiag exits. A kadiag policy already on the cgroup is replaced.
func Cgroup(dir string, s Settings, hold bool, dry bool) (*Report, *Held, error) {
	if err := s.Validate(); err != nil {
		return nil, nil, err
	}
	r := newReport("cgroup", s)
	r.DryRun = dry
	if dry {
		id, err := bpf.CgroupID(dir)
		if err != nil {
			return nil, nil, fmt.Errorf("cgroup %s: %w", dir, err)
		}
		r.Policies = append(r.Policies, Policy{Cgroup: dir, CgroupID: id, Settings: s.json()})
		r.notef("dry run: nothing attached")
		return r, nil, nil
	}
	p, err := bpf.Attach(dir, s.bpf(), !hold)
	if err != nil {
		return nil, nil, err
	}
	r.Policies = append(r.Policies, policyOf(p))
	if hold {
		return r, &Held{p}, nil
	}
	if err := p.Close(); err != nil {
		return nil, nil, err
	}
	r.notef("only connections made after now are covered; for those already open run kadiag fix --pid")
	return r, nil, nil
}

// Remove detaches kadiag's pinned policy from cgroup directory dir.
func Remove(dir string) (*Report, error) {
	p, err := bpf.Detach(dir)
	if err != nil {
		return nil, err
	}
	r := newReport("remove", Settings{Idle: p.Settings.Idle, Interval: p.Settings.Interval, Count: p.Settings.Count, UserTimeout: p.Settings.UserTimeout})
	r.Policies = append(r.Policies, policyOf(&p))
	r.notef("sockets already open keep the options they were given")
	return r, nil
}

// List returns kadiag's cgroup policies: those pinned in bpffs and, with
// CAP_SYS_ADMIN, those held by running kadiag processes (--hold).
func List() (*Report, error) {
	ps, err := bpf.List()
	if err != nil {
		return nil, err
	}
	r := newReport("list", Settings{})
	held, err := bpf.Held()
	switch {
	case errors.Is(err, bpf.ErrCapability):
		r.notef("policies held by running kadiag processes (--hold) are listed with CAP_SYS_ADMIN")
	case err != nil:
		r.notef("policies held by running kadiag processes: %v", err)
	}
	ps = append(ps, held...)
	for i := range ps {
		r.Policies = append(r.Policies, policyOf(&ps[i]))
		if _, err := os.Stat(ps[i].Cgroup); errors.Is(err, os.ErrNotExist) {
			r.notef("cgroup %s no longer exists: its programs are inert; kadiag fix --remove --cgroup %s deletes the record", ps[i].Cgroup, ps[i].Cgroup)
		}
	}
	return r, nil
}
