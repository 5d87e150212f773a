package connection_test

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"errors"
	"math/big"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/eventline/eventline/connection"
)

// No setting fails open to plaintext: TLS files with TLS switched off, SASL
// PLAIN or OAUTHBEARER without TLS (unless KAFKA_SASL_ALLOW_PLAINTEXT), and
// the mechanisms that send no reusable secret allowed. Errors name the
// variables and never a secret.
func TestKafkaPlaintext(t *testing.T) {
	t.Parallel()
	ca := caFile(t)
	plain := map[string]string{"KAFKA_SASL_MECHANISM": "PLAIN", "KAFKA_SASL_USERNAME": "u", "KAFKA_SASL_PASSWORD": "pw-xyzzy"}
	with := func(m map[string]string, kv ...string) map[string]string {
		out := map[string]string{}
		for k, v := range m {
			out[k] = v
		}
		for i := 0; i < len(kv); i += 2 {
			out[kv[i]] = kv[i+1]
		}
		return out
	}
	for name, tc := range map[string]struct {
		env   map[string]string
		kafka int
		want  string // the variable the error names; "" when allowed
	}{
		"KAFKA_TLS=false with a CA":          {env: map[string]string{"KAFKA_TLS": "false", "KAFKA_TLS_CA_FILE": ca}, want: "KAFKA_TLS_CA_FILE"},
		"KAFKA_TLS=off with a client cert":   {env: map[string]string{"KAFKA_TLS": "off", "KAFKA_TLS_CERT_FILE": ca, "KAFKA_TLS_KEY_FILE": ca}, want: "KAFKA_TLS_CERT_FILE"},
		"KAFKA_TLS=0 with a server name":     {env: map[string]string{"KAFKA_TLS": "0", "KAFKA_TLS_SERVER_NAME": "b.example"}, want: "KAFKA_TLS_SERVER_NAME"},
		"KAFKA_TLS=no with skip-verify":      {env: map[string]string{"KAFKA_TLS": "no", "KAFKA_TLS_INSECURE_SKIP_VERIFY": "true"}, want: "KAFKA_TLS_INSECURE_SKIP_VERIFY"},
		"a CA alone means TLS":               {env: map[string]string{"KAFKA_TLS_CA_FILE": ca}, kafka: 1},
		"skip-verify false is no TLS":        {env: map[string]string{"KAFKA_TLS": "false", "KAFKA_TLS_INSECURE_SKIP_VERIFY": "false"}},
		"PLAIN without TLS":                  {env: plain, want: "KAFKA_SASL_MECHANISM=PLAIN"},
		"PLAIN with KAFKA_TLS=off":           {env: with(plain, "KAFKA_TLS", "off"), want: "KAFKA_SASL_MECHANISM=PLAIN"},
		"PLAIN, opt-out":                     {env: with(plain, "KAFKA_SASL_ALLOW_PLAINTEXT", "true"), kafka: 1},
		"PLAIN, opt-out false":               {env: with(plain, "KAFKA_SASL_ALLOW_PLAINTEXT", "false"), want: "KAFKA_SASL_MECHANISM=PLAIN"},
		"PLAIN over TLS":                     {env: with(plain, "KAFKA_TLS", "on"), kafka: 2},
		"PLAIN over TLS with a CA":           {env: with(plain, "KAFKA_TLS_CA_FILE", ca), kafka: 2},
		"OAUTHBEARER without TLS":            {env: map[string]string{"KAFKA_SASL_MECHANISM": "oauthbearer", "KAFKA_SASL_OAUTH_TOKEN": "tok-xyzzy"}, want: "KAFKA_SASL_MECHANISM=OAUTHBEARER"},
		"OAUTHBEARER, opt-out":               {env: map[string]string{"KAFKA_SASL_MECHANISM": "OAUTHBEARER", "KAFKA_SASL_OAUTH_TOKEN": "tok-xyzzy", "KAFKA_SASL_ALLOW_PLAINTEXT": "yes"}, kafka: 1},
		"SCRAM without TLS":                  {env: map[string]string{"KAFKA_SASL_MECHANISM": "SCRAM-SHA-256", "KAFKA_SASL_USERNAME": "u", "KAFKA_SASL_PASSWORD": "pw-xyzzy"}, kafka: 1},
		"AWS_MSK_IAM without TLS":            {env: map[string]string{"KAFKA_SASL_MECHANISM": "AWS_MSK_IAM"}, kafka: 1},
		"an unparsable KAFKA_TLS with PLAIN": {env: with(plain, "KAFKA_TLS", "enable"), want: "KAFKA_TLS: "},
	} {
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			s, err := connection.FromEnv(env(tc.env))
			if tc.want == "" {
				if err != nil || len(s.Kafka) != tc.kafka {
					t.Fatalf("%d Kafka options, %v; want %d", len(s.Kafka), err, tc.kafka)
				}
				return
			}
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("error %v, want one naming %q", err, tc.want)
			}
			if !errors.Is(err, connection.ErrPlaintext) && !errors.Is(err, connection.ErrNotBool) {
				t.Errorf("error %v is neither ErrPlaintext nor ErrNotBool", err)
			}
			if strings.Contains(err.Error(), "xyzzy") {
				t.Errorf("the error shows a secret: %v", err)
			}
		})
	}
}

