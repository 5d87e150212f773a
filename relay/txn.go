package relay

// Transactional output (Config.Transactional, poll mode): each batch is one
// Kafka transaction that holds the batch's records and the relay's
// position, a record naming the batch's outbox ids, on the outbox's own
// single-partition position topic. The rows are deleted only after the
// transaction committed (with a synchronous commit), and the next batch
// begins only after that delete. So the rows that are both on the topics
// and still in the outbox are at most the last committed batch's, and the
// position names exactly them. A new leader first fences every earlier
// producer of the outbox's transactional.id (InitProducerID: the broker
// aborts a transaction the old leader left open and refuses its later
// writes, whatever its timing), then reads the last committed position
// (read_committed) and deletes those rows before reading the outbox. A
// high-water mark would not do: outbox ids are taken at insert and
// committed in any order, so a row below the mark may commit after the
// batch was read (the relay's next read finds it; a mark would skip it).

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/jackc/pglogrepl"
	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kgo"
)

// txnTimeout is the transaction.timeout.ms the relay asks for: above any
// batch's produce time, below the broker's transaction.max.timeout.ms
// (15 minutes by default). A leader paused longer has its transaction
// aborted by the broker.
const txnTimeout = time.Minute

// position is the value of a position record.
type position struct {
	// Mode is the relay mode that wrote it.
	Mode Mode `json:"mode"`
	// IDs are the outbox ids whose events the transaction holds, or (in a
	// transaction of logical mode's stream) the ids of the last table
	// batch when its rows are not deleted yet.
	IDs []int64 `json:"ids"`
	// Logical mode's stream position (logical_txn.go), carried into every
	// position record a logical relay writes.
	Stream streamPos `json:"stream,omitzero"`
}

// streamPos is how far a logical relay's stream is on Kafka: every event of
// the transactions that end at or before Through, and the first Events
// events (counted in the order the slot sends them) of the transaction
// whose commit record is at Tx, when Tx is set.
type streamPos struct {
	Through pglogrepl.LSN `json:"-"`
	Tx      pglogrepl.LSN `json:"-"`
	Events  int           `json:"-"`
}

// MarshalJSON writes the positions as PostgreSQL writes LSNs ("16/B374D848").
func (p streamPos) MarshalJSON() ([]byte, error) {
	v := struct {
		Through string `json:"through"`
		Tx      string `json:"tx,omitempty"`
		Events  int    `json:"events,omitempty"`
	}{Through: p.Through.String(), Events: p.Events}
	if p.Tx != 0 {
		v.Tx = p.Tx.String()
	}
	return json.Marshal(v)
}

// UnmarshalJSON reads what MarshalJSON wrote.
func (p *streamPos) UnmarshalJSON(b []byte) error {
	var v struct {
		Through string `json:"through"`
		Tx      string `json:"tx"`
		Events  int    `json:"events"`
	}
	if err := json.Unmarshal(b, &v); err != nil {
		return err
	}
	var err error
	if p.Through, err = pglogrepl.ParseLSN(v.Through); err != nil {
		return fmt.Errorf("stream position: %w", err)
	}
	if v.Tx != "" {
		if p.Tx, err = pglogrepl.ParseLSN(v.Tx); err != nil {
			return fmt.Errorf("stream position: %w", err)
		}
	}
	if v.Events < 0 || v.Events > 0 && p.Tx == 0 {
		return fmt.Errorf("stream position: %d events of no transaction", v.Events)
	}
	p.Events = v.Events
	return nil
}

// txnSession is a leader's transactional client: created and fenced in at
// each takeover, closed when leadership ends or a transaction fails in a
// way only a new takeover resolves.
type txnSession struct {
	cl *kgo.Client
	// mu: one transaction at a time. In logical mode the stream's
	// committer and the table drain share the client.
	mu      sync.Mutex
	pending []int64   // ids committed to Kafka, not yet deleted
	stream  streamPos // logical mode: the last committed stream position
	ended   time.Time // when the last transaction ended
}

// txnSettle is the least time between a transaction's end and the next
// one's first produce. Kafka 4 (transaction version 2) writes a commit's
// markers after EndTxn returned and refuses a produce of the next
// transaction that reaches a partition first (CONCURRENT_TRANSACTIONS),
// which franz-go retries after a metadata refresh: back-to-back
// transactions at 1,000 events/s (logical mode) put commit → readable at
// p50 25-29 ms, 6.8 ms with this wait (bench e2e, Kafka 4.4, 2-core VM).
const txnSettle = 2 * time.Millisecond

