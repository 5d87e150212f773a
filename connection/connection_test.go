package connection_test

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/eventline/eventline/connection"
)

// Each setting maps to its options, and each unusable one is an error that
// names the variable and never the secret.
func TestFromEnv(t *testing.T) {
	dir := t.TempDir()
	pwFile := filepath.Join(dir, "pw")
	if err := os.WriteFile(pwFile, []byte("file-secret-xyzzy\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	notPEM := filepath.Join(dir, "ca.pem")
	if err := os.WriteFile(notPEM, []byte("not a certificate"), 0o600); err != nil {
		t.Fatal(err)
	}
	for name, tc := range map[string]struct {
		env               map[string]string
		kafka, registry   int
		wantErr, notInErr string
	}{
		"nothing set":           {env: map[string]string{}},
		"TLS, system roots":     {env: map[string]string{"KAFKA_TLS": "true"}, kafka: 1},
		"server name means TLS": {env: map[string]string{"KAFKA_TLS_SERVER_NAME": "b.example", "KAFKA_SASL_MECHANISM": "PLAIN", "KAFKA_SASL_USERNAME": "u", "KAFKA_SASL_PASSWORD": "p"}, kafka: 2},
		"skip-verify means TLS": {env: map[string]string{"KAFKA_TLS_INSECURE_SKIP_VERIFY": "true"}, kafka: 1},
		"SCRAM from a file":     {env: map[string]string{"KAFKA_SASL_MECHANISM": "scram-sha-512", "KAFKA_SASL_USERNAME": "u", "KAFKA_SASL_PASSWORD_FILE": pwFile}, kafka: 1},
		"PLAIN over TLS":        {env: map[string]string{"KAFKA_TLS": "1", "KAFKA_SASL_MECHANISM": "PLAIN", "KAFKA_SASL_USERNAME": "u", "KAFKA_SASL_PASSWORD": "p-xyzzy"}, kafka: 2},
		"OAUTHBEARER":           {env: map[string]string{"KAFKA_TLS": "on", "KAFKA_SASL_MECHANISM": "OAUTHBEARER", "KAFKA_SASL_OAUTH_TOKEN_FILE": pwFile}, kafka: 2},
		"AWS_MSK_IAM":           {env: map[string]string{"KAFKA_SASL_MECHANISM": "AWS_MSK_IAM"}, kafka: 1},
		"registry basic":        {env: map[string]string{"SCHEMA_REGISTRY_BASIC_AUTH_USER_INFO": "key:se:cret-xyzzy"}, registry: 1},
		"registry bearer":       {env: map[string]string{"SCHEMA_REGISTRY_BEARER_TOKEN_FILE": pwFile}, registry: 1},

		"no password":     {env: map[string]string{"KAFKA_SASL_MECHANISM": "SCRAM-SHA-256", "KAFKA_SASL_USERNAME": "u"}, wantErr: "KAFKA_SASL_PASSWORD"},
		"unknown mech":    {env: map[string]string{"KAFKA_SASL_MECHANISM": "GSSAPI"}, wantErr: "KAFKA_SASL_MECHANISM"},
		"missing file":    {env: map[string]string{"KAFKA_TLS": "true", "KAFKA_SASL_MECHANISM": "PLAIN", "KAFKA_SASL_USERNAME": "u", "KAFKA_SASL_PASSWORD_FILE": filepath.Join(dir, "none")}, wantErr: "KAFKA_SASL_PASSWORD_FILE"},
		"CA not PEM":      {env: map[string]string{"KAFKA_TLS_CA_FILE": notPEM}, wantErr: "KAFKA_TLS_CA_FILE"},
		"half a pair":     {env: map[string]string{"SCHEMA_REGISTRY_CERT_FILE": notPEM}, wantErr: "SCHEMA_REGISTRY_CERT_FILE and SCHEMA_REGISTRY_KEY_FILE"},
		"both auths":      {env: map[string]string{"SCHEMA_REGISTRY_BASIC_AUTH_USER_INFO": "a:b-xyzzy", "SCHEMA_REGISTRY_BEARER_TOKEN": "t-xyzzy"}, wantErr: "not both", notInErr: "xyzzy"},
		"user info no :":  {env: map[string]string{"SCHEMA_REGISTRY_BASIC_AUTH_USER_INFO": "just-a-secret-xyzzy"}, wantErr: "SCHEMA_REGISTRY_BASIC_AUTH_USER_INFO", notInErr: "xyzzy"},
		"two bad at once": {env: map[string]string{"KAFKA_SASL_MECHANISM": "GSSAPI", "KAFKA_TLS_CA_FILE": notPEM}, wantErr: "KAFKA_TLS_CA_FILE"},
	} {
		t.Run(name, func(t *testing.T) {
			s, err := connection.FromEnv(func(k string) string { return tc.env[k] })
			if tc.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
					t.Fatalf("error %v, want one naming %q", err, tc.wantErr)
				}
				if strings.Contains(err.Error(), "xyzzy") {
					t.Errorf("the error shows a secret: %v", err)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if len(s.Kafka) != tc.kafka || len(s.Registry) != tc.registry {
				t.Errorf("%d Kafka and %d registry options, want %d and %d", len(s.Kafka), len(s.Registry), tc.kafka, tc.registry)
			}
		})
	}
}

// Credentials inside the registry URL are refused (URLs end up in logs),
// without showing them; a plain URL gives a client.
func TestRegistryClientRefusesURLCredentials(t *testing.T) {
	var s connection.Settings
	if _, err := s.RegistryClient("https://key:secret-xyzzy@registry.example:8081"); err == nil ||
		!strings.Contains(err.Error(), "SCHEMA_REGISTRY_BASIC_AUTH_USER_INFO") || strings.Contains(err.Error(), "xyzzy") {
		t.Errorf("URL with credentials: %v", err)
	}
	if cl, err := s.RegistryClient("https://registry.example:8081"); err != nil || cl == nil {
		t.Errorf("plain URL: %v", err)
	}
	for _, bad := range []string{"key:secret-xyzzy@registry.example:8081", "registry.example:8081", "ftp://registry.example", "http://%zz"} {
		if _, err := s.RegistryClient(bad); err == nil || strings.Contains(err.Error(), "xyzzy") {
			t.Errorf("URL %q: %v", bad, err)
		}
	}
}
