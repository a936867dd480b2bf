package broker_test

// The Eventhub-compatible JSON-RPC endpoint (protocols/eventhub.md §2,
// docs/eventhub.md), black-box over real WebSockets: every error string of
// the protocol, the exact result and push shapes the unmodified clients
// read, malformed input (reliability-cases.md group D), history, the
// key-value methods, keys and ACLs, keepalives, and one topic space shared
// with MQTT, SSE and the HTTP publish API.

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"regexp"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/golang-jwt/jwt/v5"
	"github.com/gorilla/websocket"
	"github.com/stretchr/testify/require"

	"github.com/pubsub/pubsub/broker"
	"github.com/pubsub/pubsub/broker/store"
	"github.com/pubsub/pubsub/keys"
)

// ---------------------------------------------------------------- client

// rpcFrame is one JSON-RPC frame from the node.
type rpcFrame struct {
	ID      json.RawMessage `json:"id"`
	JSONRPC string          `json:"jsonrpc"`
	Result  json.RawMessage `json:"result"`
	Error   *rpcError       `json:"error"`
	raw     []byte
}

type rpcError struct {
	Code    int             `json:"code"`
	Message string          `json:"message"`
	Data    json.RawMessage `json:"data"`
}

// dataText is the error's data string ("" when absent).
func (e *rpcError) dataText() string {
	var s string
	_ = json.Unmarshal(e.Data, &s)
	return s
}

// rpcPush is a pushed message (eventhub.md §2.3).
type rpcPush struct {
	ID      string  `json:"id"`
	Message string  `json:"message"`
	Origin  *string `json:"origin"`
	Topic   string  `json:"topic"`
}

// rpcClient is a JSON-RPC client on a gorilla WebSocket. Frames read while
// looking for a particular one are kept in backlog, so a push that arrives
// between a request and its response is not lost.
type rpcClient struct {
	t       testing.TB
	ws      *websocket.Conn
	backlog []rpcFrame
	calls   int
}

func rpcURL(srv *broker.Server, pathAndQuery string) string {
	return "ws://" + srv.Addr().String() + pathAndQuery
}

// dialRPC upgrades to the JSON-RPC endpoint: no subprotocol, any path.
func dialRPC(t testing.TB, srv *broker.Server, pathAndQuery string, h http.Header) *rpcClient {
	t.Helper()
	d := websocket.Dialer{HandshakeTimeout: opTimeout}
	ws, resp, err := d.Dial(rpcURL(srv, pathAndQuery), h)
	require.NoError(t, err)
	_ = resp.Body.Close()
	t.Cleanup(func() { _ = ws.Close() })
	return &rpcClient{t: t, ws: ws}
}

// dialRPCRefused requires the upgrade to be refused and returns the HTTP
// status and body.
func dialRPCRefused(t testing.TB, srv *broker.Server, pathAndQuery string, h http.Header) (int, string) {
	t.Helper()
	d := websocket.Dialer{HandshakeTimeout: opTimeout}
	ws, resp, err := d.Dial(rpcURL(srv, pathAndQuery), h)
	if ws != nil {
		_ = ws.Close()
	}
	require.ErrorIs(t, err, websocket.ErrBadHandshake)
	require.NotNil(t, resp)
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, strings.TrimSpace(string(body))
}

func (c *rpcClient) send(frame string) {
	c.t.Helper()
	require.NoError(c.t, c.ws.SetWriteDeadline(time.Now().Add(opTimeout)))
	require.NoError(c.t, c.ws.WriteMessage(websocket.TextMessage, []byte(frame)))
}

// request sends a request with a literal id token (`1`, `"a"`, `null`).
func (c *rpcClient) request(id, method string, params any) {
	c.t.Helper()
	p, err := json.Marshal(params)
	require.NoError(c.t, err)
	c.send(fmt.Sprintf(`{"jsonrpc":"2.0","id":%s,"method":%q,"params":%s}`, id, method, p))
}

// readWire reads the next text frame from the socket.
func (c *rpcClient) readWire() rpcFrame {
	c.t.Helper()
	require.NoError(c.t, c.ws.SetReadDeadline(time.Now().Add(opTimeout)))
	mt, data, err := c.ws.ReadMessage()
	require.NoError(c.t, err, "reading a JSON-RPC frame")
	require.Equal(c.t, websocket.TextMessage, mt)
	var f rpcFrame
	if len(data) > 0 && data[0] == '{' {
		require.NoError(c.t, json.Unmarshal(data, &f), "frame %s", data)
	}
	f.raw = data
	return f
}

// next returns the next frame, from the backlog first.
func (c *rpcClient) next() rpcFrame {
	c.t.Helper()
	if len(c.backlog) > 0 {
		f := c.backlog[0]
		c.backlog = c.backlog[1:]
		return f
	}
	return c.readWire()
}

// frameFor returns the first frame whose id token is id, keeping the others.
func (c *rpcClient) frameFor(id string) rpcFrame {
	c.t.Helper()
	for i, f := range c.backlog {
		if string(f.ID) == id {
			c.backlog = append(c.backlog[:i], c.backlog[i+1:]...)
			return f
		}
	}
	for {
		f := c.readWire()
		if string(f.ID) == id {
			return f
		}
		c.backlog = append(c.backlog, f)
	}
}

// call sends a request with a fresh string id and returns its response.
func (c *rpcClient) call(method string, params any) rpcFrame {
	c.t.Helper()
	c.calls++
	id := strconv.Quote("call-" + strconv.Itoa(c.calls))
	c.request(id, method, params)
	return c.frameFor(id)
}

// result calls method and requires success, returning the raw result.
func (c *rpcClient) result(method string, params any) json.RawMessage {
	c.t.Helper()
	f := c.call(method, params)
	require.Nil(c.t, f.Error, "%s: %s", method, f.raw)
	return f.Result
}

// callError calls method and requires an error response.
func (c *rpcClient) callError(method string, params any) *rpcError {
	c.t.Helper()
	f := c.call(method, params)
	require.NotNil(c.t, f.Error, "%s: want an error, got %s", method, f.raw)
	return f.Error
}

// subscribe subscribes with a literal id token and requires Eventhub's ack
// as the first frame for that id.
func (c *rpcClient) subscribe(id string, params map[string]any) {
	c.t.Helper()
	c.request(id, "subscribe", params)
	f := c.frameFor(id)
	want := fmt.Sprintf(`{"id":%s,"jsonrpc":"2.0","result":{"action":"subscribe","status":"ok","topic":%q}}`, id, params["topic"])
	require.JSONEq(c.t, want, string(f.raw))
}

// push returns the next push for the subscription with id token subID.
func (c *rpcClient) push(subID string) rpcPush {
	c.t.Helper()
	f := c.frameFor(subID)
	require.Nil(c.t, f.Error, "push: %s", f.raw)
	var p rpcPush
	require.NoError(c.t, json.Unmarshal(f.Result, &p))
	return p
}

