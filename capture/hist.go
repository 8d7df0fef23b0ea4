package capture

import (
	"sort"
	"time"
)

// intervalHist keeps the probe intervals of one flow for min, median and
// max. It is exact (millisecond buckets) while a flow has at most maxBuckets
// distinct intervals; beyond that the buckets double in width, so memory per
// flow stays bounded however many probes a capture holds.
type intervalHist struct {
	min, max time.Duration
	n        int32
	shift    uint8 // bucket width is 1ms << shift
	buckets  []bucket
}

type bucket struct {
	key   int64 // interval in ms >> shift
	count uint32
}

const maxBuckets = 64

func (h *intervalHist) add(d time.Duration) {
	if h.n == 0 || d < h.min {
		h.min = d
	}
	if h.n == 0 || d > h.max {
		h.max = d
	}
	h.n++
	key := d.Milliseconds() >> h.shift
	i := sort.Search(len(h.buckets), func(i int) bool { return h.buckets[i].key >= key })
	if i < len(h.buckets) && h.buckets[i].key == key {
		h.buckets[i].count++
		return
	}
	h.buckets = append(h.buckets, bucket{})
	copy(h.buckets[i+1:], h.buckets[i:])
	h.buckets[i] = bucket{key: key, count: 1}
	for len(h.buckets) > maxBuckets {
		h.coarsen()
	}
}

// coarsen doubles the bucket width, merging neighbours.
func (h *intervalHist) coarsen() {
	h.shift++
	out := h.buckets[:0]
	for _, b := range h.buckets {
		b.key >>= 1
		if len(out) > 0 && out[len(out)-1].key == b.key {
			out[len(out)-1].count += b.count
			continue
		}
		out = append(out, b)
	}
	h.buckets = out
}

// median returns the lower median; with coarse buckets, the bucket's middle
// clamped to [min, max].
func (h *intervalHist) median() time.Duration {
	if h.n == 0 {
		return 0
	}
	want := uint32((h.n + 1) / 2)
	var seen uint32
	for _, b := range h.buckets {
		seen += b.count
		if seen >= want {
			width := int64(1) << h.shift
			ms := b.key<<h.shift + width/2
			if h.shift == 0 {
				ms = b.key
			}
			d := time.Duration(ms) * time.Millisecond
			if h.shift == 0 {
				// Millisecond buckets lose the sub-millisecond part; min and max
				// are exact, so prefer them when the median bucket holds them.
				if b.key == h.min.Milliseconds() {
					return h.min
				}
				if b.key == h.max.Milliseconds() {
					return h.max
				}
			}
			return min(max(d, h.min), h.max)
		}
	}
	return h.max
}
