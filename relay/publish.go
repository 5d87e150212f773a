package relay

// The produce pipeline: a batch is produced asynchronously (idempotent
// producer), every ack awaited, then settled; the next read overlaps the
// current produce.

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"sync/atomic"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"
	"github.com/twmb/franz-go/plugin/kotel"
	"go.opentelemetry.io/otel/propagation"

	"github.com/eventline/eventline/headers"
	"github.com/eventline/eventline/internal/outboxmsg"
)

// inflight is a batch whose records were handed to the Kafka client.
type inflight struct {
	rows    []outboxRow
	results []error
	wg      sync.WaitGroup
	start   time.Time
}

func (f *inflight) ids() []int64 { return rowIDs(f.rows) }

func rowIDs(rows []outboxRow) []int64 {
	ids := make([]int64, len(rows))
	for i := range rows {
		ids[i] = rows[i].id
	}
	return ids
}

// produce hands every row to the Kafka client in id order and returns at
// once; finish waits for the acks.
func (r *Relay) produce(pctx context.Context, rows []outboxRow, start time.Time) *inflight {
	f := &inflight{rows: rows, results: make([]error, len(rows)), start: start}
	f.wg.Add(len(rows))
	for i := range rows {
		rec, err := r.publishable(pctx, &rows[i])
		if err != nil {
			f.results[i] = err
			f.wg.Done()
			continue
		}
		r.kafka.Produce(pctx, rec, func(_ *kgo.Record, err error) {
			f.results[i] = err
			f.wg.Done()
		})
	}
	return f
}

// publishable checks o against the pipeline and builds its record; with
// tracing, the record's context carries the row's stored trace context (the
// publish span's parent). An error parks the row. Both modes, with or
// without transactions, publish through it.
func (r *Relay) publishable(ctx context.Context, o *outboxRow) (*kgo.Record, error) {
	if err := r.policy.checkRow(o); err != nil {
		return nil, err
	}
	rec, err := r.policy.record(o)
	if err != nil {
		return nil, err
	}
	if r.tracing {
		rec.Context = propagation.TraceContext{}.Extract(ctx, kotel.NewRecordCarrier(rec))
	}
	return rec, nil
}

// finish waits for f's acks, then deletes (or marks) the published rows and
// parks the permanently failed ones in one transaction.
func (r *Relay) finish(pctx context.Context, f *inflight) error {
	// The idempotent producer does not fail a record whose outcome is
	// unknown (sent, no answer) when its context is cancelled, so a broker
	// that vanished mid-request could hold this wait forever. Once pctx
	// ends (ShutdownTimeout after shutdown), give the batch up unsettled:
	// its rows stay and are published again (duplicates, not loss).
	acked := make(chan struct{})
	go func() { f.wg.Wait(); close(acked) }()
	warn := time.NewTicker(r.slowAck)
	defer warn.Stop()
wait:
	for {
		select {
		case <-acked:
			break wait
		case <-pctx.Done():
			return fmt.Errorf("%w: %d records without an answer from the broker", errAbandoned, len(f.rows))
		case <-warn.C:
			// The client retries for ever (a missing topic too): say so,
			// or a stalled relay is silent.
			r.cfg.Logger.Warn("relay: records still unacknowledged; the client keeps retrying (is a topic missing, or a broker or partition leader down?)",
				"records", len(f.rows), "topics", batchTopics(f.rows), "waited", time.Since(f.start).Round(time.Second))
		}
	}
	var done, parkIDs []int64
	var parkErrs []string
	var transient error
	for i, err := range f.results {
		switch {
		case err == nil:
			done = append(done, f.rows[i].id)
		case parkable(err):
			parkIDs = append(parkIDs, f.rows[i].id)
			parkErrs = append(parkErrs, err.Error())
		default:
			if transient == nil {
				transient = err
			}
		}
	}
	if err := r.settle(pctx, done, parkIDs, parkErrs); err != nil {
		// The records are on Kafka but the rows remain: they are
		// published again (duplicates, never loss).
		return err
	}
	r.published.Add(uint64(len(done)))
	r.parked.Add(uint64(len(parkIDs)))
	r.batches.Add(1)
	r.lastBatch.Store(int64(time.Since(f.start)))
	for i, id := range parkIDs {
		r.cfg.Logger.Error("relay: parked an outbox row", "id", id, "err", parkErrs[i])
	}
	if transient != nil {
		return fmt.Errorf("producing: %w", transient)
	}
	return nil
}

// drain publishes until a read comes back short (caught up). It keeps two
// batches in flight: while batch N waits for its acks, batch N+1 (which
// skips N's rows) is read and handed to the client. Records are produced in
// id order across batches, and the idempotent producer keeps that order per
// partition, so per-aggregate order holds. A row of an aggregate that
// commits late (with a lower id than rows already read) is never overtaken
// by a later row of the same aggregate: the producer's advisory lock means
// that later row did not exist before the late one committed, and each read
// takes the lowest unpublished ids.
func (r *Relay) drain(ctx context.Context, lost *atomic.Bool) error {
	pctx, release := r.produceContext(ctx)
	defer release()

	var prev *inflight
	settle := func() error {
		if prev == nil {
			return nil
		}
		f := prev
		prev = nil
		return r.finish(pctx, f)
	}
	for {
		if ctx.Err() != nil || lost.Load() {
			return settle()
		}
		var exclude []int64
		if prev != nil {
			exclude = prev.ids()
		}
		start := time.Now()
		rows, more, err := r.read(ctx, exclude)
		if err != nil {
			return errors.Join(err, settle())
		}
		r.gaps.saw(rowIDs(rows), time.Now())
		var cur *inflight
		if len(rows) > 0 {
			cur = r.produce(pctx, rows, start)
		}
		if err := settle(); err != nil {
			if cur != nil {
				_ = r.finish(pctx, cur) // settle what was produced; the error wins
			}
			return err
		}
		prev = cur
		if len(rows) < r.cfg.BatchSize && !more {
			return settle()
		}
	}
}

