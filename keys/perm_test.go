package keys

import (
	"errors"
	"fmt"
	"strings"
	"testing"
)

func TestParsePerm(t *testing.T) {
	tests := []struct {
		letters string
		want    Perm
		bad     string // letter the error must name; "" means success
	}{
		{"", 0, ""},
		{"r", PermRead, ""},
		{"w", PermWrite, ""},
		{"rwslpem", PermAll, ""},
		{"meplswr", PermAll, ""},
		{"rr", PermRead, ""},
		{"rwsl", PermRead | PermWrite | PermStore | PermLoad, ""},
		{"e", PermExtend, ""},
		{"R", 0, "R"},
		{"rwx", 0, "x"}, // Emitter's reserved execute bit is not a pubsub letter
		{"r w", 0, " "},
		{"rw\x00", 0, "\x00"},
		{"rwé", 0, "é"},
	}
	for _, tt := range tests {
		t.Run(tt.letters, func(t *testing.T) {
			got, err := ParsePerm(tt.letters)
			if tt.bad != "" {
				if !errors.Is(err, ErrInvalidPerm) {
					t.Fatalf("ParsePerm(%q) error = %v, want ErrInvalidPerm", tt.letters, err)
				}
				if name := fmt.Sprintf("%q", []rune(tt.bad)[0]); !strings.Contains(err.Error(), name) {
					t.Fatalf("error %q does not name the letter %s", err, name)
				}
				return
			}
			if err != nil || got != tt.want {
				t.Fatalf("ParsePerm(%q) = %v, %v; want %v", tt.letters, got, err, tt.want)
			}
		})
	}
}

func TestPermStringIsCanonical(t *testing.T) {
	tests := []struct {
		perm Perm
		want string
	}{
		{0, ""},
		{PermAll, "rwslpem"},
		{PermMaster | PermRead, "rm"},
		{PermExtend | PermLoad | PermWrite, "wle"},
		{PermPresence, "p"},
	}
	for _, tt := range tests {
		if got := tt.perm.String(); got != tt.want {
			t.Errorf("%#x.String() = %q, want %q", uint16(tt.perm), got, tt.want)
		}
	}
	// Every subset round-trips through its letters.
	for p := Perm(0); p <= PermAll; p++ {
		back, err := ParsePerm(p.String())
		if err != nil || back != p {
			t.Fatalf("round trip of %#x: %v, %v", uint16(p), back, err)
		}
	}
}

func TestPermHas(t *testing.T) {
	rw := PermRead | PermWrite
	tests := []struct {
		p, q Perm
		want bool
	}{
		{rw, PermRead, true},
		{rw, rw, true},
		{rw, PermRead | PermStore, false},
		{PermRead, PermWrite, false},
		{0, 0, true},
		{PermMaster, PermRead, false}, // Has is bit arithmetic; master's reach is Claims' business
	}
	for _, tt := range tests {
		if got := tt.p.Has(tt.q); got != tt.want {
			t.Errorf("%v.Has(%v) = %v, want %v", tt.p, tt.q, got, tt.want)
		}
	}
}
