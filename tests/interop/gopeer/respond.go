package main

import (
	"flag"
	"fmt"
	"io"
	"log"
	"net"
	"net/http"
	"time"
)

const bannerLine = "HELLO from gopeer\n"

// slowecho reads this much at a time and pauses between reads, about
// 2 MB/s: far slower than a bulk writer on loopback, so that the writer's
// socket buffer fills and its writes come back short or with EAGAIN.
const (
	slowEchoChunk = 4096
	slowEchoPause = 2 * time.Millisecond
)

// runRespond serves Noise connections until the process is killed.
func runRespond(args []string) error {
	flags := flag.NewFlagSet("respond", flag.ContinueOnError)
	address := flags.String("listen", "127.0.0.1:0", "address to listen on; port 0 picks a free port")
	suiteName := flags.String("suite", "chachapoly", "chachapoly or aesgcm")
	mode := flags.String("mode", "echo", "echo, slowecho, http or banner")
	prefix := flags.String("prefix", defaultRoutePrefix, "route prefix expected before msg1")
	httpDir := flags.String("http-dir", "", "in http mode, also serve the files of this directory")
	var staticKey staticKeyFlags
	staticKey.register(flags)
	if err := parseFlags(flags, args); err != nil {
		return err
	}
	if !staticKey.given() {
		return usageError("respond needs --key or --key-file")
	}
	static, err := staticKey.load()
	if err != nil {
		return err
	}
	suite, err := suiteByName(*suiteName)
	if err != nil {
		return err
	}
	if *httpDir != "" && *mode != "http" {
		return usageError("--http-dir only applies to --mode http")
	}
	var serve func(net.Listener) error
	switch *mode {
	case "echo":
		serve = func(l net.Listener) error { return serveEach(l, echo) }
	case "slowecho":
		serve = func(l net.Listener) error { return serveEach(l, slowEcho) }
	case "banner":
		serve = func(l net.Listener) error { return serveEach(l, bannerThenEcho) }
	case "http":
		server := &http.Server{Handler: newHTTPHandler(*httpDir)}
		serve = server.Serve
	default:
		return usageError("unknown mode %q (want echo, slowecho, http or banner)", *mode)
	}

	tcpListener, err := net.Listen("tcp", *address)
	if err != nil {
		return err
	}
	// Test scripts wait for this line to learn the port; stdout is not
	// buffered, so it is out as soon as Printf returns.
	fmt.Printf("listening %s\n", tcpListener.Addr())
	return serve(&Listener{
		Listener: tcpListener,
		config: &peerConfig{
			suite:       suite,
			routePrefix: []byte(*prefix),
			static:      static,
		},
	})
}

// serveEach runs handle on every accepted connection, concurrently.
func serveEach(listener net.Listener, handle func(net.Conn) error) error {
	for {
		conn, err := listener.Accept()
		if err != nil {
			return err
		}
		go func() {
			defer conn.Close()
			if err := handle(conn); err != nil {
				log.Printf("%s: %v", conn.RemoteAddr(), err)
			}
		}()
	}
}

// echo returns every byte until the peer stops sending.
func echo(conn net.Conn) error {
	_, err := io.Copy(conn, conn)
	return err
}

// slowEcho returns every byte like echo, but reads at most slowEchoChunk
// bytes at a time and pauses after each read.
func slowEcho(conn net.Conn) error {
	chunk := make([]byte, slowEchoChunk)
	for {
		n, err := conn.Read(chunk)
		if n > 0 {
			if _, writeErr := conn.Write(chunk[:n]); writeErr != nil {
				return writeErr
			}
		}
		if err == io.EOF {
			return nil
		}
		if err != nil {
			return err
		}
		time.Sleep(slowEchoPause)
	}
}

// bannerThenEcho speaks first, as SMTP or SSH servers do, which a client
// shim can only serve by sending msg1 before the program writes.
func bannerThenEcho(conn net.Conn) error {
	if _, err := io.WriteString(conn, bannerLine); err != nil {
		return err
	}
	return echo(conn)
}
