package broker_test

// Channel keys on the wire: the negative vectors of group E of
// reliability-cases.md and the access policies pinned in docs/keys.md,
// checked against a node with auth on. Good keys are minted with the node's
// keyring; bad ones are forged byte by byte with the node's own secret (or
// another one), so each refusal is caused by exactly the defect its row
// names. Control rows prove the forger and the assertions can tell a good
// key from a bad one.

import (
	"crypto/hmac"
	"crypto/sha256"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	paho "github.com/eclipse/paho.mqtt.golang"
	"github.com/golang-jwt/jwt/v5"
	"github.com/stretchr/testify/require"

	"github.com/pubsub/pubsub/broker"
	"github.com/pubsub/pubsub/broker/mqtt"
	"github.com/pubsub/pubsub/keys"
)

// wireConnackNotAuthorized is CONNACK return code 5, "not authorized"
// [MQTT-3.2.2-5]: the answer to every key the node refuses at CONNECT.
var wireConnackNotAuthorized = []byte{0x20, 0x02, 0x00, 0x05}

// keyUnauthorizedText is Emitter's 401 text (emitter.md §10); SDKs show it
// to users, so it is part of the protocol.
const keyUnauthorizedText = "the security key provided is not authorized to perform this operation"

// keyLeeway is the clock skew the node tolerates on exp (broker.setupKeys).
const keyLeeway = keys.MaxLeeway

// ---------------------------------------------------------------- node

// keyNode is a node that enforces channel keys, with a secret the test
// knows so it can forge tokens.
type keyNode struct {
	srv    *broker.Server
	secret keys.Secret
}

func startKeyNode(t *testing.T, configure func(*broker.Config)) *keyNode {
	t.Helper()
	sec, err := keys.GenerateSecret()
	require.NoError(t, err)
	srv := startServer(t, func(cfg *broker.Config) {
		cfg.NoAuth = false
		cfg.Secret = sec.Encode()
		if configure != nil {
			configure(cfg)
		}
	})
	return &keyNode{srv: srv, secret: sec}
}

// mint signs c with the node's keyring.
func (n *keyNode) mint(t testing.TB, c keys.Claims) string {
	t.Helper()
	key, err := n.srv.Keyring().Sign(c)
	require.NoError(t, err)
	return key
}

// masterKey mints a key that may do everything.
func (n *keyNode) masterKey(t testing.TB) string {
	t.Helper()
	return n.mint(t, keys.Claims{Subject: "master", Perm: "m", Read: []string{"#"}, Write: []string{"#"}})
}

// scopedKey mints an Emitter-style key: read and write on filter with the
// given permission letters.
func (n *keyNode) scopedKey(t testing.TB, filter, perm string) string {
	t.Helper()
	return n.mint(t, keys.Claims{Subject: "scoped", Perm: perm, Read: []string{filter}, Write: []string{filter}})
}

// forgeToken builds a JWT by hand: header and claims as given, signed with
// HMAC-SHA256 under hmacKey, or with an empty signature when hmacKey is nil.
func forgeToken(t testing.TB, header, claims map[string]any, hmacKey []byte) string {
	t.Helper()
	enc := base64.RawURLEncoding
	h, err := json.Marshal(header)
	require.NoError(t, err)
	c, err := json.Marshal(claims)
	require.NoError(t, err)
	signing := enc.EncodeToString(h) + "." + enc.EncodeToString(c)
	if hmacKey == nil {
		return signing + "."
	}
	mac := hmac.New(sha256.New, hmacKey)
	mac.Write([]byte(signing))
	return signing + "." + enc.EncodeToString(mac.Sum(nil))
}

// flipSignatureBit flips a bit of the value of the signature's last
// base64url character. An HS256 signature is 43 characters, the last one
// holding 4 signature bits and 2 zero bits: bit 0x04 keeps the encoding
// canonical, so only the HMAC check can refuse the token; bit 0x01 makes
// the encoding non-canonical, which the decoder must refuse.
func flipSignatureBit(t testing.TB, token string, bit byte) string {
	t.Helper()
	const alphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_"
	last := strings.IndexByte(alphabet, token[len(token)-1])
	require.GreaterOrEqual(t, last, 0)
	return token[:len(token)-1] + string(alphabet[last^int(bit)])
}

// ---------------------------------------------------------------- clients

// keyClient is a raw MQTT client for key tests. Unlike Paho it shows every
// packet, so a test sees the emitter/error/ messages and the exact acks.
type keyClient struct {
	*rawClient
}

// dialKey connects a clean-session raw client presenting key as its CONNECT
// password (with a username, as [MQTT-3.1.2-22] requires); "" for no key.
func dialKey(t *testing.T, srv *broker.Server, clientID, key string) *keyClient {
	t.Helper()
	c := &keyClient{rawClient: dialRaw(t, srv, transportTCP)}
	p := mqtt.Connect{ClientID: clientID, CleanSession: true, KeepAlive: 60}
	if key != "" {
		p.Username, p.Password = clientID, []byte(key)
	}
	c.mustConnect(p)
	return c
}

// emitterError is Emitter's error message {"req","status","message"}
// (emitter.md §10).
type emitterError struct {
	Req     uint16 `json:"req"`
	Status  int    `json:"status"`
	Message string `json:"message"`
}

// decodeEmitterError reads an emitter/error/ payload, requiring exactly
// Emitter's fields: "req" when the request had a packet id, "status" and
// "message", nothing else.
func decodeEmitterError(t testing.TB, payload []byte, withReq bool) emitterError {
	t.Helper()
	var fields map[string]json.RawMessage
	require.NoError(t, json.Unmarshal(payload, &fields), "emitter error %s", payload)
	want := []string{"message", "status"}
	if withReq {
		want = append(want, "req")
	}
	require.ElementsMatch(t, want, mapKeys(fields), "emitter error fields: %s", payload)
	var e emitterError
	require.NoError(t, json.Unmarshal(payload, &e))
	return e
}

