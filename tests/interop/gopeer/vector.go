package main

import (
	"bufio"
	"bytes"
	"encoding/hex"
	"fmt"
	"io"
	"net"
	"os"
	"regexp"
	"strconv"
	"strings"
	"time"

	"github.com/flynn/noise"
)

// A transcript (see the shared vectors directory) lists the keys of one
// connection, then every wire write in order as a label line and a hex
// line:
//
//	C->S transport n=0 plaintext "first transport c->s" (40 bytes):
//	80000024c35e...
//
// A write whose label quotes a payload or plaintext is made by the
// application on that side; one without is the protocol's own reaction to
// the previous write (msg2).
var (
	transcriptWriteLabel = regexp.MustCompile(`^(C->S|S->C) (.*) \((\d+) bytes\):$`)
	transcriptPlaintext  = regexp.MustCompile(`(?:payload|plaintext) "([^"]*)"`)
)

type transcriptWrite struct {
	label          string
	fromInitiator  bool
	plaintext      []byte
	plaintextGiven bool
	wire           []byte
}

type transcript struct {
	protocol         string
	fields           map[string][]byte
	writes           []transcriptWrite
	handshakeHash    []byte
	hasHandshakeHash bool
}

func parseTranscript(r io.Reader) (*transcript, error) {
	parsed := &transcript{fields: map[string][]byte{}}
	lines := bufio.NewScanner(r)
	lineNumber := 0
	nextLine := func() (string, bool) {
		if !lines.Scan() {
			return "", false
		}
		lineNumber++
		return lines.Text(), true
	}
	for {
		line, ok := nextLine()
		if !ok {
			break
		}
		if label := transcriptWriteLabel.FindStringSubmatch(line); label != nil {
			hexLine, ok := nextLine()
			if !ok {
				return nil, fmt.Errorf("line %d: hex bytes missing", lineNumber)
			}
			wire, err := hex.DecodeString(strings.TrimSpace(hexLine))
			if err != nil {
				return nil, fmt.Errorf("line %d: %v", lineNumber, err)
			}
			if declared, _ := strconv.Atoi(label[3]); declared != len(wire) {
				return nil, fmt.Errorf("line %d: %d bytes, label says %d", lineNumber, len(wire), declared)
			}
			write := transcriptWrite{
				label:         line,
				fromInitiator: label[1] == "C->S",
				wire:          wire,
			}
			if quoted := transcriptPlaintext.FindStringSubmatch(label[2]); quoted != nil {
				write.plaintext = []byte(quoted[1])
				write.plaintextGiven = true
			}
			parsed.writes = append(parsed.writes, write)
			continue
		}
		key, value, found := strings.Cut(line, "=")
		if !found {
			continue
		}
		switch key {
		case "protocol":
			parsed.protocol, _, _ = strings.Cut(value, " ")
			if !strings.Contains(value, "prologue=(empty)") {
				return nil, fmt.Errorf("line %d: only an empty prologue is supported", lineNumber)
			}
		case "handshake_hash":
			digits, _, _ := strings.Cut(value, " ")
			hash, err := hex.DecodeString(digits)
			if err != nil {
				return nil, fmt.Errorf("line %d: %v", lineNumber, err)
			}
			parsed.handshakeHash, parsed.hasHandshakeHash = hash, true
		case "init_static_priv", "resp_static_priv", "resp_static_pub",
			"init_ephemeral_priv", "resp_ephemeral_priv":
			decoded, err := parseKey(value, key)
			if err != nil {
				return nil, fmt.Errorf("line %d: %v", lineNumber, err)
			}
			parsed.fields[key] = decoded
		}
	}
	if err := lines.Err(); err != nil {
		return nil, err
	}
	for _, key := range []string{"init_static_priv", "resp_static_priv", "resp_static_pub",
		"init_ephemeral_priv", "resp_ephemeral_priv"} {
		if parsed.fields[key] == nil {
			return nil, fmt.Errorf("transcript lacks %s", key)
		}
	}
	if len(parsed.writes) == 0 {
		return nil, fmt.Errorf("transcript lists no writes")
	}
	return parsed, nil
}

// recordingConn keeps a copy of everything written through it.
type recordingConn struct {
	net.Conn
	written bytes.Buffer
}

func (r *recordingConn) Write(p []byte) (int, error) {
	n, err := r.Conn.Write(p)
	r.written.Write(p[:n])
	return n, err
}

// takeWritten returns what was written since the last call.
func (r *recordingConn) takeWritten() []byte {
	taken := append([]byte(nil), r.written.Bytes()...)
	r.written.Reset()
	return taken
}

