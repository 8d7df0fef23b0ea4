package path

import (
	"crypto/hmac"
	"crypto/sha256"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
)

// The wire protocol between a measuring client and the counterpart. Every
// message has a fixed size, so the counterpart never buffers more than one
// message per connection and never sends more than the client asked for.
//
//	counterpart → client, on accept:  greeting = magic(8) nonce(16)
//	client → counterpart:             request  = magic(8) kind(1) 0(1) bytes(2) conn(4)
//	                                             session(8) idle_ms(4) 0(4) mac(32)
//	counterpart → client:             status(1): 'K' accepted, else refused (see statuses)
//
// mac is HMAC-SHA256(token, nonce ‖ request[0:32]): the token never crosses
// the network and a recorded request cannot be replayed on another
// connection. After 'K', a control connection carries frames of
// frameSize bytes both ways; a test connection carries only its test's bytes.
const (
	magic        = "KADIAGP1"
	greetingSize = 8 + 16
	requestSize  = 64
	frameSize    = 13
	// maxPayload bounds the bytes the counterpart sends per test: no
	// amplification, whoever asks.
	maxPayload = 64
)

// kind is what a connection is for.
type kind byte

const (
	kindControl   kind = 'C' // notes, pings
	kindToClient  kind = 'T' // the counterpart sends after an idle timed on its clock
	kindToServer  kind = 'S' // the client sends after its idle, the counterpart answers
	kindTriggered kind = 'K' // the counterpart sends when told on the control connection
)

// Statuses the counterpart answers a request with.
const (
	statusOK        = 'K'
	statusRefused   = 'R' // wrong token
	statusFull      = 'F' // --max-connections or the per-source cap reached
	statusBad       = 'E' // malformed request, or no control connection for the session
	statusTooLong   = 'H' // idle above --max-hold
	statusNoSession = 'N' // a test connection of a session whose control connection is gone
)

// Frame types on a control connection.
const (
	framePing    = 'p' // client → counterpart: echo value back; and the echo
	frameTrigger = 't' // client → counterpart: send now on conn (kindTriggered)
	frameSent    = 's' // counterpart → client: sent on conn; value = idle measured, ms
	frameReset   = 'r' // counterpart → client: RST seen on conn
	frameGot     = 'g' // counterpart → client: to-server bytes arrived on conn
)

// ErrRefused is returned when the counterpart refuses the client's token.
var ErrRefused = errors.New("the counterpart refused the token")

// ErrBusy is returned when the counterpart holds as many connections as it
// allows (in total or from this client's address).
var ErrBusy = errors.New("the counterpart is full")

// ErrProtocol is returned for a malformed message on either side.
var ErrProtocol = errors.New("not the kadiag path protocol")

// request is one connection's instruction.
type request struct {
	kind    kind
	bytes   uint16 // payload to send (to-client) or answer (to-server)
	conn    uint32
	session [8]byte
	idleMS  uint32 // to-client: send after this idle, from the last packet
}

func mac(token string, nonce []byte, head []byte) []byte {
	m := hmac.New(sha256.New, []byte(token))
	m.Write(nonce)
	m.Write(head)
	return m.Sum(nil)
}

// marshal encodes r, authenticated for the greeting's nonce.
func (r request) marshal(token string, nonce []byte) []byte {
	b := make([]byte, requestSize)
	copy(b, magic)
	b[8] = byte(r.kind)
	binary.BigEndian.PutUint16(b[10:], r.bytes)
	binary.BigEndian.PutUint32(b[12:], r.conn)
	copy(b[16:24], r.session[:])
	binary.BigEndian.PutUint32(b[24:], r.idleMS)
	copy(b[32:], mac(token, nonce, b[:32]))
	return b
}

// errBadMAC is a request whose MAC does not match the counterpart's token.
var errBadMAC = errors.New("bad token")

// parseRequest decodes and authenticates a request.
func parseRequest(b []byte, token string, nonce []byte) (request, error) {
	var r request
	if len(b) != requestSize || string(b[:8]) != magic {
		return r, ErrProtocol
	}
	if !hmac.Equal(b[32:], mac(token, nonce, b[:32])) {
		return r, errBadMAC
	}
	r.kind = kind(b[8])
	switch r.kind {
	case kindControl, kindToClient, kindToServer, kindTriggered:
	default:
		return r, fmt.Errorf("%w: connection kind %q", ErrProtocol, b[8])
	}
	r.bytes = binary.BigEndian.Uint16(b[10:])
	if r.bytes > maxPayload {
		return r, fmt.Errorf("%w: %d bytes asked, at most %d", ErrProtocol, r.bytes, maxPayload)
	}
	r.conn = binary.BigEndian.Uint32(b[12:])
	copy(r.session[:], b[16:24])
	r.idleMS = binary.BigEndian.Uint32(b[24:])
	return r, nil
}

// frame is one control message.
type frame struct {
	typ   byte
	conn  uint32
	value uint64
}

func (f frame) marshal() []byte {
	b := make([]byte, frameSize)
	b[0] = f.typ
	binary.BigEndian.PutUint32(b[1:], f.conn)
	binary.BigEndian.PutUint64(b[5:], f.value)
	return b
}

func readFrame(r io.Reader, buf []byte) (frame, error) {
	if _, err := io.ReadFull(r, buf[:frameSize]); err != nil {
		return frame{}, err
	}
	return frame{typ: buf[0], conn: binary.BigEndian.Uint32(buf[1:]), value: binary.BigEndian.Uint64(buf[5:])}, nil
}
