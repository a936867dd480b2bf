package broker_test

// The real Emitter Go SDK (github.com/emitter-io/go/v2) against a node with
// channel keys enforced (issue 3 acceptance): keygen with a master key,
// publish and subscribe with the key it returns, WithoutEcho, extend keys
// deriving a private channel, emitter/me/, keyban and the SDK's error
// callback. The SDK is used as an application would use it; nothing here
// reaches into its internals.

import (
	"io"
	"net"
	"sync"
	"testing"
	"time"

	emitter "github.com/emitter-io/go/v2"
	"github.com/stretchr/testify/require"

	"github.com/pubsub/pubsub/broker/mqtt"
	"github.com/pubsub/pubsub/keys"
)

// sdkClient is a connected Emitter SDK client whose default handler and
// error callback feed channels, so tests can wait on them with a deadline.
type sdkClient struct {
	*emitter.Client
	messages chan emitter.Message
	errors   chan emitter.Error
}

// connectSDK connects an Emitter SDK client to n through a relay that
// holds PUBACKs (see startPubackHold); it is disconnected when the test
// ends. Auto-reconnect is off so a refused connection shows. opts are more
// SDK options (emitter.WithUsername, or a func that sets a handler such as
// OnPresence before the client connects, so no callback races the setter).
func connectSDK(t *testing.T, n *keyNode, clientID string, opts ...func(*emitter.Client)) *sdkClient {
	t.Helper()
	c := &sdkClient{messages: make(chan emitter.Message, 64), errors: make(chan emitter.Error, 16)}
	c.Client = emitter.NewClient(append([]func(*emitter.Client){
		emitter.WithBrokers("tcp://" + startPubackHold(t, n.srv.Addr().String())),
		emitter.WithClientID(clientID),
		emitter.WithAutoReconnect(false),
		emitter.WithConnectTimeout(opTimeout),
		emitter.WithKeepAlive(30 * time.Second),
	}, opts...)...)
	c.OnMessage(func(_ *emitter.Client, m emitter.Message) { c.messages <- m })
	c.OnError(func(_ *emitter.Client, e emitter.Error) { c.errors <- e })
	// The SDK's own timeout is 60 s; the connect bound is opTimeout.
	require.NoError(t, sdkCall(t, c.Connect))
	t.Cleanup(func() { c.Disconnect(100 * time.Millisecond) })
	return c
}

// pubackHold is how long the relay holds each PUBACK from the node.
const pubackHold = 50 * time.Millisecond

// startPubackHold starts a TCP relay to target that passes bytes through
// unchanged and in order, except that it holds each PUBACK from the node
// for pubackHold, and returns the relay's address.
//
// Why: the SDK (v2.1.0, Client.request) registers the callback for a
// request's response only after Publish has handed the request to paho.
// When paho processes the request's PUBACK first, it drops the stored
// packet the callback would hang on, and the request then waits forever
// (a nil channel). Against a node on loopback, under -race on two cores,
// that happened to about one request in five; Emitter has the same order
// (response, then PUBACK, emitter.md §1) and a network round trip hides
// the race. Holding the PUBACK closes the SDK's window without changing
// anything the SDK is sent.
func startPubackHold(t *testing.T, target string) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	var (
		wg    sync.WaitGroup
		mu    sync.Mutex
		conns []net.Conn
	)
	track := func(c net.Conn) {
		mu.Lock()
		defer mu.Unlock()
		conns = append(conns, c)
	}
	wg.Add(1)
	go func() {
		defer wg.Done()
		for {
			client, err := ln.Accept()
			if err != nil {
				return
			}
			node, err := net.Dial("tcp", target)
			if err != nil {
				_ = client.Close()
				continue
			}
			track(client)
			track(node)
			wg.Add(2)
			go func() {
				defer wg.Done()
				_, _ = io.Copy(node, client)
				_ = node.Close()
			}()
			go func() {
				defer wg.Done()
				holdPubacks(client, node)
				_ = client.Close()
			}()
		}
	}()
	t.Cleanup(func() {
		_ = ln.Close()
		mu.Lock()
		for _, c := range conns {
			_ = c.Close()
		}
		mu.Unlock()
		wg.Wait()
	})
	return ln.Addr().String()
}

