package broker_test

// Resource limits seen from outside (reliability-cases.md B8, H1, H4, H5,
// H9): slow consumers, keepalive, connect timeout, connection cap, and
// connection churn. Each test measures what it bounds and logs the figure.

import (
	"encoding/binary"
	"fmt"
	"io"
	"net"
	"runtime"
	"sync"
	"testing"
	"time"

	paho "github.com/eclipse/paho.mqtt.golang"
	"github.com/stretchr/testify/require"

	"github.com/pubsub/pubsub/broker"
)

// TestSlowConsumerDisconnected (H1): a subscriber that never reads is closed
// as a slow consumer, by whichever limit it crosses first, while a healthy
// subscriber of the same topic receives every message in order.
func TestSlowConsumerDisconnected(t *testing.T) {
	const (
		messages    = 200
		payloadSize = 64 << 10
		// window is how far the publisher may run ahead of the healthy
		// subscriber. The node counts a write's whole buffer as pending
		// until Write returns, even once the client has read it, so the
		// healthy client's pending bytes reach up to 2 x window + 1
		// messages: 9 x 64 KiB stays under either max_pending_bytes below,
		// and only the stalled client can trip a limit.
		window = 4
	)
	tests := []struct {
		name         string
		writeTimeout time.Duration
		maxPending   broker.ByteSize
		// tripWithin is measured from the end of publishing.
		tripWithin time.Duration
	}{
		{
			// 12.8 MiB published fits under 64 MiB: only the write deadline
			// can trip. The blocked write started before publishing ended, so
			// it fails at most write_timeout later; 1 s is the H1 margin.
			name:         "write-timeout",
			writeTimeout: time.Second,
			maxPending:   64 << 20,
			tripWithin:   time.Second + time.Second,
		},
		{
			// A 1-minute write deadline cannot trip within the test: the
			// close can only come from max_pending_bytes, which trips while
			// publishing (kernel buffers hold a few MiB, 12.8 MiB are sent).
			name:         "max-pending-bytes",
			writeTimeout: time.Minute,
			maxPending:   1 << 20,
			tripWithin:   time.Second,
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			srv := startServer(t, func(c *broker.Config) {
				c.Limits.WriteTimeout = broker.Duration(tt.writeTimeout)
				c.Limits.MaxPendingBytes = tt.maxPending
			})

			slow := dialWire(t, srv)
			tcp, ok := slow.nc.(*net.TCPConn)
			require.True(t, ok)
			require.NoError(t, tcp.SetReadBuffer(128))
			slow.connect("slow")
			slow.send(wireSubscribe(1, 0, "firehose"))
			slow.expect(wireSuback(1, 0))
			// From here on the slow client reads nothing.

			received := make(chan []byte, messages)
			healthy, _ := connectPaho(t, pahoOptions(srv, transportTCP, "healthy"))
			awaitToken(t, healthy.Subscribe("firehose", 0, func(_ paho.Client, m paho.Message) {
				received <- m.Payload() // never blocks: the channel holds every message
			}))

			pub := dialWire(t, srv)
			pub.connect("publisher")

			var got [][]byte
			await := func(n int) {
				t.Helper()
				deadline := time.After(opTimeout)
				for len(got) < n {
					select {
					case m := <-received:
						got = append(got, m)
					case <-deadline:
						t.Fatalf("healthy subscriber has %d of %d messages after %v; node: %+v", len(got), n, opTimeout, srv.Counters())
					}
				}
			}
			payload := make([]byte, payloadSize)
			start := time.Now()
			for i := range messages {
				await(i - window + 1)
				binary.BigEndian.PutUint32(payload, uint32(i))
				pub.send(wirePublish("firehose", 0, 0, payload))
			}
			published := time.Now()

			waitFor(t, tt.tripWithin, func() bool { return srv.Counters().SlowConsumers > 0 })
			t.Logf("published %d x %d KiB in %v; slow consumer closed %v after publishing ended",
				messages, payloadSize>>10, published.Sub(start).Round(time.Millisecond), time.Since(published).Round(time.Millisecond))

			// The slow connection is closed, not merely stalled: its read
			// loop ended and its session is gone, leaving the healthy
			// subscriber and the publisher. (The slow socket itself cannot
			// tell promptly: its kernel dropped segments it had no room for,
			// so the node's FIN and RST lie beyond its window until the
			// retransmit backoff brings them in.)
			waitFor(t, opTimeout, func() bool {
				c := srv.Counters()
				return c.Connections == 2 && c.Sessions == 2
			})

			// The healthy subscriber got everything, in order, and is still
			// connected; only the slow one was counted.
			await(messages)
			for i, m := range got {
				require.Len(t, m, payloadSize, "message %d", i)
				require.Equal(t, uint32(i), binary.BigEndian.Uint32(m), "message %d out of order", i)
			}
			require.True(t, healthy.IsConnectionOpen(), "healthy subscriber was disconnected")
			require.Equal(t, uint64(1), srv.Counters().SlowConsumers)
		})
	}
}

