package broker_test

import (
	"encoding/base64"
	"encoding/json"
	"html/template"
	"io"
	"net/http"
	"net/url"
	"strings"
	"testing"
	"time"

	paho "github.com/eclipse/paho.mqtt.golang"
	"github.com/golang-jwt/jwt/v5"
	"github.com/stretchr/testify/require"

	"github.com/pubsub/pubsub/broker"
	"github.com/pubsub/pubsub/keys"
)

// keygenNode is a node with channel keys enforced, and what a test needs to
// mint keys on it over HTTP.
type keygenNode struct {
	srv    *broker.Server
	base   string // http://127.0.0.1:PORT
	secret string // the node's secret in keys' text form
	master string // a master key for it
	client *http.Client
}

func startKeygenNode(t testing.TB, configure func(*broker.Config)) *keygenNode {
	t.Helper()
	secret, err := keys.GenerateSecret()
	require.NoError(t, err)
	srv := startServer(t, func(c *broker.Config) {
		c.NoAuth = false
		c.Secret = secret.Encode()
		if configure != nil {
			configure(c)
		}
	})
	master, err := srv.Keyring().Sign(keys.Claims{Subject: "ops", Perm: "m", ExpiresAt: inOneHour()})
	require.NoError(t, err)
	tr := &http.Transport{DisableKeepAlives: true}
	t.Cleanup(tr.CloseIdleConnections)
	return &keygenNode{
		srv:    srv,
		base:   "http://" + srv.Addr().String(),
		secret: secret.Encode(),
		master: master,
		client: &http.Client{Transport: tr, Timeout: opTimeout},
	}
}

func inOneHour() *jwt.NumericDate { return jwt.NewNumericDate(time.Now().Add(time.Hour)) }

// do sends one request to /keygen and returns the response with its body.
func (n *keygenNode) do(t testing.TB, method, contentType, body string) (*http.Response, string) {
	t.Helper()
	req, err := http.NewRequest(method, n.base+"/keygen", strings.NewReader(body))
	require.NoError(t, err)
	if contentType != "" {
		req.Header.Set("Content-Type", contentType)
	}
	resp, err := n.client.Do(req)
	require.NoError(t, err)
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	require.NoError(t, err)
	return resp, string(b)
}

func (n *keygenNode) postForm(t *testing.T, form url.Values) (*http.Response, string) {
	t.Helper()
	return n.do(t, http.MethodPost, "application/x-www-form-urlencoded", form.Encode())
}

// keyOnPage reads the key out of a result page's <code id="key">.
func keyOnPage(t *testing.T, page string) string {
	t.Helper()
	const open = `<code id="key">`
	i := strings.Index(page, open)
	require.GreaterOrEqual(t, i, 0, "no key on the page:\n%s", page)
	rest := page[i+len(open):]
	j := strings.Index(rest, "</code>")
	require.Greater(t, j, 0)
	return rest[:j]
}

func requireSecurityHeaders(t *testing.T, h http.Header) {
	t.Helper()
	require.Contains(t, h.Get("Content-Security-Policy"), "default-src 'none'")
	require.Contains(t, h.Get("Content-Security-Policy"), "style-src 'unsafe-inline'")
	require.Contains(t, h.Get("Content-Security-Policy"), "form-action 'self'")
	require.Equal(t, "DENY", h.Get("X-Frame-Options"))
	require.Equal(t, "no-store", h.Get("Cache-Control"))
	require.Equal(t, "nosniff", h.Get("X-Content-Type-Options"))
}

