package broker

import (
	"encoding/json"
	"errors"
	"strings"
	"time"

	"github.com/pubsub/pubsub/broker/mqtt"
	"github.com/pubsub/pubsub/keys"
)

// Emitter's request/response API (emitter.md §3): a PUBLISH to
// emitter/<op>/ with a JSON body is answered with a QoS 0 PUBLISH to the
// same topic string, on this connection only, carrying "req" = the MQTT
// packet id so the SDK can match it.

// Emitter's error texts (emitter.md §10), which SDKs show to users.
const (
	msgBadRequest   = "the request was invalid or cannot be otherwise served"
	msgUnauthorized = "the security key provided is not authorized to perform this operation"
	msgNotFound     = "the resource was not found"
	msgNotImpl      = "the server either does not recognize the request method, or it lacks the ability to fulfill it"
	msgBadTarget    = "channel should end with `/` for strict types or `/#/` for wildcards"
)

// maxAPIRequest caps the JSON body of an API request before it is parsed.
const maxAPIRequest = 64 << 10

func (c *conn) handleAPI(pt parsedTopic, raw string, p *mqtt.Publish) {
	reply := func(body map[string]any) { c.sendJSON(raw, body, p.PacketID) }
	fail := func(status int, msg string) { reply(map[string]any{"status": status, "message": msg}) }
	if len(p.Payload) > maxAPIRequest {
		fail(400, msgBadRequest)
		return
	}
	switch pt.api {
	case "keygen":
		c.apiKeygen(p.Payload, reply, fail)
	case "keyban":
		c.apiKeyban(p.Payload, reply, fail)
	case "me":
		reply(map[string]any{"status": 200, "id": c.id, "links": map[string]string{}})
	case "presence", "history", "link":
		fail(501, msgNotImpl)
	default:
		fail(404, msgNotFound)
	}
}

type keygenRequest struct {
	Key     string `json:"key"`
	Channel string `json:"channel"`
	Type    string `json:"type"`
	TTL     int64  `json:"ttl"`
}

// apiKeygen mints a key for a channel: with a master key, any channel; with
// an extend key, a private sub-channel <channel><connection id>/ as Emitter
// does since its private-link fix (emitter#261).
func (c *conn) apiKeygen(body []byte, reply func(map[string]any), fail func(int, string)) {
	var req keygenRequest
	if err := json.Unmarshal(body, &req); err != nil || req.TTL < 0 {
		fail(400, msgBadRequest)
		return
	}
	parent, err := c.srv.keyring.Verify(req.Key)
	if err != nil {
		fail(401, msgUnauthorized)
		return
	}
	filter, err := keys.ChannelFilter(req.Channel)
	if err != nil {
		fail(400, msgBadTarget)
		return
	}
	// Emitter's 'x' (execute) is reserved and unused; drop it.
	perm, err := keys.ParsePerm(strings.ReplaceAll(req.Type, "x", ""))
	if err != nil {
		fail(400, msgBadRequest)
		return
	}
	var exp time.Time
	if req.TTL > 0 {
		exp = time.Now().Add(time.Duration(req.TTL) * time.Second)
	}
	switch {
	case parent.IsMaster():
		if exp.IsZero() && c.srv.cfg.Keys.RequireExp {
			fail(400, "keys.require_exp is set: give a ttl")
			return
		}
		claims := keys.Claims{Subject: parent.Subject, Read: []string{filter}, Write: []string{filter}, Perm: (perm &^ keys.PermMaster).String()}
		if !exp.IsZero() {
			claims.ExpiresAt = jwtTime(exp)
		}
		key, err := c.srv.keyring.Sign(claims)
		if err != nil {
			fail(400, msgBadRequest)
			return
		}
		reply(map[string]any{"status": 200, "key": key, "channel": req.Channel})
	case parent.Perms().Has(keys.PermExtend):
		base, wildcard := strings.CutSuffix(req.Channel, "#/")
		private := base + c.id + "/"
		if wildcard {
			private += "#/"
		}
		pf, err := keys.ChannelFilter(private)
		if err != nil || !parent.CanExtend(filter) {
			fail(401, msgUnauthorized)
			return
		}
		child, err := parent.Extend(pf, perm, exp)
		if err != nil {
			fail(401, msgUnauthorized)
			return
		}
		key, err := c.srv.keyring.Sign(child)
		if err != nil {
			fail(400, msgBadRequest)
			return
		}
		reply(map[string]any{"status": 200, "key": key, "channel": private})
	default:
		fail(401, msgUnauthorized)
	}
}

type keybanRequest struct {
	Secret string `json:"secret"`
	Target string `json:"target"`
	Banned bool   `json:"banned"`
}

// apiKeyban revokes (banned=true) or restores a key, given a master key.
// The target is a key or, as a pubsub extension, a bare key id (jti).
func (c *conn) apiKeyban(body []byte, reply func(map[string]any), fail func(int, string)) {
	var req keybanRequest
	if err := json.Unmarshal(body, &req); err != nil || req.Target == "" {
		fail(400, msgBadRequest)
		return
	}
	master, err := c.srv.keyring.Verify(req.Secret)
	if err != nil || !master.IsMaster() {
		fail(401, msgUnauthorized)
		return
	}
	jti, until, err := c.srv.keyTarget(req.Target)
	if err != nil {
		fail(400, msgBadRequest)
		return
	}
	if req.Banned {
		err = c.srv.Revoke(jti, until)
	} else {
		err = c.srv.revocations.Unrevoke(jti)
	}
	if err != nil {
		c.srv.log.Error("revocation list not saved", "err", err)
		fail(500, "the revocation list could not be saved")
		return
	}
	c.srv.log.Info("key revocation changed", "jti", jti, "banned", req.Banned)
	reply(map[string]any{"status": 200, "banned": req.Banned})
}

// keyTarget resolves a revocation target to its key id and the time after
// which the entry can be forgotten (the key's expiry; zero = keep).
func (s *Server) keyTarget(target string) (jti string, until time.Time, err error) {
	if !looksLikeKey(target) {
		return target, time.Time{}, nil
	}
	cl, err := s.keyring.Verify(target)
	if err != nil && !errors.Is(err, keys.ErrRevoked) {
		return "", time.Time{}, err
	}
	if cl == nil || cl.ID == "" {
		return "", time.Time{}, errors.New("the key has no id (jti) to revoke")
	}
	if cl.ExpiresAt != nil {
		until = cl.ExpiresAt.Time
	}
	return cl.ID, until, nil
}
