package eventlinetest_test

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/hamba/avro/v2"
	"github.com/jackc/pgx/v5"

	"github.com/eventline/eventline/consumers"
	"github.com/eventline/eventline/eventlinetest"
	"github.com/eventline/eventline/headers"
	"github.com/eventline/eventline/schemas"
)

var parcelSchema = avro.MustParse(`{"type": "record", "name": "ParcelDelivered", "namespace": "acme.shipping", "fields": [
  {"name": "parcel_id", "type": "string"},
  {"name": "delivered_at", "type": {"type": "long", "logicalType": "timestamp-millis"}},
  {"name": "signed_by", "type": ["null", "string"], "default": null}]}`)

// parcelDelivered stands for a type avrogen generated in the team's module.
type parcelDelivered struct {
	ParcelID    string    `avro:"parcel_id"`
	DeliveredAt time.Time `avro:"delivered_at"`
	SignedBy    *string   `avro:"signed_by"`
}

func (*parcelDelivered) Schema() avro.Schema { return parcelSchema }

var parcelLostSchema = avro.MustParse(`{"type": "record", "name": "ParcelLost", "namespace": "acme.shipping",
  "fields": [{"name": "parcel_id", "type": "string"}]}`)

// parcelLost is a type of the same topic that the tested group does not handle.
type parcelLost struct {
	ParcelID string `avro:"parcel_id"`
}

func (*parcelLost) Schema() avro.Schema { return parcelLostSchema }

const group = "tracking"

// tracking is the team's handler under test; calls counts its calls, fail
// (when set) makes it fail after writing its effect.
type tracking struct {
	calls int
	fail  error
	seen  []*consumers.Event
}

func (h *tracking) mux() *consumers.Mux {
	mux := consumers.NewMux()
	consumers.Handle(mux, func(ctx context.Context, tx pgx.Tx, ev *consumers.Event, p *parcelDelivered) error {
		h.calls++
		h.seen = append(h.seen, ev)
		if _, err := tx.Exec(ctx, `INSERT INTO app.delivered (parcel_id, signed_by, delivered_at) VALUES ($1, $2, $3)`, p.ParcelID, p.SignedBy, p.DeliveredAt); err != nil {
			return err
		}
		return h.fail
	})
	return mux
}

func (b *bundle) deliveredTable(t *testing.T) {
	t.Helper()
	if _, err := b.pool.Exec(b.ctx, `CREATE TABLE app.delivered (parcel_id text PRIMARY KEY, signed_by text, delivered_at timestamptz NOT NULL)`); err != nil {
		t.Fatal(err)
	}
}

func countIn(t *testing.T, ctx context.Context, q eventlinetest.Querier, sql string) int {
	t.Helper()
	rows, err := q.Query(ctx, sql)
	if err != nil {
		t.Fatal(err)
	}
	n, err := pgx.CollectExactlyOneRow(rows, pgx.RowTo[int])
	if err != nil {
		t.Fatal(err)
	}
	return n
}