// holdPubacks copies MQTT packets from node to client, packet by packet,
// waiting pubackHold before each PUBACK.
func holdPubacks(client, node net.Conn) {
	r := mqtt.NewReader(node, 0)
	var buf []byte
	for {
		h, body, err := r.Next()
		if err != nil {
			return
		}
		if h.Type == mqtt.TypePuback {
			time.Sleep(pubackHold) // injected latency, see startPubackHold
		}
		buf = append(append(append(buf[:0], byte(h.Type)<<4|h.Flags), wireVarint(len(body))...), body...)
		if _, err := client.Write(buf); err != nil {
			return
		}
	}
}

// sdkCall runs an SDK call that may block (the SDK's requests wait for
// their response without a deadline) and fails the test after opTimeout.
func sdkCall(t *testing.T, call func() error) error {
	t.Helper()
	done := make(chan error, 1)
	go func() { done <- call() }()
	select {
	case err := <-done:
		return err
	case <-time.After(opTimeout):
		t.Fatalf("Emitter SDK call not answered within %v", opTimeout)
		return nil
	}
}

// generateKey calls GenerateKey with a deadline.
func (c *sdkClient) generateKey(t *testing.T, key, channel, perm string, ttl int) (string, string, error) {
	t.Helper()
	var gotKey, gotChannel string
	err := sdkCall(t, func() error {
		var err error
		gotKey, gotChannel, err = c.GenerateKey(key, channel, perm, ttl)
		return err
	})
	return gotKey, gotChannel, err
}

// id calls ID (emitter/me/) with a deadline.
func (c *sdkClient) id(t *testing.T) string {
	t.Helper()
	var id string
	require.NoError(t, sdkCall(t, func() error { id = c.ID(); return nil }))
	return id
}

// sdkInbox collects what one subscription's handler receives.
type sdkInbox struct {
	mu   sync.Mutex
	msgs []sdkMessage
}

type sdkMessage struct{ topic, payload string }

func (in *sdkInbox) handle(_ *emitter.Client, m emitter.Message) {
	in.mu.Lock()
	defer in.mu.Unlock()
	in.msgs = append(in.msgs, sdkMessage{m.Topic(), string(m.Payload())})
}

func (in *sdkInbox) snapshot() []sdkMessage {
	in.mu.Lock()
	defer in.mu.Unlock()
	return append([]sdkMessage(nil), in.msgs...)
}

// waitFor waits for a message with this payload and returns its topic.
func (in *sdkInbox) waitFor(t *testing.T, payload string) string {
	t.Helper()
	var topic string
	waitFor(t, opTimeout, func() bool {
		for _, m := range in.snapshot() {
			if m.payload == payload {
				topic = m.topic
				return true
			}
		}
		return false
	})
	return topic
}

// has reports whether a message with this payload arrived.
func (in *sdkInbox) has(payload string) bool {
	for _, m := range in.snapshot() {
		if m.payload == payload {
			return true
		}
	}
	return false
}

// awaitError waits for the SDK's OnError callback.
func (c *sdkClient) awaitError(t *testing.T) emitter.Error {
	t.Helper()
	select {
	case e := <-c.errors:
		return e
	case <-time.After(opTimeout):
		t.Fatalf("no emitter error within %v", opTimeout)
		return emitter.Error{}
	}
}

func sdkMasterKey(t *testing.T, n *keyNode) string {
	t.Helper()
	return n.mint(t, keys.Claims{Perm: "m", Read: []string{"#"}, Write: []string{"#"}})
}

