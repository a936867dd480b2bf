package store

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

// TestProviders runs one suite against every provider so they behave the same.
func TestProviders(t *testing.T) {
	for _, p := range providers() {
		t.Run(p.name, func(t *testing.T) { sharedTestSuite(t, p) })
	}
}

func sharedTestSuite(t *testing.T, p provider) {
	t.Run("Query", func(t *testing.T) { testQuery(t, p) })
	t.Run("AppendValidation", func(t *testing.T) { testAppendValidation(t, p) })
	t.Run("AppendDuplicates", func(t *testing.T) { testAppendDuplicates(t, p) })
	t.Run("AppendCopiesPayload", func(t *testing.T) { testAppendCopiesPayload(t, p) })
	t.Run("Expiry", func(t *testing.T) { testExpiry(t, p) })
	t.Run("MaxTTL", func(t *testing.T) { testMaxTTL(t, p) })
	t.Run("MaxPerTopic", func(t *testing.T) { testMaxPerTopic(t, p) })
	t.Run("MaxBytes", func(t *testing.T) { testMaxBytes(t, p) })
	t.Run("Retained", func(t *testing.T) { testRetained(t, p) })
	t.Run("RetainedLimit", func(t *testing.T) { testRetainedLimit(t, p) })
	t.Run("KV", func(t *testing.T) { testKV(t, p) })
	t.Run("Queue", func(t *testing.T) { testQueue(t, p) })
	t.Run("QueueExpiry", func(t *testing.T) { testQueueExpiry(t, p) })
	t.Run("ContextCancel", func(t *testing.T) { testContextCancel(t, p) })
	t.Run("Closed", func(t *testing.T) { testClosed(t, p) })
	t.Run("Concurrent", func(t *testing.T) { testConcurrent(t, p) })
	t.Run("BadOptions", func(t *testing.T) { testBadOptions(t, p) })
}

// queryFixture is a history that exercises levels, '$' topics and the empty level.
func queryFixture(e int64) []Message {
	return []Message{
		msg(e, 0, "a/b", "1"),
		msg(e, 1, "a/c", "2"),
		msg(e+10, 0, "a", "3"),
		msg(e+20, 0, "x/b", "4"),
		msg(e+30, 0, "a/b/c", "5"),
		msg(e+40, 0, "$SYS/x", "6"),
		msg(e+50, 0, "a/b", "7"),
		msg(e+60, 0, "/a", "8"),
	}
}