// publish publishes through JSON-RPC and returns the message id.
func (c *rpcClient) publish(topic, msg string, extra ...any) string {
	c.t.Helper()
	params := map[string]any{"topic": topic, "message": msg}
	for i := 0; i+1 < len(extra); i += 2 {
		params[extra[i].(string)] = extra[i+1]
	}
	var r struct{ Action, ID, Status, Topic string }
	require.NoError(c.t, json.Unmarshal(c.result("publish", params), &r))
	require.Equal(c.t, "ok", r.Status)
	return r.ID
}

// quiet proves nothing more arrives for the connection before the answer
// to a ping sent now: the node answers frames in order.
func (c *rpcClient) quiet() {
	c.t.Helper()
	c.request(`"sentinel"`, "ping", nil)
	f := c.next()
	require.Equal(c.t, `"sentinel"`, string(f.ID), "unexpected frame %s", f.raw)
}

// expectClose reads until the node closes and requires close code code.
func (c *rpcClient) expectClose(code int) {
	c.t.Helper()
	require.NoError(c.t, c.ws.SetReadDeadline(time.Now().Add(opTimeout)))
	for {
		_, data, err := c.ws.ReadMessage()
		if err == nil {
			continue // frames queued before the close
		}
		var ce *websocket.CloseError
		require.True(c.t, errors.As(err, &ce), "want a close frame, got %v (last %s)", err, data)
		require.Equal(c.t, code, ce.Code, "close code")
		return
	}
}

var msgIDPattern = regexp.MustCompile(`^[0-9]+-[0-9]+$`)

// ---------------------------------------------------------------- errors

// Every error of eventhub.md §2.2 that a client can cause, with the exact
// frame Eventhub's clients parse; the connection stays open after each.
func TestRPCErrorStrings(t *testing.T) {
	srv := startServer(t, nil)
	c := dialRPC(t, srv, "/", nil)
	invalid := func(id, data string) string {
		return fmt.Sprintf(`{"error":{"code":-32602,"data":%q,"message":"Invalid params"},"id":%s,"jsonrpc":"2.0"}`, data, id)
	}
	cases := []struct {
		name, frame, want string
	}{
		{"subscribe without topic", `{"jsonrpc":"2.0","id":1,"method":"subscribe","params":{}}`,
			invalid("1", "You must specify 'topic' to subscribe to.")},
		{"subscribe topic not a string", `{"jsonrpc":"2.0","id":2,"method":"subscribe","params":{"topic":5}}`,
			invalid("2", "You must specify 'topic' to subscribe to.")},
		{"subscribe empty topic", `{"jsonrpc":"2.0","id":3,"method":"subscribe","params":{"topic":""}}`,
			invalid("3", "You must specify 'topic' to subscribe to.")},
		{"subscribe params array", `{"jsonrpc":"2.0","id":4,"method":"subscribe","params":["a"]}`,
			invalid("4", "You must specify 'topic' to subscribe to.")},
		{"subscribe bad filter", `{"jsonrpc":"2.0","id":5,"method":"subscribe","params":{"topic":"a/#/b"}}`,
			invalid("5", "Invalid topic in request: a/#/b")},
		{"subscribe partial wildcard", `{"jsonrpc":"2.0","id":6,"method":"subscribe","params":{"topic":"test/+/te+st"}}`,
			invalid("6", "Invalid topic in request: test/+/te+st")},
		{"subscribe shared", `{"jsonrpc":"2.0","id":7,"method":"subscribe","params":{"topic":"$share/g/a"}}`,
			invalid("7", "Invalid topic in request: $share/g/a")},
		{"unsubscribe object", `{"jsonrpc":"2.0","id":8,"method":"unsubscribe","params":{"topic":"a"}}`,
			invalid("8", "Parameter is not array of topics to unsubscribe from.")},
		{"unsubscribe no params", `{"jsonrpc":"2.0","id":9,"method":"unsubscribe"}`,
			invalid("9", "Parameter is not array of topics to unsubscribe from.")},
		{"publish nothing", `{"jsonrpc":"2.0","id":10,"method":"publish","params":{}}`,
			invalid("10", "You need to specify topic and message to publish to.")},
		{"publish no message", `{"jsonrpc":"2.0","id":11,"method":"publish","params":{"topic":"a"}}`,
			invalid("11", "You need to specify topic and message to publish to.")},
		{"publish message not a string", `{"jsonrpc":"2.0","id":12,"method":"publish","params":{"topic":"a","message":{"x":1}}}`,
			invalid("12", "You need to specify topic and message to publish to.")},
		{"publish empty message", `{"jsonrpc":"2.0","id":13,"method":"publish","params":{"topic":"a","message":""}}`,
			invalid("13", "You need to specify topic and message to publish to.")},
		{"publish to a pattern", `{"jsonrpc":"2.0","id":14,"method":"publish","params":{"topic":"a/+","message":"m"}}`,
			invalid("14", "a/+ is not a valid topic.")},
		{"eventlog nothing", `{"jsonrpc":"2.0","id":15,"method":"eventlog","params":{}}`,
			invalid("15", "You must specify either 'since' or 'sinceEventId'.")},
		{"eventlog no topic", `{"jsonrpc":"2.0","id":16,"method":"eventlog","params":{"since":-1000}}`,
			invalid("16", "You must specify topic.")},
		{"eventlog no topic hides sinceEventId", `{"jsonrpc":"2.0","id":17,"method":"eventlog","params":{"sinceEventId":"1-0"}}`,
			invalid("17", "You must specify either 'since' or 'sinceEventId'.")},
		{"eventlog no since", `{"jsonrpc":"2.0","id":18,"method":"eventlog","params":{"topic":"a"}}`,
			invalid("18", "You must specify either 'since' or 'sinceEventId'.")},
		{"eventlog since 0", `{"jsonrpc":"2.0","id":19,"method":"eventlog","params":{"topic":"a","since":0}}`,
			invalid("19", "You must specify either 'since' or 'sinceEventId'.")},
		{"eventlog bad filter", `{"jsonrpc":"2.0","id":20,"method":"eventlog","params":{"topic":"a/#/b","since":-1}}`,
			invalid("20", "Invalid topic in request: a/#/b")},
		{"get missing key", `{"jsonrpc":"2.0","id":21,"method":"get","params":{"key":"nope"}}`,
			invalid("21", "KVStore: key not found")},
		{"unknown method", `{"jsonrpc":"2.0","id":"x","method":"history","params":{}}`,
			`{"error":{"code":-32601,"message":"Method not found"},"id":"x","jsonrpc":"2.0"}`},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			c.t = t
			c.send(tc.frame)
			require.JSONEq(t, tc.want, string(c.next().raw))
			c.quiet() // the connection stays open [checklist 16]
		})
	}
}

