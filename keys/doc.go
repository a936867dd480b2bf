// Package keys implements pubsub's channel keys: JWTs that say which topics
// their holder may read and write and what else it may do (DESIGN §5).
//
// # Tokens
//
// A key is an HS256 JWT (golang-jwt/jwt/v5) whose claims are Claims:
//
//	{"sub":"alice","read":["chat/#"],"write":["chat/room1"],"perm":"rwslp",
//	 "exp":1767225600,"iat":1767139200,"jti":"…"}
//
// read and write are MQTT topic filters, exactly Eventhub's claims, so a
// token Eventhub accepts (signed with its raw JWT_SECRET, only read and
// write, often no exp) verifies and authorises the same way here. perm holds
// Emitter's permission letters plus 'm' (see Perm); when it is empty the
// token is an Eventhub one and read grants "rl", write grants "ws".
//
// Verification (Keyring.Verify) caps the token at MaxTokenLen bytes before
// decoding anything, accepts exactly HS256, requires canonical base64url,
// chooses the secret by the kid header (or tries each active secret when
// there is none, as for Eventhub tokens), enforces exp and nbf when present
// with at most MaxLeeway of skew, optionally requires exp, and consults the
// revocation list by jti. Each refusal wraps its own sentinel error so the
// broker can log why without logging the token.
//
// # Authorisation
//
// Claims.CanSubscribe, CanLoad and CanPresence ask whether one read filter
// covers the requested filter: every topic the request can match must be
// matched by that entry. The test walks both filters level by level, is
// case-sensitive and segment-exact, honours '$' topics [MQTT-4.7.2-1], and
// never allocates. CanPublish and CanStore match a concrete topic against
// the write filters. Eventhub compared a requested filter's '+' and '#' as
// ordinary levels (read "a/+" let a client subscribe "a/#"); pubsub
// deliberately tightens that to a true subset test. Levels "." and ".."
// are never authorised, because a path-normalising hop would route them
// elsewhere than where they were authorised. A key holding 'e' is an extend
// key and can only derive private sub-channel keys (Claims.Extend), the fix
// for Emitter's private-link hole; 'm' (master) may do everything.
//
// # Secrets and rotation
//
// A Secret is at least MinSecretLen random bytes named by a kid. A Keyring
// holds several: the first signs, all verify, and SetSecrets swaps the set
// atomically, so a secret is rotated by adding the new one in front, then
// dropping the old one once its tokens are gone. Secrets come from config,
// the environment (ParseSecret reads both the encoded form and a raw
// Eventhub JWT_SECRET) or DATA_DIR/secret, which LoadOrCreateSecretFile
// makes on first start (directory 0700, file 0600). A short raw secret is
// refused unless KeyringOptions.AllowShortSecret is set for migration, in
// which case ShortSecretIDs lists what to warn about.
//
// # Revocation
//
// Revocations is the list of revoked jti values, each kept until its
// token's exp (forever without one). Lookups are lock-free reads of a map
// that writers replace; every change is written to DATA_DIR/revoked.json
// atomically (temp file, fsync, rename, fsync of the directory).
//
// Nothing here logs; errors and String forms never contain a token or a key.
package keys
