// Package wsconn adapts a WebSocket that carries a byte stream in binary
// frames (MQTT over WebSocket, [MQTT-6.0.0]) to net.Conn, so the MQTT code
// on both ends — the broker's session loop and the Go client — does not know
// which transport it runs on.
package wsconn

import (
	"errors"
	"io"
	"net"
	"sync"
	"time"

	"github.com/gorilla/websocket"
)

// ErrTextFrame is returned by Read when the peer sends a text frame, which
// MQTT over WebSocket forbids [MQTT-6.0.0-1]: the connection must be closed.
var ErrTextFrame = errors.New("websocket: text frame on an MQTT connection")

// Conn is a net.Conn over a WebSocket. Packets may span or share frames
// [MQTT-6.0.0-2]: Read treats the binary frames as one byte stream, and each
// Write is one binary frame.
type Conn struct {
	ws     *websocket.Conn
	reader io.Reader
	wmu    sync.Mutex // gorilla allows one writer at a time
}

// New wraps ws.
func New(ws *websocket.Conn) *Conn { return &Conn{ws: ws} }

// WebSocket returns the wrapped connection.
func (c *Conn) WebSocket() *websocket.Conn { return c.ws }

func (c *Conn) Read(p []byte) (int, error) {
	for {
		if c.reader == nil {
			mt, r, err := c.ws.NextReader()
			if err != nil {
				return 0, err
			}
			if mt != websocket.BinaryMessage {
				return 0, ErrTextFrame
			}
			c.reader = r
		}
		n, err := c.reader.Read(p)
		if err == io.EOF {
			c.reader = nil
			if n > 0 {
				return n, nil
			}
			continue
		}
		return n, err
	}
}

// Write sends p as one binary frame. Callers that coalesce writes get one
// frame per flush.
func (c *Conn) Write(p []byte) (int, error) {
	c.wmu.Lock()
	defer c.wmu.Unlock()
	if err := c.ws.WriteMessage(websocket.BinaryMessage, p); err != nil {
		return 0, err
	}
	return len(p), nil
}

// Close closes the underlying network connection without a close handshake.
func (c *Conn) Close() error                       { return c.ws.Close() }
func (c *Conn) LocalAddr() net.Addr                { return c.ws.LocalAddr() }
func (c *Conn) RemoteAddr() net.Addr               { return c.ws.RemoteAddr() }
func (c *Conn) SetReadDeadline(t time.Time) error  { return c.ws.SetReadDeadline(t) }
func (c *Conn) SetWriteDeadline(t time.Time) error { return c.ws.SetWriteDeadline(t) }

// SetDeadline sets both deadlines.
func (c *Conn) SetDeadline(t time.Time) error {
	if err := c.ws.SetReadDeadline(t); err != nil {
		return err
	}
	return c.ws.SetWriteDeadline(t)
}