func mapKeys(m map[string]json.RawMessage) []string {
	out := make([]string, 0, len(m))
	for k := range m {
		out = append(out, k)
	}
	return out
}

// subscribeCode subscribes one filter and returns its SUBACK code and the
// emitter/error/ messages the node sent before the SUBACK. Any other packet
// in between fails the test.
func (c *keyClient) subscribeCode(id uint16, filter string, qos byte) (byte, []emitterError) {
	c.t.Helper()
	c.write(mqtt.AppendSubscribe(nil, id, []mqtt.Subscription{{Filter: []byte(filter), QoS: qos}}))
	var errs []emitterError
	for {
		h, body := c.next()
		switch h.Type {
		case mqtt.TypePublish:
			if e, ok := c.emitterErrorIn(h, body); ok {
				errs = append(errs, e)
			}
		case mqtt.TypeSuback:
			gotID, codes, err := mqtt.DecodeSuback(body, nil)
			require.NoError(c.t, err)
			require.Equal(c.t, id, gotID)
			require.Len(c.t, codes, 1)
			return codes[0], errs
		default:
			c.t.Fatalf("subscribe %q: unexpected %v", filter, h.Type)
		}
	}
}

// publishAcked publishes at QoS 1 or 2 and completes the flow; it returns
// the emitter/error/ messages that arrived before the acknowledgement.
// A refused PUBLISH is acknowledged all the same (docs/keys.md, E11).
func (c *keyClient) publishAcked(id uint16, topic string, qos byte, payload string) []emitterError {
	c.t.Helper()
	p := mqtt.Publish{QoS: qos, Topic: []byte(topic), PacketID: id, Payload: []byte(payload)}
	c.write(p.AppendTo(nil))
	want := mqtt.TypePuback
	if qos == 2 {
		want = mqtt.TypePubrec
	}
	var errs []emitterError
	for {
		h, body := c.next()
		switch h.Type {
		case mqtt.TypePublish:
			if e, ok := c.emitterErrorIn(h, body); ok {
				errs = append(errs, e)
			}
			continue
		case want:
		default:
			c.t.Fatalf("publish %q: want %v, got %v", topic, want, h.Type)
		}
		gotID, err := mqtt.DecodeAck(body)
		require.NoError(c.t, err)
		require.Equal(c.t, id, gotID)
		if qos == 2 {
			// [MQTT-4.3.3-2]: PUBREL, then PUBCOMP ends the flow.
			c.write(mqtt.AppendAck(nil, mqtt.TypePubrel, id))
			h, body := c.next()
			require.Equal(c.t, mqtt.TypePubcomp, h.Type)
			gotID, err := mqtt.DecodeAck(body)
			require.NoError(c.t, err)
			require.Equal(c.t, id, gotID)
		}
		return errs
	}
}

// publish0 publishes at QoS 0; nothing comes back on success.
func (c *keyClient) publish0(topic, payload string) {
	c.t.Helper()
	p := mqtt.Publish{Topic: []byte(topic), Payload: []byte(payload)}
	c.write(p.AppendTo(nil))
}

// emitterErrorIn requires a PUBLISH that arrives in the middle of a
// request to be an emitter/error/ message. The node's own snapshots on
// $SYS/stats/ may reach a $SYS subscriber at any moment and are skipped
// (ok false).
func (c *keyClient) emitterErrorIn(h mqtt.FixedHeader, body []byte) (e emitterError, ok bool) {
	c.t.Helper()
	var p mqtt.Publish
	require.NoError(c.t, mqtt.DecodePublish(h.Flags, body, &p))
	if strings.HasPrefix(string(p.Topic), "$SYS/") {
		return emitterError{}, false
	}
	require.Equal(c.t, "emitter/error/", string(p.Topic), "unexpected PUBLISH (payload %q)", p.Payload)
	return decodeEmitterError(c.t, p.Payload, true), true
}

// pingOK proves the connection is still served: PINGREQ gets PINGRESP
// [MQTT-3.12.4-1]. Only for clients with nothing else incoming.
func (c *keyClient) pingOK() {
	c.t.Helper()
	c.write(mqtt.AppendPingreq(nil))
	h, _ := c.next()
	require.Equal(c.t, mqtt.TypePingresp, h.Type)
}

// requireUnauthorized checks Emitter's 401 answer to request id.
func requireUnauthorized(t testing.TB, errs []emitterError, id uint16) {
	t.Helper()
	require.Equal(t, []emitterError{{Req: id, Status: 401, Message: keyUnauthorizedText}}, errs)
}

// ---------------------------------------------------------------- observer

// keyObserver is a master-key subscriber to every topic that does not
// start with '$'. With a sentinel it proves that a message was not routed:
// the node keeps one connection's deliveries in order, so a message routed
// before the sentinel was published arrives before the sentinel. Its
// methods take the calling (sub)test, which is the one to fail.
type keyObserver struct {
	c         paho.Client
	in        *inbox
	sentinels atomic.Int64
}

// observerIDs keeps observers' client ids apart: a repeated id would take
// the earlier observer's session over [MQTT-3.1.4-2].
var observerIDs atomic.Int64

func (n *keyNode) observe(t *testing.T) *keyObserver {
	t.Helper()
	in := &inbox{}
	opts := pahoOptions(n.srv, transportTCP, fmt.Sprintf("observer-%d", observerIDs.Add(1))).
		SetUsername("observer").SetPassword(n.masterKey(t)).
		SetDefaultPublishHandler(in.handle)
	c, _ := connectPaho(t, opts)
	subscribe(t, c, "#", 1)
	return &keyObserver{c: c, in: in}
}

