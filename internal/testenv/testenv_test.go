package testenv

import (
	"net"
	"testing"
)

func TestConnectPair(t *testing.T) {
	a, b := NewNetns(t), NewNetns(t)
	l := Connect(t, a, b, 7)
	for _, addr := range []string{net.JoinHostPort(l.B4, "9"), net.JoinHostPort(l.B6, "9")} {
		var ln net.Listener
		if err := b.Do(func() (err error) { ln, err = net.Listen("tcp", addr); return err }); err != nil {
			t.Fatalf("listen %s in b: %v", addr, err)
		}
		var c net.Conn
		if err := a.Do(func() (err error) { c, err = net.Dial("tcp", addr); return err }); err != nil {
			t.Fatalf("dial %s from a: %v", addr, err)
		}
		s, err := ln.Accept()
		if err != nil {
			t.Fatal(err)
		}
		if got := s.RemoteAddr().(*net.TCPAddr).IP.String(); got != l.A4 && got != l.A6 {
			t.Errorf("peer address %s, want one of a's", got)
		}
		c.Close()
		s.Close()
		ln.Close()
	}
	out, err := a.Command("ip", "-br", "addr").CombinedOutput()
	if err != nil {
		t.Fatalf("ip in netns: %v %s", err, out)
	}
}
