package preload

import (
	"os"
	"strings"
	"testing"
	"time"
)

// cleanEnviron is the test process's environment without any setting the
// library reads, so a developer's shell cannot change the expectations.
func cleanEnviron() []string {
	var env []string
	for _, e := range os.Environ() {
		name, _, _ := strings.Cut(e, "=")
		if strings.HasPrefix(name, "KADIAG_") || name == "LD_PRELOAD" || name == EnvBareIdle || name == EnvBareInterval || name == EnvBareCount {
			continue
		}
		env = append(env, e)
	}
	return env
}

type badValue struct {
	name, value string
	want        func(kernel opts) opts
}

func badValues() []badValue {
	idle := func(k opts) opts { return opts{1, k.Idle, 15, 4, 0} }
	intvl := func(k opts) opts { return opts{1, 60, k.Intvl, 4, 0} }
	cnt := func(k opts) opts { return opts{1, 60, 15, k.Cnt, 0} }
	std := func(opts) opts { return opts{1, 60, 15, 4, 0} }
	var out []badValue
	for _, v := range []string{"", "abc", "0", "0s", "32768", "10h", "-5", "1.5", "10x", "5 m", "60ms", "99999999999", " 60", "60 "} {
		out = append(out, badValue{"KADIAG_KEEPIDLE", v, idle})
	}
	out = append(out, badValue{"KEEPIDLE", "abc", idle})
	for _, v := range []string{"0", "32768", "1d", "x"} {
		out = append(out, badValue{"KADIAG_KEEPINTVL", v, intvl})
	}
	out = append(out, badValue{"KEEPINTVL", "-1", intvl})
	for _, v := range []string{"0", "128", "5s", "x", ""} {
		out = append(out, badValue{"KADIAG_KEEPCNT", v, cnt})
	}
	out = append(out, badValue{"KEEPCNT", "1000", cnt})
	for _, v := range []string{"0", "-1", "abc", "2147484s", "1.5s"} {
		out = append(out, badValue{"KADIAG_USER_TIMEOUT", v, std})
	}
	out = append(out, badValue{"KADIAG_KEEPALIVE", "maybe", std})
	out = append(out, badValue{"KADIAG_ENFORCE", "2", std})
	out = append(out, badValue{"KADIAG_DEBUG", "please", std})
	return out
}

// TestBadValues runs the real library with every bad value: one warning
// line on stderr naming the variable, the value and the accepted form, that
// setting at the kernel default, the rest configured, the process running on.
// FromEnviron must agree with the library on each.
func TestBadValues(t *testing.T) {
	bin := client(t, "gcc")
	so := lib(t, amd64Glibc)
	kernel := kernelDefaults(t)
	addr := listen(t, "tcp4", "127.0.0.1:0")
	host, port := hostPort(t, addr)
	for _, bv := range badValues() {
		t.Run(bv.name+"="+bv.value, func(t *testing.T) {
			setting := bv.name + "=" + bv.value
			p := start(t, []string{"LD_PRELOAD=" + so, setting}, bin, "tcp4", host, port, "_", "weaken")
			in := parseOpts(t, p.line(t))
			if want := bv.want(kernel); in != want {
				t.Errorf("%s: %v, want %v", setting, in, want)
			}
			p.stdin.Close()
			if err := p.cmd.Wait(); err != nil {
				t.Errorf("client did not run on: %v", err)
			}
			lines := strings.Split(strings.TrimSpace(p.stderr.String()), "\n")
			if len(lines) != 1 || !strings.Contains(lines[0], bv.name+`="`+bv.value+`"`) || !strings.Contains(lines[0], "want ") {
				t.Errorf("stderr %q: want one line naming %s, %q and the accepted form", p.stderr, bv.name, bv.value)
			}
			_, warns := FromEnviron([]string{setting})
			if len(warns) != 1 || warns[0] != (Warning{bv.name, bv.value}) {
				t.Errorf("FromEnviron(%q) warnings %v, the library warned %q", setting, warns, p.stderr)
			}
		})
	}
}

// TestDebugLine: KADIAG_DEBUG=1 prints one line per managed socket, nothing
// for others, and nothing on stdout.
func TestDebugLine(t *testing.T) {
	bin := client(t, "gcc")
	so := lib(t, amd64Glibc)
	addr := listen(t, "tcp6", "[::1]:0")
	host, port := hostPort(t, addr)
	p := start(t, []string{"LD_PRELOAD=" + so, "KADIAG_DEBUG=1", "KADIAG_KEEPIDLE=20"}, bin, "tcp6", host, port, "_")
	p.line(t)
	p.stdin.Close()
	p.cmd.Wait()
	got := strings.TrimSpace(p.stderr.String())
	if strings.Count(got, "\n") != 0 || !strings.Contains(got, "AF_INET6 keepalive on idle=20 intvl=15 cnt=4 user_timeout_ms=default") {
		t.Errorf("debug output %q", got)
	}
}

func TestFromEnviron(t *testing.T) {
	tests := []struct {
		env  []string
		want Config
	}{
		{nil, Defaults()},
		{[]string{"KEEPIDLE=30", "KADIAG_KEEPIDLE=5m", "KEEPCNT=2"}, Config{Idle: 5 * time.Minute, Interval: 15 * time.Second, Count: 2}},
		{[]string{"KADIAG_USER_TIMEOUT=1500ms", "KADIAG_ENFORCE=off"}, Config{Idle: time.Minute, Interval: 15 * time.Second, Count: 4, UserTimeout: 1500 * time.Millisecond, NoEnforce: true}},
		{[]string{"KADIAG_KEEPALIVE=off"}, Config{Idle: time.Minute, Interval: 15 * time.Second, Count: 4, Off: true}},
		{[]string{"KADIAG_KEEPIDLE=1h", "KADIAG_KEEPINTVL=32767", "KADIAG_KEEPCNT=127"}, Config{Idle: time.Hour, Interval: 32767 * time.Second, Count: 127}},
	}
	for _, tt := range tests {
		got, warns := FromEnviron(tt.env)
		if got != tt.want || len(warns) != 0 {
			t.Errorf("FromEnviron(%v) = %+v %v, want %+v", tt.env, got, warns, tt.want)
		}
	}
}

func TestEnv(t *testing.T) {
	env, err := Env("/opt/kadiag/libkadiag_keepalive.so", Config{Idle: 2 * time.Minute, Interval: 10 * time.Second, Count: 3, UserTimeout: 90 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	var pairs []string
	for _, e := range env {
		pairs = append(pairs, e.Name+"="+e.Value)
	}
	// What Env emits, the library must read back as the same settings.
	got, warns := FromEnviron(pairs)
	want := Config{Idle: 2 * time.Minute, Interval: 10 * time.Second, Count: 3, UserTimeout: 90 * time.Second}
	if got != want || len(warns) != 0 || pairs[0] != "LD_PRELOAD=/opt/kadiag/libkadiag_keepalive.so" {
		t.Errorf("Env round trip: %v -> %+v %v", pairs, got, warns)
	}
	for _, bad := range []Config{{Idle: 40000 * time.Second}, {Count: 128}, {Interval: 1500 * time.Millisecond}, {UserTimeout: -1}} {
		if _, err := Env("/x/lib.so", bad); err == nil {
			t.Errorf("Env accepted %+v", bad)
		}
	}
	if _, err := Env("libkadiag_keepalive.so", Defaults()); err == nil {
		t.Error("Env accepted a library path without a slash")
	}
}
