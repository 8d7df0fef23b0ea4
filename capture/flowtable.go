package capture

import "encoding/binary"

// flowTable finds a flow by its key. A Go map keyed by the 36-byte flowKey
// hashes and compares all of it on every lookup; this one keys a map by a
// 64-bit mix of the key and checks the flow's own endpoints, keeping the
// flows whose mix collides with another flow's in a second, exact map.
// Collisions cost speed, never correctness.
type flowTable struct {
	byMix   map[uint64]*flow
	collide map[flowKey]*flow
}

func newFlowTable() flowTable {
	return flowTable{byMix: map[uint64]*flow{}, collide: map[flowKey]*flow{}}
}

// mix folds a key into 64 bits (multiply and xor-shift, as splitmix64
// finishes).
func (k *flowKey) mix() uint64 {
	le := binary.LittleEndian
	h := le.Uint64(k.lo.addr[:8])*0x9e3779b97f4a7c15 ^ le.Uint64(k.lo.addr[8:])*0xbf58476d1ce4e5b9 ^
		le.Uint64(k.hi.addr[:8])*0x94d049bb133111eb ^ le.Uint64(k.hi.addr[8:])*0x2545f4914f6cdd1d ^
		(uint64(k.lo.port)<<16|uint64(k.hi.port))*0xff51afd7ed558ccd
	h ^= h >> 31
	h *= 0xc4ceb9fe1a85ec53
	return h ^ h>>33
}

// holds reports whether f is the flow of k.
func (f *flow) holds(k *flowKey) bool {
	return (f.ep[0] == k.lo && f.ep[1] == k.hi) || (f.ep[0] == k.hi && f.ep[1] == k.lo)
}

func (t *flowTable) get(k *flowKey) *flow {
	f := t.byMix[k.mix()]
	if f == nil || f.holds(k) {
		return f
	}
	// A mix's slot, once taken, is never emptied: a key is in collide
	// only while its slot holds another flow.
	return t.collide[*k]
}

// put stores f as the flow of k, replacing the one k had.
func (t *flowTable) put(k *flowKey, f *flow) {
	m := k.mix()
	if g := t.byMix[m]; g == nil || g.holds(k) {
		t.byMix[m] = f
		return
	}
	t.collide[*k] = f
}

// each calls fn for every flow, in no particular order.
func (t *flowTable) each(fn func(*flow)) {
	for _, f := range t.byMix {
		fn(f)
	}
	for _, f := range t.collide {
		fn(f)
	}
}
