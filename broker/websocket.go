package broker

import (
	"net/http"
	"strings"
	"sync"
	"time"

	"github.com/gorilla/websocket"

	"github.com/pubsub/pubsub/broker/wsconn"
)

// mqttSubprotocols are the Sec-WebSocket-Protocol values MQTT clients offer:
// "mqtt" is the standard name [MQTT-6.0.0-3]; "mqttv3.1" and "mqttv3" are
// what older Paho and Emitter clients send.
var mqttSubprotocols = []string{"mqtt", "mqttv3.1", "mqttv3"}

// offersMQTT reports whether the upgrade request offers an MQTT subprotocol.
func offersMQTT(r *http.Request) bool {
	for _, p := range websocket.Subprotocols(r) {
		for _, m := range mqttSubprotocols {
			if strings.EqualFold(p, m) {
				return true
			}
		}
	}
	return false
}

// wsWriteBuffers is shared by every WebSocket so an idle connection holds no
// write buffer (DESIGN §3: idle connections cost little).
var wsWriteBuffers sync.Pool

func (s *Server) newUpgrader(subprotocols []string) *websocket.Upgrader {
	return &websocket.Upgrader{
		HandshakeTimeout: 5 * time.Second, // C10
		Subprotocols:     subprotocols,
		WriteBufferPool:  &wsWriteBuffers,
		// Browsers' MQTT and Eventhub clients connect from any origin; keys,
		// not cookies, authorise them, so a foreign Origin grants nothing.
		CheckOrigin: func(*http.Request) bool { return true },
	}
}

// serveMQTTWebSocket upgrades r and runs an MQTT session over it. Any request
// path works: clients use "/", "/mqtt" and others.
func (s *Server) serveMQTTWebSocket(w http.ResponseWriter, r *http.Request) {
	ws, err := s.mqttUpgrader.Upgrade(w, r, nil)
	if err != nil {
		// The upgrader already answered with an HTTP error.
		return
	}
	// The read limit covers one frame payload; a packet may span frames and
	// is capped again by the MQTT reader (C6).
	ws.SetReadLimit(int64(s.cfg.Limits.MaxPacketSize) + 5)
	s.serveMQTT(wsconn.New(ws), "ws")
}
