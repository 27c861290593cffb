package main

import (
	"bufio"
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"sync"
	"time"

	"github.com/flynn/noise"
)

// Wire layout of the Storj "DRPC over Noise" transport.
const (
	defaultRoutePrefix = "DRPC!N!1"

	frameMarker    = 0x80
	frameHeaderLen = 4 // marker byte, then the body length as 24-bit big-endian

	// maxFramePlaintext is the largest plaintext a frame (or a handshake
	// payload) may carry: the Storj Go reader panics on more.
	maxFramePlaintext = 65535
	aeadTagLen        = 16
	dhPublicLen       = 32

	// A frame body is at most one maximal plaintext plus what the Noise
	// message around it adds. Accepting up to these bounds (rather than the
	// Noise spec's 65535-byte message limit) is required: Go peers put a full
	// 65535-byte payload into msg1.
	maxMsg1Body      = dhPublicLen + dhPublicLen + aeadTagLen + maxFramePlaintext + aeadTagLen
	maxMsg2Body      = dhPublicLen + maxFramePlaintext + aeadTagLen
	maxTransportBody = maxFramePlaintext + aeadTagLen
)

// peerConfig is what both ends of a connection need to run the handshake.
type peerConfig struct {
	suite       noise.CipherSuite
	routePrefix []byte
	static      noise.DHKey
	// remoteStatic is the responder's public key; only initiators use it.
	remoteStatic []byte
	// random feeds ephemeral key generation; nil means crypto/rand. Only the
	// transcript check fixes it, to reproduce known wire bytes.
	random io.Reader
}

// Conn is a net.Conn carrying plaintext over a Noise_IK session on a raw
// stream. The handshake runs lazily: an initiator's first Write rides in
// msg1 (0-RTT); a responder handshakes on its first Read or Write.
type Conn struct {
	raw       net.Conn
	rawReader *bufio.Reader
	config    *peerConfig
	initiator bool

	handshakeMu   sync.Mutex
	handshake     *noise.HandshakeState
	msg1Sent      bool
	msg1SentCh    chan struct{}
	handshakeDone bool
	handshakeErr  error
	// What Msg2 reports: when msg1 left, when msg2 was in, and how much
	// plaintext msg2 carried. Initiators only.
	msg1SentAt  time.Time
	msg2ReadAt  time.Time
	msg2Payload int

	readMu   sync.Mutex
	decrypt  *noise.CipherState
	plainBuf []byte
	// pending is decrypted plaintext not yet returned by Read. The
	// handshake stores its payload here before any transport frame.
	pending []byte
	readErr error

	writeMu  sync.Mutex
	encrypt  *noise.CipherState
	frameBuf []byte
	writeErr error
}

func newConn(raw net.Conn, config *peerConfig, initiator bool) (*Conn, error) {
	handshake, err := noise.NewHandshakeState(noise.Config{
		CipherSuite:   config.suite,
		Random:        config.random,
		Pattern:       noise.HandshakeIK,
		Initiator:     initiator,
		StaticKeypair: config.static,
		PeerStatic:    config.remoteStatic,
	})
	if err != nil {
		return nil, err
	}
	return &Conn{
		raw: raw,
		// The buffer must hold a whole maximal frame so that Peek can
		// return it in one piece.
		rawReader:  bufio.NewReaderSize(raw, frameHeaderLen+maxMsg1Body),
		config:     config,
		initiator:  initiator,
		handshake:  handshake,
		msg1SentCh: make(chan struct{}),
		plainBuf:   make([]byte, 0, maxFramePlaintext),
		frameBuf:   make([]byte, 0, frameHeaderLen+maxTransportBody),
	}, nil
}

// NewInitiatorConn wraps a dialed connection; the remote static key in
// config must be set.
func NewInitiatorConn(raw net.Conn, config *peerConfig) (*Conn, error) {
	return newConn(raw, config, true)
}

// NewResponderConn wraps an accepted connection.
func NewResponderConn(raw net.Conn, config *peerConfig) (*Conn, error) {
	return newConn(raw, config, false)
}

// FirstFlightSent is closed once msg1 has been handed to the network. A
// reader goroutine started alongside the first Write must wait for it:
// reading first would send msg1 empty, and the data meant to ride in msg1
// would have to wait for msg2.
func (c *Conn) FirstFlightSent() <-chan struct{} {
	return c.msg1SentCh
}

// Handshake completes the handshake if it has not completed yet. An
// initiator that has not written sends msg1 with an empty payload, which
// is what a server-speaks-first protocol needs.
func (c *Conn) Handshake() error {
	c.handshakeMu.Lock()
	defer c.handshakeMu.Unlock()
	if c.handshakeDone || c.handshakeErr != nil {
		return c.handshakeErr
	}
	var err error
	if c.initiator {
		if !c.msg1Sent {
			err = c.sendMsg1(nil)
		}
		if err == nil {
			err = c.receiveMsg2()
		}
	} else {
		err = c.receiveMsg1()
		if err == nil {
			err = c.sendMsg2()
		}
	}
	if err != nil {
		c.handshakeErr = fmt.Errorf("noise handshake: %w", err)
		return c.handshakeErr
	}
	c.handshakeDone = true
	return nil
}