// The access errors of §2.2, with a key that reads a/# and writes a/b;
// a/+ read does not admit a/# (the tightened ACL of docs/eventhub.md).
func TestRPCAccessErrors(t *testing.T) {
	srv := startServer(t, func(c *broker.Config) { c.NoAuth = false })
	key := signKey(t, srv, keys.Claims{Subject: "alice", Read: []string{"a/#", "p/+"}, Write: []string{"a/b"}})
	c := dialRPC(t, srv, "/?auth="+url.QueryEscape(key), nil)
	cases := []struct {
		method string
		params map[string]any
		want   string
	}{
		{"subscribe", map[string]any{"topic": "b"}, "You are not allowed to subscribe to topic: b"},
		{"subscribe", map[string]any{"topic": "#"}, "You are not allowed to subscribe to topic: #"},
		{"subscribe", map[string]any{"topic": "p/#"}, "You are not allowed to subscribe to topic: p/#"},
		{"publish", map[string]any{"topic": "b", "message": "m"}, "Insufficient access to topic: b"},
		// Eventhub checks access before validity.
		{"publish", map[string]any{"topic": "b/+", "message": "m"}, "Insufficient access to topic: b/+"},
		{"eventlog", map[string]any{"topic": "b", "since": -1}, "You are not allowed to read from topic: b"},
		{"get", map[string]any{"key": "b"}, "You are not allowed to read key b"},
		{"set", map[string]any{"key": "a/c", "value": "v"}, "You are not allowed to write key a/c"},
		{"del", map[string]any{"key": "b"}, "You are not allowed to delete key b"},
	}
	for _, tc := range cases {
		t.Run(tc.method+" "+fmt.Sprint(tc.params), func(t *testing.T) {
			c.t = t
			e := c.callError(tc.method, tc.params)
			require.Equal(t, -32602, e.Code)
			require.Equal(t, "Invalid params", e.Message)
			require.Equal(t, tc.want, e.dataText())
		})
	}
	c.t = t
	// What the key does allow still works on the same connection.
	c.subscribe("1", map[string]any{"topic": "a/#"})
	c.subscribe("2", map[string]any{"topic": "p/x"})
	id := c.publish("a/b", "mine")
	p := c.push("1")
	require.Equal(t, id, p.ID)
	require.NotNil(t, p.Origin, "origin = the publisher's sub claim")
	require.Equal(t, "alice", *p.Origin)
	require.JSONEq(t, `{"action":"set","key":"a/b","success":true}`, string(c.result("set", map[string]any{"key": "a/b", "value": "v"})))
	require.JSONEq(t, `{"action":"get","key":"a/b","value":"v"}`, string(c.result("get", map[string]any{"key": "a/b"})))
	// unsubscribe skips what the key may not read.
	require.JSONEq(t, `{"unsubscribe_count":1}`, string(c.result("unsubscribe", []any{"a/#", "b"})))
}

// Features switched off answer with Eventhub's texts.
func TestRPCDisabledFeatures(t *testing.T) {
	srv := startServer(t, func(c *broker.Config) {
		c.JSONRPC.EnableKVStore = false
		c.JSONRPC.EnableCache = false
	})
	c := dialRPC(t, srv, "/", nil)
	for _, m := range []string{"get", "set", "del"} {
		// Before any parameter check (§2.2 evaluation order).
		require.Equal(t, "KVStore is not enabled.", c.callError(m, map[string]any{}).dataText(), m)
	}
	require.Equal(t, "Cache is not enabled in server config",
		c.callError("eventlog", map[string]any{"topic": "a", "since": -1000}).dataText())

	// No cache: publishes are not kept and subscribe replays nothing,
	// silently.
	c.publish("nc/t", "one")
	c.subscribe("1", map[string]any{"topic": "nc/t", "since": -60000})
	c.quiet()
	ctx, cancel := context.WithTimeout(context.Background(), opTimeout)
	defer cancel()
	kept, err := srv.Store().Query(ctx, store.Query{Filter: "#"})
	require.NoError(t, err)
	require.Empty(t, kept)
}

// A store that fails surfaces as Eventhub's error texts, and the
// connection stays usable (F6).
func TestRPCStoreFailure(t *testing.T) {
	srv := startServer(t, nil)
	c := dialRPC(t, srv, "/", nil)
	require.NoError(t, srv.Store().Close())
	e := c.callError("publish", map[string]any{"topic": "a", "message": "m"})
	require.True(t, strings.HasPrefix(e.dataText(), "Error while publishing message: "), e.dataText())
	e = c.callError("eventlog", map[string]any{"topic": "a", "since": -1000})
	require.True(t, strings.HasPrefix(e.dataText(), "Error while looking up cache: "), e.dataText())
	c.quiet()
}

// Eventhub's rlimit claim: over max publishes in interval the result
// status is ERR_RATE_LIMIT_EXCEEDED (a result, not an error); keys without
// a subject are not limited.
func TestRPCRateLimitClaim(t *testing.T) {
	srv := startServer(t, func(c *broker.Config) { c.NoAuth = false })
	limited := signKey(t, srv, keys.Claims{Subject: "bob", Write: []string{"#"},
		RateLimits: []keys.RateLimit{{Topic: "r/#", Interval: 3600, Max: 2}, {Topic: "r/free", Interval: 0, Max: 1}}})
	c := dialRPC(t, srv, "/", http.Header{"Authorization": {limited}})
	c.publish("r/a", "1")
	c.publish("r/b", "2")
	f := c.call("publish", map[string]any{"topic": "r/c", "message": "3"})
	require.JSONEq(t, `{"action":"publish","status":"ERR_RATE_LIMIT_EXCEEDED","topic":"r/c"}`, string(f.Result))
	// The exact-topic entry wins, and interval 0 disables it.
	for range 3 {
		c.publish("r/free", "x")
	}
	c.publish("other", "not covered by any entry")

	anonymous := signKey(t, srv, keys.Claims{Write: []string{"#"},
		RateLimits: []keys.RateLimit{{Topic: "#", Interval: 3600, Max: 1}}})
	a := dialRPC(t, srv, "/", http.Header{"Authorization": {anonymous}})
	for range 3 {
		a.publish("r/a", "no subject, no limit")
	}
}

// ---------------------------------------------------------------- malformed

