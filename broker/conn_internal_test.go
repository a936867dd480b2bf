package broker

import (
	"io"
	"net"
	"testing"
	"time"
)

// TestNonBlockingWriteAfterStaleDeadline: a write deadline left over from a
// blocking write must not make the reader's non-blocking write fail (it
// once closed healthy connections under load); the bytes go out anyway.
func TestNonBlockingWriteAfterStaleDeadline(t *testing.T) {
	cfg := DefaultConfig()
	cfg.NoAuth = true
	cfg.DataDir = t.TempDir()
	s, err := New(cfg, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	accepted := make(chan net.Conn, 1)
	go func() {
		c, err := ln.Accept()
		if err == nil {
			accepted <- c
		}
	}()
	peer, err := net.Dial("tcp", ln.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer peer.Close()
	nc := <-accepted
	c := &conn{srv: s, nc: nc}
	c.setupRaw()
	defer c.nc.Close()
	if c.raw == nil {
		t.Fatal("no raw conn for TCP")
	}
	// The deadline a past blocking write left behind, already expired.
	_ = nc.SetWriteDeadline(time.Now().Add(-time.Second))

	reader := &conn{srv: s}
	c.enqueueVia(nil, []byte("hello"), 0, reader)
	reader.flushPending()

	_ = peer.SetReadDeadline(time.Now().Add(5 * time.Second))
	got := make([]byte, 5)
	if _, err := io.ReadFull(peer, got); err != nil || string(got) != "hello" {
		t.Fatalf("read %q, %v: the bytes must arrive through the flusher", got, err)
	}
	c.omu.Lock()
	closed := c.oclosed
	c.omu.Unlock()
	if closed {
		t.Fatal("a stale deadline closed the connection")
	}
}
