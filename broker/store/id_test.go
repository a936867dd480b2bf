package store

import (
	"bytes"
	"encoding/json"
	"math"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

func TestIDString(t *testing.T) {
	tests := []struct {
		id   ID
		want string
	}{
		{MakeID(1574843571767, 0, 0), "1574843571767-0"}, // Eventhub's own example id
		{MakeID(1574843571767, 0, 7), "1574843571767-7"},
		{MakeID(1700000000000, 1, 1), "1700000000000-4294967297"},
		{MakeID(0, 0, 1), "0-1"},
		{MakeID(math.MaxInt64, math.MaxUint16, math.MaxUint32), "9223372036854775807-281474976710655"},
		{MakeID(-5, 0, 1), "0-1"}, // negative time clamps
	}
	for _, tc := range tests {
		t.Run(tc.want, func(t *testing.T) {
			require.Equal(t, tc.want, tc.id.String())
			back, err := ParseID(tc.want)
			require.NoError(t, err)
			require.Equal(t, tc.id, back)
			raw, err := json.Marshal(tc.id)
			require.NoError(t, err)
			require.Equal(t, `"`+tc.want+`"`, string(raw))
			var fromJSON ID
			require.NoError(t, json.Unmarshal(raw, &fromJSON))
			require.Equal(t, tc.id, fromJSON)
		})
	}
}

func TestParseIDRejects(t *testing.T) {
	for _, s := range []string{
		"", "-", "1", "1-", "-1", "01-1", "1-01", "+1-1", "1-+1", "1--1", "1-1-1", " 1-1", "1-1 ",
		"1-281474976710656",     // seq over 48 bits
		"9223372036854775808-0", // ms over int64
		"99999999999999999999999-0", "1-99999999999999999999999", "a-1", "1-a", "1.5-1", "１-1",
	} {
		t.Run(s, func(t *testing.T) {
			_, err := ParseID(s)
			require.ErrorIs(t, err, ErrInvalidID)
		})
	}
}

func TestIDOrder(t *testing.T) {
	ordered := []ID{
		{},
		MakeID(0, 0, 1),
		MakeID(1, 0, 0),
		MakeID(1, 0, math.MaxUint32),
		MakeID(1, 1, 0),
		MakeID(2, 0, 0),
		MakeID(math.MaxInt64, math.MaxUint16, math.MaxUint32),
	}
	for i := range ordered {
		for j := range ordered {
			a, b := ordered[i], ordered[j]
			ab, bb := a.Bytes(), b.Bytes()
			require.Equal(t, i < j, a.Less(b), "%v < %v", a, b)
			require.Equal(t, cmpInt(i, j), a.Compare(b))
			require.Equal(t, cmpInt(i, j), bytes.Compare(ab[:], bb[:]), "binary order equals ID order")
		}
		b := ordered[i].Bytes()
		back, err := IDFromBytes(b[:])
		require.NoError(t, err)
		require.Equal(t, ordered[i], back)
		if i+1 < len(ordered) {
			require.False(t, ordered[i+1].Less(ordered[i].next()), "next is the smallest greater ID")
			require.True(t, ordered[i].Less(ordered[i].next()))
		}
	}
	_, err := IDFromBytes(make([]byte, IDLen-1))
	require.ErrorIs(t, err, ErrInvalidID)
	high := bytes.Repeat([]byte{0xff}, IDLen)
	_, err = IDFromBytes(high)
	require.ErrorIs(t, err, ErrInvalidID, "ms beyond int64")
}

func TestIDGenerator(t *testing.T) {
	clock := newClock()
	g := NewIDGenerator(3, clock.Now)
	a, b := g.Next(), g.Next()
	require.Equal(t, MakeID(epoch.UnixMilli(), 3, 0), a)
	require.Equal(t, MakeID(epoch.UnixMilli(), 3, 1), b)
	require.Equal(t, epoch, a.Time())
	require.Equal(t, uint16(3), a.Node())

	clock.Advance(time.Millisecond)
	c := g.Next()
	require.Equal(t, MakeID(epoch.UnixMilli()+1, 3, 0), c, "sequence resets each millisecond")

	clock.Advance(-time.Hour) // the clock steps back
	d := g.Next()
	require.True(t, c.Less(d))
	require.Equal(t, c.Millis(), d.Millis(), "stays on the last millisecond")

	g.Advance(MakeID(epoch.UnixMilli()+5, 3, math.MaxUint32))
	e := g.Next()
	require.Equal(t, MakeID(epoch.UnixMilli()+6, 3, 0), e, "a full millisecond borrows the next")
	g.Advance(MakeID(epoch.UnixMilli()+100, 4, 0)) // another node's id: ignored
	require.Equal(t, MakeID(epoch.UnixMilli()+6, 3, 1), g.Next())
	g.Advance(MakeID(0, 3, 0)) // older: ignored
	require.Equal(t, MakeID(epoch.UnixMilli()+6, 3, 2), g.Next())
}

func TestIDGeneratorConcurrent(t *testing.T) {
	g := NewIDGenerator(9, nil)
	const workers, each = 4, 2000
	results := make([][]ID, workers)
	var wg sync.WaitGroup
	for w := range workers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for range each {
				results[w] = append(results[w], g.Next())
			}
		}()
	}
	wg.Wait()
	seen := make(map[ID]bool, workers*each)
	for _, r := range results {
		for i, id := range r {
			require.False(t, seen[id], "duplicate %v", id)
			seen[id] = true
			if i > 0 {
				require.True(t, r[i-1].Less(id), "increasing per caller")
			}
		}
	}
}

func FuzzParseID(f *testing.F) {
	for _, s := range []string{"1574843571767-0", "0-0", "1-4294967297", "01-1", "1-", "-", "9223372036854775807-281474976710655"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		id, err := ParseID(s)
		if err != nil {
			return
		}
		// Canonical: whatever parses prints back identically.
		if got := id.String(); got != s {
			t.Fatalf("ParseID(%q).String() = %q", s, got)
		}
		b := id.Bytes()
		back, err := IDFromBytes(b[:])
		if err != nil || back != id {
			t.Fatalf("binary round trip of %v: %v, %v", id, back, err)
		}
	})
}

func FuzzIDFromBytes(f *testing.F) {
	f.Add(make([]byte, IDLen))
	f.Add(bytes.Repeat([]byte{0xff}, IDLen))
	f.Add([]byte{1, 2, 3})
	f.Fuzz(func(t *testing.T, b []byte) {
		id, err := IDFromBytes(b)
		if err != nil {
			return
		}
		if got := id.Bytes(); !bytes.Equal(got[:], b) {
			t.Fatalf("round trip %x -> %x", b, got)
		}
		if _, err := ParseID(id.String()); err != nil {
			t.Fatalf("String of decoded id does not parse: %v", err)
		}
	})
}
