// Command sockhold opens or accepts many TCP connections and holds them, for
// the kadiag sockets benchmark (scripts/bench/sockets.sh).
//
//	sockhold serve ADDR            accept and hold every connection
//	sockhold dial ADDR N           open N connections, every other one with
//	                               keepalive 60 s / 10 s / 5, the rest without
//
// Both raise the soft RLIMIT_NOFILE to the hard limit, print "ready" when
// done and hold their connections until killed.
package main

import (
	"fmt"
	"net"
	"os"
	"os/signal"
	"runtime"
	"strconv"
	"sync"
	"syscall"
	"time"
)

func main() {
	if len(os.Args) < 3 {
		fmt.Fprintln(os.Stderr, "usage: sockhold serve ADDR | dial ADDR N")
		os.Exit(2)
	}
	var lim syscall.Rlimit
	if err := syscall.Getrlimit(syscall.RLIMIT_NOFILE, &lim); err == nil {
		lim.Cur = lim.Max
		syscall.Setrlimit(syscall.RLIMIT_NOFILE, &lim)
	}
	var held []net.Conn
	var mu sync.Mutex
	switch os.Args[1] {
	case "serve":
		ln, err := net.Listen("tcp", os.Args[2])
		if err != nil {
			fail(err)
		}
		go func() {
			for {
				c, err := ln.Accept()
				if err != nil {
					fail(err)
				}
				mu.Lock()
				held = append(held, c)
				mu.Unlock()
			}
		}()
		fmt.Println("ready")
	case "dial":
		n, err := strconv.Atoi(os.Args[3])
		if err != nil {
			fail(err)
		}
		var wg sync.WaitGroup
		next := make(chan int)
		for w := 0; w < 32; w++ {
			wg.Add(1)
			go func() {
				defer wg.Done()
				for i := range next {
					d := net.Dialer{Timeout: 10 * time.Second, KeepAlive: -1}
					if i%2 == 0 {
						d.KeepAliveConfig = net.KeepAliveConfig{Enable: true, Idle: 60 * time.Second, Interval: 10 * time.Second, Count: 5}
					}
					c, err := d.Dial("tcp", os.Args[2])
					if err != nil {
						fail(fmt.Errorf("connection %d: %w", i, err))
					}
					mu.Lock()
					held = append(held, c)
					mu.Unlock()
				}
			}()
		}
		for i := 0; i < n; i++ {
			next <- i
		}
		close(next)
		wg.Wait()
		fmt.Println("ready")
	default:
		fail(fmt.Errorf("unknown mode %q", os.Args[1]))
	}
	sig := make(chan os.Signal, 1)
	signal.Notify(sig, syscall.SIGTERM, syscall.SIGINT)
	<-sig
	// held must outlive the wait: a collected net.Conn closes its socket.
	mu.Lock()
	runtime.KeepAlive(held)
	mu.Unlock()
}

func fail(err error) {
	fmt.Fprintln(os.Stderr, "sockhold:", err)
	os.Exit(1)
}