// Group D: malformed frames get JSON-RPC errors (or, for notifications,
// nothing at all) and the connection stays open.
func TestRPCMalformedInput(t *testing.T) {
	srv := startServer(t, nil)
	c := dialRPC(t, srv, "/", nil)
	deep := strings.Repeat("[", 10001) + strings.Repeat("]", 10001)
	batch := func(n int) string {
		calls := make([]string, n)
		for i := range calls {
			calls[i] = fmt.Sprintf(`{"jsonrpc":"2.0","id":%d,"method":"ping"}`, i)
		}
		return "[" + strings.Join(calls, ",") + "]"
	}
	const invalidReq = `{"error":{"code":-32600,"data":"Invalid request","message":"Invalid request"},"id":null,"jsonrpc":"2.0"}`
	const parseErr = `{"error":{"code":-32700,"data":"Parse error","message":"Parse error"},"id":null,"jsonrpc":"2.0"}`
	cases := []struct {
		name, frame string
		want        string // "" = no response frame at all
		code        int    // checked instead of want when want is "*"
	}{
		{name: "D1 broken JSON", frame: `{"jsonrpc":"2.0","method":"foobar, "params":"bar"`, want: parseErr},
		{name: "D1 not JSON", frame: `hello`, want: parseErr},
		{name: "D2 method not a string", frame: `{"jsonrpc":"2.0","method":1}`, want: invalidReq},
		{name: "D2 no jsonrpc", frame: `{"method":"ping"}`, want: invalidReq},
		{name: "D2 wrong version", frame: `{"jsonrpc":"1.0","id":null,"method":"ping"}`, want: invalidReq},
		{name: "D2 id object", frame: `{"jsonrpc":"2.0","id":{},"method":"ping"}`, want: invalidReq},
		{name: "D2 id boolean", frame: `{"jsonrpc":"2.0","id":true,"method":"ping"}`, want: invalidReq},
		{name: "params a string", frame: `{"jsonrpc":"2.0","id":3,"method":"ping","params":"x"}`, want: "*", code: -32600},
		{name: "not an object", frame: `42`, want: invalidReq},
		{name: "D3 empty batch", frame: `[]`, want: invalidReq},
		{name: "D3 batch of non-requests", frame: `[1,2,3]`, want: "[" + invalidReq + "," + invalidReq + "," + invalidReq + "]"},
		{name: "D3 batch over the cap", frame: batch(101),
			want: `{"error":{"code":-32600,"data":"Batch larger than 100 requests","message":"Invalid request"},"id":null,"jsonrpc":"2.0"}`},
		{name: "D4 unknown method", frame: `{"jsonrpc":"2.0","id":5,"method":"nope"}`,
			want: `{"error":{"code":-32601,"message":"Method not found"},"id":5,"jsonrpc":"2.0"}`},
		{name: "D4 wrong param type", frame: `{"jsonrpc":"2.0","id":6,"method":"subscribe","params":{"topic":["a"]}}`, want: "*", code: -32602},
		{name: "D5 notification", frame: `{"jsonrpc":"2.0","method":"ping"}`},
		{name: "D5 notification unknown method", frame: `{"jsonrpc":"2.0","method":"nope"}`},
		{name: "D5 batch of notifications", frame: `[{"jsonrpc":"2.0","method":"ping"},{"jsonrpc":"2.0","method":"nope"}]`},
		{name: "D6 deep nesting", frame: deep, want: parseErr},
		{name: "D6 deep params", frame: `{"jsonrpc":"2.0","id":1,"method":"ping","params":` + deep + `}`, want: parseErr},
		{name: "D6 huge number", frame: `{"jsonrpc":"2.0","id":7,"method":"publish","params":{"topic":"n","message":"m","ttl":1e400,"timestamp":-1e400}}`, want: "*"},
		{name: "D7 case-variant key", frame: `{"jsonrpc":"2.0","id":8,"method":"ping","Method":"publish"}`, want: "*", code: -32600},
		{name: "D7 duplicate key", frame: `{"jsonrpc":"2.0","id":9,"method":"ping","method":"publish"}`, want: "*", code: -32600},
		{name: "batch mixes", frame: `[{"jsonrpc":"2.0","id":1,"method":"PING"},{"jsonrpc":"2.0","method":"ping"},{"jsonrpc":"2.0","id":2,"method":"nope"}]`, want: "*"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			c.t = t
			c.send(tc.frame)
			switch tc.want {
			case "":
			case "*":
				f := c.next()
				if tc.code != 0 {
					require.NotNil(t, f.Error, "%s", f.raw)
					require.Equal(t, tc.code, f.Error.Code, "%s", f.raw)
				} else {
					require.True(t, json.Valid(f.raw), "%s", f.raw)
				}
			default:
				require.JSONEq(t, tc.want, string(c.next().raw))
			}
			c.quiet()
		})
	}
	c.t = t

	// A batch answers in one array frame, notifications left out.
	c.send(`[{"jsonrpc":"2.0","id":1,"method":"ping"},{"jsonrpc":"2.0","method":"ping"},{"jsonrpc":"2.0","id":"b","method":"list"}]`)
	var arr []rpcFrame
	require.NoError(t, json.Unmarshal(c.next().raw, &arr))
	require.Len(t, arr, 2)
	require.Equal(t, "1", string(arr[0].ID))
	require.Equal(t, `"b"`, string(arr[1].ID))
	require.JSONEq(t, `[]`, string(arr[1].Result))

	// Binary frames are ignored, as Eventhub does.
	require.NoError(t, c.ws.WriteMessage(websocket.BinaryMessage, []byte(`{"jsonrpc":"2.0","id":1,"method":"ping"}`)))
	c.quiet()
}

// C6: a message over the read limit closes with 1009; a message within it
// arrives whole however it was fragmented.
func TestRPCFrameLimits(t *testing.T) {
	srv := startServer(t, func(c *broker.Config) { c.Limits.MaxPacketSize = 4096 })

	// Gorilla fragments a message larger than its write buffer.
	d := websocket.Dialer{HandshakeTimeout: opTimeout, WriteBufferSize: 512}
	ws, resp, err := d.Dial(rpcURL(srv, "/"), nil)
	require.NoError(t, err)
	_ = resp.Body.Close()
	t.Cleanup(func() { _ = ws.Close() })
	c := &rpcClient{t: t, ws: ws}
	msg := strings.Repeat("x", 3000)
	c.subscribe("1", map[string]any{"topic": "big"})
	c.publish("big", msg)
	require.Equal(t, msg, c.push("1").Message)

	c.send(`{"jsonrpc":"2.0","id":1,"method":"ping","params":{"pad":"` + strings.Repeat("y", 5000) + `"}}`)
	c.expectClose(websocket.CloseMessageTooBig)
	waitFor(t, opTimeout, func() bool { return srv.Counters().Connections == 0 && srv.Counters().Subscriptions == 0 })
}

// D8: a flood from one socket is answered with rate-limit errors instead of
// being run, and the socket and other clients keep working.
func TestRPCRequestFlood(t *testing.T) {
	srv := startServer(t, nil)
	require.Equal(t, 1000, broker.DefaultConfig().JSONRPC.RequestRate)
	flood := dialRPC(t, srv, "/", nil)
	other := dialRPC(t, srv, "/", nil)
	calls := make([]string, 100)
	for i := range calls {
		calls[i] = fmt.Sprintf(`{"jsonrpc":"2.0","id":%d,"method":"ping"}`, i)
	}
	frame := "[" + strings.Join(calls, ",") + "]"
	const frames = 50 // 5000 calls, well past the 2000 burst
	for range frames {
		flood.send(frame)
	}
	limited := 0
	for range frames {
		var arr []rpcFrame
		require.NoError(t, json.Unmarshal(flood.next().raw, &arr))
		require.Len(t, arr, 100)
		for _, f := range arr {
			if f.Error != nil {
				require.Equal(t, -32000, f.Error.Code)
				require.Equal(t, "Rate limit exceeded", f.Error.Message)
				limited++
			}
		}
	}
	require.Positive(t, limited, "a flood past the burst must be limited")
	other.result("ping", nil)
	// The limiter refills: the flooding socket is served again.
	waitFor(t, opTimeout, func() bool { return flood.call("ping", nil).Error == nil })
}

