package parallel

import (
	"runtime"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// Every index runs exactly once, none when n is 0 or less, and on several
// goroutines at once when there are CPUs for them.
func TestFor(t *testing.T) {
	for _, n := range []int{-1, 0, 1, 7, 1000} {
		counts := make([]atomic.Int32, max(n, 0))
		For(n, func(i int) { counts[i].Add(1) })
		for i := range counts {
			if c := counts[i].Load(); c != 1 {
				t.Errorf("n %d: index %d ran %d times", n, i, c)
			}
		}
	}
	if runtime.GOMAXPROCS(0) < 2 {
		return
	}
	// Two pieces that each wait for the other finish only side by side.
	var wg sync.WaitGroup
	wg.Add(2)
	done := make(chan struct{})
	go func() {
		For(2, func(int) { wg.Done(); wg.Wait() })
		close(done)
	}()
	select {
	case <-done:
	case <-time.After(10 * time.Second):
		t.Fatal("two pieces did not run at the same time")
	}
}