// TestEmitterSDKKeygenPublishSubscribe: a key from GenerateKey publishes
// and subscribes; the SDK receives on the key-less channel with its
// trailing '/'; WithoutEcho (me=0) keeps a publish from its own connection.
func TestEmitterSDKKeygenPublishSubscribe(t *testing.T) {
	n := startKeyNode(t, nil)
	master := sdkMasterKey(t, n)
	a := connectSDK(t, n, "sdk-a")
	b := connectSDK(t, n, "sdk-b")

	key, channel, err := a.generateKey(t, master, "chat/", "rwls", 0)
	require.NoError(t, err)
	require.Equal(t, "chat/", channel)
	claims, err := n.srv.Keyring().Verify(key)
	require.NoError(t, err)
	require.Equal(t, []string{"chat/#"}, claims.Read)
	require.Equal(t, []string{"chat/#"}, claims.Write)
	require.Equal(t, "rwsl", claims.Perm)
	require.Nil(t, claims.ExpiresAt, "ttl 0 = never expires")

	var inA, inB sdkInbox
	require.NoError(t, sdkCall(t, func() error { return a.Subscribe(key, "chat/", inA.handle) }))
	require.NoError(t, sdkCall(t, func() error { return b.Subscribe(key, "chat/", inB.handle) }))

	require.NoError(t, sdkCall(t, func() error { return a.Publish(key, "chat/", "hello") }))
	require.Equal(t, "chat/", inA.waitFor(t, "hello"), "delivered on the channel, key stripped, '/' kept")
	require.Equal(t, "chat/", inB.waitFor(t, "hello"))

	// A sub-channel is covered by the channel key (Emitter matches prefixes).
	require.NoError(t, sdkCall(t, func() error { return a.Publish(key, "chat/room1/", "deep") }))
	require.Equal(t, "chat/room1/", inB.waitFor(t, "deep"))

	// WithoutEcho: b gets it, a does not. a's own echo-on publish that
	// follows proves the absence: one connection's deliveries stay in order.
	require.NoError(t, sdkCall(t, func() error { return a.Publish(key, "chat/", "quiet", emitter.WithoutEcho()) }))
	require.NoError(t, sdkCall(t, func() error { return a.Publish(key, "chat/", "loud") }))
	inA.waitFor(t, "loud")
	inB.waitFor(t, "quiet")
	require.False(t, inA.has("quiet"), "me=0 publish echoed to its publisher")

	// QoS 1 round trip through the SDK (PUBACK from the node).
	require.NoError(t, sdkCall(t, func() error { return a.Publish(key, "chat/", "acked", emitter.WithAtLeastOnce()) }))
	inB.waitFor(t, "acked")
}

// TestEmitterSDKExtendKey: an extend key derives a private channel
// <channel><connection id>/ whose key works there and nowhere else, and
// the extend key itself can neither subscribe nor publish (E7, Emitter's
// private-link fix).
func TestEmitterSDKExtendKey(t *testing.T) {
	n := startKeyNode(t, nil)
	master := sdkMasterKey(t, n)
	c := connectSDK(t, n, "sdk-extend")

	extendKey, _, err := c.generateKey(t, master, "priv/", "rwe", 0)
	require.NoError(t, err)
	privateKey, privateChannel, err := c.generateKey(t, extendKey, "priv/", "rw", 0)
	require.NoError(t, err)

	id := c.id(t)
	require.Len(t, id, 26, "connection id: 16 bytes, base32 without padding")
	require.Equal(t, "priv/"+id+"/", privateChannel, "the private channel carries this connection's id")

	var in sdkInbox
	require.NoError(t, sdkCall(t, func() error { return c.Subscribe(privateKey, privateChannel, in.handle) }))
	require.NoError(t, sdkCall(t, func() error { return c.Publish(privateKey, privateChannel, "secret") }))
	require.Equal(t, privateChannel, in.waitFor(t, "secret"))

	// Not on the parent channel, with either key.
	for _, key := range []string{privateKey, extendKey} {
		require.NoError(t, sdkCall(t, func() error { return c.Subscribe(key, "priv/", nil) }))
		e := c.awaitError(t)
		require.Equal(t, 401, e.Status)
		require.Equal(t, keyUnauthorizedText, e.Message)
	}
	// Another connection asking with the same extend key gets its own
	// private channel, not this one.
	other := connectSDK(t, n, "sdk-extend-other")
	_, otherChannel, err := other.generateKey(t, extendKey, "priv/", "rw", 0)
	require.NoError(t, err)
	require.Equal(t, "priv/"+other.id(t)+"/", otherChannel)
	require.NotEqual(t, privateChannel, otherChannel)

	// A plain channel key cannot derive anything.
	plain, _, err := c.generateKey(t, master, "priv/", "rw", 0)
	require.NoError(t, err)
	_, _, err = c.generateKey(t, plain, "priv/", "rw", 0)
	require.Error(t, err)
	require.Equal(t, keyUnauthorizedText, err.Error())
}