// FuzzRPCFrame sends arbitrary text frames: every answer is JSON, and the
// connection stays open and in step (the sentinel ping is answered next).
func FuzzRPCFrame(f *testing.F) {
	for _, seed := range []string{
		`{"jsonrpc":"2.0","id":1,"method":"ping"}`,
		`{"jsonrpc":"2.0","id":"a","method":"subscribe","params":{"topic":"f/#","since":-1000,"limit":5}}`,
		`{"jsonrpc":"2.0","id":2,"method":"publish","params":{"topic":"f/a","message":"m","ttl":5,"timestamp":1}}`,
		`{"jsonrpc":"2.0","id":3,"method":"eventlog","params":{"topic":"f/a","sinceEventId":"1-0"}}`,
		`{"jsonrpc":"2.0","id":4,"method":"set","params":{"key":"k","value":"v","ttl":1}}`,
		`{"jsonrpc":"2.0","id":5,"method":"unsubscribe","params":["f/#",1,null]}`,
		`[{"jsonrpc":"2.0","id":6,"method":"list"},{"jsonrpc":"2.0","method":"unsubscribeAll"}]`,
		`{"jsonrpc":"2.0","method":"foobar, "params":"bar"`,
		`[[[[[]]]]]`, `[]`, `null`, `"x"`, ``,
	} {
		f.Add(seed)
	}
	srv := startServer(f, func(c *broker.Config) { c.Limits.MaxPacketSize = 64 << 10 })
	c := dialRPC(f, srv, "/", nil)
	f.Fuzz(func(t *testing.T, frame string) {
		if mentionsDisconnect(frame) || len(frame) > 32<<10 {
			t.Skip("ends the connection by design")
		}
		c.t = t
		c.backlog = nil
		c.send(frame)
		c.request(`"fuzz-sentinel"`, "ping", nil)
		for {
			fr := c.readWire()
			require.True(t, json.Valid(fr.raw), "answer is not JSON: %q", fr.raw)
			if string(fr.ID) == `"fuzz-sentinel"` {
				return
			}
		}
	})
}

// mentionsDisconnect reports whether frame may call disconnect, spelt
// directly or with JSON escapes.
func mentionsDisconnect(frame string) bool {
	if strings.Contains(strings.ToLower(frame), "disconnect") {
		return true
	}
	var walk func(v any) bool
	walk = func(v any) bool {
		switch v := v.(type) {
		case string:
			return strings.Contains(strings.ToLower(v), "disconnect")
		case []any:
			for _, e := range v {
				if walk(e) {
					return true
				}
			}
		case map[string]any:
			for k, e := range v {
				if walk(k) || walk(e) {
					return true
				}
			}
		}
		return false
	}
	var v any
	return json.Unmarshal([]byte(frame), &v) == nil && walk(v)
}

// ---------------------------------------------------------------- flow

// The unmodified clients' view (checklist 4-6, 12-14): ack shape, pushes
// that reuse the subscribe id once per matching subscription, ids echoed as
// sent, method names in any case, list, unsubscribe, ping, disconnect.
func TestRPCSubscribePublish(t *testing.T) {
	srv := startServer(t, nil)
	sub := dialRPC(t, srv, "/any/path?x=1", nil) // the path is not checked
	pub := dialRPC(t, srv, "//", nil)            // the JS client's "<url>//?auth="

	sub.subscribe("7", map[string]any{"topic": "chat/+"})
	sub.subscribe(`"s2"`, map[string]any{"topic": "chat/room1"})
	sub.subscribe("0", map[string]any{"topic": "chat/#"}) // '#' matches the parent level
	// A second subscribe to the same string answers again but keeps the
	// first id for pushes.
	sub.subscribe("99", map[string]any{"topic": "chat/+"})

	res := pub.result("publish", map[string]any{"topic": "chat/room1", "message": "hello"})
	var r struct{ Action, ID, Status, Topic string }
	require.NoError(t, json.Unmarshal(res, &r))
	require.Regexp(t, msgIDPattern, r.ID)
	require.JSONEq(t, fmt.Sprintf(`{"action":"publish","id":%q,"status":"ok","topic":"chat/room1"}`, r.ID), string(res))

	for _, id := range []string{"7", `"s2"`, "0"} {
		f := sub.frameFor(id)
		// No origin without auth: the key is not parsed (§4).
		require.JSONEq(t, fmt.Sprintf(`{"id":%s,"jsonrpc":"2.0","result":{"id":%q,"message":"hello","topic":"chat/room1"}}`, id, r.ID), string(f.raw))
	}
	pub.publish("chat", "parent")
	require.Equal(t, "chat", sub.push("0").Topic)
	sub.quiet()

	var list []string
	require.NoError(t, json.Unmarshal(sub.result("LIST", []any{}), &list))
	require.ElementsMatch(t, []string{"chat/+", "chat/room1", "chat/#"}, list)
	require.JSONEq(t, `{"unsubscribe_count":1}`, string(sub.result("unsubscribe", []any{"chat/room1", 5, "nope"})))
	require.JSONEq(t, `{"unsubscribe_count":2}`, string(sub.result("UnsubscribeAll", map[string]any{})))
	require.NoError(t, json.Unmarshal(sub.result("list", nil), &list))
	require.Empty(t, list)
	pub.publish("chat/room1", "nobody listens")
	sub.quiet()
	require.Zero(t, srv.Counters().Subscriptions)

	before := time.Now().UnixMilli()
	var pong struct{ Pong int64 }
	require.NoError(t, json.Unmarshal(sub.result("Ping", []any{}), &pong))
	require.GreaterOrEqual(t, pong.Pong, before)
	require.LessOrEqual(t, pong.Pong, time.Now().UnixMilli())

	// disconnect: no response, a close frame, subscriptions gone.
	sub.subscribe("1", map[string]any{"topic": "bye"})
	sub.request("2", "disconnect", nil)
	sub.expectClose(websocket.CloseNormalClosure)
	waitFor(t, opTimeout, func() bool { return srv.Counters().Connections == 1 && srv.Counters().Subscriptions == 0 })
}

// Checklist 14: a client close frame ends the session and its subscriptions.
func TestRPCClientClose(t *testing.T) {
	srv := startServer(t, nil)
	c := dialRPC(t, srv, "/", nil)
	c.subscribe("1", map[string]any{"topic": "a/#"})
	require.NoError(t, c.ws.WriteControl(websocket.CloseMessage,
		websocket.FormatCloseMessage(websocket.CloseNormalClosure, ""), time.Now().Add(opTimeout)))
	c.expectClose(websocket.CloseNormalClosure)
	waitFor(t, opTimeout, func() bool { return srv.Counters().Connections == 0 && srv.Counters().Subscriptions == 0 })
}

// ---------------------------------------------------------------- history