func testQuery(t *testing.T, p provider) {
	clock := newClock()
	s := openWith(t, p, Options{Now: clock.Now})
	e := epoch.UnixMilli()
	fixture := queryFixture(e)
	// Appended out of order and in two batches: order must come from IDs.
	require.NoError(t, s.Append(fixture[4:]))
	require.NoError(t, s.Append(fixture[:4]))
	at := func(ms int64) time.Time { return time.UnixMilli(e + ms) }

	tests := []struct {
		name string
		q    Query
		want []string
	}{
		{"exact topic", Query{Filter: "a/b"}, []string{"1", "7"}},
		{"hash includes parent", Query{Filter: "a/#"}, []string{"1", "2", "3", "5", "7"}},
		{"plus one level", Query{Filter: "a/+"}, []string{"1", "2", "7"}},
		{"leading plus", Query{Filter: "+/b"}, []string{"1", "4", "7"}},
		{"hash skips dollar topics", Query{Filter: "#"}, []string{"1", "2", "3", "4", "5", "7", "8"}},
		{"dollar literal", Query{Filter: "$SYS/#"}, []string{"6"}},
		{"plus plus", Query{Filter: "+/+"}, []string{"1", "2", "4", "7", "8"}},
		{"empty first level", Query{Filter: "/a"}, []string{"8"}},
		{"plus matches empty level", Query{Filter: "+/a"}, []string{"8"}},
		{"limit oldest", Query{Filter: "a/#", Limit: 2}, []string{"1", "2"}},
		{"limit newest", Query{Filter: "a/#", Limit: 2, Newest: true}, []string{"5", "7"}},
		{"newest exact", Query{Filter: "a/b", Limit: 1, Newest: true}, []string{"7"}},
		{"newest wildcard first", Query{Filter: "#", Limit: 1, Newest: true}, []string{"8"}},
		{"window inclusive", Query{Filter: "a/#", From: at(10), Until: at(30)}, []string{"3", "5"}},
		{"after id", Query{Filter: "a/#", AfterID: fixture[1].ID}, []string{"3", "5", "7"}},
		{"after id same ms", Query{Filter: "a/#", AfterID: fixture[0].ID}, []string{"2", "3", "5", "7"}},
		{"after id paging", Query{Filter: "a/#", AfterID: fixture[1].ID, Limit: 1}, []string{"3"}},
		{"after id newest", Query{Filter: "#", AfterID: fixture[4].ID, Limit: 5, Newest: true}, []string{"7", "8"}},
		{"after last id", Query{Filter: "a/b", AfterID: fixture[6].ID}, nil},
		{"until before all", Query{Filter: "a/#", Until: at(-1)}, nil},
		{"from after until", Query{Filter: "a/#", From: at(30), Until: at(10)}, nil},
		{"no such level", Query{Filter: "nomatch/#"}, nil},
		{"no such topic", Query{Filter: "a/z"}, nil},
		{"wildcard first, window", Query{Filter: "+/#", From: at(20), Until: at(50)}, []string{"4", "5", "7"}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			got, err := s.Query(context.Background(), tc.q)
			require.NoError(t, err)
			if tc.want == nil {
				require.Empty(t, got)
				return
			}
			require.Equal(t, tc.want, payloads(got))
		})
	}

	t.Run("round trip of fields", func(t *testing.T) {
		m := Message{ID: MakeID(e+70, 3, 9), Topic: "f/g", Payload: []byte{0, 1, 0xff}, QoS: 2, Retain: true,
			Publisher: "alice", Expires: at(1000)}
		require.NoError(t, s.Append([]Message{m}))
		got, err := s.Query(context.Background(), Query{Filter: "f/g"})
		require.NoError(t, err)
		require.Len(t, got, 1)
		require.Equal(t, m.ID, got[0].ID)
		require.Equal(t, m.Topic, got[0].Topic)
		require.Equal(t, m.Payload, got[0].Payload)
		require.Equal(t, m.QoS, got[0].QoS)
		require.Equal(t, m.Retain, got[0].Retain)
		require.Equal(t, m.Publisher, got[0].Publisher)
		require.True(t, m.Expires.Equal(got[0].Expires))
	})

	bad := []struct {
		name string
		q    Query
		err  error
	}{
		{"empty filter", Query{}, ErrInvalidFilter},
		{"hash not last", Query{Filter: "a/#/b"}, ErrInvalidFilter},
		{"hash in level", Query{Filter: "a#"}, ErrInvalidFilter},
		{"plus in level", Query{Filter: "a/+b"}, ErrInvalidFilter},
		{"NUL", Query{Filter: "a/\x00"}, ErrInvalidFilter},
		{"bad UTF-8", Query{Filter: "a/\xed\xa0\x80"}, ErrInvalidFilter},
		{"negative limit", Query{Filter: "#", Limit: -1}, ErrInvalid},
	}
	for _, tc := range bad {
		t.Run("rejects "+tc.name, func(t *testing.T) {
			_, err := s.Query(context.Background(), tc.q)
			require.ErrorIs(t, err, tc.err)
		})
	}
}

func testAppendValidation(t *testing.T, p provider) {
	s := openWith(t, p, Options{Now: newClock().Now})
	e := epoch.UnixMilli()
	good := msg(e, 0, "ok", "x")
	tests := []struct {
		name string
		m    Message
		err  error
	}{
		{"zero id", Message{Topic: "a", Payload: []byte("x")}, ErrInvalid},
		{"empty topic", msg(e, 1, "", "x"), ErrInvalidTopic},
		{"plus in topic", msg(e, 1, "a/+", "x"), ErrInvalidTopic},
		{"hash in topic", msg(e, 1, "a/#", "x"), ErrInvalidTopic},
		{"NUL in topic", msg(e, 1, "a\x00b", "x"), ErrInvalidTopic},
		{"bad UTF-8 topic", msg(e, 1, "a/\xc0\x80", "x"), ErrInvalidTopic},
		{"QoS 3", Message{ID: MakeID(e, 0, 1), Topic: "a", QoS: 3}, ErrInvalid},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			// The good message first: a rejected batch must store nothing.
			err := s.Append([]Message{good, tc.m})
			require.ErrorIs(t, err, tc.err)
			got, err := s.Query(context.Background(), Query{Filter: "#"})
			require.NoError(t, err)
			require.Empty(t, got)
		})
	}
	require.NoError(t, s.Append(nil))
	require.Equal(t, int64(0), s.Stats().Messages)
}