// position is the position record of a transaction holding the table rows
// ids (none in a stream transaction): the session's stream position goes
// into every record, since only the last one is read.
func (t *txnSession) position(mode Mode, ids []int64) position {
	return position{Mode: mode, IDs: ids, Stream: t.stream}
}

func (t *txnSession) close() {
	if t != nil && t.cl != nil {
		t.cl.Close()
	}
}

// takeover creates the transactional client, fences earlier producers of
// the outbox's transactional.id and returns the session with the last
// committed position's ids pending (deleted before the next read).
func (r *Relay) takeover(ctx context.Context) (*txnSession, error) {
	cl, err := kgo.NewClient(append(slices.Clip(r.kafkaOpts), kgo.TransactionalID(r.txnID), kgo.TransactionTimeout(txnTimeout))...)
	if err != nil {
		return nil, fmt.Errorf("transactional kafka client: %w", err)
	}
	fctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	if _, _, err := cl.ProducerID(fctx); err != nil {
		cl.Close()
		if errors.Is(err, kerr.TransactionalIDAuthorizationFailed) {
			return nil, fmt.Errorf("the relay's principal needs Write and Describe on TransactionalId %s (and Create, Write, Read, Describe on topic %s): %w", r.txnID, r.posTopic, err)
		}
		return nil, fmt.Errorf("fencing earlier producers of transactional.id %s: %w", r.txnID, err)
	}
	pos, err := r.lastPosition(fctx, cl)
	if err != nil {
		cl.Close()
		return nil, err
	}
	r.cfg.Logger.Info("relay: transactional producer ready", "transactional_id", r.txnID, "last_batch", len(pos.IDs))
	return &txnSession{cl: cl, pending: pos.IDs, stream: pos.Stream}, nil
}

// lastPosition reads the last committed position record. Only this
// outbox's relays write the position topic, transactionally, and the
// caller fenced them all, so every transaction on it is complete: the
// topic ends with a commit or abort marker, which a read_committed fetch
// keeping control records returns. The read goes back from the last
// stable offset in growing windows until it meets a data record.
//
// cl is the session's new client: its metadata holds no answer cached
// before the position topic existed (a client caches a missing topic for
// MetadataMinAge, 5 s, which a freshly created topic would wait out).
func (r *Relay) lastPosition(ctx context.Context, cl *kgo.Client) (position, error) {
	adm := kadm.NewClient(cl)
	offs, err := adm.ListCommittedOffsets(ctx, r.posTopic)
	if err != nil {
		return position{}, fmt.Errorf("reading the end of %s: %w", r.posTopic, err)
	}
	o, ok := offs.Lookup(r.posTopic, 0)
	switch {
	case !ok:
		return position{}, fmt.Errorf("reading the end of %s: the broker does not list its partition yet", r.posTopic)
	case o.Err != nil:
		return position{}, fmt.Errorf("reading the end of %s: %w", r.posTopic, o.Err)
	}
	end := o.Offset
	for w := int64(16); end > 0; w *= 4 {
		from := max(0, end-w)
		p, err := r.scanPosition(ctx, from, end)
		if err != nil {
			return position{}, err
		}
		if p != nil {
			return *p, nil
		}
		if from == 0 {
			break
		}
	}
	return position{}, nil
}

// scanPosition returns the last position the relay's transactions wrote
// in [from, end) of the position topic, nil if there is none. A record
// not written in a transaction, or that is not a position, is another
// writer's (the ACLs should let none in): it is logged and passed over. An
// older position than the real last one can only make the new leader
// publish again what Kafka holds (duplicates, never loss); failing on it
// would stop every takeover for good.
func (r *Relay) scanPosition(ctx context.Context, from, end int64) (*position, error) {
	cl, err := kgo.NewClient(append(slices.Clip(r.cfg.KafkaOpts),
		kgo.SeedBrokers(r.cfg.Brokers...),
		kgo.ConsumePartitions(map[string]map[int32]kgo.Offset{r.posTopic: {0: kgo.NewOffset().At(from)}}),
		kgo.FetchIsolationLevel(kgo.ReadCommitted()),
		kgo.KeepControlRecords(),
	)...)
	if err != nil {
		return nil, err
	}
	defer cl.Close()
	var last *position
	for {
		fs := cl.PollFetches(ctx)
		if err := ctx.Err(); err != nil {
			return nil, fmt.Errorf("reading %s up to offset %d: %w", r.posTopic, end, err)
		}
		for _, e := range fs.Errors() {
			return nil, fmt.Errorf("reading %s: %w", r.posTopic, e.Err)
		}
		for _, rec := range fs.Records() {
			if rec.Offset >= end {
				return last, nil
			}
			if !rec.Attrs.IsControl() && string(rec.Key) == r.txnID {
				var p position
				err := json.Unmarshal(rec.Value, &p)
				if err == nil && !rec.Attrs.IsTransactional() {
					err = errors.New("not written in a transaction")
				}
				if err != nil {
					r.cfg.Logger.Warn("relay: passing over a record on the position topic that is not the relay's", "topic", r.posTopic, "offset", rec.Offset, "err", err)
				} else {
					last = &p
				}
			}
			if rec.Offset == end-1 {
				return last, nil
			}
		}
	}
}

