package store

import (
	"context"
	"fmt"
	"path/filepath"
	"testing"
	"time"
)

const benchBatch = 100

// benchTopics are made once so the benchmark measures the store, not Sprintf.
var benchTopics = func() []string {
	out := make([]string, benchBatch)
	for i := range out {
		out[i] = fmt.Sprintf("site%d/dev%d", i%10, i)
	}
	return out
}()

func benchMessages(dst []Message, gen *IDGenerator, payload []byte) []Message {
	dst = dst[:0]
	for _, t := range benchTopics {
		dst = append(dst, Message{ID: gen.Next(), Topic: t, Payload: payload, QoS: 1})
	}
	return dst
}

// BenchmarkAppend measures batched appends; one op is a batch of 100
// messages with 64-byte payloads.
func BenchmarkAppend(b *testing.B) {
	payload := make([]byte, 64)
	cases := []struct {
		name string
		open func(b *testing.B) Store
	}{
		{"memory", func(b *testing.B) Store {
			s, err := OpenMemory(Options{MaxBytes: 1 << 40})
			if err != nil {
				b.Fatal(err)
			}
			return s
		}},
		{"disk", func(b *testing.B) Store { // Sync always: one fsync per batch
			s, err := OpenDisk(Options{Dir: filepath.Join(b.TempDir(), "s")})
			if err != nil {
				b.Fatal(err)
			}
			return s
		}},
		{"disk-sync100ms", func(b *testing.B) Store {
			s, err := OpenDisk(Options{Dir: filepath.Join(b.TempDir(), "s"), Sync: DefaultSyncInterval})
			if err != nil {
				b.Fatal(err)
			}
			return s
		}},
	}
	for _, c := range cases {
		b.Run(c.name, func(b *testing.B) {
			s := c.open(b)
			defer s.Close()
			gen := NewIDGenerator(1, nil)
			var batch []Message
			b.ReportAllocs()
			for b.Loop() {
				batch = benchMessages(batch, gen, payload)
				if err := s.Append(batch); err != nil {
					b.Fatal(err)
				}
			}
			b.ReportMetric(float64(b.N*benchBatch)/b.Elapsed().Seconds(), "msgs/s")
		})
	}
}

// BenchmarkQueryLast measures last=N history queries over one million stored
// messages (1,000 topics in 10 first levels, 64-byte payloads). The dataset
// is built once per run; it takes a while, so it is skipped under -short.
func BenchmarkQueryLast(b *testing.B) {
	if testing.Short() {
		b.Skip("builds a 1M-message store")
	}
	const total, batch = 1_000_000, 1000
	payload := make([]byte, 64)
	clock := newClock()
	gen := NewIDGenerator(1, func() time.Time { clock.Advance(time.Millisecond / 10); return clock.Now() })
	disk, err := OpenDisk(Options{Dir: filepath.Join(b.TempDir(), "s"), Sync: time.Second})
	if err != nil {
		b.Fatal(err)
	}
	defer disk.Close()
	memory, err := OpenMemory(Options{MaxBytes: 1 << 40})
	if err != nil {
		b.Fatal(err)
	}
	defer memory.Close()
	for i := 0; i < total; i += batch {
		msgs := make([]Message, batch)
		for j := range msgs {
			n := i + j
			msgs[j] = Message{ID: gen.Next(), Topic: fmt.Sprintf("site%d/dev%d", n%10, n/10%100), Payload: payload}
		}
		if err := disk.Append(msgs); err != nil {
			b.Fatal(err)
		}
		if err := memory.Append(msgs); err != nil {
			b.Fatal(err)
		}
	}
	if err := disk.(*diskStore).db.Flush(); err != nil {
		b.Fatal(err)
	}
	stores := []struct {
		name string
		s    Store
	}{{"disk", disk}, {"memory", memory}}
	queries := []struct {
		name   string
		filter string
	}{
		{"", "site3/dev42"},      // exact topic: per-topic index
		{"level-", "site3/+"},    // literal first level: level records
		{"wildcard-", "+/dev42"}, // wildcard first level: global index
	}
	for _, st := range stores {
		for _, q := range queries {
			for _, last := range []int{1, 100} {
				name := fmt.Sprintf("%s-1M-%slast%d", st.name, q.name, last)
				b.Run(name, func(b *testing.B) {
					query := Query{Filter: q.filter, Newest: true, Limit: last}
					b.ReportAllocs()
					for b.Loop() {
						got, err := st.s.Query(context.Background(), query)
						if err != nil || len(got) != last {
							b.Fatalf("got %d messages, %v", len(got), err)
						}
					}
				})
			}
		}
	}
}
