package dsn_test

import (
	"strings"
	"testing"

	"github.com/eventline/eventline/internal/dsn"
)

func TestRedact(t *testing.T) {
	t.Parallel()
	for in, want := range map[string]string{
		"postgres://u:secret@h:5432/db?sslmode=disable": "postgres://u:xxxxx@h:5432/db",
		"postgres://u@h/db":                             "postgres://u@h:5432/db",
		"postgres://u@h/db?password=secret":             "postgres://u:xxxxx@h:5432/db",
		"host=h user=u password=secret dbname=d":        "postgres://u:xxxxx@h:5432/d",
		"host=h user=u password='my secret' dbname=d":   "postgres://u:xxxxx@h:5432/d",
		"host=h user=u password = secret dbname=d":      "postgres://u:xxxxx@h:5432/d",
		"postgres://u:secret@h:5432/db?bad_param=%zz":   "<unparsable connection string>",
	} {
		got := dsn.Redact(in)
		if got != want {
			t.Errorf("Redact(%q) = %q, want %q", in, got, want)
		}
		if strings.Contains(got, "secret") {
			t.Errorf("Redact(%q) leaks the password: %q", in, got)
		}
	}
}

// A password in any form the string can carry it is found; the ones pgx
// reads from elsewhere (PGPASSWORD, a passfile) are not in the string; a
// string that cannot be read counts as carrying one.
func TestHasPassword(t *testing.T) {
	t.Parallel()
	for in, want := range map[string]bool{
		"postgres://u:secret@h:5432/db?sslmode=disable":   true,
		"postgresql://u:@h/db":                            true,
		"postgres://u@h/db?password=secret":               true,
		"postgres://h/db?sslmode=verify-full&password=x":  true,
		"postgres://u:secret@h:5432/db?bad_param=%zz":     true,
		"postgres://u@h/db":                               false,
		"postgres://u@h/db?passfile=/run/secrets/pgpass":  false,
		"postgres:///db?host=/var/run/postgresql":         false,
		"host=h user=u password=secret dbname=d":          true,
		"host=h user=u password = secret dbname=d":        true,
		"host=h user=u password='my secret' dbname=d":     true,
		"host=h   password='it\\'s' user=u":               true,
		"host=h user=u dbname=d":                          false,
		"host=h application_name='a password=b' dbname=d": false,
		"host=h user=u passfile=/run/secrets/pgpass":      false,
		"host=h user=u password":                          true,
		"host=h user=u dbname='unterminated password=x":   true,
		"": false,
	} {
		if got := dsn.HasPassword(in); got != want {
			t.Errorf("HasPassword(%q) = %v, want %v", in, got, want)
		}
	}
}