// drainTx is drain for a transactional relay: each batch in its own
// transaction, the next one begun only once the previous one's rows are
// deleted (which is what makes the position exact). The next batch is read
// while the current one's transaction runs, skipping its rows, as drain
// overlaps reads with produces.
func (r *Relay) drainTx(ctx context.Context, lost interface{ Load() bool }, ts *txnSession) error {
	pctx, release := r.produceContext(ctx)
	defer release()
	ts.mu.Lock()
	if len(ts.pending) > 0 {
		if err := r.settle(pctx, ts.pending, nil, nil); err != nil {
			ts.mu.Unlock()
			return err
		}
		ts.pending = nil
	}
	ts.mu.Unlock()
	start := time.Now()
	rows, more, err := r.read(ctx, nil)
	for {
		if err != nil {
			return err
		}
		r.gaps.saw(rowIDs(rows), time.Now())
		if len(rows) == 0 || ctx.Err() != nil || lost.Load() {
			return nil
		}
		var next []outboxRow
		var nextMore bool
		var nextErr error
		var ahead func()
		caughtUp := len(rows) < r.cfg.BatchSize && !more
		if !caughtUp {
			exclude := rowIDs(rows)
			ahead = func() { next, nextMore, nextErr = r.read(ctx, exclude) }
		}
		if err := r.publishTx(pctx, ts, rows, start, ahead); err != nil {
			return err
		}
		if caughtUp {
			return nil
		}
		rows, more, err, start = next, nextMore, nextErr, time.Now()
	}
}

// errTxn marks errors after which the transactional client is closed and
// a new takeover decides what the broker holds (a commit whose outcome is
// unknown, a fenced or timed-out producer).
var errTxn = errors.New("kafka transaction failed")

// publishTx produces rows and their position in one transaction, commits
// it, and deletes (or parks) the rows. ahead, when not nil, runs meanwhile
// (the next read); publishTx returns after it.
func (r *Relay) publishTx(pctx context.Context, ts *txnSession, rows []outboxRow, start time.Time, ahead func()) error {
	if ahead != nil {
		var wg sync.WaitGroup
		wg.Add(1)
		go func() { defer wg.Done(); ahead() }()
		defer wg.Wait()
	}
	var parkIDs []int64
	var parkErrs []string
	park := func(id int64, err error) {
		parkIDs = append(parkIDs, id)
		parkErrs = append(parkErrs, err.Error())
	}
	recs := make([]*kgo.Record, 0, len(rows))
	var ids []int64
	for i := range rows {
		o := &rows[i]
		rec, err := r.publishable(pctx, o)
		if err != nil {
			park(o.id, err)
			continue
		}
		recs = append(recs, rec)
		ids = append(ids, o.id)
	}
	ts.mu.Lock()
	defer ts.mu.Unlock()
	if len(recs) > 0 {
		failed, err := r.commitTx(pctx, ts, recs, ts.position(r.cfg.Mode, ids))
		if err != nil {
			if len(failed) == 0 {
				return err
			}
			// Records the broker refuses for good (too large, invalid)
			// aborted the transaction: park them, publish the rest next.
			for i, ferr := range failed {
				park(ids[i], ferr)
			}
			ids = nil
		}
	}
	if err := r.settle(pctx, ids, parkIDs, parkErrs); err != nil {
		ts.pending = ids // settled before the next read, or by the next leader
		return err
	}
	ts.pending = nil
	r.published.Add(uint64(len(ids)))
	r.parked.Add(uint64(len(parkIDs)))
	r.batches.Add(1)
	r.lastBatch.Store(int64(time.Since(start)))
	for i, id := range parkIDs {
		r.cfg.Logger.Error("relay: parked an outbox row", "id", id, "err", parkErrs[i])
	}
	return nil
}

