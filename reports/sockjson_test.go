package reports

import (
	"bytes"
	"encoding/json"
	"reflect"
	"testing"

	"github.com/kadiag/kadiag/inspect"
)

// sockVariants is every Socket shape the encoder must get byte for byte
// right: each field set (so a field added to Socket and not to
// appendSocket shows), each omitempty field both ways, strings that
// encoding/json escapes, and extreme numbers.
func sockVariants() []inspect.Socket {
	full := inspect.Socket{
		FD: 7, Inode: 1<<63 + 5, Family: "inet6", Protocol: "mptcp", Netns: "net:[4026531840]",
		State: "ESTABLISHED", Local: "[fd00::2]:443", Remote: "198.18.0.1:8080",
		Keepalive: inspect.Keepalive{Enabled: true, IdleS: 60, IntervalS: 10, Count: 9, UserTimeoutMs: 30000,
			UserTimeoutUnsupported: true, TimerArmed: true, NextProbeMs: 1 << 40, IdleLowerBound: true, ProbesSent: 3, Source: inspect.BPF},
		Verdict: inspect.AtRisk, Reason: "first probe after 600s, middlebox forgets after 350s", DeadPeerS: 150,
		Timer: "keepalive", TimerExpiresMs: -1, TimerRetrans: 2, LastDataRecvMs: 123456789, LastAckRecvMs: 1,
		UID: 4294967295, RecvQ: 4294967295, SendQ: 7, Conntrack: &inspect.Conntrack{Netns: "net:[1]", RemainingS: 42},
	}
	var out []inspect.Socket
	out = append(out, full, inspect.Socket{})
	for _, s := range []string{"<script>&", "tab\there \"q\" back\\slash", "\x00\x1f\x7f", "caf\xc3\xa9 \xff\xfe", "\u2028\u2029", "日本"} {
		v := full
		v.Reason, v.Local, v.Netns, v.Keepalive.Source = s, s, s, inspect.Source(s)
		out = append(out, v)
	}
	v := full
	v.Keepalive.UserTimeoutUnsupported, v.Keepalive.IdleLowerBound, v.Netns, v.Conntrack = false, false, "", nil
	v.FD, v.Keepalive.IdleS = -1, -5
	return append(out, v)
}

func TestAppendSocketIsEncodingJSON(t *testing.T) {
	for i, sk := range sockVariants() {
		want, err := json.Marshal(&sk)
		if err != nil {
			t.Fatal(err)
		}
		got, err := appendSocket(nil, &sk)
		if err != nil {
			t.Fatal(err)
		}
		if !bytes.Equal(got, want) {
			t.Errorf("socket %d:\n got  %s\n want %s", i, got, want)
		}
	}
	// Every field of the full variant is set: none may be left at zero, or
	// a new field could go unnoticed.
	full := reflect.ValueOf(sockVariants()[0])
	for i := 0; i < full.NumField(); i++ {
		if f := full.Type().Field(i); f.IsExported() && full.Field(i).IsZero() {
			t.Errorf("the full variant leaves Socket.%s unset", f.Name)
		}
	}
}

// FuzzAppendSocket: any socket that decodes from JSON encodes back exactly
// as encoding/json encodes it.
func FuzzAppendSocket(f *testing.F) {
	for _, sk := range sockVariants() {
		b, _ := json.Marshal(&sk)
		f.Add(b)
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		var sk inspect.Socket
		if json.Unmarshal(data, &sk) != nil {
			return
		}
		want, err := json.Marshal(&sk)
		if err != nil {
			return
		}
		got, err := appendSocket(nil, &sk)
		if err != nil || !bytes.Equal(got, want) {
			t.Errorf("got %s (%v)\nwant %s", got, err, want)
		}
	})
}