func TestKeygenPage(t *testing.T) {
	n := startKeygenNode(t, nil)
	resp, page := n.do(t, http.MethodGet, "", "")
	require.Equal(t, http.StatusOK, resp.StatusCode)
	require.Equal(t, "text/html; charset=utf-8", resp.Header.Get("Content-Type"))
	requireSecurityHeaders(t, resp.Header)
	for _, want := range []string{
		`<form method="post"`, `name="key"`, `type="password"`, `name="channel"`, `name="read"`, `name="write"`,
		`name="ttl"`, `name="subject"`, `name="r"`, `name="w"`, `name="s"`, `name="l"`, `name="p"`, `name="e"`,
		`type="submit"`,
	} {
		require.Contains(t, page, want)
	}
	// Self-contained: no script, and nothing fetched from anywhere.
	for _, banned := range []string{"<script", "src=", "<link", "http://", "https://", "@import", "url("} {
		require.NotContains(t, page, banned)
	}
	require.NotContains(t, page, `id="key"`, "an empty form shows no key")

	resp, body := n.do(t, http.MethodHead, "", "")
	require.Equal(t, http.StatusOK, resp.StatusCode)
	require.Empty(t, body)
}

func TestKeygenMethodNotAllowed(t *testing.T) {
	n := startKeygenNode(t, nil)
	for _, method := range []string{http.MethodPut, http.MethodDelete, http.MethodPatch, http.MethodOptions} {
		t.Run(method, func(t *testing.T) {
			resp, _ := n.do(t, method, "", "")
			require.Equal(t, http.StatusMethodNotAllowed, resp.StatusCode)
			require.Equal(t, "GET, HEAD, POST", resp.Header.Get("Allow"))
		})
	}
}

func TestKeygenFormMints(t *testing.T) {
	n := startKeygenNode(t, nil)
	tests := []struct {
		name       string
		form       url.Values
		wantRead   []string
		wantWrite  []string
		wantPerm   string
		wantSub    string
		wantExpiry time.Duration // 0: never expires
	}{
		{
			name:     "master key, channel, letters",
			form:     url.Values{"key": {n.master}, "channel": {"chat/room1/"}, "r": {"on"}, "w": {"on"}, "ttl": {"3600"}},
			wantRead: []string{"chat/room1/#"}, wantWrite: []string{"chat/room1/#"}, wantPerm: "rw", wantSub: "ops",
			wantExpiry: time.Hour,
		},
		{
			name:     "secret, wildcard channel, Emitter's field names, never expires",
			form:     url.Values{"key": {n.secret}, "channel": {"sensors/#/"}, "sub": {"on"}, "store": {"on"}, "load": {"on"}, "pub": {"off"}, "ttl": {"0"}},
			wantRead: []string{"sensors/#"}, wantWrite: []string{"sensors/#"}, wantPerm: "rsl",
		},
		{
			name: "extra filters, subject, no channel",
			form: url.Values{
				"key": {n.master}, "read": {"a/+/t\r\n\r\n  b/#  "}, "write": {"a/x/t"}, "subject": {"alice"},
				"r": {"on"}, "w": {"on"}, "p": {"on"}, "e": {"on"}, "ttl": {"60"},
			},
			wantRead: []string{"a/+/t", "b/#"}, wantWrite: []string{"a/x/t"}, wantPerm: "rwpe", wantSub: "alice",
			wantExpiry: time.Minute,
		},
		{
			name:     "channel plus filters, ttl left empty",
			form:     url.Values{"key": {n.master}, "channel": {"c/"}, "read": {"d/#"}, "r": {"on"}},
			wantRead: []string{"c/#", "d/#"}, wantWrite: []string{"c/#"}, wantPerm: "r", wantSub: "ops",
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			resp, page := n.postForm(t, tt.form)
			require.Equal(t, http.StatusOK, resp.StatusCode, page)
			requireSecurityHeaders(t, resp.Header)
			key := keyOnPage(t, page)
			cl, err := n.srv.Keyring().Verify(key)
			require.NoError(t, err)
			require.Equal(t, tt.wantRead, cl.Read)
			require.Equal(t, tt.wantWrite, cl.Write)
			require.Equal(t, tt.wantPerm, cl.Perm)
			require.Equal(t, tt.wantSub, cl.Subject)
			require.False(t, cl.IsMaster())
			require.NotEmpty(t, cl.ID, "a minted key can be revoked by its jti")
			require.Contains(t, page, cl.ID)
			if tt.wantExpiry == 0 {
				require.Nil(t, cl.ExpiresAt)
				require.Contains(t, page, "never")
			} else {
				require.NotNil(t, cl.ExpiresAt)
				require.WithinDuration(t, time.Now().Add(tt.wantExpiry), cl.ExpiresAt.Time, 10*time.Second)
			}
			require.NotContains(t, page, n.master, "the authorising key is never echoed")
			require.NotContains(t, page, n.secret, "the secret is never echoed")
		})
	}
}

