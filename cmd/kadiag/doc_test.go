package main

import (
	"context"
	"flag"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/kadiag/kadiag/internal/testenv"
	"github.com/kadiag/kadiag/middlebox"
	"github.com/kadiag/kadiag/preload"
)

// updateDocs rewrites the output of the docs' console blocks that no longer
// match with what the commands print now (blocks that differ only in
// ignored values, such as timers, keep their text):
// go test ./cmd/kadiag -run TestDocs -update-docs
var updateDocs = flag.Bool("update-docs", false, "rewrite the expected output of the docs' console blocks")

// docFiles are the documents whose examples are tested.
func docFiles(t *testing.T) []string {
	files, err := filepath.Glob("../../docs/*.md")
	if err != nil {
		t.Fatal(err)
	}
	return append([]string{"../../README.md"}, files...)
}

// consoleBlock is a ```console block: commands after "$ " and the output
// each one prints.
type consoleBlock struct {
	file        string
	start, end  int // line indexes of the fences
	notRun      string
	fuzzyTimes  bool
	commands    []string
	outputs     [][]string
	commandLine []int
}

// notRunMarker, on the line before a console block, says in the doc itself
// why the block is not run.
const notRunMarker = "*Not run by the doc tests:"

func parseConsoleBlocks(t *testing.T, file string) ([]string, []*consoleBlock) {
	b, err := os.ReadFile(file)
	if err != nil {
		t.Fatal(err)
	}
	lines := strings.Split(string(b), "\n")
	var blocks []*consoleBlock
	for i := 0; i < len(lines); i++ {
		if strings.TrimSpace(lines[i]) != "```console" {
			continue
		}
		blk := &consoleBlock{file: file, start: i}
		for p := i - 1; p >= 0 && p >= i-4; p-- {
			l := strings.TrimSpace(lines[p])
			switch {
			case strings.HasPrefix(l, notRunMarker):
				blk.notRun = strings.TrimSuffix(strings.TrimPrefix(l, notRunMarker), "*")
			case l == "<!-- doctest: fuzzy-times -->":
				blk.fuzzyTimes = true
			}
		}
		j := i + 1
		for ; j < len(lines) && strings.TrimSpace(lines[j]) != "```"; j++ {
			l := lines[j]
			if strings.HasPrefix(l, "$ ") {
				cmd := strings.TrimPrefix(l, "$ ")
				blk.commandLine = append(blk.commandLine, j)
				for strings.HasSuffix(cmd, "\\") && j+1 < len(lines) {
					j++
					cmd = strings.TrimSuffix(cmd, "\\") + "\n" + lines[j]
				}
				blk.commands = append(blk.commands, cmd)
				blk.outputs = append(blk.outputs, nil)
				continue
			}
			if len(blk.commands) == 0 {
				t.Fatalf("%s:%d: console block output before any '$ ' command", file, j+1)
			}
			blk.outputs[len(blk.outputs)-1] = append(blk.outputs[len(blk.outputs)-1], l)
		}
		blk.end = j
		i = j
		blocks = append(blocks, blk)
	}
	return lines, blocks
}

// docEnv is the world the docs' examples run in: a client and a server
// namespace on veth (the server 198.18.80.1 accepts and never answers), an
// example Python client holding one connection with keepalive off and one
// tuned ($PID), a JDK client ($JAVA_PID), the same Python client started
// with the preload library ($FIXED_PID), another that docs/fix.md fixes
// ($FIX_PID), and a working directory with a
// capture (client.pcap; dump.pcapng.gz, the same as gzip-compressed
// pcapng), a text file (notes.txt) and the JSON schemas (schema/).
type docEnv struct {
	env     []string
	dir     string
	pids    map[string]int
	replace []string           // actual -> as the docs show it
	mu      sync.Mutex         // guards ran
	ran     map[string]*docRun // command -> its run
}

