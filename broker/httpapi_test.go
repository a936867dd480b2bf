package broker_test

// The HTTP surface beside the streams (docs/eventhub.md): POST
// /api/publish, CORS preflight on every path, and the health endpoints.

import (
	"context"
	"encoding/json"
	"io"
	"net/http"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/pubsub/pubsub/broker"
	"github.com/pubsub/pubsub/keys"
)

// httpResult is a response read whole.
type httpResult struct {
	code   int
	body   string
	header http.Header
}

// doHTTP sends req and reads the whole answer.
func doHTTP(t testing.TB, req *http.Request) httpResult {
	t.Helper()
	ctx, cancel := context.WithTimeout(req.Context(), opTimeout)
	defer cancel()
	resp, err := http.DefaultClient.Do(req.WithContext(ctx))
	require.NoError(t, err)
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	require.NoError(t, err)
	return httpResult{code: resp.StatusCode, body: strings.TrimSpace(string(body)), header: resp.Header}
}

func httpURL(srv *broker.Server, pathAndQuery string) string {
	return "http://" + srv.Addr().String() + pathAndQuery
}

// postPublish posts body to /api/publish, with key as a Bearer token when
// not empty.
func postPublish(t testing.TB, srv *broker.Server, key, body string) httpResult {
	t.Helper()
	req, err := http.NewRequest(http.MethodPost, httpURL(srv, "/api/publish"), strings.NewReader(body))
	require.NoError(t, err)
	req.Header.Set("Content-Type", "application/json")
	if key != "" {
		req.Header.Set("Authorization", "Bearer "+key)
	}
	return doHTTP(t, req)
}

// errorText is the "error" member of a JSON error body.
func errorText(t testing.TB, body string) string {
	t.Helper()
	var e struct{ Error string }
	require.NoError(t, json.Unmarshal([]byte(body), &e), "body %q", body)
	return e.Error
}

