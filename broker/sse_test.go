package broker_test

// Server-Sent Events (eventhub.md §1.4, docs/eventhub.md), read with a real
// HTTP client and parsed the way EventSource parses a stream.

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
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

// sseEvent is one parsed block of a stream: an event or a comment.
type sseEvent struct {
	ID      string
	Data    string
	Comment string // text after ':' on a comment line
	Raw     string // the block's bytes, for exact-framing checks
}

type sseClient struct {
	t    testing.TB
	resp *http.Response
	r    *bufio.Reader
}

// sseRequest builds a stream request for pathAndQuery; it is cancelled when
// the test ends. In a test that also bounds every read; a fuzz target's
// stream lives as long as the fuzzing, whose per-input timeout bounds reads.
func sseRequest(t testing.TB, srv *broker.Server, pathAndQuery string, h http.Header) *http.Request {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 4*opTimeout)
	if _, fuzzing := t.(*testing.F); fuzzing {
		ctx, cancel = context.WithCancel(context.Background())
	}
	t.Cleanup(cancel)
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, "http://"+srv.Addr().String()+pathAndQuery, nil)
	require.NoError(t, err)
	for k, v := range h {
		req.Header[k] = v
	}
	req.Header.Set("Accept", "text/event-stream")
	return req
}

// openSSE opens a stream and requires 200 and Eventhub's ":ok" first.
func openSSE(t testing.TB, srv *broker.Server, pathAndQuery string, h http.Header) *sseClient {
	t.Helper()
	resp, err := http.DefaultClient.Do(sseRequest(t, srv, pathAndQuery, h))
	require.NoError(t, err)
	t.Cleanup(func() { _ = resp.Body.Close() })
	require.Equal(t, http.StatusOK, resp.StatusCode)
	c := &sseClient{t: t, resp: resp, r: bufio.NewReader(resp.Body)}
	first := c.next()
	require.Equal(t, "ok", first.Comment, "first block %q", first.Raw)
	return c
}

// next reads one block up to its blank line.
func (c *sseClient) next() sseEvent {
	c.t.Helper()
	var ev sseEvent
	var data []string
	for {
		line, err := c.r.ReadString('\n')
		require.NoError(c.t, err, "reading the stream (so far %q)", ev.Raw+line)
		ev.Raw += line
		line = strings.TrimSuffix(line, "\n")
		field, value, _ := strings.Cut(line, ":")
		value = strings.TrimPrefix(value, " ")
		switch {
		case line == "":
			if ev.Raw == "\n" {
				ev.Raw = ""
				continue // a stray blank line dispatches nothing
			}
			ev.Data = strings.Join(data, "\n")
			return ev
		case field == "":
			ev.Comment = strings.TrimPrefix(line, ":")
		case field == "id":
			ev.ID = value
		case field == "data":
			data = append(data, value)
		}
	}
}

// nextEvent skips keepalive comments.
func (c *sseClient) nextEvent() sseEvent {
	c.t.Helper()
	for {
		if ev := c.next(); ev.Raw[0] != ':' {
			return ev
		}
	}
}

// A stream carries each message as id and data lines; a multi-line
// message gets one data line per line (CR, LF and CRLF all end a line).
func TestSSEStream(t *testing.T) {
	srv := startServer(t, nil)
	resp, err := http.DefaultClient.Do(sseRequest(t, srv, "/sse/t", nil))
	require.NoError(t, err)
	defer resp.Body.Close()
	require.Equal(t, http.StatusOK, resp.StatusCode)
	require.Equal(t, "text/event-stream", resp.Header.Get("Content-Type"))
	require.Equal(t, "no-cache", resp.Header.Get("Cache-Control"))
	require.Equal(t, "*", resp.Header.Get("Access-Control-Allow-Origin"))
	require.Contains(t, resp.Header.Get("Access-Control-Allow-Headers"), "Last-Event-ID")
	c := &sseClient{t: t, resp: resp, r: bufio.NewReader(resp.Body)}
	require.Equal(t, ":ok\n\n", c.next().Raw)

	rpc := dialRPC(t, srv, "/", nil)
	cases := []struct{ msg, data, raw string }{
		{"plain", "plain", "data: plain\n"},
		{"l1\nl2\r\nl3\rl4", "l1\nl2\nl3\nl4", "data: l1\ndata: l2\ndata: l3\ndata: l4\n"},
		{"trailing\n", "trailing\n", "data: trailing\ndata: \n"},
		{"\n\nx", "\n\nx", "data: \ndata: \ndata: x\n"},
		{"data: id: not fields", "data: id: not fields", "data: data: id: not fields\n"},
		{"ünïcødé ✓", "ünïcødé ✓", "data: ünïcødé ✓\n"},
	}
	for _, tc := range cases {
		id := rpc.publish("sse/t", tc.msg)
		ev := c.nextEvent()
		require.Equal(t, "id: "+id+"\n"+tc.raw+"\n", ev.Raw)
		require.Equal(t, id, ev.ID)
		require.Equal(t, tc.data, ev.Data)
	}
	rpc.publish("sse/other", "not for this stream")
	last := rpc.publish("sse/t", "last")
	require.Equal(t, last, c.nextEvent().ID)
}

