package simulate

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/vishvananda/netns"
)

// ErrServer is returned (wrapped) when the user's --server command does not
// start or never accepts connections.
var ErrServer = errors.New("--server")

// serverWait is how long the user's server gets to start listening.
const serverWait = 15 * time.Second

// userServer is the user's own server, running in the server namespace as
// PID 1 of a PID namespace of its own, in its own process group.
type userServer struct {
	cmd    *exec.Cmd
	waited chan error
}

// startUserServer starts words in ns with {listen}, {host} and {port}
// substituted and KADIAG_LISTEN set, and returns once it accepts a
// connection on that address.
func startUserServer(ctx context.Context, ns netns.NsHandle, words []string, addr net.IP, port int, who identity, out io.Writer) (*userServer, error) {
	listen := net.JoinHostPort(addr.String(), strconv.Itoa(port))
	args := make([]string, len(words))
	for i, w := range words {
		w = strings.ReplaceAll(w, "{listen}", listen)
		w = strings.ReplaceAll(w, "{host}", addr.String())
		args[i] = strings.ReplaceAll(w, "{port}", strconv.Itoa(port))
	}
	name := strings.Join(words, " ")
	cmd := exec.Command(args[0], args[1:]...)
	cmd.Env = append(append(os.Environ(), who.env...), "KADIAG_LISTEN="+listen)
	cmd.Stdout, cmd.Stderr = out, out
	cmd.SysProcAttr = &syscall.SysProcAttr{Cloneflags: syscall.CLONE_NEWPID, Credential: who.cred}
	if err := startIn(ns, cmd); err != nil {
		return nil, fmt.Errorf("%w %q: %w", ErrServer, name, err)
	}
	s := &userServer{cmd: cmd, waited: make(chan error, 1)}
	go func() { s.waited <- cmd.Wait() }()
	deadline := time.Now().Add(serverWait)
	for {
		err := inNetns(ns, func() error {
			c, err := net.DialTimeout("tcp", listen, 200*time.Millisecond)
			if err == nil {
				c.Close()
			}
			return err
		})
		if err == nil {
			return s, nil
		}
		select {
		case werr := <-s.waited:
			s.waited <- werr
			s.Close()
			return nil, fmt.Errorf("%w %q exited (%v) before it listened on %s (it must listen on {listen} or $KADIAG_LISTEN)", ErrServer, name, werr, listen)
		case <-ctx.Done():
			s.Close()
			return nil, ctx.Err()
		case <-time.After(20 * time.Millisecond):
		}
		if time.Now().After(deadline) {
			s.Close()
			return nil, fmt.Errorf("%w %q did not listen on %s within %s (it must listen on {listen} or $KADIAG_LISTEN)", ErrServer, name, listen, serverWait)
		}
	}
}

// Close kills the server with everything it started.
func (s *userServer) Close() error {
	killGroup(s.cmd)
	<-s.waited
	s.waited <- nil
	return nil
}
