package broker

import (
	"bytes"
	"encoding/json"
	"fmt"
	"time"

	"github.com/pubsub/pubsub/broker/mqtt"
	"github.com/pubsub/pubsub/broker/topic"
	"github.com/pubsub/pubsub/keys"
)

// tagEmitter marks a subscription made in the Emitter dialect: its messages
// are delivered with the channel's trailing '/' (emitter.md §1).
const tagEmitter uint8 = 1

// needsDialect reports whether a PUBLISH topic may carry a key, an API
// request or an options level. Plain MQTT topics skip parsing entirely, so
// the common path stays allocation-free.
func needsDialect(t []byte) bool {
	if bytes.IndexByte(t, '?') >= 0 {
		return true
	}
	first := t
	if i := bytes.IndexByte(t, '/'); i >= 0 {
		first = t[:i]
	} else {
		return false
	}
	return string(first) == "emitter" || bytes.IndexByte(first, '.') >= 0 && looksLikeKey(string(first))
}

// routePublish authorises a client's PUBLISH and routes it. An unauthorised
// PUBLISH is not routed; it is still acknowledged by the caller so the
// client's QoS flow ends, counted, and answered on emitter/error/ for
// Emitter-dialect clients (policy pinned in docs/keys.md, E11).
func (c *conn) routePublish(p *mqtt.Publish) error {
	t := p.Topic
	if len(t) <= maxLinkName {
		// A link name stands for its "KEY/channel/?opts" (links.go), read
		// and authorised below as if the client had sent it.
		if expanded := c.linkTopic(t); expanded != nil {
			t = expanded
		}
	}
	cl := c.claims.Load()
	noEcho := false
	emitter := false
	var ttl time.Duration
	if needsDialect(t) {
		pt, err := parseTopic(string(t), false)
		if err != nil {
			c.emitterError(p.PacketID, 400, err.Error())
			return nil
		}
		emitter = pt.emitter
		if pt.api != "" {
			c.handleAPI(pt, string(p.Topic), p)
			return nil
		}
		if pt.key != "" {
			if cl, err = c.verifyKey(pt.key); err != nil {
				c.denyPublish(p, true, "the security key provided is not authorized to perform this operation")
				return nil
			}
		}
		if err := topic.ValidateTopic([]byte(pt.route)); err != nil {
			// Emitter answers a wildcard publish with 403.
			c.emitterError(p.PacketID, 403, "the channel must be static to publish")
			return nil
		}
		t = []byte(pt.route)
		noEcho = pt.opts.noEcho
		ttl = time.Duration(pt.opts.ttl) * time.Second
	}
	if !c.srv.canPublish(cl, t) {
		c.denyPublish(p, emitter, "the security key provided is not authorized to perform this operation")
		return nil
	}
	c.enc.origin = c.origin
	// Keeping a retained message is storing it: the key needs 's', as for
	// ttl= (Emitter's rule, and the HTTP API's). Without it the message is
	// still delivered, just not kept.
	retain := p.Retain
	if retain && !c.srv.cfg.NoAuth && (cl == nil || !cl.CanStore(bytesView(t))) {
		retain = false
	}
	c.srv.publish(&c.enc, t, p.Payload, p.QoS, retain, c.sess, noEcho)
	// Stored after routing, before the caller's PUBACK: with storage.sync
	// always the message is on disk when the client hears it was taken.
	// ttl=N needs a key with 's' (Emitter stores silently otherwise).
	if ttl > 0 && !c.srv.cfg.NoAuth && (cl == nil || !cl.CanStore(bytesView(t))) {
		ttl = 0
	}
	if rec := c.srv.recordTTL(t); rec > ttl {
		ttl = rec
	}
	// The stored publisher is the key's subject, as in live JSON-RPC pushes
	// (Eventhub's origin), so history and live messages agree.
	if err := c.srv.storeMessage(&c.enc, t, p.Payload, p.QoS, c.origin, ttl); err != nil {
		c.srv.log.Error("message not stored", "err", err)
		if p.QoS > 0 {
			// F6: no PUBACK for what was not kept; the client resends.
			return fmt.Errorf("store: %w", err)
		}
	}
	return nil
}

