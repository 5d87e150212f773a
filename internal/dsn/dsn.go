// Package dsn renders PostgreSQL connection strings for logs and errors
// without their secrets. It is a leaf: the public packages (relay) and the
// tooling (pgcluster, cli, demo) share it.
package dsn

import (
	"net"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"unicode"

	"github.com/jackc/pgx/v5/pgconn"
)

// Redact renders a connection string (URL or key=value form) for logs:
// user, host, port and database only, never the password, whatever form it
// takes (URL user info, a password= parameter, a quoted value). A string
// that does not parse is not echoed at all.
func Redact(s string) string {
	cfg, err := pgconn.ParseConfig(s)
	if err != nil {
		return "<unparsable connection string>"
	}
	u := url.URL{Scheme: "postgres", Host: net.JoinHostPort(cfg.Host, strconv.Itoa(int(cfg.Port))), Path: "/" + cfg.Database}
	if cfg.Password != "" {
		u.User = url.UserPassword(cfg.User, "xxxxx")
	} else {
		u.User = url.User(cfg.User)
	}
	return u.String()
}

// HasPassword reports whether the connection string s carries a password
// itself: URL user info, a password query parameter, or a password keyword
// in the key=value form. The ones pgx finds elsewhere (PGPASSWORD, a
// passfile) do not count. A string it cannot read counts as carrying one:
// it cannot be shown not to.
func HasPassword(s string) bool {
	if strings.HasPrefix(s, "postgres://") || strings.HasPrefix(s, "postgresql://") {
		u, err := url.Parse(s)
		if err != nil {
			return true
		}
		_, set := u.User.Password()
		return set || u.Query().Has("password")
	}
	keys, ok := keywords(s)
	return !ok || slices.Contains(keys, "password")
}

// keywords lists the keys of a key=value connection string (libpq's
// syntax: spaces around "=" allowed, values bare or single-quoted, with
// backslash escapes); false when s is not in that syntax.
func keywords(s string) ([]string, bool) {
	var keys []string
	i := 0
	skipSpace := func() {
		for i < len(s) && unicode.IsSpace(rune(s[i])) {
			i++
		}
	}
	for {
		skipSpace()
		if i == len(s) {
			return keys, true
		}
		start := i
		for i < len(s) && s[i] != '=' && !unicode.IsSpace(rune(s[i])) {
			i++
		}
		key := s[start:i]
		skipSpace()
		if key == "" || i == len(s) || s[i] != '=' {
			return nil, false
		}
		i++
		skipSpace()
		quoted := i < len(s) && s[i] == '\''
		if quoted {
			i++
		}
		for i < len(s) {
			c := s[i]
			if c == '\\' {
				i += 2
				continue
			}
			if (quoted && c == '\'') || (!quoted && unicode.IsSpace(rune(c))) {
				break
			}
			i++
		}
		if quoted {
			if i >= len(s) {
				return nil, false
			}
			i++ // the closing quote
		}
		keys = append(keys, key)
	}
}
