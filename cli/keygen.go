package cli

import (
	"bytes"
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"time"

	"github.com/golang-jwt/jwt/v5"
	"github.com/spf13/cobra"
	"github.com/spf13/pflag"

	"github.com/pubsub/pubsub/client"
	"github.com/pubsub/pubsub/keys"
)

// `pubsub keygen` mints, inspects and revokes channel keys (DESIGN §5).
// Offline it signs with the node's secret; online it asks a node through
// Emitter's request API (emitter.md §3), emitter/keygen/ and
// emitter/keyban/, with a master key. Only the key goes to stdout, so
// `KEY=$(pubsub keygen ...)` captures it.

// maxSecretFileLen bounds the read of DATA_DIR/secret, as the node does.
const maxSecretFileLen = 8 << 10

// secretSource says where offline commands find the node's secret. The
// environment is read at run time, never as a flag default, so that
// `--help` cannot print a secret.
type secretSource struct {
	secret  string // --secret, else PUBSUB_SECRET
	dataDir string // --data-dir, else PUBSUB_DATA_DIR
}

func (o *secretSource) addFlags(fs *pflag.FlagSet) {
	fs.StringVar(&o.secret, "secret", "", "the node's secret, to work offline (env PUBSUB_SECRET)")
	fs.StringVar(&o.dataDir, "data-dir", "", "a node's data directory: read its secret (never created here) and revocation list (env PUBSUB_DATA_DIR)")
}

// offlineKeyring is a keyring over the node's secret, and over its
// revocation list when it came from a data directory.
type offlineKeyring struct {
	ring *keys.Keyring
	// from says where the secret came from, for messages.
	from string
	// revocationsChecked: the data dir's revocation list is loaded.
	revocationsChecked bool
}

// resolve picks the secret, first match wins: --secret, --data-dir, then
// (unless --server was given, which asks for a node) PUBSUB_SECRET and
// PUBSUB_DATA_DIR. It returns nil when there is none, which means the
// command should ask a node. Explicit offline and online flags together
// are a usage error: which one was meant is a guess.
func (o secretSource) resolve(streams Streams, serverSet, withRevocations bool) (*offlineKeyring, error) {
	if o.secret != "" && o.dataDir != "" {
		return nil, usageError("give --secret or --data-dir, not both")
	}
	if (o.secret != "" || o.dataDir != "") && serverSet {
		return nil, usageError("--secret and --data-dir work offline, --server asks a node: give one or the other")
	}
	text, textFrom, dir := o.secret, "--secret", o.dataDir
	if text == "" && dir == "" && !serverSet {
		if text = streams.getenv("PUBSUB_SECRET"); text != "" {
			textFrom = "PUBSUB_SECRET"
		} else {
			dir = streams.getenv("PUBSUB_DATA_DIR")
		}
	}
	var (
		sec  keys.Secret
		from string
		err  error
		rev  *keys.Revocations
	)
	switch {
	case text != "":
		if sec, err = keys.ParseSecret(text); err != nil {
			return nil, usageError("%s: %v", textFrom, err)
		}
		from = textFrom
	case dir != "":
		if sec, err = readSecretFile(dir); err != nil {
			return nil, err
		}
		from = filepath.Join(dir, keys.SecretFileName)
		if withRevocations {
			if rev, err = openRevocations(dir); err != nil {
				return nil, err
			}
		}
	default:
		return nil, nil
	}
	// A short raw secret is an Eventhub JWT_SECRET kept for migration; the
	// node accepts it as keys.eventhub_secret, so keys signed with it work.
	ring, err := keys.NewKeyring(keys.KeyringOptions{Leeway: keys.MaxLeeway, AllowShortSecret: true, Revocations: rev}, sec)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", from, err)
	}
	if len(ring.ShortSecretIDs()) > 0 {
		fmt.Fprintf(streams.ErrOut, "pubsub: warning: the secret from %s is shorter than %d bytes; accepted only to migrate from Eventhub (make a strong one with 'pubsub keygen secret')\n", from, keys.MinSecretLen)
	}
	return &offlineKeyring{ring: ring, from: from, revocationsChecked: rev != nil}, nil
}

