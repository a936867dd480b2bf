package broker_test

// Interoperability: a third-party MQTT 3.1.1 client (Eclipse Paho) and a
// raw-socket client drive a real node over TCP and over WebSocket on the
// node's one port. Each case asserts the behaviour docs/mqtt.md pins and the
// clause it comes from; "nothing else arrives" is proven with a sentinel
// message that the node must deliver after anything it wrongly sent.

import (
	"bytes"
	"errors"
	"fmt"
	"net"
	"net/http"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	paho "github.com/eclipse/paho.mqtt.golang"
	"github.com/gorilla/websocket"
	"github.com/stretchr/testify/require"

	"github.com/pubsub/pubsub/broker"
	"github.com/pubsub/pubsub/broker/mqtt"
	"github.com/pubsub/pubsub/broker/wsconn"
)

func TestInteropConnect(t *testing.T) {
	forEachTransport(t, func(t *testing.T, tr transport) {
		t.Run("accepted", func(t *testing.T) {
			srv := startServer(t, nil)
			_, tok := connectPaho(t, pahoOptions(srv, tr, "alice"))
			require.Equal(t, mqtt.Accepted, tok.ReturnCode())
			// [MQTT-3.2.2-1]: clean session 1 means session present 0.
			require.False(t, tok.SessionPresent())
			require.Equal(t, int64(1), srv.Counters().Connections)
		})

		t.Run("server_assigned_id", func(t *testing.T) {
			srv := startServer(t, nil)
			// [MQTT-3.1.3-6]: empty id + clean session gets a unique id. Were
			// the two ids equal, the second would take the first over.
			a, inA := connectWithInbox(t, srv, tr, "")
			b, _ := connectWithInbox(t, srv, tr, "")
			require.Equal(t, 2, srv.Counters().Sessions)
			subscribe(t, a, "anon/t", 1)
			publish(t, b, "anon/t", 1, false, []byte("hello"))
			got := inA.waitCount(t, 1)
			require.Equal(t, "hello", string(got[0].Payload))
			require.True(t, a.IsConnectionOpen())
			require.True(t, b.IsConnectionOpen())
		})

		t.Run("empty_id_persistent_refused", func(t *testing.T) {
			srv := startServer(t, nil)
			c := dialRaw(t, srv, tr)
			present, code := c.connect(mqtt.Connect{CleanSession: false})
			// [MQTT-3.1.3-8], [MQTT-3.2.2-4]: CONNACK 2, session present 0, close.
			require.Equal(t, mqtt.RefusedIdentifierRejected, code)
			require.False(t, present)
			c.expectClosed()
		})
	})
}

// binaryPayload is a deterministic payload holding every byte value,
// NULs included, of a size chosen by seed: 1 B to 72 KB, so the remaining
// length takes 1, 2 and 3 bytes and WebSocket frames grow past 64 KiB.
func binaryPayload(seed int) []byte {
	b := make([]byte, 1+seed*9000)
	for i := range b {
		b[i] = byte(i*31+seed*7) ^ byte(i>>8)
	}
	return b
}

func TestInteropQoSMatrix(t *testing.T) {
	forEachTransport(t, func(t *testing.T, tr transport) {
		srv := startServer(t, nil)
		sub, in := connectWithInbox(t, srv, tr, "sub")
		pub, _ := connectPaho(t, pahoOptions(srv, tr, "pub"))
		for q := byte(0); q <= 2; q++ {
			subscribe(t, sub, fmt.Sprintf("matrix/%d", q), q)
			subscribe(t, sub, fmt.Sprintf("burst/%d", q), q)
		}
		for pubQoS := byte(0); pubQoS <= 2; pubQoS++ {
			for subQoS := byte(0); subQoS <= 2; subQoS++ {
				t.Run(fmt.Sprintf("pub%d_sub%d", pubQoS, subQoS), func(t *testing.T) {
					topic := fmt.Sprintf("matrix/%d", subQoS)
					payload := binaryPayload(int(pubQoS*3 + subQoS))
					// The token completes when the publisher's flow at
					// pubQoS is done: PUBACK, or PUBREC/PUBREL/PUBCOMP.
					publish(t, pub, topic, pubQoS, false, payload)
					sentinel := fmt.Sprintf("sentinel-%d-%d", pubQoS, subQoS)
					publish(t, pub, topic, pubQoS, false, []byte(sentinel))

					var copies []message
					for _, m := range in.untilSentinel(t, topic, sentinel) {
						if bytes.Equal(m.Payload, payload) {
							copies = append(copies, m)
						}
					}
					require.Len(t, copies, 1, "exactly one delivery")
					got := copies[0]
					require.Equal(t, topic, got.Topic)
					// [MQTT-3.8.4-6]: delivered at min(publish, granted).
					require.Equal(t, min(pubQoS, subQoS), got.QoS)
					require.False(t, got.Retained, "live delivery has RETAIN 0 [MQTT-3.3.1-9]")
					require.False(t, got.Dup)
				})
			}
		}
		// Several times the default inflight window (32) at each QoS: the
		// node frees a slot only when a flow completes (PUBACK, PUBCOMP),
		// so a leaked slot would stall the burst.
		for q := byte(0); q <= 2; q++ {
			t.Run(fmt.Sprintf("burst_qos%d", q), func(t *testing.T) {
				const n = 100
				topic := fmt.Sprintf("burst/%d", q)
				tokens := make([]paho.Token, n)
				for i := range tokens {
					tokens[i] = pub.Publish(topic, q, false, fmt.Sprintf("%03d", i))
				}
				for _, tok := range tokens {
					awaitToken(t, tok)
				}
				publish(t, pub, topic, q, false, []byte("sentinel"))
				var got []string
				for _, m := range in.untilSentinel(t, topic, "sentinel") {
					if m.Topic == topic {
						require.Equal(t, q, m.QoS)
						got = append(got, string(m.Payload))
					}
				}
				require.Len(t, got, n)
				for i, p := range got {
					require.Equal(t, fmt.Sprintf("%03d", i), p, "in publish order")
				}
			})
		}
	})
}

