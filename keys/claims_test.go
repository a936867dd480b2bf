package keys

import (
	"errors"
	"testing"
	"time"

	"github.com/golang-jwt/jwt/v5"
)

// channelKey is what keygen mints for an Emitter channel target.
func channelKey(t *testing.T, channel, perm string) *Claims {
	t.Helper()
	f, err := ChannelFilter(channel)
	if err != nil {
		t.Fatalf("ChannelFilter(%q): %v", channel, err)
	}
	return &Claims{Read: []string{f}, Write: []string{f}, Perm: perm}
}

// TestScopedKeyDenied is reliability case E5: a key for channel a/b/ used on
// neighbouring, parent, wildcard, traversal and differently cased channels.
func TestScopedKeyDenied(t *testing.T) {
	key := channelKey(t, "a/b/", "rwslp")
	for _, channel := range []string{"a/", "a/bc/", "a/b/../x", "a/b/../x/", "a/+/", "#/", "A/b/"} {
		t.Run(channel, func(t *testing.T) {
			// The Emitter dialect turns the channel into a filter first;
			// a channel that does not convert is refused outright.
			if f, err := ChannelFilter(channel); err == nil && key.CanSubscribe(f) {
				t.Errorf("subscribe to channel %q allowed", channel)
			}
			// The same strings as raw MQTT topics and filters.
			for _, s := range []string{channel, trimSlash(channel)} {
				if key.CanSubscribe(s) || key.CanLoad(s) || key.CanPresence(s) {
					t.Errorf("read access to %q allowed", s)
				}
				if key.CanPublish(s) || key.CanStore(s) {
					t.Errorf("write access to %q allowed", s)
				}
			}
		})
	}
	// The channel itself and its sub-channels stay allowed.
	for _, s := range []string{"a/b", "a/b/", "a/b/c", "a/b/c/d"} {
		if !key.CanSubscribe(s) || !key.CanPublish(s) {
			t.Errorf("key for a/b/ must allow %q", s)
		}
	}
}

func trimSlash(s string) string {
	if len(s) > 1 && s[len(s)-1] == '/' {
		return s[:len(s)-1]
	}
	return s
}

// TestPermissionsGateOperations covers reliability cases E6 and E7 and the
// one-letter-per-operation rule.
func TestPermissionsGateOperations(t *testing.T) {
	const topic = "chat/room1"
	tests := []struct {
		name                            string
		perm                            string
		sub, pub, load, store, presence bool
		extend                          bool
	}{
		{"read only publishes (E6)", "r", true, false, false, false, false, false},
		{"write only subscribes (E6)", "w", false, true, false, false, false, false},
		{"extend only (E7)", "e", false, false, false, false, false, true},
		{"extend with everything (E7)", "rwslpe", false, false, false, false, false, true},
		{"read and load", "rl", true, false, true, false, false, false},
		{"write and store", "ws", false, true, false, true, false, false},
		{"store without write", "s", false, false, false, true, false, false},
		{"presence", "p", false, false, false, false, true, false},
		{"all but extend", "rwslp", true, true, true, true, true, false},
		{"unknown letter fails closed", "rwx", false, false, false, false, false, false},
		{"upper case fails closed", "RW", false, false, false, false, false, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c := Claims{Read: []string{"chat/#"}, Write: []string{"chat/#"}, Perm: tt.perm}
			got := []bool{c.CanSubscribe(topic), c.CanPublish(topic), c.CanLoad(topic), c.CanStore(topic), c.CanPresence(topic), c.CanExtend("chat/room1/x")}
			want := []bool{tt.sub, tt.pub, tt.load, tt.store, tt.presence, tt.extend}
			names := []string{"subscribe", "publish", "load", "store", "presence", "extend"}
			for i := range got {
				if got[i] != want[i] {
					t.Errorf("perm %q: %s = %v, want %v", tt.perm, names[i], got[i], want[i])
				}
			}
		})
	}
}

// TestReadAndWriteListsAreSeparate: read entries never authorise a publish
// and write entries never authorise a subscribe.
func TestReadAndWriteListsAreSeparate(t *testing.T) {
	c := Claims{Read: []string{"in/#"}, Write: []string{"out/#"}, Perm: "rwsl"}
	checks := []struct {
		name string
		got  bool
		want bool
	}{
		{"subscribe in", c.CanSubscribe("in/x"), true},
		{"subscribe out", c.CanSubscribe("out/x"), false},
		{"publish out", c.CanPublish("out/x"), true},
		{"publish in", c.CanPublish("in/x"), false},
		{"load in", c.CanLoad("in/#"), true},
		{"load out", c.CanLoad("out/#"), false},
		{"store out", c.CanStore("out/x"), true},
		{"store in", c.CanStore("in/x"), false},
		{"publish to a filter", c.CanPublish("out/+"), false}, // [MQTT-3.3.2-2]
		{"publish to out/#", c.CanPublish("out/#"), false},
		{"publish NUL", c.CanPublish("out/\x00"), false},
		{"publish empty", c.CanPublish(""), false},
		{"subscribe invalid", c.CanSubscribe("in/#/x"), false},
	}
	for _, ch := range checks {
		if ch.got != ch.want {
			t.Errorf("%s = %v, want %v", ch.name, ch.got, ch.want)
		}
	}
}