func testAppendDuplicates(t *testing.T, p provider) {
	s := openWith(t, p, Options{Now: newClock().Now})
	e := epoch.UnixMilli()
	a, b := msg(e, 0, "t", "a"), msg(e, 1, "t", "b")
	require.NoError(t, s.Append([]Message{a, b, a}))
	require.NoError(t, s.Append([]Message{b}))
	got, err := s.Query(context.Background(), Query{Filter: "t"})
	require.NoError(t, err)
	require.Equal(t, []string{"a", "b"}, payloads(got))
	st := s.Stats()
	require.Equal(t, int64(2), st.Messages)
	require.Equal(t, a.size()+b.size(), st.Bytes)
}

func testAppendCopiesPayload(t *testing.T, p provider) {
	s := openWith(t, p, Options{Now: newClock().Now})
	buf := []byte("hello")
	m := Message{ID: MakeID(epoch.UnixMilli(), 0, 0), Topic: "t", Payload: buf}
	require.NoError(t, s.Append([]Message{m}))
	copy(buf, "XXXXX") // the broker reuses its read buffer
	got, err := s.Query(context.Background(), Query{Filter: "t"})
	require.NoError(t, err)
	require.Equal(t, []string{"hello"}, payloads(got))
}

func testExpiry(t *testing.T, p provider) {
	clock := newClock()
	s := openWith(t, p, Options{Now: clock.Now})
	e := epoch.UnixMilli()
	short := msg(e, 0, "t", "short")
	short.Expires = epoch.Add(time.Second)
	long := msg(e, 1, "t", "long")
	long.Expires = epoch.Add(time.Hour)
	never := msg(e, 2, "u/v", "never")
	dead := msg(e, 3, "t", "dead")
	dead.Expires = epoch.Add(-time.Millisecond)
	require.NoError(t, s.Append([]Message{short, long, never, dead}))
	require.Equal(t, int64(3), s.Stats().Messages, "an already expired message is not stored")

	all := func() []string {
		got, err := s.Query(context.Background(), Query{Filter: "#"})
		require.NoError(t, err)
		return payloads(got)
	}
	require.Equal(t, []string{"short", "long", "never"}, all())

	clock.Advance(time.Second) // expiry is inclusive: at Expires it is gone
	require.Equal(t, []string{"long", "never"}, all(), "expired before any sweep")
	got, err := s.Query(context.Background(), Query{Filter: "t", Newest: true, Limit: 2})
	require.NoError(t, err)
	require.Equal(t, []string{"long"}, payloads(got), "exact-topic path checks expiry too")

	n, err := s.Expire(clock.Now())
	require.NoError(t, err)
	require.Equal(t, 1, n)
	require.Equal(t, int64(2), s.Stats().Messages)
	require.Equal(t, long.size()+never.size(), s.Stats().Bytes)

	n, err = s.Expire(epoch.Add(2 * time.Hour))
	require.NoError(t, err)
	require.Equal(t, 1, n)
	clock.Advance(2 * time.Hour)
	require.Equal(t, []string{"never"}, all())
}

func testMaxTTL(t *testing.T, p provider) {
	clock := newClock()
	s := openWith(t, p, Options{Now: clock.Now, MaxTTL: time.Minute})
	e := epoch.UnixMilli()
	noTTL := msg(e, 0, "t", "no-ttl")
	longTTL := msg(e, 1, "t", "long-ttl")
	longTTL.Expires = epoch.Add(time.Hour)
	shortTTL := msg(e, 2, "t", "short-ttl")
	shortTTL.Expires = epoch.Add(time.Second)
	require.NoError(t, s.Append([]Message{noTTL, longTTL, shortTTL}))

	got, err := s.Query(context.Background(), Query{Filter: "t"})
	require.NoError(t, err)
	require.Len(t, got, 3)
	require.True(t, got[0].Expires.Equal(epoch.Add(time.Minute)), "no expiry gets MaxTTL")
	require.True(t, got[1].Expires.Equal(epoch.Add(time.Minute)), "longer expiry is capped")
	require.True(t, got[2].Expires.Equal(epoch.Add(time.Second)), "shorter expiry is kept")

	clock.Advance(time.Minute)
	got, err = s.Query(context.Background(), Query{Filter: "t"})
	require.NoError(t, err)
	require.Empty(t, got)
	n, err := s.Expire(clock.Now())
	require.NoError(t, err)
	require.Equal(t, 3, n)
	require.Equal(t, Stats{}, s.Stats())
}

