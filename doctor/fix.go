package doctor

import (
	"fmt"
	"path/filepath"
	"strings"
	"time"

	"github.com/kadiag/kadiag/inspect"
	"github.com/kadiag/kadiag/preload"
)

// keepalive returns the timings the fixes recommend: the library's defaults
// (idle 60 s, interval 15 s, 4 probes), shortened for a middlebox that
// forgets sooner, so the first probe always leaves at half its timeout.
func keepalive(maxIdle time.Duration) (idle, intvl time.Duration, cnt int) {
	idle, intvl, cnt = preload.DefaultIdle, preload.DefaultInterval, preload.DefaultCount
	if half := (maxIdle / 2).Truncate(time.Second); half < idle {
		idle = max(half, time.Second)
		intvl = max((idle / 4).Truncate(time.Second), time.Second)
	}
	return idle, intvl, cnt
}

// fixes lists what to change for this runtime, best first. A healthy
// process needs none.
func fixes(r *Result, o Options) []Fix {
	if r.Healthy {
		return []Fix{}
	}
	maxIdle := time.Duration(r.MaxIdleS) * time.Second
	idle, intvl, cnt := keepalive(maxIdle)
	secs := func(d time.Duration) int { return int(d / time.Second) }
	var out []Fix
	rt := r.Runtime
	libc := rt.Libc
	if libc == "" {
		libc = string(preload.Glibc)
	}
	if rt.Preloadable() {
		lib := filepath.Join(o.LibDir, preload.LibraryName)
		env, err := preload.Env(lib, preload.Config{Idle: idle, Interval: intvl, Count: cnt})
		if err == nil {
			var b strings.Builder
			fmt.Fprintf(&b, "kadiag preload extract --dir %s --libc %s\n", o.LibDir, libc)
			for _, e := range env {
				fmt.Fprintf(&b, "export %s=%s\n", e.Name, e.Value)
			}
			fmt.Fprintf(&b, "# then restart %s from this shell\n", rt.Exe)
			out = append(out, Fix{Kind: "env", Title: "No code change: preload the keepalive library and restart", Lang: "sh", Text: b.String(),
				Why: fmt.Sprintf("the library turns SO_KEEPALIVE on for every TCP socket the process opens (first probe after %ds idle) and, in enforce mode, keeps it on when the application turns it off", secs(idle))})
		}
		switch {
		case r.Container.Kubernetes:
			out = append(out, Fix{Kind: "kubernetes", Title: "Kubernetes: an initContainer ships the library, the pod preloads it", Lang: "sh",
				Text: fmt.Sprintf("kadiag preload env --format k8s --container %s --libc %s --keepidle %ds --keepintvl %ds --keepcnt %d > kadiag-preload.yaml\nkubectl patch deployment NAME --patch-file kadiag-preload.yaml\n",
					o.Container, libc, secs(idle), secs(intvl), cnt),
				Why: "the patch adds an emptyDir, an initContainer that extracts the library into it, and LD_PRELOAD plus KADIAG_* variables on the application container; the pods restart with it"})
		case r.Container.InContainer:
			out = append(out, Fix{Kind: "env", Title: "Container: bake the library into the image or mount it, and pass the environment", Lang: "sh",
				Text: fmt.Sprintf("kadiag preload extract --dir ./kadiag --libc %s\nkadiag preload env --format docker --lib /opt/kadiag/%s --keepidle %ds > kadiag.env\ndocker run -v \"$PWD/kadiag:/opt/kadiag:ro\" --env-file kadiag.env IMAGE\n",
					libc, preload.LibraryName, secs(idle)),
				Why: "the library must exist inside the container's filesystem at the path LD_PRELOAD names, built for the container's libc"})
		}
	}
	switch rt.Kind {
	case KindJVM:
		why := "JDK 11 and later (and 8u272+) set per-socket keepalive timings through jdk.net.ExtendedSocketOptions; there is no JVM-wide default, so every client that opens sockets needs it (HTTP clients: through their socket factory or connection manager)"
		if v := rt.Version; strings.HasPrefix(v, "1.8") || strings.HasPrefix(v, "1.7") {
			why = "this JVM is " + v + ": jdk.net.ExtendedSocketOptions keepalive timings need 8u272 or JDK 11+; older ones only have setKeepAlive(true), which probes after the kernel's tcp_keepalive_time"
		}
		out = append(out, Fix{Kind: "java", Title: "Code change (Java): turn keepalive on per socket", Lang: "java", Why: why,
			Text: fmt.Sprintf(`import jdk.net.ExtendedSocketOptions;

socket.setKeepAlive(true);
socket.setOption(ExtendedSocketOptions.TCP_KEEPIDLE, %d);     // seconds idle before the first probe
socket.setOption(ExtendedSocketOptions.TCP_KEEPINTERVAL, %d); // seconds between unanswered probes
socket.setOption(ExtendedSocketOptions.TCP_KEEPCOUNT, %d);    // unanswered probes before the connection fails
`, secs(idle), secs(intvl), cnt)})
	case KindGo:
		out = append(out, Fix{Kind: "go", Title: "Code change (Go): keepalive on the dialer", Lang: "go",
			Why: "LD_PRELOAD does not reach Go programs (they make system calls directly). Go dials with keepalive every 15s by default since 1.13, so an at-risk socket means a Dialer with KeepAlive < 0, a library with its own dialer, or a connection made outside net.Dialer; KeepAliveConfig needs Go 1.23+ (before: KeepAlive sets idle and interval together)",
			Text: fmt.Sprintf(`d := &net.Dialer{
	KeepAliveConfig: net.KeepAliveConfig{
		Enable:   true,
		Idle:     %d * time.Second,
		Interval: %d * time.Second,
		Count:    %d,
	},
}
// HTTP: http.Transport{DialContext: d.DialContext}; before Go 1.23: net.Dialer{KeepAlive: %d * time.Second}
`, secs(idle), secs(intvl), cnt, secs(idle))})
	case KindPython:
		out = append(out, Fix{Kind: "python", Title: "Code change (Python): turn keepalive on per socket", Lang: "python",
			Why: "Python sockets (and requests, httpx, urllib3 through their socket options) start with keepalive off",
			Text: fmt.Sprintf(`sock.setsockopt(socket.SOL_SOCKET, socket.SO_KEEPALIVE, 1)
sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_KEEPIDLE, %d)
sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_KEEPINTVL, %d)
sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_KEEPCNT, %d)
`, secs(idle), secs(intvl), cnt)})
	default:
		if !rt.Preloadable() {
			why := "LD_PRELOAD cannot reach a statically linked program (there is no dynamic loader to preload with)"
			if rt.SecureExec {
				why = "the dynamic loader ignores LD_PRELOAD with a path for setuid and file-capability programs (secure-execution mode)"
			}
			out = append(out, Fix{Kind: "rebuild", Title: "Code change: set SO_KEEPALIVE and TCP_KEEPIDLE on the program's sockets", Lang: "c", Why: why,
				Text: fmt.Sprintf("int on = 1, idle = %d, intvl = %d, cnt = %d;\nsetsockopt(fd, SOL_SOCKET, SO_KEEPALIVE, &on, sizeof on);\nsetsockopt(fd, IPPROTO_TCP, TCP_KEEPIDLE, &idle, sizeof idle);\nsetsockopt(fd, IPPROTO_TCP, TCP_KEEPINTVL, &intvl, sizeof intvl);\nsetsockopt(fd, IPPROTO_TCP, TCP_KEEPCNT, &cnt, sizeof cnt);\n",
					secs(idle), secs(intvl), cnt)})
		}
	}
	// kadiag fix needs neither LD_PRELOAD nor a restart: the best fix where
	// the preload cannot work, the one for "no restart possible" elsewhere.
	live := liveFix(r, idle, intvl, cnt)
	if rt.Preloadable() {
		out = append(out, live)
	} else {
		out = append([]Fix{live}, out...)
	}
	out = append(out, sysctlFix(r, idle))
	return out
}