// readSecretFile reads DATA_DIR/secret the way the node does (a trailing
// newline and a UTF-8 BOM ignored; group- or world-accessible files
// refused) but, unlike keys.LoadOrCreateSecretFile, never creates one: a
// key signed with a secret no node knows would be useless.
func readSecretFile(dir string) (keys.Secret, error) {
	path := filepath.Join(dir, keys.SecretFileName)
	f, err := os.Open(path)
	if errors.Is(err, os.ErrNotExist) {
		return keys.Secret{}, fmt.Errorf("no secret in %s: start a node with --data-dir %s first, or give the secret the node uses with --secret", dir, dir)
	}
	if err != nil {
		return keys.Secret{}, fmt.Errorf("read secret: %w", err)
	}
	defer f.Close()
	info, err := f.Stat()
	if err != nil {
		return keys.Secret{}, fmt.Errorf("read secret: %w", err)
	}
	if !info.Mode().IsRegular() {
		return keys.Secret{}, fmt.Errorf("%s is not a regular file", path)
	}
	if runtime.GOOS != "windows" && info.Mode().Perm()&0o077 != 0 {
		return keys.Secret{}, fmt.Errorf("%s is accessible by group or others (mode %04o); run chmod 600 on it", path, info.Mode().Perm())
	}
	data, err := io.ReadAll(io.LimitReader(f, maxSecretFileLen+1))
	if err != nil {
		return keys.Secret{}, fmt.Errorf("read secret: %w", err)
	}
	if len(data) > maxSecretFileLen {
		return keys.Secret{}, fmt.Errorf("%s is larger than %d bytes: not a secret file", path, maxSecretFileLen)
	}
	data = bytes.TrimPrefix(data, []byte("\ufeff"))
	data = bytes.TrimRight(data, "\r\n")
	if len(data) == 0 {
		return keys.Secret{}, fmt.Errorf("%s is empty", path)
	}
	sec, err := keys.ParseSecret(string(data))
	if err != nil {
		return keys.Secret{}, fmt.Errorf("%s: %w", path, err)
	}
	return sec, nil
}

// openRevocations loads DATA_DIR/revoked.json when it exists. A node writes
// it on its first start, so a data dir without one has nothing revoked;
// keys.OpenRevocations would create it, which is no business of a reader.
func openRevocations(dir string) (*keys.Revocations, error) {
	path := filepath.Join(dir, keys.RevocationsFileName)
	if _, err := os.Stat(path); errors.Is(err, os.ErrNotExist) {
		return nil, nil
	}
	rev, err := keys.OpenRevocations(path)
	if err != nil {
		return nil, fmt.Errorf("revocation list: %w", err)
	}
	return rev, nil
}

// keyHeader is the part of a token's JOSE header that inspect shows.
type keyHeader struct {
	Alg string `json:"alg"`
	Kid string `json:"kid,omitempty"`
}

// decodeKey reads a token's header and claims WITHOUT checking the
// signature: for showing them, and for choosing how to talk to a node.
// Never authorise anything on its result.
func decodeKey(token string) (keys.Claims, keyHeader, error) {
	var (
		c keys.Claims
		h keyHeader
	)
	// The same cap the node applies before decoding (CVE-2025-30204).
	if len(token) > keys.MaxTokenLen {
		return c, h, fmt.Errorf("not a channel key: longer than %d bytes", keys.MaxTokenLen)
	}
	parts := strings.Split(token, ".")
	if len(parts) != 3 {
		return c, h, errors.New("not a channel key: want three base64url parts joined by '.'")
	}
	if err := decodeSegment(parts[0], &h); err != nil {
		return c, h, fmt.Errorf("not a channel key: header: %w", err)
	}
	if err := decodeSegment(parts[1], &c); err != nil {
		return c, h, fmt.Errorf("not a channel key: claims: %w", err)
	}
	c.KeyID = h.Kid
	return c, h, nil
}

func decodeSegment(seg string, v any) error {
	raw, err := base64.RawURLEncoding.DecodeString(seg)
	if err != nil {
		return errors.New("not base64url")
	}
	if err := json.Unmarshal(raw, v); err != nil {
		return errors.New("not a JSON object of the expected shape")
	}
	return nil
}

