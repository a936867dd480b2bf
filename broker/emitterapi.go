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
		reply(map[string]any{"status": 200, "id": c.id, "links": c.linkChannels()})
	case "history":
		c.apiHistory(p.Payload, reply, fail)
	case "presence":
		c.apiPresence(p.Payload, reply, fail)
	case "link":
		c.apiLink(p.Payload, reply, fail)
	default:
		fail(404, msgNotFound)
	}
}

type keygenRequest struct {
	Key     string `json:"key"`
	Channel string `json:"channel"`
	Type    string `json:"type"`
	TTL     int64  `json:"ttl"`
	// Read, Write and Sub are pubsub extensions for a master key (`pubsub
	// keygen --read/--write/--sub`): MQTT filters for the key's read and
	// write claims, on top of or instead of Channel, and its subject.
	Read  []string `json:"read,omitempty"`
	Write []string `json:"write,omitempty"`
	Sub   string   `json:"sub,omitempty"`
}

// maxKeygenTTL bounds a requested ttl so ttl*time.Second cannot overflow
// into an expiry in the past.
const maxKeygenTTL = 100 * 366 * 24 * 3600

// apiKeygen mints a key for a channel: with a master key, any channel; with
// an extend key, a private sub-channel <channel><connection id>/ as Emitter
// does since its private-link fix (emitter#261).
func (c *conn) apiKeygen(body []byte, reply func(map[string]any), fail func(int, string)) {
	var req keygenRequest
	if err := json.Unmarshal(body, &req); err != nil || req.TTL < 0 || req.TTL > maxKeygenTTL {
		fail(400, msgBadRequest)
		return
	}
	parent, err := c.srv.keyring.Verify(req.Key)
	if err != nil {
		fail(401, msgUnauthorized)
		return
	}
	key, channel, status, msg := c.srv.mintChannelKey(parent, req, c.id)
	if status != 200 {
		fail(status, msg)
		return
	}
	reply(map[string]any{"status": 200, "key": key, "channel": channel})
}

// mintChannelKey mints the key req asks for under parent's authority. It
// serves both emitter/keygen/ and the /keygen page (keygen_http.go), so the
// two cannot drift apart. A master parent mints for any channel and
// filters; an extend parent only the private sub-channel
// <channel><connID>/ of the connection that asks, as Emitter does since its
// private-link fix (emitter#261), so without a connection (connID "", the
// web page) it can mint nothing. status is 200, or the Emitter status of
// the refusal with msg its text (emitter.md §10).
func (s *Server) mintChannelKey(parent *keys.Claims, req keygenRequest, connID string) (key, channel string, status int, msg string) {
	if req.TTL < 0 || req.TTL > maxKeygenTTL {
		return "", "", 400, msgBadRequest
	}
	filters := len(req.Read) > 0 || len(req.Write) > 0
	var filter string
	if req.Channel != "" || !filters {
		var err error
		if filter, err = keys.ChannelFilter(req.Channel); err != nil {
			return "", "", 400, msgBadTarget
		}
	}
	// Emitter's 'x' (execute) is reserved and unused; drop it.
	perm, err := keys.ParsePerm(strings.ReplaceAll(req.Type, "x", ""))
	if err != nil {
		return "", "", 400, msgBadRequest
	}
	var exp time.Time
	if req.TTL > 0 {
		exp = time.Now().Add(time.Duration(req.TTL) * time.Second)
	}
	switch {
	case parent.IsMaster():
		if exp.IsZero() && s.cfg.Keys.RequireExp {
			return "", "", 400, "keys.require_exp is set: give a ttl"
		}
		// An empty perm claim marks an Eventhub token, which its filters
		// alone authorise (keys.Claims.Perm): minting one for an empty
		// letter set would grant "rwsl" where nothing was asked for.
		if perm&^keys.PermMaster == 0 {
			return "", "", 400, "choose at least one permission from rwslpe"
		}
		claims := keys.Claims{Subject: parent.Subject, Perm: (perm &^ keys.PermMaster).String()}
		if req.Sub != "" {
			claims.Subject = req.Sub
		}
		if filter != "" {
			claims.Read, claims.Write = []string{filter}, []string{filter}
		}
		claims.Read = append(claims.Read, req.Read...)
		claims.Write = append(claims.Write, req.Write...)
		if !exp.IsZero() {
			claims.ExpiresAt = jwtTime(exp)
		}
		key, err := s.keyring.Sign(claims)
		if err != nil {
			// Sign names the bad entry by index only, never the key.
			return "", "", 400, msgBadRequest + ": " + err.Error()
		}
		return key, req.Channel, 200, ""
	case parent.Perms().Has(keys.PermExtend) && (filters || req.Sub != ""):
		// A private key is the parent's narrowed to one channel; it may
		// not pick its own filters or subject.
		return "", "", 401, msgUnauthorized
	case parent.Perms().Has(keys.PermExtend) && connID == "":
		return "", "", 400, "an extend key mints private channel keys for its own MQTT connection: " +
			"publish the request to emitter/keygen/ on that connection"
	case parent.Perms().Has(keys.PermExtend):
		base, wildcard := strings.CutSuffix(req.Channel, "#/")
		private := base + connID + "/"
		if wildcard {
			private += "#/"
		}
		pf, err := keys.ChannelFilter(private)
		if err != nil || !parent.CanExtend(filter) {
			return "", "", 401, msgUnauthorized
		}
		child, err := parent.Extend(pf, perm, exp)
		if err != nil {
			return "", "", 401, msgUnauthorized
		}
		key, err := s.keyring.Sign(child)
		if err != nil {
			return "", "", 400, msgBadRequest
		}
		return key, private, 200, ""
	default:
		return "", "", 401, msgUnauthorized
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
		err = c.srv.Unrevoke(jti)
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
	if errors.Is(err, keys.ErrRevoked) {
		// Verify returns no claims for a revoked key, which unbanning by
		// key (Emitter's AllowKey) needs.
		cl, err = revokedKeyClaims(target)
	}
	if err != nil {
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