func testMaxPerTopic(t *testing.T, p provider) {
	s := openWith(t, p, Options{Now: newClock().Now, MaxPerTopic: 3})
	e := epoch.UnixMilli()
	var batch []Message
	for i := range 5 {
		batch = append(batch, msg(e+int64(i), 0, "a", fmt.Sprint("a", i)))
	}
	batch = append(batch, msg(e, 1, "b", "b0"))
	require.NoError(t, s.Append(batch))
	query := func(f string) []string {
		got, err := s.Query(context.Background(), Query{Filter: f})
		require.NoError(t, err)
		return payloads(got)
	}
	require.Equal(t, []string{"a2", "a3", "a4"}, query("a"), "oldest evicted within one batch")
	require.Equal(t, []string{"b0"}, query("b"), "other topics untouched")

	// A late message older than everything stored is itself the oldest.
	require.NoError(t, s.Append([]Message{msg(e-100, 0, "a", "late")}))
	require.Equal(t, []string{"a2", "a3", "a4"}, query("a"))
	require.NoError(t, s.Append([]Message{msg(e+10, 0, "a", "a10")}))
	require.Equal(t, []string{"a3", "a4", "a10"}, query("a"))
	require.Equal(t, []string{"b0", "a3", "a4", "a10"}, query("#"), "global index agrees")
	require.Equal(t, int64(4), s.Stats().Messages)
}

func testMaxBytes(t *testing.T, p provider) {
	e := epoch.UnixMilli()
	sample := msg(e, 0, "t", "0123456789")
	one := sample.size()
	s := openWith(t, p, Options{Now: newClock().Now, MaxBytes: 3 * one})
	for i := range 5 {
		require.NoError(t, s.Append([]Message{msg(e+int64(i), 0, "t", fmt.Sprintf("%010d", i))}))
		require.LessOrEqual(t, s.Stats().Bytes, 3*one)
	}
	got, err := s.Query(context.Background(), Query{Filter: "#"})
	require.NoError(t, err)
	require.Equal(t, []string{"0000000002", "0000000003", "0000000004"}, payloads(got))
	require.Equal(t, Stats{Messages: 3, Bytes: 3 * one}, s.Stats())

	// A batch larger than the bound keeps only its newest messages.
	var big []Message
	for i := range 5 {
		big = append(big, msg(e+100+int64(i), 0, "u", fmt.Sprintf("%010d", i)))
	}
	require.NoError(t, s.Append(big))
	got, err = s.Query(context.Background(), Query{Filter: "#"})
	require.NoError(t, err)
	require.Equal(t, []string{"0000000002", "0000000003", "0000000004"}, payloads(got))
	require.Equal(t, "u", got[0].Topic)
}