// A typed handler runs on a typed event in the test's transaction: the
// payload and Event it gets are the runtime's, its effects and the dedupe
// row are visible through tx, and a second delivery of the same event id
// is a duplicate that does not call it again.
func TestApplierAppliesInTheTestTransaction(t *testing.T) {
	t.Parallel()
	b := setup(t)
	b.deliveredTable(t)
	h := &tracking{}
	ap := eventlinetest.NewApplier(t, consumers.Config{Group: group, Schema: schema, Mux: h.mux(), Topics: []string{"shipping.parcels"}})
	tx := b.begin(t)
	at := time.UnixMilli(1_790_000_000_000).UTC()
	signed := "front desk"
	res, err := ap.Apply(b.ctx, t, tx, &parcelDelivered{ParcelID: "p-1", DeliveredAt: at, SignedBy: &signed},
		eventlinetest.WithAggregate("parcel", "p-1", 4), eventlinetest.WithHeader("eventline-correlation-id", "c-9"))
	if err != nil || res.Outcome != eventlinetest.Applied || res.EventType != "acme.shipping.ParcelDelivered" || res.EventID == uuid.Nil {
		t.Fatalf("first delivery: %+v, %v; want applied", res, err)
	}
	var got string
	if err := tx.QueryRow(b.ctx, `SELECT signed_by FROM app.delivered WHERE parcel_id = 'p-1' AND delivered_at = $1`, at).Scan(&got); err != nil || got != signed {
		t.Fatalf("effect in tx: %q, %v", got, err)
	}
	eventlinetest.RequireApplied(b.ctx, t, tx, schema, group, res.EventID)
	ev := h.seen[0]
	if ev.ID != res.EventID || ev.Type != "acme.shipping.ParcelDelivered" || ev.Topic != "shipping.parcels" || ev.AggregateType != "parcel" ||
		ev.AggregateID != "p-1" || ev.AggregateVersion != 4 || string(ev.Key) != "p-1" || ev.Headers["eventline-correlation-id"] != "c-9" ||
		ev.Attempt != 0 || ev.Record() == nil {
		t.Errorf("the handler's Event: %+v", ev)
	}

	again, err := ap.Apply(b.ctx, t, tx, &parcelDelivered{ParcelID: "p-1", DeliveredAt: at}, eventlinetest.WithEventID(res.EventID))
	if err != nil || again.Outcome != eventlinetest.Duplicate || again.EventID != res.EventID {
		t.Fatalf("second delivery of %s: %+v, %v; want a duplicate", res.EventID, again, err)
	}
	if h.calls != 1 {
		t.Fatalf("handler called %d times, want once", h.calls)
	}
	if again, err := ap.Redeliver(b.ctx, t, tx, res.Record); err != nil || again.Outcome != eventlinetest.Duplicate {
		t.Fatalf("redelivered record: %+v, %v; want a duplicate", again, err)
	}
	// Nothing was committed: the test's transaction holds it all.
	if n := countIn(t, b.ctx, b.pool, `SELECT count(*) FROM app.delivered`); n != 0 {
		t.Fatalf("%d rows committed outside the test's transaction", n)
	}
}

// A failing handler is reported with its error, and the transaction is
// as it was before: its effect and the dedupe row are undone (a
// savepoint), even after an SQL error that aborted the transaction, and
// the event can be applied again.
func TestApplierHandlerFailureRollsBack(t *testing.T) {
	t.Parallel()
	b := setup(t)
	b.deliveredTable(t)
	errDown := errors.New("carrier API down")
	h := &tracking{fail: errDown}
	ap := eventlinetest.NewApplier(t, consumers.Config{Group: group, Schema: schema, Mux: h.mux()})
	tx := b.begin(t)
	at := time.UnixMilli(1_790_000_000_000).UTC()
	res, err := ap.Apply(b.ctx, t, tx, &parcelDelivered{ParcelID: "p-2", DeliveredAt: at})
	if !errors.Is(err, errDown) || res.Outcome != eventlinetest.Failed {
		t.Fatalf("failing handler: %+v, %v; want failed with %v", res, err, errDown)
	}
	if n := countIn(t, b.ctx, tx, `SELECT count(*) FROM app.delivered`); n != 0 {
		t.Fatalf("the failed handler's effect is in the transaction (%d rows)", n)
	}
	eventlinetest.RequireNotApplied(b.ctx, t, tx, schema, group, res.EventID)

	// An SQL error aborts a transaction; the savepoint restores it.
	if _, err := tx.Exec(b.ctx, `INSERT INTO app.delivered (parcel_id, delivered_at) VALUES ('p-2', $1)`, at); err != nil {
		t.Fatal(err)
	}
	h.fail = nil
	res, err = ap.Apply(b.ctx, t, tx, &parcelDelivered{ParcelID: "p-2", DeliveredAt: at})
	var pgErr interface{ SQLState() string }
	if !errors.As(err, &pgErr) || pgErr.SQLState() != "23505" || res.Outcome != eventlinetest.Failed {
		t.Fatalf("handler hitting a unique violation: %+v, %v", res, err)
	}
	if n := countIn(t, b.ctx, tx, `SELECT count(*) FROM app.delivered`); n != 1 {
		t.Fatalf("after the SQL error the transaction holds %d rows, want the test's own 1", n)
	}
	res, err = ap.Apply(b.ctx, t, tx, &parcelDelivered{ParcelID: "p-3", DeliveredAt: at})
	if err != nil || res.Outcome != eventlinetest.Applied {
		t.Fatalf("after two failures: %+v, %v", res, err)
	}
	// A panic is a permanent failure, as at runtime.
	panicky := consumers.NewMux()
	consumers.Handle(panicky, func(context.Context, pgx.Tx, *consumers.Event, *parcelDelivered) error { panic("boom") })
	res, err = eventlinetest.NewApplier(t, consumers.Config{Group: group, Schema: schema, Mux: panicky}).Apply(b.ctx, t, tx, &parcelDelivered{ParcelID: "p-4", DeliveredAt: at})
	if !consumers.IsPermanent(err) || res.Outcome != eventlinetest.Failed {
		t.Fatalf("panicking handler: %+v, %v; want a permanent failure", res, err)
	}
}