// RegistryClient refuses a registry CA or client certificate with an
// http:// URL, and credentials over http:// to a host that is not loopback
// unless SCHEMA_REGISTRY_ALLOW_PLAINTEXT; loopback (the dev stack) and
// https:// are fine.
func TestRegistryPlaintext(t *testing.T) {
	t.Parallel()
	ca := caFile(t)
	basic := map[string]string{"SCHEMA_REGISTRY_BASIC_AUTH_USER_INFO": "key:secret-xyzzy"}
	bearer := map[string]string{"SCHEMA_REGISTRY_BEARER_TOKEN": "tok-xyzzy"}
	optOut := map[string]string{"SCHEMA_REGISTRY_BASIC_AUTH_USER_INFO": "key:secret-xyzzy", "SCHEMA_REGISTRY_ALLOW_PLAINTEXT": "on"}
	caOnly := map[string]string{"SCHEMA_REGISTRY_CA_FILE": ca}
	caOptOut := map[string]string{"SCHEMA_REGISTRY_CA_FILE": ca, "SCHEMA_REGISTRY_ALLOW_PLAINTEXT": "true"}
	for _, tc := range []struct {
		env  map[string]string
		url  string
		want string // the variable the error names; "" when allowed
	}{
		{caOnly, "http://registry.example:8081", "SCHEMA_REGISTRY_CA_FILE"},
		{caOnly, "http://127.0.0.1:8081", "SCHEMA_REGISTRY_CA_FILE"},
		{caOptOut, "http://registry.example:8081", "SCHEMA_REGISTRY_CA_FILE"},
		{caOnly, "https://registry.example:8081", ""},
		{basic, "http://registry.example:8081", "SCHEMA_REGISTRY_BASIC_AUTH_USER_INFO"},
		{basic, "HTTP://10.0.0.7:8081", "SCHEMA_REGISTRY_BASIC_AUTH_USER_INFO"},
		{basic, "http://localhost.evil.example:8081", "SCHEMA_REGISTRY_BASIC_AUTH_USER_INFO"},
		{basic, "http://127.0.0.1.nip.io:8081", "SCHEMA_REGISTRY_BASIC_AUTH_USER_INFO"},
		{bearer, "http://registry.example", "SCHEMA_REGISTRY_BEARER_TOKEN"},
		{basic, "https://registry.example:8081", ""},
		{basic, "http://127.0.0.1:8081", ""},
		{basic, "http://127.8.0.1:8081", ""},
		{basic, "http://[::1]:8081", ""},
		{basic, "http://LocalHost:8081", ""},
		{bearer, "http://localhost", ""},
		{optOut, "http://registry.example:8081", ""},
		{map[string]string{}, "http://registry.example:8081", ""},
	} {
		s, err := connection.FromEnv(env(tc.env))
		if err != nil {
			t.Fatalf("%v: %v", tc.env, err)
		}
		cl, err := s.RegistryClient(tc.url)
		if tc.want == "" {
			if err != nil || cl == nil {
				t.Errorf("%v, %s: %v", tc.env, tc.url, err)
			}
			continue
		}
		if !errors.Is(err, connection.ErrPlaintext) || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%v, %s: %v, want ErrPlaintext naming %s", tc.env, tc.url, err, tc.want)
		} else if strings.Contains(err.Error(), "xyzzy") {
			t.Errorf("the error shows a secret: %v", err)
		}
	}
}

// caFile writes a self-signed CA certificate (which also serves as a client
// certificate file: the tests that use it fail before the key is read).
func caFile(t *testing.T) string {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "test CA"}, NotBefore: time.Now().Add(-time.Hour),
		NotAfter: time.Now().Add(time.Hour), IsCA: true, BasicConstraintsValid: true, KeyUsage: x509.KeyUsageCertSign}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	p := filepath.Join(t.TempDir(), "ca.pem")
	if err := os.WriteFile(p, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), 0o600); err != nil {
		t.Fatal(err)
	}
	return p
}