// keyReport is the --json output of keygen and keygen inspect.
type keyReport struct {
	Key     string `json:"key,omitempty"`
	Channel string `json:"channel,omitempty"`
	// Status is inspect's verdict (see keyStatus).
	Status string `json:"status,omitempty"`
	Detail string `json:"detail,omitempty"`
	// SignatureChecked: Status comes from a secret or a node, not only
	// from reading the claims.
	SignatureChecked *bool       `json:"signature_checked,omitempty"`
	Alg              string      `json:"alg,omitempty"`
	KeyID            string      `json:"kid,omitempty"`
	Claims           keys.Claims `json:"claims"`
}

func writeJSON(w io.Writer, v any) error {
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	return enc.Encode(v)
}

// addKeyClientFlags adds the shared client flags for talking to a node
// with a master key. The flag's default must not show PUBSUB_KEY: --help
// would print a master key to the terminal (or a CI log). The session
// flags --id and --username mean nothing for a one-request connection.
func addKeyClientFlags(fs *pflag.FlagSet, o *clientOptions, streams Streams) {
	o.addFlags(fs, streams)
	fs.Lookup("key").DefValue = ""
	fs.Lookup("key").Usage = "master key (env PUBSUB_KEY)"
	_ = fs.MarkHidden("id")
	_ = fs.MarkHidden("username")
}

// ----- pubsub keygen -----

type keygenOptions struct {
	client    clientOptions
	source    secretSource
	serverSet bool
	channel   string
	read      []string
	write     []string
	perm      string
	permSet   bool
	ttl       time.Duration
	subject   string
	json      bool
}

func newKeygenCommand(streams Streams) *cobra.Command {
	var opts keygenOptions
	cmd := &cobra.Command{
		Use:   "keygen",
		Short: "Mint, inspect and revoke channel keys",
		Long: `Mint a channel key. Say what it is for with --channel (Emitter style: 'a/b/'
covers a/b and everything below it; 'a/#/' is that written as a wildcard) and/or
--read and --write (MQTT filters, repeatable), and what it may do with --perm:
r subscribe, w publish, s store (ttl, retain), l load history, p presence,
e extend (only derive private sub-channel keys), m master. The default is what
the filters imply: rwsl for --channel, rl for --read, ws for --write.

Offline, the key is signed with the node's secret: --secret (PUBSUB_SECRET) or
--data-dir DIR (PUBSUB_DATA_DIR), which reads DIR/secret and never creates it.
Otherwise it is minted by the node at --server with the master key --key
(Emitter's emitter/keygen/ request); an extend key there derives a private
sub-channel key, as Emitter does. Master keys (--perm m) are minted offline only.

--ttl is a Go duration; 0 means the key never expires, which only a master
key or the secret can grant (a key derived from an extend key never outlives it).

Only the key is printed, so scripts can capture it; --json adds its claims.`,
		Example: `  pubsub keygen --data-dir ./pubsub-data --channel chat/ --ttl 24h
  KEY=$(pubsub keygen --secret "$PUBSUB_SECRET" --read 'sensors/#' --sub dashboard)
  pubsub keygen -s node1:8080 -k "$MASTER" --channel chat/room1/ --perm rw
  pubsub keygen secret                  # a new secret for a new cluster
  pubsub keygen inspect "$KEY" --data-dir ./pubsub-data
  pubsub keygen revoke "$KEY" -s node1:8080 -k "$MASTER"`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			opts.serverSet = cmd.Flags().Changed("server")
			opts.permSet = cmd.Flags().Changed("perm")
			return runKeygen(cmd.Context(), opts, streams)
		},
	}
	fs := cmd.Flags()
	addKeyClientFlags(fs, &opts.client, streams)
	opts.source.addFlags(fs)
	fs.StringVar(&opts.channel, "channel", "", "Emitter-style channel the key is for: 'a/b/' or 'a/#/'")
	fs.StringArrayVar(&opts.read, "read", nil, "MQTT filter the key may subscribe to (repeatable)")
	fs.StringArrayVar(&opts.write, "write", nil, "MQTT filter the key may publish to (repeatable)")
	fs.StringVar(&opts.perm, "perm", "", "permission letters out of rwslpem (default: what the filters imply)")
	fs.DurationVar(&opts.ttl, "ttl", 0, "lifetime, e.g. 1h or 720h; 0 never expires")
	fs.StringVar(&opts.subject, "sub", "", "the key's subject: who holds it (shown as the origin of messages)")
	fs.BoolVar(&opts.json, "json", false, "print the key with its claims as JSON")
	cmd.AddCommand(
		newKeygenSecretCommand(streams),
		newKeygenInspectCommand(streams),
		newKeygenRevokeCommand(streams),
	)
	return cmd
}

