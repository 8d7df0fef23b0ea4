package reports

import (
	"bytes"
	"encoding/json"
	"strings"
	"testing"

	"github.com/kadiag/kadiag/inspect"
	"github.com/kadiag/kadiag/internal/pod"
)

// A scan that looked flows up in conntrack shows each flow's remaining
// time, a dead flow fails in every format, and the pod column names
// namespace/pod/container.
func TestSocketsConntrackAndDead(t *testing.T) {
	r := socketsFixture()
	p := &r.Processes[0]
	p.Pod = &pod.Identity{Namespace: "shop", Pod: "cart-0", Container: "app", PodUID: "u1"}
	p.Sockets[0].Conntrack = &inspect.Conntrack{Netns: "/run/netns/nat", RemainingS: 42}
	p.Sockets[1].Verdict, p.Sockets[1].Reason = inspect.Dead, "the NAT at /run/netns/nat forgot this flow"
	r.Summary = inspect.Summary{Sockets: 2, OK: 1, Dead: 1}
	if !r.Failed() {
		t.Fatal("a dead socket does not fail the check")
	}
	var b bytes.Buffer
	if err := Render(&b, Table, Sockets{r}); err != nil {
		t.Fatal(err)
	}
	out := b.String()
	for _, want := range []string{"POD ", "CONNTRACK", "shop/cart-0/app ", "forgotten in 42s", "forgotten ", "dead ", "1 ok, 0 at-risk, 0 local, 0 unknown, 1 dead;"} {
		if !strings.Contains(out, want) {
			t.Errorf("table lacks %q:\n%s", want, out)
		}
	}
	b.Reset()
	Render(&b, JSON, Sockets{r})
	var doc struct {
		Processes []struct {
			Pod     *pod.Identity `json:"pod"`
			Sockets []map[string]any
		}
	}
	if err := json.Unmarshal(b.Bytes(), &doc); err != nil {
		t.Fatal(err)
	}
	ct := doc.Processes[0].Sockets[0]["conntrack"].(map[string]any)
	if ct["netns"] != "/run/netns/nat" || ct["remaining_s"] != 42.0 {
		t.Errorf("json conntrack %v", ct)
	}
	if v, ok := doc.Processes[0].Sockets[1]["conntrack"]; !ok || v != nil {
		t.Errorf("json conntrack of a flow without entry: %v (present %v), want null", v, ok)
	}
	if doc.Processes[0].Pod.Container != "app" || doc.Processes[1].Pod != nil {
		t.Errorf("json pod %+v %+v", doc.Processes[0].Pod, doc.Processes[1].Pod)
	}
	s := Sockets{r}.JUnit()
	if x := renderJUnit(t, s); !strings.Contains(x, `type="dead"`) || !strings.Contains(x, "forgot this flow") {
		t.Errorf("junit: the dead socket is no failure:\n%s", x)
	}
}

func renderJUnit(t *testing.T, s Suites) string {
	var b bytes.Buffer
	if err := s.Write(&b); err != nil {
		t.Fatal(err)
	}
	return b.String()
}
