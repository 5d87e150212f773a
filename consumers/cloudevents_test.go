package consumers_test

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"testing"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"
	"github.com/twmb/franz-go/pkg/kgo"
	"github.com/twmb/franz-go/pkg/sr"

	"github.com/eventline/eventline/consumers"
	"github.com/eventline/eventline/headers"
	"github.com/eventline/eventline/internal/testkit"
)

const ceShipmentType = "com.acme.shipment.dispatched" // not an Avro full name

// ceRecord is a shipment as a foreign CloudEvents producer writes it in
// binary content mode: only ce_* headers and content-type, no eventline
// header, a Confluent-framed value.
func ceRecord(t testing.TB, e *groupEnv, serde *sr.Serde, ceID, source, ceType string, parcels int32) *kgo.Record {
	t.Helper()
	r := foreignRecord(t, e, serde, "s-"+ceID, parcels)
	r.Headers = []kgo.RecordHeader{
		{Key: headers.CESpecVersion, Value: []byte("1.0")},
		{Key: headers.CEID, Value: []byte(ceID)},
		{Key: headers.CESource, Value: []byte(source)},
		{Key: headers.CEType, Value: []byte(ceType)},
		{Key: headers.CETime, Value: []byte("2026-10-01T12:00:00Z")},
		{Key: headers.ContentType, Value: []byte("application/avro")},
	}
	return r
}

// Records of a foreign CloudEvents producer (ce_* headers only; the same
// ce_id twice, at different offsets) are applied once each by ce_id, by a
// typed handler although ce_type is not an Avro full name: the payload
// decodes into the writer schema's Go type while Event.Type says ce_type.
// Records with a forged or broken CloudEvents envelope go to the
// dead-letter topic with a clear reason; the group carries on.
func TestCloudEventsForeignRecordsAppliedOnce(t *testing.T) {
	e := newGroupEnv(t, 3)
	serde := foreignProducer(t, e)
	const src = "/acme/logistics"
	dupUUID := uuid.NewString()
	var recs []*kgo.Record
	for i := range 10 {
		recs = append(recs, ceRecord(t, e, serde, fmt.Sprintf("ship-%d", i), src, ceShipmentType, int32(i)))
	}
	recs = append(recs,
		ceRecord(t, e, serde, "ship-3", src, ceShipmentType, 3), // a redelivery by the producer
		ceRecord(t, e, serde, dupUUID, src, ceShipmentType, 100),
		ceRecord(t, e, serde, dupUUID, "/elsewhere", ceShipmentType, 100),        // a UUID id is unique whatever the source
		ceRecord(t, e, serde, "", src, ceShipmentType, 200),                      // empty ce_id: DLT
		ceRecord(t, e, serde, "ship-big", src, strings.Repeat("t", 64<<10), 201), // 64 KiB ce_type: DLT
	)
	e.produce(t, recs...)
	group := testkit.UniqueName(t, "g")
	mux := consumers.NewMux()
	consumers.Handle(mux, func(ctx context.Context, tx pgx.Tx, ev *consumers.Event, s *shipmentV2Type) error {
		if ev.Type != ceShipmentType || s.Carrier != "unknown" || ev.Headers[headers.CEID] == "" {
			return consumers.Permanent(fmt.Errorf("event type %q payload %+v", ev.Type, s))
		}
		_, err := tx.Exec(ctx, `INSERT INTO applied (event_id, key, grp, attempt) VALUES ($1, $2, $3, $4)
			ON CONFLICT (event_id) DO UPDATE SET n = applied.n + 1`, ev.ID, ev.Headers[headers.CEID], group, ev.Attempt)
		return err
	})
	g, stop := e.run(t, consumers.Config{Group: group, RetryDelays: fastDelays, Mux: mux})
	waitStats(t, g, "11 applied, 2 duplicates, 2 dead-lettered", func(st consumers.Stats) bool {
		return st.Applied == 11 && st.Duplicates == 2 && st.DeadLettered == 2
	})
	stop()
	if n := e.count(t, `SELECT count(*) FROM applied`); n != 11 {
		t.Errorf("%d events applied, want 11", n)
	}
	if n := e.count(t, `SELECT count(*) FROM applied WHERE n <> 1`); n != 0 {
		t.Errorf("%d events applied more than once", n)
	}
	// The dedupe key: a UUID ce_id as is, another one with its source.
	if n := e.count(t, `SELECT count(*) FROM applied WHERE event_id = $1`, uuid.MustParse(dupUUID)); n != 1 {
		t.Errorf("the UUID ce_id was not the event id")
	}
	want := consumers.IDFromString(fmt.Sprintf("ce:%d:%s%s", len(src), src, "ship-3"))
	if n := e.count(t, `SELECT count(*) FROM applied WHERE event_id = $1 AND key = 'ship-3'`, want); n != 1 {
		t.Errorf("ship-3 not applied under the id of its source and ce_id")
	}
	dlt := readAll(t, e.brokers, consumers.DLTTopic(e.topic, group), 2)
	classes := map[string]string{}
	for _, r := range dlt {
		var class, msg string
		for _, h := range r.Headers {
			switch h.Key {
			case headers.ErrorClass:
				class = string(h.Value)
			case headers.ErrorMessage:
				msg = string(h.Value)
			}
		}
		classes[class] = msg
	}
	if m := classes[consumers.ClassNoEventID]; !strings.Contains(m, "without a ce_id header") {
		t.Errorf("the empty ce_id: dead-lettered as %v", classes)
	}
	if m := classes[consumers.ClassPermanent]; !strings.Contains(m, "ce_type header of 65536 bytes") || len(m) > 2000 {
		t.Errorf("the huge ce_type: dead-lettered as %v", classes)
	}
}