// claims builds and checks the claims the flags ask for. Everything the
// keys package would refuse is refused here as a usage error, offline and
// online alike, by signing with a throwaway secret: keys' rules, one place.
func (o keygenOptions) claims(now time.Time) (keys.Claims, error) {
	if o.ttl < 0 {
		return keys.Claims{}, usageError("--ttl %s: want 0 (never expires) or a positive duration", o.ttl)
	}
	c := keys.Claims{Subject: o.subject}
	var implied keys.Perm
	if o.channel != "" {
		f, err := keys.ChannelFilter(o.channel)
		if err != nil {
			return c, usageError("--channel %q: %v", o.channel, err)
		}
		c.Read, c.Write = []string{f}, []string{f}
		implied |= keys.PermRead | keys.PermWrite | keys.PermStore | keys.PermLoad
	}
	if len(o.read) > 0 {
		c.Read = append(c.Read, o.read...)
		implied |= keys.PermRead | keys.PermLoad
	}
	if len(o.write) > 0 {
		c.Write = append(c.Write, o.write...)
		implied |= keys.PermWrite | keys.PermStore
	}
	perm := implied
	if o.permSet {
		p, err := keys.ParsePerm(o.perm)
		if err != nil {
			return c, usageError("--perm %q: %v", o.perm, err)
		}
		if p == 0 {
			return c, usageError("--perm is empty: give letters out of rwslpem")
		}
		perm = p
	}
	if perm.Has(keys.PermMaster) && len(c.Read) == 0 && len(c.Write) == 0 {
		// As the node's own master key: readable claims, same power.
		c.Read, c.Write = []string{"#"}, []string{"#"}
	}
	if len(c.Read) == 0 && len(c.Write) == 0 {
		return c, usageError("say what the key is for: --channel a/b/, or --read/--write FILTER")
	}
	c.Perm = perm.String()
	if o.ttl > 0 {
		c.ExpiresAt = jwt.NewNumericDate(now.Add(o.ttl))
	}
	if err := checkClaims(c); err != nil {
		return c, err
	}
	return c, nil
}

// checkClaims signs c with a throwaway secret to apply keys' validation.
func checkClaims(c keys.Claims) error {
	sec, err := keys.GenerateSecret()
	if err != nil {
		return err
	}
	ring, err := keys.NewKeyring(keys.KeyringOptions{}, sec)
	if err != nil {
		return err
	}
	if _, err := ring.Sign(c); err != nil {
		if errors.Is(err, keys.ErrInvalidClaims) || errors.Is(err, keys.ErrTooLarge) {
			return usageError("%v (check --read, --write and --perm)", err)
		}
		return err
	}
	return nil
}

// ttlSeconds is the request's ttl: Emitter counts whole seconds, so a
// fraction rounds up rather than to a key that never expires.
func ttlSeconds(d time.Duration) int64 {
	return int64((d + time.Second - 1) / time.Second)
}

