package inspect

import (
	"fmt"
	"slices"

	"github.com/prometheus/procfs"
)

// netClassifiers are the cgroup-v1 controllers whose per-socket values
// pidfd_getfd rewrites: like receiving a descriptor over SCM_RIGHTS it runs
// __receive_sock, which sets the socket's net_cls classid and net_prio
// index to the caller's. A reading must not change what it reads, so a
// process whose cgroup in such a hierarchy differs from kadiag's is not
// duplicated; its values are inferred instead.
var netClassifiers = []string{"net_cls", "net_prio"}

// cgroupGuard knows kadiag's own net_cls/net_prio cgroups, if any such
// hierarchy is mounted.
type cgroupGuard struct {
	fs   procfs.FS
	self map[int]string // hierarchy id → kadiag's cgroup path in it
}

// newCgroupGuard returns nil when no net_cls or net_prio v1 hierarchy is
// mounted (/proc/self/mountinfo): every cgroup-v2-only host, at no cost
// per process.
func newCgroupGuard(root string) *cgroupGuard {
	fs, err := procfs.NewFS(root)
	if err != nil {
		return nil
	}
	mounts, err := fs.GetMounts()
	if err != nil {
		return nil
	}
	mounted := false
	for _, m := range mounts {
		if m.FSType != "cgroup" {
			continue
		}
		for _, c := range netClassifiers {
			if _, ok := m.SuperOptions[c]; ok {
				mounted = true
			}
		}
	}
	if !mounted {
		return nil
	}
	self, err := fs.Self()
	if err != nil {
		return nil
	}
	g := &cgroupGuard{fs: fs, self: map[int]string{}}
	cgs, err := self.Cgroups()
	if err != nil {
		return nil
	}
	for _, cg := range classifierCgroups(cgs) {
		g.self[cg.HierarchyID] = cg.Path
	}
	return g
}

// classifierCgroups keeps the cgroups of net_cls/net_prio hierarchies.
func classifierCgroups(cgs []procfs.Cgroup) []procfs.Cgroup {
	var out []procfs.Cgroup
	for _, cg := range cgs {
		for _, c := range netClassifiers {
			if slices.Contains(cg.Controllers, c) {
				out = append(out, cg)
				break
			}
		}
	}
	return out
}

// blocks returns why pid's descriptors must not be duplicated, or "".
func (g *cgroupGuard) blocks(pid int) string {
	if g == nil {
		return ""
	}
	p, err := g.fs.Proc(pid)
	if err != nil {
		return ""
	}
	cgs, err := p.Cgroups()
	if err != nil {
		// Unknown cgroups: the safe side is not to duplicate.
		return fmt.Sprintf("its net_cls/net_prio cgroups cannot be read (%v)", err)
	}
	for _, cg := range classifierCgroups(cgs) {
		if mine, ok := g.self[cg.HierarchyID]; ok && mine != cg.Path {
			return fmt.Sprintf("it is in %s cgroup %s, kadiag in %s", cg.Controllers[0], cg.Path, mine)
		}
	}
	return ""
}
