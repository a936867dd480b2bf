// Package cluster joins broker nodes into one cluster: membership and
// failure detection, interest gossip, peer links that carry messages, and
// scatter/gather queries. It is a library the broker drives; it knows
// nothing of sessions or protocols.
//
// # Membership
//
// A Node wraps hashicorp/memberlist (SWIM gossip with suspicion, LAN
// defaults). Gossip is encrypted with Config.SecretKey (AES-GCM, a 16, 24
// or 32-byte key) and stamped with Config.Label, so a joiner with the wrong
// key or label, or none, is refused (reliability case G6). Each node's
// metadata carries its peer-link address and release; a memberlist that
// is not a pubsub node is refused as a member. The node re-joins its
// seeds, and one failed member, every RejoinInterval (30 s), because after
// GossipToTheDeadTime memberlist stops talking to the far side of a
// partition and would never heal on its own (G3, memberlist #222); while
// alone it retries sooner, so unreachable seeds at start are not fatal
// (I6). Seeds may be DNS names that resolve to many nodes (a Kubernetes
// headless service). A restarted node with the same name rejoins in place
// (G2). memberlist reports a graceful leave like a failure, so a leaving
// node first tells its peers over the links.
//
// # Interest
//
// Messages go only to nodes that want them. Each node advertises the set
// of filters its local subscribers hold — aggregated: the node keeps a
// refcount per filter and only the set travels — versioned by a Lamport
// clock. A change is gossiped as a named broadcast ("interest of node X")
// through memberlist's TransmitLimitedQueue, where a newer one replaces the
// queued older one, and relayed by every node that accepts it; a set too
// large for a UDP packet is announced as a digest (node, version) and
// fetched over the peer link. Push/pull carries every record a node holds
// (anti-entropy), so lost gossip is repaired within PushPullInterval.
// Receivers index the filters of alive members in a topic.Trie keyed by
// node name, whose bounded per-topic cache answers Interested without
// allocating. A member that fails or leaves loses its interest at once
// (G1). Every gossip payload is size-capped and validated before it is
// applied; a malformed one is counted, logged and ignored (G10).
//
// # Peer links
//
// Messages never ride gossip. Each pair of nodes shares one TCP connection,
// dialed by the node whose name sorts first and authenticated both ways by
// an HMAC challenge keyed from SecretKey (handshake.go). Frames are a type
// byte and a varint length (frame.go). Send appends an encoded frame to
// the peer's bounded queue and returns; one writer per link writes
// whatever is queued in a single call, so frames batch naturally under
// load without any timer. A queue that is full drops the message, counts
// it and flags the peer slow; a write that misses its deadline closes the
// link as slow, and it is redialed with backoff (G11). Links to failed
// members are closed and their queues dropped.
//
// Delivery is one hop: a message received from a peer (OnMessage) must
// never be sent to another peer. The caller enforces this by sending only
// messages its own clients published.
//
// # Queries
//
// Query sends a request to every other alive member over the links and
// gathers the answers until all replied or the context ends; the deadline
// travels with the request so handlers stop when the answer is no longer
// wanted. Handlers are registered per kind with Handle and run on their own
// goroutines, at most MaxConcurrentQueries at once. Presence and history
// are built on it.
//
// # Locks
//
// memberlist calls the event and alive delegates with its node lock held.
// Under it the node takes Node.mu, interest.mu, links.peersMu and
// peer.mu — each briefly, never nested in the other direction, and never
// calling back into memberlist. The broadcast queue's NumNodes uses the
// node's own alive count rather than memberlist's, which would take the
// node lock from inside GetBroadcasts. peer.mu is a leaf.
package cluster
