package jsonrpc

import (
	"encoding/json"
	"strings"
	"testing"
)

func TestParseValid(t *testing.T) {
	cases := []struct {
		frame, method, id, params string
		notification              bool
	}{
		{`{"jsonrpc":"2.0","method":"subscribe","params":{"topic":"a/b"},"id":1}`, "subscribe", "1", `{"topic":"a/b"}`, false},
		{`{"jsonrpc":"2.0","method":"SUBSCRIBE","params":{"topic":"a"},"id":0}`, "subscribe", "0", `{"topic":"a"}`, false},
		{`{"jsonrpc":"2.0","method":"unsubscribeAll","params":[],"id":"x-1"}`, "unsubscribeall", `"x-1"`, `[]`, false},
		{`{"id":null,"method":"ping","jsonrpc":"2.0"}`, "ping", "null", "", false},
		{`{"jsonrpc":"2.0","method":"ping"}`, "ping", "", "", true},
		{` {"jsonrpc":"2.0","method":"list","id":12345678901234} `, "list", "12345678901234", "", false},
	}
	for _, tc := range cases {
		calls, batch := Parse([]byte(tc.frame))
		if batch || len(calls) != 1 || calls[0].Err != nil {
			t.Fatalf("%s: %+v", tc.frame, calls)
		}
		c := calls[0]
		if c.Method != tc.method || string(c.ID) != tc.id || string(c.Params) != tc.params || c.Notification != tc.notification {
			t.Errorf("%s: got method=%q id=%q params=%q notif=%v", tc.frame, c.Method, c.ID, c.Params, c.Notification)
		}
	}
}

// TestParseInvalid covers group D of reliability-cases.md (D1-D3, D6, D7).
func TestParseInvalid(t *testing.T) {
	deep := strings.Repeat("[", 10001) + strings.Repeat("]", 10001)
	cases := []struct {
		name, frame string
		code        int
		id          string
	}{
		{"D1 broken JSON", `{"jsonrpc":"2.0","method":"foobar, "params":"bar"`, CodeParseError, "null"},
		{"D2 method not string", `{"jsonrpc":"2.0","method":1,"id":3}`, CodeInvalidRequest, "3"},
		{"D2 missing jsonrpc", `{"method":"ping","id":1}`, CodeInvalidRequest, "1"},
		{"D2 wrong version", `{"jsonrpc":"1.0","method":"ping","id":1}`, CodeInvalidRequest, "1"},
		{"D2 id object", `{"jsonrpc":"2.0","method":"ping","id":{"a":1}}`, CodeInvalidRequest, "null"},
		{"id bool", `{"jsonrpc":"2.0","method":"ping","id":true}`, CodeInvalidRequest, "null"},
		{"empty method", `{"jsonrpc":"2.0","method":"","id":1}`, CodeInvalidRequest, "1"},
		{"params string", `{"jsonrpc":"2.0","method":"ping","params":"bar","id":1}`, CodeInvalidRequest, "1"},
		{"not an object", `"ping"`, CodeInvalidRequest, "null"},
		{"number", `42`, CodeInvalidRequest, "null"},
		{"D3 empty batch", `[]`, CodeInvalidRequest, "null"},
		{"D6 deep nesting", deep, CodeParseError, "null"},
		{"D7 case variant", `{"jsonrpc":"2.0","method":"publish","Method":"admin.x","id":1}`, CodeInvalidRequest, "null"},
		{"D7 duplicate", `{"jsonrpc":"2.0","method":"publish","method":"ping","id":1}`, CodeInvalidRequest, "null"},
		{"trailing garbage", `{"jsonrpc":"2.0","method":"ping","id":1} {}`, CodeParseError, "null"},
		{"empty frame", ``, CodeParseError, "null"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			calls, _ := Parse([]byte(tc.frame))
			if len(calls) != 1 || calls[0].Err == nil {
				t.Fatalf("want one error, got %+v", calls)
			}
			if calls[0].Err.Code != tc.code || string(orNull(calls[0].ID)) != tc.id {
				t.Fatalf("code %d id %s, want %d %s", calls[0].Err.Code, calls[0].ID, tc.code, tc.id)
			}
		})
	}
}