// TestKeygenFormRefusals covers the inputs /keygen must refuse, each with
// its status and a message on the page that says what is wrong.
func TestKeygenFormRefusals(t *testing.T) {
	n := startKeygenNode(t, nil)
	ring := n.srv.Keyring()
	sign := func(c keys.Claims) string {
		k, err := ring.Sign(c)
		require.NoError(t, err)
		return k
	}
	other, err := keys.GenerateSecret()
	require.NoError(t, err)
	otherRing, err := keys.NewKeyring(keys.KeyringOptions{}, other)
	require.NoError(t, err)
	foreignMaster, err := otherRing.Sign(keys.Claims{Perm: "m"})
	require.NoError(t, err)
	expiredMaster := sign(keys.Claims{Perm: "m", ExpiresAt: jwt.NewNumericDate(time.Now().Add(-time.Hour))})
	readWrite := sign(keys.Claims{Read: []string{"a/#"}, Write: []string{"a/#"}, Perm: "rw"})
	extend := sign(keys.Claims{Read: []string{"a/#"}, Write: []string{"a/#"}, Perm: "rwe"})
	revokedMaster := sign(keys.Claims{Perm: "m", ID: "revoked-master"})
	require.NoError(t, n.srv.Revoke("revoked-master", time.Time{}))
	tampered := n.master[:len(n.master)-2] + flip(n.master[len(n.master)-2:])

	ok := url.Values{"key": {n.master}, "channel": {"a/b/"}, "r": {"on"}}
	with := func(kv ...string) url.Values {
		f := url.Values{}
		for k, v := range ok {
			f[k] = v
		}
		for i := 0; i < len(kv); i += 2 {
			f.Set(kv[i], kv[i+1])
		}
		return f
	}
	tests := []struct {
		name     string
		form     url.Values
		status   int
		wantText string
	}{
		{"no key", with("key", ""), http.StatusUnauthorized, "not valid"},
		{"garbage key", with("key", "hunter2"), http.StatusUnauthorized, "not valid"},
		{"another node's secret", with("key", other.Encode()), http.StatusUnauthorized, "not valid"},
		{"another node's master key", with("key", foreignMaster), http.StatusUnauthorized, "not valid"},
		{"expired master key", with("key", expiredMaster), http.StatusUnauthorized, "not valid"},
		{"revoked master key", with("key", revokedMaster), http.StatusUnauthorized, "not valid"},
		{"tampered master key", with("key", tampered), http.StatusUnauthorized, "not valid"},
		{"alg none", with("key", algNone(t, n.master)), http.StatusUnauthorized, "not valid"},
		{"non-master key", with("key", readWrite), http.StatusUnauthorized, "not authorized"},
		{"extend key without a connection", with("key", extend), http.StatusBadRequest, "emitter/keygen/"},
		{"channel without trailing slash", with("channel", "a/b"), http.StatusBadRequest, "should end with"},
		{"channel with empty level", with("channel", "a//b/"), http.StatusBadRequest, "should end with"},
		{"channel with wildcard inside", with("channel", "a/#/b/"), http.StatusBadRequest, "should end with"},
		{"too deep a channel", with("channel", strings.Repeat("x/", 24)), http.StatusBadRequest, "should end with"},
		{"no channel and no filters", with("channel", ""), http.StatusBadRequest, "give a channel"},
		{"invalid read filter", with("read", "a/#/b"), http.StatusBadRequest, `read filter &#34;a/#/b&#34;`},
		{"invalid write filter", with("write", "#/a"), http.StatusBadRequest, `write filter &#34;#/a&#34;`},
		{"no permission", with("r", ""), http.StatusBadRequest, "at least one permission"},
		{"unknown letter", with("type", "q"), http.StatusBadRequest, "rwslpe"},
		{"master letter", with("perm", "m"), http.StatusBadRequest, "master key cannot be minted"},
		{"negative ttl", with("ttl", "-1"), http.StatusBadRequest, "ttl must be"},
		{"ttl not a number", with("ttl", "1h"), http.StatusBadRequest, "ttl must be"},
		{"ttl overflowing a duration", with("ttl", "9223372036854775807"), http.StatusBadRequest, "ttl must be"},
		{"control character in subject", with("subject", "a\x00b"), http.StatusBadRequest, "subject"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			resp, page := n.postForm(t, tt.form)
			require.Equal(t, tt.status, resp.StatusCode, page)
			requireSecurityHeaders(t, resp.Header)
			require.Contains(t, page, `id="error"`)
			require.Contains(t, page, tt.wantText)
			require.NotContains(t, page, `id="key"`)
			if k := tt.form.Get("key"); len(k) > 8 {
				require.NotContains(t, page, k, "a submitted key is never echoed")
			}
			// The rest of the form comes back filled in, to fix and resend.
			require.Contains(t, page, `value="`+htmlEscape(tt.form.Get("channel"))+`"`)
		})
	}
}

