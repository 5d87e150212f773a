package connection_test

import (
	"errors"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"testing"

	"github.com/eventline/eventline/connection"
)

// Every accepted spelling reads as its value, in any case and with spaces
// around it; empty is the default; anything else is an error naming the
// variable and not the value.
func TestBool(t *testing.T) {
	t.Parallel()
	get := func(v string) func(string) string {
		return func(k string) string {
			if k == "FLAG" {
				return v
			}
			return ""
		}
	}
	for _, tc := range []struct {
		values []string
		want   bool
	}{
		{[]string{"true", "TRUE", "True", " true ", "yes", "YES", "on", "On", "enabled", "ENABLED", "1", "\t1\n"}, true},
		{[]string{"false", "FALSE", "False", " false", "no", "NO", "off", "OFF", "disabled", "Disabled", "0", " 0 "}, false},
	} {
		for _, v := range tc.values {
			for _, def := range []bool{false, true} {
				got, err := connection.Bool(get(v), "FLAG", def)
				if err != nil || got != tc.want {
					t.Errorf("FLAG=%q (default %v): %v, %v; want %v", v, def, got, err, tc.want)
				}
			}
		}
	}
	for _, def := range []bool{false, true} {
		for _, v := range []string{"", "  "} {
			if got, err := connection.Bool(get(v), "FLAG", def); err != nil || got != def {
				t.Errorf("FLAG=%q (default %v): %v, %v", v, def, got, err)
			}
		}
	}
	for _, v := range []string{"enable", "disable", "y", "n", "t", "f", "2", "-1", "tru", "yes please", "on,", "secret-xyzzy", "ja", "\x00"} {
		_, err := connection.Bool(get(v), "FLAG", false)
		if err == nil || !errors.Is(err, connection.ErrNotBool) || !strings.HasPrefix(err.Error(), "FLAG: ") {
			t.Errorf("FLAG=%q: %v, want an error naming FLAG", v, err)
			continue
		}
		if strings.Contains(err.Error(), "xyzzy") || (len(v) > 1 && strings.Contains(err.Error(), `"`+v)) {
			t.Errorf("FLAG=%q: the error shows the value: %v", v, err)
		}
	}
}

// FromEnv reads every boolean variable with Bool: each spelling of "on"
// turns KAFKA_TLS on (the issue: KAFKA_TLS=on used to mean plaintext), each
// spelling of "off" leaves it off, and a value that is neither is an error
// naming the variable, for each boolean variable.
func TestFromEnvBooleans(t *testing.T) {
	t.Parallel()
	for _, v := range []string{"true", "on", "ON", "enabled", "yes", "1"} {
		s, err := connection.FromEnv(env(map[string]string{"KAFKA_TLS": v}))
		if err != nil || len(s.Kafka) != 1 {
			t.Errorf("KAFKA_TLS=%s: %d options, %v; want TLS", v, len(s.Kafka), err)
		}
	}
	for _, v := range []string{"false", "off", "disabled", "no", "0"} {
		s, err := connection.FromEnv(env(map[string]string{"KAFKA_TLS": v}))
		if err != nil || len(s.Kafka) != 0 {
			t.Errorf("KAFKA_TLS=%s: %d options, %v; want none", v, len(s.Kafka), err)
		}
	}
	for _, name := range []string{"KAFKA_TLS", "KAFKA_TLS_INSECURE_SKIP_VERIFY", "KAFKA_SASL_ALLOW_PLAINTEXT", "SCHEMA_REGISTRY_ALLOW_PLAINTEXT"} {
		for _, v := range []string{"enable", "y", "secret-xyzzy"} {
			_, err := connection.FromEnv(env(map[string]string{name: v}))
			if !errors.Is(err, connection.ErrNotBool) || !strings.Contains(err.Error(), name+": ") || strings.Contains(err.Error(), "xyzzy") {
				t.Errorf("%s=%s: %v, want ErrNotBool naming %s", name, v, err, name)
			}
		}
	}
}

// A VAR_FILE is read up to 64 KiB (a PEM file up to 1 MiB), no further:
// /dev/zero or a huge file is an error naming the variable, and reading it
// allocates a bounded amount.
func TestFileSizeLimit(t *testing.T) {
	dir := t.TempDir()
	write := func(name string, n int) string {
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, []byte(strings.Repeat("x", n)), 0o600); err != nil {
			t.Fatal(err)
		}
		return p
	}
	fits, over, huge := write("fits", 64<<10), write("over", 64<<10+1), write("huge", 8<<20)
	if v, err := connection.Secret(env(map[string]string{"PW_FILE": fits}), "PW"); err != nil || len(v) != 64<<10 {
		t.Errorf("a 64 KiB secret: %d bytes, %v", len(v), err)
	}
	var before, after runtime.MemStats
	runtime.ReadMemStats(&before)
	for _, f := range []string{over, huge, "/dev/zero"} {
		if _, err := connection.Secret(env(map[string]string{"PW_FILE": f}), "PW"); !errors.Is(err, connection.ErrFileTooLarge) || !strings.HasPrefix(err.Error(), "PW_FILE: ") || strings.Contains(err.Error(), "xxxx") {
			t.Errorf("PW_FILE=%s: %v, want ErrFileTooLarge naming PW_FILE", f, err)
		}
	}
	for name, e := range map[string]map[string]string{
		"KAFKA_SASL_PASSWORD_FILE":                  {"KAFKA_TLS": "true", "KAFKA_SASL_MECHANISM": "PLAIN", "KAFKA_SASL_USERNAME": "u", "KAFKA_SASL_PASSWORD_FILE": "/dev/zero"},
		"SCHEMA_REGISTRY_BASIC_AUTH_USER_INFO_FILE": {"SCHEMA_REGISTRY_BASIC_AUTH_USER_INFO_FILE": "/dev/zero"},
		"KAFKA_TLS_CA_FILE":                         {"KAFKA_TLS_CA_FILE": "/dev/zero"},
		"SCHEMA_REGISTRY_CERT_FILE":                 {"SCHEMA_REGISTRY_CERT_FILE": "/dev/zero", "SCHEMA_REGISTRY_KEY_FILE": "/dev/zero"},
	} {
		if _, err := connection.FromEnv(env(e)); !errors.Is(err, connection.ErrFileTooLarge) || !strings.Contains(err.Error(), name+": ") {
			t.Errorf("%s=/dev/zero: %v, want ErrFileTooLarge naming it", name, err)
		}
	}
	runtime.ReadMemStats(&after)
	if grew := after.TotalAlloc - before.TotalAlloc; grew > 32<<20 {
		t.Errorf("reading oversized files allocated %d MiB", grew>>20)
	}
}

func env(m map[string]string) func(string) string { return func(k string) string { return m[k] } }