// HandshakeHash returns the Noise handshake hash; both ends agree on it
// once the handshake has completed.
func (c *Conn) HandshakeHash() []byte {
	c.handshakeMu.Lock()
	defer c.handshakeMu.Unlock()
	return c.handshake.ChannelBinding()
}

// sendFirstFlight sends msg1 carrying the head of p if msg1 has not left
// yet, and reports how many bytes of p it carried.
func (c *Conn) sendFirstFlight(p []byte) (int, error) {
	c.handshakeMu.Lock()
	defer c.handshakeMu.Unlock()
	if c.handshakeErr != nil {
		return 0, c.handshakeErr
	}
	if c.msg1Sent {
		return 0, nil
	}
	carried := len(p)
	if carried > maxFramePlaintext {
		carried = maxFramePlaintext
	}
	if err := c.sendMsg1(p[:carried]); err != nil {
		c.handshakeErr = fmt.Errorf("noise handshake: %w", err)
		return 0, c.handshakeErr
	}
	return carried, nil
}

// sendMsg1 writes the route prefix and msg1 in a single write, so that
// both fit in the first segment.
func (c *Conn) sendMsg1(payload []byte) error {
	prefixLen := len(c.config.routePrefix)
	out := make([]byte, 0, prefixLen+frameHeaderLen+maxMsg1Body)
	out = append(out, c.config.routePrefix...)
	out = append(out, make([]byte, frameHeaderLen)...)
	out, _, _, err := c.handshake.WriteMessage(out, payload)
	if err != nil {
		return err
	}
	putFrameHeader(out[prefixLen:], len(out)-prefixLen-frameHeaderLen)
	_, err = c.raw.Write(out)
	c.msg1SentAt = time.Now()
	// Even a failed write ends the first flight: waiters then find the
	// handshake error instead of blocking forever.
	c.msg1Sent = true
	close(c.msg1SentCh)
	return err
}

func (c *Conn) receiveMsg2() error {
	body, err := c.peekFrame(maxMsg2Body)
	if err != nil {
		return fmt.Errorf("reading msg2: %w", err)
	}
	c.msg2ReadAt = time.Now()
	payload, initiatorToResponder, responderToInitiator, err := c.handshake.ReadMessage(nil, body)
	if err != nil {
		return fmt.Errorf("msg2: %w", err)
	}
	c.discardFrame(body)
	c.encrypt, c.decrypt = initiatorToResponder, responderToInitiator
	c.pending = payload
	c.msg2Payload = len(payload)
	return nil
}

// Msg2 tells an initiator whose handshake has completed how many plaintext
// bytes msg2 carried and how long after msg1 left msg2 was in: what says
// whether the responder put its answer into msg2, and whether msg2 waited
// for it.
func (c *Conn) Msg2() (payload int, after time.Duration, err error) {
	c.handshakeMu.Lock()
	defer c.handshakeMu.Unlock()
	if !c.initiator || !c.handshakeDone {
		return 0, 0, errors.New("msg2 has not been read")
	}
	return c.msg2Payload, c.msg2ReadAt.Sub(c.msg1SentAt), nil
}

func (c *Conn) receiveMsg1() error {
	prefix := c.config.routePrefix
	got, err := c.rawReader.Peek(len(prefix))
	if err != nil {
		return fmt.Errorf("reading route prefix: %w", err)
	}
	if !bytes.Equal(got, prefix) {
		return fmt.Errorf("route prefix %q, want %q", got, prefix)
	}
	if _, err := c.rawReader.Discard(len(prefix)); err != nil {
		return err
	}
	body, err := c.peekFrame(maxMsg1Body)
	if err != nil {
		return fmt.Errorf("reading msg1: %w", err)
	}
	payload, _, _, err := c.handshake.ReadMessage(nil, body)
	if err != nil {
		return fmt.Errorf("msg1: %w", err)
	}
	c.discardFrame(body)
	c.pending = payload
	return nil
}

// sendMsg2 answers right after msg1, before the application asks for
// anything: a Go initiator cannot send its second write until msg2 is in.
func (c *Conn) sendMsg2() error {
	out := make([]byte, frameHeaderLen, frameHeaderLen+maxMsg2Body)
	out, initiatorToResponder, responderToInitiator, err := c.handshake.WriteMessage(out, nil)
	if err != nil {
		return err
	}
	putFrameHeader(out, len(out)-frameHeaderLen)
	c.decrypt, c.encrypt = initiatorToResponder, responderToInitiator
	_, err = c.raw.Write(out)
	return err
}

func putFrameHeader(header []byte, bodyLen int) {
	header[0] = frameMarker
	header[1] = byte(bodyLen >> 16)
	binary.BigEndian.PutUint16(header[2:4], uint16(bodyLen))
}

