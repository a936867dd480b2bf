package cluster

import (
	"bufio"
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"net"
)

// The peer-link handshake is a mutual HMAC challenge-response. Both ends
// prove they hold the cluster's SecretKey without sending it, and each
// proof covers both fresh nonces, both names, the role and the cluster
// label, so a proof cannot be replayed on another link, reflected back to
// its sender or carried into a cluster with another label:
//
//	dialer   -> acceptor: magic nonceD(32) nameD(lp)
//	acceptor -> dialer:   magic nonceA(32) nameA(lp) macA(32)
//	dialer   -> acceptor: macD(32)
//	acceptor -> dialer:   0x01 (accepted; frames follow in both directions)
//
//	mac = HMAC-SHA256(linkKey, role | label(lp) | nonceD | nonceA | nameD(lp) | nameA(lp))
//	linkKey = HMAC-SHA256(SecretKey, "pubsub cluster peer link v1")
//
// linkKey is derived so the gossip encryption key (AES-GCM in memberlist)
// is never used for a second purpose. Without a SecretKey the same exchange
// runs with an empty key: it then only keeps nodes of different labels or
// releases apart, and the cluster is open to anyone who can reach it.
//
// The lower node name dials (see links.dials), so the acceptor refuses a
// dialer whose name does not sort below its own; the dialer refuses an
// acceptor that is not the node it meant to reach (an address reused by a
// restarted or different node).
//
// After the handshake the link is authenticated but not encrypted: run the
// cluster on a private network.
const (
	handshakeMagic = "PSL\x01" // protocol and version
	nonceLen       = 32
	macLen         = sha256.Size
	handshakeOK    = 0x01

	roleDialer   = 'D'
	roleAcceptor = 'A'
)

// errAuth is returned for a peer that fails the handshake.
var errAuth = errors.New("cluster: peer link authentication failed")

// linkAuth runs the handshake for one node.
type linkAuth struct {
	key   []byte // linkKey
	label string
	self  string
}

func newLinkAuth(secret []byte, label, self string) *linkAuth {
	m := hmac.New(sha256.New, secret)
	m.Write([]byte("pubsub cluster peer link v1"))
	return &linkAuth{key: m.Sum(nil), label: label, self: self}
}

func (a *linkAuth) mac(role byte, nonceD, nonceA []byte, nameD, nameA string) []byte {
	buf := make([]byte, 0, 1+prefixedLen(len(a.label))+2*nonceLen+prefixedLen(len(nameD))+prefixedLen(len(nameA)))
	buf = append(buf, role)
	buf = appendString(buf, a.label)
	buf = append(buf, nonceD...)
	buf = append(buf, nonceA...)
	buf = appendString(buf, nameD)
	buf = appendString(buf, nameA)
	m := hmac.New(sha256.New, a.key)
	m.Write(buf)
	return m.Sum(nil)
}

// hello is the first message of each side.
func (a *linkAuth) hello(nonce []byte) []byte {
	b := make([]byte, 0, len(handshakeMagic)+nonceLen+prefixedLen(len(a.self))+macLen)
	b = append(b, handshakeMagic...)
	b = append(b, nonce...)
	return appendString(b, a.self)
}

// readHello reads magic, nonce and name.
func readHello(br *bufio.Reader) (nonce []byte, name string, err error) {
	head := make([]byte, len(handshakeMagic)+nonceLen)
	if _, err := io.ReadFull(br, head); err != nil {
		return nil, "", err
	}
	if string(head[:len(handshakeMagic)]) != handshakeMagic {
		return nil, "", fmt.Errorf("%w: not a pubsub peer link (bad magic)", errAuth)
	}
	n, err := binary.ReadUvarint(br)
	if err != nil {
		return nil, "", unexpectedEOF(err)
	}
	if n == 0 || n > maxNameLen {
		return nil, "", fmt.Errorf("%w: node name of %d bytes", errAuth, n)
	}
	nameBuf := make([]byte, n)
	if _, err := io.ReadFull(br, nameBuf); err != nil {
		return nil, "", unexpectedEOF(err)
	}
	return head[len(handshakeMagic):], string(nameBuf), nil
}

// dial runs the dialer's side on conn and checks that the acceptor is the
// node named expect. The caller sets the deadline. br must read conn and
// is kept for the frames that follow.
func (a *linkAuth) dial(conn net.Conn, br *bufio.Reader, expect string) error {
	nonceD := make([]byte, nonceLen)
	if _, err := rand.Read(nonceD); err != nil {
		return err
	}
	if _, err := conn.Write(a.hello(nonceD)); err != nil {
		return err
	}
	nonceA, nameA, err := readHello(br)
	if err != nil {
		return err
	}
	if nameA != expect {
		return fmt.Errorf("%w: address answered as %q, want %q", errAuth, nameA, expect)
	}
	macA := make([]byte, macLen)
	if _, err := io.ReadFull(br, macA); err != nil {
		return unexpectedEOF(err)
	}
	if !hmac.Equal(macA, a.mac(roleAcceptor, nonceD, nonceA, a.self, nameA)) {
		return fmt.Errorf("%w: %q does not hold the cluster key or label", errAuth, nameA)
	}
	if _, err := conn.Write(a.mac(roleDialer, nonceD, nonceA, a.self, nameA)); err != nil {
		return err
	}
	ack, err := br.ReadByte()
	if err != nil {
		return fmt.Errorf("%w: %q refused the link: %w", errAuth, nameA, err)
	}
	if ack != handshakeOK {
		return fmt.Errorf("%w: %q answered %#x", errAuth, nameA, ack)
	}
	return nil
}

// accept runs the acceptor's side on conn and returns the authenticated
// dialer's name. The caller sets the deadline. br must read conn and is
// kept for the frames that follow.
func (a *linkAuth) accept(conn net.Conn, br *bufio.Reader) (string, error) {
	nonceD, nameD, err := readHello(br)
	if err != nil {
		return "", err
	}
	if nameD == a.self {
		return "", fmt.Errorf("%w: dialer uses this node's name", errAuth)
	}
	if !dials(nameD, a.self) {
		return "", fmt.Errorf("%w: %q must wait for %q to dial", errAuth, nameD, a.self)
	}
	nonceA := make([]byte, nonceLen)
	if _, err := rand.Read(nonceA); err != nil {
		return "", err
	}
	reply := a.hello(nonceA)
	reply = append(reply, a.mac(roleAcceptor, nonceD, nonceA, nameD, a.self)...)
	if _, err := conn.Write(reply); err != nil {
		return "", err
	}
	macD := make([]byte, macLen)
	if _, err := io.ReadFull(br, macD); err != nil {
		return "", unexpectedEOF(err)
	}
	if !hmac.Equal(macD, a.mac(roleDialer, nonceD, nonceA, nameD, a.self)) {
		return "", fmt.Errorf("%w: %q does not hold the cluster key or label", errAuth, nameD)
	}
	if _, err := conn.Write([]byte{handshakeOK}); err != nil {
		return "", err
	}
	return nameD, nil
}

// dials reports whether node a dials node b: of each pair, the node whose
// name sorts first dials, so a pair shares exactly one connection and the
// two ends never race to replace each other's.
func dials(a, b string) bool { return a < b }
