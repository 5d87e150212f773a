package relay_test

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/eventline/eventline/internal/outboxmsg"
	"github.com/eventline/eventline/internal/testkit"
	"github.com/eventline/eventline/migrate"
	"github.com/eventline/eventline/relay"
)

// hostile is an event a writer should not be able to publish, and the
// reason the relay must park it with.
type hostile struct {
	name, topic, eventType string
	value                  []byte
	headers                [][2]string
	rawHeaders             string // poll mode: the headers column as written, when not headers
	rawContent             []byte // logical mode: the message content as written, when not an event
	want                   string
}

// framed is a value in Confluent framing: the pipeline check passes it.
var framed = []byte{0, 0, 0, 0, 1, 2}

// hostileEvents are the attempts of the hostile writer: every
// topic that is not the pipeline's (the registry's, a group's retry topic
// with a due time in the year 3000, none, one that does not exist), an
// event type not routed to its topic, a value no consumer can decode, a
// header only eventline writes, a record larger than the topic takes.
func hostileEvents(b *bundle) []hostile {
	year3000 := fmt.Sprint(time.Date(3000, 1, 1, 0, 0, 0, 0, time.UTC).UnixMilli())
	return []hostile{
		{name: "registry topic", topic: "_schemas", eventType: "helpdesk.tickets.TicketOpened", value: framed, want: `topic "_schemas" is not a pipeline topic`},
		{name: "retry topic", topic: b.topic + ".group.retry.1", eventType: "helpdesk.tickets.TicketOpened", value: framed,
			headers: [][2]string{{"eventline-due-at", year3000}}, want: "is not a pipeline topic"},
		{name: "no topic", topic: "", eventType: "helpdesk.tickets.TicketOpened", value: framed, want: "names no topic"},
		{name: "unknown topic", topic: "ghost." + uuid.NewString()[:8], eventType: "helpdesk.tickets.TicketOpened", value: framed, want: "is not a pipeline topic"},
		{name: "unrouted type", topic: b.topic, eventType: "helpdesk.worklog.DeadlineMissed", value: framed, want: "is not routed to topic"},
		{name: "not framed", topic: b.topic, eventType: "helpdesk.tickets.TicketOpened", value: []byte("garbage"), want: "not in Confluent wire format"},
		{name: "reserved header", topic: b.topic, eventType: "helpdesk.tickets.TicketOpened", value: framed,
			headers: [][2]string{{"eventline-due-at", year3000}}, want: `header "eventline-due-at" is reserved`},
		{name: "too large", topic: b.topic, eventType: "helpdesk.tickets.TicketOpened", value: append([]byte{0, 0, 0, 0, 1}, make([]byte, 2<<20)...), want: "MESSAGE_TOO_LARGE"},
	}
}