// Every status of POST /api/publish, with auth on.
func TestHTTPPublishStatuses(t *testing.T) {
	srv := startServer(t, func(c *broker.Config) {
		c.NoAuth = false
		c.Limits.MaxPacketSize = 1024
	})
	writer := signKey(t, srv, keys.Claims{Subject: "svc", Write: []string{"h/#"}, Perm: "w"})
	storer := signKey(t, srv, keys.Claims{Subject: "svc", Write: []string{"h/#"}})
	limited := signKey(t, srv, keys.Claims{Subject: "lim", Write: []string{"h/#"},
		RateLimits: []keys.RateLimit{{Topic: "h/#", Interval: 3600, Max: 1}}})
	// The body is capped at 2 x max_packet_size + 16 KiB before parsing.
	bigBody := `{"topic":"h/a","message":"` + strings.Repeat("x", 20000) + `"}`
	cases := []struct {
		name        string
		method      string
		contentType string
		auth        string // Authorization header value
		query       string
		body        string
		code        int
		err         string // the "error" member; "" for 200
	}{
		{name: "GET", method: "GET", code: 405, err: `use POST with a JSON body {"topic", "message"}`},
		{name: "form post", contentType: "application/x-www-form-urlencoded", auth: writer, body: "topic=h/a", code: 415, err: "Content-Type must be application/json"},
		{name: "no key", body: `{"topic":"h/a","message":"m"}`, code: 401, err: "No authentication token was given."},
		{name: "bad key", auth: "nope", body: `{"topic":"h/a","message":"m"}`, code: 401, err: "Authentication failed."},
		{name: "bad body key", body: `{"topic":"h/a","message":"m","key":"nope"}`, code: 401, err: "Authentication failed."},
		{name: "broken JSON", auth: writer, body: `{"topic":"h/a",`, code: 400},
		{name: "trailing data", auth: writer, body: `{"topic":"h/a","message":"m"} {}`, code: 400, err: "invalid JSON body: unexpected data after the JSON object"},
		{name: "unknown member", auth: writer, body: `{"topic":"h/a","mesage":"m"}`, code: 400},
		{name: "wrong type", auth: writer, body: `{"topic":"h/a","message":5}`, code: 400},
		{name: "no message", auth: writer, body: `{"topic":"h/a"}`, code: 400, err: "You need to specify topic and message to publish to."},
		{name: "no topic", auth: writer, body: `{"message":"m"}`, code: 400, err: "You need to specify topic and message to publish to."},
		{name: "wildcard topic", auth: writer, body: `{"topic":"h/+","message":"m"}`, code: 400, err: "h/+ is not a valid topic."},
		{name: "qos 3", auth: writer, body: `{"topic":"h/a","message":"m","qos":3}`, code: 400, err: "qos must be 0, 1 or 2"},
		{name: "negative ttl", auth: writer, body: `{"topic":"h/a","message":"m","ttl":-1}`, code: 400, err: "ttl must be >= 0 seconds"},
		{name: "body over the cap", auth: writer, body: bigBody, code: 413, err: "request body larger than 18432 bytes"},
		{name: "message over max_packet_size", auth: writer, body: `{"topic":"h/a","message":"` + strings.Repeat("y", 1500) + `"}`, code: 413,
			err: "message larger than limits.max_packet_size (1024 bytes)"},
		{name: "no write access", auth: writer, body: `{"topic":"other","message":"m"}`, code: 403, err: "Insufficient access to topic: other"},
		{name: "ttl without store", auth: writer, body: `{"topic":"h/a","message":"m","ttl":60}`, code: 403, err: "the key may not store messages on topic: h/a"},
		{name: "retain without store", auth: writer, body: `{"topic":"h/a","message":"m","retain":true}`, code: 403, err: "the key may not store messages on topic: h/a"},
		{name: "raw header", auth: writer, body: `{"topic":"h/a","message":"m"}`, code: 200},
		{name: "bearer header", auth: "Bearer " + writer, body: `{"topic":"h/a","message":"m","qos":2}`, code: 200},
		{name: "auth query", query: "?auth=" + url.QueryEscape(writer), body: `{"topic":"h/a","message":"m"}`, code: 200},
		{name: "body key", body: `{"topic":"h/a","message":"m","key":"` + storer + `"}`, code: 200},
		{name: "stored", auth: storer, body: `{"topic":"h/a","message":"m","ttl":60,"retain":true,"qos":1}`, code: 200},
		{name: "under the rate limit", auth: limited, body: `{"topic":"h/a","message":"m"}`, code: 200},
		{name: "over the rate limit", auth: limited, body: `{"topic":"h/a","message":"m"}`, code: 429, err: "ERR_RATE_LIMIT_EXCEEDED"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			method := tc.method
			if method == "" {
				method = http.MethodPost
			}
			req, err := http.NewRequest(method, httpURL(srv, "/api/publish"+tc.query), strings.NewReader(tc.body))
			require.NoError(t, err)
			req.Header.Set("Origin", "https://app.example")
			if tc.contentType != "" {
				req.Header.Set("Content-Type", tc.contentType)
			}
			if tc.auth != "" {
				req.Header.Set("Authorization", tc.auth)
			}
			res := doHTTP(t, req)
			require.Equal(t, tc.code, res.code, res.body)
			require.Equal(t, "application/json", res.header.Get("Content-Type"))
			require.Equal(t, "https://app.example", res.header.Get("Access-Control-Allow-Origin"))
			if tc.code != http.StatusOK {
				msg := errorText(t, res.body)
				if tc.err != "" {
					require.Equal(t, tc.err, msg)
				} else {
					require.NotEmpty(t, msg)
				}
				return
			}
			var ok struct{ ID, Topic string }
			require.NoError(t, json.Unmarshal([]byte(res.body), &ok))
			require.Regexp(t, msgIDPattern, ok.ID)
			require.Equal(t, "h/a", ok.Topic)
		})
	}
	res := doHTTP(t, mustRequest(t, http.MethodPut, httpURL(srv, "/api/publish"), ""))
	require.Equal(t, http.StatusMethodNotAllowed, res.code)
	require.Equal(t, "POST, OPTIONS", res.header.Get("Allow"))
}

func mustRequest(t testing.TB, method, u, body string) *http.Request {
	t.Helper()
	req, err := http.NewRequest(method, u, strings.NewReader(body))
	require.NoError(t, err)
	return req
}

// What the HTTP API publishes is delivered (at the QoS asked for), kept
// when a ttl is given, and retained when asked.
func TestHTTPPublishDelivery(t *testing.T) {
	srv := startServer(t, nil)
	mq, in := connectWithInbox(t, srv, transportTCP, "http-sub")
	subscribe(t, mq, "d/#", 2)

	res := postPublish(t, srv, "", `{"topic":"d/q2","message":"two","qos":2}`)
	require.Equal(t, http.StatusOK, res.code, res.body)
	require.Equal(t, byte(2), in.waitMessage(t, "d/q2", "two").QoS)
	res = postPublish(t, srv, "", `{"topic":"d/q0","message":"zero"}`)
	require.Equal(t, http.StatusOK, res.code, res.body)
	require.Equal(t, byte(0), in.waitMessage(t, "d/q0", "zero").QoS, "qos defaults to 0")

	res = postPublish(t, srv, "", `{"topic":"d/kept","message":"history","ttl":60}`)
	require.Equal(t, http.StatusOK, res.code, res.body)
	var ok struct{ ID string }
	require.NoError(t, json.Unmarshal([]byte(res.body), &ok))
	rpc := dialRPC(t, srv, "/", nil)
	var log struct{ Items []rpcPush }
	require.NoError(t, json.Unmarshal(rpc.result("eventlog", map[string]any{"topic": "d/#", "since": -60000}), &log))
	require.Len(t, log.Items, 1, "only the publish with a ttl is kept")
	require.Equal(t, ok.ID, log.Items[0].ID)

	res = postPublish(t, srv, "", `{"topic":"d/state","message":"on","retain":true,"qos":1}`)
	require.Equal(t, http.StatusOK, res.code, res.body)
	late, lateIn := connectWithInbox(t, srv, transportWS, "http-late")
	subscribe(t, late, "d/state", 1)
	got := lateIn.waitMessage(t, "d/state", "on")
	require.True(t, got.Retained)
}