// The topic is the URL-decoded path: patterns arrive as %23 and %2B;
// empty levels are kept (no path cleaning).
func TestSSEPatternsAndPaths(t *testing.T) {
	srv := startServer(t, nil)
	hash := openSSE(t, srv, "/p/%23", nil)
	plus := openSSE(t, srv, "/p/%2B/x", nil)
	empty := openSSE(t, srv, "/e//x", nil)
	rpc := dialRPC(t, srv, "/", nil)
	rpc.publish("p", "parent")
	rpc.publish("p/a/x", "deep")
	rpc.publish("e//x", "empty level")
	require.Equal(t, "parent", hash.nextEvent().Data)
	require.Equal(t, "deep", hash.nextEvent().Data)
	require.Equal(t, "deep", plus.nextEvent().Data)
	require.Equal(t, "empty level", empty.nextEvent().Data)
}

// Replay (§1.4): Last-Event-ID header or lastEventId query (the query
// wins), else since; limit caps either; history precedes live messages.
func TestSSEReplay(t *testing.T) {
	srv := startServer(t, func(c *broker.Config) { c.Storage.MaxRequestLimit = 3 })
	rpc := dialRPC(t, srv, "/", nil)
	var ids []string
	for i := range 5 {
		ids = append(ids, rpc.publish("r/t", fmt.Sprint("m", i)))
	}
	read := func(pathAndQuery string, h http.Header) []string {
		t.Helper()
		c := openSSE(t, srv, pathAndQuery, h)
		// The sentinel goes through the HTTP API without a ttl, so it is
		// delivered live and never stored: later replays do not see it.
		res := postPublish(t, srv, "", `{"topic":"r/t","message":"live"}`)
		require.Equal(t, http.StatusOK, res.code, res.body)
		var got []string
		for {
			ev := c.nextEvent()
			if ev.Data == "live" {
				return got
			}
			got = append(got, ev.ID)
		}
	}
	require.Equal(t, ids[3:], read("/r/t", http.Header{"Last-Event-ID": {ids[2]}}))
	require.Equal(t, ids[4:], read("/r/t?lastEventId="+ids[3], http.Header{"Last-Event-ID": {ids[0]}}))
	// As in Eventhub, a limit keeps the newest of what follows the id.
	require.Equal(t, ids[3:], read("/r/t?lastEventId="+ids[1]+"&limit=2", nil))
	require.Empty(t, read("/r/t?lastEventId=1-0", nil), "an unknown id replays nothing")
	require.Empty(t, read("/r/t", nil), "no replay asked for")
	since := fmt.Sprintf("/r/t?since=%d", time.Now().Add(-time.Minute).UnixMilli())
	require.Equal(t, ids[2:], read(since, nil), "capped by storage.max_request_limit")
	require.Equal(t, ids[4:], read("/r/t?since=-60000&limit=1", nil))
	require.Equal(t, ids[3:], read("/r/%23?since=-60000&limit=2", nil))
}

// jsonrpc.ping_interval: an idle stream gets ":" comments.
func TestSSEKeepalive(t *testing.T) {
	srv := startServer(t, func(c *broker.Config) { c.JSONRPC.PingInterval = broker.Duration(20 * time.Millisecond) })
	c := openSSE(t, srv, "/k", nil)
	for range 2 {
		require.Equal(t, ":\n\n", c.next().Raw)
	}
}

