package consumers_test

import (
	"context"
	"errors"
	"fmt"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/hamba/avro/v2"
	"github.com/jackc/pgx/v5"
	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kgo"
	"github.com/twmb/franz-go/pkg/sr"

	"github.com/eventline/eventline/consumers"
	"github.com/eventline/eventline/headers"
	"github.com/eventline/eventline/internal/testkit"
)

// shipment is another team's event, in a domain eventline knows nothing of,
// written by a plain franz-go producer with franz-go's own Confluent serde:
// no eventline-* headers.
type shipment struct {
	ShipmentID string `avro:"shipment_id"`
	Parcels    int32  `avro:"parcels"`
}

const shipmentV1 = `{"type": "record", "name": "ShipmentDispatched", "namespace": "acme.logistics",
  "fields": [{"name": "shipment_id", "type": "string"}, {"name": "parcels", "type": "int"}]}`

// The consumer's reader schema is a later version: a field with a default
// the writer never had (reader-side schema resolution).
const shipmentV2 = `{"type": "record", "name": "ShipmentDispatched", "namespace": "acme.logistics",
  "fields": [{"name": "shipment_id", "type": "string"}, {"name": "parcels", "type": "int"},
             {"name": "carrier", "type": "string", "default": "unknown"}]}`

var shipmentV2Schema = avro.MustParse(shipmentV2)

type shipmentV2Type struct {
	ShipmentID string `avro:"shipment_id"`
	Parcels    int32  `avro:"parcels"`
	Carrier    string `avro:"carrier"`
}

func (*shipmentV2Type) Schema() avro.Schema { return shipmentV2Schema }

// foreignProducer registers shipmentV1 as "<topic>-value" (Confluent's
// default TopicNameStrategy) and encodes with sr.Serde.
func foreignProducer(t testing.TB, e *groupEnv) *sr.Serde {
	t.Helper()
	cl, err := sr.NewClient(sr.URLs(e.regURL))
	if err != nil {
		t.Fatal(err)
	}
	ss, err := cl.CreateSchema(context.Background(), e.topic+"-value", sr.Schema{Schema: shipmentV1, Type: sr.TypeAvro})
	if err != nil {
		t.Fatal(err)
	}
	w := avro.MustParse(shipmentV1)
	var serde sr.Serde
	serde.Register(ss.ID, shipment{}, sr.EncodeFn(func(v any) ([]byte, error) { return avro.Marshal(w, v) }))
	return &serde
}

func foreignRecord(t testing.TB, e *groupEnv, serde *sr.Serde, id string, parcels int32) *kgo.Record {
	t.Helper()
	v, err := serde.Encode(shipment{ShipmentID: id, Parcels: parcels})
	if err != nil {
		t.Fatal(err)
	}
	return &kgo.Record{Topic: e.topic, Key: []byte(id), Value: v}
}

// Records written by another producer are applied exactly once, typed and
// resolved to the reader's schema, through the retry chain, and again only
// as duplicates when the whole topic is delivered a second time.
func TestForeignRecordsAppliedOnce(t *testing.T) {
	e := newGroupEnv(t, 3)
	serde := foreignProducer(t, e)
	var recs []*kgo.Record
	for i := range 20 {
		recs = append(recs, foreignRecord(t, e, serde, fmt.Sprintf("s%02d", i), int32(i)))
	}
	e.produce(t, recs...)
	group := testkit.UniqueName(t, "g")
	mux := consumers.NewMux()
	consumers.Handle(mux, func(ctx context.Context, tx pgx.Tx, ev *consumers.Event, s *shipmentV2Type) error {
		if s.Parcels == 7 && ev.Attempt == 0 {
			return errFlaky // through retry.1
		}
		if s.Carrier != "unknown" || string(ev.Key) != s.ShipmentID || ev.Record() == nil || ev.Type != "acme.logistics.ShipmentDispatched" {
			return consumers.Permanent(fmt.Errorf("event %+v payload %+v", ev, s))
		}
		_, err := tx.Exec(ctx, `INSERT INTO applied (event_id, key, grp, attempt) VALUES ($1, $2, $3, $4)
			ON CONFLICT (event_id) DO UPDATE SET n = applied.n + 1`, ev.ID, s.ShipmentID, group, ev.Attempt)
		return err
	})
	cfg := consumers.Config{Group: group, RetryDelays: fastDelays, Mux: mux}
	g, stop := e.run(t, cfg)
	testkit.WaitFor(t, 30*time.Second, "all shipments applied", func() bool {
		return e.count(t, `SELECT count(*) FROM applied`) == 20
	})
	waitStats(t, g, "20 applied, 1 retried, none dead-lettered", func(st consumers.Stats) bool {
		return st.DeadLettered == 0 && st.Applied == 20 && st.Retried == 1
	})
	stop()
	if n := e.count(t, `SELECT count(*) FROM applied WHERE n <> 1`); n != 0 {
		t.Errorf("%d shipments applied more than once", n)
	}
	if a := e.count(t, `SELECT attempt FROM applied WHERE key = 's07'`); a != 1 {
		t.Errorf("s07 applied at attempt %d, want 1 (from retry.1)", a)
	}

	// Redelivery: rewind the group's committed offsets to the start.
	adm := kadm.NewClient(testkit.Client(t, e.brokers))
	var offs kadm.Offsets
	for p := range int32(3) {
		offs.Add(kadm.Offset{Topic: e.topic, Partition: p, At: 0, LeaderEpoch: -1})
	}
	if err := adm.CommitAllOffsets(context.Background(), group, offs); err != nil {
		t.Fatal(err)
	}
	g2, _ := e.run(t, cfg)
	testkit.WaitFor(t, 30*time.Second, "every shipment seen again", func() bool {
		return g2.Stats().Duplicates == 20
	})
	if n := e.count(t, `SELECT count(*) FROM applied WHERE n <> 1`); n != 0 {
		t.Errorf("after redelivery, %d shipments applied more than once", n)
	}
	if st := g2.Stats(); st.Applied != 0 || st.DeadLettered != 0 {
		t.Errorf("redelivery stats %+v: want nothing applied or dead-lettered", st)
	}
}

