package reports

import (
	"fmt"
	"io"
	"strings"
	"time"

	"github.com/kadiag/kadiag/internal/label"
	"github.com/kadiag/kadiag/preload"
)

// PreloadExtract is the result of `kadiag preload extract`: the table form
// is the absolute path alone, so scripts can use $(kadiag preload extract ...).
type PreloadExtract struct {
	Schema string `json:"schema"`
	Path   string `json:"path"`
	Libc   string `json:"libc"`
	Arch   string `json:"arch"`
}

// NewPreloadExtract wraps an extracted library's path and target.
func NewPreloadExtract(path string, t preload.Target) PreloadExtract {
	return PreloadExtract{Schema: "kadiag.preload.extract/v1", Path: path, Libc: string(t.Libc), Arch: t.Arch}
}

// WriteTable prints the path.
func (r PreloadExtract) WriteTable(w io.Writer) error {
	_, err := fmt.Fprintln(w, r.Path)
	return err
}

// JUnit is one passing case naming the file.
func (r PreloadExtract) JUnit() Suites {
	var s Suites
	s.Add(Suite{Name: "kadiag preload extract", Cases: []Case{{Name: r.Path, Classname: "preload.extract." + r.Arch + "-" + r.Libc}}})
	return s
}

// Env output formats.
const (
	EnvShell  = "shell"
	EnvK8s    = "k8s"
	EnvDocker = "docker"
)

// PreloadEnv is the result of `kadiag preload env`: the exact environment,
// printed for a shell, a docker env-file or as a Kubernetes patch.
type PreloadEnv struct {
	Schema string           `json:"schema"`
	Format string           `json:"format"`
	Env    []preload.EnvVar `json:"env"`
	K8s    *PreloadK8s      `json:"k8s,omitempty"`
}

// PreloadK8s holds what the Kubernetes patch needs besides the environment.
type PreloadK8s struct {
	Image     string `json:"image"`     // the kadiag image the initContainer runs
	Container string `json:"container"` // the application container to patch
	MountPath string `json:"mount_path"`
	Libc      string `json:"libc"`
}

// WriteTable prints the environment in the chosen format.
func (r PreloadEnv) WriteTable(w io.Writer) error {
	var b strings.Builder
	switch r.Format {
	case EnvDocker:
		b.WriteString("# docker run --env-file FILE (values are taken verbatim)\n")
		for _, e := range r.Env {
			fmt.Fprintf(&b, "%s=%s\n", e.Name, e.Value)
		}
	case EnvK8s:
		if r.K8s == nil {
			return fmt.Errorf("k8s format without k8s settings")
		}
		r.writeK8s(&b)
	default:
		for _, e := range r.Env {
			fmt.Fprintf(&b, "export %s=%s\n", e.Name, shellQuote(e.Value))
		}
	}
	_, err := io.WriteString(w, b.String())
	return err
}

func (r PreloadEnv) writeK8s(b *strings.Builder) {
	k := r.K8s
	q := yamlQuote
	fmt.Fprintf(b, `# Strategic merge patch for a Deployment, StatefulSet, DaemonSet or Job:
#   kubectl patch deployment NAME --patch-file kadiag-preload.yaml
# An initContainer extracts the library from the kadiag image into an
# emptyDir; the application container %s mounts it and preloads it.
spec:
  template:
    spec:
      volumes:
        - name: kadiag-preload
          emptyDir: {}
      initContainers:
        - name: kadiag-preload
          image: %s
          command: ["kadiag", "preload", "extract", "--dir", %s, "--libc", %s, "--arch", "auto"]
          volumeMounts:
            - name: kadiag-preload
              mountPath: %s
      containers:
        - name: %s
          volumeMounts:
            - name: kadiag-preload
              mountPath: %s
              readOnly: true
          env:
`, q(k.Container), q(k.Image), q(k.MountPath), q(k.Libc), q(k.MountPath), q(k.Container), q(k.MountPath))
	for _, e := range r.Env {
		fmt.Fprintf(b, "            - name: %s\n              value: %s\n", e.Name, q(e.Value))
	}
}

// JUnit is one passing case per variable.
func (r PreloadEnv) JUnit() Suites {
	var s Suites
	var cases []Case
	for _, e := range r.Env {
		cases = append(cases, Case{Name: e.Name + "=" + e.Value, Classname: "preload.env"})
	}
	s.Add(Suite{Name: "kadiag preload env", Cases: cases})
	return s
}

// shellQuote quotes for POSIX shells when needed.
func shellQuote(s string) string {
	if s != "" && strings.Trim(s, "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789/._-:=+,") == "" {
		return s
	}
	return "'" + strings.ReplaceAll(s, "'", `'\''`) + "'"
}

