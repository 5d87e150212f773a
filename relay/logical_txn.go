package relay

// Transactional output in logical mode. The stream loop decodes events as
// the slot sends them and queues them; a committer goroutine owns the
// transactional client and turns what is queued into Kafka transactions
// (up to BatchSize events or BatchBytes each), while the stream goes on
// decoding the next ones (up to two batches in flight, the same
// backpressure as without transactions). Each transaction carries the stream's position
// (streamPos): the end of the last PostgreSQL transaction all of whose
// events it holds, and how many events of the one it holds a part of. An
// event counts as delivered to the confirmer only once its Kafka
// transaction committed, so the slot is confirmed (and WAL recycled) only
// behind what Kafka holds.
//
// A new leader fences the old producer, reads the last committed position,
// starts replication at its Through (the server skips every transaction
// whose commit record lies before it) and skips the first Events events of
// the transaction at Tx: exactly what the last committed transaction held.
// Nothing else is needed from the slot, which may lag behind Kafka (it is
// confirmed after the commit, on the status interval); a larger start point
// than the slot's is what the server expects.

import (
	"context"
	"fmt"
	"sync"
	"sync/atomic"
	"time"

	"github.com/jackc/pglogrepl"
	"github.com/twmb/franz-go/pkg/kgo"
)

// txItem is a queued event, or (rec nil) the commit of a PostgreSQL
// transaction whose events were queued before it.
type txItem struct {
	rec  *kgo.Record
	row  outboxRow // to park it if the broker refuses it for good
	t    *txn
	size int
	tx   pglogrepl.LSN // the PostgreSQL transaction's commit record
	idx  int           // the event's index in its transaction
	end  pglogrepl.LSN // a commit: the transaction's end
}

// txStream is the queue between a transactional stream and its committer.
type txStream struct {
	s     *stream
	ts    *txnSession
	mu    sync.Mutex
	queue []txItem
	err   error         // why the committer stopped early
	more  chan struct{} // something was queued (cap 1)
	stop  chan struct{} // closed: commit what is queued, then return
	ended chan struct{} // closed when the committer returned
}

func newTxStream(s *stream, ts *txnSession) *txStream {
	return &txStream{s: s, ts: ts, more: make(chan struct{}, 1), stop: make(chan struct{}), ended: make(chan struct{})}
}

func (q *txStream) push(it txItem) {
	q.mu.Lock()
	q.queue = append(q.queue, it)
	q.mu.Unlock()
	select {
	case q.more <- struct{}{}:
	default:
	}
}

// fail records why the stream must end (the first reason wins) and wakes
// the stream loop.
func (q *txStream) fail(err error) {
	q.mu.Lock()
	if q.err == nil {
		q.err = err
	}
	q.mu.Unlock()
	select {
	case q.s.c.wake <- struct{}{}:
	default:
	}
}

func (q *txStream) failure() error {
	q.mu.Lock()
	defer q.mu.Unlock()
	return q.err
}

// take removes the next transaction's items from the queue: up to
// BatchSize events or BatchBytes bytes, at least one item, with the
// commits among and right after them.
func (q *txStream) take() []txItem {
	q.mu.Lock()
	defer q.mu.Unlock()
	n, events, bytes := 0, 0, 0
	cfg := q.s.r.cfg
	for ; n < len(q.queue); n++ {
		it := &q.queue[n]
		if it.rec == nil {
			continue
		}
		if events > 0 && (events >= cfg.BatchSize || bytes+it.size > cfg.BatchBytes) {
			break
		}
		events++
		bytes += it.size
	}
	if n == 0 {
		return nil
	}
	out := make([]txItem, n)
	copy(out, q.queue)
	clear(q.queue[:n])
	q.queue = q.queue[n:]
	return out
}

