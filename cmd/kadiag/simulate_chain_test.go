package main

import (
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strings"
	"testing"

	"github.com/kadiag/kadiag/internal/testenv"
)

// TestSimulateChainJSON: a 2-hop chain through the binary. The JSON has
// per scenario "hops" (forgot_at_s a number, or null where the hop kept the
// flow) and "forgotten_by" (1-based, or null), matches its JSON Schema; the
// table names the hop that forgot first; the pcapng has one interface per
// hop link.
func TestSimulateChainJSON(t *testing.T) {
	testenv.Privileged(t)
	testenv.Need(t, "tshark")
	t.Parallel()
	dir := t.TempDir()
	pcap, table := filepath.Join(dir, "chain.pcapng"), filepath.Join(dir, "report.txt")
	stdout, stderr, code := runKadiag(t, "simulate", "-o", "json", "--report", table, "--pcap", pcap,
		"--hop", "idle=4s,after=drop", "--hop", "idle=2s", "--scenario", "none,app",
		"--response-delay", "5s", "--keepidle", "1s", "--keepintvl", "1s", "--timeout", "8s")
	if code != 0 {
		t.Fatalf("exit %d: %s\n%s", code, stderr, stdout)
	}
	validateJSON(t, "simulate --hop", stdout)
	var doc struct {
		Hops []struct {
			Name  string  `json:"name"`
			IdleS float64 `json:"idle_s"`
		} `json:"hops"`
		Scenarios []struct {
			Name string `json:"name"`
			Hops []struct {
				Name      string   `json:"name"`
				IdleS     float64  `json:"idle_s"`
				After     string   `json:"after"`
				ForgotAtS *float64 `json:"forgot_at_s"`
			} `json:"hops"`
			ForgottenBy *int `json:"forgotten_by"`
		} `json:"scenarios"`
	}
	if err := json.Unmarshal([]byte(stdout), &doc); err != nil {
		t.Fatal(err)
	}
	if len(doc.Hops) != 2 || doc.Hops[0].Name != "idle=4s,after=drop" || doc.Hops[1].IdleS != 2 || len(doc.Scenarios) != 2 {
		t.Fatalf("hops %+v, %d scenarios:\n%s", doc.Hops, len(doc.Scenarios), stdout)
	}
	none, app := doc.Scenarios[0], doc.Scenarios[1]
	if len(none.Hops) != 2 || none.ForgottenBy == nil || *none.ForgottenBy != 2 || none.Hops[1].ForgotAtS == nil || none.Hops[0].ForgotAtS == nil ||
		*none.Hops[1].ForgotAtS > *none.Hops[0].ForgotAtS || none.Hops[0].After != "drop" || none.Hops[1].After != "reset" {
		t.Errorf("none: hops %+v forgotten_by %v: want hop 2 (2s) first, hop 1 (4s) later\n%s", none.Hops, none.ForgottenBy, stdout)
	}
	if app.ForgottenBy != nil || len(app.Hops) != 2 || app.Hops[0].ForgotAtS != nil || app.Hops[1].ForgotAtS != nil {
		t.Errorf("app: hops %+v forgotten_by %v: want both kept", app.Hops, app.ForgottenBy)
	}
	// null, not absent: the contract names the fields.
	var raw struct {
		Scenarios []map[string]json.RawMessage `json:"scenarios"`
	}
	json.Unmarshal([]byte(stdout), &raw)
	var hops []map[string]json.RawMessage
	json.Unmarshal(raw.Scenarios[1]["hops"], &hops)
	if fb, ok := raw.Scenarios[1]["forgotten_by"]; !ok || string(fb) != "null" || len(hops) != 2 || string(hops[0]["forgot_at_s"]) != "null" {
		t.Errorf("app: forgotten_by %s, hops[0].forgot_at_s %s: want explicit nulls", fb, hops[0]["forgot_at_s"])
	}
	b, err := os.ReadFile(table)
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(string(b), "first to forget: hop 2") || !strings.Contains(string(b), "client → 1 idle=4s,after=drop (NAT) → 2 idle=2s (NAT) → server") || !strings.Contains(string(b), "hop 2 (idle=2s) forgot the flow at") {
		t.Errorf("table report:\n%s", b)
	}
	out, err := exec.Command("tshark", "-r", pcap, "-Y", "tcp", "-T", "fields", "-e", "frame.interface_name").Output()
	if err != nil {
		t.Fatalf("tshark: %v", err)
	}
	seen := map[string]bool{}
	for _, l := range strings.Fields(string(out)) {
		seen[l] = true
	}
	var names []string
	for n := range seen {
		names = append(names, n)
	}
	sort.Strings(names)
	if strings.Join(names, " ") != "app/1-idle=4s,after=drop app/2-idle=2s none/1-idle=4s,after=drop none/2-idle=2s" {
		t.Errorf("interfaces with TCP in the pcapng: %v, want one per scenario and hop link", names)
	}
}

// TestSimulateUserServer: --server is one string split into words as a
// shell would (quotes kept together), run without a shell, with {listen}
// substituted; a server that exits before listening is one line naming it.
func TestSimulateUserServer(t *testing.T) {
	testenv.Privileged(t)
	testenv.Need(t, "python3", "curl")
	t.Parallel()
	slow, err := filepath.Abs("../../simulate/testdata/slow.py")
	if err != nil {
		t.Fatal(err)
	}
	stdout, stderr, code := runKadiag(t, "simulate", "--idle", "3s", "--server", "python3 '"+slow+"' {listen} 1", "--expect", "ok",
		"--", "curl", "-sS", "--no-keepalive", "{url}")
	if code != 0 || !strings.Contains(stdout, "slow answer") || !strings.Contains(stdout, "server: python3 "+slow+" {listen} 1") {
		t.Errorf("curl against the Python server: exit %d\n%s\n%s", code, stdout, stderr)
	}
	_, stderr, code = runKadiag(t, "simulate", "--idle", "3s", "--server", "sh -c 'exit 7'", "--", "true")
	if code != 2 || strings.Count(strings.TrimSpace(stderr), "\n") != 0 || !strings.Contains(stderr, "exit status 7") || !strings.Contains(stderr, "{listen}") {
		t.Errorf("exiting server: exit %d, stderr %q: want one line naming it", code, stderr)
	}
}

// TestSimulateHopBadInput: every wrong --hop or --server is one line, exit 2.
func TestSimulateHopBadInput(t *testing.T) {
	for _, args := range [][]string{
		{"simulate", "--hop", "aws-nat", "--idle", "5s"},
		{"simulate", "--hop", "aws-natt"},
		{"simulate", "--hop", "idle=soon"},
		{"simulate", "--hop", "idle=5s,after=maybe"},
		{"simulate", "--hop", "idle=5s,nat=perhaps"},
		{"simulate", "--hop", "idle=5s,colour=red"},
		{"simulate", "--hop", "after=drop"},
		{"simulate", "--hop", "idle=5s,aws-nat"},
		{"simulate", "--server", "'unbalanced", "--", "true"},
		{"simulate", "--hop", "1s", "--hop", "1s", "--hop", "1s", "--hop", "1s", "--hop", "1s", "--hop", "1s", "--hop", "1s", "--hop", "1s", "--hop", "1s"},
	} {
		_, stderr, code := runKadiag(t, args...)
		if code != 2 || strings.Count(strings.TrimSpace(stderr), "\n") != 0 || !strings.HasPrefix(stderr, "kadiag: ") {
			t.Errorf("%v: exit %d, stderr %q; want exit 2 and one line", args, code, stderr)
		}
	}
}
