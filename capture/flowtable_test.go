package capture

import (
	"testing"
	"unsafe"
)

// TestFlowTable: flows are found in both directions, exactly, when their
// hashes are equal and when probe runs wrap the end of the table; a new
// connection replaces the old one; growth keeps them all; each lists every
// flow once.
func TestFlowTable(t *testing.T) {
	ep := func(host byte, port uint16) endpoint {
		var e endpoint
		e.addr, e.port = v4InV6, port
		e.addr[12], e.addr[15] = 198, host
		return e
	}
	server := ep(1, 443)
	tests := []struct {
		name string
		hash func(i int, a, b *endpoint) uint64
	}{
		{"pair hash", func(_ int, a, b *endpoint) uint64 { return pairHash(a, b) }},
		{"all equal", func(int, *endpoint, *endpoint) uint64 { return 7 }},
		{"at the table's end", func(i int, _, _ *endpoint) uint64 { return 1023 + uint64(i%3) }},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			tab := newFlowTable()
			const n = 3000 // grows the table twice
			flows := make([]*flow, n)
			for i := range flows {
				c := ep(2, uint16(1000+i))
				flows[i] = newFlow(c, server, i)
				flows[i].hash = tt.hash(i, &c, &server)
				tab.put(flows[i])
			}
			for i, f := range flows {
				c := f.ep[0]
				if g, d := tab.get(&c, &server, f.hash); g != f || d != 0 {
					t.Fatalf("flow %d from the client: %p direction %d, want %p direction 0", i, g, d, f)
				}
				if g, d := tab.get(&server, &c, f.hash); g != f || d != 1 {
					t.Fatalf("flow %d from the server: %p direction %d, want %p direction 1", i, g, d, f)
				}
			}
			other := ep(3, 1000)
			if g, _ := tab.get(&other, &server, tt.hash(0, &other, &server)); g != nil {
				t.Errorf("a flow never stored was found: %p", g)
			}
			// The next connection on flow 5's ports, the server speaking first.
			next := newFlow(server, flows[5].ep[0], n)
			next.hash = flows[5].hash
			tab.put(next)
			if g, d := tab.get(&flows[5].ep[0], &server, next.hash); g != next || d != 1 {
				t.Errorf("the new connection: %p direction %d, want %p direction 1", g, d, next)
			}
			seen := map[*flow]int{}
			tab.each(func(f *flow) { seen[f]++ })
			if len(seen) != n || seen[flows[5]] != 0 || seen[next] != 1 {
				t.Errorf("each listed %d flows (the replaced one %d times, its successor %d), want %d", len(seen), seen[flows[5]], seen[next], n)
			}
		})
	}
}

// TestFlowSize keeps a flow within the allocator's 416-byte size class: the
// peak memory of a capture of many flows is mostly flows.
func TestFlowSize(t *testing.T) {
	if n := unsafe.Sizeof(flow{}); n > 416 {
		t.Errorf("a flow takes %d bytes, more than 416: order its fields by size", n)
	}
}
