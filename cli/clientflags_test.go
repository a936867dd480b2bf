package cli

import (
	"bytes"
	"context"
	"strings"
	"testing"
)

// TestHelpNeverShowsTheKey: PUBSUB_KEY is the --key default, but help text
// must not print it.
func TestHelpNeverShowsTheKey(t *testing.T) {
	const secret = "eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiJ4In0.c2VjcmV0LXNpZ25hdHVyZQ"
	for _, cmd := range []string{"pub", "sub", "top", "bench"} {
		var out, errOut bytes.Buffer
		streams := Streams{In: strings.NewReader(""), Out: &out, ErrOut: &errOut, Env: func(k string) (string, bool) {
			if k == "PUBSUB_KEY" {
				return secret, true
			}
			return "", false
		}}
		if code := Execute(context.Background(), []string{cmd, "--help"}, streams, BuildInfo{}); code != 0 {
			t.Fatalf("%s --help: exit %d: %s", cmd, code, errOut.String())
		}
		if strings.Contains(out.String(), secret) || strings.Contains(errOut.String(), secret) {
			t.Errorf("%s --help prints the key from PUBSUB_KEY", cmd)
		}
	}
}