// yamlQuote writes a YAML double-quoted scalar.
func yamlQuote(s string) string {
	r := strings.NewReplacer(`\`, `\\`, `"`, `\"`, "\n", `\n`, "\t", `\t`)
	return `"` + r.Replace(s) + `"`
}

// PreloadCheck renders preload.Check's answer.
type PreloadCheck struct {
	*preload.CheckResult
}

// WriteTable prints the verdict, why, what to do, and the sockets.
func (r PreloadCheck) WriteTable(w io.Writer) error {
	c := r.CheckResult
	var b strings.Builder
	verdict := "EFFECTIVE"
	if !c.Effective {
		verdict = "NOT EFFECTIVE"
	}
	fmt.Fprintf(&b, "pid %d (%s): preload %s\n", c.PID, label.Clean(c.Comm), verdict)
	kind := "dynamic, " + string(c.Binary.Libc)
	switch {
	case c.Binary.GoVersion != "":
		kind = "Go " + c.Binary.GoVersion
	case c.Binary.Static:
		kind = "static"
	}
	if c.Binary.Setuid || c.Binary.FileCaps || c.Binary.SecureExec {
		kind += ", secure-execution"
	}
	fmt.Fprintf(&b, "  program:  %s (%s)\n", c.Binary.Path, kind)
	lib := "not mapped"
	if c.Library.Mapped {
		lib = "mapped " + c.Library.Path
	}
	if c.Library.Libc != "" {
		lib += " (" + string(c.Library.Libc) + " build)"
	}
	fmt.Fprintf(&b, "  library:  %s; LD_PRELOAD=%q\n", lib, c.Library.Preload)
	cfg := c.Config
	if cfg.Off {
		fmt.Fprintf(&b, "  settings: KADIAG_KEEPALIVE=off (inert)\n")
	} else {
		fmt.Fprintf(&b, "  settings: idle %s, interval %s, count %s, user timeout %s, enforce %v\n",
			setting(cfg.Idle), setting(cfg.Interval), count(cfg.Count), setting(cfg.UserTimeout), !cfg.NoEnforce)
	}
	for _, s := range c.Reasons {
		fmt.Fprintf(&b, "  why:      %s\n", s)
	}
	for _, s := range c.Advice {
		fmt.Fprintf(&b, "  do:       %s\n", s)
	}
	for _, s := range c.Notes {
		fmt.Fprintf(&b, "  note:     %s\n", s)
	}
	if _, err := io.WriteString(w, b.String()); err != nil {
		return err
	}
	if len(c.Sockets) == 0 {
		return nil
	}
	fmt.Fprintln(w)
	tw := NewTable(w)
	fmt.Fprintln(tw, "FD\tSTATE\tLOCAL\tREMOTE\tKEEPALIVE\tIDLE\tINTVL\tCNT\tUSER-TIMEOUT\tOK")
	for _, s := range c.Sockets {
		state, ka, ok := s.State, "off", "ok"
		if s.Keepalive {
			ka = "on"
		}
		if !s.OK {
			ok = "NO: " + s.Problem
		}
		fmt.Fprintf(tw, "%d\t%s\t%s\t%s\t%s\t%s\t%s\t%d\t%s\t%s\n", s.FD, state, s.Local, dash(s.Remote), ka,
			HumanDuration(s.Idle), HumanDuration(s.Interval), s.Count, userTimeout(s.UserTimeout), ok)
	}
	return tw.Flush()
}

// userTimeout renders a socket's TCP_USER_TIMEOUT; zero means none is set,
// shown as in the sockets table.
func userTimeout(d time.Duration) string {
	if d == 0 {
		return "-"
	}
	return HumanDuration(d)
}

func setting(d time.Duration) string {
	if d == 0 {
		return "kernel default"
	}
	return HumanDuration(d)
}

func count(n int) string {
	if n == 0 {
		return "kernel default"
	}
	return fmt.Sprint(n)
}

func dash(s string) string {
	if s == "" {
		return "-"
	}
	return s
}

// JUnit is one case for the verdict and one per socket.
func (r PreloadCheck) JUnit() Suites {
	c := r.CheckResult
	verdict := Case{Name: fmt.Sprintf("pid %d (%s) preload effective", c.PID, label.Clean(c.Comm)), Classname: "preload.check"}
	if !c.Effective {
		verdict.Failure = &Failure{Message: strings.Join(c.Reasons, "; "), Text: strings.Join(c.Advice, "\n")}
	}
	cases := []Case{verdict}
	for _, s := range c.Sockets {
		sc := Case{Name: fmt.Sprintf("fd %d %s -> %s", s.FD, s.Local, dash(s.Remote)), Classname: "preload.check.socket"}
		if !s.OK {
			sc.Failure = &Failure{Message: s.Problem}
		}
		cases = append(cases, sc)
	}
	var s Suites
	s.Add(Suite{Name: "kadiag preload check", Cases: cases})
	return s
}