func testRetained(t *testing.T, p provider) {
	clock := newClock()
	s := openWith(t, p, Options{Now: clock.Now})
	e := epoch.UnixMilli()
	set := func(seq uint32, topic, payload string) {
		t.Helper()
		m := msg(e, seq, topic, payload)
		m.Retain = true
		require.NoError(t, s.SetRetained(m))
	}
	set(1, "a/b", "ab1")
	set(2, "a/b", "ab2") // [MQTT-3.3.1-5] replaces
	set(3, "a", "a")
	set(4, "ab/c", "abc") // shares the "a" prefix but not the level
	set(5, "$SYS/n", "sys")
	set(6, "x/y/z", "xyz")
	exp := msg(e, 7, "x/exp", "soon")
	exp.Expires = epoch.Add(time.Second)
	require.NoError(t, s.SetRetained(exp))
	require.Equal(t, int64(6), s.Stats().Retained)

	tests := []struct {
		filter string
		want   []string
	}{
		{"a/b", []string{"ab2"}},
		{"a/#", []string{"a", "ab2"}},
		{"a/+", []string{"ab2"}},
		{"#", []string{"a", "ab2", "abc", "soon", "xyz"}},
		{"+/+", []string{"ab2", "abc", "soon"}},
		{"$SYS/+", []string{"sys"}},
		{"x/#", []string{"soon", "xyz"}},
		{"nothing/#", nil},
	}
	for _, tc := range tests {
		t.Run(tc.filter, func(t *testing.T) {
			got, err := s.Retained(tc.filter)
			require.NoError(t, err)
			require.Equal(t, len(tc.want), len(got))
			if tc.want != nil {
				require.Equal(t, tc.want, payloads(got))
			}
		})
	}

	set(8, "a/b", "") // [MQTT-3.3.1-10] empty payload deletes
	set(9, "never/was", "")
	got, err := s.Retained("a/#")
	require.NoError(t, err)
	require.Equal(t, []string{"a"}, payloads(got))
	require.Equal(t, int64(5), s.Stats().Retained)

	clock.Advance(time.Second)
	got, err = s.Retained("x/#")
	require.NoError(t, err)
	require.Equal(t, []string{"xyz"}, payloads(got), "expired retained message not served")
	n, err := s.Expire(clock.Now())
	require.NoError(t, err)
	require.Equal(t, 1, n)
	require.Equal(t, int64(4), s.Stats().Retained)

	_, err = s.Retained("a/#/b")
	require.ErrorIs(t, err, ErrInvalidFilter)
	require.ErrorIs(t, s.SetRetained(msg(e, 10, "a/+", "x")), ErrInvalidTopic)
}

func testRetainedLimit(t *testing.T, p provider) {
	s := openWith(t, p, Options{Now: newClock().Now, MaxRetained: 2})
	e := epoch.UnixMilli()
	require.NoError(t, s.SetRetained(msg(e, 1, "a", "1")))
	require.NoError(t, s.SetRetained(msg(e, 2, "b", "2")))
	require.ErrorIs(t, s.SetRetained(msg(e, 3, "c", "3")), ErrRetainedFull)
	require.NoError(t, s.SetRetained(msg(e, 4, "a", "4")), "replacing is always allowed")
	require.NoError(t, s.SetRetained(msg(e, 5, "b", "")))
	require.NoError(t, s.SetRetained(msg(e, 6, "c", "6")), "room after a delete")
	got, err := s.Retained("#")
	require.NoError(t, err)
	require.Equal(t, []string{"4", "6"}, payloads(got))
}

func testKV(t *testing.T, p provider) {
	clock := newClock()
	s := openWith(t, p, Options{Now: clock.Now})
	_, ok, err := s.KVGet("missing")
	require.NoError(t, err)
	require.False(t, ok)

	require.NoError(t, s.KVSet("k", []byte("v1"), 0))
	require.NoError(t, s.KVSet("k", []byte("v2"), 0))
	v, ok, err := s.KVGet("k")
	require.NoError(t, err)
	require.True(t, ok)
	require.Equal(t, "v2", string(v))
	v[0] = 'X' // the caller owns the returned copy
	v, _, _ = s.KVGet("k")
	require.Equal(t, "v2", string(v))

	require.NoError(t, s.KVSet("ttl", []byte("t"), 10*time.Second))
	require.NoError(t, s.KVSet("retimed", []byte("r"), time.Second))
	require.NoError(t, s.KVSet("retimed", []byte("r"), 0), "ttl removed by a later set")
	require.NoError(t, s.KVSet("empty", nil, 0))
	v, ok, err = s.KVGet("empty")
	require.NoError(t, err)
	require.True(t, ok, "an empty value is a value")
	require.Empty(t, v)
	require.Equal(t, int64(4), s.Stats().Keys)

	clock.Advance(10 * time.Second)
	_, ok, err = s.KVGet("ttl")
	require.NoError(t, err)
	require.False(t, ok, "expired before any sweep")
	n, err := s.Expire(clock.Now())
	require.NoError(t, err)
	require.Equal(t, 1, n)
	_, ok, _ = s.KVGet("retimed")
	require.True(t, ok)
	require.Equal(t, int64(3), s.Stats().Keys)

	existed, err := s.KVDelete("k")
	require.NoError(t, err)
	require.True(t, existed)
	existed, err = s.KVDelete("k")
	require.NoError(t, err)
	require.False(t, existed, "Eventhub del reports false for an absent key")
	_, ok, _ = s.KVGet("k")
	require.False(t, ok)

	require.ErrorIs(t, s.KVSet("", []byte("x"), 0), ErrInvalid)
	_, _, err = s.KVGet(string(make([]byte, MaxKeyLen+1)))
	require.ErrorIs(t, err, ErrInvalid)
}