// publish publishes as master and waits for the node's acknowledgement.
func (o *keyObserver) publish(t *testing.T, topic string, qos byte, payload string) {
	t.Helper()
	publish(t, o.c, topic, qos, false, []byte(payload))
}

// routed reports whether a message on topic reached the observer by the
// time a fresh sentinel did. Topics must be unique within a test.
func (o *keyObserver) routed(t *testing.T, topic string) bool {
	t.Helper()
	sentinel := fmt.Sprintf("sentinel/%d", o.sentinels.Add(1))
	o.publish(t, sentinel, 0, "sentinel")
	for _, m := range o.in.untilSentinel(t, sentinel, "sentinel") {
		if m.Topic == topic {
			return true
		}
	}
	return false
}

// ---------------------------------------------------------------- E1-E4

// TestKeysRefusedAtConnect (E1-E4): a CONNECT whose password is a bad key
// gets CONNACK 5 and the connection is closed [MQTT-3.2.2-5]; nothing of it
// stays on the node.
func TestKeysRefusedAtConnect(t *testing.T) {
	n := startKeyNode(t, nil)
	strict := startKeyNode(t, func(cfg *broker.Config) { cfg.Keys.RequireExp = true })

	hs256 := func(kid string) map[string]any { return map[string]any{"alg": "HS256", "typ": "JWT", "kid": kid} }
	now := time.Now()
	claims := func(extra map[string]any) map[string]any {
		c := map[string]any{"sub": "mallory", "read": []string{"#"}, "write": []string{"#"}, "perm": "rw",
			"iat": now.Unix(), "exp": now.Add(time.Hour).Unix(), "jti": "forged"}
		for k, v := range extra {
			if v == nil {
				delete(c, k)
				continue
			}
			c[k] = v
		}
		return c
	}
	other, err := keys.GenerateSecret()
	require.NoError(t, err)
	good := n.scopedKey(t, "a/#", "rw")
	goodParts := strings.Split(good, ".")
	widened := strings.Split(forgeToken(t, hs256(n.secret.ID), claims(map[string]any{"perm": "rwm"}), n.secret.Key), ".")

	tests := []struct {
		name     string
		node     *keyNode
		password string
		accepted bool // control rows
	}{
		{name: "control: minted key", node: n, password: good, accepted: true},
		{name: "control: forged with the node's secret", node: n, accepted: true,
			password: forgeToken(t, hs256(n.secret.ID), claims(nil), n.secret.Key)},
		{name: "control: no exp, exp optional", node: n, accepted: true,
			password: forgeToken(t, hs256(n.secret.ID), claims(map[string]any{"exp": nil}), n.secret.Key)},

		{name: "E1 alg none, empty signature", node: n,
			password: forgeToken(t, map[string]any{"alg": "none", "typ": "JWT"}, claims(nil), nil)},
		{name: "E1 alg none with the node's kid", node: n,
			password: forgeToken(t, map[string]any{"alg": "none", "kid": n.secret.ID}, claims(nil), nil)},
		{name: "E1 alg None, HMAC by the node's secret", node: n,
			password: forgeToken(t, map[string]any{"alg": "None", "kid": n.secret.ID}, claims(nil), n.secret.Key)},

		{name: "E2 HS256 signed with another secret, node's kid", node: n,
			password: forgeToken(t, hs256(n.secret.ID), claims(nil), other.Key)},
		{name: "E2 HS256 signed with another secret, no kid", node: n,
			password: forgeToken(t, map[string]any{"alg": "HS256"}, claims(nil), other.Key)},
		{name: "E2 HS256 keyed with the public kid", node: n,
			password: forgeToken(t, hs256(n.secret.ID), claims(nil), []byte(n.secret.ID))},
		{name: "E2 RS256 header, HMAC by the node's secret", node: n,
			password: forgeToken(t, map[string]any{"alg": "RS256", "kid": n.secret.ID}, claims(nil), n.secret.Key)},
		{name: "E2 HS512 header", node: n,
			password: forgeToken(t, map[string]any{"alg": "HS512", "kid": n.secret.ID}, claims(nil), n.secret.Key)},

		{name: "E3 expired an hour ago", node: n,
			password: n.mint(t, keys.Claims{Perm: "rw", Read: []string{"a/#"}, ExpiresAt: jwt.NewNumericDate(now.Add(-time.Hour))})},
		{name: "E3 expired beyond the leeway", node: n,
			password: n.mint(t, keys.Claims{Perm: "rw", Read: []string{"a/#"}, ExpiresAt: jwt.NewNumericDate(now.Add(-2 * keyLeeway))})},
		{name: "E3 not valid for an hour", node: n,
			password: n.mint(t, keys.Claims{Perm: "rw", Read: []string{"a/#"}, NotBefore: jwt.NewNumericDate(now.Add(time.Hour))})},
		{name: "E3 last signature character flipped", node: n, password: flipSignatureBit(t, good, 0x04)},
		{name: "E3 non-canonical last signature character", node: n, password: flipSignatureBit(t, good, 0x01)},
		{name: "E3 claims widened, signature kept", node: n,
			password: goodParts[0] + "." + widened[1] + "." + goodParts[2]},
		{name: "E3 signature removed", node: n, password: goodParts[0] + "." + goodParts[1] + "."},
		{name: "E3 unknown permission letter", node: n,
			password: forgeToken(t, hs256(n.secret.ID), claims(map[string]any{"perm": "rwz"}), n.secret.Key)},
		{name: "E3 no usable filter", node: n,
			password: forgeToken(t, hs256(n.secret.ID), claims(map[string]any{"read": []string{"a/#/b"}, "write": nil}), n.secret.Key)},
		{name: "E3 exp missing under keys.require_exp", node: strict,
			password: forgeToken(t, hs256(strict.secret.ID), claims(map[string]any{"exp": nil}), strict.secret.Key)},
		{name: "E3 kid of no active secret", node: n,
			password: forgeToken(t, hs256("retired"), claims(nil), n.secret.Key)},

		// MQTT 3.1.1 carries the password with a 16-bit length, so 65,535
		// bytes is the largest token a CONNECT can hold; the 1 MiB vectors
		// run against the keyring itself (keys.TestVerifyRefuses...).
		{name: "E4 65,535 dots", node: n, password: strings.Repeat(".", 65535)},
		{name: "E4 valid key padded to 65,535 bytes", node: n, password: good + strings.Repeat("A", 65535-len(good))},
		{name: "E4 just over MaxTokenLen", node: n, password: good + strings.Repeat("A", keys.MaxTokenLen+1-len(good))},
		{name: "not a token", node: n, password: "hunter2"},
	}
	for i, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			c := dialWire(t, tc.node.srv)
			p := mqtt.Connect{ClientID: fmt.Sprintf("e-%d", i), CleanSession: true, KeepAlive: 60,
				Username: "mallory", Password: []byte(tc.password)}
			c.send(p.AppendTo(nil))
			if tc.accepted {
				c.expect(wireConnackAccepted)
				c.expectOpen()
				return
			}
			c.expect(wireConnackNotAuthorized)
			c.expectClosed(wireBound)
		})
	}
	// Nothing of the refused connections stayed: no session, no
	// subscription (E1 "nothing subscribed").
	for _, node := range []*keyNode{n, strict} {
		waitFor(t, opTimeout, func() bool {
			got := node.srv.Counters()
			return got.Sessions == 0 && got.Connections == 0 && got.Subscriptions == 0
		})
	}
}