// B4: an inbound QoS 2 message is routed once per packet id until PUBREL,
// however often it is resent, and the id is free again after PUBREL
// [MQTT-4.3.3-2].
func TestInteropQoS2Inbound(t *testing.T) {
	forEachTransport(t, func(t *testing.T, tr transport) {
		srv := startServer(t, nil)
		sub, in := connectWithInbox(t, srv, tr, "sub")
		subscribe(t, sub, "q2/t", 2)

		c := dialRaw(t, srv, tr)
		c.mustConnect(mqtt.Connect{ClientID: "raw-pub", CleanSession: true})
		expectAck := func(want mqtt.Type, id uint16) {
			t.Helper()
			h, body := c.next()
			require.Equal(t, want, h.Type)
			got, err := mqtt.DecodeAck(body)
			require.NoError(t, err)
			require.Equal(t, id, got)
		}
		const id = 7
		send := func(payload string, dup bool) {
			t.Helper()
			p := mqtt.Publish{QoS: 2, Dup: dup, Topic: []byte("q2/t"), PacketID: id, Payload: []byte(payload)}
			c.write(p.AppendTo(nil))
			expectAck(mqtt.TypePubrec, id)
		}

		send("once", false)
		send("once", true) // resent before PUBREL: not routed again
		c.write(mqtt.AppendAck(nil, mqtt.TypePubrel, id))
		expectAck(mqtt.TypePubcomp, id)
		send("again", false) // the id is free after PUBREL
		c.write(mqtt.AppendAck(nil, mqtt.TypePubrel, id))
		expectAck(mqtt.TypePubcomp, id)

		publish(t, sub, "q2/t", 2, false, []byte("sentinel"))
		got := in.untilSentinel(t, "q2/t", "sentinel")
		require.Equal(t, []string{"once", "again"}, payloads(got))
		for _, m := range got {
			require.Equal(t, byte(2), m.QoS)
		}
	})
}

func payloads(msgs []message) []string {
	out := make([]string, len(msgs))
	for i, m := range msgs {
		out[i] = string(m.Payload)
	}
	return out
}

func TestInteropUnsubscribe(t *testing.T) {
	forEachTransport(t, func(t *testing.T, tr transport) {
		srv := startServer(t, nil)
		sub, in := connectWithInbox(t, srv, tr, "sub")
		subscribe(t, sub, "u/#", 1)
		subscribe(t, sub, "u/keep", 1)
		awaitToken(t, sub.Unsubscribe("u/#"))
		// [MQTT-3.10.4-4]: UNSUBACK even for a filter that matches nothing.
		awaitToken(t, sub.Unsubscribe("never/subscribed"))

		pub, _ := connectPaho(t, pahoOptions(srv, tr, "pub"))
		publish(t, pub, "u/gone", 1, false, []byte("gone"))
		publish(t, pub, "u/keep", 1, false, []byte("sentinel"))
		require.Empty(t, in.untilSentinel(t, "u/keep", "sentinel"), "[MQTT-3.10.4-1]: the subscription is deleted")
		require.Equal(t, 1, srv.Counters().Subscriptions)
	})
}

func TestInteropRetained(t *testing.T) {
	forEachTransport(t, func(t *testing.T, tr transport) {
		srv := startServer(t, nil)
		pub, _ := connectPaho(t, pahoOptions(srv, tr, "pub"))
		const topic = "retained/t"

		// newSubscriber connects a fresh client, subscribes filter and returns
		// what reached it before its own sentinel. The sentinel is published
		// on the subscriber's own connection, so the node handles it after
		// the SUBSCRIBE and the retained messages it queued [MQTT-3.3.1-6].
		newSubscriber := func(t *testing.T, id, filter string) ([]message, *inbox) {
			t.Helper()
			c, in := connectWithInbox(t, srv, tr, id)
			subscribe(t, c, filter, 1)
			sentinel := "sentinel-" + id
			publish(t, c, topic, 0, false, []byte(sentinel))
			return in.untilSentinel(t, topic, sentinel), in
		}
		requireRetained := func(t *testing.T, got []message, payload string) {
			t.Helper()
			require.Len(t, got, 1, "the retained message exactly once")
			require.Equal(t, topic, got[0].Topic)
			require.Equal(t, payload, string(got[0].Payload))
			require.True(t, got[0].Retained, "[MQTT-3.3.1-6]")
			require.Equal(t, byte(1), got[0].QoS)
		}
		publish(t, pub, topic, 1, true, []byte("v1"))
		got, first := newSubscriber(t, "sub1", topic)
		requireRetained(t, got, "v1")

		// [MQTT-3.3.1-5]: one retained message per topic, the latest.
		publish(t, pub, topic, 1, true, []byte("v2"))
		live := first.waitMessage(t, topic, "v2")
		require.False(t, live.Retained, "existing subscription gets RETAIN 0 [MQTT-3.3.1-9]")
		got, _ = newSubscriber(t, "sub2", topic)
		requireRetained(t, got, "v2")
		got, _ = newSubscriber(t, "sub2-wildcard", "retained/#")
		requireRetained(t, got, "v2")

		// [MQTT-3.3.1-10]: an empty retained payload still reaches current
		// subscribers; [MQTT-3.3.1-11]: it is not stored and clears the topic.
		publish(t, pub, topic, 1, true, []byte{})
		cleared := first.waitMessage(t, topic, "")
		require.False(t, cleared.Retained)
		got, _ = newSubscriber(t, "sub3", topic)
		require.Empty(t, got, "cleared topic delivers nothing to a new subscriber")
		require.Equal(t, 0, srv.Counters().Retained)
	})
}