// TestKeepaliveEnforced (B8): a silent client is closed after 1.5 x its
// keepalive [MQTT-3.1.2-24]; with limits.max_keepalive set, a keepalive
// above it (or 0) is refused with CONNACK 2 (pinned in docs/mqtt.md).
func TestKeepaliveEnforced(t *testing.T) {
	t.Parallel()

	t.Run("silent-client-closed-at-1.5x", func(t *testing.T) {
		t.Parallel()
		srv := startServer(t, nil)
		c := dialWire(t, srv)
		c.send(wirePacket(0x10, wireConnectBody("MQTT", 4, 0x02, 1, "keepalive-1s")))
		c.expect(wireConnackAccepted)
		// CONNECT is the last packet; the node arms its deadline after
		// reading it, so the close cannot come before 1.5 s from the write.
		silent := c.expectClosed(4 * time.Second)
		t.Logf("keepalive 1 s: closed %v after the last packet", silent.Round(time.Millisecond))
		require.GreaterOrEqual(t, silent, 1500*time.Millisecond, "closed before 1.5 x keepalive")
		require.LessOrEqual(t, silent, 2500*time.Millisecond, "not closed within 1.5 x keepalive + 1 s")
	})

	t.Run("max-keepalive", func(t *testing.T) {
		t.Parallel()
		srv := startServer(t, func(c *broker.Config) { c.Limits.MaxKeepalive = broker.Duration(300 * time.Second) })
		for _, tc := range []struct {
			keepalive uint16
			reply     []byte
		}{
			{65535, wireConnackIDRejected},
			{301, wireConnackIDRejected},
			{0, wireConnackIDRejected}, // 0 would disable the limit altogether
			{300, wireConnackAccepted},
			{1, wireConnackAccepted},
		} {
			t.Run(fmt.Sprintf("keepalive-%d", tc.keepalive), func(t *testing.T) {
				c := dialWire(t, srv)
				c.send(wirePacket(0x10, wireConnectBody("MQTT", 4, 0x02, tc.keepalive, "")))
				c.expect(tc.reply)
				if tc.reply[3] == 0 {
					c.expectOpen()
					return
				}
				c.expectClosed(wireBound)
			})
		}
	})
}