// ---------------------------------------------------------------- E5

// TestKeysChannelScope (E5): a key for channel a/b/ (read and write
// "a/b/#") reaches nothing outside it: segment-exact, case-sensitive, no
// dot levels, no wildcard that reaches further. Plain MQTT clients get
// SUBACK 0x80; Emitter-dialect requests also get emitter/error/ 401.
func TestKeysChannelScope(t *testing.T) {
	n := startKeyNode(t, nil)
	key := n.scopedKey(t, "a/b/#", "rwslp")
	forged := forgeToken(t, map[string]any{"alg": "HS256", "kid": n.secret.ID},
		map[string]any{"read": []string{"#"}, "write": []string{"#"}, "perm": "rw"}, []byte("not the node's secret, 32 bytes.."))

	t.Run("mqtt", func(t *testing.T) {
		c := dialKey(t, n.srv, "scope-mqtt", key)
		tests := []struct {
			filter string
			code   byte
		}{
			{"a/b/#", 1}, {"a/b", 1}, // control: the channel itself
			{"a/#", 0x80}, {"a", 0x80}, {"a/bc/#", 0x80}, {"a/bc", 0x80},
			{"a/b/../x", 0x80}, {"a/b/./c", 0x80}, {"a/+/#", 0x80}, {"a/+", 0x80},
			{"#", 0x80}, {"+/#", 0x80}, {"+/b/#", 0x80}, {"A/b/#", 0x80}, {"A/b", 0x80},
			{"$share/g/a/#", 0x80}, {"$SYS/#", 0x80},
		}
		for i, tc := range tests {
			// For plain MQTT the refusal is the SUBACK code alone:
			// subscribeCode fails on any PUBLISH other than an Emitter error,
			// and none may come.
			code, errs := c.subscribeCode(uint16(i+1), tc.filter, 1)
			require.Equal(t, tc.code, code, "SUBACK for %q", tc.filter)
			require.Empty(t, errs, "no emitter/error/ for a plain MQTT client")
		}
		// The refused filters did not subscribe: the first message this
		// client gets is the one inside its channel.
		obs := n.observe(t)
		for _, topic := range []string{"a/x", "a/bc/x", "A/b/x", "x"} {
			obs.publish(t, topic, 0, "outside")
		}
		obs.publish(t, "a/b/c", 0, "inside")
		m := c.readPublish()
		require.Equal(t, "a/b/c", string(m.Topic))
	})

	t.Run("emitter", func(t *testing.T) {
		c := dialKey(t, n.srv, "scope-emitter", "")
		tests := []struct {
			topic string
			code  byte
		}{
			{key + "/a/b/", 0}, // control
			{key + "/a/", 0x80}, {key + "/a/bc/", 0x80}, {key + "/a/b/../x/", 0x80},
			{key + "/a/+/", 0x80}, {key + "/#/", 0x80}, {key + "/+/b/", 0x80}, {key + "/A/b/", 0x80},
			{forged + "/a/b/", 0x80},
			{flipSignatureBit(t, key, 0x04) + "/a/b/", 0x80},
		}
		for i, tc := range tests {
			id := uint16(100 + i)
			code, errs := c.subscribeCode(id, tc.topic, 0)
			require.Equal(t, tc.code, code, "SUBACK for row %d", i)
			if tc.code == 0x80 {
				requireUnauthorized(t, errs, id)
			} else {
				require.Empty(t, errs)
			}
		}
		obs := n.observe(t)
		obs.publish(t, "a/x", 0, "outside")
		obs.publish(t, "A/b/x", 0, "outside")
		obs.publish(t, "a/b/c", 0, "inside")
		m := c.readPublish()
		// Delivered on the key-less channel with its trailing '/'
		// (emitter.md §1).
		require.Equal(t, "a/b/c/", string(m.Topic))
	})

	t.Run("publish", func(t *testing.T) {
		obs := n.observe(t)
		c := dialKey(t, n.srv, "scope-pub", key)
		e := dialKey(t, n.srv, "scope-pub-emitter", "")
		for i, topic := range []string{"a/x", "a", "a/bc", "A/b/x", "a/b/../x", "$SYS/x"} {
			require.Empty(t, c.publishAcked(uint16(i+1), topic, 1, "mqtt"))
			require.False(t, obs.routed(t, topic), "publish to %q routed", topic)
		}
		for i, ch := range []string{"e/x", "a/bc", "A/b/x"} {
			id := uint16(50 + i)
			requireUnauthorized(t, e.publishAcked(id, key+"/"+ch+"/", 1, "emitter"), id)
			require.False(t, obs.routed(t, ch), "Emitter publish to %q routed", ch)
		}
		// Control: inside the channel both ways of presenting the key work.
		require.Empty(t, c.publishAcked(9, "a/b/in", 1, "mqtt"))
		require.True(t, obs.routed(t, "a/b/in"))
		require.Empty(t, e.publishAcked(59, key+"/a/b/in2/", 1, "emitter"))
		require.True(t, obs.routed(t, "a/b/in2"))
	})
}