// commitTx runs one transaction: recs and the position record p. A record
// the broker refuses for good aborts it, and failed maps those records'
// indexes to their errors; any other failure is errTxn. The caller holds
// ts.mu.
func (r *Relay) commitTx(pctx context.Context, ts *txnSession, recs []*kgo.Record, p position) (failed map[int]error, err error) {
	cl := ts.cl
	pos, err := json.Marshal(p)
	if err != nil {
		return nil, fmt.Errorf("%w: position record: %w", errTxn, err)
	}
	if wait := txnSettle - time.Since(ts.ended); wait > 0 {
		time.Sleep(wait)
	}
	defer func() { ts.ended = time.Now() }()
	if err := cl.BeginTransaction(); err != nil {
		return nil, fmt.Errorf("%w: begin: %w", errTxn, err)
	}
	var mu sync.Mutex
	var wg sync.WaitGroup
	var other error
	wg.Add(len(recs) + 1)
	for i, rec := range recs {
		cl.Produce(pctx, rec, func(_ *kgo.Record, err error) {
			defer wg.Done()
			if err == nil {
				return
			}
			mu.Lock()
			defer mu.Unlock()
			if permanent(err) {
				if failed == nil {
					failed = map[int]error{}
				}
				failed[i] = err
			} else if other == nil {
				other = err
			}
		})
	}
	cl.Produce(pctx, &kgo.Record{Topic: r.posTopic, Key: []byte(r.txnID), Value: pos}, func(_ *kgo.Record, err error) {
		defer wg.Done()
		if err != nil {
			mu.Lock()
			defer mu.Unlock()
			if other == nil {
				other = fmt.Errorf("position record: %w", err)
			}
		}
	})
	if err := cl.Flush(pctx); err != nil {
		other = errors.Join(other, err)
	}
	wg.Wait()
	if other != nil || failed != nil {
		// Nothing of the transaction may be committed: abort it.
		aerr := cl.AbortBufferedRecords(pctx)
		if aerr == nil {
			aerr = cl.EndTransaction(pctx, kgo.TryAbort)
		}
		switch {
		case other != nil:
			return nil, fmt.Errorf("%w: producing: %w", errTxn, errors.Join(other, aerr))
		case aerr != nil:
			return nil, fmt.Errorf("%w: aborting after refused records: %w", errTxn, aerr)
		}
		return failed, fmt.Errorf("%d records refused by the broker", len(failed))
	}
	if txnHooks.beforeCommit != nil {
		txnHooks.beforeCommit(r)
	}
	if err := cl.EndTransaction(pctx, kgo.TryCommit); err != nil {
		return nil, fmt.Errorf("%w: commit: %w", errTxn, err)
	}
	if txnHooks.afterCommit != nil && txnHooks.afterCommit(r) {
		return nil, fmt.Errorf("%w: the test stopped the relay after a commit", errTxn)
	}
	return nil, nil
}

// txnHooks are set by tests only (export_test.go): beforeCommit runs once
// a transaction's records are flushed, afterCommit once it committed (true:
// the relay stops there, before deleting the rows, as a crash would).
var txnHooks struct {
	beforeCommit func(*Relay)
	afterCommit  func(*Relay) bool
}

// DefaultTransactionalID is the transactional.id of a transactional relay
// whose Config.TransactionalID is empty: "eventline-relay." and the outbox's
// database, schema and mode. On a secured cluster the relay's principal
// needs Write and Describe on it (and on its PositionTopic: Create, Write,
// Read, Describe).
func DefaultTransactionalID(database, schema string, mode Mode) string {
	return "eventline-relay." + database + "." + schema + "." + string(mode)
}

// PositionTopic is where a transactional relay with transactional.id id
// keeps its position (compacted, one partition; the relay creates it): "_"
// and id with the characters Kafka does not allow in a topic name replaced
// by '_', then "-position", at most 249 characters.
func PositionTopic(id string) string {
	var b strings.Builder
	b.WriteByte('_')
	for _, c := range id {
		if c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '.' || c == '_' || c == '-' {
			b.WriteRune(c)
		} else {
			b.WriteByte('_')
		}
	}
	s := b.String()
	const suffix = "-position"
	if len(s) > 249-len(suffix) {
		s = s[:249-len(suffix)]
	}
	return s + suffix
}
