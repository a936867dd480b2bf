package keys

import "fmt"

// Perm is a set of permissions carried by a key. Each bit has one letter in
// the `perm` claim; the letters are Emitter's (emitter.md §3) plus `m`.
type Perm uint16

// The permission bits, in canonical letter order "rwslpem".
const (
	PermRead     Perm = 1 << iota // 'r': subscribe and unsubscribe
	PermWrite                     // 'w': publish (and set a will)
	PermStore                     // 's': publishes with a ttl or retain flag are stored
	PermLoad                      // 'l': replay history on subscribe, query history
	PermPresence                  // 'p': presence queries and change events
	PermExtend                    // 'e': derive private sub-channel keys, nothing else
	PermMaster                    // 'm': keygen for any channel, $SYS, cluster admin

	// PermAll is every permission letter there is.
	PermAll = PermRead | PermWrite | PermStore | PermLoad | PermPresence | PermExtend | PermMaster
)

// permLetters lists the letters in bit order; String emits them in this order.
const permLetters = "rwslpem"

// ParsePerm parses permission letters such as "rwsl". Order does not matter
// and a repeated letter is harmless; any other byte, including upper case and
// Emitter's reserved 'x', is refused with an error that names it, so a typo
// never silently mints a weaker or stronger key than intended.
func ParsePerm(letters string) (Perm, error) {
	p, bad, ok := parsePerm(letters)
	if !ok {
		return 0, fmt.Errorf("%w: unknown letter %q (want some of %q)", ErrInvalidPerm, bad, permLetters)
	}
	return p, nil
}

// parsePerm is ParsePerm without the error value, so that Claims.Perms can
// run on the authorisation path without allocating.
func parsePerm(letters string) (p Perm, bad rune, ok bool) {
	for _, ch := range letters {
		bit := permBit(ch)
		if bit == 0 {
			return 0, ch, false
		}
		p |= bit
	}
	return p, 0, true
}

func permBit(ch rune) Perm {
	switch ch {
	case 'r':
		return PermRead
	case 'w':
		return PermWrite
	case 's':
		return PermStore
	case 'l':
		return PermLoad
	case 'p':
		return PermPresence
	case 'e':
		return PermExtend
	case 'm':
		return PermMaster
	}
	return 0
}

// String returns the letters of p in the canonical order "rwslpem", so equal
// sets always print the same; the empty set prints as "".
func (p Perm) String() string {
	var buf [len(permLetters)]byte
	n := 0
	for i := range len(permLetters) {
		if p&(1<<i) != 0 {
			buf[n] = permLetters[i]
			n++
		}
	}
	return string(buf[:n])
}

// Has reports whether p holds every permission in q.
func (p Perm) Has(q Perm) bool { return p&q == q }