// The values the docs show for what changes from run to run.
const (
	docDir = "/srv/app"
)

var docPIDs = map[string]int{"PID": 4242, "JAVA_PID": 4343, "FIXED_PID": 4444, "FIX_PID": 4545}

func newDocEnv(t *testing.T) *docEnv {
	l := newSockLab(t, 80)
	testenv.Need(t, "java", "bash")
	e := &docEnv{pids: map[string]int{}, ran: map[string]*docRun{}}
	e.dir = t.TempDir()
	os.Chmod(e.dir, 0o755)
	wd, _ := os.Getwd()
	copyFile(t, filepath.Join(wd, "../../testdata/capture/eth.pcap"), filepath.Join(e.dir, "client.pcap"))
	copyFile(t, filepath.Join(wd, "../../testdata/capture/multi.pcapng.gz"), filepath.Join(e.dir, "dump.pcapng.gz"))
	os.Mkdir(filepath.Join(e.dir, "schema"), 0o755)
	schemas, _ := filepath.Glob(filepath.Join(wd, "../../docs/schema/*.json"))
	for _, f := range schemas {
		copyFile(t, f, filepath.Join(e.dir, "schema", filepath.Base(f)))
	}
	os.WriteFile(filepath.Join(e.dir, "notes.txt"), []byte("These are notes, not packets: a text file.\n"), 0o644)
	e.pids["PID"], _ = startReady(t, l.client.Command(python3(t), filepath.Join(wd, "testdata/keepalive_client.py"), l.link.A4, "8080"))
	e.pids["JAVA_PID"], _ = startReady(t, l.client.Command("java", filepath.Join(wd, "testdata/KeepaliveClient.java"), l.link.A4, "8080"))
	// docs/fix.md changes this one's sockets; the others stay as the docs show them.
	e.pids["FIX_PID"], _ = startReady(t, l.client.Command(python3(t), filepath.Join(wd, "testdata/keepalive_client.py"), l.link.A4, "8080"))
	tgt, err := preload.Resolve(preload.Glibc, "")
	if err != nil {
		t.Fatal(err)
	}
	libDir := filepath.Join(e.dir, "kadiag")
	os.Mkdir(libDir, 0o755)
	lib, err := preload.Extract(libDir, tgt)
	if err != nil {
		t.Fatal(err)
	}
	fixed := l.client.Command(python3(t), filepath.Join(wd, "testdata/keepalive_client.py"), l.link.A4, "8080")
	fixed.Env = append(os.Environ(), "LD_PRELOAD="+lib)
	e.pids["FIXED_PID"], _ = startReady(t, fixed)
	bin := buildKadiag(t)
	counterpart := startDocCounterpart(t, bin)
	e.env = append(os.Environ(), "COUNTERPART="+counterpart, "PATH="+filepath.Dir(bin)+":"+os.Getenv("PATH"), "SERVER="+l.link.A4, "NO_COLOR=")
	for name, pid := range e.pids {
		e.env = append(e.env, name+"="+strconv.Itoa(pid))
	}
	e.replace = []string{e.dir, docDir, filepath.Dir(bin), "/usr/local/bin", counterpart, "127.0.0.1:7350"}
	return e
}

func copyFile(t *testing.T, from, to string) {
	b, err := os.ReadFile(from)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(to, b, 0o644); err != nil {
		t.Fatal(err)
	}
}

var (
	ansiSeq     = regexp.MustCompile("\x1b\\[[0-9;]*[mK]")
	netnsID     = regexp.MustCompile(`net:\[\d+\]`)
	ephemeral   = regexp.MustCompile(`(198\.18\.80\.\d+|\[fd00:6b61:50::\d+\]):(\d{5})\b`)
	timerLeft   = regexp.MustCompile(`\b(keepalive|on|persist),[0-9.]+(ms|s|m|h)?,`)
	jdkVersion  = regexp.MustCompile(`\b17\.0\.\d+\b`)
	cgroupPath  = regexp.MustCompile(`cgroup /\S*`)
	containerID = regexp.MustCompile(`\b(container_id|pod_uid)="[^"]*"`)
	anyNumber   = regexp.MustCompile(`\d+(\.\d+)?`)
	spaces      = regexp.MustCompile(`[ \t]+`)
)