func runKeygen(ctx context.Context, opts keygenOptions, streams Streams) error {
	claims, err := opts.claims(time.Now())
	if err != nil {
		return err
	}
	offline, err := opts.source.resolve(streams, opts.serverSet, false)
	if err != nil {
		return err
	}
	report := keyReport{Channel: opts.channel}
	if offline != nil {
		if report.Key, err = offline.ring.Sign(claims); err != nil {
			return fmt.Errorf("sign: %w", err)
		}
	} else if report.Key, report.Channel, err = mintOnline(ctx, opts, claims); err != nil {
		return err
	}
	if !opts.json {
		if report.Channel != "" && report.Channel != opts.channel {
			// An extend key got a private channel: say which, off stdout.
			fmt.Fprintf(streams.ErrOut, "private channel: %s\n", report.Channel)
		}
		_, err = fmt.Fprintln(streams.Out, report.Key)
		return err
	}
	var h keyHeader
	if report.Claims, h, err = decodeKey(report.Key); err != nil {
		return fmt.Errorf("the new key: %w", err)
	}
	report.Alg, report.KeyID = h.Alg, h.Kid
	return writeJSON(streams.Out, report)
}

// keygenRequest is Emitter's emitter/keygen/ body plus pubsub's read,
// write and sub for master keys (broker/emitterapi.go).
type keygenRequest struct {
	Key     string   `json:"key"`
	Channel string   `json:"channel,omitempty"`
	Type    string   `json:"type"`
	TTL     int64    `json:"ttl"`
	Read    []string `json:"read,omitempty"`
	Write   []string `json:"write,omitempty"`
	Sub     string   `json:"sub,omitempty"`
}

// mintOnline asks the node at --server to mint the key with --key.
func mintOnline(ctx context.Context, opts keygenOptions, claims keys.Claims) (key, channel string, err error) {
	if opts.client.key == "" {
		return "", "", usageError("no secret and no master key: mint offline with --secret or --data-dir, or through a node with --server and --key MASTER_KEY")
	}
	if claims.IsMaster() {
		return "", "", usageError("a master key (--perm m) is minted offline only, with --secret or --data-dir")
	}
	// Unverified, only to give a clear error before asking the node,
	// which checks the key itself.
	if parent, _, err := decodeKey(opts.client.key); err == nil && !parent.IsMaster() {
		switch {
		case len(opts.read) > 0 || len(opts.write) > 0 || opts.subject != "":
			return "", "", usageError("--read, --write and --sub need a master --key; an extend key derives only private sub-channel keys (--channel)")
		case opts.channel == "":
			return "", "", usageError("an extend key derives a private key for a --channel")
		}
	}
	c, err := opts.client.dial(ctx, false)
	if err != nil {
		return "", "", err
	}
	defer c.Close()
	ctx, cancel := context.WithTimeout(ctx, opts.client.timeout)
	defer cancel()
	body, err := c.Request(ctx, "keygen", keygenRequest{
		Key:     opts.client.key,
		Channel: opts.channel,
		Type:    claims.Perm,
		TTL:     ttlSeconds(opts.ttl),
		Read:    opts.read,
		Write:   opts.write,
		Sub:     opts.subject,
	})
	if err != nil {
		return "", "", refusal("mint the key", err, "--key must be a master key, or an extend key that covers --channel")
	}
	var answer struct {
		Key     string `json:"key"`
		Channel string `json:"channel"`
	}
	if err := json.Unmarshal(body, &answer); err != nil || answer.Key == "" {
		return "", "", fmt.Errorf("the node at %s answered keygen without a key", opts.client.server)
	}
	return answer.Key, answer.Channel, nil
}

// refusal words a failed request: the node's own text, plus what to check
// when it says 401.
func refusal(what string, err error, hint401 string) error {
	var apiErr *client.APIError
	if errors.As(err, &apiErr) {
		if apiErr.Status == 401 {
			return fmt.Errorf("the node refused to %s: %s (%s)", what, apiErr.Message, hint401)
		}
		return fmt.Errorf("the node refused to %s: %d %s", what, apiErr.Status, apiErr.Message)
	}
	return fmt.Errorf("%s: %w", what, err)
}

// ----- pubsub keygen secret -----

