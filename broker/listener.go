package broker

import (
	"errors"
	"io"
	"net"
	"sync"
	"time"
)

// sniffConn hands back the bytes read while sniffing before reading on.
type sniffConn struct {
	net.Conn
	first []byte
}

func (c *sniffConn) Read(p []byte) (int, error) {
	if len(c.first) > 0 {
		n := copy(p, c.first)
		c.first = c.first[n:]
		return n, nil
	}
	return c.Conn.Read(p)
}

// isHTTPStart reports whether b can begin an HTTP/1.x request line. Every
// method starts with an upper-case ASCII letter, and no MQTT first byte is
// one: 0x41..0x5A are packet type 4 and 5 (PUBACK, PUBREC), which a client
// can never send first [MQTT-3.1.0-1], so the two never overlap.
func isHTTPStart(b byte) bool {
	switch b {
	case 'G', 'P', 'O', 'H', 'D', 'T', 'C':
		return true
	}
	return false
}

// connListener is a net.Listener fed by the sniffer, so net/http can serve
// the connections that turned out to be HTTP on the shared port.
type connListener struct {
	addr   net.Addr
	conns  chan net.Conn
	closed chan struct{}
	once   sync.Once
}

func newConnListener(addr net.Addr) *connListener {
	return &connListener{addr: addr, conns: make(chan net.Conn), closed: make(chan struct{})}
}

func (l *connListener) Accept() (net.Conn, error) {
	select {
	case c := <-l.conns:
		return c, nil
	case <-l.closed:
		return nil, net.ErrClosed
	}
}

// push hands c to the HTTP server; it reports false once the listener is closed.
func (l *connListener) push(c net.Conn) bool {
	select {
	case l.conns <- c:
		return true
	case <-l.closed:
		return false
	}
}

func (l *connListener) Close() error {
	l.once.Do(func() { close(l.closed) })
	return nil
}

func (l *connListener) Addr() net.Addr { return l.addr }

// acceptLoop accepts on ln until it is closed, handing every connection to
// sniff on its own goroutine. Temporary errors (EMFILE) back off instead of
// spinning.
func (s *Server) acceptLoop(ln net.Listener, httpLn *connListener) {
	defer s.wg.Done()
	var backoff time.Duration
	for {
		nc, err := ln.Accept()
		if err != nil {
			if errors.Is(err, net.ErrClosed) || s.closing.Load() {
				return
			}
			if backoff == 0 {
				backoff = 5 * time.Millisecond
			} else if backoff < time.Second {
				backoff *= 2
			}
			s.log.Warn("accept failed", "err", err, "retry_in", backoff)
			select {
			case <-time.After(backoff):
			case <-s.done:
				return
			}
			continue
		}
		backoff = 0
		s.wg.Add(1)
		go func() {
			defer s.wg.Done()
			s.sniff(nc, httpLn)
		}()
	}
}

// sniff reads the first byte of a connection to tell MQTT from HTTP; both
// share one port (DESIGN §3). The connect timeout bounds the wait, so a
// socket that never speaks is closed (H4).
func (s *Server) sniff(nc net.Conn, httpLn *connListener) {
	if tc, ok := nc.(*net.TCPConn); ok {
		_ = tc.SetNoDelay(true)
	}
	_ = nc.SetReadDeadline(time.Now().Add(time.Duration(s.cfg.Limits.ConnectTimeout)))
	var first [2]byte
	if _, err := io.ReadFull(nc, first[:1]); err != nil {
		nc.Close()
		return
	}
	n := 1
	if isHTTPStart(first[0]) {
		// 'P' (0x50) is also a PUBREC byte, which a client may not send
		// first [MQTT-3.1.0-1]. A method's second byte is a letter, a
		// PUBREC's is its length 0x02: look at it, so such a client is
		// closed by the MQTT path at once instead of waiting out the HTTP
		// header timeout (A1).
		if _, err := io.ReadFull(nc, first[1:]); err != nil {
			nc.Close()
			return
		}
		n = 2
	}
	if isHTTPStart(first[0]) && first[1] >= 'A' && first[1] <= 'Z' {
		// net/http sets its own deadlines (ReadHeaderTimeout) from here.
		_ = nc.SetReadDeadline(time.Time{})
		if !httpLn.push(&sniffConn{Conn: nc, first: first[:n]}) {
			nc.Close()
		}
		return
	}
	s.serveMQTT(&sniffConn{Conn: nc, first: first[:n]}, "tcp")
}