// The rules of a CloudEvents record's id and type, on the apply path: a
// non-UUID ce_id is unique per source (two producers counting from 1 are
// two events), a ce_type that is a registered Avro full name decodes into
// that type, ce_source missing for a non-UUID id is no id, and
// Config.EventID, when set, still decides.
func TestCloudEventsIDAndTypeRules(t *testing.T) {
	t.Parallel()
	e := newGroupEnv(t, 1)
	serde := foreignProducer(t, e)
	ctx := context.Background()
	var seen []*consumers.Event
	h := func(_ context.Context, _ pgx.Tx, ev *consumers.Event) error { seen = append(seen, ev); return nil }
	a := consumers.NewApplier("g-ce", "", e.serde, h).WithEvents(&shipmentV2Type{})

	one := ceRecord(t, e, serde, "1", "/producer-a", ceShipmentType, 1)
	otherSource := ceRecord(t, e, serde, "1", "/producer-b", ceShipmentType, 1)
	again := ceRecord(t, e, serde, "1", "/producer-a", "acme.logistics.ShipmentDispatched", 1)
	noSource := ceRecord(t, e, serde, "2", "", ceShipmentType, 1)
	noType := ceRecord(t, e, serde, "3", "/producer-a", "", 1)
	one.Offset, otherSource.Offset, again.Offset, noSource.Offset, noType.Offset = 1, 2, 3, 4, 5
	res, err := a.ApplyBatch(ctx, e.db, []*kgo.Record{one, otherSource, again, noSource, noType})
	if err != nil {
		t.Fatal(err)
	}
	if res[0].Outcome != consumers.Applied || res[1].Outcome != consumers.Applied || res[2].Outcome != consumers.Duplicate {
		t.Fatalf("outcomes %s %s %s: want applied, applied (another source), duplicate", res[0].Outcome, res[1].Outcome, res[2].Outcome)
	}
	if res[3].Outcome != consumers.Failed || !errors.Is(res[3].Err, consumers.ErrNoEventID) || !strings.Contains(res[3].Err.Error(), "ce_source") {
		t.Errorf("no ce_source: %s %v", res[3].Outcome, res[3].Err)
	}
	if res[4].Outcome != consumers.Failed || !consumers.IsPermanent(res[4].Err) || !strings.Contains(res[4].Err.Error(), "without a ce_type header") {
		t.Errorf("no ce_type: %s %v", res[4].Outcome, res[4].Err)
	}
	if len(seen) != 2 || seen[0].Type != ceShipmentType || seen[0].ID == seen[1].ID {
		t.Fatalf("seen %d events, first type %q", len(seen), seen[0].Type)
	}
	if p, ok := seen[0].Payload.(*shipmentV2Type); !ok || p.ShipmentID != "s-1" || p.Carrier != "unknown" {
		t.Errorf("payload %#v: want the writer schema's Go type", seen[0].Payload)
	}
	// ce_type naming the registered Avro type directly: typed, Type as given.
	seen = nil
	direct := ceRecord(t, e, serde, "9", "/producer-a", "acme.logistics.ShipmentDispatched", 9)
	direct.Offset = 9
	if res, err := a.ApplyBatch(ctx, e.db, []*kgo.Record{direct}); err != nil || res[0].Outcome != consumers.Applied {
		t.Fatalf("direct: %v %v", res, err)
	}
	if _, ok := seen[0].Payload.(*shipmentV2Type); !ok || seen[0].Type != "acme.logistics.ShipmentDispatched" {
		t.Errorf("direct: type %q payload %T", seen[0].Type, seen[0].Payload)
	}

	// A hook decides over ce_id.
	seen = nil
	b := consumers.NewApplier("g-ce-hook", "", e.serde, h).WithEventID(consumers.EventIDFromHeader("x-business-id"))
	hooked := ceRecord(t, e, serde, "1", "/producer-a", ceShipmentType, 1)
	hooked.Headers = append(hooked.Headers, kgo.RecordHeader{Key: "x-business-id", Value: []byte("B-7")})
	if res, err := b.ApplyBatch(ctx, e.db, []*kgo.Record{hooked}); err != nil || res[0].Outcome != consumers.Applied {
		t.Fatalf("hooked: %v %v", res, err)
	}
	if seen[0].ID != consumers.IDFromString("B-7") {
		t.Errorf("hook id %s, want the hook's", seen[0].ID)
	}

	// The exported rule: a UUID ce_id as is.
	u := uuid.New()
	if id, err := consumers.CloudEventID(&consumers.Event{Headers: map[string]string{headers.CEID: u.String()}}); err != nil || id != u {
		t.Errorf("CloudEventID of a UUID: %s %v", id, err)
	}
	if _, err := consumers.CloudEventID(&consumers.Event{Headers: map[string]string{headers.CEID: strings.Repeat("x", 2000), headers.CESource: "/a"}}); err == nil {
		t.Error("a 2000-byte ce_id accepted")
	}
}
