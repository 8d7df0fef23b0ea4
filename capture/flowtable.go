package capture

import "encoding/binary"

// flowTable finds a flow by its two endpoints, in either order. It is an
// open-addressing hash table of flows: the hash of an endpoint pair is the
// sum of its endpoints' hashes, so a segment's flow is found in both
// directions without ordering the endpoints into a key first, and a slot is
// checked by the flow's own endpoints. Flows are never deleted (a new
// connection on the same ports replaces the old one in its slot), so
// linear probing needs no tombstones. Colliding hashes cost speed, never
// correctness.
type flowTable struct {
	slots []*flow // len is a power of two
	used  int
}

func newFlowTable() flowTable { return flowTable{slots: make([]*flow, 1024)} }

// hash mixes an endpoint into 64 bits (multiply and xor-shift, as
// splitmix64 finishes).
func (e *endpoint) hash() uint64 {
	le := binary.LittleEndian
	h := le.Uint64(e.addr[:8])*0x9e3779b97f4a7c15 ^ le.Uint64(e.addr[8:])*0xbf58476d1ce4e5b9 ^
		uint64(e.port)*0x94d049bb133111eb
	h ^= h >> 31
	h *= 0xc4ceb9fe1a85ec53
	return h ^ h>>33
}

// pairHash is the hash of the flow between a and b, the same both ways.
func pairHash(a, b *endpoint) uint64 { return a.hash() + b.hash() }

// get returns the flow between src and dst, whose hash is h, and the
// direction src sends in it; nil when there is none.
func (t *flowTable) get(src, dst *endpoint, h uint64) (*flow, int) {
	mask := uint64(len(t.slots) - 1)
	for i := h & mask; ; i = (i + 1) & mask {
		f := t.slots[i]
		if f == nil {
			return nil, 0
		}
		if f.hash != h {
			continue
		}
		if f.ep[0] == *src && f.ep[1] == *dst {
			return f, 0
		}
		if f.ep[0] == *dst && f.ep[1] == *src {
			return f, 1
		}
	}
}

// put stores f under f.hash, replacing the flow between the same
// endpoints.
func (t *flowTable) put(f *flow) {
	if 2*(t.used+1) > len(t.slots) {
		t.grow()
	}
	mask := uint64(len(t.slots) - 1)
	for i := f.hash & mask; ; i = (i + 1) & mask {
		g := t.slots[i]
		if g == nil {
			t.slots[i] = f
			t.used++
			return
		}
		if g.hash == f.hash && g.sameEndpoints(f) {
			t.slots[i] = f
			return
		}
	}
}

// grow doubles the table; at most half of it is ever used, so probe runs
// stay short.
func (t *flowTable) grow() {
	old := t.slots
	t.slots, t.used = make([]*flow, 2*len(old)), 0
	for _, f := range old {
		if f != nil {
			t.put(f)
		}
	}
}

// sameEndpoints reports whether f and g are flows between the same two
// endpoints.
func (f *flow) sameEndpoints(g *flow) bool {
	return (f.ep[0] == g.ep[0] && f.ep[1] == g.ep[1]) || (f.ep[0] == g.ep[1] && f.ep[1] == g.ep[0])
}

// each calls fn for every flow, in no particular order.
func (t *flowTable) each(fn func(*flow)) {
	for _, f := range t.slots {
		if f != nil {
			fn(f)
		}
	}
}