func TestKeygenRequireExp(t *testing.T) {
	n := startKeygenNode(t, func(c *broker.Config) { c.Keys.RequireExp = true })
	resp, page := n.postForm(t, url.Values{"key": {n.master}, "channel": {"a/"}, "r": {"on"}, "ttl": {"0"}})
	require.Equal(t, http.StatusBadRequest, resp.StatusCode)
	require.Contains(t, page, "require_exp")
	resp, page = n.postForm(t, url.Values{"key": {n.master}, "channel": {"a/"}, "r": {"on"}, "ttl": {"30"}})
	require.Equal(t, http.StatusOK, resp.StatusCode, page)
}

func TestKeygenBodyLimits(t *testing.T) {
	n := startKeygenNode(t, nil)
	huge := url.Values{"key": {n.master}, "channel": {"a/"}, "r": {"on"}, "pad": {strings.Repeat("x", 64<<10)}}.Encode()
	tests := []struct {
		name, contentType, body string
		status                  int
	}{
		{"oversize form", "application/x-www-form-urlencoded", huge, http.StatusRequestEntityTooLarge},
		{"oversize JSON", "application/json", `{"key":"` + strings.Repeat("x", 64<<10) + `"}`, http.StatusRequestEntityTooLarge},
		{"unsupported type", "text/plain", "key=x", http.StatusUnsupportedMediaType},
		{"multipart", "multipart/form-data; boundary=x", "--x--", http.StatusUnsupportedMediaType},
		{"unparsable type", "application/json; ===", "{}", http.StatusUnsupportedMediaType},
		{"bad form encoding", "application/x-www-form-urlencoded", "key=%zz", http.StatusBadRequest},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			resp, body := n.do(t, http.MethodPost, tt.contentType, tt.body)
			require.Equal(t, tt.status, resp.StatusCode, body)
		})
	}
}