func newKeygenSecretCommand(streams Streams) *cobra.Command {
	return &cobra.Command{
		Use:   "secret",
		Short: "Print a new secret",
		Long: `Print a new random secret (32 bytes and a key id) in the form pubsub reads.
Give it to every node of a cluster as the config 'secret' or PUBSUB_SECRET, or
write it to DATA_DIR/secret with mode 0600. Anyone holding it can mint master
keys. To rotate, put the new one first and keep the old one in keys.secrets
until keys signed with it have expired.`,
		Example: `  pubsub keygen secret > pubsub-data/secret && chmod 600 pubsub-data/secret
  PUBSUB_SECRET=$(pubsub keygen secret) pubsub serve`,
		Args: cobra.NoArgs,
		RunE: func(*cobra.Command, []string) error {
			sec, err := keys.GenerateSecret()
			if err != nil {
				return err
			}
			_, err = fmt.Fprintln(streams.Out, sec.Encode())
			return err
		},
	}
}

// ----- pubsub keygen inspect -----

type inspectOptions struct {
	key       string
	source    secretSource
	server    string
	serverSet bool // --server given, not only PUBSUB_SERVER
	timeout   time.Duration
	json      bool
}

// Verdicts of inspect, the "status" of its JSON.
const (
	statusValid        = "valid"
	statusExpired      = "expired"
	statusNotYetValid  = "not_yet_valid"
	statusRevoked      = "revoked"
	statusBadSignature = "bad_signature"
	statusInvalid      = "invalid"
	statusRefused      = "refused"
	statusUnchecked    = "unchecked"
)

func newKeygenInspectCommand(streams Streams) *cobra.Command {
	var opts inspectOptions
	cmd := &cobra.Command{
		Use:   "inspect KEY",
		Short: "Show a key's claims and whether it is valid",
		Long: `Show a key's claims and whether it is valid, expired, revoked or signed with
another secret. With --secret or --data-dir the signature is checked offline
(--data-dir also reads the node's revocation list); with --server the node is
asked whether it accepts the key (a --no-auth node accepts anything). Without
either, the claims are shown with "signature not checked".

Exit codes: 0 valid or not checked, 1 not valid, 2 usage.`,
		Example: `  pubsub keygen inspect "$KEY" --data-dir ./pubsub-data
  pubsub keygen inspect "$KEY" -s node1:8080
  pubsub keygen inspect --json "$KEY" | jq .claims.exp`,
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			opts.key = strings.TrimSpace(args[0])
			if opts.serverSet = cmd.Flags().Changed("server"); !opts.serverSet {
				opts.server = streams.getenv("PUBSUB_SERVER")
			}
			return runInspect(cmd.Context(), opts, streams)
		},
	}
	fs := cmd.Flags()
	opts.source.addFlags(fs)
	fs.StringVarP(&opts.server, "server", "s", "", "ask this node whether it accepts the key (env PUBSUB_SERVER)")
	fs.DurationVar(&opts.timeout, "connect-timeout", 10*time.Second, "how long to wait for the node")
	fs.BoolVar(&opts.json, "json", false, "print the verdict and claims as JSON")
	return cmd
}

func runInspect(ctx context.Context, opts inspectOptions, streams Streams) error {
	claims, h, err := decodeKey(opts.key)
	if err != nil {
		return err
	}
	offline, err := opts.source.resolve(streams, opts.serverSet, true)
	if err != nil {
		return err
	}
	report := keyReport{Alg: h.Alg, KeyID: h.Kid, Claims: claims}
	checked := true
	now := time.Now()
	switch {
	case offline != nil:
		report.Status, report.Detail = verifyOffline(offline, opts.key, h.Kid)
	case opts.server != "":
		if report.Status, report.Detail, err = verifyOnline(ctx, opts, claims, now); err != nil {
			return err
		}
	default:
		checked = false
		report.Status, report.Detail = timeStatus(claims, now)
		if report.Status == statusValid {
			report.Status = statusUnchecked
		}
		report.Detail = joinDetail(report.Detail, "signature not checked: give --secret, --data-dir or --server to check it")
	}
	report.SignatureChecked = &checked
	if opts.json {
		err = writeJSON(streams.Out, report)
	} else {
		err = printReport(streams.Out, report, now)
	}
	if err != nil {
		return err
	}
	if report.Status != statusValid && report.Status != statusUnchecked {
		// The report is on stdout; the exit code tells scripts.
		return fmt.Errorf("the key is not valid: %s", strings.ReplaceAll(report.Status, "_", " "))
	}
	return nil
}