// CORS (issue 5 #6): OPTIONS on any path is 204 with the allowed methods
// and headers, echoing Origin or *; health endpoints need no key.
func TestHTTPCORSAndHealth(t *testing.T) {
	srv := startServer(t, func(c *broker.Config) { c.NoAuth = false })
	for _, path := range []string{"/", "/api/publish", "/some/topic", "/healthz", "/metrics"} {
		for _, origin := range []string{"", "https://app.example"} {
			req := mustRequest(t, http.MethodOptions, httpURL(srv, path), "")
			want := "*"
			if origin != "" {
				req.Header.Set("Origin", origin)
				want = origin
			}
			res := doHTTP(t, req)
			require.Equal(t, http.StatusNoContent, res.code, path)
			require.Equal(t, want, res.header.Get("Access-Control-Allow-Origin"), path)
			require.Equal(t, "GET, POST, OPTIONS", res.header.Get("Access-Control-Allow-Methods"))
			require.Equal(t, "Authorization, Content-Type, Last-Event-ID", res.header.Get("Access-Control-Allow-Headers"))
			require.Empty(t, res.body)
		}
	}
	for _, path := range []string{"/healthz", "/livez", "/readyz"} {
		res := doHTTP(t, mustRequest(t, http.MethodGet, httpURL(srv, path), ""))
		require.Equal(t, http.StatusOK, res.code, path)
		require.Equal(t, "application/json", res.header.Get("Content-Type"))
		require.JSONEq(t, `{"status":"ok"}`, res.body)
	}
	res := doHTTP(t, mustRequest(t, http.MethodGet, httpURL(srv, "/metrics?format=json"), ""))
	require.Equal(t, http.StatusOK, res.code)
	require.Equal(t, "application/json", res.header.Get("Content-Type"))
	var snap map[string]any
	require.NoError(t, json.Unmarshal([]byte(res.body), &snap))
	require.NotEmpty(t, snap)
}

// FuzzHTTPPublish posts arbitrary bodies: the answer is always JSON with a
// 2xx or 4xx status, never a server error, and the node keeps serving.
func FuzzHTTPPublish(f *testing.F) {
	for _, seed := range []string{
		`{"topic":"f/a","message":"m"}`,
		`{"topic":"f/a","message":"m","ttl":1,"retain":true,"qos":1}`,
		`{"topic":"f/+","message":"m"}`,
		`{"topic":"f/a","message":"m","qos":"1"}`,
		`{"topic":"f/a","message":null}`,
		`{"topic":"f/a","message":"m","Topic":"g"}`,
		`{"topic":"f/a"}{"x":1}`,
		`[]`, `null`, ``, `{`, `"\ud800"`,
	} {
		f.Add(seed)
	}
	srv := startServer(f, func(c *broker.Config) { c.Limits.MaxPacketSize = 4096 })
	client := &http.Client{Timeout: opTimeout}
	f.Fuzz(func(t *testing.T, body string) {
		req := mustRequest(t, http.MethodPost, httpURL(srv, "/api/publish"), body)
		req.Header.Set("Content-Type", "application/json")
		resp, err := client.Do(req)
		require.NoError(t, err)
		defer resp.Body.Close()
		data, err := io.ReadAll(resp.Body)
		require.NoError(t, err)
		require.Less(t, resp.StatusCode, 500, "%s", data)
		require.True(t, json.Valid(data), "answer is not JSON: %q", data)
	})
}

// BenchmarkHTTPPublish is one POST /api/publish round trip on a kept-alive
// connection, with one MQTT subscriber.
func BenchmarkHTTPPublish(b *testing.B) {
	srv := startServer(b, nil)
	mq, _ := connectWithInbox(b, srv, transportTCP, "bench-http-sub")
	subscribe(b, mq, "bench/http", 0)
	client := &http.Client{Timeout: time.Minute}
	body := `{"topic":"bench/http","message":"0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef"}`
	u := httpURL(srv, "/api/publish")
	b.ReportAllocs()
	b.ResetTimer()
	for range b.N {
		resp, err := client.Post(u, "application/json", strings.NewReader(body))
		if err != nil {
			b.Fatal(err)
		}
		_, _ = io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		if resp.StatusCode != http.StatusOK {
			b.Fatalf("status %d", resp.StatusCode)
		}
	}
	b.StopTimer()
	client.CloseIdleConnections()
}