// TestSubjectDoesNotWiden is reliability case E9: identities that look like
// filters are labels only.
func TestSubjectDoesNotWiden(t *testing.T) {
	for _, sub := range []string{"#", "+", "a/#", "$SYS/#", "%c/%u", "../.."} {
		c := Claims{Subject: sub, Read: []string{"a/b/#"}, Write: []string{"a/b/#"}, Perm: "rwslp"}
		for _, s := range []string{"#", "+", "a/#", "a/c", sub, "$SYS/x"} {
			if c.CanSubscribe(s) || c.CanPublish(s) {
				t.Errorf("sub %q widened access to %q", sub, s)
			}
		}
		if !c.CanSubscribe("a/b/#") {
			t.Errorf("sub %q broke the key's own access", sub)
		}
	}
}

func TestMasterCoversEverything(t *testing.T) {
	c := Claims{Perm: "m"}
	if !c.IsMaster() {
		t.Fatal("perm m is master")
	}
	for _, s := range []string{"$SYS/stats/n1", "#", "a/b"} {
		if !c.CanSubscribe(s) || !c.CanLoad(s) || !c.CanPresence(s) {
			t.Errorf("master denied reading %q", s)
		}
	}
	if !c.CanPublish("$SYS/x") || !c.CanStore("a") {
		t.Error("master denied writing")
	}
	// Master with 'e' is still master.
	if c := (Claims{Perm: "me"}); !c.CanSubscribe("a") {
		t.Error("'e' must not take master's rights away")
	}
	// Non-master keys with "#" do not reach $SYS [MQTT-4.7.2-1].
	wide := Claims{Read: []string{"#"}, Write: []string{"#"}, Perm: "rw"}
	if wide.CanSubscribe("$SYS/#") || wide.CanPublish("$SYS/x") || wide.IsMaster() {
		t.Error("a # key reached $SYS or is master")
	}
}

func TestSharedSubscriptions(t *testing.T) {
	tests := []struct {
		read   string
		filter string
		want   bool
	}{
		{"a/#", "$share/g/a/b", true},
		{"a/#", "$share/g/a/#", true},
		{"a/#", "$share/g/b", false},
		{"$share/g/a/#", "$share/g/a/x", true}, // Emitter mints keys for the literal share channel
		{"$share/g/a/#", "$share/h/a/x", false},
		{"$share/g/a/#", "a/x", false},
		{"#", "$share/g/a", true},
		{"a/#", "$share//a/b", false},  // empty group
		{"a/#", "$share/+/a/b", false}, // wildcard group
		{"a/#", "$share/g", false},
	}
	for _, tt := range tests {
		c := Claims{Read: []string{tt.read}, Perm: "r"}
		if got := c.CanSubscribe(tt.filter); got != tt.want {
			t.Errorf("read %q, subscribe %q = %v, want %v", tt.read, tt.filter, got, tt.want)
		}
	}
}

// TestEventhubPerms pins the reading of a token without perm.
func TestEventhubPerms(t *testing.T) {
	tests := []struct {
		read, write []string
		want        Perm
	}{
		{[]string{"a"}, nil, PermRead | PermLoad},
		{nil, []string{"a"}, PermWrite | PermStore},
		{[]string{"a"}, []string{"b"}, PermRead | PermLoad | PermWrite | PermStore},
		{nil, nil, 0},
	}
	for _, tt := range tests {
		c := Claims{Read: tt.read, Write: tt.write}
		if got := c.Perms(); got != tt.want {
			t.Errorf("read %v write %v: Perms() = %v, want %v", tt.read, tt.write, got, tt.want)
		}
	}
}

