package migrate

import (
	"fmt"
	"strings"
)

// Mode is how an outbox carries its events from the producers to the
// relay. The producers and the relay of one outbox use the same Mode
// (producer.Config.Mode, relay.Config.Mode: both are this type), and so do
// `eventline migrate --mode`, `eventline relay --mode` and the variable
// EVENTLINE_MODE, read with ParseMode.
type Mode string

const (
	// ModePoll, the default: each event is an eventline_outbox row,
	// inserted in the business transaction; the relay polls the table,
	// publishes the rows and deletes them. Any PostgreSQL, no privilege
	// beyond the tables.
	ModePoll Mode = "poll"
	// ModeLogical: each event is a transactional logical decoding message
	// (no row); the relay streams them from a replication slot in commit
	// order. It needs wal_level=logical, a role with REPLICATION, and
	// SetupLogical (`eventline migrate --mode logical`) before the first
	// event.
	ModeLogical Mode = "logical"
)

// ParseMode reads a mode as written in flags and EVENTLINE_MODE: "poll" or
// "logical" in any case; empty is ModePoll. Anything else is an error
// naming the two.
func ParseMode(s string) (Mode, error) {
	switch m := Mode(strings.ToLower(strings.TrimSpace(s))); m {
	case "":
		return ModePoll, nil
	case ModePoll, ModeLogical:
		return m, nil
	}
	return "", fmt.Errorf("mode %q: want %q or %q", s, ModePoll, ModeLogical)
}

// Valid reports whether m is ModePoll or ModeLogical (the zero Mode is not:
// Config types read it as their default, ModePoll).
func (m Mode) Valid() bool { return m == ModePoll || m == ModeLogical }