// A writer with only the access its mode needs to write events (poll mode:
// INSERT on the outbox; logical mode: CONNECT, which is all the issue's
// attacker had) tries every hostile event between legitimate ones. After:
// no hostile record reached any topic, every legitimate event was published
// once and in order, each hostile one is parked with its reason, and in
// logical mode the attacker could not write at all while the slot's
// position moved past everything a granted writer wrote.
func TestHostileWriter(t *testing.T) {
	t.Parallel()
	for _, mode := range []relay.Mode{relay.ModePoll, relay.ModeLogical} {
		t.Run(string(mode), func(t *testing.T) {
			t.Parallel()
			var b *bundle
			if mode == relay.ModeLogical {
				b = setupLogical(t)
			} else {
				b = setup(t)
			}
			ctx := context.Background()
			role := "mallory_" + strings.ReplaceAll(uuid.NewString()[:8], "-", "")
			grant := ""
			if mode == relay.ModePoll {
				grant = `; GRANT INSERT ON eventline_outbox TO ` + role
			}
			if _, err := b.db.Exec(ctx, `CREATE ROLE `+role+` LOGIN PASSWORD 'pw'`+grant); err != nil {
				t.Fatal(err)
			}
			t.Cleanup(func() { _, _ = b.db.Exec(context.Background(), `DROP OWNED BY `+role+`; DROP ROLE `+role) })
			mallory, err := pgx.Connect(ctx, withUser(t, b.dbURL, role, "pw"))
			if err != nil {
				t.Fatal(err)
			}
			defer mallory.Close(ctx)

			aggs := []string{uuid.NewString(), uuid.NewString()}
			b.appendTickets(aggs, 2) // versions 1, 2
			evs := hostileEvents(b)
			if mode == relay.ModePoll {
				evs = append(evs, hostile{name: "headers not pairs", topic: b.topic, eventType: "helpdesk.tickets.TicketOpened", value: framed,
					rawHeaders: `{"eventline-due-at": 1}`, want: "malformed headers"})
				for i := range evs {
					pollWrite(t, mallory, &evs[i])
				}
			} else {
				// The attacker cannot write a message at all, with either
				// overload.
				for _, q := range []string{`SELECT pg_logical_emit_message(true, $1, 'x'::text)`, `SELECT pg_logical_emit_message(true, $1, '\x01'::bytea)`} {
					var pe *pgconn.PgError
					if _, err := mallory.Exec(ctx, q, outboxmsg.Prefix("public")); !errors.As(err, &pe) || pe.Code != "42501" {
						t.Fatalf("%s as a role with CONNECT only: %v, want 42501 (permission denied)", q, err)
					}
				}
				if a, err := migrate.ReadEmitAccess(ctx, b.db); err != nil || a.Public {
					t.Fatalf("emit access after setup: %+v, %v", a, err)
				}
				// A granted writer that misbehaves gets no further.
				evs = append(evs,
					hostile{name: "not an event", rawContent: []byte("\x01garbage"), want: "malformed outbox message"},
					hostile{name: "larger than any event", rawContent: append([]byte{outboxmsg.Version}, make([]byte, outboxmsg.MaxSize)...), want: "was not kept"},
					// Text PostgreSQL would refuse to store: parking must not fail.
					hostile{name: "NUL and invalid UTF-8", topic: "bad\x00topic\xff", eventType: "x\x00", value: framed, want: "is not a pipeline topic"},
					hostile{name: "NUL in a header", topic: b.topic, eventType: "helpdesk.tickets.TicketOpened", value: framed,
						headers: [][2]string{{"eventline-x\x00", "\x00\xff"}}, want: "is reserved for eventline"})
				for i := range evs {
					emitWrite(t, b, &evs[i])
				}
			}
			for _, agg := range aggs {
				b.appendVersion(agg, 3)
			}
			end := b.walNow()

			r, stop := b.start(relay.Config{Mode: mode})
			recs := b.consume(3 * len(aggs))
			if dups := checkOrder(t, recs); dups != 0 {
				t.Errorf("%d duplicates", dups)
			}
			waitFor(t, func() bool { return r.Stats().Parked == uint64(len(evs)) })
			if mode == relay.ModeLogical {
				b.waitSlotPast(end, time.Minute)
			} else {
				waitFor(t, func() bool { return b.outboxCount() == 0 })
			}
			stop()
			if s := r.Stats(); s.Published != uint64(3*len(aggs)) {
				t.Errorf("published %d, want the %d legitimate events", s.Published, 3*len(aggs))
			}

			parked, err := relay.ListParked(ctx, b.db, "")
			if err != nil {
				t.Fatal(err)
			}
			if len(parked) != len(evs) {
				t.Fatalf("%d parked, want %d: %+v", len(parked), len(evs), parked)
			}
			for _, e := range evs {
				found := false
				for _, p := range parked {
					if strings.Contains(p.Error, e.want) && (e.rawContent != nil || p.Topic == asText(e.topic)) {
						found = true
						if e.name == "larger than any event" && p.Size != 0 {
							t.Errorf("%s: parked with %d bytes of content", e.name, p.Size)
						}
					}
				}
				if !found {
					t.Errorf("%s: no parked row with topic %q and reason %q in %+v", e.name, e.topic, e.want, parked)
				}
			}
			for _, p := range parked {
				if p.Error == "" || len(p.Error) > 1000 {
					t.Errorf("parked reason %q: want a short reason", p.Error)
				}
			}
			assertNoHostileRecords(t, b, evs)
		})
	}
}

// pollWrite inserts e into the outbox as the hostile role.
func pollWrite(t *testing.T, db *pgx.Conn, e *hostile) {
	t.Helper()
	headers := e.rawHeaders
	if headers == "" {
		headers = string(outboxmsg.HeadersJSON(toHeaders(e.headers)))
	}
	key := "hostile-" + uuid.NewString()
	if _, err := db.Exec(context.Background(), `INSERT INTO eventline_outbox (topic, record_key, record_value, event_id, event_type, aggregate_type, aggregate_id, headers)
		VALUES ($1, $2, $3, gen_random_uuid(), $4, 'ticket', $5, $6::jsonb)`, e.topic, []byte(key), e.value, e.eventType, key, headers); err != nil {
		t.Fatalf("%s: %v", e.name, err)
	}
}

// emitWrite writes e as a logical decoding message, in a transaction, as
// the granted role.
func emitWrite(t *testing.T, b *bundle, e *hostile) {
	t.Helper()
	content := e.rawContent
	if content == nil {
		key := "hostile-" + uuid.NewString()
		var err error
		content, err = outboxmsg.Encode(&outboxmsg.Event{Topic: e.topic, Key: []byte(key), Value: e.value, EventID: uuid.New(),
			EventType: e.eventType, AggregateType: "ticket", AggregateID: key, Headers: toHeaders(e.headers)})
		if err != nil {
			t.Fatal(err)
		}
	}
	if err := pgx.BeginFunc(context.Background(), b.db, func(tx pgx.Tx) error {
		_, err := tx.Exec(context.Background(), `SELECT pg_logical_emit_message(true, $1, $2::bytea)`, outboxmsg.Prefix("public"), content)
		return err
	}); err != nil {
		t.Fatalf("%s: %v", e.name, err)
	}
}

