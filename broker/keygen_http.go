package broker

import (
	_ "embed"
	"encoding/json"
	"errors"
	"fmt"
	"html/template"
	"io"
	"mime"
	"net/http"
	"strconv"
	"strings"
	"time"
	"unicode"
	"unicode/utf8"

	"github.com/pubsub/pubsub/broker/topic"
	"github.com/pubsub/pubsub/keys"
)

// The /keygen page (DESIGN §3, emitter.md §1 "GET/POST /keygen"): a form
// that mints a channel key from a master key or the node's secret, as
// Emitter's keygen page does. It is one self-contained HTML document with
// inline CSS and no script, so it works with JavaScript off and under a
// Content-Security-Policy that forbids everything but its own styles and
// form posts. POST takes the form fields, or a JSON object when the request
// says Content-Type: application/json, and answers in kind. The minting
// itself is mintChannelKey, shared with the MQTT request emitter/keygen/.

//go:embed assets/keygen.html
var keygenPageSource string

// keygenPage is parsed once at start; the asset is part of the binary, so a
// parse failure is a build defect that TestKeygenPage catches, not input.
var keygenPage = template.Must(template.New("keygen").Parse(keygenPageSource))

const (
	// maxKeygenBody caps a POST body before it is parsed: the form holds a
	// key (at most keys.MaxTokenLen), a channel and a few filters.
	maxKeygenBody = 16 << 10

	// keygenCSP lets the page use its inline styles and post its form to
	// this origin, and nothing else: no script, frame, image or font.
	keygenCSP = "default-src 'none'; style-src 'unsafe-inline'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'"

	// maxKeygenSubject bounds the subject label a key may carry.
	maxKeygenSubject = 256
)

// permFields maps the form's checkbox names to permission letters: the
// letters themselves and Emitter's field names (emitter.md §1).
var permFields = []struct{ letter, emitter string }{
	{"r", "sub"}, {"w", "pub"}, {"s", "store"}, {"l", "load"}, {"p", "presence"}, {"e", "extend"},
}

// keygenView is what the page template shows. It echoes the form back
// after a POST so a mistake is easy to fix, but never the key or secret.
type keygenView struct {
	Channel, Read, Write, TTL, Subject string
	R, W, S, L, P, E                   bool
	Error                              string
	Result                             *keygenResult
}

// keygenResult describes a freshly minted key, for the page and for JSON.
type keygenResult struct {
	Key     string   `json:"key"`
	Channel string   `json:"channel,omitempty"`
	Subject string   `json:"sub,omitempty"`
	Read    []string `json:"read,omitempty"`
	Write   []string `json:"write,omitempty"`
	Perm    string   `json:"perm"`
	Expires string   `json:"-"`
	ExpUnix int64    `json:"exp,omitempty"`
	ID      string   `json:"jti,omitempty"`
}

// keygenJSON is the JSON form of a /keygen POST: emitter/keygen/'s fields,
// with the permission letters under Emitter's "type" or pubsub's "perm".
type keygenJSON struct {
	keygenRequest
	Perm string `json:"perm"`
}

// keygenError is a refusal with the HTTP status to answer it with.
type keygenError struct {
	status int
	msg    string
}

func (e *keygenError) Error() string { return e.msg }

func badKeygen(format string, args ...any) *keygenError {
	return &keygenError{status: http.StatusBadRequest, msg: fmt.Sprintf(format, args...)}
}

// serveKeygen is the /keygen handler.
func (s *Server) serveKeygen(w http.ResponseWriter, r *http.Request) {
	h := w.Header()
	h.Set("Content-Security-Policy", keygenCSP)
	h.Set("X-Frame-Options", "DENY")
	// The response may hold a fresh key: keep it out of every cache.
	h.Set("Cache-Control", "no-store")
	h.Set("X-Content-Type-Options", "nosniff")
	h.Set("Referrer-Policy", "no-referrer")
	switch r.Method {
	case http.MethodGet, http.MethodHead:
		s.renderKeygen(w, http.StatusOK, keygenView{TTL: "0", R: true, W: true})
	case http.MethodPost:
		s.postKeygen(w, r)
	default:
		h.Set("Allow", "GET, HEAD, POST")
		http.Error(w, "use GET for the form and POST to mint a key", http.StatusMethodNotAllowed)
	}
}

// postKeygen reads a form or JSON request, mints the key and answers in the
// request's format.
func (s *Server) postKeygen(w http.ResponseWriter, r *http.Request) {
	r.Body = http.MaxBytesReader(w, r.Body, maxKeygenBody)
	mediaType, _, err := mime.ParseMediaType(r.Header.Get("Content-Type"))
	if err != nil && r.Header.Get("Content-Type") != "" {
		http.Error(w, "unreadable Content-Type", http.StatusUnsupportedMediaType)
		return
	}
	switch mediaType {
	case "application/json":
		req, kerr := readKeygenJSON(r.Body)
		if kerr == nil {
			var res *keygenResult
			res, kerr = s.keygenFor(r, req)
			if kerr == nil {
				writeKeygenJSON(w, http.StatusOK, struct {
					Status int `json:"status"`
					*keygenResult
				}{http.StatusOK, res})
				return
			}
		}
		writeKeygenJSON(w, kerr.status, map[string]any{"status": kerr.status, "message": kerr.msg})
	case "", "application/x-www-form-urlencoded":
		view, req, kerr := readKeygenForm(r)
		if kerr == nil {
			view.Result, kerr = s.keygenFor(r, req)
		}
		status := http.StatusOK
		if kerr != nil {
			status, view.Error = kerr.status, kerr.msg
		}
		s.renderKeygen(w, status, view)
	default:
		http.Error(w, "send the form (application/x-www-form-urlencoded) or JSON (application/json)", http.StatusUnsupportedMediaType)
	}
}