// Refusals, with Eventhub's statuses and texts.
func TestSSERefusals(t *testing.T) {
	srv := startServer(t, func(c *broker.Config) { c.NoAuth = false })
	key := signKey(t, srv, keys.Claims{Read: []string{"a/#"}})
	off := startServer(t, func(c *broker.Config) { c.JSONRPC.EnableSSE = false })
	cases := []struct {
		name   string
		srv    *broker.Server
		method string
		path   string
		header http.Header
		code   int
		body   string
	}{
		{"no token", srv, "GET", "/a/b", nil, 401, "No authentication token was given."},
		{"bad token", srv, "GET", "/a/b?auth=nope", nil, 401, "Authentication failed."},
		{"no read access", srv, "GET", "/b?auth=" + key, nil, 401, `{"error":"Insufficient access."}`},
		{"invalid topic", srv, "GET", "/a/%23/b", http.Header{"Authorization": {"Bearer " + key}}, 404, `{"error":"Invalid topic requested."}`},
		{"empty topic", srv, "GET", "/", http.Header{"Authorization": {key}}, 404, `{"error":"Invalid topic requested."}`},
		{"disabled", off, "GET", "/a/b", nil, 501, "SSE is not enabled in this setup."},
		{"not GET", off, "POST", "/a/b", nil, 405, "SSE needs GET."},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			req := sseRequest(t, tc.srv, tc.path, tc.header)
			req.Method = tc.method
			resp, err := http.DefaultClient.Do(req)
			require.NoError(t, err)
			defer resp.Body.Close()
			body, _ := io.ReadAll(resp.Body)
			require.Equal(t, tc.code, resp.StatusCode)
			require.Equal(t, tc.body, strings.TrimSpace(string(body)))
		})
	}
	// A key that may read streams with the key's subject as nothing more
	// than a label: the stream works.
	c := openSSE(t, srv, "/a/b?auth="+url.QueryEscape(key), nil)
	writer := signKey(t, srv, keys.Claims{Write: []string{"a/b"}})
	res := postPublish(t, srv, writer, `{"topic":"a/b","message":"ok"}`)
	require.Equal(t, http.StatusOK, res.code, res.body)
	require.Equal(t, "ok", c.nextEvent().Data)
}

// A client that goes away takes its subscription with it; shutting the
// node down ends open streams.
func TestSSELifecycle(t *testing.T) {
	srv := startServer(t, nil)
	c := openSSE(t, srv, "/life", nil)
	require.Equal(t, 1, srv.Counters().Subscriptions)
	require.EqualValues(t, 1, srv.Counters().Connections)
	require.NoError(t, c.resp.Body.Close())
	waitFor(t, opTimeout, func() bool { return srv.Counters().Subscriptions == 0 && srv.Counters().Connections == 0 })

	c = openSSE(t, srv, "/life", nil)
	require.NoError(t, srv.Close())
	_, err := io.Copy(io.Discard, c.r)
	require.NoError(t, err, "the stream ends cleanly")
}

// A stream that does not read is closed as a slow consumer (H1), without
// holding up the publisher.
func TestSSESlowConsumer(t *testing.T) {
	srv := startServer(t, func(c *broker.Config) {
		c.JSONRPC.EnableCache = false
		c.Limits.MaxPendingBytes = 64 << 10
		c.Limits.WriteTimeout = broker.Duration(200 * time.Millisecond)
	})
	openSSE(t, srv, "/slow", nil) // never read again
	rpc := dialRPC(t, srv, "/", nil)
	big := strings.Repeat("x", 16<<10)
	waitFor(t, 2*opTimeout, func() bool {
		rpc.publish("slow", big)
		return srv.Counters().SlowConsumers > 0
	})
	waitFor(t, opTimeout, func() bool { return srv.Counters().Subscriptions == 0 })
}

// FuzzSSEMessage publishes arbitrary messages and reads them back through
// a stream: what EventSource reassembles equals the message with its line
// breaks normalised to "\n", and the framing never breaks.
func FuzzSSEMessage(f *testing.F) {
	for _, seed := range []string{"plain", "a\nb", "a\r\nb", "a\rb", "\n", "\r\n\r\n", ":not a comment", "id: 1", "x\x00y", "ü\n✓"} {
		f.Add(seed)
	}
	srv := startServer(f, nil)
	c := openSSE(f, srv, "/fuzz/sse", nil)
	f.Fuzz(func(t *testing.T, msg string) {
		if msg == "" || len(msg) > 32<<10 {
			t.Skip("Eventhub refuses empty messages; the size is limits' business")
		}
		c.t = t
		body, err := json.Marshal(map[string]string{"topic": "fuzz/sse", "message": msg})
		require.NoError(t, err)
		res := postPublish(t, srv, "", string(body))
		require.Equal(t, http.StatusOK, res.code, res.body)
		var ok struct{ ID string }
		require.NoError(t, json.Unmarshal([]byte(res.body), &ok))
		ev := c.nextEvent()
		require.Equal(t, ok.ID, ev.ID)
		// JSON carries each byte of invalid UTF-8 as U+FFFD.
		var valid strings.Builder
		for _, r := range msg {
			valid.WriteRune(r)
		}
		want := strings.ReplaceAll(valid.String(), "\r\n", "\n")
		want = strings.ReplaceAll(want, "\r", "\n")
		require.Equal(t, want, ev.Data)
	})
}