func TestKeygenJSON(t *testing.T) {
	n := startKeygenNode(t, nil)
	type reply struct {
		Status  int      `json:"status"`
		Message string   `json:"message"`
		Key     string   `json:"key"`
		Channel string   `json:"channel"`
		Sub     string   `json:"sub"`
		Read    []string `json:"read"`
		Write   []string `json:"write"`
		Perm    string   `json:"perm"`
		Exp     int64    `json:"exp"`
		JTI     string   `json:"jti"`
	}
	post := func(t *testing.T, body any) (*http.Response, reply) {
		t.Helper()
		b, ok := body.(string)
		if !ok {
			raw, err := json.Marshal(body)
			require.NoError(t, err)
			b = string(raw)
		}
		resp, text := n.do(t, http.MethodPost, "application/json; charset=utf-8", b)
		require.Equal(t, "application/json", resp.Header.Get("Content-Type"))
		var r reply
		require.NoError(t, json.Unmarshal([]byte(text), &r), text)
		require.Equal(t, resp.StatusCode, r.Status, "the body repeats the status")
		return resp, r
	}

	t.Run("ok with type", func(t *testing.T) {
		_, r := post(t, map[string]any{"key": n.master, "channel": "a/b/", "type": "rwx", "ttl": 120, "sub": "bob"})
		require.Equal(t, 200, r.Status)
		cl, err := n.srv.Keyring().Verify(r.Key)
		require.NoError(t, err)
		require.Equal(t, []string{"a/b/#"}, cl.Read)
		require.Equal(t, []string{"a/b/#"}, cl.Write)
		require.Equal(t, "rw", cl.Perm)
		require.Equal(t, "bob", cl.Subject)
		require.Equal(t, "a/b/", r.Channel)
		require.Equal(t, cl.Read, r.Read)
		require.Equal(t, cl.Perm, r.Perm)
		require.Equal(t, cl.ID, r.JTI)
		require.Equal(t, cl.ExpiresAt.Unix(), r.Exp)
	})
	t.Run("ok with perm and filters, by secret", func(t *testing.T) {
		_, r := post(t, map[string]any{"key": n.secret, "read": []string{"x/#"}, "perm": "rl"})
		require.Equal(t, 200, r.Status)
		cl, err := n.srv.Keyring().Verify(r.Key)
		require.NoError(t, err)
		require.Equal(t, []string{"x/#"}, cl.Read)
		require.Empty(t, cl.Write)
		require.Equal(t, "rl", cl.Perm)
		require.Nil(t, cl.ExpiresAt)
		require.Zero(t, r.Exp)
	})
	refusals := []struct {
		name   string
		body   any
		status int
		text   string
	}{
		{"bad key", map[string]any{"key": "nope", "channel": "a/", "type": "r"}, 401, "not valid"},
		{"bad channel", map[string]any{"key": n.master, "channel": "a", "type": "r"}, 400, "should end with"},
		{"unknown field", map[string]any{"key": n.master, "channle": "a/", "type": "r"}, 400, "channle"},
		{"two values", `{"key":"k"} {}`, 400, "more than one"},
		{"not JSON", `key=x`, 400, "not a keygen JSON object"},
		{"wrong type", `{"ttl":"60"}`, 400, "not a keygen JSON object"},
		{"empty body", ``, 400, "not a keygen JSON object"},
		{"negative ttl", map[string]any{"key": n.master, "channel": "a/", "type": "r", "ttl": -5}, 400, "ttl must be"},
	}
	for _, tt := range refusals {
		t.Run(tt.name, func(t *testing.T) {
			resp, r := post(t, tt.body)
			require.Equal(t, tt.status, resp.StatusCode)
			require.Contains(t, r.Message, tt.text)
			require.Empty(t, r.Key)
		})
	}
}

// TestKeygenKeyWorks publishes and subscribes over MQTT with a key minted
// by the page: a key that verifies but that the broker refused would make
// the page useless.
func TestKeygenKeyWorks(t *testing.T) {
	n := startKeygenNode(t, nil)
	resp, page := n.postForm(t, url.Values{"key": {n.master}, "channel": {"room/"}, "r": {"on"}, "w": {"on"}, "ttl": {"600"}})
	require.Equal(t, http.StatusOK, resp.StatusCode, page)
	key := keyOnPage(t, page)

	// The watcher holds a master key and sees everything that is routed.
	watcher, watched := connectKeyed(t, n.srv, "watcher", n.master)
	subscribe(t, watcher, "#", 1)
	reader, in := connectKeyed(t, n.srv, "reader", key)
	subscribe(t, reader, "room/#", 1)
	writer, _ := connectKeyed(t, n.srv, "writer", key)

	publish(t, writer, "elsewhere/x", 1, false, []byte("refused")) // acknowledged, not routed
	publish(t, writer, "room/1", 1, false, []byte("hello"))
	got := in.waitMessage(t, "room/1", "hello")
	require.Equal(t, byte(1), got.QoS)
	require.Empty(t, watched.untilSentinel(t, "room/1", "hello"),
		"the publish outside the key's channel was not routed")
}

