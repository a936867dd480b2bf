// Package broker is the engine of a pubsub node: one listener that serves
// MQTT 3.1.1 (TCP, TLS, WebSocket), Eventhub's JSON-RPC over WebSocket, SSE
// and HTTP on one port, the sessions behind those connections, and the
// routing between them (DESIGN §3).
//
// A tour, in the order a message travels:
//
//   - listener.go, tls.go, websocket.go: accept, sniff the first byte (MQTT or
//     HTTP), upgrade WebSockets (MQTT subprotocol or JSON-RPC).
//   - conn.go: one MQTT connection. One goroutine reads and handles packets;
//     outbound bytes go to a bounded per-connection queue. Writes are made by
//     the reading goroutine that queued them, at the end of its read batch,
//     with one non-blocking write; what the socket does not take goes to a
//     shared pool of flusher goroutines (slow-consumer policy: pending bytes
//     and write deadline). An idle connection holds one parked goroutine and
//     a 512-byte read buffer (≈ 7.7 KiB RSS each, measured with 5,000 idle clients).
//   - access.go, auth.go, dialect.go, emitterapi.go, presence.go, links.go:
//     who may do what (channel keys, DESIGN §5), the Emitter dialect of
//     topics and its emitter/<op>/ requests.
//   - route.go: publish → trie match (package topic) → encode once per wire
//     form → copy into each recipient's queue. QoS 0 routing allocates
//     nothing (BenchmarkFanout).
//   - session.go, sessionstore.go: clean and persistent sessions, inflight
//     windows, queues, takeover; persistent sessions survive restarts with
//     the disk store.
//   - storage.go, history_api.go: history, retained messages and KV in
//     package store; replay on subscribe.
//   - rpc.go, sse.go, httpapi.go, keygen_http.go: the Eventhub-compatible
//     JSON-RPC endpoint, Server-Sent Events, POST /api/publish, /keygen.
//   - stats.go, debug.go: $SYS/stats/<node>, /stats, /metrics, pprof.
//   - config.go: every setting, its default and its validation (DESIGN §9).
//
// Lock order is in LOCKS.md. Policies the MQTT spec leaves open are pinned in
// docs/mqtt.md; key policies in docs/keys.md.
package broker