// The dedupe key rule, record by record: the eventline-event-id header
// wins; else Config.EventID; else DefaultEventID of the origin, which a
// retry copy shares with its source record.
func TestForeignEventIDRule(t *testing.T) {
	t.Parallel()
	e := newGroupEnv(t, 1)
	serde := foreignProducer(t, e)
	ctx := context.Background()
	var seen []*consumers.Event
	h := func(_ context.Context, _ pgx.Tx, ev *consumers.Event) error { seen = append(seen, ev); return nil }

	src := foreignRecord(t, e, serde, "a", 1)
	src.Offset = 41
	copyRec := foreignRecord(t, e, serde, "a", 1) // the group's retry copy of src
	copyRec.Topic, copyRec.Offset = consumers.RetryTopic(e.topic, "g", 1), 3
	copyRec.Headers = []kgo.RecordHeader{{Key: headers.OriginalTopic, Value: []byte(e.topic)},
		{Key: headers.OriginalPartition, Value: []byte("0")}, {Key: headers.OriginalOffset, Value: []byte("41")},
		{Key: headers.Attempt, Value: []byte("1")}}
	a := consumers.NewApplier("g", "", e.serde, h)
	res, err := a.ApplyBatch(ctx, e.db, []*kgo.Record{src, copyRec})
	if err != nil {
		t.Fatal(err)
	}
	if res[0].Outcome != consumers.Applied || res[1].Outcome != consumers.Duplicate {
		t.Fatalf("source %s, retry copy %s: want applied then duplicate", res[0].Outcome, res[1].Outcome)
	}
	if want, _ := consumers.DefaultEventID(seen[0]); seen[0].ID != want || seen[0].Type != "acme.logistics.ShipmentDispatched" {
		t.Errorf("id %s type %s, want the default id %s and the writer's name", seen[0].ID, seen[0].Type, want)
	}
	if m, ok := seen[0].Payload.(map[string]any); !ok || m["shipment_id"] != "a" {
		t.Errorf("untyped payload %#v, want the generic form", seen[0].Payload)
	}

	// A hook taking the id from a header: same header, same event,
	// whatever the offset.
	b := consumers.NewApplier("g-hook", "", e.serde, h).WithEventID(consumers.EventIDFromHeader("shipment-id"))
	r1, r2 := foreignRecord(t, e, serde, "b", 1), foreignRecord(t, e, serde, "b", 1)
	r1.Offset, r2.Offset = 1, 2
	r1.Headers = []kgo.RecordHeader{{Key: "shipment-id", Value: []byte("SHP-1")}}
	r2.Headers = r1.Headers
	noHeader := foreignRecord(t, e, serde, "c", 1)
	res, err = b.ApplyBatch(ctx, e.db, []*kgo.Record{r1, r2, noHeader})
	if err != nil {
		t.Fatal(err)
	}
	if res[0].Outcome != consumers.Applied || res[1].Outcome != consumers.Duplicate || res[2].Outcome != consumers.Failed ||
		!errors.Is(res[2].Err, consumers.ErrNoEventID) || !consumers.IsPermanent(res[2].Err) {
		t.Fatalf("hook outcomes %s %s %s (%v)", res[0].Outcome, res[1].Outcome, res[2].Outcome, res[2].Err)
	}
	if seen[len(seen)-1].ID != consumers.IDFromString("SHP-1") || consumers.IDFromString("SHP-1") == uuid.Nil {
		t.Errorf("hook id %s", seen[len(seen)-1].ID)
	}
}