// Checklist 10 and 11: replay since a time or after an id, capped, oldest
// first, each as a push after the ack; eventlog returns the same items.
func TestRPCHistory(t *testing.T) {
	srv := startServer(t, func(c *broker.Config) { c.Storage.MaxRequestLimit = 4 })
	pub := dialRPC(t, srv, "/", nil)
	var ids []string
	for i := range 5 {
		ids = append(ids, pub.publish("h/t", fmt.Sprint("m", i)))
	}
	pub.publish("h/other", "x")

	replay := func(params map[string]any) []string {
		t.Helper()
		c := dialRPC(t, srv, "/", nil)
		c.subscribe("1", params) // the ack comes first
		// History is queued while subscribe runs, so it all precedes the
		// answer to the next request.
		c.request(`"end"`, "ping", nil)
		var got []string
		for {
			f := c.next()
			if string(f.ID) == `"end"` {
				return got
			}
			require.Equal(t, "1", string(f.ID), "%s", f.raw)
			var p rpcPush
			require.NoError(t, json.Unmarshal(f.Result, &p))
			require.Equal(t, "h/t", p.Topic)
			got = append(got, p.ID)
		}
	}
	// The cap (storage.max_request_limit = 4) keeps the newest.
	require.Equal(t, ids[1:], replay(map[string]any{"topic": "h/t", "since": -60000}))
	require.Equal(t, ids[3:], replay(map[string]any{"topic": "h/t", "since": -60000, "limit": 2}))
	require.Equal(t, ids[1:], replay(map[string]any{"topic": "h/t", "since": time.Now().Add(-time.Minute).UnixMilli(), "limit": 100}))
	require.Equal(t, ids[1:], replay(map[string]any{"topic": "h/t", "since": -60000, "limit": -1}))
	require.Empty(t, replay(map[string]any{"topic": "h/t", "since": -60000, "limit": 0}))
	require.Equal(t, ids[3:], replay(map[string]any{"topic": "h/t", "sinceEventId": ids[2]}))
	// An unknown id replays nothing rather than everything (§5).
	require.Empty(t, replay(map[string]any{"topic": "h/t", "sinceEventId": "1-0"}))
	require.Empty(t, replay(map[string]any{"topic": "h/t", "sinceEventId": "garbage"}))
	require.Empty(t, replay(map[string]any{"topic": "h/t"}))

	var log struct {
		Action, Status, Topic string
		Items                 []rpcPush
	}
	require.NoError(t, json.Unmarshal(pub.result("eventlog", map[string]any{"topic": "h/t", "sinceEventId": ids[1], "limit": 2}), &log))
	require.Equal(t, "eventlog", log.Action)
	require.Equal(t, "ok", log.Status)
	require.Equal(t, "h/t", log.Topic)
	require.Len(t, log.Items, 2)
	require.Equal(t, ids[3], log.Items[0].ID)
	require.Equal(t, "m3", log.Items[0].Message)
	require.Nil(t, log.Items[0].Origin)

	raw := pub.result("eventlog", map[string]any{"topic": "h/+", "since": -60000, "limit": 0})
	require.JSONEq(t, `{"action":"eventlog","items":[],"status":"ok","topic":"h/+"}`, string(raw))
}

// Publish parameters ttl and timestamp (§2.2): timestamp sets the id's and
// the history's time, ttl how long the message is kept.
func TestRPCPublishTTLAndTimestamp(t *testing.T) {
	srv := startServer(t, nil)
	c := dialRPC(t, srv, "/", nil)
	past := time.Now().Add(-10 * time.Minute).UnixMilli()
	oldID := c.publish("ts/t", "old", "timestamp", past)
	require.True(t, strings.HasPrefix(oldID, strconv.FormatInt(past, 10)+"-"), oldID)
	again := c.publish("ts/t", "old too", "timestamp", past)
	require.NotEqual(t, oldID, again, "ids stay unique within a timestamp")
	newID := c.publish("ts/t", "new", "ttl", 3600)

	items := func(since int64) []string {
		var log struct{ Items []rpcPush }
		require.NoError(t, json.Unmarshal(c.result("eventlog", map[string]any{"topic": "ts/t", "since": since}), &log))
		var got []string
		for _, it := range log.Items {
			got = append(got, it.ID)
		}
		return got
	}
	require.Equal(t, []string{newID}, items(-5*60*1000))
	require.Equal(t, []string{oldID, again, newID}, items(past-1000))

	ctx, cancel := context.WithTimeout(context.Background(), opTimeout)
	defer cancel()
	msgs, err := srv.Store().Query(ctx, store.Query{Filter: "ts/t"})
	require.NoError(t, err)
	require.Len(t, msgs, 3)
	hour := time.Until(msgs[2].Expires)
	require.InDelta(t, time.Hour.Seconds(), hour.Seconds(), 60, "ttl 3600")
	def := time.Until(msgs[0].Expires)
	require.InDelta(t, time.Minute.Seconds(), def.Seconds(), 30, "storage.default_ttl")
}

// ---------------------------------------------------------------- KV

// Checklist 15, and persistence across a restart with the disk provider.
func TestRPCKeyValue(t *testing.T) {
	dir := t.TempDir()
	configure := func(c *broker.Config) {
		c.DataDir = dir
		c.Storage.Provider = "disk"
		c.Storage.Sync = "always"
	}
	srv := startServer(t, configure)
	c := dialRPC(t, srv, "/", nil)
	require.JSONEq(t, `{"action":"set","key":"cfg/a","success":true}`, string(c.result("set", map[string]any{"key": "cfg/a", "value": "1"})))
	require.JSONEq(t, `{"action":"set","key":"cfg/b","success":true}`, string(c.result("SET", map[string]any{"key": "cfg/b", "value": "2", "ttl": 3600})))
	require.JSONEq(t, `{"action":"get","key":"cfg/a","value":"1"}`, string(c.result("get", map[string]any{"key": "cfg/a"})))
	require.JSONEq(t, `{"action":"del","key":"cfg/b","success":true}`, string(c.result("del", map[string]any{"key": "cfg/b"})))
	require.JSONEq(t, `{"action":"del","key":"cfg/b","success":false}`, string(c.result("del", map[string]any{"key": "cfg/b"})))
	require.Equal(t, "KVStore: key not found", c.callError("get", map[string]any{"key": "cfg/b"}).dataText())
	require.Equal(t, -32602, c.callError("set", map[string]any{"key": "cfg/c", "value": 5}).Code)
	require.Equal(t, -32602, c.callError("get", map[string]any{}).Code)
	require.NoError(t, srv.Close())

	again := startServer(t, configure)
	c = dialRPC(t, again, "/", nil)
	require.JSONEq(t, `{"action":"get","key":"cfg/a","value":"1"}`, string(c.result("get", map[string]any{"key": "cfg/a"})))
}

// ---------------------------------------------------------------- auth

