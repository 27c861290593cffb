package main

import (
	"bytes"
	"context"
	"crypto/rand"
	"crypto/sha256"
	"encoding/binary"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/flynn/noise"
)

func testKeypair(t *testing.T) noise.DHKey {
	t.Helper()
	keypair, err := noise.DH25519.GenerateKeypair(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	return keypair
}

// tcpPair returns both ends of a loopback TCP connection, recording what
// each end writes.
func tcpPair(t *testing.T) (dialed, accepted *recordingConn) {
	t.Helper()
	listener, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer listener.Close()
	client, err := net.Dial("tcp", listener.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	server, err := listener.Accept()
	if err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(20 * time.Second)
	client.SetDeadline(deadline)
	server.SetDeadline(deadline)
	t.Cleanup(func() { client.Close(); server.Close() })
	return &recordingConn{Conn: client}, &recordingConn{Conn: server}
}

func testConfigs(t *testing.T) (initiator, responder *peerConfig) {
	suite, _ := suiteByName("chachapoly")
	responderStatic := testKeypair(t)
	initiator = &peerConfig{
		suite:        suite,
		routePrefix:  []byte(defaultRoutePrefix),
		static:       testKeypair(t),
		remoteStatic: responderStatic.Public,
	}
	responder = &peerConfig{
		suite:       suite,
		routePrefix: []byte(defaultRoutePrefix),
		static:      responderStatic,
	}
	return initiator, responder
}

func connectedPair(t *testing.T) (initiator, responder *Conn, initiatorWire, responderWire *recordingConn) {
	t.Helper()
	initiatorWire, responderWire = tcpPair(t)
	initiatorConfig, responderConfig := testConfigs(t)
	initiator, err := NewInitiatorConn(initiatorWire, initiatorConfig)
	if err != nil {
		t.Fatal(err)
	}
	responder, err = NewResponderConn(responderWire, responderConfig)
	if err != nil {
		t.Fatal(err)
	}
	return initiator, responder, initiatorWire, responderWire
}

func frameBodyLengths(t *testing.T, wire []byte) []int {
	t.Helper()
	var lengths []int
	for len(wire) > 0 {
		if len(wire) < frameHeaderLen || wire[0] != frameMarker {
			t.Fatalf("not a frame: %x", wire[:frameHeaderLen])
		}
		bodyLen := int(wire[1])<<16 | int(binary.BigEndian.Uint16(wire[2:4]))
		lengths = append(lengths, bodyLen)
		wire = wire[frameHeaderLen+bodyLen:]
	}
	return lengths
}

func TestFirstWriteFillsMsg1ThenFrames(t *testing.T) {
	initiator, responder, initiatorWire, _ := connectedPair(t)
	sent := make([]byte, 2*maxFramePlaintext+10)
	rand.Read(sent)
	readDone := make(chan []byte)
	go func() {
		received := make([]byte, len(sent))
		io.ReadFull(responder, received)
		readDone <- received
	}()
	if n, err := initiator.Write(sent); n != len(sent) || err != nil {
		t.Fatalf("Write = %d, %v", n, err)
	}
	if received := <-readDone; !bytes.Equal(received, sent) {
		t.Fatal("responder received other bytes")
	}
	wire := initiatorWire.takeWritten()
	if !bytes.HasPrefix(wire, []byte(defaultRoutePrefix)) {
		t.Fatalf("no route prefix: %q", wire[:8])
	}
	got := frameBodyLengths(t, wire[len(defaultRoutePrefix):])
	want := []int{maxMsg1Body, maxFramePlaintext + aeadTagLen, 10 + aeadTagLen}
	if fmt.Sprint(got) != fmt.Sprint(want) {
		t.Fatalf("frame bodies %v, want %v", got, want)
	}
}

func TestEmptyFirstWriteSendsEmptyMsg1(t *testing.T) {
	initiator, responder, initiatorWire, responderWire := connectedPair(t)
	if _, err := initiator.Write(nil); err != nil {
		t.Fatal(err)
	}
	if err := responder.Handshake(); err != nil {
		t.Fatal(err)
	}
	if err := initiator.Handshake(); err != nil {
		t.Fatal(err)
	}
	msg1 := initiatorWire.takeWritten()[len(defaultRoutePrefix):]
	if got := frameBodyLengths(t, msg1); len(got) != 1 || got[0] != 96 {
		t.Fatalf("msg1 bodies %v, want [96]", got)
	}
	if got := frameBodyLengths(t, responderWire.takeWritten()); len(got) != 1 || got[0] != 48 {
		t.Fatalf("msg2 bodies %v, want [48]", got)
	}
}

// A responder that is not gopeer may put its first reply into msg2.
func TestMsg2PayloadReachesRead(t *testing.T) {
	initiatorWire, responderWire := tcpPair(t)
	initiatorConfig, responderConfig := testConfigs(t)
	initiator, err := NewInitiatorConn(initiatorWire, initiatorConfig)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := initiator.Write([]byte("request")); err != nil {
		t.Fatal(err)
	}

	handshake, err := noise.NewHandshakeState(noise.Config{
		CipherSuite:   responderConfig.suite,
		Pattern:       noise.HandshakeIK,
		StaticKeypair: responderConfig.static,
	})
	if err != nil {
		t.Fatal(err)
	}
	firstFlight := make([]byte, len(defaultRoutePrefix)+frameHeaderLen+96+len("request"))
	if _, err := io.ReadFull(responderWire, firstFlight); err != nil {
		t.Fatal(err)
	}
	request, _, _, err := handshake.ReadMessage(nil, firstFlight[len(defaultRoutePrefix)+frameHeaderLen:])
	if err != nil || string(request) != "request" {
		t.Fatalf("msg1 payload %q, %v", request, err)
	}
	msg2, _, _, err := handshake.WriteMessage(make([]byte, frameHeaderLen), []byte("early reply"))
	if err != nil {
		t.Fatal(err)
	}
	putFrameHeader(msg2, len(msg2)-frameHeaderLen)
	responderWire.Write(msg2)

	reply := make([]byte, len("early reply"))
	if _, err := io.ReadFull(initiator, reply); err != nil || string(reply) != "early reply" {
		t.Fatalf("read %q, %v", reply, err)
	}
	if payload, _, err := initiator.Msg2(); err != nil || payload != len("early reply") {
		t.Fatalf("Msg2 = %d bytes, %v; want %d bytes", payload, err, len("early reply"))
	}
}

// Msg2 measures from msg1 to msg2, so that a responder holding msg2 back
// shows.
func TestMsg2ReportsEmptyAndLate(t *testing.T) {
	const pause = 100 * time.Millisecond
	initiator, responder, _, _ := connectedPair(t)
	if _, _, err := initiator.Msg2(); err == nil {
		t.Fatal("Msg2 reported before msg1 left")
	}
	if _, err := initiator.Write([]byte("request")); err != nil {
		t.Fatal(err)
	}
	responded := make(chan error, 1)
	go func() {
		time.Sleep(pause)
		responded <- responder.Handshake()
	}()
	if err := initiator.Handshake(); err != nil {
		t.Fatal(err)
	}
	if err := <-responded; err != nil {
		t.Fatal(err)
	}
	payload, after, err := initiator.Msg2()
	if err != nil || payload != 0 || after < pause {
		t.Fatalf("Msg2 = %d bytes after %v, %v; want 0 bytes after at least %v", payload, after, err, pause)
	}
	if _, _, err := responder.Msg2(); err == nil {
		t.Fatal("Msg2 reported on the responder's side")
	}
}

func writeRawFrame(t *testing.T, conn *Conn, plaintext []byte) []byte {
	t.Helper()
	frame, err := conn.encrypt.Encrypt(make([]byte, frameHeaderLen), nil, plaintext)
	if err != nil {
		t.Fatal(err)
	}
	putFrameHeader(frame, len(frame)-frameHeaderLen)
	return frame
}

func handshaken(t *testing.T) (initiator, responder *Conn, responderWire *recordingConn) {
	t.Helper()
	initiator, responder, _, responderWire = connectedPair(t)
	if _, err := initiator.Write(nil); err != nil {
		t.Fatal(err)
	}
	if err := responder.Handshake(); err != nil {
		t.Fatal(err)
	}
	if err := initiator.Handshake(); err != nil {
		t.Fatal(err)
	}
	return initiator, responder, responderWire
}

func TestEmptyTransportFramesAreSkipped(t *testing.T) {
	initiator, responder, responderWire := handshaken(t)
	var wire []byte
	wire = append(wire, writeRawFrame(t, responder, nil)...)
	wire = append(wire, writeRawFrame(t, responder, nil)...)
	wire = append(wire, writeRawFrame(t, responder, []byte("x"))...)
	responderWire.Write(wire)
	got := make([]byte, 10)
	n, err := initiator.Read(got)
	if err != nil || string(got[:n]) != "x" {
		t.Fatalf("Read = %q, %v", got[:n], err)
	}
}

func TestReadResumesAfterDeadline(t *testing.T) {
	initiator, responder, responderWire := handshaken(t)
	frame := writeRawFrame(t, responder, []byte("split across a deadline"))
	responderWire.Write(frame[:7])
	initiator.SetReadDeadline(time.Now().Add(50 * time.Millisecond))
	if _, err := initiator.Read(make([]byte, 100)); !isTimeout(err) {
		t.Fatalf("Read error %v, want a timeout", err)
	}
	initiator.SetReadDeadline(time.Now().Add(5 * time.Second))
	responderWire.Write(frame[7:])
	got := make([]byte, 100)
	n, err := initiator.Read(got)
	if err != nil || string(got[:n]) != "split across a deadline" {
		t.Fatalf("Read = %q, %v", got[:n], err)
	}
}

func TestOversizedFrameIsRejected(t *testing.T) {
	initiator, _, responderWire := handshaken(t)
	header := make([]byte, frameHeaderLen)
	putFrameHeader(header, maxTransportBody+1)
	responderWire.Write(header)
	if _, err := initiator.Read(make([]byte, 10)); err == nil || !strings.Contains(err.Error(), "exceeds") {
		t.Fatalf("Read error %v, want a size error", err)
	}
}

func TestTruncatedFrameIsUnexpectedEOF(t *testing.T) {
	initiator, responder, responderWire := handshaken(t)
	responderWire.Write(writeRawFrame(t, responder, []byte("cut short"))[:10])
	responderWire.Conn.(*net.TCPConn).CloseWrite()
	if _, err := initiator.Read(make([]byte, 10)); err != io.ErrUnexpectedEOF {
		t.Fatalf("Read error %v, want io.ErrUnexpectedEOF", err)
	}
}

// An initiator that reads before writing must still get a server that
// speaks first going.
func TestReadFirstSendsEmptyMsg1(t *testing.T) {
	initiator, responder, _, _ := connectedPair(t)
	go bannerThenEcho(responder)
	banner := make([]byte, len(bannerLine))
	if _, err := io.ReadFull(initiator, banner); err != nil || string(banner) != bannerLine {
		t.Fatalf("banner %q, %v", banner, err)
	}
	initiator.Write([]byte("ping"))
	echoed := make([]byte, 4)
	if _, err := io.ReadFull(initiator, echoed); err != nil || string(echoed) != "ping" {
		t.Fatalf("echo %q, %v", echoed, err)
	}
}

// A slow echo must still return every byte, in order, across frames
// larger than its read chunk.
func TestSlowEchoReturnsEveryByte(t *testing.T) {
	initiator, responder, _, _ := connectedPair(t)
	go func() {
		slowEcho(responder)
		responder.Close()
	}()
	sent := make([]byte, 3*maxFramePlaintext)
	rand.Read(sent)
	go initiator.Write(sent)
	echoed := make([]byte, len(sent))
	if _, err := io.ReadFull(initiator, echoed); err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(echoed, sent) {
		t.Fatal("slow echo returned other bytes")
	}
}

func TestPatternStreamIsSplitMix64(t *testing.T) {
	first := make([]byte, 16)
	(&patternStream{}).Read(first)
	// The first two SplitMix64 outputs from state 0, 0xe220a8397b1dcdaf
	// and 0x6e789e6aa1b965f4, little-endian.
	want := "afcd1d7b39a820e2" + "f465b9a16a9e786e"
	if fmt.Sprintf("%x", first) != want {
		t.Fatalf("stream starts %x, want %s", first, want)
	}
}

func TestHTTPOverNoise(t *testing.T) {
	initiatorConfig, responderConfig := testConfigs(t)
	fileDir := t.TempDir()
	if err := os.WriteFile(filepath.Join(fileDir, "hello.txt"), []byte("hello file\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	tcpListener, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	server := &http.Server{Handler: newHTTPHandler(fileDir)}
	go server.Serve(&Listener{Listener: tcpListener, config: responderConfig})
	t.Cleanup(func() { server.Close() })

	client := &http.Client{Timeout: 20 * time.Second, Transport: &http.Transport{
		DialContext: func(ctx context.Context, network, address string) (net.Conn, error) {
			raw, err := (&net.Dialer{}).DialContext(ctx, network, address)
			if err != nil {
				return nil, err
			}
			return NewInitiatorConn(raw, initiatorConfig)
		},
	}}
	get := func(path string) []byte {
		t.Helper()
		response, err := client.Get("http://" + tcpListener.Addr().String() + path)
		if err != nil {
			t.Fatal(err)
		}
		defer response.Body.Close()
		body, err := io.ReadAll(response.Body)
		if err != nil || response.StatusCode != http.StatusOK {
			t.Fatalf("GET %s: %s, %v", path, response.Status, err)
		}
		return body
	}
	for _, length := range []int{0, 1, 65535, 65536, 3000001} {
		body := get(fmt.Sprintf("/bytes/%d", length))
		digest := get(fmt.Sprintf("/sha256/%d", length))
		if len(body) != length || fmt.Sprintf("%x\n", sha256.Sum256(body)) != string(digest) {
			t.Fatalf("/bytes/%d: %d bytes, digest %s", length, len(body), digest)
		}
	}
	if body := get("/hello.txt"); string(body) != "hello file\n" {
		t.Fatalf("/hello.txt = %q", body)
	}
}