// asText is s as PostgreSQL can store it.
func asText(s string) string {
	return strings.ReplaceAll(strings.ToValidUTF8(s, "\uFFFD"), "\x00", "\uFFFD")
}

func toHeaders(pairs [][2]string) []outboxmsg.Header {
	hs := make([]outboxmsg.Header, len(pairs))
	for i, p := range pairs {
		hs[i] = outboxmsg.Header{Key: p[0], Value: p[1]}
	}
	return hs
}

// assertNoHostileRecords reads every topic a hostile event named that
// exists (the pipeline topic too) to its end: no record has a hostile key.
func assertNoHostileRecords(t *testing.T, b *bundle, evs []hostile) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	names := map[string]bool{b.topic: true}
	for _, e := range evs {
		if e.topic != "" {
			names[e.topic] = true
		}
	}
	var topics []string
	for n := range names {
		topics = append(topics, n)
	}
	adm := kadm.NewClient(testkit.Client(t, b.brokers))
	ends, err := adm.ListEndOffsets(ctx, topics...)
	if err != nil {
		t.Fatal(err)
	}
	want := map[string]map[int32]kgo.Offset{}
	last := map[string]int64{} // topic/partition -> the last offset to read
	ends.Each(func(o kadm.ListedOffset) {
		if o.Err != nil || o.Offset == 0 {
			return // no such topic, or nothing in the partition
		}
		if want[o.Topic] == nil {
			want[o.Topic] = map[int32]kgo.Offset{}
		}
		want[o.Topic][o.Partition] = kgo.NewOffset().AtStart()
		last[fmt.Sprintf("%s/%d", o.Topic, o.Partition)] = o.Offset - 1
	})
	if len(want[b.topic]) == 0 {
		t.Fatal("the pipeline topic is empty: it should hold the legitimate events")
	}
	cl := testkit.Client(t, b.brokers, kgo.ConsumePartitions(want))
	for len(last) > 0 {
		fs := cl.PollFetches(ctx)
		if ctx.Err() != nil {
			t.Fatalf("reading the topics: partitions not read to their end: %v", last)
		}
		fs.EachRecord(func(r *kgo.Record) {
			tp := fmt.Sprintf("%s/%d", r.Topic, r.Partition)
			if end, ok := last[tp]; ok && r.Offset >= end {
				delete(last, tp)
			}
			if strings.HasPrefix(string(r.Key), "hostile-") {
				t.Errorf("a hostile record reached %s: key %s", r.Topic, r.Key)
			}
		})
	}
}

// A logical-mode relay does not stream from a database where every role
// may write events, unless told to accept it; nor with a role that may not
// write its own heartbeats.
func TestLogicalRefusesUnrestrictedEmit(t *testing.T) {
	t.Parallel()
	b := setup(t) // migrated, logical mode not set up: PUBLIC may emit
	if err := b.runUntilError(t, relay.Config{Mode: relay.ModeLogical}); !errors.Is(err, relay.ErrPublicEmit) || !strings.Contains(err.Error(), "--emitter-role") {
		t.Fatalf("Run with PUBLIC emitting: %v", err)
	}
	r, _, _ := b.run(relay.Config{Mode: relay.ModeLogical, AllowPublicEmit: true})
	waitFor(t, func() bool {
		var active bool
		err := b.db.QueryRow(context.Background(), `SELECT active FROM pg_replication_slots WHERE database = current_database()`).Scan(&active)
		return err == nil && active && r.Stats().Leader
	})

	l := setupLogical(t)
	err := l.asRole(t, "REPLICATION").runUntilError(t, relay.Config{Mode: relay.ModeLogical})
	if !errors.Is(err, migrate.ErrEmitNotGranted) || !strings.Contains(err.Error(), "heartbeat") {
		t.Fatalf("Run as a role that may not emit: %v", err)
	}
}

// asRole is b with a new login role (attrs: its role attributes) that may
// do anything to the outbox tables, and nothing more.
func (b *bundle) asRole(t *testing.T, attrs string) *bundle {
	t.Helper()
	role := "role_" + strings.ReplaceAll(uuid.NewString()[:8], "-", "")
	if _, err := b.db.Exec(context.Background(), `CREATE ROLE `+role+` LOGIN PASSWORD 'pw' `+attrs+`; GRANT ALL ON ALL TABLES IN SCHEMA public TO `+role); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _, _ = b.db.Exec(context.Background(), `DROP OWNED BY `+role+`; DROP ROLE `+role) })
	nb := *b
	nb.dbURL = withUser(t, b.dbURL, role, "pw")
	return &nb
}

// runUntilError runs a relay and returns what Run returned, which must be
// an error within 30 s.
func (b *bundle) runUntilError(t *testing.T, cfg relay.Config) error {
	t.Helper()
	_, result, _ := b.run(cfg)
	select {
	case err := <-result:
		return err
	case <-time.After(30 * time.Second):
		t.Fatal("Run did not return within 30 s")
		return nil
	}
}
