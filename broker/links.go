package broker

import (
	"encoding/json"

	"github.com/pubsub/pubsub/broker/mqtt"
	"github.com/pubsub/pubsub/keys"
)

// Emitter's links (emitter.md §3, docs/emitter.md "link"): a connection
// names a channel, key included, with one or two characters, and then
// publishes to that name instead of the full "KEY/channel/?opts" topic,
// which saves the key's bytes on every PUBLISH of a constrained device.
//
// A link belongs to its connection and ends with it. It is only an alias:
// the expanded topic is authorised like any other at every use, so a key
// revoked or expired after the link was made stops working through it too.
// With "subscribe": true the key is also checked for reading at creation
// and the connection is subscribed to the channel, without history replay.

// maxLinkName is the longest link name. A PUBLISH topic longer than this is
// never a link, so ordinary topics pay one length comparison.
const maxLinkName = 2

// msgBadLink is Emitter's text for an invalid link name (emitter.md §10).
const msgBadLink = "the link must be an alphanumeric string of 1 or 2 characters"

// linkRequest is the body of an emitter/link/ request.
type linkRequest struct {
	Name      string `json:"name"`
	Key       string `json:"key"`
	Channel   string `json:"channel"` // "a/b/" or "a/b/?opts"
	Subscribe bool   `json:"subscribe"`
}

// link is one alias of a connection.
type link struct {
	channel string // as requested, options included; what emitter/me/ lists
	topic   []byte // "KEY/channel/?opts", what a PUBLISH to the name means
}

// emitterAPIState is a connection's state for Emitter's request API: its
// links. (Presence watches live in the node's presenceHub, which the key
// enforcer also reaches.) It is allocated on first use, so a connection
// that never makes a link pays one nil pointer, and only the connection's
// reading goroutine touches it, so it needs no lock.
type emitterAPIState struct {
	links map[string]link
}

// emitterAPI returns c's API state, allocating it. Reading goroutine only.
func (c *conn) emitterAPI() *emitterAPIState {
	if c.api == nil {
		c.api = &emitterAPIState{}
	}
	return c.api
}

// validLinkName reports whether name is 1 or 2 ASCII letters or digits.
func validLinkName(name string) bool {
	if len(name) == 0 || len(name) > maxLinkName {
		return false
	}
	for i := 0; i < len(name); i++ {
		b := name[i]
		if !(b >= 'a' && b <= 'z' || b >= 'A' && b <= 'Z' || b >= '0' && b <= '9') {
			return false
		}
	}
	return true
}

// apiLink answers emitter/link/: it checks the name, the channel and the
// key, subscribes when asked, and records the link, replacing one of the
// same name. Answer: {"req","status":200,"name","channel"}.
func (c *conn) apiLink(body []byte, reply func(map[string]any), fail func(int, string)) {
	var req linkRequest
	if err := json.Unmarshal(body, &req); err != nil {
		fail(400, msgBadRequest)
		return
	}
	if !validLinkName(req.Name) {
		fail(400, msgBadLink)
		return
	}
	if req.Channel == "" {
		fail(400, msgBadRequest)
		return
	}
	expanded := req.Channel
	if req.Key != "" {
		expanded = req.Key + "/" + req.Channel
	}
	pt, err := parseTopic(expanded, false)
	if err != nil {
		fail(400, err.Error())
		return
	}
	if pt.api != "" {
		fail(400, msgBadRequest) // a link to emitter/<op>/ would be a request
		return
	}
	// Emitter links always carry a key, and the key must be valid now (it
	// is checked again at every use). Only a node without auth takes a
	// key-less link, which then expands to a plain topic, as the same
	// PUBLISH would.
	cl := c.claims.Load()
	switch {
	case pt.key != "":
		if cl, err = c.verifyKey(pt.key); err != nil {
			fail(401, msgUnauthorized)
			return
		}
	case !c.srv.cfg.NoAuth:
		fail(401, msgUnauthorized)
		return
	}
	if req.Subscribe {
		if status, msg := c.subscribeLink(expanded, pt.key, cl); status != 200 {
			fail(status, msg)
			return
		}
	}
	st := c.emitterAPI()
	if st.links == nil {
		st.links = make(map[string]link)
	}
	st.links[req.Name] = link{channel: req.Channel, topic: []byte(expanded)}
	reply(map[string]any{"status": 200, "name": req.Name, "channel": req.Channel})
}

// subscribeLink subscribes c to a link's channel, authorised by the link's
// key, at QoS 0 (Emitter delivers nothing else) and without replaying
// history. It returns 200 or Emitter's status and text for the refusal.
func (c *conn) subscribeLink(expanded, key string, cl *keys.Claims) (int, string) {
	pt, err := parseTopic(expanded, true)
	if err != nil {
		return 400, err.Error()
	}
	if !c.srv.canSubscribe(cl, pt.route) {
		c.srv.denied.Add(1)
		return 401, msgUnauthorized
	}
	var ref *keyRef
	if key != "" && !c.srv.cfg.NoAuth {
		// The subscription ends when the link's key expires or is revoked
		// (E8), like any made with a topic key.
		r := refOf(cl)
		ref = &r
	}
	var tag uint8
	if pt.emitter {
		tag = tagEmitter
	}
	if code, ok := c.srv.subscribe(c.sess, pt.route, 0, tag, ref); !ok || code == mqtt.SubackFailure {
		return 400, "the subscription was refused: invalid channel or limits.max_subscriptions reached"
	}
	return 200, ""
}

// linkTopic returns the topic a PUBLISH to name stands for, or nil when
// name is not one of c's links. Callers check len(name) <= maxLinkName
// first; the lookup does not allocate. Reading goroutine only.
func (c *conn) linkTopic(name []byte) []byte {
	if c.api == nil || len(c.api.links) == 0 {
		return nil
	}
	if l, ok := c.api.links[string(name)]; ok {
		return l.topic
	}
	return nil
}

// linkChannels maps c's link names to their channels, for emitter/me/.
// Never nil, so "links" is always an object. Reading goroutine only.
func (c *conn) linkChannels() map[string]string {
	out := make(map[string]string)
	if c.api != nil {
		for name, l := range c.api.links {
			out[name] = l.channel
		}
	}
	return out
}