func (c *conn) denyPublish(p *mqtt.Publish, emitter bool, msg string) {
	c.srv.denied.Add(1)
	c.srv.log.Debug("publish refused", "client_id", c.sess.id, "topic_len", len(p.Topic))
	if emitter {
		c.emitterError(p.PacketID, 401, msg)
	}
}

// subscribeOne authorises and adds one SUBSCRIBE filter, returning the
// SUBACK code. Refusals are SUBACK 0x80 (A16, E6), plus an emitter/error/
// message for Emitter-dialect requests as Emitter sends.
func (c *conn) subscribeOne(raw string, qos byte, packetID uint16) (grantedSub, byte) {
	pt, err := parseTopic(raw, true)
	if err != nil {
		if looksLikeEmitter(raw) {
			c.emitterError(packetID, 400, err.Error())
		}
		return grantedSub{}, mqtt.SubackFailure
	}
	if pt.api != "" {
		return grantedSub{}, mqtt.SubackFailure
	}
	cl := c.claims.Load()
	if pt.key != "" {
		if cl, err = c.verifyKey(pt.key); err != nil {
			c.emitterError(packetID, 401, "the security key provided is not authorized to perform this operation")
			return grantedSub{}, mqtt.SubackFailure
		}
	}
	if !c.srv.canSubscribe(cl, pt.route) {
		c.srv.denied.Add(1)
		if pt.emitter {
			c.emitterError(packetID, 401, "the security key provided is not authorized to perform this operation")
		}
		return grantedSub{}, mqtt.SubackFailure
	}
	var tag uint8
	var ref *keyRef
	if pt.emitter {
		tag = tagEmitter
	}
	if pt.key != "" && !c.srv.cfg.NoAuth {
		r := refOf(cl)
		ref = &r
	}
	code, ok := c.srv.subscribe(c.sess, pt.route, qos, tag, ref)
	if !ok {
		return grantedSub{}, code
	}
	// History asked for with last/from/until goes out before the SUBACK
	// (Emitter's order; DESIGN §4).
	c.replayMQTT(pt, cl, tag, code)
	return grantedSub{filter: pt.route, qos: code, tag: tag}, code
}

func looksLikeEmitter(raw string) bool {
	pt := []byte(raw)
	return needsDialect(pt) && !bytes.HasPrefix(pt, []byte("?"))
}

// emitterError sends Emitter's error message {"req","status","message"} to
// this connection on emitter/error/ (emitter.md §10). req is the packet id,
// omitted when 0.
func (c *conn) emitterError(packetID uint16, status int, message string) {
	c.sendJSON("emitter/error/", map[string]any{"status": status, "message": message}, packetID)
}

// sendJSON publishes a QoS 0 JSON reply to this connection only; "req" is
// set to the request's packet id when non-zero.
func (c *conn) sendJSON(t string, body map[string]any, packetID uint16) {
	if packetID != 0 {
		body["req"] = packetID
	}
	payload, err := json.Marshal(body)
	if err != nil {
		return
	}
	p := mqtt.Publish{Topic: []byte(t), Payload: payload}
	c.enqueue(p.AppendTo(nil))
}

// authorizeWill decides whether a connection's will may be published: the
// will topic is authorised like a PUBLISH by the same connection, with the
// key it was given (B7).
func (s *Server) authorizeWill(cl *keys.Claims, w *willMessage) (route []byte, ok bool) {
	t := []byte(w.topic)
	if needsDialect(t) {
		pt, err := parseTopic(w.topic, false)
		if err != nil || pt.api != "" {
			return nil, false
		}
		if pt.key != "" && !s.cfg.NoAuth {
			if cl, err = s.keyring.Verify(pt.key); err != nil {
				return nil, false
			}
		}
		t = []byte(pt.route)
		if topic.ValidateTopic(t) != nil {
			return nil, false
		}
	}
	return t, s.canPublish(cl, t)
}