// Checklist 2-3 and DESIGN §5: the key comes from Authorization (raw or
// Bearer) or the auth query; a missing or bad one is HTTP 401 before the
// upgrade.
func TestRPCAuthentication(t *testing.T) {
	srv := startServer(t, func(c *broker.Config) { c.NoAuth = false })
	good := signKey(t, srv, keys.Claims{Subject: "carol", Read: []string{"#"}, Write: []string{"#"}})
	expired := signKey(t, srv, keys.Claims{Read: []string{"#"}, ExpiresAt: jwtDate(time.Now().Add(-time.Hour))})
	notYet := signKey(t, srv, keys.Claims{Read: []string{"#"}, NotBefore: jwtDate(time.Now().Add(time.Hour))})
	refused := []struct {
		name, path string
		header     http.Header
		want       string
	}{
		{"no token", "/", nil, "No authentication token was given."},
		{"auth=undefined", "/?auth=undefined", nil, "No authentication token was given."},
		{"garbage", "/?auth=garbage", nil, "Authentication failed."},
		{"flipped signature", "/", http.Header{"Authorization": {good[:len(good)-2] + "xx"}}, "Authentication failed."},
		{"expired", "/?auth=" + expired, nil, "Authentication failed."},
		{"not yet valid", "/", http.Header{"Authorization": {"Bearer " + notYet}}, "Authentication failed."},
	}
	for _, tc := range refused {
		t.Run(tc.name, func(t *testing.T) {
			code, body := dialRPCRefused(t, srv, tc.path, tc.header)
			require.Equal(t, http.StatusUnauthorized, code)
			require.Equal(t, tc.want, body)
		})
	}
	require.Zero(t, srv.Counters().Connections)

	accepted := []struct {
		name, path string
		header     http.Header
	}{
		{"raw header", "/", http.Header{"Authorization": {good}}},
		{"bearer header", "/", http.Header{"Authorization": {"Bearer " + good}}},
		{"auth query", "/?auth=" + url.QueryEscape(good), nil},
		{"header wins over query", "/?auth=garbage", http.Header{"Authorization": {good}}},
	}
	for _, tc := range accepted {
		t.Run(tc.name, func(t *testing.T) {
			c := dialRPC(t, srv, tc.path, tc.header)
			c.subscribe("1", map[string]any{"topic": "who"})
			c.publish("who", "me")
			p := c.push("1")
			require.NotNil(t, p.Origin)
			require.Equal(t, "carol", *p.Origin)
		})
	}

	// With auth off any token is ignored: accepted, and no origin.
	open := startServer(t, nil)
	for _, q := range []string{"/", "/?auth=", "/?auth=undefined", "/?auth=garbage"} {
		c := dialRPC(t, open, q, nil)
		c.subscribe("1", map[string]any{"topic": "o"})
		c.publish("o", "x")
		require.Nil(t, c.push("1").Origin)
	}
}

func jwtDate(t time.Time) *jwt.NumericDate { return jwt.NewNumericDate(t) }

// E8: a revoked key ends its JSON-RPC connection with close code 1008.
func TestRPCRevokedKeyCloses(t *testing.T) {
	srv := startServer(t, func(c *broker.Config) { c.NoAuth = false })
	key := signKey(t, srv, keys.Claims{Read: []string{"#"}, ID: "rpc-revoke-me"})
	c := dialRPC(t, srv, "/", http.Header{"Authorization": {key}})
	c.subscribe("1", map[string]any{"topic": "r"})
	require.NoError(t, srv.Revoke("rpc-revoke-me", time.Now().Add(time.Hour)))
	c.expectClose(websocket.ClosePolicyViolation)
	waitFor(t, opTimeout, func() bool { return srv.Counters().Connections == 0 && srv.Counters().Subscriptions == 0 })
}

// H5: JSON-RPC and SSE clients count against limits.max_connections with
// MQTT's; past it the upgrade or stream is refused with 503.
func TestRPCMaxConnections(t *testing.T) {
	srv := startServer(t, func(c *broker.Config) { c.Limits.MaxConnections = 1 })
	first := dialRPC(t, srv, "/", nil)
	code, body := dialRPCRefused(t, srv, "/", nil)
	require.Equal(t, http.StatusServiceUnavailable, code)
	require.Equal(t, "Too many connections (limits.max_connections).", body)
	resp, err := http.DefaultClient.Do(sseRequest(t, srv, "/x", nil))
	require.NoError(t, err)
	_ = resp.Body.Close()
	require.Equal(t, http.StatusServiceUnavailable, resp.StatusCode)

	require.NoError(t, first.ws.Close())
	waitFor(t, opTimeout, func() bool { return srv.Counters().Connections == 0 })
	dialRPC(t, srv, "/", nil).result("ping", nil)
}

// ---------------------------------------------------------------- timers

// jsonrpc.ping_interval: idle sockets get ping frames from the node-wide
// ticker; client pings are answered with pongs (checklist 13).
func TestRPCKeepalivePings(t *testing.T) {
	srv := startServer(t, func(c *broker.Config) { c.JSONRPC.PingInterval = broker.Duration(20 * time.Millisecond) })
	c := dialRPC(t, srv, "/", nil)
	var pings, pongs atomic.Int32
	c.ws.SetPingHandler(func(string) error { pings.Add(1); return nil })
	c.ws.SetPongHandler(func(string) error { pongs.Add(1); return nil })
	require.NoError(t, c.ws.WriteControl(websocket.PingMessage, []byte("hi"), time.Now().Add(opTimeout)))
	done := make(chan struct{})
	go func() {
		defer close(done)
		for {
			// Control frames are handled while reading.
			if _, _, err := c.ws.ReadMessage(); err != nil {
				return
			}
		}
	}()
	waitFor(t, opTimeout, func() bool { return pings.Load() >= 3 && pongs.Load() >= 1 })
	_ = c.ws.Close()
	<-done
}

// C10 and jsonrpc.handshake_timeout: a request head that never completes
// is dropped.
func TestRPCHandshakeTimeout(t *testing.T) {
	srv := startServer(t, func(c *broker.Config) { c.JSONRPC.HandshakeTimeout = broker.Duration(200 * time.Millisecond) })
	nc, err := net.DialTimeout("tcp", srv.Addr().String(), opTimeout)
	require.NoError(t, err)
	defer nc.Close()
	_, err = nc.Write([]byte("GET / HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\n"))
	require.NoError(t, err)
	start := time.Now()
	require.NoError(t, nc.SetReadDeadline(time.Now().Add(opTimeout)))
	_, err = io.Copy(io.Discard, nc)
	var ne net.Error
	require.False(t, errors.As(err, &ne) && ne.Timeout(), "connection still open after %v", opTimeout)
	require.Less(t, time.Since(start), 3*time.Second)
}

// ---------------------------------------------------------------- one space

