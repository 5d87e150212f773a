package eventlinetest

// Logical mode: the producer writes each event as a transactional logical
// decoding message, which exists only in the WAL. A Capture holds a
// temporary replication slot of its own and peeks it.

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/jackc/pglogrepl"
	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/eventline/eventline/internal/outboxmsg"
	"github.com/eventline/eventline/migrate"
)

// flushPrefix is the prefix of the message a Capture commits before each
// read to flush the WAL (see flush).
const flushPrefix = "eventlinetest-flush"

// Capture records the events that transactions commit in logical mode
// (producer.ModeLogical) to the outbox of one PostgreSQL schema, from its
// creation by CaptureMessages on. It holds a temporary logical replication
// slot on a connection of its own, released when the test ends (or when
// its process dies: PostgreSQL drops a temporary slot with its session).
// Its methods are safe for concurrent use.
type Capture struct {
	schema, prefix, slot, publication string

	mu     sync.Mutex
	conn   *pgx.Conn
	closed bool
}

// CaptureMessages starts recording the events appended in logical mode to
// the outbox of PostgreSQL schema ("" meaning "public") on db's server, and
// stops when tb ends. PostgreSQL decodes nothing written before a slot
// exists: call it before the code under test appends. Creating a slot
// waits until every transaction then open on the server that wrote has
// ended, so call it before the test opens its own.
//
// The database needs wal_level=logical and the outbox's publication,
// created with the slot by migrate.SetupLogical (`eventline migrate
// --mode logical`), which logical mode needs anyway; the role needs the
// REPLICATION attribute (or superuser). The Capture takes one connection
// out of db for good (db may open another in its place). Each read first
// commits a transaction of its own with an empty message (prefix
// "eventlinetest-flush", which relays ignore) to flush the WAL, so that
// transactions committed under synchronous_commit=off are decoded too.
func CaptureMessages(ctx context.Context, tb testing.TB, db *pgxpool.Pool, schema string) *Capture {
	tb.Helper()
	if schema == "" {
		schema = migrate.DefaultSchema
	}
	pc, err := db.Acquire(ctx)
	if err != nil {
		tb.Fatalf("eventlinetest: capturing messages: acquiring a connection: %v", err)
		return nil
	}
	// The slot is bound to this connection's session: keep it out of the
	// pool.
	c := &Capture{schema: schema, prefix: outboxmsg.Prefix(schema), conn: pc.Hijack()}
	tb.Cleanup(c.close)
	if err := c.start(ctx); err != nil {
		tb.Fatalf("eventlinetest: capturing messages of schema %s: %v", schema, err)
		return nil
	}
	return c
}

func (c *Capture) start(ctx context.Context) error {
	l, err := migrate.LogicalNames(ctx, c.conn, migrate.LogicalOptions{Schema: c.schema})
	if err != nil {
		return err
	}
	c.publication = l.Publication
	var level string
	var havePub bool
	if err := c.conn.QueryRow(ctx, `SELECT current_setting('wal_level'), EXISTS (SELECT 1 FROM pg_publication WHERE pubname = $1)`,
		c.publication).Scan(&level, &havePub); err != nil {
		return fmt.Errorf("reading wal_level and pg_publication: %w", err)
	}
	if level != "logical" {
		return fmt.Errorf("the server runs with wal_level=%s: logical mode needs wal_level=logical", level)
	}
	if !havePub {
		return fmt.Errorf("publication %s does not exist: set up logical mode first (migrate.SetupLogical, or eventline migrate --mode logical)", c.publication)
	}
	var b [8]byte
	_, _ = rand.Read(b[:])
	c.slot = "eventlinetest_" + hex.EncodeToString(b[:])
	if _, err := c.conn.Exec(ctx, `SELECT pg_create_logical_replication_slot($1, 'pgoutput', true)`, c.slot); err != nil {
		var pe *pgconn.PgError
		switch {
		case errors.As(err, &pe) && pe.Code == "42501":
			return fmt.Errorf("creating a replication slot needs a role with REPLICATION or superuser: %w", err)
		case errors.As(err, &pe) && pe.Code == "53400":
			return fmt.Errorf("creating a replication slot: all max_replication_slots are in use: %w", err)
		case ctx.Err() != nil:
			return fmt.Errorf("creating a replication slot, which waits for the transactions open on the server (one this test opened before CaptureMessages?): %w", err)
		}
		return fmt.Errorf("creating a replication slot: %w", err)
	}
	return nil
}

func (c *Capture) close() {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.closed {
		return
	}
	c.closed = true
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	// Closing the session drops the temporary slot; dropping it first
	// makes it gone when the cleanup returns.
	if c.slot != "" && !c.conn.IsClosed() {
		_, _ = c.conn.Exec(ctx, `SELECT pg_drop_replication_slot($1)`, c.slot)
	}
	_ = c.conn.Close(ctx)
}