func TestExtend(t *testing.T) {
	parentExp := jwt.NewNumericDate(testNow.Add(time.Hour))
	parent := Claims{Subject: "alice", Read: []string{"a/b/#"}, Write: []string{"a/b/#"}, Perm: "rwslpe", ExpiresAt: parentExp}
	tests := []struct {
		name      string
		parent    Claims
		filter    string
		requested Perm
		expiresAt time.Time
		wantErr   bool
		wantPerm  string
		wantRead  bool
		wantWrite bool
		wantExp   time.Time
	}{
		{"private sub-channel", parent, "a/b/conn1/#", PermRead | PermWrite, testNow.Add(time.Minute), false, "rw", true, true, testNow.Add(time.Minute)},
		{"never outlives the parent", parent, "a/b/conn1/#", PermRead, testNow.Add(48 * time.Hour), false, "r", true, true, parentExp.Time},
		{"zero exp takes the parent's", parent, "a/b/conn1/#", PermRead, time.Time{}, false, "r", true, true, parentExp.Time},
		{"cannot pass on e or m", parent, "a/b/x/#", PermAll, time.Time{}, false, "rwslp", true, true, parentExp.Time},
		{"only letters the parent holds", Claims{Read: []string{"a/#"}, Perm: "re"}, "a/x/#", PermRead | PermWrite, time.Time{}, false, "r", true, false, time.Time{}},
		{"outside the parent's channel", parent, "a/c/#", PermRead, time.Time{}, true, "", false, false, time.Time{}},
		{"the parent itself is fine", parent, "a/b/#", PermRead, time.Time{}, false, "r", true, true, parentExp.Time},
		{"no e", Claims{Read: []string{"a/#"}, Perm: "rw"}, "a/x/#", PermRead, time.Time{}, true, "", false, false, time.Time{}},
		{"nothing requested that is held", Claims{Read: []string{"a/#"}, Perm: "re"}, "a/x/#", PermPresence, time.Time{}, true, "", false, false, time.Time{}},
		{"invalid filter", parent, "a/b/#/x", PermRead, time.Time{}, true, "", false, false, time.Time{}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			child, err := tt.parent.Extend(tt.filter, tt.requested, tt.expiresAt)
			if tt.wantErr {
				if !errors.Is(err, ErrForbidden) {
					t.Fatalf("Extend = %+v, %v; want ErrForbidden", child, err)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if child.Perm != tt.wantPerm || (len(child.Read) == 1) != tt.wantRead || (len(child.Write) == 1) != tt.wantWrite {
				t.Fatalf("child = %+v", child)
			}
			if child.Subject != tt.parent.Subject {
				t.Errorf("subject %q, want %q", child.Subject, tt.parent.Subject)
			}
			if tt.wantExp.IsZero() != (child.ExpiresAt == nil) || (child.ExpiresAt != nil && !child.ExpiresAt.Equal(tt.wantExp)) {
				t.Errorf("exp = %v, want %v", child.ExpiresAt, tt.wantExp)
			}
			// The child is an ordinary key: it works on its channel only.
			if tt.wantRead && strContains(tt.wantPerm, 'r') && (!child.CanSubscribe(tt.filter) || child.CanSubscribe("a/#")) {
				t.Error("child's read scope is wrong")
			}
		})
	}
}

func strContains(s string, b byte) bool {
	for i := range len(s) {
		if s[i] == b {
			return true
		}
	}
	return false
}

func TestClaimsCheck(t *testing.T) {
	tests := []struct {
		name       string
		claims     Claims
		strictErr  bool
		lenientErr bool
		keptRead   int
	}{
		{"ok", Claims{Read: []string{"a/#"}, Perm: "r"}, false, false, 1},
		{"master without filters", Claims{Perm: "m"}, false, false, 0},
		{"no filters", Claims{Perm: "rw"}, true, true, 0},
		{"bad letter", Claims{Read: []string{"a"}, Perm: "rz"}, true, true, 1},
		{"invalid filter dropped", Claims{Read: []string{"a#", "b/#"}}, true, false, 1},
		{"only invalid filters", Claims{Read: []string{"a#", "a/#/b", "a/../b"}}, true, true, 0},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			strict := tt.claims
			strict.Read = append([]string(nil), tt.claims.Read...)
			if err := strict.check(true); (err != nil) != tt.strictErr || (err != nil && !errors.Is(err, ErrInvalidClaims)) {
				t.Errorf("strict check: %v", err)
			}
			lenient := tt.claims
			lenient.Read = append([]string(nil), tt.claims.Read...)
			err := lenient.check(false)
			if (err != nil) != tt.lenientErr || (err != nil && !errors.Is(err, ErrInvalidClaims)) {
				t.Errorf("lenient check: %v", err)
			}
			if err == nil && len(lenient.Read) != tt.keptRead {
				t.Errorf("kept %v, want %d entries", lenient.Read, tt.keptRead)
			}
		})
	}
}
