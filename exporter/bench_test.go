package exporter

import (
	"testing"

	"github.com/kadiag/kadiag/inspect"
)

// BenchmarkScan is the exporter's node-wide scan of whatever this host
// holds; scripts/bench/exporter.sh sets up 100,000 sockets and compares
// with ss. BenchmarkScanAll is `kadiag sockets --all`'s scan of the same.
func BenchmarkScan(b *testing.B) {
	for b.Loop() {
		if _, err := Scan(Options{}); err != nil {
			b.Fatal(err)
		}
	}
}

func BenchmarkScanAll(b *testing.B) {
	for b.Loop() {
		if _, err := inspect.ScanAll(inspect.Options{}); err != nil {
			b.Fatal(err)
		}
	}
}
