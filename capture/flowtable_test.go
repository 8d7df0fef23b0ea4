package capture

import "testing"

// TestFlowTableCollisions: a key whose mix's slot holds another flow is
// stored, found and replaced exactly, and every flow is listed once.
func TestFlowTableCollisions(t *testing.T) {
	key := func(port uint16) flowKey {
		var k flowKey
		k.lo.port, k.hi.port = port, 443
		k.lo.addr[15], k.hi.addr[15] = 1, 2
		return k
	}
	k2, k3 := key(2), key(3)
	if k2.mix() == k3.mix() {
		t.Fatal("the keys' mixes collide already")
	}
	tab := newFlowTable()
	f2, f3 := newFlow(k2.lo, k2.hi, 0), newFlow(k3.lo, k3.hi, 1)
	// Make k3 collide: its slot holds k2's flow, as if their mixes were equal.
	tab.byMix[k3.mix()] = f2
	tab.put(&k3, f3)
	if tab.get(&k3) != f3 || tab.collide[k3] != f3 || tab.byMix[k3.mix()] != f2 {
		t.Errorf("a colliding key is not stored exactly")
	}
	next := newFlow(k3.hi, k3.lo, 2) // the next connection, the server speaking first
	tab.put(&k3, next)
	if tab.get(&k3) != next {
		t.Errorf("a colliding key's flow is not replaced")
	}
	if f := tab.get(&k2); f != nil {
		t.Errorf("key 2 was never stored under its own mix, found %p", f)
	}
	tab.put(&k2, f2)
	if tab.get(&k2) != f2 || len(tab.collide) != 1 {
		t.Errorf("key 2: %p, collide %d", tab.get(&k2), len(tab.collide))
	}
	n := 0
	tab.each(func(*flow) { n++ })
	if n != 3 {
		t.Errorf("each listed %d flows, want 3 (k3's slot, k3 colliding, k2)", n)
	}
}
