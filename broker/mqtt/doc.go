// Package mqtt is the MQTT 3.1.1 wire codec shared by the broker (server side)
// and the Go client (client side). It turns bytes into packet values and packet
// values into bytes; it owns no connection state, spawns no goroutines and
// takes no locks, so the broker's session code decides what a packet means.
//
// # Reading
//
// [Reader] frames packets on a stream. [ParseFixedHeader] validates everything
// that the first two to five bytes can tell (type, reserved flags, remaining
// length, the configured size limit) before a single body byte is read, so a
// peer that declares a huge or bogus packet is refused without the broker
// buffering it. The Reader's buffer starts at 512 bytes, grows only as bytes
// actually arrive (a peer that announces 200 MB and sends nothing costs
// nothing), and goes back to its small buffer once a large packet or a burst
// has been consumed; grown buffers come from size-class pools, so steady
// traffic does not allocate. A body returned by [Reader.Next] aliases that
// buffer and is valid until the next call.
//
// # Decoding
//
// Each packet type has a Decode function over the body (the bytes after the
// fixed header). Decoders alias the body instead of copying: [DecodePublish]
// and the SUBSCRIBE/UNSUBSCRIBE decoders allocate nothing (the list decoders
// append to a caller-provided slice). Only [DecodeConnect] copies, because a
// session's identity, will and credentials outlive the read buffer.
//
// Errors wrap one of four sentinels, chosen by what the receiver must do:
//
//   - [ErrMalformed]: the bytes do not form the packet (truncated fields,
//     trailing bytes, wrong fixed length, ill-formed UTF-8). Close [MQTT-4.8.0-1].
//   - [ErrProtocolViolation]: well-formed bytes that break a rule of the spec
//     (reserved flag bits, QoS 3, wildcards in a topic name, packet id 0,
//     empty topic). Close.
//   - [ErrPacketTooLarge]: the declared remaining length exceeds the limit. Close.
//   - [ErrUnsupportedProtocolLevel]: a CONNECT from another protocol version.
//     The server answers CONNACK 1 [MQTT-3.1.2-2] and then closes.
//
// The decoders check what the codec can know; rules that need session state
// (first packet must be CONNECT, client id policy, wildcard placement in a
// filter, which side may send which type) belong to the broker.
//
// # Encoding
//
// Encoders append to a caller-provided slice and allocate nothing when it has
// room, so the broker encodes a PUBLISH once and copies the bytes to every
// subscriber, patching only the packet id at [Publish.PacketIDOffset].
// Encoders trust their input; [Publish.Validate] and [Connect.Validate] tell a
// caller (the client) whether a value can be put on the wire.
package mqtt