func TestInteropWill(t *testing.T) {
	forEachTransport(t, func(t *testing.T, tr transport) {
		srv := startServer(t, nil)
		watcher, in := connectWithInbox(t, srv, tr, "watcher")
		subscribe(t, watcher, "will/#", 1)
		withWill := func(id string) mqtt.Connect {
			return mqtt.Connect{
				ClientID: id, CleanSession: true, KeepAlive: 30,
				WillFlag: true, WillQoS: 1, WillTopic: "will/" + id, WillPayload: []byte(id + " is gone"),
			}
		}

		t.Run("abrupt_close_publishes", func(t *testing.T) {
			c := dialRaw(t, srv, tr)
			c.mustConnect(withWill("abrupt"))
			// Gone without DISCONNECT: the will is published [MQTT-3.1.2-8].
			require.NoError(t, c.nc.Close())
			var got []message
			waitFor(t, opTimeout, func() bool {
				got = in.snapshot()
				return len(got) > 0
			})
			require.Len(t, got, 1)
			require.Equal(t, "will/abrupt", got[0].Topic)
			require.Equal(t, "abrupt is gone", string(got[0].Payload))
			require.Equal(t, byte(1), got[0].QoS)
			require.False(t, got[0].Retained)
		})

		t.Run("disconnect_discards", func(t *testing.T) {
			c := dialRaw(t, srv, tr)
			c.mustConnect(withWill("clean"))
			c.write(mqtt.AppendDisconnect(nil))
			c.expectClosed()
			// The node settles the will before it drops the session, so once
			// only the watcher's session is left a will would already be
			// queued to the watcher, ahead of the sentinel.
			waitFor(t, opTimeout, func() bool { return srv.Counters().Sessions == 1 })
			publish(t, watcher, "will/clean", 1, false, []byte("sentinel"))
			before := in.untilSentinel(t, "will/clean", "sentinel")
			// [MQTT-3.14.4-3]: DISCONNECT discards the will.
			require.NotContains(t, topics(before), "will/clean")
		})

		t.Run("retained_will", func(t *testing.T) {
			p := withWill("kept")
			p.WillRetain = true
			c := dialRaw(t, srv, tr)
			c.mustConnect(p)
			require.NoError(t, c.nc.Close())
			live := in.waitMessage(t, "will/kept", "kept is gone")
			require.False(t, live.Retained, "[MQTT-3.3.1-9]")
			// [MQTT-3.1.2-17]: a will with retain set is published retained.
			late, lateIn := connectWithInbox(t, srv, tr, "late")
			subscribe(t, late, "will/kept", 1)
			stored := lateIn.waitMessage(t, "will/kept", "kept is gone")
			require.True(t, stored.Retained)
		})
	})
}

func TestInteropPersistentSession(t *testing.T) {
	forEachTransport(t, func(t *testing.T, tr transport) {
		srv := startServer(t, nil)
		const id, n = "durable", 100

		first, tok := connectPaho(t, pahoOptions(srv, tr, id).SetCleanSession(false))
		require.False(t, tok.SessionPresent(), "no session to resume yet")
		subscribe(t, first, "orders/#", 1)
		first.Disconnect(250)
		waitFor(t, opTimeout, func() bool { return srv.Counters().Connections == 0 })

		pub, _ := connectPaho(t, pahoOptions(srv, tr, "pub"))
		// QoS 0 is not queued for an offline session (docs/mqtt.md).
		publish(t, pub, "orders/0", 0, false, []byte("qos0 while away"))
		tokens := make([]paho.Token, n)
		for i := range tokens {
			tokens[i] = pub.Publish(fmt.Sprintf("orders/%d", i%3), 1, false, fmt.Sprintf("%03d", i))
		}
		for _, tok := range tokens {
			awaitToken(t, tok)
		}

		in := &inbox{}
		_, tok = connectPaho(t, pahoOptions(srv, tr, id).SetCleanSession(false).SetDefaultPublishHandler(in.handle))
		require.True(t, tok.SessionPresent(), "[MQTT-3.2.2-2]")
		publish(t, pub, "orders/end", 1, false, []byte("sentinel"))
		got := in.untilSentinel(t, "orders/end", "sentinel")
		require.Len(t, got, n, "every queued message, once")
		for i, m := range got {
			require.Equal(t, fmt.Sprintf("%03d", i), string(m.Payload), "in publish order")
			require.Equal(t, fmt.Sprintf("orders/%d", i%3), m.Topic)
			require.Equal(t, byte(1), m.QoS)
		}
	})
}