func TestBatches(t *testing.T) {
	calls, batch := Parse([]byte(`[1,2,3]`))
	if !batch || len(calls) != 3 {
		t.Fatalf("[1,2,3]: %v %+v", batch, calls)
	}
	for _, c := range calls {
		if c.Err == nil || c.Err.Code != CodeInvalidRequest {
			t.Errorf("element: %+v", c)
		}
	}
	calls, batch = Parse([]byte(`[{"jsonrpc":"2.0","method":"ping","id":1},{"jsonrpc":"2.0","method":"list"}]`))
	if !batch || len(calls) != 2 || calls[0].Err != nil || !calls[1].Notification {
		t.Fatalf("mixed batch: %+v", calls)
	}
	big := "[" + strings.TrimSuffix(strings.Repeat(`{"jsonrpc":"2.0","method":"ping","id":1},`, 10000), ",") + "]"
	calls, batch = Parse([]byte(big))
	if batch || len(calls) != 1 || calls[0].Err != ErrBatchTooLarge {
		t.Fatalf("10,000 batch must be refused whole: batch=%v n=%d", batch, len(calls))
	}
}

// TestResponseShapes pins the exact bytes Eventhub clients receive.
func TestResponseShapes(t *testing.T) {
	b, err := AppendResult(nil, json.RawMessage("1"), map[string]any{"action": "subscribe", "status": "ok", "topic": "a/b"})
	if err != nil {
		t.Fatal(err)
	}
	if got := string(b); got != `{"id":1,"jsonrpc":"2.0","result":{"action":"subscribe","status":"ok","topic":"a/b"}}` {
		t.Errorf("result: %s", got)
	}
	if got := string(AppendError(nil, nil, ErrInvalidRequest)); got != `{"error":{"code":-32600,"data":"Invalid request","message":"Invalid request"},"id":null,"jsonrpc":"2.0"}` {
		t.Errorf("invalid request: %s", got)
	}
	if got := string(AppendError(nil, json.RawMessage(`"q"`), ErrMethodNotFound)); got != `{"error":{"code":-32601,"message":"Method not found"},"id":"q","jsonrpc":"2.0"}` {
		t.Errorf("method not found: %s", got)
	}
	if got := string(AppendError(nil, json.RawMessage("7"), InvalidParams("You must specify 'topic' to subscribe to."))); got != `{"error":{"code":-32602,"data":"You must specify 'topic' to subscribe to.","message":"Invalid params"},"id":7,"jsonrpc":"2.0"}` {
		t.Errorf("invalid params: %s", got)
	}
	// A result of false or 0 must still be present.
	b, _ = AppendResult(nil, json.RawMessage("2"), false)
	if string(b) != `{"id":2,"jsonrpc":"2.0","result":false}` {
		t.Errorf("false result: %s", b)
	}
}

func FuzzParse(f *testing.F) {
	for _, s := range []string{
		`{"jsonrpc":"2.0","method":"subscribe","params":{"topic":"a/b"},"id":1}`,
		`[{"jsonrpc":"2.0","method":"ping","id":1},1]`,
		`{"jsonrpc":"2.0","method":"foobar, "params":"bar"`,
		`{"jsonrpc":"2.0","method":"publish","Method":"x","id":{}}`,
		`[[[[[]]]]]`, `1e400`, `{"id":-0.5e3,"jsonrpc":"2.0","method":"x"}`,
	} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, frame []byte) {
		calls, batch := Parse(frame)
		if len(calls) == 0 {
			t.Fatal("no calls")
		}
		if !batch && len(calls) != 1 {
			t.Fatal("several calls without a batch")
		}
		for _, c := range calls {
			if c.Err != nil {
				out := AppendError(nil, c.ID, c.Err)
				if !json.Valid(out) {
					t.Fatalf("invalid error JSON %s", out)
				}
				continue
			}
			if c.Method == "" {
				t.Fatal("accepted an empty method")
			}
			if !c.Notification && !json.Valid(c.ID) {
				t.Fatalf("bad id %q", c.ID)
			}
			out, err := AppendResult(nil, c.ID, json.RawMessage(`{"ok":true}`))
			if err != nil || !json.Valid(out) {
				t.Fatalf("result JSON %s %v", out, err)
			}
		}
	})
}
