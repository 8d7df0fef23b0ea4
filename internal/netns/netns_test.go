package netns_test

import (
	"errors"
	"os"
	"sync"
	"testing"

	"github.com/kadiag/kadiag/internal/netns"
	"github.com/kadiag/kadiag/internal/testenv"
	vns "github.com/vishvananda/netns"
)

// TestDoLeavesCallerHome switches into a new namespace many times from many
// goroutines and checks that fn ran inside it and that no goroutine outside
// Do ever sees a foreign namespace afterwards.
func TestDoLeavesCallerHome(t *testing.T) {
	testenv.Privileged(t)
	home, err := netns.Ino()
	if err != nil {
		t.Fatal(err)
	}
	ns, err := netns.New()
	if err != nil {
		t.Fatal(err)
	}
	defer ns.Close()
	want, err := netns.HandleIno(ns)
	if err != nil {
		t.Fatal(err)
	}
	if want == home {
		t.Fatalf("New returned the caller's own namespace %d", home)
	}
	var wg sync.WaitGroup
	for range 32 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			var inside uint64
			if err := netns.Do(ns, func() error {
				var err error
				inside, err = netns.Ino()
				return err
			}); err != nil {
				t.Error(err)
				return
			}
			if inside != want {
				t.Errorf("inside Do: netns %d, want %d", inside, want)
			}
			if now, _ := netns.Ino(); now != home {
				t.Errorf("after Do: netns %d, want home %d", now, home)
			}
		}()
	}
	wg.Wait()
}

// TestDoReturnsFnError passes fn's own error through unchanged.
func TestDoReturnsFnError(t *testing.T) {
	testenv.Privileged(t)
	self, err := vns.Get()
	if err != nil {
		t.Fatal(err)
	}
	defer self.Close()
	sentinel := errors.New("boom")
	if err := netns.Do(self, func() error { return sentinel }); !errors.Is(err, sentinel) {
		t.Fatalf("Do error = %v, want %v", err, sentinel)
	}
}

// TestDoBadHandle fails to enter and says so, without running fn.
func TestDoBadHandle(t *testing.T) {
	ran := false
	err := netns.Do(vns.NsHandle(-1), func() error { ran = true; return nil })
	if err == nil || ran {
		t.Fatalf("Do(-1) = %v, ran=%v; want an error and fn not run", err, ran)
	}
}

func TestOpenMissing(t *testing.T) {
	_, err := netns.Open("/nonexistent/ns/net")
	if !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("Open(missing) = %v, want ErrNotExist", err)
	}
}
