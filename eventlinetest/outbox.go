package eventlinetest

import (
	"context"
	"encoding/json"
	"fmt"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"
)

// Match selects events: every non-zero field must equal the event's.
// The zero Match selects every event.
type Match struct {
	// EventType is the event's Avro full name, e.g. "shop.OrderPlaced".
	EventType     string
	AggregateType string
	AggregateID   string
	Topic         string
	EventID       uuid.UUID
}

// String is m as the failure messages show it, e.g.
// event_type="shop.OrderPlaced" aggregate_id="order-42".
func (m Match) String() string {
	var parts []string
	add := func(name, v string) {
		if v != "" {
			parts = append(parts, name+"="+strconv.Quote(v))
		}
	}
	add("event_type", m.EventType)
	add("aggregate_type", m.AggregateType)
	add("aggregate_id", m.AggregateID)
	add("topic", m.Topic)
	if m.EventID != uuid.Nil {
		add("event_id", m.EventID.String())
	}
	if len(parts) == 0 {
		return "any event"
	}
	return strings.Join(parts, " ")
}

// where is m as a SQL condition with its arguments.
func (m Match) where() (string, []any) {
	conds := []string{"true"}
	var args []any
	add := func(col string, v any) {
		args = append(args, v)
		conds = append(conds, col+" = $"+strconv.Itoa(len(args)))
	}
	if m.EventType != "" {
		add("event_type", m.EventType)
	}
	if m.AggregateType != "" {
		add("aggregate_type", m.AggregateType)
	}
	if m.AggregateID != "" {
		add("aggregate_id", m.AggregateID)
	}
	if m.Topic != "" {
		add("topic", m.Topic)
	}
	if m.EventID != uuid.Nil {
		add("event_id", m.EventID)
	}
	return strings.Join(conds, " AND "), args
}

// matches reports whether m selects e.
func (m Match) matches(e AppendedEvent) bool {
	return (m.EventType == "" || m.EventType == e.EventType) &&
		(m.AggregateType == "" || m.AggregateType == e.AggregateType) &&
		(m.AggregateID == "" || m.AggregateID == e.AggregateID) &&
		(m.Topic == "" || m.Topic == e.Topic) &&
		(m.EventID == uuid.Nil || m.EventID == e.EventID)
}

// AppendedEvent is one event appended: a row of the outbox not yet deleted
// by the relay, or, from a Capture, a message committed in logical mode.
type AppendedEvent struct {
	// ID is the outbox id: rows are published in id order. From a
	// Capture, it is minus the message's WAL position (the id the relay
	// parks it under), and the events come in commit order, the order the
	// relay publishes them.
	ID    int64
	Topic string
	// Key is the Kafka record key (the aggregate id).
	Key []byte
	// Value is the record value in Confluent's wire format (a zero byte,
	// the 4-byte schema id, the Avro body): decode it with an sr.Serde.
	Value            []byte
	EventID          uuid.UUID
	EventType        string
	AggregateType    string
	AggregateID      string
	AggregateVersion int64 // 0 when the event has none
	// Headers are the extra record headers stored with the row (trace
	// context, correlation id, the producer's Headers), in order; the relay
	// adds the eventline-event-* headers from the columns when publishing.
	Headers [][2]string
	// CreatedAt is when the row was inserted; from a Capture, when the
	// transaction committed.
	CreatedAt time.Time
}

// Header returns the value of the first header named key.
func (e AppendedEvent) Header(key string) (string, bool) {
	for _, h := range e.Headers {
		if h[0] == key {
			return h[1], true
		}
	}
	return "", false
}

// String is e on one line, as the failure messages list it.
func (e AppendedEvent) String() string {
	s := fmt.Sprintf("id=%d topic=%s event_type=%s aggregate=%s/%s", e.ID, e.Topic, e.EventType, e.AggregateType, e.AggregateID)
	if e.AggregateVersion != 0 {
		s += "@" + strconv.FormatInt(e.AggregateVersion, 10)
	}
	return s + " event_id=" + e.EventID.String()
}

const outboxColumns = `id, topic, record_key, record_value, event_id, event_type, aggregate_type, aggregate_id, aggregate_version, headers, created_at`

// shown is how many rows a failure message lists at most.
const shown = 20