// [MQTT-3.1.2-6]: a clean-session connection discards the persistent
// session of its client id, and its own session ends with it.
func TestInteropCleanSessionDiscardsState(t *testing.T) {
	forEachTransport(t, func(t *testing.T, tr transport) {
		srv := startServer(t, nil)
		const id = "fickle"
		durable, _ := connectPaho(t, pahoOptions(srv, tr, id).SetCleanSession(false))
		subscribe(t, durable, "cs/t", 1)
		durable.Disconnect(250)
		waitFor(t, opTimeout, func() bool { return srv.Counters().Connections == 0 })

		in := &inbox{}
		clean, tok := connectPaho(t, pahoOptions(srv, tr, id).SetDefaultPublishHandler(in.handle))
		require.False(t, tok.SessionPresent(), "[MQTT-3.2.2-1]")
		subscribe(t, clean, "cs/sentinel", 1)
		pub, _ := connectPaho(t, pahoOptions(srv, tr, "pub"))
		publish(t, pub, "cs/t", 1, false, []byte("for the old session"))
		publish(t, pub, "cs/sentinel", 1, false, []byte("sentinel"))
		require.Empty(t, in.untilSentinel(t, "cs/sentinel", "sentinel"), "old subscription discarded")
		clean.Disconnect(250)
		waitFor(t, opTimeout, func() bool { return srv.Counters().Sessions == 1 }) // pub only

		_, tok = connectPaho(t, pahoOptions(srv, tr, id).SetCleanSession(false))
		require.False(t, tok.SessionPresent(), "the clean session ended with its connection")
	})
}

// [MQTT-3.2.0-1]: CONNACK is the first packet the node sends, even when
// messages for the resumed session are being routed while it reconnects.
func TestInteropConnackFirstUnderLoad(t *testing.T) {
	const reconnects = 200
	forEachTransport(t, func(t *testing.T, tr transport) {
		srv := startServer(t, nil)
		session := mqtt.Connect{ClientID: "busy", CleanSession: false}
		sub := dialRaw(t, srv, tr)
		sub.mustConnect(session)
		sub.subscribe(1, "busy/t", 0)
		require.NoError(t, sub.nc.Close())

		// A raw publisher streams QoS 0 messages to the session's topic
		// until the reconnects are done.
		pub := dialRaw(t, srv, tr)
		pub.mustConnect(mqtt.Connect{ClientID: "stream", CleanSession: true})
		pkt := (&mqtt.Publish{Topic: []byte("busy/t"), Payload: []byte("x")}).AppendTo(nil)
		batch := bytes.Repeat(pkt, 50)
		stop := make(chan struct{})
		var wg sync.WaitGroup
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				select {
				case <-stop:
					return
				default:
				}
				_ = pub.nc.SetWriteDeadline(time.Now().Add(opTimeout))
				if _, err := pub.nc.Write(batch); err != nil {
					return
				}
			}
		}()
		defer func() {
			close(stop)
			wg.Wait()
		}()

		wrong := 0
		for range reconnects {
			c := dialRaw(t, srv, tr)
			c.write(session.AppendTo(nil))
			h, body := c.next()
			if h.Type != mqtt.TypeConnack {
				wrong++
			} else {
				present, code, err := mqtt.DecodeConnack(body)
				require.NoError(t, err)
				require.Equal(t, mqtt.Accepted, code)
				require.True(t, present)
			}
			require.NoError(t, c.nc.Close())
		}
		require.Zero(t, wrong, "reconnects whose first packet was not CONNACK")
	})
}

// B3: a subscriber that drops before PUBACK gets the messages again, with
// DUP, when it resumes its session.
func TestInteropResendUnacked(t *testing.T) {
	forEachTransport(t, func(t *testing.T, tr transport) {
		srv := startServer(t, nil)
		session := mqtt.Connect{ClientID: "flaky", CleanSession: false, KeepAlive: 30}
		sub := dialRaw(t, srv, tr)
		require.False(t, sub.mustConnect(session))
		sub.subscribe(1, "b3/t", 1)

		pub, _ := connectPaho(t, pahoOptions(srv, tr, "pub"))
		want := []string{"m1", "m2", "m3"}
		for _, p := range want {
			publish(t, pub, "b3/t", 1, false, []byte(p))
		}
		ids := make([]uint16, len(want))
		for i, p := range want {
			got := sub.readPublish()
			require.Equal(t, p, string(got.Payload))
			require.Equal(t, byte(1), got.QoS)
			require.False(t, got.Dup, "first attempt has DUP 0 [MQTT-3.3.1-2]")
			ids[i] = got.PacketID
		}
		require.NoError(t, sub.nc.Close()) // gone before PUBACK

		again := dialRaw(t, srv, tr)
		require.True(t, again.mustConnect(session), "[MQTT-3.2.2-2]")
		for i, p := range want {
			got := again.readPublish()
			// [MQTT-4.4.0-1]: resent with the original packet ids, in order;
			// [MQTT-3.3.1-1]: DUP set on a redelivery.
			require.Equal(t, p, string(got.Payload))
			require.Equal(t, "b3/t", string(got.Topic))
			require.Equal(t, ids[i], got.PacketID)
			require.True(t, got.Dup)
			require.Equal(t, byte(1), got.QoS)
		}
		again.puback(ids...)

		// Acknowledged now: what comes next is a new message, not a resend.
		publish(t, pub, "b3/t", 1, false, []byte("m4"))
		got := again.readPublish()
		require.Equal(t, "m4", string(got.Payload))
		require.False(t, got.Dup)
	})
}