// normalise maps what differs between runs to what the docs show: the
// example processes' pids, ephemeral ports and namespace ids (numbered in
// order of appearance), keepalive timers' remaining time, the working
// directory. Real values the examples depend on stay as they are.
func (e *docEnv) normalise(out string) string {
	out = ansiSeq.ReplaceAllString(out, "")
	for i := 0; i+1 < len(e.replace); i += 2 {
		out = strings.ReplaceAll(out, e.replace[i], e.replace[i+1])
	}
	for name, pid := range e.pids {
		// In a table the doc's pid keeps the column width of the real one.
		real, doc := strconv.Itoa(pid), strconv.Itoa(docPIDs[name])
		out = regexp.MustCompile(`\b`+real+`\b(  )?`).ReplaceAllStringFunc(out, func(m string) string {
			if strings.HasSuffix(m, "  ") && len(real) > len(doc) {
				return doc + strings.Repeat(" ", len(real)-len(doc)) + "  "
			}
			return doc + m[len(real):]
		})
	}
	return renumber(out)
}

// renumber gives the doc lab's (198.18.80.0/24) ephemeral ports and namespace ids stable values in order
// of first appearance, so the docs read like one real run.
func renumber(out string) string {
	ports := map[string]string{}
	out = ephemeral.ReplaceAllStringFunc(out, func(m string) string {
		sub := ephemeral.FindStringSubmatch(m)
		if n, _ := strconv.Atoi(sub[2]); n < 32768 {
			return m
		}
		p, ok := ports[sub[2]]
		if !ok {
			p = strconv.Itoa(41000 + len(ports))
			ports[sub[2]] = p
		}
		return sub[1] + ":" + p
	})
	ns := map[string]string{}
	return netnsID.ReplaceAllStringFunc(out, func(m string) string {
		v, ok := ns[m]
		if !ok {
			v = fmt.Sprintf("net:[40265320%02d]", len(ns)+1)
			ns[m] = v
		}
		return v
	})
}

// comparable reduces output to what must match: runs of blanks are one
// (columns widen with longer values), timers' remaining time and, in blocks
// marked fuzzy-times (real-time labs), every number are wildcards.
func comparable(out string, fuzzy bool) string {
	out = timerLeft.ReplaceAllString(out, "$1,T,")
	out = jdkVersion.ReplaceAllString(out, "17.0.x")
	out = cgroupPath.ReplaceAllString(out, "cgroup C")
	// The exporter's labels name the container the test itself runs in, if any.
	out = containerID.ReplaceAllString(out, `$1="C"`)
	if fuzzy {
		// A real-time lab's timings and probe counts move with the
		// machine's load; its words (scenarios, outcomes, verdicts) may not.
		out = anyNumber.ReplaceAllString(out, "N")
	}
	var lines []string
	for _, l := range strings.Split(strings.TrimRight(out, "\n"), "\n") {
		lines = append(lines, strings.TrimSpace(spaces.ReplaceAllString(l, " ")))
	}
	return strings.Join(lines, "\n")
}

func (e *docEnv) run(t *testing.T, command string) string {
	// The same example in two documents (the guide and a command's page)
	// runs once; slow ones were started ahead (prefetch).
	e.mu.Lock()
	done, ok := e.ran[command]
	if !ok {
		done = &docRun{done: make(chan struct{})}
		e.ran[command] = done
	}
	e.mu.Unlock()
	if ok {
		<-done.done
		return done.out
	}
	done.out = e.exec(command)
	close(done.done)
	return done.out
}