// ---------------------------------------------------------------- E6, E7

// TestKeysPermissionLetters (E6, E7): the perm letters decide what a key
// covering the channel may do. A refused SUBSCRIBE gets SUBACK 0x80; a
// refused PUBLISH is acknowledged but not routed (and answered with
// emitter/error/ 401 in the Emitter dialect). An extend key ('e') can only
// derive private keys, even on its own channel. Eventhub tokens (no perm)
// read with read and write with write.
func TestKeysPermissionLetters(t *testing.T) {
	n := startKeyNode(t, nil)
	obs := n.observe(t)
	ab := []string{"a/b/#"}
	tests := []struct {
		name           string
		claims         keys.Claims
		canSub, canPub bool
	}{
		{"rw (control)", keys.Claims{Perm: "rw", Read: ab, Write: ab}, true, true},
		{"E6 read-only", keys.Claims{Perm: "r", Read: ab, Write: ab}, true, false},
		{"E6 write-only", keys.Claims{Perm: "w", Read: ab, Write: ab}, false, true},
		{"E6 read filter but write elsewhere", keys.Claims{Perm: "rw", Read: ab, Write: []string{"x/#"}}, true, false},
		{"E6 store and load without r or w", keys.Claims{Perm: "slp", Read: ab, Write: ab}, false, false},
		{"E7 extend-only", keys.Claims{Perm: "e", Read: ab, Write: ab}, false, false},
		{"E7 extend key also holding rw", keys.Claims{Perm: "rwe", Read: ab, Write: ab}, false, false},
		{"Eventhub read token", keys.Claims{Read: ab}, true, false},
		{"Eventhub write token", keys.Claims{Write: ab}, false, true},
	}
	for i, tc := range tests {
		key := n.mint(t, tc.claims)
		wantCode := byte(0x80)
		if tc.canSub {
			wantCode = 0
		}
		t.Run(tc.name+"/mqtt", func(t *testing.T) {
			c := dialKey(t, n.srv, fmt.Sprintf("perm-%d", i), key)
			denied := n.srv.Counters().Denied
			// a/b/sub, not a/b/#: the client must not receive its own
			// publish below in the middle of the PUBACK flow.
			code, errs := c.subscribeCode(1, "a/b/sub", 0)
			require.Equal(t, wantCode, code)
			require.Empty(t, errs)
			topic := fmt.Sprintf("a/b/mqtt-%d", i)
			require.Empty(t, c.publishAcked(2, topic, 1, "p"), "QoS 1 PUBLISH gets PUBACK either way")
			require.Equal(t, tc.canPub, obs.routed(t, topic))
			refusals := 0
			if !tc.canSub {
				refusals++
			}
			if !tc.canPub {
				refusals++
			}
			require.Equal(t, denied+uint64(refusals), n.srv.Counters().Denied, "each refusal is counted")
			c.pingOK()
		})
		t.Run(tc.name+"/emitter", func(t *testing.T) {
			c := dialKey(t, n.srv, fmt.Sprintf("perm-e-%d", i), "")
			code, errs := c.subscribeCode(3, key+"/a/b/sub/", 0)
			require.Equal(t, wantCode, code)
			if tc.canSub {
				require.Empty(t, errs)
			} else {
				requireUnauthorized(t, errs, 3)
			}
			ch := fmt.Sprintf("a/b/emitter-%d", i)
			errs = c.publishAcked(4, key+"/"+ch+"/", 1, "p")
			if tc.canPub {
				require.Empty(t, errs)
			} else {
				requireUnauthorized(t, errs, 4)
			}
			require.Equal(t, tc.canPub, obs.routed(t, ch))
		})
	}
}

// ---------------------------------------------------------------- E8