// RequireAppended fails tb unless the outbox of PostgreSQL schema (""
// meaning "public") holds at least one event selected by match, and returns
// those events in id order. Read through the transaction that appended them
// (a pgx.Tx) to assert before it commits, or through a pool or connection
// after the commit. The relay deletes the rows it publishes (unless its
// retention mode keeps them): assert before a relay runs on that database.
// A producer in logical mode writes no row: use CaptureMessages.
//
// When nothing matches, the message lists the rows the outbox holds.
func RequireAppended(ctx context.Context, tb testing.TB, q Querier, schema string, match Match) []AppendedEvent {
	tb.Helper()
	tbl := table(schema, "eventline_outbox")
	got, err := appended(ctx, q, tbl, match, 0)
	if err != nil {
		tb.Fatalf("eventlinetest: %v", err)
		return nil
	}
	if len(got) > 0 {
		return got
	}
	found, err := describeOutbox(ctx, q, tbl)
	if err != nil {
		tb.Fatalf("eventlinetest: no event with %s in %s, and %v", match, tbl, err)
		return nil
	}
	tb.Fatalf("eventlinetest: no event with %s in %s; %s", match, tbl, found)
	return nil
}

// RequireNotAppended fails tb when the outbox of schema ("" meaning
// "public") holds an event selected by match, listing those events.
func RequireNotAppended(ctx context.Context, tb testing.TB, q Querier, schema string, match Match) {
	tb.Helper()
	tbl := table(schema, "eventline_outbox")
	got, err := appended(ctx, q, tbl, match, shown)
	if err != nil {
		tb.Fatalf("eventlinetest: %v", err)
		return
	}
	if len(got) == 0 {
		return
	}
	tb.Fatalf("eventlinetest: want no event with %s in %s, found:%s", match, tbl, list(got, len(got) == shown))
}

// appended returns the rows of tbl selected by match in id order, at most
// limit of them (0: all).
func appended(ctx context.Context, q Querier, tbl string, match Match, limit int) ([]AppendedEvent, error) {
	where, args := match.where()
	query := `SELECT ` + outboxColumns + ` FROM ` + tbl + ` WHERE ` + where + ` ORDER BY id`
	if limit > 0 {
		query += ` LIMIT ` + strconv.Itoa(limit)
	}
	return queryOutbox(ctx, q, tbl, query, args...)
}

func queryOutbox(ctx context.Context, q Querier, tbl, query string, args ...any) ([]AppendedEvent, error) {
	rows, err := q.Query(ctx, query, args...)
	if err != nil {
		return nil, fmt.Errorf("error reading %s: %w", tbl, err)
	}
	out, err := pgx.CollectRows(rows, func(row pgx.CollectableRow) (AppendedEvent, error) {
		var (
			e       AppendedEvent
			version *int64
			headers []byte
		)
		if err := row.Scan(&e.ID, &e.Topic, &e.Key, &e.Value, &e.EventID, &e.EventType, &e.AggregateType,
			&e.AggregateID, &version, &headers, &e.CreatedAt); err != nil {
			return e, err
		}
		if version != nil {
			e.AggregateVersion = *version
		}
		if err := json.Unmarshal(headers, &e.Headers); err != nil {
			return e, fmt.Errorf("row %d has malformed headers %s: %w", e.ID, headers, err)
		}
		return e, nil
	})
	if err != nil {
		return nil, fmt.Errorf("error reading %s: %w", tbl, err)
	}
	return out, nil
}

// describeOutbox says what tbl holds: its row count and its latest rows.
func describeOutbox(ctx context.Context, q Querier, tbl string) (string, error) {
	n, err := count(ctx, q, `SELECT count(*) FROM `+tbl)
	if err != nil {
		return "", fmt.Errorf("error reading %s: %w", tbl, err)
	}
	if n == 0 {
		return "the outbox is empty (through a pool or another connection, only committed rows show; a relay deletes the rows it publishes)", nil
	}
	latest, err := queryOutbox(ctx, q, tbl, `SELECT `+outboxColumns+` FROM `+tbl+` ORDER BY id DESC LIMIT `+strconv.Itoa(shown))
	if err != nil {
		return "", err
	}
	slices.Reverse(latest)
	what := fmt.Sprintf("it holds %d rows:", n)
	if n > int64(len(latest)) {
		what = fmt.Sprintf("it holds %d rows, the last %d:", n, len(latest))
	}
	return what + list(latest, false), nil
}

func list(events []AppendedEvent, more bool) string {
	var b strings.Builder
	for _, e := range events {
		b.WriteString("\n\t")
		b.WriteString(e.String())
	}
	if more {
		b.WriteString("\n\t...")
	}
	return b.String()
}