// RequireAppended fails tb unless a transaction committed since
// CaptureMessages wrote at least one event message selected by match, and
// returns those events in commit order. Only committed transactions are
// decoded: assert after the commit (an uncommitted or rolled-back
// transaction's events are never found). Each event's ID is minus its
// WAL position, as the relay parks it, and its CreatedAt is its
// transaction's commit time.
//
// When nothing matches, the message lists the events captured.
func (c *Capture) RequireAppended(ctx context.Context, tb testing.TB, match Match) []AppendedEvent {
	tb.Helper()
	all, err := c.events(ctx)
	if err != nil {
		tb.Fatalf("eventlinetest: %v", err)
		return nil
	}
	got := filter(all, match, 0)
	if len(got) > 0 {
		return got
	}
	where := fmt.Sprintf("the messages committed to schema %s since CaptureMessages", c.schema)
	if len(all) == 0 {
		tb.Fatalf("eventlinetest: no event with %s in %s; none was committed (only committed transactions are decoded: assert after the commit; in table mode, use RequireAppended)", match, where)
		return nil
	}
	latest, what := all, fmt.Sprintf("it captured %d events:", len(all))
	if len(all) > shown {
		latest, what = all[len(all)-shown:], fmt.Sprintf("it captured %d events, the last %d:", len(all), shown)
	}
	tb.Fatalf("eventlinetest: no event with %s in %s; %s%s", match, where, what, list(latest, false))
	return nil
}

// RequireNotAppended fails tb when a transaction committed since
// CaptureMessages wrote an event message selected by match, listing those
// events. Only committed transactions are decoded: it passes before the
// commit.
func (c *Capture) RequireNotAppended(ctx context.Context, tb testing.TB, match Match) {
	tb.Helper()
	all, err := c.events(ctx)
	if err != nil {
		tb.Fatalf("eventlinetest: %v", err)
		return
	}
	got := filter(all, match, shown)
	if len(got) == 0 {
		return
	}
	tb.Fatalf("eventlinetest: want no event with %s in the messages committed to schema %s since CaptureMessages, found:%s",
		match, c.schema, list(got, len(got) == shown))
}

// filter returns the events of all selected by match, at most limit of
// them (0: all).
func filter(all []AppendedEvent, match Match, limit int) []AppendedEvent {
	var out []AppendedEvent
	for _, e := range all {
		if match.matches(e) {
			out = append(out, e)
			if len(out) == limit {
				break
			}
		}
	}
	return out
}

// events decodes the slot: the outbox events of every transaction
// committed since its creation, in commit order.
func (c *Capture) events(ctx context.Context) ([]AppendedEvent, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.closed || c.conn.IsClosed() {
		return nil, fmt.Errorf("reading slot %s: its connection is closed (the test ended, or a canceled context closed it)", c.slot)
	}
	if err := c.flush(ctx); err != nil {
		return nil, err
	}
	rows, err := c.conn.Query(ctx, `SELECT data FROM pg_logical_slot_peek_binary_changes($1, NULL, NULL,
		'proto_version', '1', 'publication_names', $2, 'messages', 'true')`, c.slot, pgx.Identifier{c.publication}.Sanitize())
	if err != nil {
		return nil, fmt.Errorf("reading slot %s: %w", c.slot, err)
	}
	var (
		out      []AppendedEvent
		inTx     bool
		commitAt time.Time
		data     []byte
	)
	_, err = pgx.ForEachRow(rows, []any{&data}, func() error {
		m, err := pglogrepl.Parse(data)
		if err != nil {
			return fmt.Errorf("decoding: %w", err)
		}
		switch m := m.(type) {
		case *pglogrepl.BeginMessage:
			inTx, commitAt = true, m.CommitTime
		case *pglogrepl.CommitMessage:
			inTx = false
		case *pglogrepl.LogicalDecodingMessage:
			// The producer writes transactional messages only; another
			// prefix is another schema's outbox or another application.
			if !m.Transactional || !inTx || m.Prefix != c.prefix {
				return nil
			}
			e, err := event(m, commitAt)
			if err != nil {
				return err
			}
			out = append(out, e)
		}
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("reading slot %s: %w", c.slot, err)
	}
	return out, nil
}

// flush makes sure the WAL is flushed past every transaction committed
// before the call: the slot decodes only flushed WAL, and a commit under
// synchronous_commit=off (common on test servers) returns before its WAL
// is flushed. A commit with synchronous_commit on flushes the WAL up to its
// own record, so flush commits a message of its own (which the relay and
// the Capture ignore: another prefix).
func (c *Capture) flush(ctx context.Context) error {
	err := pgx.BeginFunc(ctx, c.conn, func(tx pgx.Tx) error {
		if _, err := tx.Exec(ctx, `SET LOCAL synchronous_commit = local`); err != nil {
			return err
		}
		_, err := tx.Exec(ctx, `SELECT pg_logical_emit_message(true, $1, ''::text)`, flushPrefix)
		return err
	})
	if err != nil {
		return fmt.Errorf("flushing the WAL before reading slot %s: %w", c.slot, err)
	}
	return nil
}

// event is the AppendedEvent of the outbox message m, committed at
// commitAt.
func event(m *pglogrepl.LogicalDecodingMessage, commitAt time.Time) (AppendedEvent, error) {
	msg, err := outboxmsg.Decode(m.Content)
	if err != nil {
		return AppendedEvent{}, fmt.Errorf("the message at %s (prefix %s) is not an outbox event: %w", m.LSN, m.Prefix, err)
	}
	e := AppendedEvent{
		ID: -int64(m.LSN), Topic: msg.Topic, Key: msg.Key, Value: msg.Value, EventID: uuid.UUID(msg.EventID),
		EventType: msg.EventType, AggregateType: msg.AggregateType, AggregateID: msg.AggregateID, CreatedAt: commitAt,
	}
	if msg.AggregateVersion != nil {
		e.AggregateVersion = *msg.AggregateVersion
	}
	for _, h := range msg.Headers {
		e.Headers = append(e.Headers, [2]string{h.Key, h.Value})
	}
	return e, nil
}
