// Package dsn renders PostgreSQL connection strings for logs and errors
// without their secrets. It is a leaf: the public packages (relay) and the
// tooling (pgcluster, cli, demo) share it.
package dsn

import (
	"net"
	"net/url"
	"strconv"

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