// TestEmitterSDKErrors: the SDK's OnError sees Emitter's 401 for an
// unauthorised subscribe, keygen refuses non-master keys and bad targets,
// and a key banned with BlockKey stops working.
func TestEmitterSDKErrors(t *testing.T) {
	n := startKeyNode(t, nil)
	master := sdkMasterKey(t, n)
	c := connectSDK(t, n, "sdk-errors")

	key, _, err := c.generateKey(t, master, "news/", "rw", 0)
	require.NoError(t, err)

	t.Run("subscribe outside the key", func(t *testing.T) {
		require.NoError(t, sdkCall(t, func() error { return c.Subscribe(key, "sport/", nil) }))
		e := c.awaitError(t)
		require.Equal(t, 401, e.Status)
		require.Equal(t, keyUnauthorizedText, e.Message)
		require.NotZero(t, e.Request, "req carries the SUBSCRIBE packet id")
	})

	t.Run("keygen", func(t *testing.T) {
		_, _, err := c.generateKey(t, key, "news/", "rw", 0)
		require.EqualError(t, err, keyUnauthorizedText, "a channel key is not a master key")
		_, _, err = c.generateKey(t, master, "news", "rw", 0)
		require.EqualError(t, err, "channel should end with `/` for strict types or `/#/` for wildcards")
		_, _, err = c.generateKey(t, "not-a-key", "news/", "rw", 0)
		require.EqualError(t, err, keyUnauthorizedText)
	})

	t.Run("keyban", func(t *testing.T) {
		victim, _, err := c.generateKey(t, master, "news/", "rw", 0)
		require.NoError(t, err)
		// v reads news/ with the victim key and sentinel/ with a key that
		// stays valid; one connection's deliveries arrive in order, so a
		// sentinel proves what did not arrive before it.
		v := connectSDK(t, n, "sdk-victim")
		sentinelKey, _, err := c.generateKey(t, master, "sentinel/", "rw", 0)
		require.NoError(t, err)
		var news, sentinels sdkInbox
		require.NoError(t, sdkCall(t, func() error { return v.Subscribe(victim, "news/", news.handle) }))
		require.NoError(t, sdkCall(t, func() error { return v.Subscribe(sentinelKey, "sentinel/", sentinels.handle) }))
		require.NoError(t, sdkCall(t, func() error { return c.Publish(key, "news/", "before") }))
		news.waitFor(t, "before")

		_, err = banKey(t, c, key, victim)
		require.EqualError(t, err, keyUnauthorizedText, "only a master key bans")
		banned, err := banKey(t, c, master, victim)
		require.NoError(t, err)
		require.True(t, banned)

		// The banned key's subscription has ended...
		require.NoError(t, sdkCall(t, func() error { return c.Publish(key, "news/", "after") }))
		require.NoError(t, sdkCall(t, func() error { return c.Publish(sentinelKey, "sentinel/", "s1") }))
		sentinels.waitFor(t, "s1")
		require.False(t, news.has("after"), "a banned key's subscription still delivers")
		// ...it publishes no more...
		require.NoError(t, sdkCall(t, func() error { return v.Publish(victim, "sentinel/", "banned") }))
		e := v.awaitError(t)
		require.Equal(t, 401, e.Status)
		// ...and AllowKey restores it.
		var allowed bool
		require.NoError(t, sdkCall(t, func() error {
			var err error
			allowed, err = c.AllowKey(master, victim)
			return err
		}))
		require.True(t, allowed)
		require.NoError(t, sdkCall(t, func() error { return v.Subscribe(victim, "news/", news.handle) }))
		require.NoError(t, sdkCall(t, func() error { return c.Publish(key, "news/", "restored") }))
		news.waitFor(t, "restored")
	})
}

// banKey calls BlockKey with a deadline.
func banKey(t *testing.T, c *sdkClient, secret, target string) (bool, error) {
	t.Helper()
	var banned bool
	err := sdkCall(t, func() error {
		var err error
		banned, err = c.BlockKey(secret, target)
		return err
	})
	return banned, err
}
