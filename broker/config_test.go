package broker

import (
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

func writeFile(t *testing.T, content string) string {
	t.Helper()
	path := filepath.Join(t.TempDir(), "pubsub.yaml")
	if err := os.WriteFile(path, []byte(content), 0o600); err != nil {
		t.Fatal(err)
	}
	return path
}

func TestDefaultConfigIsValid(t *testing.T) {
	c := DefaultConfig()
	if err := c.Validate(); err != nil {
		t.Fatalf("defaults invalid: %v", err)
	}
}

func TestConfigFileLayers(t *testing.T) {
	// CRLF and a BOM are accepted (I7).
	path := writeFile(t, "\xEF\xBB\xBFlisten: 127.0.0.1:9000\r\nlimits:\r\n  max_inflight: 7\r\n  write_timeout: 3s\r\n  max_packet_size: 2MiB\r\n")
	c := DefaultConfig()
	if err := LoadConfigFile(&c, path); err != nil {
		t.Fatal(err)
	}
	env := map[string]string{"PUBSUB_LIMITS_MAX_INFLIGHT": "9", "LISTEN_PORT": "7000", "PUBSUB_LOG_LEVEL": "debug"}
	if err := ApplyEnv(&c, func(k string) (string, bool) { v, ok := env[k]; return v, ok }); err != nil {
		t.Fatal(err)
	}
	if err := SetConfigValue(&c, "limits.max_queued", "55"); err != nil {
		t.Fatal(err)
	}
	if c.Limits.MaxInflight != 9 {
		t.Errorf("env should win over file: max_inflight = %d", c.Limits.MaxInflight)
	}
	if c.Listen != ":7000" {
		t.Errorf("Eventhub LISTEN_PORT: listen = %q", c.Listen)
	}
	if time.Duration(c.Limits.WriteTimeout) != 3*time.Second || c.Limits.MaxPacketSize != 2<<20 {
		t.Errorf("file values: %+v", c.Limits)
	}
	if c.Limits.MaxQueued != 55 || c.LogLevel != "debug" {
		t.Errorf("flag/env values: queued=%d level=%q", c.Limits.MaxQueued, c.LogLevel)
	}
	if err := c.Validate(); err != nil {
		t.Fatal(err)
	}
}

// TestConfigErrorsNameTheKey covers I1: unknown keys, wrong types and bad
// values stop the start with a message naming the key (and line for files).
func TestConfigErrorsNameTheKey(t *testing.T) {
	fileCases := []struct {
		name, yaml, want string
	}{
		{"unknown key", "listen: :1\nlimtis:\n  max_inflight: 3\n", "limtis"},
		{"typo nested", "limits:\n  max_inflihgt: 3\n", "max_inflihgt"},
		{"wrong type", "limits:\n  max_inflight: lots\n", "line 2"},
		{"bad duration", "limits:\n  write_timeout: soon\n", "line 2"},
		{"bad size", "limits:\n  max_packet_size: huge\n", "line 2"},
	}
	for _, tc := range fileCases {
		t.Run(tc.name, func(t *testing.T) {
			c := DefaultConfig()
			err := LoadConfigFile(&c, writeFile(t, tc.yaml))
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("got %v, want an error mentioning %q", err, tc.want)
			}
		})
	}
	valueCases := []struct{ key, val string }{
		{"limits.max_queued", "0"},
		{"limits.max_inflight", "0"},
		{"limits.max_inflight", "70000"},
		{"limits.max_connections", "-1"},
		{"limits.max_packet_size", "10"},
		{"limits.connect_timeout", "0s"},
		{"limits.write_timeout", "-1s"},
		{"limits.max_pending_bytes", "100"},
		{"listen", "nonsense"},
		{"log_level", "loud"},
		{"log_format", "xml"},
		{"data_dir", ""},
	}
	for _, tc := range valueCases {
		t.Run(tc.key+"="+tc.val, func(t *testing.T) {
			c := DefaultConfig()
			if err := SetConfigValue(&c, tc.key, tc.val); err != nil {
				var ce *ConfigError
				if !errors.As(err, &ce) || ce.Key != tc.key {
					t.Fatalf("parse error does not name %s: %v", tc.key, err)
				}
				return
			}
			err := c.Validate()
			var ce *ConfigError
			if !errors.As(err, &ce) || ce.Key != tc.key {
				t.Fatalf("Validate() = %v, want a ConfigError for %s", err, tc.key)
			}
		})
	}
	c := DefaultConfig()
	err := ApplyEnv(&c, func(k string) (string, bool) {
		if k == "PUBSUB_LIMITS_MAX_INFLIGHT" {
			return "many", true
		}
		return "", false
	})
	if err == nil || !strings.Contains(err.Error(), "limits.max_inflight") || !strings.Contains(err.Error(), "PUBSUB_LIMITS_MAX_INFLIGHT") {
		t.Fatalf("env error should name key and variable: %v", err)
	}
	if err := SetConfigValue(&c, "no.such.key", "1"); err == nil {
		t.Fatal("unknown key accepted")
	}
}

func TestByteSizeRoundTrip(t *testing.T) {
	for in, want := range map[string]int64{"1MiB": 1 << 20, "512KiB": 512 << 10, "1024": 1024, "2GB": 2 << 30, "7 B": 7} {
		got, err := parseByteSize(in)
		if err != nil || got != want {
			t.Errorf("parseByteSize(%q) = %d, %v; want %d", in, got, err, want)
		}
	}
	if ByteSize(1<<20).String() != "1MiB" || ByteSize(1000).String() != "1000" {
		t.Error("ByteSize.String")
	}
}

func TestConfigKeysListsEveryLeaf(t *testing.T) {
	keys := strings.Join(ConfigKeys(), ",")
	for _, k := range []string{"listen", "data_dir", "limits.max_inflight", "limits.write_timeout"} {
		if !strings.Contains(keys, k) {
			t.Errorf("ConfigKeys misses %s", k)
		}
	}
}
