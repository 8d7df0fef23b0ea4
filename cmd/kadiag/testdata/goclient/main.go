// A Go client for kadiag doctor's tests: dials HOST:PORT with keepalive
// turned off (KeepAlive < 0, as some libraries do), prints "ready" and holds
// the connection until stdin closes.
package main

import (
	"fmt"
	"io"
	"net"
	"os"
)

func main() {
	d := net.Dialer{KeepAlive: -1}
	c, err := d.Dial("tcp", os.Args[1])
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(2)
	}
	defer c.Close()
	fmt.Println("ready")
	io.Copy(io.Discard, os.Stdin)
}
