// Package jsonrpc is the JSON-RPC 2.0 envelope of pubsub's Eventhub-
// compatible WebSocket protocol (../shared/protocols/eventhub.md §2): it
// parses one text frame into requests, refusing what the spec and
// reliability-cases.md group D call invalid, and encodes results and errors
// in the exact shapes Eventhub's clients read. It knows nothing of topics or
// sessions; package broker dispatches the methods.
package jsonrpc

import (
	"bytes"
	"encoding/json"
	"errors"
	"io"
	"strings"
)

// Error codes [JSON-RPC 2.0 §5.1].
const (
	CodeParseError     = -32700
	CodeInvalidRequest = -32600
	CodeMethodNotFound = -32601
	CodeInvalidParams  = -32602
	// CodeRateLimited is pubsub's: too many requests on one connection (D8).
	CodeRateLimited = -32000
)

// MaxBatch is the largest batch executed; a larger one is refused whole,
// with nothing executed (D3). Eventhub clients never batch.
const MaxBatch = 100

// Error is a JSON-RPC error object. Data is omitted when nil.
type Error struct {
	Code    int    `json:"code"`
	Data    any    `json:"data,omitempty"`
	Message string `json:"message"`
}

func (e *Error) Error() string { return e.Message }

// Errors with Eventhub's texts (eventhub.md §2.1).
var (
	ErrParse          = &Error{Code: CodeParseError, Message: "Parse error", Data: "Parse error"}
	ErrInvalidRequest = &Error{Code: CodeInvalidRequest, Message: "Invalid request", Data: "Invalid request"}
	ErrMethodNotFound = &Error{Code: CodeMethodNotFound, Message: "Method not found"}
	ErrBatchTooLarge  = &Error{Code: CodeInvalidRequest, Message: "Invalid request", Data: "Batch larger than 100 requests"}
	ErrRateLimited    = &Error{Code: CodeRateLimited, Message: "Rate limit exceeded", Data: "Too many requests on this connection; slow down"}
)

// InvalidParams is Eventhub's application error: code -32602, message
// "Invalid params", data the human-readable reason.
func InvalidParams(reason string) *Error {
	return &Error{Code: CodeInvalidParams, Message: "Invalid params", Data: reason}
}

// Request is one call. ID is the id token exactly as sent (integer, string
// or null), echoed verbatim in the response; Notification is set when the
// request had no id and so gets no response [JSON-RPC 2.0 §4.1].
type Request struct {
	ID           json.RawMessage
	Method       string // lower-cased: methods match case-insensitively
	Params       json.RawMessage
	Notification bool
}

// Call is one element of a frame: a request, or the error it earned.
type Call struct {
	Request
	Err *Error
}

// Null is the id of responses to requests whose id could not be read.
var Null = json.RawMessage("null")

// Parse reads one text frame: a request object, or a batch (array) of them.
// batch reports whether the frame was an array, so the responses go back as
// an array [JSON-RPC 2.0 §6]. A frame that is not JSON yields one ErrParse
// call; an empty or oversized batch yields one ErrInvalidRequest call.
func Parse(frame []byte) (calls []Call, batch bool) {
	frame = bytes.TrimSpace(frame)
	if len(frame) > 0 && frame[0] == '[' {
		var elems []json.RawMessage
		if err := json.Unmarshal(frame, &elems); err != nil {
			return []Call{{Request: Request{ID: Null}, Err: ErrParse}}, false
		}
		if len(elems) == 0 {
			return []Call{{Request: Request{ID: Null}, Err: ErrInvalidRequest}}, false
		}
		if len(elems) > MaxBatch {
			return []Call{{Request: Request{ID: Null}, Err: ErrBatchTooLarge}}, false
		}
		calls = make([]Call, len(elems))
		for i, e := range elems {
			calls[i] = parseOne(e)
		}
		return calls, true
	}
	if !json.Valid(frame) {
		return []Call{{Request: Request{ID: Null}, Err: ErrParse}}, false
	}
	return []Call{parseOne(frame)}, false
}

