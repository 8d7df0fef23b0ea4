// Package browser renders HTML reports in headless Chromium for tests: the
// real consumer of kadiag's HTML, so a test sees what a person sees.
package browser

import (
	"context"
	"image"
	"image/png"
	"os"
	"os/exec"
	"path/filepath"
	"testing"
	"time"

	"github.com/kadiag/kadiag/internal/testenv"
)

// Screenshot renders the HTML file at path in headless Chromium at
// 1200×height pixels and returns the screenshot, also saved as png beside
// the test's temporary files (its path is logged). Without chromium the
// test is skipped, or fails under CI=true.
func Screenshot(t testing.TB, path string, height int) (image.Image, string) {
	t.Helper()
	testenv.Need(t, "chromium")
	abs, err := filepath.Abs(path)
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	out := filepath.Join(dir, "screenshot.png")
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	// No network of any kind: the report must be self-contained, and a
	// test may not send anywhere.
	cmd := exec.CommandContext(ctx, "chromium", "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic",
		"--no-first-run", "--disable-background-networking", "--disable-component-update", "--disable-sync",
		"--disable-extensions", "--hide-scrollbars", "--user-data-dir="+filepath.Join(dir, "profile"),
		"--screenshot="+out, "--window-size=1200,"+itoa(height), "file://"+abs)
	cmd.Env = append(os.Environ(), "HOME="+dir)
	if b, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("chromium: %v\n%s", err, b)
	}
	f, err := os.Open(out)
	if err != nil {
		t.Fatalf("chromium wrote no screenshot: %v", err)
	}
	defer f.Close()
	img, err := png.Decode(f)
	if err != nil {
		t.Fatalf("screenshot: %v", err)
	}
	t.Logf("screenshot of %s: %s", path, out)
	return img, out
}

// Colours counts the pixels of each colour in img.
func Colours(img image.Image) map[[3]uint8]int {
	n := map[[3]uint8]int{}
	b := img.Bounds()
	for y := b.Min.Y; y < b.Max.Y; y++ {
		for x := b.Min.X; x < b.Max.X; x++ {
			r, g, bl, _ := img.At(x, y).RGBA()
			n[[3]uint8{uint8(r >> 8), uint8(g >> 8), uint8(bl >> 8)}]++
		}
	}
	return n
}

// Near counts pixels within tolerance of the colour c (#rrggbb components).
func Near(colours map[[3]uint8]int, c [3]uint8, tolerance int) int {
	total := 0
	for k, n := range colours {
		d := 0
		for i := range 3 {
			v := int(k[i]) - int(c[i])
			if v < 0 {
				v = -v
			}
			d = max(d, v)
		}
		if d <= tolerance {
			total += n
		}
	}
	return total
}

func itoa(n int) string {
	b := []byte{}
	for n > 0 || len(b) == 0 {
		b = append([]byte{byte('0' + n%10)}, b...)
		n /= 10
	}
	return string(b)
}