// TestConnectTimeoutClosesIdleSockets (H4): sockets that do not complete
// CONNECT are closed at limits.connect_timeout, counted from the accept:
// silent ones, one that trickles CONNECT a byte per 400 ms, and one whose
// first byte comes just before the timeout (it must not get a second one).
func TestConnectTimeoutClosesIdleSockets(t *testing.T) {
	t.Parallel()
	const (
		timeout = time.Second
		// margin absorbs timer and scheduling delay under -race on a loaded
		// machine; it is smaller than the late trickler's head start, so a
		// timeout restarted by the first byte would be caught.
		margin = 700 * time.Millisecond
		silent = 50
		every  = 400 * time.Millisecond
	)
	srv := startServer(t, func(c *broker.Config) { c.Limits.ConnectTimeout = broker.Duration(timeout) })

	type probe struct {
		name       string
		trickleAt  time.Duration // first byte; negative: never sends
		start      time.Time     // before the dial, so no accept precedes it
		nc         net.Conn
		closedWith error
		elapsed    time.Duration
		unexpected int // bytes the node sent
	}
	var probes []*probe
	for i := range silent {
		probes = append(probes, &probe{name: fmt.Sprintf("silent-%d", i), trickleAt: -1})
	}
	probes = append(probes,
		&probe{name: "trickle-from-start", trickleAt: 0},
		&probe{name: "trickle-first-byte-late", trickleAt: 900 * time.Millisecond},
	)
	for _, p := range probes {
		p.start = time.Now()
		nc, err := net.DialTimeout("tcp", srv.Addr().String(), wireBound)
		require.NoError(t, err)
		t.Cleanup(func() { _ = nc.Close() })
		p.nc = nc
	}

	// Readers end by their own deadline; tricklers end when the node
	// closes their socket or, failing that, when the readers are done.
	stop := make(chan struct{})
	var readers, tricklers sync.WaitGroup
	connect := wireConnect("trickler")
	for _, p := range probes {
		readers.Add(1)
		go func() {
			defer readers.Done()
			_ = p.nc.SetReadDeadline(p.start.Add(timeout + 3*time.Second))
			var buf [64]byte
			n, err := p.nc.Read(buf[:])
			p.elapsed, p.unexpected, p.closedWith = time.Since(p.start), n, err
		}()
		if p.trickleAt < 0 {
			continue
		}
		tricklers.Add(1)
		go func() {
			defer tricklers.Done()
			next := time.NewTimer(time.Until(p.start.Add(p.trickleAt)))
			defer next.Stop()
			for _, b := range connect {
				select {
				case <-next.C:
				case <-stop:
					return
				}
				if _, err := p.nc.Write([]byte{b}); err != nil {
					return // closed by the node
				}
				next.Reset(every)
			}
		}()
	}
	readers.Wait()
	close(stop)
	tricklers.Wait()

	var worst time.Duration
	for _, p := range probes {
		require.Zero(t, p.unexpected, "%s: node sent bytes to a socket without CONNECT", p.name)
		require.True(t, wireClosedErr(p.closedWith), "%s: want closed, got %v", p.name, p.closedWith)
		require.GreaterOrEqual(t, p.elapsed, timeout, "%s: closed before the connect timeout", p.name)
		require.LessOrEqual(t, p.elapsed, timeout+margin, "%s: closed late", p.name)
		worst = max(worst, p.elapsed)
	}
	t.Logf("%d sockets closed by the %v connect timeout; slowest after %v", len(probes), timeout, worst.Round(time.Millisecond))
}