// [MQTT-4.4.0-1]: a QoS 2 message that got PUBREC but not PUBCOMP is
// finished on reconnect with a resent PUBREL, not a second PUBLISH.
func TestInteropResendPubrel(t *testing.T) {
	forEachTransport(t, func(t *testing.T, tr transport) {
		srv := startServer(t, nil)
		session := mqtt.Connect{ClientID: "half-done", CleanSession: false, KeepAlive: 30}
		sub := dialRaw(t, srv, tr)
		sub.mustConnect(session)
		sub.subscribe(1, "q2/t", 2)

		pub, _ := connectPaho(t, pahoOptions(srv, tr, "pub"))
		publish(t, pub, "q2/t", 2, false, []byte("x"))
		got := sub.readPublish()
		require.Equal(t, byte(2), got.QoS)
		sub.write(mqtt.AppendAck(nil, mqtt.TypePubrec, got.PacketID))
		h, body := sub.next()
		require.Equal(t, mqtt.TypePubrel, h.Type)
		id, err := mqtt.DecodeAck(body)
		require.NoError(t, err)
		require.Equal(t, got.PacketID, id)
		require.NoError(t, sub.nc.Close()) // gone before PUBCOMP

		again := dialRaw(t, srv, tr)
		require.True(t, again.mustConnect(session))
		h, body = again.next()
		require.Equal(t, mqtt.TypePubrel, h.Type, "PUBREL resent, not the PUBLISH")
		id, err = mqtt.DecodeAck(body)
		require.NoError(t, err)
		require.Equal(t, got.PacketID, id)
		again.write(mqtt.AppendAck(nil, mqtt.TypePubcomp, id))

		publish(t, pub, "q2/t", 2, false, []byte("y"))
		next := again.readPublish()
		require.Equal(t, "y", string(next.Payload))
		require.False(t, next.Dup)
	})
}

// B1: a second connection with the same client id takes the session over.
func TestInteropTakeover(t *testing.T) {
	forEachTransport(t, func(t *testing.T, tr transport) {
		srv := startServer(t, nil)
		watcher, wills := connectWithInbox(t, srv, tr, "watcher")
		subscribe(t, watcher, "takeover/will", 1)

		lost := make(chan error, 1)
		first, _ := connectPaho(t, pahoOptions(srv, tr, "same").
			SetWill("takeover/will", "first gone", 1, false).
			SetConnectionLostHandler(func(_ paho.Client, err error) { lost <- err }))

		// The second connection comes over the other transport: a client id
		// names one session whatever carries it.
		second, in := connectWithInbox(t, srv, tr.other(), "same")
		// [MQTT-3.1.4-2]: the older connection is closed; B1 allows 1 s.
		select {
		case err := <-lost:
			require.Error(t, err)
		case <-time.After(time.Second):
			t.Fatal("first connection still open 1 s after the takeover")
		}
		require.False(t, first.IsConnectionOpen())

		subscribe(t, second, "takeover/t", 1)
		publish(t, second, "takeover/t", 1, false, []byte("still here"))
		got := in.waitCount(t, 1)
		require.Equal(t, "still here", string(got[0].Payload))
		require.True(t, second.IsConnectionOpen())

		// docs/mqtt.md: the taken-over connection ended without DISCONNECT,
		// so its will is published (as Mosquitto does for 3.1.1).
		will := wills.waitCount(t, 1)
		require.Equal(t, "takeover/will", will[0].Topic)
		require.Equal(t, "first gone", string(will[0].Payload))
		require.Equal(t, 2, srv.Counters().Sessions, "watcher and the one 'same' session")
	})
}

// B6: the matching rules of [MQTT-4.7].
func TestInteropWildcards(t *testing.T) {
	published := []string{"a", "a/b/c", "ab", "x/b", "x/y/b", "b", "$SYS/x"}
	cases := []struct {
		filter   string
		sentinel string // a topic the filter matches, published by its own client
		want     []string
	}{
		// [MQTT-4.7.1-2]: '#' includes the parent level.
		{"a/#", "a/sentinel", []string{"a", "a/b/c"}},
		// [MQTT-4.7.1-3]: '+' is exactly one level.
		{"+/b", "sentinel/b", []string{"x/b"}},
		// [MQTT-4.7.2-1]: a leading wildcard does not match '$' topics.
		{"#", "sentinel", []string{"a", "a/b/c", "ab", "x/b", "x/y/b", "b"}},
		{"$SYS/#", "$SYS/sentinel", []string{"$SYS/x"}},
	}
	forEachTransport(t, func(t *testing.T, tr transport) {
		srv := startServer(t, nil)
		clients := make([]paho.Client, len(cases))
		inboxes := make([]*inbox, len(cases))
		for i, tc := range cases {
			clients[i], inboxes[i] = connectWithInbox(t, srv, tr, fmt.Sprintf("sub-%d", i))
			subscribe(t, clients[i], tc.filter, 1)
		}
		pub, _ := connectPaho(t, pahoOptions(srv, tr, "pub"))
		for _, topic := range published {
			// QoS 1: the PUBACK comes after the node routed the message.
			publish(t, pub, topic, 1, false, []byte(topic))
		}
		for i, tc := range cases {
			t.Run(tc.filter, func(t *testing.T) {
				publish(t, clients[i], tc.sentinel, 1, false, []byte("sentinel"))
				var got []string
				for _, m := range inboxes[i].untilSentinel(t, tc.sentinel, "sentinel") {
					// Other cases' sentinels and the node's own $SYS
					// messages are not under test here.
					if slices.Contains(published, m.Topic) {
						got = append(got, m.Topic)
					}
				}
				require.Equal(t, tc.want, got)
			})
		}
	})
}