// A type the Mux has no handler for is skipped (nothing written), unless
// Unhandled says otherwise; a record of another producer gets its event
// type from the writer schema and its dedupe key from its origin.
func TestApplierUnhandledAndForeign(t *testing.T) {
	t.Parallel()
	b := setup(t)
	b.deliveredTable(t)
	h := &tracking{}
	mux := h.mux()
	ap := eventlinetest.NewApplier(t, consumers.Config{Group: group, Schema: schema, Mux: mux})
	tx := b.begin(t)
	res, err := ap.Apply(b.ctx, t, tx, &parcelLost{ParcelID: "p-5"})
	if err != nil || res.Outcome != eventlinetest.Skipped || res.EventType != "acme.shipping.ParcelLost" {
		t.Fatalf("unhandled type: %+v, %v; want skipped", res, err)
	}
	eventlinetest.RequireNotApplied(b.ctx, t, tx, schema, group, res.EventID)

	errNoHandler := errors.New("no handler")
	mux.Unhandled(func(context.Context, pgx.Tx, *consumers.Event) error { return consumers.Permanent(errNoHandler) })
	res, err = ap.Apply(b.ctx, t, tx, &parcelLost{ParcelID: "p-5"})
	if !errors.Is(err, errNoHandler) || !consumers.IsPermanent(err) || res.Outcome != eventlinetest.Failed {
		t.Fatalf("Unhandled dead-lettering: %+v, %v", res, err)
	}

	res, err = ap.Apply(b.ctx, t, tx, &parcelDelivered{ParcelID: "p-6", DeliveredAt: time.Now()}, eventlinetest.AsForeign())
	if err != nil || res.Outcome != eventlinetest.Applied || res.EventType != "acme.shipping.ParcelDelivered" {
		t.Fatalf("foreign record: %+v, %v", res, err)
	}
	if ev := h.seen[0]; ev.ID != res.EventID || ev.Headers[headers.EventID] != "" {
		t.Fatalf("foreign event: %+v", ev)
	}
	if want, _ := consumers.DefaultEventID(h.seen[0]); res.EventID != want {
		t.Fatalf("foreign event id %s, want DefaultEventID's %s", res.EventID, want)
	}
	if again, err := ap.Redeliver(b.ctx, t, tx, res.Record); err != nil || again.Outcome != eventlinetest.Duplicate || again.EventID != res.EventID {
		t.Fatalf("foreign record redelivered: %+v, %v", again, err)
	}
}

// The Applier checks the Config as the group does: a half-wired Mux fails
// the test, saying why.
func TestApplierRefusesWhatNewRefuses(t *testing.T) {
	t.Parallel()
	b := setup(t)
	tx := b.begin(t)
	mux := (&tracking{}).mux()
	r := &recorder{TB: t}
	_, _ = eventlinetest.NewApplier(r, consumers.Config{Group: group, Schema: schema, Mux: mux, Events: []schemas.Event{&parcelDelivered{}}}).
		Apply(b.ctx, r, tx, &parcelDelivered{ParcelID: "p-7"})
	requireFailure(t, r, "Mux is set together with Events")
}