// readKeygenJSON decodes a JSON request strictly: an unknown field is most
// likely a misspelt one, and minting a key other than the one meant is worse
// than refusing.
func readKeygenJSON(body io.Reader) (keygenRequest, *keygenError) {
	var in keygenJSON
	dec := json.NewDecoder(body)
	dec.DisallowUnknownFields()
	if err := dec.Decode(&in); err != nil {
		return keygenRequest{}, bodyError(err, "the body is not a keygen JSON object: %v", err)
	}
	if _, err := dec.Token(); !errors.Is(err, io.EOF) {
		return keygenRequest{}, badKeygen("the body holds more than one JSON value")
	}
	req := in.keygenRequest
	req.Type += in.Perm
	if err := checkPermLetters(req.Type); err != nil {
		return keygenRequest{}, err
	}
	return req, checkKeygenRequest(req)
}

// readKeygenForm reads the posted form (the body only: a key in the URL
// would end up in proxy and browser histories) into a request and the view
// that echoes it.
func readKeygenForm(r *http.Request) (keygenView, keygenRequest, *keygenError) {
	var view keygenView
	if err := r.ParseForm(); err != nil {
		return view, keygenRequest{}, bodyError(err, "the form could not be read")
	}
	f := r.PostForm
	view.Channel, view.Read, view.Write = f.Get("channel"), f.Get("read"), f.Get("write")
	// The subject is "subject" in the form: Emitter's page uses "sub" for
	// the subscribe checkbox.
	view.TTL, view.Subject = f.Get("ttl"), f.Get("subject")
	req := keygenRequest{
		Key:     strings.TrimSpace(f.Get("key")),
		Channel: strings.TrimSpace(view.Channel),
		Sub:     view.Subject,
		Read:    splitFilters(view.Read),
		Write:   splitFilters(view.Write),
	}
	letters := f.Get("type") + f.Get("perm")
	for _, p := range permFields {
		if checked(f.Get(p.letter)) || checked(f.Get(p.emitter)) {
			letters += p.letter
		}
	}
	req.Type = letters
	view.R, view.W, view.S = strings.Contains(letters, "r"), strings.Contains(letters, "w"), strings.Contains(letters, "s")
	view.L, view.P, view.E = strings.Contains(letters, "l"), strings.Contains(letters, "p"), strings.Contains(letters, "e")
	if err := checkPermLetters(letters); err != nil {
		return view, req, err
	}
	if ttl := strings.TrimSpace(view.TTL); ttl != "" {
		n, err := strconv.ParseInt(ttl, 10, 64)
		if err != nil {
			return view, req, badTTL()
		}
		req.TTL = n
	}
	return view, req, checkKeygenRequest(req)
}

// checkKeygenRequest refuses what mintChannelKey would refuse too, but with
// a message that names the field, because a person reads this one.
func checkKeygenRequest(req keygenRequest) *keygenError {
	if req.TTL < 0 || req.TTL > maxKeygenTTL {
		return badTTL()
	}
	if len(req.Sub) > maxKeygenSubject || !utf8.ValidString(req.Sub) || strings.ContainsFunc(req.Sub, unicode.IsControl) {
		return badKeygen("the subject must be printable UTF-8 of at most %d bytes", maxKeygenSubject)
	}
	for _, list := range []struct {
		name    string
		filters []string
	}{{"read", req.Read}, {"write", req.Write}} {
		for _, f := range list.filters {
			if topic.ValidateFilter(f) != nil {
				return badKeygen("%s filter %q is not a valid MQTT topic filter", list.name, f)
			}
		}
	}
	if req.Channel != "" {
		if _, err := keys.ChannelFilter(req.Channel); err != nil {
			return badKeygen("channel %q: %s", req.Channel, msgBadTarget)
		}
	} else if len(req.Read) == 0 && len(req.Write) == 0 {
		return badKeygen("give a channel such as chat/room1/, or read and write filters")
	}
	return nil
}

func badTTL() *keygenError {
	return badKeygen("ttl must be a whole number of seconds from 0 (never expires) to %d", maxKeygenTTL)
}

