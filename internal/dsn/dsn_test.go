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
