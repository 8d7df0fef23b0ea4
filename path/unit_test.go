package path

import (
	"bytes"
	"errors"
	"math"
	"testing"
	"time"
)

func TestGrid(t *testing.T) {
	for _, tt := range []struct {
		min, max time.Duration
		p        float64
		n        int
	}{
		{10 * time.Second, 2 * time.Hour, 0.02, 166},
		{5 * time.Second, 150 * time.Second, 0.02, 87},
		{10 * time.Second, 20 * time.Second, 0.25, 3},
	} {
		g := Grid(tt.min, tt.max, tt.p)
		if len(g) < tt.n-1 || len(g) > tt.n+1 || g[0] != tt.min || g[len(g)-1] != tt.max {
			t.Errorf("Grid(%v, %v, %g): %d points %v … %v, want about %d from min to max", tt.min, tt.max, tt.p, len(g), g[0], g[len(g)-1], tt.n)
		}
		// Every bracket's midpoint is within p of every value in it.
		for i := 1; i < len(g); i++ {
			lo, hi := g[i-1].Seconds(), g[i].Seconds()
			if mid := (lo + hi) / 2; (hi-mid)/mid > tt.p+1e-3 {
				t.Errorf("bracket [%v, %v]: midpoint off by %.2f%%", g[i-1], g[i], 100*(hi-mid)/mid)
			}
		}
	}
	if r := Ratio(0.02); math.Abs(r-1.0408) > 1e-3 {
		t.Errorf("Ratio(2%%) = %g", r)
	}
}

func TestRequestWire(t *testing.T) {
	nonce := bytes.Repeat([]byte{7}, 16)
	req := request{kind: kindToClient, bytes: 8, conn: 42, session: [8]byte{1, 2, 3}, idleMS: 12345}
	b := req.marshal("tok", nonce)
	got, err := parseRequest(b, "tok", nonce)
	if err != nil || got != req {
		t.Fatalf("round trip: %+v, %v", got, err)
	}
	if _, err := parseRequest(b, "other", nonce); !errors.Is(err, errBadMAC) {
		t.Errorf("another token: %v", err)
	}
	if _, err := parseRequest(b, "tok", bytes.Repeat([]byte{8}, 16)); !errors.Is(err, errBadMAC) {
		t.Errorf("replayed on another connection (nonce): %v", err)
	}
	for name, r := range map[string]request{
		"kind":  {kind: 'Z'},
		"bytes": {kind: kindToServer, bytes: maxPayload + 1},
	} {
		if _, err := parseRequest(r.marshal("tok", nonce), "tok", nonce); !errors.Is(err, ErrProtocol) {
			t.Errorf("%s: %v, want ErrProtocol", name, err)
		}
	}
	if _, err := parseRequest([]byte("GET / HTTP/1.1\r\n"), "tok", nonce); !errors.Is(err, ErrProtocol) {
		t.Errorf("HTTP: %v", err)
	}
	f := frame{typ: frameSent, conn: 9, value: 1 << 40}
	if g, err := readFrame(bytes.NewReader(f.marshal()), make([]byte, frameSize)); err != nil || g != f {
		t.Errorf("frame round trip: %+v %v", g, err)
	}
}

// FuzzParseRequest: whatever arrives on the counterpart's port, parsing
// neither panics nor accepts a request the token did not sign.
func FuzzParseRequest(f *testing.F) {
	nonce := bytes.Repeat([]byte{1}, 16)
	f.Add(request{kind: kindControl}.marshal("", nonce))
	f.Add([]byte("KADIAGP1"))
	f.Fuzz(func(t *testing.T, b []byte) {
		r, err := parseRequest(b, "secret", nonce)
		if err == nil && !bytes.Equal(r.marshal("secret", nonce), b[:requestSize]) {
			t.Fatalf("accepted %x as %+v", b, r)
		}
	})
}

func TestExpect(t *testing.T) {
	res := func(lo float64, hi, close *float64) *Result {
		d := &DirectionResult{BracketS: [2]*float64{&lo, hi}}
		if hi != nil {
			d.IdleTimeoutS = fptr((lo + *hi) / 2)
		}
		return &Result{Directions: Directions{ToClient: d}, ServerIdleCloseS: close}
	}
	for _, tt := range []struct {
		name          string
		r             *Result
		expect        time.Duration
		passed, known bool
	}{
		{"timeout above", res(340, fptr(360), nil), 300 * time.Second, true, true},
		{"timeout below", res(340, fptr(360), nil), 400 * time.Second, false, true},
		{"survived past", res(600, nil, nil), 300 * time.Second, true, true},
		{"not yet", res(200, nil, nil), 300 * time.Second, false, false},
		{"server closes first", res(5, nil, fptr(6)), 10 * time.Second, false, true},
	} {
		p, k := tt.r.ExpectPassed(tt.expect)
		if p != tt.passed || k != tt.known {
			t.Errorf("%s: passed %v known %v, want %v %v", tt.name, p, k, tt.passed, tt.known)
		}
	}
}

func TestConfigErrors(t *testing.T) {
	for name, c := range map[string]Config{
		"min":       {Min: time.Millisecond},
		"range":     {Min: time.Minute, Max: time.Second * 30},
		"precision": {Precision: 0.5},
		"too many":  {Min: time.Second, Max: 24 * time.Hour, Precision: 0.001},
		"direction": {Directions: []Direction{"sideways"}},
		"keepalive": {Keepalive: time.Millisecond},
	} {
		if err := c.defaults(); !errors.Is(err, ErrBadConfig) {
			t.Errorf("%s: %v, want ErrBadConfig", name, err)
		}
	}
}