// parseOne validates one request object [JSON-RPC 2.0 §4]: "jsonrpc" must be
// "2.0", "method" a non-empty string, "id" (if present) a number, string or
// null, "params" (if present) an object or array. Keys are matched exactly:
// a duplicate key or a case variant of a member name ("Method") is refused,
// because encoding/json would otherwise fold them silently (D7).
func parseOne(raw json.RawMessage) Call {
	bad := Call{Request: Request{ID: Null}, Err: ErrInvalidRequest}
	dec := json.NewDecoder(bytes.NewReader(raw))
	dec.UseNumber()
	tok, err := dec.Token()
	if err != nil || tok != json.Delim('{') {
		return bad
	}
	var (
		req               Request
		version, method   json.RawMessage
		hasID             bool
		seen              = map[string]bool{}
		haveVer, haveMeth bool
	)
	for dec.More() {
		tok, err := dec.Token()
		if err != nil {
			return bad
		}
		key, _ := tok.(string)
		var val json.RawMessage
		if err := dec.Decode(&val); err != nil {
			return bad
		}
		lower := strings.ToLower(key)
		if seen[lower] {
			return bad
		}
		seen[lower] = true
		switch key {
		case "jsonrpc":
			version, haveVer = val, true
		case "method":
			method, haveMeth = val, true
		case "id":
			req.ID, hasID = val, true
		case "params":
			req.Params = val
		default:
			if lower == "jsonrpc" || lower == "method" || lower == "id" || lower == "params" {
				return bad
			}
		}
	}
	if _, err := dec.Token(); err != nil {
		return bad
	}
	if _, err := dec.Token(); !errors.Is(err, io.EOF) {
		return bad
	}
	if hasID {
		switch req.ID[0] {
		case '"', 'n':
		default:
			if req.ID[0] != '-' && (req.ID[0] < '0' || req.ID[0] > '9') {
				return bad // objects, arrays, booleans
			}
		}
		bad.ID = req.ID
	} else {
		req.Notification = true
	}
	var v, m string
	if !haveVer || json.Unmarshal(version, &v) != nil || v != "2.0" {
		return bad
	}
	if !haveMeth || json.Unmarshal(method, &m) != nil || m == "" {
		return bad
	}
	if len(req.Params) > 0 && req.Params[0] != '{' && req.Params[0] != '[' && string(req.Params) != "null" {
		return bad
	}
	req.Method = strings.ToLower(m)
	if !hasID {
		req.ID = nil
	}
	return Call{Request: req}
}

// response is the envelope; keys are emitted in Eventhub's (alphabetical)
// order: error/id/jsonrpc/result.
type response struct {
	Error   *Error          `json:"error,omitempty"`
	ID      json.RawMessage `json:"id"`
	JSONRPC string          `json:"jsonrpc"`
	Result  any             `json:"result,omitempty"`
}

// AppendResult appends a success response to dst.
func AppendResult(dst []byte, id json.RawMessage, result any) ([]byte, error) {
	if result == nil {
		result = json.RawMessage("null")
	}
	b, err := json.Marshal(response{ID: orNull(id), JSONRPC: "2.0", Result: result})
	if err != nil {
		return dst, err
	}
	return append(dst, b...), nil
}

// AppendError appends an error response to dst.
func AppendError(dst []byte, id json.RawMessage, e *Error) []byte {
	b, err := json.Marshal(response{Error: e, ID: orNull(id), JSONRPC: "2.0"})
	if err != nil {
		// Data is always a string or nil here; marshal cannot fail.
		b, _ = json.Marshal(response{Error: ErrInvalidRequest, ID: Null, JSONRPC: "2.0"})
	}
	return append(dst, b...)
}

func orNull(id json.RawMessage) json.RawMessage {
	if len(id) == 0 {
		return Null
	}
	return id
}