// run commits what the stream queues until stop is closed and the queue
// is empty, or a transaction fails.
func (q *txStream) run(pctx context.Context) {
	defer close(q.ended)
	for {
		items := q.take()
		if items == nil {
			select {
			case <-q.more:
				continue
			case <-q.stop:
				if items = q.take(); items == nil {
					return
				}
			}
		}
		if err := q.commit(pctx, items); err != nil {
			q.fail(err)
			return
		}
	}
}

// commit publishes items in one Kafka transaction with the stream position
// they reach, then acknowledges them to the confirmer. Records the broker
// refuses for good abort the transaction: they are parked and the rest are
// committed in a new one.
func (q *txStream) commit(pctx context.Context, items []txItem) error {
	s, r, ts := q.s, q.s.r, q.ts
	start := time.Now()
	ts.mu.Lock()
	defer ts.mu.Unlock()
	pos := ts.stream
	var recs []*kgo.Record
	var evs []txItem
	for _, it := range items {
		if it.rec == nil {
			pos = streamPos{Through: it.end}
			continue
		}
		pos.Tx, pos.Events = it.tx, it.idx+1
		recs = append(recs, it.rec)
		evs = append(evs, it)
	}
	var parked []failure
	for len(recs) > 0 {
		failed, err := r.commitTx(pctx, ts, recs, position{Mode: r.cfg.Mode, IDs: ts.pending, Stream: pos})
		if err == nil {
			break
		}
		if len(failed) == 0 {
			return err
		}
		keptRecs, keptEvs := recs[:0:0], evs[:0:0]
		for i, it := range evs {
			if ferr, ok := failed[i]; ok {
				parked = append(parked, failure{row: it.row, t: it.t, err: ferr})
				continue
			}
			keptRecs, keptEvs = append(keptRecs, recs[i]), append(keptEvs, it)
		}
		if err := s.park(pctx, parked[len(parked)-len(failed):]); err != nil {
			return fmt.Errorf("%w: parking refused records: %w", errTxn, err)
		}
		recs, evs = keptRecs, keptEvs
	}
	// What no committed transaction recorded (only commits, or only
	// refused events) is found again by a new leader: commits move
	// nothing, refused events are parked again under the same key.
	ts.stream = pos
	s.c.ackAll(len(parked)+len(evs), func(i int) (*txn, int) {
		if i < len(parked) {
			f := &parked[i]
			return f.t, len(f.row.key) + len(f.row.value)
		}
		it := &evs[i-len(parked)]
		return it.t, it.size
	})
	if len(evs) > 0 {
		r.published.Add(uint64(len(evs)))
		r.batches.Add(1)
		r.lastBatch.Store(int64(time.Since(start)))
	}
	return nil
}

// queue hands the stream's event to the committer instead of producing it.
func (s *stream) queue(rec *kgo.Record, row outboxRow, size, idx int) {
	s.tx.push(txItem{rec: rec, row: row, t: s.cur, size: size, tx: s.curFinal, idx: idx})
}

// startCommitter starts the transactional stream's committer; stop makes it
// commit what is queued and return (or gives up when pctx ends), and waits
// for it.
func (s *stream) startCommitter(ts *txnSession) (stop func()) {
	s.tx = newTxStream(s, ts)
	go s.tx.run(s.pctx)
	return func() {
		select {
		case <-s.tx.stop:
		default:
			close(s.tx.stop)
		}
		<-s.tx.ended
	}
}

// skipped says whether the event at idx of the current transaction is
// already on Kafka (a new leader's first transaction, resumed in part).
func (s *stream) skipped(idx int) bool {
	return s.skip.Tx != 0 && s.curFinal == s.skip.Tx && idx < s.skip.Events
}

// drainTable drains the outbox table: in a transaction of the leader's
// session when the relay is transactional.
func (r *Relay) drainTable(ctx context.Context, lost *atomic.Bool, ts *txnSession) error {
	if ts == nil {
		return r.drain(ctx, lost)
	}
	return r.drainTx(ctx, lost, ts)
}