func testQueue(t *testing.T, p provider) {
	s := openWith(t, p, Options{Now: newClock().Now})
	e := epoch.UnixMilli()
	for i := range 5 {
		dropped, err := s.QueueAppend("c1", msg(e+int64(i), 0, "t", fmt.Sprint(i)), 3)
		require.NoError(t, err)
		require.Equal(t, min(max(i+1-3, 0), 1), dropped, "one in, one out once full")
	}
	// Arrival order, not ID order: a late message with an old ID stays last.
	_, err := s.QueueAppend("c2", msg(e+9, 0, "t", "first"), 10)
	require.NoError(t, err)
	_, err = s.QueueAppend("c2", msg(e, 0, "t", "second"), 10)
	require.NoError(t, err)

	peek := func(c string, n int) []string {
		got, err := s.QueuePeek(c, n)
		require.NoError(t, err)
		return payloads(got)
	}
	require.Equal(t, []string{"2", "3", "4"}, peek("c1", 0), "drop-oldest keeps the newest")
	require.Equal(t, []string{"2", "3"}, peek("c1", 2))
	require.Equal(t, []string{"first", "second"}, peek("c2", 0))
	require.Equal(t, int64(5), s.Stats().Queued)

	require.NoError(t, s.QueueAck("c1", MakeID(e+3, 0, 0)))
	require.NoError(t, s.QueueAck("c1", MakeID(e+3, 0, 0)), "acking twice is harmless")
	require.NoError(t, s.QueueAck("nobody", MakeID(e, 0, 0)))
	require.Equal(t, []string{"2", "4"}, peek("c1", 0))
	require.Equal(t, int64(4), s.Stats().Queued)

	require.NoError(t, s.QueueDrop("c1"))
	require.Empty(t, peek("c1", 0))
	require.Equal(t, []string{"first", "second"}, peek("c2", 0))
	require.Equal(t, int64(2), s.Stats().Queued)
	_, err = s.QueueAppend("c1", msg(e+20, 0, "t", "again"), 3)
	require.NoError(t, err)
	require.Equal(t, []string{"again"}, peek("c1", 0))

	bad := []struct {
		name string
		call func() error
	}{
		{"empty client", func() error { _, err := s.QueueAppend("", msg(e, 0, "t", "x"), 1); return err }},
		{"NUL client", func() error { _, err := s.QueueAppend("a\x00", msg(e, 0, "t", "x"), 1); return err }},
		{"zero max", func() error { _, err := s.QueueAppend("c", msg(e, 0, "t", "x"), 0); return err }},
		{"bad message", func() error { _, err := s.QueueAppend("c", msg(e, 0, "#", "x"), 1); return err }},
		{"peek empty client", func() error { _, err := s.QueuePeek("", 1); return err }},
		{"ack empty client", func() error { return s.QueueAck("", ID{}) }},
		{"drop empty client", func() error { return s.QueueDrop("") }},
	}
	for _, tc := range bad {
		t.Run(tc.name, func(t *testing.T) { require.Error(t, tc.call()) })
	}
}

func testQueueExpiry(t *testing.T, p provider) {
	clock := newClock()
	s := openWith(t, p, Options{Now: clock.Now})
	e := epoch.UnixMilli()
	soon := msg(e, 0, "t", "soon")
	soon.Expires = epoch.Add(time.Second)
	_, err := s.QueueAppend("c", soon, 10)
	require.NoError(t, err)
	_, err = s.QueueAppend("c", msg(e, 1, "t", "stays"), 10)
	require.NoError(t, err)
	clock.Advance(time.Second)
	got, err := s.QueuePeek("c", 0)
	require.NoError(t, err)
	require.Equal(t, []string{"stays"}, payloads(got))
	require.Equal(t, int64(1), s.Stats().Queued, "expired entry removed by peek")
}