// TestKeysExpiryAndRevocation (E8): a key that expires or is revoked while
// in use stops working. A CONNECT key's connection is closed (the enforcer
// ticks every second, after exp plus the node's 5 s leeway); a topic key's
// subscription ends while the connection stays. Emitter let both run on.
// The subtests run in parallel, each on a channel of its own, so the
// expiry waits overlap.
func TestKeysExpiryAndRevocation(t *testing.T) {
	t.Parallel() // mostly waiting: overlap with the package's other waits
	n := startKeyNode(t, nil)
	master := n.masterKey(t)
	// sentinelKey lets a client read s/# for the whole test.
	sentinelKey := n.scopedKey(t, "s/#", "r")

	// publisher connects a master-key client of a subtest's own: raw
	// clients are not safe for concurrent use.
	publisher := func(t *testing.T, ch string) *keyClient { return dialKey(t, n.srv, "pub-"+ch, master) }
	// channelKey mints a key with id jti for channel ch/ ("ch/#"),
	// expiring at exp unless exp is zero.
	channelKey := func(t *testing.T, jti, ch string, exp time.Time) string {
		c := keys.Claims{ID: jti, Perm: "rw", Read: []string{ch + "/#"}, Write: []string{ch + "/#"}}
		if !exp.IsZero() {
			c.ExpiresAt = jwt.NewNumericDate(exp)
		}
		return n.mint(t, c)
	}
	// soon is about two seconds from now in whole seconds, the JWT's
	// precision, so the test knows the exact exp.
	soon := func() time.Time { return time.Now().Add(2 * time.Second).Truncate(time.Second) }
	// awaitClose waits for the node to close c and returns when it did.
	awaitClose := func(t *testing.T, c *keyClient, within time.Duration) time.Time {
		for {
			h, _, err := c.nextErr(within)
			if err != nil {
				require.False(t, isTimeout(err), "connection still open after %v", within)
				return time.Now()
			}
			require.Equal(t, mqtt.TypePublish, h.Type, "only deliveries may precede the close")
		}
	}
	// refusedAtConnect requires CONNACK 5 for key.
	refusedAtConnect := func(t *testing.T, key string) {
		c := dialRaw(t, n.srv, transportTCP)
		_, code := c.connect(mqtt.Connect{ClientID: "again-" + t.Name(), CleanSession: true, Username: "u", Password: []byte(key)})
		require.Equal(t, mqtt.RefusedNotAuthorized, code)
		c.expectClosed()
	}
	// subscriptionEnds polls until a publish to ch/<i> no longer reaches c
	// through its topic-key subscription, proving each absence with a
	// sentinel on s/ch/<i>, which c reads through its CONNECT key. It
	// returns when the subscription was seen ended.
	subscriptionEnds := func(t *testing.T, c *keyClient, ch string, within time.Duration) time.Time {
		pub := publisher(t, ch)
		deadline := time.Now().Add(within)
		for i := 0; ; i++ {
			probe, sentinel := fmt.Sprintf("%s/%d", ch, i), fmt.Sprintf("s/%s/%d", ch, i)
			pub.publish0(probe, "probe")
			pub.publish0(sentinel, "sentinel")
			delivered := false
			for {
				m := c.readPublish()
				if string(m.Topic) == sentinel {
					break
				}
				delivered = delivered || string(m.Topic) == probe+"/"
			}
			if !delivered {
				return time.Now()
			}
			require.False(t, time.Now().After(deadline), "subscription still delivering after %v", within)
			time.Sleep(50 * time.Millisecond) // poll interval, not synchronisation
		}
	}
	// topicKeySubscriber connects with sentinelKey, subscribes s/ch/# and,
	// in the Emitter dialect with key, ch/; it checks a first delivery.
	topicKeySubscriber := func(t *testing.T, ch, key string) *keyClient {
		c := dialKey(t, n.srv, "sub-"+ch, sentinelKey)
		code, _ := c.subscribeCode(1, "s/"+ch+"/#", 0)
		require.Equal(t, byte(0), code)
		code, errs := c.subscribeCode(2, key+"/"+ch+"/", 0)
		require.Equal(t, byte(0), code)
		require.Empty(t, errs)
		publisher(t, ch+"-first").publish0(ch+"/first", "x")
		require.Equal(t, ch+"/first/", string(c.readPublish().Topic), "the key works before it ends")
		return c
	}

	t.Run("CONNECT key expires", func(t *testing.T) {
		t.Parallel()
		exp := soon()
		key := channelKey(t, "exp-connect", "exp-connect", exp)
		c := dialKey(t, n.srv, "exp-connect", key)
		code, _ := c.subscribeCode(1, "exp-connect/#", 0)
		require.Equal(t, byte(0), code)
		publisher(t, "exp-connect").publish0("exp-connect/before", "x")
		require.Equal(t, "exp-connect/before", string(c.readPublish().Topic), "the key works before it expires")
		closed := awaitClose(t, c, time.Until(exp.Add(keyLeeway+2*time.Second)))
		t.Logf("closed %v after exp (leeway %v)", closed.Sub(exp).Round(time.Millisecond), keyLeeway)
		require.False(t, closed.Before(exp), "closed before the key expired")
		refusedAtConnect(t, key)
	})

	t.Run("topic key expires", func(t *testing.T) {
		t.Parallel()
		exp := soon()
		key := channelKey(t, "exp-topic", "exp-topic", exp)
		c := topicKeySubscriber(t, "exp-topic", key)
		ended := subscriptionEnds(t, c, "exp-topic", time.Until(exp.Add(keyLeeway+2*time.Second)))
		t.Logf("subscription ended %v after exp (leeway %v)", ended.Sub(exp).Round(time.Millisecond), keyLeeway)
		require.False(t, ended.Before(exp), "subscription ended before the key expired")
		c.pingOK() // the connection stays
		code, errs := c.subscribeCode(3, key+"/exp-topic/", 0)
		require.Equal(t, byte(0x80), code, "an expired key subscribes no more")
		requireUnauthorized(t, errs, 3)
	})

	t.Run("CONNECT key revoked", func(t *testing.T) {
		t.Parallel()
		key := channelKey(t, "rev-connect", "rev-connect", time.Time{})
		c := dialKey(t, n.srv, "rev-connect", key)
		c.pingOK()
		require.NoError(t, n.srv.Revoke("rev-connect", time.Time{}))
		awaitClose(t, c, 2*time.Second)
		refusedAtConnect(t, key)
	})

	t.Run("topic key revoked", func(t *testing.T) {
		t.Parallel()
		key := channelKey(t, "rev-topic", "rev-topic", time.Time{})
		c := topicKeySubscriber(t, "rev-topic", key)
		require.NoError(t, n.srv.Revoke("rev-topic", time.Time{}))
		subscriptionEnds(t, c, "rev-topic", 2*time.Second)
		c.pingOK()
		code, errs := c.subscribeCode(3, key+"/rev-topic/", 0)
		require.Equal(t, byte(0x80), code)
		requireUnauthorized(t, errs, 3)
	})
}