// runVector replays a transcript through gopeer's own initiator and
// responder over loopback TCP, with the transcript's ephemeral keys, and
// fails unless every wire byte and the handshake hash match.
func runVector(args []string) error {
	if len(args) != 1 {
		return usageError("vector needs exactly one transcript file")
	}
	file, err := os.Open(args[0])
	if err != nil {
		return err
	}
	parsed, err := parseTranscript(file)
	file.Close()
	if err != nil {
		return fmt.Errorf("%s: %w", args[0], err)
	}
	if err := replayTranscript(parsed); err != nil {
		return fmt.Errorf("%s: %w", args[0], err)
	}
	fmt.Printf("ok %s: %d writes match\n", parsed.protocol, len(parsed.writes))
	return nil
}

func replayTranscript(parsed *transcript) error {
	var suite noise.CipherSuite
	for _, name := range []string{"chachapoly", "aesgcm"} {
		if candidate, _ := suiteByName(name); protocolName(candidate) == parsed.protocol {
			suite = candidate
		}
	}
	if suite == nil {
		return fmt.Errorf("unsupported protocol %q", parsed.protocol)
	}
	initiatorStatic, err := keypairFromPrivate(parsed.fields["init_static_priv"])
	if err != nil {
		return err
	}
	responderStatic, err := keypairFromPrivate(parsed.fields["resp_static_priv"])
	if err != nil {
		return err
	}
	if !bytes.Equal(responderStatic.Public, parsed.fields["resp_static_pub"]) {
		return fmt.Errorf("resp_static_pub %x does not belong to resp_static_priv (that is %x)",
			parsed.fields["resp_static_pub"], responderStatic.Public)
	}

	listener, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return err
	}
	defer listener.Close()
	dialed, err := net.Dial("tcp", listener.Addr().String())
	if err != nil {
		return err
	}
	accepted, err := listener.Accept()
	if err != nil {
		dialed.Close()
		return err
	}
	initiatorWire := &recordingConn{Conn: dialed}
	responderWire := &recordingConn{Conn: accepted}
	defer initiatorWire.Close()
	defer responderWire.Close()
	// Every step only waits for bytes already in the kernel; a hang means
	// the peers disagree about the protocol.
	deadline := time.Now().Add(10 * time.Second)
	dialed.SetDeadline(deadline)
	accepted.SetDeadline(deadline)

	initiator, err := NewInitiatorConn(initiatorWire, &peerConfig{
		suite:        suite,
		routePrefix:  []byte(defaultRoutePrefix),
		static:       initiatorStatic,
		remoteStatic: responderStatic.Public,
		random:       bytes.NewReader(parsed.fields["init_ephemeral_priv"]),
	})
	if err != nil {
		return err
	}
	responder, err := NewResponderConn(responderWire, &peerConfig{
		suite:       suite,
		routePrefix: []byte(defaultRoutePrefix),
		static:      responderStatic,
		random:      bytes.NewReader(parsed.fields["resp_ephemeral_priv"]),
	})
	if err != nil {
		return err
	}

	for _, write := range parsed.writes {
		sender, receiver, senderWire := initiator, responder, initiatorWire
		if !write.fromInitiator {
			sender, receiver, senderWire = responder, initiator, responderWire
		}
		if write.plaintextGiven {
			if _, err := sender.Write(write.plaintext); err != nil {
				return fmt.Errorf("%s: write: %w", write.label, err)
			}
		}
		if got := senderWire.takeWritten(); !bytes.Equal(got, write.wire) {
			return fmt.Errorf("%s\n  want %x\n  got  %x", write.label, write.wire, got)
		}
		if write.plaintextGiven {
			// Reading also runs whatever the receiver sends in reply,
			// which the next transcript write then checks.
			if err := receiver.Handshake(); err != nil {
				return fmt.Errorf("%s: %w", write.label, err)
			}
			got := make([]byte, len(write.plaintext))
			if _, err := io.ReadFull(receiver, got); err != nil {
				return fmt.Errorf("%s: read: %w", write.label, err)
			}
			if !bytes.Equal(got, write.plaintext) {
				return fmt.Errorf("%s: received %q", write.label, got)
			}
		}
	}
	for _, wire := range []*recordingConn{initiatorWire, responderWire} {
		if extra := wire.takeWritten(); len(extra) > 0 {
			return fmt.Errorf("bytes written beyond the transcript: %x", extra)
		}
	}
	if parsed.hasHandshakeHash {
		for side, conn := range map[string]*Conn{"initiator": initiator, "responder": responder} {
			if hash := conn.HandshakeHash(); !bytes.Equal(hash, parsed.handshakeHash) {
				return fmt.Errorf("%s handshake hash %x, want %x", side, hash, parsed.handshakeHash)
			}
		}
	}
	return nil
}