// TestEmitterKeygenSharesMinting checks the MQTT request emitter/keygen/
// after its minting moved into mintChannelKey, which /keygen shares.
func TestEmitterKeygenSharesMinting(t *testing.T) {
	n := startKeygenNode(t, nil)
	extend, err := n.srv.Keyring().Sign(keys.Claims{Read: []string{"team/#"}, Write: []string{"team/#"}, Perm: "rwe"})
	require.NoError(t, err)
	tests := []struct {
		name        string
		req         map[string]any
		status      int
		wantChannel func(connID string) string
		wantPerm    string
	}{
		{"master", map[string]any{"key": n.master, "channel": "a/b/", "type": "rws", "ttl": 60}, 200,
			func(string) string { return "a/b/" }, "rws"},
		{"master, no letters", map[string]any{"key": n.master, "channel": "a/b/", "type": ""}, 400, nil, ""},
		{"extend, private channel", map[string]any{"key": extend, "channel": "team/", "type": "rwe"}, 200,
			func(id string) string { return "team/" + id + "/" }, "rw"},
		{"extend, filters", map[string]any{"key": extend, "channel": "team/", "type": "r", "read": []string{"#"}}, 401, nil, ""},
		{"bad channel", map[string]any{"key": n.master, "channel": "a", "type": "r"}, 400, nil, ""},
		{"bad key", map[string]any{"key": "x.y.z", "channel": "a/", "type": "r"}, 401, nil, ""},
	}
	c, in := connectKeyed(t, n.srv, "requester", n.master)
	var connID string
	{
		publish(t, c, "emitter/me/", 1, false, []byte("{}"))
		var me struct{ ID string }
		require.NoError(t, json.Unmarshal(in.waitCount(t, 1)[0].Payload, &me))
		connID = me.ID
		require.NotEmpty(t, connID)
	}
	for i, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			body, err := json.Marshal(tt.req)
			require.NoError(t, err)
			publish(t, c, "emitter/keygen/", 1, false, body)
			msgs := in.waitCount(t, i+2)
			var r struct {
				Status  int    `json:"status"`
				Key     string `json:"key"`
				Channel string `json:"channel"`
				Message string `json:"message"`
			}
			last := msgs[len(msgs)-1]
			require.Equal(t, "emitter/keygen/", last.Topic)
			require.NoError(t, json.Unmarshal(last.Payload, &r))
			require.Equal(t, tt.status, r.Status, r.Message)
			if tt.status != 200 {
				require.Empty(t, r.Key)
				require.NotEmpty(t, r.Message)
				return
			}
			require.Equal(t, tt.wantChannel(connID), r.Channel)
			cl, err := n.srv.Keyring().Verify(r.Key)
			require.NoError(t, err)
			require.Equal(t, tt.wantPerm, cl.Perm)
		})
	}
}

// connectKeyed connects a Paho client with key as its CONNECT password,
// the way every MQTT client presents a channel key.
func connectKeyed(t *testing.T, srv *broker.Server, clientID, key string) (paho.Client, *inbox) {
	t.Helper()
	in := &inbox{}
	c, _ := connectPaho(t, pahoOptions(srv, transportTCP, clientID).
		SetUsername(clientID).SetPassword(key).SetDefaultPublishHandler(in.handle))
	return c, in
}

// flip changes the last characters of a signature so it no longer
// verifies while staying valid base64url.
func flip(s string) string {
	b := []byte(s)
	for i := range b {
		if b[i] == 'A' {
			b[i] = 'B'
		} else {
			b[i] = 'A'
		}
	}
	return string(b)
}

// algNone re-encodes key's header as alg "none" with an empty signature
// (reliability case E1).
func algNone(t *testing.T, key string) string {
	t.Helper()
	parts := strings.Split(key, ".")
	require.Len(t, parts, 3)
	header := base64.RawURLEncoding.EncodeToString([]byte(`{"alg":"none","typ":"JWT"}`))
	return header + "." + parts[1] + "."
}

