package capture

import (
	"bytes"
	"os"
	"os/exec"
	"path/filepath"
	"testing"
)

// benchPcap generates the capture benchmark's small-frame shape once (as
// scripts/bench/capture.sh does, smaller) and returns its bytes.
func benchPcap(b *testing.B, packets string) []byte {
	b.Helper()
	path := filepath.Join(b.TempDir(), "small.pcap")
	cmd := exec.Command("go", "run", "./internal/pcapgen", "-shape", "small", "-packets", packets, "-flows", "2000", "-o", path)
	if out, err := cmd.CombinedOutput(); err != nil {
		b.Fatalf("pcapgen: %v\n%s", err, out)
	}
	data, err := os.ReadFile(path)
	if err != nil {
		b.Fatal(err)
	}
	return data
}

// BenchmarkReadSmall reads the small-frame shape from memory: the analysis
// alone, no disk and no JSON.
func BenchmarkReadSmall(b *testing.B) {
	packets := os.Getenv("BENCH_PACKETS")
	if packets == "" {
		packets = "200000"
	}
	data := benchPcap(b, packets)
	b.SetBytes(int64(len(data)))
	b.ReportAllocs()
	b.ResetTimer()
	var n uint64
	for i := 0; i < b.N; i++ {
		res, err := Read(bytes.NewReader(data), "small.pcap", Options{MaxIdle: 350e9})
		if err != nil {
			b.Fatal(err)
		}
		n = res.Summary.Packets
	}
	b.ReportMetric(float64(n)*float64(b.N)/b.Elapsed().Seconds()/1e6, "Mpps")
}
