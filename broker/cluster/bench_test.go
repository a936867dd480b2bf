package cluster

import (
	"errors"
	"fmt"
	"runtime"
	"sync/atomic"
	"testing"
	"time"
)

// interestTable builds the routing table of a node that sees nodes remote
// members with filtersPerNode filters each: a mix of literal filters,
// single-level and multi-level wildcards, like a chat or telemetry load.
func interestTable(nodes, filtersPerNode, cacheSize int) *interest {
	in := newInterest("self", cacheSize, time.Now())
	for n := range nodes {
		name := fmt.Sprint("node-", n)
		filters := make([]string, 0, filtersPerNode)
		for i := range filtersPerNode {
			switch i % 3 {
			case 0:
				filters = append(filters, fmt.Sprintf("chat/room%d/%d", i, n))
			case 1:
				filters = append(filters, fmt.Sprintf("sensors/%d/+/temp", i))
			default:
				filters = append(filters, fmt.Sprintf("devices/%d/#", i))
			}
		}
		in.memberUp(name)
		in.apply(interestRecord{node: name, version: 1, filters: filters}, time.Now())
	}
	return in
}

func BenchmarkInterested(b *testing.B) {
	b.Run("3nodes-1k-filters/cache-hit", func(b *testing.B) {
		in := interestTable(3, 1000, 0)
		topic := []byte("sensors/301/kitchen/temp")
		dst := in.appendMatches(nil, topic)
		if len(dst) != 3 {
			b.Fatalf("matched %v", dst)
		}
		b.ReportAllocs()
		b.ResetTimer()
		for b.Loop() {
			dst = in.appendMatches(dst[:0], topic)
		}
	})
	b.Run("3nodes-1k-filters/cache-miss", func(b *testing.B) {
		in := interestTable(3, 1000, -1) // cache disabled: every lookup walks the trie
		topic := []byte("devices/302/a/b")
		var dst []string
		b.ReportAllocs()
		b.ResetTimer()
		for b.Loop() {
			dst = in.appendMatches(dst[:0], topic)
		}
	})
}

func BenchmarkEncodeMessageFrame(b *testing.B) {
	m := Message{Topic: []byte("sensors/301/kitchen/temp"), Payload: make([]byte, 128), QoS: 1, Origin: "node-1", ID: make([]byte, 16)}
	buf := make([]byte, 0, 512)
	b.ReportAllocs()
	b.SetBytes(int64(len(m.Payload)))
	for b.Loop() {
		buf = appendMessageFrame(buf[:0], &m)
	}
}

// BenchmarkSend measures peer-link throughput end to end on loopback:
// Send on one node until every message reached OnMessage on the other.
func BenchmarkSend(b *testing.B) {
	for _, size := range []int{128, 4096} {
		b.Run(fmt.Sprintf("payload-%d", size), func(b *testing.B) {
			var got atomic.Int64
			nodes := startCluster(b, []string{"n1", "n2"}, func(c *Config) {
				if c.Name == "n2" {
					c.OnMessage = func(string, Message) { got.Add(1) }
				}
			})
			n1 := nodes[0]
			m := Message{Topic: []byte("bench/topic"), Payload: make([]byte, size), Origin: "n1", ID: make([]byte, 16)}
			eventually(b, 5*time.Second, func() bool {
				st := n1.Stats()
				return len(st.Peers) == 1 && st.Peers[0].Connected
			}, "link not up")
			b.ReportAllocs()
			b.SetBytes(int64(size))
			b.ResetTimer()
			for range b.N {
				for {
					err := n1.Send("n2", m)
					if err == nil {
						break
					}
					if !errors.Is(err, ErrQueueFull) {
						b.Fatal(err)
					}
					runtime.Gosched() // the writer is behind: let it run
				}
			}
			eventually(b, 30*time.Second, func() bool { return got.Load() == int64(b.N) },
				"received %d of %d", got.Load(), b.N)
			b.StopTimer()
		})
	}
}
