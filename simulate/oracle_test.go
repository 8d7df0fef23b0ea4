package simulate

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/kadiag/kadiag/internal/testenv"
)

// hopOracle polls `conntrack -L` inside every hop of one lab (nsenter into
// the hop's namespace through this process's descriptor of it) and records
// per hop when an ESTABLISHED TCP entry was last seen and when it was
// first missing after that: conntrack-tools, not kadiag, says which hop
// forgot the flow and when. Times are from the client's start.
type hopOracle struct {
	mu       sync.Mutex
	lastSeen []time.Duration // -1: never seen
	gone     []time.Duration // -1: never missing after it was seen
	stop     chan struct{}
	done     chan struct{}
}

func watchHops(t *testing.T, s *Stage) *hopOracle {
	t.Helper()
	testenv.Need(t, "nsenter", "conntrack")
	n := s.Lab.Hops()
	o := &hopOracle{lastSeen: make([]time.Duration, n), gone: make([]time.Duration, n), stop: make(chan struct{}), done: make(chan struct{})}
	for i := range n {
		o.lastSeen[i], o.gone[i] = -1, -1
	}
	go func() {
		defer close(o.done)
		for {
			for i := range n {
				at := time.Since(s.Start)
				out, _ := exec.Command("nsenter", fmt.Sprintf("--net=/proc/%d/fd/%d", os.Getpid(), int(s.Lab.Hop(i))),
					"conntrack", "-L", "-p", "tcp").Output()
				est := strings.Contains(string(out), "ESTABLISHED")
				o.mu.Lock()
				switch {
				case est:
					o.lastSeen[i] = at
				case o.lastSeen[i] >= 0 && o.gone[i] < 0:
					o.gone[i] = at
				}
				o.mu.Unlock()
			}
			select {
			case <-o.stop:
				return
			case <-time.After(150 * time.Millisecond):
			}
		}
	}()
	return o
}

func (o *hopOracle) end() (lastSeen, gone []time.Duration) {
	close(o.stop)
	<-o.done
	return o.lastSeen, o.gone
}

// oracles runs a hopOracle in every lab of a Run, keyed by scenario name.
type oracles struct {
	t  *testing.T
	mu sync.Mutex
	by map[string]*hopOracle
	// results: lastSeen and gone per scenario, once its lab tore down.
	seen, gone map[string][]time.Duration
}

func newOracles(t *testing.T) *oracles {
	return &oracles{t: t, by: map[string]*hopOracle{}, seen: map[string][]time.Duration{}, gone: map[string][]time.Duration{}}
}

func (oc *oracles) hook(_ context.Context, p Phase, s *Stage) {
	oc.mu.Lock()
	defer oc.mu.Unlock()
	switch p {
	case PhaseRunning:
		oc.by[s.Name] = watchHops(oc.t, s)
	case PhaseTeardown:
		if o := oc.by[s.Name]; o != nil {
			oc.seen[s.Name], oc.gone[s.Name] = o.end()
		}
	}
}

// checkHops compares a scenario's hops with what conntrack showed: a hop
// that kadiag says forgot the flow at T lost its entry within a second or
// so of T (the oracle polls; conntrack drops an expired entry from its dump
// at once); a hop that kept it still listed it after every forget
// kadiag reported, up to limit.
func (oc *oracles) checkHops(t *testing.T, sc ScenarioResult, limit time.Duration) {
	t.Helper()
	seen, gone := oc.seen[sc.Name], oc.gone[sc.Name]
	if len(seen) != len(sc.Hops) {
		t.Fatalf("%s: oracle watched %d hops, result has %d", sc.Name, len(seen), len(sc.Hops))
	}
	for i, h := range sc.Hops {
		if h.ForgotAtS == nil {
			if gone[i] >= 0 && gone[i] < limit {
				t.Errorf("%s: hop %d kept the flow by kadiag, but conntrack lost it at %v", sc.Name, i+1, gone[i])
			}
			continue
		}
		at := time.Duration(*h.ForgotAtS * float64(time.Second))
		if gone[i] < 0 || gone[i] < at-300*time.Millisecond || gone[i] > at+1500*time.Millisecond {
			t.Errorf("%s: hop %d forgot at %v by kadiag, conntrack lost it at %v (last seen %v)", sc.Name, i+1, at, gone[i], seen[i])
		}
	}
	// The first to forget by kadiag is the first conntrack lost.
	if sc.ForgottenBy != nil {
		first := *sc.ForgottenBy - 1
		for i := range sc.Hops {
			if i != first && gone[i] >= 0 && gone[i] < gone[first]-200*time.Millisecond {
				t.Errorf("%s: kadiag says hop %d forgot first, conntrack lost hop %d's entry earlier (%v < %v)", sc.Name, first+1, i+1, gone[i], gone[first])
			}
		}
	}
}