// B9: overlapping filters on one client give one copy at the highest
// granted QoS [MQTT-3.3.5-1], capped by the publish QoS [MQTT-3.8.4-6].
func TestInteropOverlappingSubscriptions(t *testing.T) {
	forEachTransport(t, func(t *testing.T, tr transport) {
		srv := startServer(t, nil)
		sub, in := connectWithInbox(t, srv, tr, "sub")
		tok := sub.SubscribeMultiple(map[string]byte{"ov/#": 0, "ov/b": 1}, nil)
		awaitToken(t, tok)
		require.Equal(t, map[string]byte{"ov/#": 0, "ov/b": 1}, tok.(*paho.SubscribeToken).Result())
		pub, _ := connectPaho(t, pahoOptions(srv, tr, "pub"))

		for pubQoS := byte(0); pubQoS <= 2; pubQoS++ {
			t.Run(fmt.Sprintf("pub%d", pubQoS), func(t *testing.T) {
				payload := fmt.Sprintf("overlap-%d", pubQoS)
				publish(t, pub, "ov/b", pubQoS, false, []byte(payload))
				sentinel := fmt.Sprintf("sentinel-%d", pubQoS)
				publish(t, pub, "ov/c", 0, false, []byte(sentinel))
				var copies []message
				for _, m := range in.untilSentinel(t, "ov/c", sentinel) {
					if string(m.Payload) == payload {
						copies = append(copies, m)
					}
				}
				require.Len(t, copies, 1, "one copy per client")
				require.Equal(t, min(pubQoS, 1), copies[0].QoS)
			})
		}

		t.Run("resubscribe_replaces", func(t *testing.T) {
			// [MQTT-3.8.4-3]: the same filter again replaces the old
			// subscription; ov/b at QoS 0 leaves no QoS 1 grant behind.
			subscribe(t, sub, "ov/b", 0)
			publish(t, pub, "ov/b", 1, false, []byte("downgraded"))
			publish(t, pub, "ov/c", 0, false, []byte("sentinel-resub"))
			var copies []message
			for _, m := range in.untilSentinel(t, "ov/c", "sentinel-resub") {
				if string(m.Payload) == "downgraded" {
					copies = append(copies, m)
				}
			}
			require.Len(t, copies, 1)
			require.Equal(t, byte(0), copies[0].QoS)
			require.Equal(t, 2, srv.Counters().Subscriptions)
		})
	})
}

func TestInteropSharedSubscription(t *testing.T) {
	forEachTransport(t, func(t *testing.T, tr transport) {
		srv := startServer(t, nil)
		const members, n = 3, 300
		pub, _ := connectPaho(t, pahoOptions(srv, tr, "pub"))
		// Shared subscriptions receive no retained messages (docs/mqtt.md).
		publish(t, pub, "jobs/retained", 1, true, []byte("retained-job"))
		clients := make([]paho.Client, members)
		inboxes := make([]*inbox, members)
		for i := range clients {
			clients[i], inboxes[i] = connectWithInbox(t, srv, tr, fmt.Sprintf("worker-%d", i))
			subscribe(t, clients[i], "$share/g/jobs/#", 1)
			subscribe(t, clients[i], fmt.Sprintf("done/%d", i), 1)
		}
		tokens := make([]paho.Token, n)
		for i := range tokens {
			tokens[i] = pub.Publish(fmt.Sprintf("jobs/%d", i%7), 1, false, fmt.Sprint(i))
		}
		for _, tok := range tokens {
			awaitToken(t, tok)
		}

		deliveries := make(map[string]int, n)
		perMember := make([]int, members)
		for i, c := range clients {
			// A QoS 1 sentinel queues behind the member's QoS 1 jobs, so
			// every job routed to it arrives first.
			sentinelTopic := fmt.Sprintf("done/%d", i)
			publish(t, c, sentinelTopic, 1, false, []byte("sentinel"))
			for _, m := range inboxes[i].untilSentinel(t, sentinelTopic, "sentinel") {
				require.True(t, strings.HasPrefix(m.Topic, "jobs/"), "topic %q", m.Topic)
				require.False(t, m.Retained)
				deliveries[string(m.Payload)]++
				perMember[i]++
			}
		}
		require.Len(t, deliveries, n, "every message delivered")
		for payload, count := range deliveries {
			require.Equal(t, 1, count, "message %s went to exactly one member", payload)
		}
		for i, got := range perMember {
			require.Positive(t, got, "member %d got none", i)
		}
	})
}

