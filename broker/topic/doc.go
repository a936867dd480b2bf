// Package topic validates MQTT topic names and filters and indexes
// subscriptions so that a publish finds its recipients quickly.
//
// # Model
//
// One topic model serves every protocol of the broker (MQTT, the Emitter
// dialect, Eventhub JSON-RPC): '/'-separated levels, '+' matches one level,
// '#' matches the remaining levels including the parent ("a/#" matches "a"),
// a topic starting with '$' is not matched by a leading wildcard, and empty
// levels are real levels. Matches is the reference statement of these rules.
// A filter "$share/GROUP/FILTER" is a shared subscription: every group
// (group name plus inner filter) receives each message once, delivered to
// one member picked round robin.
//
// # Trie
//
// Trie is a tree of topic levels. Literal levels are map keys; the two
// wildcards are dedicated child pointers, so matching never hashes a
// wildcard. Each node keeps its subscribers in a slice (indexed by a map only
// when large), because slices are what the matcher copies into results.
// Unsubscribe prunes nodes left empty, so memory follows the live
// subscriptions and not the history of churn.
//
// Match results are cached per concrete topic, bounded both in topics and
// in bytes, with random eviction. A cache hit is one map lookup under a read
// lock, with no allocation (the m[string(b)] idiom). A subscription change
// drops only the cached topics its filter matches (a single lookup for a
// literal filter), and bumps a generation counter so that a Match racing
// with the change never caches a result computed from the older trie.
// Results are immutable and shared by every caller that hits the cache.
//
// Shared groups keep their round-robin cursor on a stable object in the
// trie; results carry immutable views of the members that share the cursor,
// so distribution stays even across cache rebuilds.
//
// # Limits
//
// Filters and topics are capped at MaxLevels levels (mosquitto's limit,
// after CVE-2019-11779) and MaxLength bytes, which also bounds the recursion
// of the matcher. Validation does not check UTF-8: the wire codecs do that
// when they decode the string [MQTT-1.5.3-1].
package topic