// liveFix prescribes kadiag fix in both forms: the sockets the process
// holds now, and every connection its cgroup makes from now on.
func liveFix(r *Result, idle, intvl time.Duration, cnt int) Fix {
	flags := fmt.Sprintf("--keepidle %ds --keepintvl %ds --keepcnt %d", int(idle/time.Second), int(intvl/time.Second), cnt)
	title := "No restart: kadiag fix turns keepalive on in the running process and its cgroup"
	if !r.Runtime.Preloadable() {
		title = "No code change, no restart: kadiag fix (the preload cannot reach this program)"
	}
	return Fix{Kind: "fix", Title: title, Lang: "sh",
		Text: fmt.Sprintf("sudo kadiag fix --pid %d %s             # the connections it holds now\nsudo kadiag fix --pid %d --cgroup-of %s # every connection its cgroup opens from now on\n", r.PID, flags, r.PID, flags),
		Why:  "the first sets the options on the process's open sockets (pidfd_getfd + setsockopt, read back); the second attaches BPF programs to its cgroup v2 that set them on every new connection and keep them on when the application turns keepalive off; any language, static binaries included (docs/fix.md)"}
}

// sysctlFix says whether lowering net.ipv4.tcp_keepalive_time helps: only
// for sockets that already have SO_KEEPALIVE on and left the idle time at
// the namespace's default.
func sysctlFix(r *Result, idle time.Duration) Fix {
	var off, onDefault, onOwn int
	for _, s := range r.Sockets {
		if s.Verdict != inspect.AtRisk {
			continue
		}
		switch {
		case !s.Keepalive.Enabled:
			off++
		case s.Keepalive.IdleS == r.Sysctl.KeepaliveTime:
			onDefault++
		default:
			onOwn++
		}
	}
	secs := int(idle / time.Second)
	if off == 0 && onOwn == 0 && onDefault > 0 {
		return Fix{Kind: "sysctl", Title: "Lower the namespace's keepalive time: these sockets already have keepalive on", Lang: "sh",
			Text: fmt.Sprintf("sysctl -w net.ipv4.tcp_keepalive_time=%d   # inside the process's network namespace\n# Kubernetes (1.29+, a safe sysctl): spec.securityContext.sysctls: [{name: net.ipv4.tcp_keepalive_time, value: \"%d\"}]\n", secs, secs),
			Why:  "the at-risk sockets turned SO_KEEPALIVE on but kept the kernel's idle time, which the sysctl sets; it is per network namespace, so set it where the process runs and restart nothing"}
	}
	why := fmt.Sprintf("net.ipv4.tcp_keepalive_time, _intvl and _probes (per network namespace; Kubernetes safe sysctls since 1.29) only time the probes of sockets that turned SO_KEEPALIVE on. %d at-risk socket(s) of this process have keepalive off, so no sysctl value makes them send a probe", off)
	if off == 0 {
		why = "the at-risk sockets set their own idle time, which overrides the sysctl"
	}
	return Fix{Kind: "sysctl", Title: "Why a sysctl alone does not help", Why: why}
}