// One topic space (issue 5 #8): MQTT publishes reach JSON-RPC and SSE
// subscribers; JSON-RPC and HTTP publishes reach MQTT subscribers.
func TestOneTopicSpace(t *testing.T) {
	srv := startServer(t, nil)
	mq, in := connectWithInbox(t, srv, transportTCP, "mqtt-sub")
	subscribe(t, mq, "space/#", 1)
	rpc := dialRPC(t, srv, "/", nil)
	rpc.subscribe("1", map[string]any{"topic": "space/+"})
	sse := openSSE(t, srv, "/space/%23", nil)

	publish(t, mq, "space/mqtt", 1, false, []byte("from mqtt"))
	p := rpc.push("1")
	require.Equal(t, "space/mqtt", p.Topic)
	require.Equal(t, "from mqtt", p.Message)
	require.Regexp(t, msgIDPattern, p.ID)
	ev := sse.nextEvent()
	require.Equal(t, "from mqtt", ev.Data)
	require.Equal(t, p.ID, ev.ID, "one id per message across protocols")

	id := rpc.publish("space/rpc", "from json-rpc")
	got := in.waitMessage(t, "space/rpc", "from json-rpc")
	require.Equal(t, byte(1), got.QoS)
	require.Equal(t, id, sse.nextEvent().ID)
	require.Equal(t, id, rpc.push("1").ID, "a JSON-RPC publisher hears itself, as in Eventhub")

	res := postPublish(t, srv, "", `{"topic":"space/http","message":"from http","qos":1}`)
	require.Equal(t, http.StatusOK, res.code, res.body)
	in.waitMessage(t, "space/http", "from http")
	require.Equal(t, "from http", rpc.push("1").Message)
	require.Equal(t, "from http", sse.nextEvent().Data)
}

// Pushes carry any payload as a valid JSON string: quotes, backslashes and
// control characters escaped, invalid UTF-8 as U+FFFD (as encoding/json
// does), other characters as they are; the origin likewise.
func TestRPCPushEscaping(t *testing.T) {
	srv := startServer(t, func(c *broker.Config) { c.NoAuth = false })
	all := keys.Claims{Read: []string{"#"}, Write: []string{"#"}}
	reader := dialRPC(t, srv, "/", http.Header{"Authorization": {signKey(t, srv, all)}})
	reader.subscribe("1", map[string]any{"topic": "esc/#"})
	odd := all
	odd.Subject = "a\"b\\c\x01\u2028ü"
	mq, _ := connectPaho(t, pahoOptions(srv, transportTCP, "escaper").SetPassword(signKey(t, srv, odd)).SetUsername("u"))
	payload := []byte("\"\\\x00\x1f\n\r\t<>&\u2028ü\xff\xfe✓")
	publish(t, mq, "esc/t", 0, false, payload)
	f := reader.frameFor("1")
	require.True(t, json.Valid(f.raw), "%q", f.raw)
	var p rpcPush
	require.NoError(t, json.Unmarshal(f.Result, &p))
	require.Equal(t, "\"\\\x00\x1f\n\r\t<>&\u2028ü\uFFFD\uFFFD✓", p.Message)
	require.Equal(t, "esc/t", p.Topic)
	require.NotNil(t, p.Origin)
	require.Equal(t, odd.Subject, *p.Origin)
}

// ---------------------------------------------------------------- config

// Eventhub's environment names, in either case (eventhub.md §8).
func TestEventhubEnvironment(t *testing.T) {
	env := map[string]string{
		"PING_INTERVAL":           "10",
		"handshake_timeout":       "7",
		"MAX_CACHE_REQUEST_LIMIT": "50",
		"default_cache_ttl":       "120",
		"ENABLE_SSE":              "FALSE",
		"enable_kvstore":          "0",
		"ENABLE_CACHE":            "false",
	}
	c := broker.DefaultConfig()
	require.True(t, c.JSONRPC.EnableSSE && c.JSONRPC.EnableKVStore && c.JSONRPC.EnableCache, "on by default")
	require.NoError(t, broker.ApplyEnv(&c, func(k string) (string, bool) { v, ok := env[k]; return v, ok }))
	require.Equal(t, broker.Duration(10*time.Second), c.JSONRPC.PingInterval)
	require.Equal(t, broker.Duration(7*time.Second), c.JSONRPC.HandshakeTimeout)
	require.Equal(t, 50, c.Storage.MaxRequestLimit)
	require.Equal(t, broker.Duration(2*time.Minute), c.Storage.DefaultTTL)
	require.False(t, c.JSONRPC.EnableSSE)
	require.False(t, c.JSONRPC.EnableKVStore)
	require.False(t, c.JSONRPC.EnableCache)
	require.NoError(t, c.Validate())

	// PUBSUB_ names win over Eventhub's.
	env = map[string]string{"PING_INTERVAL": "10", "PUBSUB_JSONRPC_PING_INTERVAL": "3s"}
	c = broker.DefaultConfig()
	require.NoError(t, broker.ApplyEnv(&c, func(k string) (string, bool) { v, ok := env[k]; return v, ok }))
	require.Equal(t, broker.Duration(3*time.Second), c.JSONRPC.PingInterval)

	bad := []struct{ name, value, key string }{
		{"ENABLE_SSE", "maybe", "jsonrpc.enable_sse"},
		{"PING_INTERVAL", "often", "jsonrpc.ping_interval"},
	}
	for _, tc := range bad {
		c = broker.DefaultConfig()
		err := broker.ApplyEnv(&c, func(k string) (string, bool) {
			if k == tc.name {
				return tc.value, true
			}
			return "", false
		})
		var ce *broker.ConfigError
		require.ErrorAs(t, err, &ce, tc.name)
		require.Equal(t, tc.key, ce.Key)
	}
	c = broker.DefaultConfig()
	c.JSONRPC.HandshakeTimeout = 0
	var ce *broker.ConfigError
	require.ErrorAs(t, c.Validate(), &ce)
	require.Equal(t, "jsonrpc.handshake_timeout", ce.Key)
}

// ---------------------------------------------------------------- bench

// BenchmarkRPCPublish is one JSON-RPC publish round trip (request to
// response) with one JSON-RPC subscriber receiving each message.
func BenchmarkRPCPublish(b *testing.B) {
	srv := startServer(b, func(c *broker.Config) {
		c.JSONRPC.EnableCache = false
		c.JSONRPC.RequestRate = 0 // measure the node, not the D8 limiter
	})
	sub := dialRPC(b, srv, "/", nil)
	sub.subscribe("1", map[string]any{"topic": "bench/rpc"})
	var received atomic.Int64
	done := make(chan struct{})
	go func() {
		defer close(done)
		for {
			if _, _, err := sub.ws.ReadMessage(); err != nil {
				return
			}
			received.Add(1)
		}
	}()
	pub := dialRPC(b, srv, "/", nil)
	frame := []byte(`{"jsonrpc":"2.0","id":1,"method":"publish","params":{"topic":"bench/rpc","message":"0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef"}}`)
	b.ReportAllocs()
	b.ResetTimer()
	for range b.N {
		if err := pub.ws.WriteMessage(websocket.TextMessage, frame); err != nil {
			b.Fatal(err)
		}
		if _, _, err := pub.ws.ReadMessage(); err != nil {
			b.Fatal(err)
		}
	}
	waitFor(b, time.Minute, func() bool { return received.Load() >= int64(b.N) })
	b.StopTimer()
	_ = sub.ws.Close()
	<-done
}
