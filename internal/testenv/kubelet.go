package testenv

import (
	"fmt"
	"os"
	"path/filepath"
	"testing"
)

// KubeletLogs lays out a log root as the kubelet lays out a node's
// /var/log for one pod: pods/<ns>_<name>_<uid>/<container>/0.log and the
// containers/<name>_<ns>_<container>-<id>.log link to it, for each
// container name → container id in ctrs. It returns the root.
func KubeletLogs(t testing.TB, ns, name, uid string, ctrs map[string]string) string {
	t.Helper()
	root := t.TempDir()
	if err := os.MkdirAll(filepath.Join(root, "containers"), 0o755); err != nil {
		t.Fatal(err)
	}
	for ctr, id := range ctrs {
		dir := filepath.Join(root, "pods", ns+"_"+name+"_"+uid, ctr)
		if err := os.MkdirAll(dir, 0o755); err != nil {
			t.Fatal(err)
		}
		log := filepath.Join(dir, "0.log")
		if err := os.WriteFile(log, nil, 0o644); err != nil {
			t.Fatal(err)
		}
		if err := os.Symlink(log, filepath.Join(root, "containers", fmt.Sprintf("%s_%s_%s-%s.log", name, ns, ctr, id))); err != nil {
			t.Fatal(err)
		}
	}
	return root
}