// keygenFor authorises req and mints its key.
func (s *Server) keygenFor(r *http.Request, req keygenRequest) (*keygenResult, *keygenError) {
	parent, err := s.keygenAuthority(req.Key)
	if err != nil {
		// The reason is a keys sentinel; neither it nor anything logged
		// here contains the key or secret.
		s.log.Debug("keygen refused", "via", "http", "remote", r.RemoteAddr, "reason", err)
		return nil, &keygenError{status: http.StatusUnauthorized, msg: "the key or secret is not valid on this node"}
	}
	key, channel, status, msg := s.mintChannelKey(parent, req, "")
	if status != http.StatusOK {
		return nil, &keygenError{status: status, msg: msg}
	}
	cl, err := s.keyring.Verify(key)
	if err != nil {
		s.log.Error("a minted key does not verify", "reason", err)
		return nil, &keygenError{status: http.StatusInternalServerError, msg: "the key could not be minted"}
	}
	res := &keygenResult{
		Key: key, Channel: channel, Subject: cl.Subject, Read: cl.Read, Write: cl.Write,
		Perm: cl.Perm, ID: cl.ID, Expires: "never",
	}
	if cl.ExpiresAt != nil {
		res.ExpUnix = cl.ExpiresAt.Unix()
		res.Expires = cl.ExpiresAt.UTC().Format(time.RFC3339)
	}
	s.log.Info("key minted", "via", "http", "remote", r.RemoteAddr, "jti", cl.ID, "channel", channel, "perm", cl.Perm)
	return res, nil
}

// keygenAuthority resolves the form's key field to the claims that
// authorise minting: a channel key (master, or extend), or the node's
// secret, which is worth a master key as on Emitter's page.
func (s *Server) keygenAuthority(text string) (*keys.Claims, error) {
	if text == "" {
		return nil, errors.New("no key or secret given")
	}
	if looksLikeKey(text) {
		cl, err := s.keyring.Verify(text)
		if !errors.Is(err, keys.ErrMalformed) {
			return cl, err
		}
		// A raw Eventhub secret can have a token's shape; try it as one.
	}
	return s.secretAuthority(text)
}

// secretAuthority checks that text is one of the node's active secrets
// without the keyring exposing them: it signs a short-lived master probe
// with text and asks the node's keyring to verify it. The keyring picks the
// secret by the probe's kid and compares the HMAC with hmac.Equal, so the
// check is constant-time in the secret, and a wrong secret fails exactly as
// a forged token would.
func (s *Server) secretAuthority(text string) (*keys.Claims, error) {
	secret, err := keys.ParseSecret(text)
	if err != nil {
		return nil, err
	}
	probe, err := keys.NewKeyring(keys.KeyringOptions{AllowShortSecret: true}, secret)
	if err != nil {
		return nil, err
	}
	token, err := probe.Sign(keys.Claims{Perm: keys.PermMaster.String(), ExpiresAt: jwtTime(time.Now().Add(time.Minute))})
	if err != nil {
		return nil, err
	}
	cl, err := s.keyring.Verify(token)
	if err != nil {
		return nil, err
	}
	cl.ExpiresAt = nil // the probe's lifetime is not the secret's
	return cl, nil
}

// renderKeygen writes the page with status.
func (s *Server) renderKeygen(w http.ResponseWriter, status int, view keygenView) {
	var page strings.Builder
	if err := keygenPage.Execute(&page, view); err != nil {
		s.log.Error("keygen page", "err", err)
		http.Error(w, "the page could not be rendered", http.StatusInternalServerError)
		return
	}
	w.Header().Set("Content-Type", "text/html; charset=utf-8")
	w.WriteHeader(status)
	_, _ = io.WriteString(w, page.String())
}

func writeKeygenJSON(w http.ResponseWriter, status int, body any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	_ = json.NewEncoder(w).Encode(body)
}

// bodyError turns a body read error into 413 when the cap was hit, 400
// otherwise.
func bodyError(err error, format string, args ...any) *keygenError {
	var tooBig *http.MaxBytesError
	if errors.As(err, &tooBig) {
		return &keygenError{status: http.StatusRequestEntityTooLarge, msg: fmt.Sprintf("the request body is larger than %d bytes", maxKeygenBody)}
	}
	return badKeygen(format, args...)
}

// checkPermLetters refuses letters other than rwslpe (and Emitter's unused
// 'x') with a message that says which are allowed.
func checkPermLetters(letters string) *keygenError {
	if strings.Contains(letters, "m") {
		return badKeygen("a master key cannot be minted here: use 'pubsub keygen' with the secret")
	}
	if _, err := keys.ParsePerm(strings.ReplaceAll(letters, "x", "")); err != nil {
		return badKeygen("permissions are letters from rwslpe; %q is not", letters)
	}
	return nil
}

// checked reads a checkbox: browsers send "on" for a ticked box and nothing
// for a clear one; Emitter's page also sends "off".
func checked(v string) bool {
	switch strings.ToLower(strings.TrimSpace(v)) {
	case "", "off", "0", "false", "no":
		return false
	}
	return true
}

// splitFilters reads a textarea of filters, one a line. Surrounding blanks
// are trimmed: a filter with a leading or trailing space is valid MQTT but
// in a form it is a typing accident.
func splitFilters(text string) []string {
	var out []string
	for line := range strings.Lines(text) {
		if f := strings.TrimSpace(line); f != "" {
			out = append(out, f)
		}
	}
	return out
}