// isTimeout reports whether err is a network timeout.
func isTimeout(err error) bool {
	var ne net.Error
	return errors.As(err, &ne) && ne.Timeout()
}

// ---------------------------------------------------------------- E9

// TestKeysUsernameWidensNothing (E9): the CONNECT username is an identity
// label, never part of authorisation; a username that looks like a filter
// widens nothing (CVE-2017-7650 was a broker trusting such names).
func TestKeysUsernameWidensNothing(t *testing.T) {
	n := startKeyNode(t, nil)
	obs := n.observe(t)
	key := n.scopedKey(t, "chat/#", "rw")
	for i, username := range []string{"#", "+", "a/#", "$SYS/#", "master"} {
		t.Run(username, func(t *testing.T) {
			for _, withKey := range []bool{true, false} {
				c := &keyClient{rawClient: dialRaw(t, n.srv, transportTCP)}
				p := mqtt.Connect{ClientID: fmt.Sprintf("e9-%d-%v", i, withKey), CleanSession: true, Username: username}
				if withKey {
					p.Password = []byte(key)
				}
				c.mustConnect(p)
				for j, f := range []string{"#", "+/#", "a/#", username} {
					code, _ := c.subscribeCode(uint16(j+1), f, 0)
					require.Equal(t, byte(0x80), code, "username %q, key %v: filter %q", username, withKey, f)
				}
				topic := fmt.Sprintf("a/%d/%v", i, withKey)
				require.Empty(t, c.publishAcked(10, topic, 1, "x"))
				require.False(t, obs.routed(t, topic))
				// Control: the key's own channel, with or without it.
				code, _ := c.subscribeCode(11, "chat/#", 0)
				require.Equal(t, map[bool]byte{true: 0, false: 0x80}[withKey], code)
			}
		})
	}
}

// ---------------------------------------------------------------- E10

// TestKeysResumedSessionNarrowsToNewKey (E10): a persistent session is
// resumed under the key of the new connection. Subscriptions that key does
// not allow are dropped, and so are the messages queued for them while the
// client was away; subscriptions made with an Emitter topic key keep
// running on that key.
func TestKeysResumedSessionNarrowsToNewKey(t *testing.T) {
	n := startKeyNode(t, nil)
	obs := n.observe(t)
	wide := n.mint(t, keys.Claims{Perm: "rw", Read: []string{"a/#", "b/#"}})
	narrow := n.mint(t, keys.Claims{Perm: "rw", Read: []string{"b/#"}})
	channelC := n.scopedKey(t, "c/#", "r")

	tests := []struct {
		name   string
		resume string // key of the resuming connection
		want   []string
	}{
		{"same key (control)", wide, []string{"a/queued", "b/queued", "a/live", "b/live", "c/sentinel/"}},
		{"narrower key", narrow, []string{"b/queued", "b/live", "c/sentinel/"}},
		{"no key", "", []string{"c/sentinel/"}},
	}
	for i, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			baseline := n.srv.Counters().Connections
			id := fmt.Sprintf("e10-%d", i)
			connect := func(key string) (*rawClient, bool) {
				c := dialRaw(t, n.srv, transportTCP)
				p := mqtt.Connect{ClientID: id, KeepAlive: 60}
				if key != "" {
					p.Username, p.Password = id, []byte(key)
				}
				return c, c.mustConnect(p)
			}
			c, _ := connect(wide)
			c.subscribe(1, "a/#", 1)
			c.subscribe(2, "b/#", 1)
			// QoS 1 everywhere: QoS 0 is not kept for a session between
			// CONNACK and its resumption, which would make the sentinel racy.
			c.subscribe(3, channelC+"/c/", 1)
			c.write(mqtt.AppendDisconnect(nil))
			c.expectClosed()
			waitFor(t, opTimeout, func() bool { return n.srv.Counters().Connections == baseline })

			obs.publish(t, "a/queued", 1, "q")
			obs.publish(t, "b/queued", 1, "q")

			c, present := connect(tc.resume)
			require.True(t, present, "session present [MQTT-3.2.2-2]")
			obs.publish(t, "a/live", 1, "l")
			obs.publish(t, "b/live", 1, "l")
			obs.publish(t, "c/sentinel", 1, "s")
			var got []string
			for len(got) == 0 || got[len(got)-1] != "c/sentinel/" {
				m := c.readPublish()
				got = append(got, string(m.Topic))
				if m.QoS > 0 {
					c.puback(m.PacketID)
				}
			}
			require.Equal(t, tc.want, got)

			// The dropped subscription cannot be made again with the new key.
			if tc.resume != wide {
				kc := &keyClient{rawClient: c}
				code, _ := kc.subscribeCode(4, "a/#", 1)
				require.Equal(t, byte(0x80), code)
			}
			c.write(mqtt.AppendDisconnect(nil))
			c.expectClosed()
		})
	}
}

// ---------------------------------------------------------------- E11 and policies

