package inspect

import (
	"testing"
)

// BenchmarkScanPIDs scans one process holding 4,000 connections to a peer
// namespace, exact options included. scripts/bench/sockets.sh measures the
// 54,000-socket case against ss; this one tracks allocations per scan.
func BenchmarkScanPIDs(b *testing.B) {
	l := newLab(b, 67)
	c := start(b, helper(l.client, "many", l.link.A4+":8080", "4000"))
	b.ReportAllocs()
	b.ResetTimer()
	for b.Loop() {
		r, err := ScanPIDs([]int{c.pid}, Options{})
		if err != nil {
			b.Fatal(err)
		}
		if n := len(r.Processes[0].Sockets); n != 4000 {
			b.Fatalf("%d sockets, want 4000", n)
		}
	}
	b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N)/4000, "ns/socket")
}