// produceContext returns a context for producing that survives ctx's end by
// ShutdownTimeout, so what is in flight at shutdown is finished, not
// abandoned; release ends it.
func (r *Relay) produceContext(ctx context.Context) (pctx context.Context, release func()) {
	pctx, cancel := context.WithCancel(context.WithoutCancel(ctx))
	stop := context.AfterFunc(ctx, func() {
		t := time.NewTimer(r.cfg.ShutdownTimeout)
		defer t.Stop()
		select {
		case <-t.C:
			cancel()
		case <-pctx.Done():
		}
	})
	return pctx, func() { stop(); cancel() }
}

var errBadHeaders = errors.New("outbox row has malformed headers")

// slowAckWarning is how long a batch waits for its acks before each warning.
var slowAckWarning = 10 * time.Second

// batchTopics lists the topics of rows, each once.
func batchTopics(rows []outboxRow) []string {
	var out []string
	seen := map[string]bool{}
	for i := range rows {
		if !seen[rows[i].topic] {
			seen[rows[i].topic] = true
			out = append(out, rows[i].topic)
		}
	}
	return out
}

// errAbandoned: a batch's acks did not come before shutdown's deadline.
var errAbandoned = errors.New("batch abandoned at shutdown")

// ceTime is ce_time's layout: RFC 3339 in UTC with the microseconds
// PostgreSQL keeps (trailing zeros dropped).
const ceTime = "2006-01-02T15:04:05.999999Z07:00"

// record builds o's Kafka record: the key and value as stored, the event's
// eventline-* headers, the producer's own headers, and on a topic in
// CloudEvents binary mode the ce_* attributes and content-type (both relay
// modes publish through here).
func (p policy) record(o *outboxRow) (*kgo.Record, error) {
	stored := o.hdrs
	if stored == nil {
		var err error
		if stored, err = outboxmsg.HeadersFromJSON(o.headers); err != nil {
			return nil, fmt.Errorf("%w: %v", errBadHeaders, err)
		}
	}
	src, ce := p.ceSource[o.topic]
	n := 5 + len(stored)
	if ce {
		n += 7
	}
	h := make([]kgo.RecordHeader, 0, n)
	h = append(h,
		kgo.RecordHeader{Key: headers.EventID, Value: []byte(uuidString(o.eventID))},
		kgo.RecordHeader{Key: headers.EventType, Value: []byte(o.eventType)},
		kgo.RecordHeader{Key: headers.AggregateType, Value: []byte(o.aggType)},
		kgo.RecordHeader{Key: headers.AggregateID, Value: []byte(o.aggID)},
	)
	if o.aggVersion != nil {
		h = append(h, kgo.RecordHeader{Key: headers.AggregateVersion, Value: fmt.Appendf(nil, "%d", *o.aggVersion)})
	}
	for _, kv := range stored {
		h = append(h, kgo.RecordHeader{Key: kv.Key, Value: []byte(kv.Value)})
	}
	if ce {
		h = appendCE(h, o, src)
	}
	return &kgo.Record{Topic: o.topic, Key: o.key, Value: o.value, Headers: h}, nil
}

func uuidString(b [16]byte) string {
	const hexd = "0123456789abcdef"
	out := make([]byte, 36)
	j := 0
	for i, c := range b {
		if i == 4 || i == 6 || i == 8 || i == 10 {
			out[j] = '-'
			j++
		}
		out[j], out[j+1] = hexd[c>>4], hexd[c&0xf]
		j += 2
	}
	return string(out)
}

// appendCE appends the CloudEvents binary-mode attributes of o. The
// eventline-* headers stay beside them: eventline's groups, dead-letter
// tools and tracing read those, and the binding has CloudEvents readers
// ignore headers that are not ce_*. Optional attributes without a value
// are left out (the spec forbids an empty subject).
func appendCE(h []kgo.RecordHeader, o *outboxRow, source string) []kgo.RecordHeader {
	h = append(h,
		kgo.RecordHeader{Key: headers.CESpecVersion, Value: []byte(headers.CloudEventsSpecVersion)},
		kgo.RecordHeader{Key: headers.CEID, Value: []byte(uuidString(o.eventID))},
		kgo.RecordHeader{Key: headers.CESource, Value: []byte(source)},
		kgo.RecordHeader{Key: headers.CEType, Value: []byte(o.eventType)},
	)
	if !o.createdAt.IsZero() { // poll: the row's created_at; logical: the commit time
		h = append(h, kgo.RecordHeader{Key: headers.CETime, Value: o.createdAt.UTC().AppendFormat(nil, ceTime)})
	}
	if o.aggID != "" {
		h = append(h, kgo.RecordHeader{Key: headers.CESubject, Value: []byte(o.aggID)})
	}
	return append(h, kgo.RecordHeader{Key: headers.ContentType, Value: []byte(headers.AvroContentType)})
}