func joinDetail(a, b string) string {
	if a == "" {
		return b
	}
	return a + "; " + b
}

// verifyOffline checks the key with the secret, as the node would.
func verifyOffline(o *offlineKeyring, token, kid string) (status, detail string) {
	_, err := o.ring.Verify(token)
	switch {
	case err == nil:
		detail = "signed with the secret from " + o.from
		if !o.revocationsChecked {
			detail += "; revocations not checked (give --data-dir)"
		}
		return statusValid, detail
	case errors.Is(err, keys.ErrRevoked):
		return statusRevoked, "on the node's revocation list"
	case errors.Is(err, keys.ErrBadSignature):
		detail = "not signed with the secret from " + o.from
		if mine := o.ring.SigningKeyID(); kid != "" && kid != mine {
			detail += fmt.Sprintf(" (the key names secret %q, this one is %q)", kid, mine)
		}
		return statusBadSignature, detail
	case errors.Is(err, keys.ErrExpired):
		return statusExpired, ""
	case errors.Is(err, keys.ErrNotYetValid):
		return statusNotYetValid, ""
	default:
		return statusInvalid, strings.TrimPrefix(err.Error(), "keys: ")
	}
}

// verifyOnline asks the node: a CONNECT with the key as password is
// refused with "not authorized" when the node would not take it. The node
// does not say why; the key's own times tell expired from the rest.
func verifyOnline(ctx context.Context, opts inspectOptions, claims keys.Claims, now time.Time) (status, detail string, err error) {
	c, err := client.Dial(ctx, client.Options{Server: opts.server, Key: opts.key, ConnectTimeout: opts.timeout})
	var refused *client.ConnackError
	switch {
	case err == nil:
		_ = c.Close()
		return statusValid, "accepted by the node at " + opts.server, nil
	case errors.As(err, &refused) && (refused.Code == 4 || refused.Code == 5):
		if st, d := timeStatus(claims, now); st != statusValid {
			return st, joinDetail(d, "refused by the node at "+opts.server), nil
		}
		return statusRefused, "refused by the node at " + opts.server + ": revoked, or not signed with its secret", nil
	default:
		return "", "", fmt.Errorf("connect to %s: %w", opts.server, err)
	}
}

// timeStatus judges exp and nbf alone, with the node's leeway.
func timeStatus(c keys.Claims, now time.Time) (status, detail string) {
	switch {
	case c.ExpiresAt != nil && !now.Before(c.ExpiresAt.Add(keys.MaxLeeway)):
		return statusExpired, ""
	case c.NotBefore != nil && now.Add(keys.MaxLeeway).Before(c.NotBefore.Time):
		return statusNotYetValid, ""
	}
	return statusValid, ""
}

// permNames spells out permission letters for people.
var permNames = []struct {
	p    keys.Perm
	name string
}{
	{keys.PermRead, "subscribe"}, {keys.PermWrite, "publish"}, {keys.PermStore, "store"},
	{keys.PermLoad, "load history"}, {keys.PermPresence, "presence"},
	{keys.PermExtend, "extend: derive private sub-channel keys only"}, {keys.PermMaster, "master"},
}

func describePerm(c keys.Claims) string {
	p := c.Perms()
	var names []string
	for _, n := range permNames {
		if p.Has(n.p) {
			names = append(names, n.name)
		}
	}
	desc := strings.Join(names, ", ")
	switch {
	case c.Perm == "":
		return fmt.Sprintf("(none: an Eventhub key, whose read allows rl and write ws) %s", desc)
	case p == 0:
		return fmt.Sprintf("%q (unknown letters: allows nothing)", c.Perm)
	}
	return fmt.Sprintf("%s (%s)", p, desc)
}