// peekFrame returns the body of the next frame without consuming it; the
// caller consumes it with discardFrame once it has used the body. Bytes of
// a frame that arrive before a read deadline expires stay buffered, so a
// Read interrupted by a deadline (net/http does that on purpose) can be
// retried without losing the stream position. The body is only valid until
// the next read from rawReader.
func (c *Conn) peekFrame(maxBody int) ([]byte, error) {
	header, err := c.rawReader.Peek(frameHeaderLen)
	if err != nil {
		return nil, truncatedAsUnexpected(len(header), err)
	}
	if header[0] != frameMarker {
		return nil, fmt.Errorf("frame marker 0x%02x, want 0x%02x", header[0], frameMarker)
	}
	bodyLen := int(header[1])<<16 | int(binary.BigEndian.Uint16(header[2:4]))
	if bodyLen > maxBody {
		return nil, fmt.Errorf("frame body of %d bytes exceeds %d", bodyLen, maxBody)
	}
	frame, err := c.rawReader.Peek(frameHeaderLen + bodyLen)
	if err != nil {
		return nil, truncatedAsUnexpected(len(frame), err)
	}
	return frame[frameHeaderLen:], nil
}

func (c *Conn) discardFrame(body []byte) {
	// Discard cannot fail here: the bytes were just peeked.
	c.rawReader.Discard(frameHeaderLen + len(body))
}

// truncatedAsUnexpected turns an EOF in the middle of a frame into
// io.ErrUnexpectedEOF; only an EOF between frames is a clean end.
func truncatedAsUnexpected(buffered int, err error) error {
	if err == io.EOF && buffered > 0 {
		return io.ErrUnexpectedEOF
	}
	return err
}

func isTimeout(err error) bool {
	return errors.Is(err, os.ErrDeadlineExceeded)
}

// Read returns plaintext from the handshake payload and from transport
// frames, skipping empty frames.
func (c *Conn) Read(p []byte) (int, error) {
	c.readMu.Lock()
	defer c.readMu.Unlock()
	if err := c.Handshake(); err != nil {
		return 0, err
	}
	if len(p) == 0 {
		return 0, nil
	}
	for len(c.pending) == 0 {
		if c.readErr != nil {
			return 0, c.readErr
		}
		body, err := c.peekFrame(maxTransportBody)
		if err == nil {
			c.pending, err = c.decrypt.Decrypt(c.plainBuf[:0], nil, body)
			c.discardFrame(body)
		}
		if err != nil {
			// After a deadline the frame can still be completed; any
			// other failure leaves the stream unusable.
			if !isTimeout(err) {
				c.readErr = err
			}
			return 0, err
		}
	}
	n := copy(p, c.pending)
	c.pending = c.pending[n:]
	return n, nil
}

// Write sends p as frames of at most maxFramePlaintext bytes. An
// initiator's first Write puts its head into msg1; the rest has to wait
// for msg2, which brings the transport keys.
func (c *Conn) Write(p []byte) (int, error) {
	c.writeMu.Lock()
	defer c.writeMu.Unlock()
	if c.writeErr != nil {
		return 0, c.writeErr
	}
	written := 0
	if c.initiator {
		carried, err := c.sendFirstFlight(p)
		if err != nil {
			return 0, err
		}
		written = carried
		if written == len(p) {
			return written, nil
		}
	}
	if err := c.Handshake(); err != nil {
		return written, err
	}
	for written < len(p) {
		chunk := p[written:]
		if len(chunk) > maxFramePlaintext {
			chunk = chunk[:maxFramePlaintext]
		}
		frame := c.frameBuf[:frameHeaderLen]
		frame, err := c.encrypt.Encrypt(frame, nil, chunk)
		if err != nil {
			c.writeErr = err
			return written, err
		}
		putFrameHeader(frame, len(frame)-frameHeaderLen)
		if _, err := c.raw.Write(frame); err != nil {
			// Part of a frame may have left: the stream cannot be resumed.
			c.writeErr = err
			return written, err
		}
		written += len(chunk)
	}
	return written, nil
}

func (c *Conn) Close() error                       { return c.raw.Close() }
func (c *Conn) LocalAddr() net.Addr                { return c.raw.LocalAddr() }
func (c *Conn) RemoteAddr() net.Addr               { return c.raw.RemoteAddr() }
func (c *Conn) SetDeadline(t time.Time) error      { return c.raw.SetDeadline(t) }
func (c *Conn) SetReadDeadline(t time.Time) error  { return c.raw.SetReadDeadline(t) }
func (c *Conn) SetWriteDeadline(t time.Time) error { return c.raw.SetWriteDeadline(t) }

// Listener accepts raw connections and hands them out as responder Conns.
// The handshake is left to the first Read or Write, so that one slow
// client cannot hold up Accept.
type Listener struct {
	net.Listener
	config *peerConfig
}

func (l *Listener) Accept() (net.Conn, error) {
	raw, err := l.Listener.Accept()
	if err != nil {
		return nil, err
	}
	conn, err := NewResponderConn(raw, l.config)
	if err != nil {
		raw.Close()
		return nil, err
	}
	return conn, nil
}