func testContextCancel(t *testing.T, p provider) {
	s := openWith(t, p, Options{Now: newClock().Now})
	e := epoch.UnixMilli()
	batch := make([]Message, 0, 3*ctxCheckEvery)
	for i := range cap(batch) {
		batch = append(batch, msg(e+int64(i), 0, fmt.Sprint("t/", i), "x"))
	}
	require.NoError(t, s.Append(batch))
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	for _, f := range []string{"t/#", "#", "+/nomatch"} {
		_, err := s.Query(ctx, Query{Filter: f})
		require.ErrorIs(t, err, context.Canceled, f)
	}
}

func testClosed(t *testing.T, p provider) {
	s := p.open(t, Options{Now: newClock().Now})
	require.NoError(t, s.Close())
	require.ErrorIs(t, s.Close(), ErrClosed)
	m := msg(epoch.UnixMilli(), 0, "t", "x")
	calls := map[string]func() error{
		"Append":      func() error { return s.Append([]Message{m}) },
		"Query":       func() error { _, err := s.Query(context.Background(), Query{Filter: "#"}); return err },
		"SetRetained": func() error { return s.SetRetained(m) },
		"Retained":    func() error { _, err := s.Retained("#"); return err },
		"KVGet":       func() error { _, _, err := s.KVGet("k"); return err },
		"KVSet":       func() error { return s.KVSet("k", nil, 0) },
		"KVDelete":    func() error { _, err := s.KVDelete("k"); return err },
		"QueueAppend": func() error { _, err := s.QueueAppend("c", m, 1); return err },
		"QueuePeek":   func() error { _, err := s.QueuePeek("c", 1); return err },
		"QueueAck":    func() error { return s.QueueAck("c", m.ID) },
		"QueueDrop":   func() error { return s.QueueDrop("c") },
		"Expire":      func() error { _, err := s.Expire(epoch); return err },
	}
	for name, call := range calls {
		require.ErrorIs(t, call(), ErrClosed, name)
	}
}

// testConcurrent is for -race: writers, readers and the sweeper at once.
func testConcurrent(t *testing.T, p provider) {
	s := openWith(t, p, Options{Now: newClock().Now, MaxPerTopic: 50})
	gen := NewIDGenerator(1, newClock().Now)
	const writers, perWriter = 4, 100
	var wg sync.WaitGroup
	errs := make(chan error, writers*3)
	for w := range writers {
		wg.Add(3)
		go func() {
			defer wg.Done()
			for i := range perWriter {
				m := Message{ID: gen.Next(), Topic: fmt.Sprintf("w%d/t", w), Payload: []byte{byte(i)}}
				if err := s.Append([]Message{m}); err != nil {
					errs <- err
					return
				}
			}
		}()
		go func() {
			defer wg.Done()
			for range perWriter {
				if _, err := s.Query(context.Background(), Query{Filter: "#", Newest: true, Limit: 5}); err != nil {
					errs <- err
					return
				}
			}
		}()
		go func() {
			defer wg.Done()
			client := fmt.Sprint("c", w)
			for i := range perWriter {
				if _, err := s.QueueAppend(client, Message{ID: gen.Next(), Topic: "q", Payload: []byte{byte(i)}}, 10); err != nil {
					errs <- err
					return
				}
				if _, err := s.Expire(epoch); err != nil {
					errs <- err
					return
				}
			}
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		require.NoError(t, err)
	}
	st := s.Stats()
	require.Equal(t, int64(writers*50), st.Messages)
	require.Equal(t, int64(writers*10), st.Queued)
	got, err := s.Query(context.Background(), Query{Filter: "w0/t"})
	require.NoError(t, err)
	require.Len(t, got, 50)
	for i := 1; i < len(got); i++ {
		require.True(t, got[i-1].ID.Less(got[i].ID), "oldest first")
	}
}

func testBadOptions(t *testing.T, p provider) {
	for name, opts := range map[string]Options{
		"negative MaxBytes":    {MaxBytes: -1},
		"negative MaxPerTopic": {MaxPerTopic: -1},
		"negative MaxTTL":      {MaxTTL: -1},
		"negative Sync":        {Sync: -1},
		"negative MaxRetained": {MaxRetained: -1},
	} {
		var err error
		if p.name == "memory" {
			_, err = OpenMemory(opts)
		} else {
			opts.Dir = t.TempDir()
			_, err = OpenDisk(opts)
		}
		require.True(t, errors.Is(err, ErrInvalid), "%s: %v", name, err)
	}
}