// B10: the node keeps at most limits.max_inflight QoS 1 messages
// unacknowledged per client; acknowledgements release the rest in order.
func TestInteropInflightWindow(t *testing.T) {
	const window, total = 20, 200
	forEachTransport(t, func(t *testing.T, tr transport) {
		srv := startServer(t, func(c *broker.Config) { c.Limits.MaxInflight = window })
		sub := dialRaw(t, srv, tr)
		sub.mustConnect(mqtt.Connect{ClientID: "slow", CleanSession: true})
		sub.subscribe(1, "flow/t", 1)

		pub, _ := connectPaho(t, pahoOptions(srv, tr, "pub"))
		tokens := make([]paho.Token, total)
		for i := range tokens {
			tokens[i] = pub.Publish("flow/t", 1, false, fmt.Sprintf("%03d", i))
		}
		for _, tok := range tokens {
			awaitToken(t, tok)
		}

		// requireQuiet proves the node sent nothing more: a QoS 0 message is
		// not held by the window, so it overtakes the queue and arrives
		// right after whatever the node had already put on the wire.
		requireQuiet := func(round int) {
			t.Helper()
			sentinel := fmt.Sprintf("sentinel-%d", round)
			publish(t, pub, "flow/t", 0, false, []byte(sentinel))
			got := sub.readPublish()
			require.Equal(t, byte(0), got.QoS, "a QoS 1 message beyond the window")
			require.Equal(t, sentinel, string(got.Payload))
		}

		next := 0
		for round := 0; next < total; round++ {
			batch := min(window, total-next)
			ids := make([]uint16, 0, batch)
			seen := make(map[uint16]bool, batch)
			for range batch {
				got := sub.readPublish()
				require.Equal(t, byte(1), got.QoS)
				require.Equal(t, fmt.Sprintf("%03d", next), string(got.Payload), "order preserved")
				// [MQTT-2.3.1-2]: ids of unacknowledged messages are distinct.
				require.False(t, seen[got.PacketID], "packet id %d reused while inflight", got.PacketID)
				seen[got.PacketID] = true
				ids = append(ids, got.PacketID)
				next++
			}
			requireQuiet(round)
			sub.puback(ids...)
		}
		requireQuiet(-1)
		require.Zero(t, srv.Counters().Dropped)
	})
}

// ---------------------------------------------------------------- WebSocket

func TestWebSocketAnyPath(t *testing.T) {
	srv := startServer(t, nil)
	cases := []struct {
		name  string
		path  string
		offer []string
		want  string
	}{
		{"root", "/", []string{"mqtt"}, "mqtt"},
		{"mqtt", "/mqtt", []string{"mqtt"}, "mqtt"},
		{"nested", "/x/y", []string{"mqtt"}, "mqtt"},
		{"mqttv3.1", "/mqtt", []string{"mqttv3.1"}, "mqttv3.1"},
		{"mqttv3", "/mqtt", []string{"mqttv3"}, "mqttv3"},
		{"other_first", "/", []string{"chat", "mqtt"}, "mqtt"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			d := websocket.Dialer{Subprotocols: tc.offer, HandshakeTimeout: opTimeout}
			ws, resp, err := d.Dial("ws://"+srv.Addr().String()+tc.path, nil)
			require.NoError(t, err)
			_ = resp.Body.Close()
			require.Equal(t, http.StatusSwitchingProtocols, resp.StatusCode)
			// [MQTT-6.0.0-4]: the server selects an offered MQTT subprotocol.
			require.Equal(t, tc.want, resp.Header.Get("Sec-WebSocket-Protocol"))
			require.Equal(t, tc.want, ws.Subprotocol())
			c := newRawClient(t, wsconn.New(ws))
			c.mustConnect(mqtt.Connect{ClientID: tc.name, CleanSession: true})
		})
	}
	for _, path := range []string{"/", "/x/y"} {
		t.Run("paho"+path, func(t *testing.T) {
			opts := pahoOptions(srv, transportWS, "paho"+strings.ReplaceAll(path, "/", "-"))
			opts.Servers = nil
			opts.AddBroker("ws://" + srv.Addr().String() + path)
			_, tok := connectPaho(t, opts)
			require.Equal(t, mqtt.Accepted, tok.ReturnCode())
		})
	}
}

// [MQTT-6.0.0-1]: MQTT travels in binary frames; a text frame closes the
// connection.
func TestWebSocketTextFrameCloses(t *testing.T) {
	connect := (&mqtt.Connect{ClientID: "texter", CleanSession: true}).AppendTo(nil)
	cases := []struct {
		name  string
		setup func(t *testing.T, ws *websocket.Conn) // before the text frame
		text  []byte
	}{
		{"connect_as_text", func(*testing.T, *websocket.Conn) {}, connect},
		{"after_connect", func(t *testing.T, ws *websocket.Conn) {
			require.NoError(t, ws.WriteMessage(websocket.BinaryMessage, connect))
			require.NoError(t, ws.SetReadDeadline(time.Now().Add(opTimeout)))
			mt, data, err := ws.ReadMessage()
			require.NoError(t, err)
			require.Equal(t, websocket.BinaryMessage, mt)
			require.Equal(t, mqtt.AppendConnack(nil, false, mqtt.Accepted), data)
		}, mqtt.AppendPingreq(nil)},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			srv := startServer(t, nil)
			d := websocket.Dialer{Subprotocols: []string{"mqtt"}, HandshakeTimeout: opTimeout}
			ws, resp, err := d.Dial(transportWS.url(srv), nil)
			require.NoError(t, err)
			_ = resp.Body.Close()
			t.Cleanup(func() { _ = ws.Close() })
			tc.setup(t, ws)

			require.NoError(t, ws.WriteMessage(websocket.TextMessage, tc.text))
			require.NoError(t, ws.SetReadDeadline(time.Now().Add(opTimeout)))
			mt, data, err := ws.ReadMessage()
			require.Error(t, err, "want the connection closed, got frame type %d % x", mt, data)
			var ne net.Error
			if errors.As(err, &ne) && ne.Timeout() {
				t.Fatalf("connection still open after %v", opTimeout)
			}
			waitFor(t, opTimeout, func() bool { return srv.Counters().Connections == 0 })
		})
	}
}