// prefetch starts the slow examples (real-time labs) side by side before
// the documents are walked in order.
func (e *docEnv) prefetch(commands []string) {
	for _, c := range commands {
		e.mu.Lock()
		if _, ok := e.ran[c]; ok {
			e.mu.Unlock()
			continue
		}
		r := &docRun{done: make(chan struct{})}
		e.ran[c] = r
		e.mu.Unlock()
		go func() {
			r.out = e.exec(c)
			close(r.done)
		}()
	}
}

// docRun is one example's run; done closes when out is set.
type docRun struct {
	done chan struct{}
	out  string
}

func (e *docEnv) exec(command string) string {
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, "bash", "-c", "set -o pipefail\n"+command)
	cmd.Dir, cmd.Env = e.dir, e.env
	var out strings.Builder
	cmd.Stdout, cmd.Stderr = &out, &out
	if err := cmd.Run(); err != nil {
		if _, ok := err.(*exec.ExitError); !ok {
			out.WriteString("doc test: " + err.Error())
		}
	}
	return e.normalise(out.String())
}

// TestDocs runs every ```console example of README.md and docs/*.md and
// compares its output with what the doc shows, so the docs never drift.
// Blocks the doc itself marks "*Not run by the doc tests: why*" are only
// syntax-checked: every kadiag command line in them must parse.
func TestDocs(t *testing.T) {
	testenv.Privileged(t)
	e := newDocEnv(t)
	var slow []string
	for _, file := range docFiles(t) {
		_, blocks := parseConsoleBlocks(t, file)
		for _, blk := range blocks {
			for _, c := range blk.commands {
				if blk.notRun == "" && strings.Contains(c, "kadiag simulate --preset") {
					slow = append(slow, c)
				}
			}
		}
	}
	e.prefetch(slow)
	ran := 0
	for _, file := range docFiles(t) {
		lines, blocks := parseConsoleBlocks(t, file)
		checkSnippets(t, file, lines)
		changed := false
		// Rewritten back to front, so earlier blocks keep their lines.
		for bi := len(blocks) - 1; bi >= 0; bi-- {
			blk := blocks[bi]
			where := fmt.Sprintf("%s:%d", filepath.Base(file), blk.start+1)
			if blk.notRun != "" {
				for _, c := range blk.commands {
					checkParses(t, where, c)
				}
				continue
			}
			var newOut []string
			differs := false
			for i, c := range blk.commands {
				got := e.run(t, c)
				ran++
				want := strings.Join(blk.outputs[i], "\n")
				if comparable(got, blk.fuzzyTimes) != comparable(want, blk.fuzzyTimes) {
					if !*updateDocs {
						t.Errorf("%s: $ %s\n--- the doc shows:\n%s\n--- the command prints:\n%s", where, c, want, got)
					}
					differs = true
				}
				newOut = append(newOut, "$ "+strings.ReplaceAll(c, "\n", "\\\n"))
				if g := strings.TrimRight(got, "\n"); g != "" {
					newOut = append(newOut, strings.Split(g, "\n")...)
				}
			}
			if *updateDocs && differs {
				tail := append([]string{}, lines[blk.end:]...)
				lines = append(append(lines[:blk.start+1], newOut...), tail...)
				changed = true
			}
		}
		if changed {
			if err := os.WriteFile(file, []byte(strings.Join(lines, "\n")), 0o644); err != nil {
				t.Fatal(err)
			}
			t.Logf("updated %s", file)
		}
	}
	if *updateDocs {
		return
	}
	if ran < 10 {
		t.Errorf("only %d doc commands ran", ran)
	}
	t.Logf("%d doc commands ran", ran)
}

var kadiagInSnippet = regexp.MustCompile(`^(?:[-*]\s+|run:\s+|script:\s+|\$\s+|sudo\s+|\|\s+)*(kadiag\s.*)$`)

