// A Go server for kadiag's tests: net.Listen on ADDR, which Go ≥ 1.24 makes
// an MPTCP listener (SO_PROTOCOL 262), prints "ready" and holds it until
// stdin closes.
package main

import (
	"fmt"
	"io"
	"net"
	"os"
)

func main() {
	ln, err := net.Listen("tcp", os.Args[1])
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(2)
	}
	defer ln.Close()
	fmt.Println("ready")
	io.Copy(io.Discard, os.Stdin)
}
