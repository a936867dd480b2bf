package topic

import (
	"strings"
	"testing"

	"github.com/stretchr/testify/require"
)

func levels(n int) string { return strings.Repeat("a/", n-1) + "a" }

func TestValidateFilter(t *testing.T) {
	tests := []struct {
		name   string
		filter string
		valid  bool
	}{
		{"one level", "a", true},
		{"three levels", "a/b/c", true},
		{"hash alone", "#", true},
		{"plus alone", "+", true},
		{"hash last", "a/#", true},
		{"plus middle", "a/+/c", true},
		{"plus then hash", "+/+/#", true},
		{"empty middle level", "a//b", true},
		{"leading separator", "/a", true},
		{"trailing separator", "a/", true},
		{"separator only", "/", true},
		{"dollar topic filter", "$SYS/#", true},
		{"multibyte levels", "日本/+/ü", true},
		{"space in level", "a b/c", true},
		{"MaxLevels levels", levels(MaxLevels), true},
		{"MaxLength bytes", strings.Repeat("x", MaxLength), true},
		{"shared", "$share/g/a/+", true},
		{"shared hash", "$share/g/#", true},
		{"shared dollar inner", "$share/g/$SYS/x", true},
		{"share word alone is a plain filter", "$share", true},
		{"share level later is literal", "a/$share/g/b", true},
		{"shared MaxLevels inner", "$share/g/" + levels(MaxLevels), true},

		{"empty", "", false},
		{"A16 hash in middle", "a/#/b", false},
		{"A16 hash glued to text", "a#", false},
		{"A16 plus glued to text", "a/+b", false},
		{"A16 hash first of two", "#/a", false},
		{"A16 65535 separators", strings.Repeat("/", 65535), false},
		{"A16 1000 levels", levels(1000), false},
		{"MaxLevels+1 levels", levels(MaxLevels + 1), false},
		{"MaxLength+1 bytes", strings.Repeat("x", MaxLength+1), false},
		{"plus before text", "+a", false},
		{"plus after text", "a+/b", false},
		{"double hash", "##", false},
		{"hash plus", "#+", false},
		{"text then hash level", "a/b#", false},
		{"hash then separator", "a/#/", false},
		{"NUL", "a/\x00", false},
		{"shared without filter", "$share/g", false},
		{"shared empty filter", "$share/g/", false},
		{"shared prefix only", "$share/", false},
		{"shared empty group", "$share//a", false},
		{"shared plus group", "$share/+/a", false},
		{"shared hash in group", "$share/g#/a", false},
		{"shared NUL in group", "$share/g\x00/a", false},
		{"shared invalid inner", "$share/g/a/#/b", false},
		{"shared too deep inner", "$share/g/" + levels(MaxLevels+1), false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			require.Equal(t, tt.valid, refValidFilter(tt.filter), "reference disagrees with the table")
			err := ValidateFilter(tt.filter)
			if tt.valid {
				require.NoError(t, err)
				return
			}
			require.ErrorIs(t, err, ErrInvalidFilter)
			require.Less(t, len(err.Error()), 120, "error must not echo the filter")
		})
	}
}

func TestValidateTopic(t *testing.T) {
	tests := []struct {
		name  string
		topic string
		valid bool
	}{
		{"one level", "a", true},
		{"levels", "a/b/c", true},
		{"separator only", "/", true},
		{"empty levels", "a//b/", true},
		{"dollar topic", "$SYS/broker/x", true},
		{"share-looking topic is just a topic", "$share/g/a", true},
		{"multibyte", "日本/ü", true},
		{"MaxLevels levels", levels(MaxLevels), true},
		{"MaxLength bytes", strings.Repeat("x", MaxLength), true},

		{"empty", "", false},
		{"plus level", "a/+", false},
		{"plus inside level", "a+b", false},
		{"hash", "#", false},
		{"hash last", "a/#", false},
		{"NUL", "a\x00", false},
		{"MaxLevels+1 levels", levels(MaxLevels + 1), false},
		{"65535 separators", strings.Repeat("/", 65535), false},
		{"MaxLength+1 bytes", strings.Repeat("x", MaxLength+1), false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			require.Equal(t, tt.valid, refValidTopic(tt.topic), "reference disagrees with the table")
			err := ValidateTopic([]byte(tt.topic))
			if tt.valid {
				require.NoError(t, err)
				return
			}
			require.ErrorIs(t, err, ErrInvalidTopic)
			require.Less(t, len(err.Error()), 120, "error must not echo the topic")
		})
	}
}

func TestSplitShared(t *testing.T) {
	tests := []struct {
		filter, group, inner string
		ok                   bool
	}{
		{"$share/g/a/b", "g", "a/b", true},
		{"$share/g/#", "g", "#", true},
		{"$share/g/", "g", "", true},
		{"$share//a", "", "a", true},
		{"$share/g", "", "$share/g", false},
		{"$share/", "", "$share/", false},
		{"$share", "", "$share", false},
		{"a/b", "", "a/b", false},
		{"$SHARE/g/a", "", "$SHARE/g/a", false},
		{"", "", "", false},
	}
	for _, tt := range tests {
		t.Run(tt.filter, func(t *testing.T) {
			group, inner, ok := SplitShared(tt.filter)
			require.Equal(t, tt.group, group)
			require.Equal(t, tt.inner, inner)
			require.Equal(t, tt.ok, ok)
		})
	}
}