// checkSnippets checks the kadiag command lines of every other fenced block
// (sh, yaml, ...): they are not run, but their flags must parse.
func checkSnippets(t *testing.T, file string, lines []string) {
	in, lang := false, ""
	for i, l := range lines {
		tl := strings.TrimSpace(l)
		if strings.HasPrefix(tl, "```") {
			if in {
				in = false
			} else {
				in, lang = true, strings.TrimPrefix(tl, "```")
			}
			continue
		}
		if !in || lang == "console" {
			continue
		}
		if m := kadiagInSnippet.FindStringSubmatch(tl); m != nil {
			checkParses(t, fmt.Sprintf("%s:%d", filepath.Base(file), i+1), m[1])
		}
	}
}

// checkParses runs `kadiag ARGS --help` for every kadiag command in a
// snippet that is not run: the flags must still exist.
func checkParses(t *testing.T, where, snippet string) {
	for _, line := range strings.Split(snippet, "\n") {
		line = strings.TrimSpace(line)
		if i := strings.Index(line, "kadiag "); i >= 0 && (i == 0 || strings.HasPrefix(line, "sudo ")) {
			line = line[i:]
		} else if i := strings.Index(line, " -- kadiag "); i >= 0 {
			line = line[i+4:] // kubectl debug ... -- kadiag ...
		}
		if !strings.HasPrefix(line, "kadiag ") {
			continue
		}
		args := shellFields(strings.TrimPrefix(line, "kadiag "))
		_, stderr, code := runKadiag(t, append(args, "--help")...)
		if code != 0 {
			t.Errorf("%s: %q does not parse: %s", where, line, stderr)
		}
	}
}

// shellFields splits a command line the simple way the docs write them:
// blanks separate, quotes group, a pipe or redirection ends the command, a
// variable or $(...) stands for a value (here "1").
func shellFields(s string) []string {
	var out []string
	words := strings.Fields(s)
	for i := 0; i < len(words); i++ {
		w := words[i]
		if w == "|" || w == "&&" || w == ";" || strings.HasPrefix(w, "#") || strings.HasPrefix(w, ">") || strings.HasPrefix(w, "2>") || w == "--" {
			break
		}
		if strings.HasPrefix(w, "$(") || strings.HasPrefix(w, "\"$(") {
			for i < len(words) && !strings.Contains(words[i], ")") {
				i++
			}
			out = append(out, "1")
			continue
		}
		w = strings.Trim(w, `"'`)
		if strings.Contains(w, "$") {
			w = "1"
		}
		out = append(out, w)
	}
	return out
}

// TestMiddleboxTable: every preset kadiag knows is in the docs' table, on a
// row that states its idle timeout, so the table and the presets agree.
func TestMiddleboxTable(t *testing.T) {
	b, err := os.ReadFile("../../docs/middleboxes.md")
	if err != nil {
		t.Fatal(err)
	}
	for _, p := range middlebox.Presets() {
		var row string
		for _, l := range strings.Split(string(b), "\n") {
			if strings.HasPrefix(l, "|") && strings.Contains(l, "`"+p.Name+"`") {
				row = l
			}
		}
		if row == "" {
			t.Errorf("preset %s is not in docs/middleboxes.md", p.Name)
			continue
		}
		s := int(p.Idle / time.Second)
		forms := []string{fmt.Sprintf("%d s", s)}
		if s%60 == 0 {
			forms = append(forms, fmt.Sprintf("%d min", s/60))
		}
		found := false
		for _, f := range forms {
			found = found || strings.Contains(row, f)
		}
		word := map[middlebox.AfterExpiry]string{middlebox.Reset: "RST", middlebox.Drop: "silent", middlebox.Heal: "re-creates"}[p.After]
		if !found || !strings.Contains(row, word) {
			t.Errorf("preset %s (%v, %s) disagrees with its row: %s", p.Name, p.Idle, p.After, row)
		}
	}
}