// TestKeysUnauthorizedPublishPolicy (E11, pinned in docs/keys.md): a
// PUBLISH the key does not allow completes its QoS flow (3.1.1 has no
// negative PUBACK), is not routed, is counted, and the connection stays.
func TestKeysUnauthorizedPublishPolicy(t *testing.T) {
	n := startKeyNode(t, nil)
	obs := n.observe(t)
	key := n.scopedKey(t, "chat/#", "rw")
	for _, withKey := range []bool{true, false} {
		name := map[bool]string{true: "key for another channel", false: "no key"}[withKey]
		t.Run(name, func(t *testing.T) {
			k := ""
			if withKey {
				k = key
			}
			c := dialKey(t, n.srv, "e11-"+strings.ReplaceAll(name, " ", "-"), k)
			for qos := byte(0); qos <= 2; qos++ {
				topic := fmt.Sprintf("forbidden/%v/%d", withKey, qos)
				denied := n.srv.Counters().Denied
				if qos == 0 {
					c.publish0(topic, "x")
				} else {
					require.Empty(t, c.publishAcked(uint16(qos), topic, qos, "x"))
				}
				// PINGRESP follows the PUBLISH through the same read loop:
				// the publish has been judged, and the connection stays.
				c.pingOK()
				require.Equal(t, denied+1, n.srv.Counters().Denied, "counted")
				require.False(t, obs.routed(t, topic), "QoS %d publish routed", qos)
			}
			code, _ := c.subscribeCode(7, "forbidden/#", 1)
			require.Equal(t, byte(0x80), code)
		})
	}
}

// TestKeysSystemTopicsNeedMaster: $SYS is reached by a master key only; a
// leading wildcard in a key's read list does not reach it [MQTT-4.7.2-1].
func TestKeysSystemTopicsNeedMaster(t *testing.T) {
	n := startKeyNode(t, nil)
	tests := []struct {
		name string
		key  string
		code byte
	}{
		{"master", n.masterKey(t), 1},
		{"read #", n.scopedKey(t, "#", "rwslp"), 0x80},
		{"read +/#", n.scopedKey(t, "+/#", "rwslp"), 0x80},
		{"no key", "", 0x80},
	}
	for i, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			c := dialKey(t, n.srv, fmt.Sprintf("sys-%d", i), tc.key)
			for j, f := range []string{"$SYS/#", "$SYS/stats/+"} {
				code, _ := c.subscribeCode(uint16(j+1), f, 1)
				require.Equal(t, tc.code, code, "filter %q", f)
			}
		})
	}
}

// TestKeysNoAuth: with no_auth (--no-auth) everything is allowed and a
// password is ignored, even one that is not a key at all.
func TestKeysNoAuth(t *testing.T) {
	srv := startServer(t, nil) // the harness default is no_auth
	for i, password := range []string{"", "not a key", forgeToken(t, map[string]any{"alg": "none"}, map[string]any{}, nil)} {
		t.Run(fmt.Sprintf("password-%d", i), func(t *testing.T) {
			c := dialKey(t, srv, fmt.Sprintf("noauth-%d", i), password)
			// "$SYS/none/#" shows $SYS is open without drawing the node's
			// stats snapshots into the reads below.
			for j, f := range []string{"#", "$SYS/none/#"} {
				code, _ := c.subscribeCode(uint16(j+1), f, 1)
				require.Equal(t, byte(1), code, "filter %q", f)
			}
			topic := fmt.Sprintf("any/%d", i)
			c.publish0(topic, "x")
			m := c.readPublish()
			require.Equal(t, topic, string(m.Topic), "routed back through '#'")
		})
	}
}

// TestKeysWillAuthorised (B7, E-series): a will is published on an abrupt
// close only if the connection's key (or the Emitter key in the will topic)
// allows publishing to its topic [MQTT-3.1.2-8].
func TestKeysWillAuthorised(t *testing.T) {
	n := startKeyNode(t, nil)
	obs := n.observe(t)
	chat := n.scopedKey(t, "chat/#", "rw")
	tests := []struct {
		name      string
		key       string
		willTopic string
		routedAs  string
		published bool
	}{
		{"allowed by the CONNECT key", chat, "chat/will-1", "chat/will-1", true},
		{"topic outside the key", chat, "other/will-2", "other/will-2", false},
		{"read-only key", n.scopedKey(t, "chat/#", "r"), "chat/will-3", "chat/will-3", false},
		{"extend key", n.scopedKey(t, "chat/#", "rwe"), "chat/will-4", "chat/will-4", false},
		{"no key", "", "chat/will-5", "chat/will-5", false},
		{"Emitter key in the will topic", "", chat + "/chat/will-6/", "chat/will-6", true},
		{"Emitter key for another channel", "", n.scopedKey(t, "x/#", "rw") + "/chat/will-7/", "chat/will-7", false},
		{"forged Emitter key", "", flipSignatureBit(t, chat, 0x04) + "/chat/will-8/", "chat/will-8", false},
	}
	for i, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			sessions := n.srv.Counters().Sessions
			c := dialRaw(t, n.srv, transportTCP)
			p := mqtt.Connect{ClientID: fmt.Sprintf("will-%d", i), CleanSession: true, KeepAlive: 60,
				WillFlag: true, WillQoS: 1, WillTopic: tc.willTopic, WillPayload: []byte("gone")}
			if tc.key != "" {
				p.Username, p.Password = p.ClientID, []byte(tc.key)
			}
			c.mustConnect(p)
			require.NoError(t, c.nc.Close()) // abrupt: no DISCONNECT
			// The will is decided before the session is detached, so once
			// the session is gone the observer's sentinel settles it.
			waitFor(t, opTimeout, func() bool { return n.srv.Counters().Sessions == sessions })
			require.Equal(t, tc.published, obs.routed(t, tc.routedAs))
		})
	}
}
