package pod

import (
	"os"
	"path/filepath"
	"regexp"
	"testing"
)

var (
	wellFormedContainerID = regexp.MustCompile(`^([0-9a-f]{64})?$`)
	wellFormedPodUID      = regexp.MustCompile(`^([0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}|[0-9a-f]{32})?$`)
)

// FuzzParseCgroup: whatever a /proc/PID/cgroup holds (it is written by
// runtimes and, in a cgroup namespace, relative), the labels kadiag puts on
// its metrics are a well-formed container id and pod uid, or empty: never
// arbitrary text that would blow up label cardinality.
func FuzzParseCgroup(f *testing.F) {
	files, _ := filepath.Glob("testdata/cgroup/*.txt")
	for _, p := range files {
		if b, err := os.ReadFile(p); err == nil {
			f.Add(b)
		}
	}
	f.Add([]byte("0::/kubepods/burstable/pod6e9d9f1c-3f52-4c4b-9a1e-0c2b7c6d3e11/4b1f8a2e8f0f6c7d2b3a1e9f0d8c7b6a5e4d3c2b1a0f9e8d7c6b5a4f3e2d1c0b"))
	f.Fuzz(func(t *testing.T, b []byte) {
		c := ParseCgroup(b)
		if !wellFormedContainerID.MatchString(c.ContainerID) || !wellFormedPodUID.MatchString(c.PodUID) {
			t.Fatalf("ParseCgroup(%q) = %+v: malformed label values", b, c)
		}
	})
}