func htmlEscape(s string) string { return template.HTMLEscapeString(s) }

// FuzzKeygenPost throws arbitrary bodies at POST /keygen, as a form and as
// JSON. The seeds say MASTER where the node's master key goes, so the
// fuzzer also explores requests that pass authorisation. Whatever the body,
// the node answers (a handler panic would surface as a broken connection)
// with one of the statuses the page documents, and a 200 carries a key
// that verifies and is no master key.
func FuzzKeygenPost(f *testing.F) {
	for _, seed := range []struct {
		json bool
		body string
	}{
		{false, "key=MASTER&channel=a%2Fb%2F&r=on&w=on&ttl=60"},
		{false, "key=MASTER&read=a%2F%2B%0D%0Ab%2F%23&write=c&subject=x&sub=on&pub=on&ttl="},
		{false, "key=MASTER&channel=a%2F%23%2F&type=rwslpex&perm=e"},
		{false, "key=MASTER&channel=a&r=on"},
		{false, "key=%zz&channel=%2F"},
		{false, "ttl=-1&ttl=2&r=off&e=yes"},
		{true, `{"key":"MASTER","channel":"a/b/","type":"rw","ttl":60,"sub":"s"}`},
		{true, `{"key":"MASTER","read":["a/#"],"write":["a/+"],"perm":"rl"}`},
		{true, `{"key":"MASTER","channel":"a/#/b/","type":"r"}`},
		{true, `{"key":"MASTER","channel":"a/","type":"m"}`},
		{true, `{"key":1}`},
		{true, `{"key":"MASTER","channel":"a/","type":"r","ttl":1e30}`},
		{true, `[]`},
		{true, ``},
	} {
		f.Add(seed.json, seed.body)
	}
	n := startKeygenNode(f, nil)
	// Reuse connections: the fuzzer sends thousands of requests a second.
	n.client.Transport.(*http.Transport).DisableKeepAlives = false
	f.Fuzz(func(t *testing.T, asJSON bool, body string) {
		contentType := "application/x-www-form-urlencoded"
		if asJSON {
			contentType = "application/json"
		}
		body = strings.ReplaceAll(body, "MASTER", n.master)
		resp, text := n.do(t, http.MethodPost, contentType, body)
		switch resp.StatusCode {
		case http.StatusOK:
		case http.StatusBadRequest, http.StatusUnauthorized, http.StatusRequestEntityTooLarge:
			require.NotContains(t, text, `id="key"`)
			return
		default:
			t.Fatalf("status %d for %q: %s", resp.StatusCode, body, text)
		}
		var key string
		if asJSON {
			var r struct{ Key string }
			require.NoError(t, json.Unmarshal([]byte(text), &r))
			key = r.Key
		} else {
			key = keyOnPage(t, text)
		}
		cl, err := n.srv.Keyring().Verify(key)
		require.NoError(t, err)
		require.False(t, cl.IsMaster(), "/keygen never mints a master key")
		require.NotEmpty(t, cl.Perm, "an empty perm would read as an Eventhub token")
	})
}

// BenchmarkKeygenPost measures one form POST end to end over loopback
// HTTP, by master key and by secret (which signs and verifies a probe
// first). Keygen is not a hot path; this bounds what a burst of page
// submissions costs the node.
func BenchmarkKeygenPost(b *testing.B) {
	n := startKeygenNode(b, nil)
	n.client.Transport.(*http.Transport).DisableKeepAlives = false
	for _, bc := range []struct{ name, authority string }{{"master-key", n.master}, {"secret", n.secret}} {
		body := url.Values{"key": {bc.authority}, "channel": {"bench/room/"}, "r": {"on"}, "w": {"on"}, "ttl": {"60"}}.Encode()
		b.Run(bc.name, func(b *testing.B) {
			b.ReportAllocs()
			for b.Loop() {
				resp, _ := n.do(b, http.MethodPost, "application/x-www-form-urlencoded", body)
				if resp.StatusCode != http.StatusOK {
					b.Fatalf("status %d", resp.StatusCode)
				}
			}
		})
	}
}
