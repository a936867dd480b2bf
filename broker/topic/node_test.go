package topic

import (
	"math/rand/v2"
	"testing"

	"github.com/stretchr/testify/require"
)

// requireEntrySetConsistent checks the entrySet invariants: one entry per
// subscriber, the index present exactly when the set is large (with the
// hysteresis of remove), and pointing at the right positions.
func requireEntrySetConsistent(t *testing.T, s *entrySet[int], want map[int]Entry[int]) {
	t.Helper()
	require.Len(t, s.entries, len(want))
	for i, e := range s.entries { // plain comparisons: this runs O(n²) times
		if want[e.Sub] != e || s.find(e.Sub) != i {
			t.Fatalf("entry %d = %+v (find %d), want %+v", i, e, s.find(e.Sub), want[e.Sub])
		}
		if s.index != nil && s.index[e.Sub] != i {
			t.Fatalf("index of %d = %d, want %d", e.Sub, s.index[e.Sub], i)
		}
	}
	if s.index != nil {
		require.Len(t, s.index, len(want))
	}
	if len(want) > indexThreshold {
		require.NotNil(t, s.index, "large set without index")
	}
	if len(want) <= indexThreshold/2 {
		require.Nil(t, s.index, "small set keeps its index")
	}
}

func TestEntrySet(t *testing.T) {
	tests := []struct {
		name string
		size int // subscribers added before random removals and updates
	}{
		{"small", indexThreshold / 2},
		{"at threshold", indexThreshold},
		{"indexed", 4 * indexThreshold},
		{"large, shrinks", 40 * indexThreshold},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			rng := rand.New(rand.NewPCG(uint64(tt.size), 3))
			var s entrySet[int]
			want := map[int]Entry[int]{}
			for i := range tt.size {
				existed, changed := s.upsert(Entry[int]{Sub: i, QoS: 1})
				require.False(t, existed)
				require.True(t, changed)
				want[i] = Entry[int]{Sub: i, QoS: 1}
			}
			requireEntrySetConsistent(t, &s, want)
			peak := cap(s.entries)

			existed, changed := s.upsert(Entry[int]{Sub: 0, QoS: 1})
			require.True(t, existed)
			require.False(t, changed, "identical entry")
			existed, changed = s.upsert(Entry[int]{Sub: 0, QoS: 2, Tag: 1})
			require.True(t, existed)
			require.True(t, changed)
			want[0] = Entry[int]{Sub: 0, QoS: 2, Tag: 1}

			require.False(t, s.remove(-1), "never added")
			for _, i := range rng.Perm(tt.size) {
				require.True(t, s.remove(i))
				require.False(t, s.remove(i), "removed twice")
				delete(want, i)
				requireEntrySetConsistent(t, &s, want)
				if len(want) > 0 && len(want) < peak/8 {
					require.True(t, cap(s.entries) < peak || peak <= 4*indexThreshold,
						"storage of %d entries still %d after shrinking to %d", peak, cap(s.entries), len(want))
				}
			}
			require.Nil(t, s.entries, "empty set releases its array")
		})
	}
}