// C1: an upgrade that offers no MQTT subprotocol is not an MQTT session
// (it is refused today; the JSON-RPC endpoint will take it later).
func TestWebSocketWithoutMQTTSubprotocol(t *testing.T) {
	cases := []struct {
		name  string
		offer []string
	}{
		{"none", nil},
		{"other", []string{"chat"}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			srv := startServer(t, nil)
			d := websocket.Dialer{Subprotocols: tc.offer, HandshakeTimeout: opTimeout}
			ws, resp, err := d.Dial(transportWS.url(srv), nil)
			if err != nil {
				require.ErrorIs(t, err, websocket.ErrBadHandshake)
				require.NotNil(t, resp)
				_ = resp.Body.Close()
				require.NotEqual(t, http.StatusSwitchingProtocols, resp.StatusCode)
				require.Zero(t, srv.Counters().Connections)
				return
			}
			t.Cleanup(func() { _ = ws.Close() })
			require.NotContains(t, []string{"mqtt", "mqttv3.1", "mqttv3"}, ws.Subprotocol())
			connect := (&mqtt.Connect{ClientID: "not-mqtt", CleanSession: true}).AppendTo(nil)
			require.NoError(t, ws.WriteMessage(websocket.BinaryMessage, connect))
			require.NoError(t, ws.SetReadDeadline(time.Now().Add(quietWindow)))
			if mt, data, err := ws.ReadMessage(); err == nil {
				require.False(t, mt == websocket.BinaryMessage && len(data) > 0 && data[0] == byte(mqtt.TypeConnack)<<4,
					"a non-MQTT upgrade answered CONNECT with CONNACK")
			}
			// Such an upgrade is the JSON-RPC endpoint: no MQTT session.
			require.Zero(t, srv.Counters().Sessions)
		})
	}
}

// [MQTT-6.0.0-2]: a packet may span frames and a frame may hold several
// packets.
func TestWebSocketFraming(t *testing.T) {
	srv := startServer(t, nil)
	d := websocket.Dialer{Subprotocols: []string{"mqtt"}, HandshakeTimeout: opTimeout}
	ws, resp, err := d.Dial(transportWS.url(srv), nil)
	require.NoError(t, err)
	_ = resp.Body.Close()
	c := newRawClient(t, wsconn.New(ws))

	connect := (&mqtt.Connect{ClientID: "framer", CleanSession: true}).AppendTo(nil)
	for _, part := range [][]byte{connect[:1], connect[1:3], connect[3:]} {
		require.NoError(t, ws.WriteMessage(websocket.BinaryMessage, part))
	}
	h, body := c.next()
	require.Equal(t, mqtt.TypeConnack, h.Type)
	require.Equal(t, []byte{0, mqtt.Accepted}, body)

	several := mqtt.AppendSubscribe(nil, 1, []mqtt.Subscription{{Filter: []byte("f/t"), QoS: 0}})
	several = (&mqtt.Publish{Topic: []byte("f/t"), Payload: []byte("one frame")}).AppendTo(several)
	several = mqtt.AppendPingreq(several)
	require.NoError(t, ws.WriteMessage(websocket.BinaryMessage, several))
	h, _ = c.next()
	require.Equal(t, mqtt.TypeSuback, h.Type)
	got := c.readPublish()
	require.Equal(t, "one frame", string(got.Payload))
	h, _ = c.next()
	require.Equal(t, mqtt.TypePingresp, h.Type)
}

// BenchmarkInteropPublish measures a message end to end through Paho: from
// the publisher's Publish call to the subscriber's handler, with the node,
// both clients and their allocations in one process (64-byte payloads,
// publishes pipelined).
func BenchmarkInteropPublish(b *testing.B) {
	const maxAhead = 500
	for _, tr := range transports {
		for _, qos := range []byte{0, 1} {
			b.Run(fmt.Sprintf("%s/qos%d", tr, qos), func(b *testing.B) {
				srv := startServer(b, nil)
				var received atomic.Int64
				count := func(paho.Client, paho.Message) { received.Add(1) }
				sub, _ := connectPaho(b, pahoOptions(srv, tr, "sub").SetDefaultPublishHandler(count))
				subscribe(b, sub, "bench/t", qos)
				pub, _ := connectPaho(b, pahoOptions(srv, tr, "pub"))
				payload := make([]byte, 64)

				b.ReportAllocs()
				b.ResetTimer()
				for i := range b.N {
					// Keep at most maxAhead messages between publisher and
					// subscriber: beyond limits.max_queued the node drops
					// the oldest queued QoS 1 message by design.
					if ahead := int64(i) - received.Load(); ahead >= maxAhead {
						waitFor(b, time.Minute, func() bool { return int64(i)-received.Load() < maxAhead/2 })
					}
					pub.Publish("bench/t", qos, false, payload)
				}
				waitFor(b, time.Minute, func() bool { return received.Load() >= int64(b.N) })
				b.StopTimer()
				require.Zero(b, srv.Counters().SlowConsumers)
				require.Zero(b, srv.Counters().Dropped)
			})
		}
	}
}
