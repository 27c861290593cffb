package main

import (
	"crypto/rand"
	"flag"
	"fmt"
	"io"
	"net"
	"time"

	"github.com/flynn/noise"
)

const echoTimeout = 60 * time.Second

// runInitiate sends size random bytes in one Write, so that the head rides
// in msg1, and checks that the echo comes back intact. With --report-msg2
// it also says what msg2 carried and when it came, before the echo is in:
// a test can then tell a responder that put its answer into msg2 from one
// that sent msg2 first, and one whose msg2 waited for a late answer.
func runInitiate(args []string) error {
	flags := flag.NewFlagSet("initiate", flag.ContinueOnError)
	address := flags.String("connect", "", "responder address, host:port")
	remotePubHex := flags.String("remote-pub", "", "responder's static public key, 64 hex digits")
	suiteName := flags.String("suite", "chachapoly", "chachapoly or aesgcm")
	prefix := flags.String("prefix", defaultRoutePrefix, "route prefix sent before msg1")
	size := flags.Int("size", -1, "number of bytes to send and expect back")
	reportMsg2 := flags.Bool("report-msg2", false, "print msg2's payload length and how long after msg1 it arrived")
	var staticKey staticKeyFlags
	staticKey.register(flags)
	if err := parseFlags(flags, args); err != nil {
		return err
	}
	if *address == "" || *remotePubHex == "" || *size < 0 {
		return usageError("initiate needs --connect, --remote-pub and --size")
	}
	suite, err := suiteByName(*suiteName)
	if err != nil {
		return err
	}
	remotePub, err := parseKey(*remotePubHex, "--remote-pub")
	if err != nil {
		return err
	}
	// Without a configured key, a key per process, as the shim does.
	var static noise.DHKey
	if staticKey.given() {
		static, err = staticKey.load()
	} else {
		static, err = noise.DH25519.GenerateKeypair(rand.Reader)
	}
	if err != nil {
		return err
	}

	sent := make([]byte, *size)
	if _, err := rand.Read(sent); err != nil {
		return err
	}
	raw, err := net.DialTimeout("tcp", *address, echoTimeout)
	if err != nil {
		return err
	}
	conn, err := NewInitiatorConn(raw, &peerConfig{
		suite:        suite,
		routePrefix:  []byte(*prefix),
		static:       static,
		remoteStatic: remotePub,
	})
	if err != nil {
		raw.Close()
		return err
	}
	defer conn.Close()
	if err := conn.SetDeadline(time.Now().Add(echoTimeout)); err != nil {
		return err
	}

	// The echo has to be drained while the Write is still going, or both
	// ends stall on full socket buffers. The reader waits for msg1 to
	// leave, so that its Read cannot send msg1 ahead of the data.
	received := make([]byte, *size)
	readDone := make(chan error, 1)
	go func() {
		<-conn.FirstFlightSent()
		_, err := io.ReadFull(conn, received)
		readDone <- err
	}()
	if _, err := conn.Write(sent); err != nil {
		return fmt.Errorf("write: %w", err)
	}
	// With nothing to echo, the reader never touches the connection; msg2
	// must still arrive and verify.
	if err := conn.Handshake(); err != nil {
		return err
	}
	if *reportMsg2 {
		payload, after, err := conn.Msg2()
		if err != nil {
			return err
		}
		fmt.Printf("msg2 payload %d bytes after %d ms\n", payload, after.Milliseconds())
	}
	if err := <-readDone; err != nil {
		return fmt.Errorf("read: %w", err)
	}
	if at := firstDifference(sent, received); at >= 0 {
		return fmt.Errorf("echo differs at byte %d of %d: sent 0x%02x, got 0x%02x",
			at, len(sent), sent[at], received[at])
	}
	fmt.Printf("ok %d\n", *size)
	return nil
}

// firstDifference returns the first index where two equally long slices
// differ, or -1.
func firstDifference(a, b []byte) int {
	for i := range a {
		if a[i] != b[i] {
			return i
		}
	}
	return -1
}