// TestMaxConnectionsRefusesWithCode3 (H5): past limits.max_connections a
// CONNECT gets CONNACK 3 and is closed; a slot freed by a disconnect is
// given to the next client.
func TestMaxConnectionsRefusesWithCode3(t *testing.T) {
	t.Parallel()
	const maxConns = 3

	t.Run("sequential", func(t *testing.T) {
		t.Parallel()
		srv := startServer(t, func(c *broker.Config) { c.Limits.MaxConnections = maxConns })
		clients := make([]*wireConn, maxConns)
		for i := range clients {
			clients[i] = dialWire(t, srv)
			clients[i].connect(fmt.Sprintf("max-%d", i))
		}
		over := dialWire(t, srv)
		over.send(wireConnect("max-over"))
		over.expect(wireConnackUnavail)
		over.expectClosed(wireBound)

		clients[0].send(wireDisconnect)
		clients[0].expectClosed(wireBound)
		waitFor(t, opTimeout, func() bool { return srv.Counters().Connections == maxConns-1 })

		again := dialWire(t, srv)
		again.connect("max-again")
		again.expectOpen()
		for _, c := range clients[1:] {
			c.expectOpen()
		}
		full := dialWire(t, srv)
		full.send(wireConnect("max-full-again"))
		full.expect(wireConnackUnavail)
		full.expectClosed(wireBound)
	})

	t.Run("concurrent-storm", func(t *testing.T) {
		t.Parallel()
		const storm = 24
		srv := startServer(t, func(c *broker.Config) { c.Limits.MaxConnections = maxConns })
		conns := make([]net.Conn, storm)
		for i := range conns {
			nc, err := net.DialTimeout("tcp", srv.Addr().String(), wireBound)
			require.NoError(t, err)
			t.Cleanup(func() { _ = nc.Close() })
			conns[i] = nc
		}
		// Send every CONNECT at once so the node judges them concurrently.
		replies := make([][]byte, storm)
		errs := make([]error, storm)
		var ready, wg sync.WaitGroup
		gate := make(chan struct{})
		for i, nc := range conns {
			ready.Add(1)
			wg.Add(1)
			go func() {
				defer wg.Done()
				ready.Done()
				<-gate
				_ = nc.SetDeadline(time.Now().Add(opTimeout))
				if _, errs[i] = nc.Write(wireConnect(fmt.Sprintf("storm-%d", i))); errs[i] != nil {
					return
				}
				replies[i] = make([]byte, 4)
				_, errs[i] = io.ReadFull(nc, replies[i])
			}()
		}
		ready.Wait()
		close(gate)
		wg.Wait()

		accepted := 0
		for i := range conns {
			require.NoError(t, errs[i], "client %d", i)
			switch replies[i][3] {
			case 0:
				accepted++
			case 3:
			default:
				t.Fatalf("client %d: unexpected CONNACK % x", i, replies[i])
			}
		}
		require.Equal(t, maxConns, accepted, "clients admitted past max_connections %d", maxConns)
		require.Equal(t, int64(maxConns), srv.Counters().Connections)
	})
}

// TestConnectDisconnectCyclesLeaveNothingBehind (H9): 200 connections that
// come and go, politely or not, with and without subscriptions and wills,
// leave no connection, session, subscription or goroutine behind.
func TestConnectDisconnectCyclesLeaveNothingBehind(t *testing.T) {
	const cycles = 200
	srv := startServer(t, nil)
	baseline := runtime.NumGoroutine()

	for i := range cycles {
		c := dialWire(t, srv)
		switch i % 4 {
		case 0: // CONNECT, DISCONNECT
			c.connect("")
			c.send(wireDisconnect)
			c.expectClosed(wireBound)
		case 1: // subscribe, DISCONNECT
			c.connect("")
			c.send(wireSubscribe(1, 1, fmt.Sprintf("cycle/%d/#", i), "cycle/+"))
			c.expect(wireSuback(1, 1, 1))
			c.send(wireDisconnect)
			c.expectClosed(wireBound)
		case 2: // subscribe, then vanish without DISCONNECT
			c.connect(fmt.Sprintf("cycle-%d", i))
			c.send(wireSubscribe(1, 0, "cycle/+"))
			c.expect(wireSuback(1, 0))
		case 3: // a will, published on the abrupt close [MQTT-3.1.2-8] to a topic nobody reads
			c.send(wirePacket(0x10, wireConnectBody("MQTT", 4, 0x06, 60, "", "wills/cycle", "gone")))
			c.expect(wireConnackAccepted)
		}
		require.NoError(t, c.nc.Close())
	}

	waitFor(t, opTimeout, func() bool {
		c := srv.Counters()
		return c.Connections == 0 && c.Sessions == 0 && c.Subscriptions == 0
	})
	// H9: goroutines back to the baseline (±5); flushers may idle briefly.
	var now int
	waitFor(t, 15*time.Second, func() bool {
		now = runtime.NumGoroutine()
		return now <= baseline+5
	})
	t.Logf("%d cycles: goroutines %d before, %d after", cycles, baseline, now)
}