func printReport(w io.Writer, r keyReport, now time.Time) error {
	var b strings.Builder
	line := func(label, value string) { fmt.Fprintf(&b, "%-11s %s\n", label+":", value) }
	status := strings.ReplaceAll(r.Status, "_", " ")
	if r.Status == statusUnchecked {
		status = "signature not checked"
	}
	if r.Detail != "" && r.Status != statusUnchecked {
		status += " (" + r.Detail + ")"
	}
	line("status", status)
	c := r.Claims
	if c.Subject != "" {
		line("subject", c.Subject)
	}
	line("read", listOrNone(c.Read))
	line("write", listOrNone(c.Write))
	line("perm", describePerm(c))
	when := func(d *jwt.NumericDate) string {
		t := d.UTC()
		rel := t.Sub(now).Round(time.Second)
		if rel >= 0 {
			return fmt.Sprintf("%s (in %s)", t.Format(time.RFC3339), rel)
		}
		return fmt.Sprintf("%s (%s ago)", t.Format(time.RFC3339), -rel)
	}
	if c.ExpiresAt != nil {
		line("expires", when(c.ExpiresAt))
	} else {
		line("expires", "never")
	}
	if c.NotBefore != nil {
		line("not before", when(c.NotBefore))
	}
	if c.IssuedAt != nil {
		line("issued", when(c.IssuedAt))
	}
	if c.ID != "" {
		line("id (jti)", c.ID)
	}
	if r.KeyID != "" {
		line("secret", r.KeyID+" (kid)")
	}
	if r.Status == statusUnchecked && r.Detail != "" {
		b.WriteString(r.Detail + "\n")
	}
	_, err := io.WriteString(w, b.String())
	return err
}

func listOrNone(l []string) string {
	if len(l) == 0 {
		return "(none)"
	}
	return strings.Join(l, " ")
}

// ----- pubsub keygen revoke -----

type revokeOptions struct {
	client clientOptions
	target string
	undo   bool
}

func newKeygenRevokeCommand(streams Streams) *cobra.Command {
	var opts revokeOptions
	cmd := &cobra.Command{
		Use:   "revoke KEY|JTI",
		Short: "Revoke a key through a node",
		Long: `Revoke a key, given whole or by its id (the jti 'keygen inspect' shows), through
the node at --server with a master --key (Emitter's emitter/keyban/ request).
The node refuses the key from then on, disconnects the clients that use it
and keeps the revocation in its data directory until the key expires.
--undo takes a revocation back.`,
		Example: `  pubsub keygen revoke "$KEY" -s node1:8080 -k "$MASTER"
  pubsub keygen revoke 9yq3Dx2lP5cN0c3aTQhKbw -k "$MASTER"`,
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			opts.target = strings.TrimSpace(args[0])
			return runRevoke(cmd.Context(), opts, streams)
		},
	}
	fs := cmd.Flags()
	addKeyClientFlags(fs, &opts.client, streams)
	fs.BoolVar(&opts.undo, "undo", false, "take the revocation back")
	return cmd
}

// keybanRequest is Emitter's emitter/keyban/ body.
type keybanRequest struct {
	Secret string `json:"secret"`
	Target string `json:"target"`
	Banned bool   `json:"banned"`
}

func runRevoke(ctx context.Context, opts revokeOptions, streams Streams) error {
	if opts.target == "" {
		return usageError("give the key to revoke, or its id")
	}
	if opts.client.key == "" {
		return usageError("revoking needs a master key: --key or PUBSUB_KEY")
	}
	name := opts.target
	if claims, _, err := decodeKey(opts.target); err == nil && claims.ID != "" {
		name = claims.ID
	}
	c, err := opts.client.dial(ctx, false)
	if err != nil {
		return err
	}
	defer c.Close()
	ctx, cancel := context.WithTimeout(ctx, opts.client.timeout)
	defer cancel()
	_, err = c.Request(ctx, "keyban", keybanRequest{Secret: opts.client.key, Target: opts.target, Banned: !opts.undo})
	if err != nil {
		what := "revoke the key"
		if opts.undo {
			what = "take the revocation back"
		}
		return refusal(what, err, "--key must be a master key")
	}
	verb := "revoked"
	if opts.undo {
		verb = "restored"
	}
	_, err = fmt.Fprintf(streams.Out, "%s key %s\n", verb, name)
	return err
}
