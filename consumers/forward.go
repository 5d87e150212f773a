package consumers

// Processing one partition's batch: apply, forward failures and deferred
// events to the next retry step or the DLT, then account.

import (
	"cmp"
	"context"
	"errors"
	"log/slog"
	"slices"
	"sync"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/metric"

	"github.com/eventline/eventline/headers"
)

// process applies the records of parts (each one partition's, all of one
// topic: usually a single partition, see coalesce) in one transaction and
// forwards the failed and deferred ones; it retries database and broker
// errors until they pass or ctx ends (false: nothing may be marked).
func (g *Group) process(ctx context.Context, parts [][]*kgo.Record, log *slog.Logger) bool {
	recs := parts[0]
	if len(parts) > 1 {
		recs = slices.Concat(parts...)
	}
	stage := g.stage[recs[0].Topic]
	items := itemsOf(recs, g.cfg.Group)
	var results []result
	start := time.Now()
	// A retry batch and a source batch of the same source partition touch
	// the same keys' rows; run concurrently they lock them in different
	// orders and deadlock (a second each, at deadlock_timeout). In one
	// process they take turns instead.
	mu := g.originLocks(parts)
	mu.Lock()
	if stage > 0 { // lateness: due time to the start of the apply
		now := time.Now()
		for _, it := range items {
			if due := it.env.due; !due.IsZero() {
				g.noteLateness(now.Sub(due))
			}
		}
		g.retryProcessed.Add(int64(len(recs)))
	}
	ok := g.retryForever(ctx, log, "apply", func() error {
		var err error
		results, err = g.applier.apply(ctx, g.cfg.DB, items, g.step(stage), func() { mu.Unlock(); mu.Lock() })
		return err
	})
	mu.Unlock()
	if !ok {
		return false
	}
	now := time.Now()
	source := items[0].env.origin.topic
	var out []*kgo.Record
	dest := make([]string, len(results))
	var applied, dups, retried, dead, deferred int64
	var skipped map[string]int64 // by event type
	for i, r := range results {
		switch r.Outcome {
		case outApplied:
			applied++
		case outDuplicate:
			dups++
		case outSkipped:
			if skipped == nil {
				skipped = map[string]int64{}
			}
			skipped[r.evType]++
		case outFailed, outDeferred:
			to := g.route(r, source, stage, now)
			if to.dead() {
				dead++
			} else {
				retried++
			}
			if r.Outcome == outDeferred {
				deferred++
			}
			dest[i] = to.topic
			cp := forwardCopy(r.Record, r.env.origin, to.topic, g.cfg.Group, r.env.attempt+1, to.due, to.class, to.cause, now)
			cp.Timestamp = to.created // zero (the time of producing) for the DLT
			if g.cfg.TracerProvider != nil {
				cp.Context = recordTrace(ctx, r.Record) // keep ctx's cancellation, continue the trace
			}
			out = append(out, cp)
		}
	}
	if len(out) > 0 && !g.retryForever(ctx, log, "produce retry/DLT copies", g.produceCopies(ctx, log, out)) {
		return false
	}
	g.applied.Add(applied)
	g.duplicates.Add(dups)
	g.retried.Add(retried)
	g.dead.Add(dead)
	g.deferred.Add(deferred)
	g.noteSkipped(ctx, log, skipped)
	for i, r := range results {
		if r.Outcome != outFailed {
			continue
		}
		level := slog.LevelDebug // on its way through the retry chain
		if dest[i] == DLTTopic(source, g.cfg.Group) {
			level = slog.LevelWarn
		}
		log.Log(ctx, level, "consumers: event failed", "topic", r.Record.Topic, "partition", r.Record.Partition, "offset", r.Record.Offset,
			"event_id", headerOr(r.Record, headers.EventID), "attempt", r.env.attempt, "to", dest[i], "err", r.Err)
	}
	if h := g.applyHist.Load(); h != nil {
		(*h).Record(ctx, time.Since(start).Seconds(), metric.WithAttributes(attribute.String("group", g.cfg.Group), attribute.String("topic", source)))
	}
	if g.afterApply != nil {
		g.afterApply(hookResults(results))
	}
	return true
}

// originLocks locks and unlocks the source partitions of parts (the origin
// of each part's first record, as one part alone always did), in a fixed
// order so that two callers never wait on each other.
func (g *Group) originLocks(parts [][]*kgo.Record) sync.Locker {
	if len(parts) == 1 {
		return g.originLock(envelopeOf(parts[0][0], g.cfg.Group).origin)
	}
	var origins []origin
	for _, p := range parts {
		o := envelopeOf(p[0], g.cfg.Group).origin
		o.offset = 0
		origins = append(origins, o)
	}
	slices.SortFunc(origins, func(a, b origin) int {
		return cmp.Or(cmp.Compare(a.topic, b.topic), cmp.Compare(a.partition, b.partition))
	})
	origins = slices.Compact(origins)
	ls := make(lockers, len(origins))
	for i, o := range origins {
		ls[i] = g.originLock(o)
	}
	return ls
}

// lockers locks in order and unlocks in reverse.
type lockers []*sync.Mutex

func (ls lockers) Lock() {
	for _, l := range ls {
		l.Lock()
	}
}

func (ls lockers) Unlock() {
	for i := len(ls) - 1; i >= 0; i-- {
		ls[i].Unlock()
	}
}

// coalesceMax: a poll's batches of one source topic holding at most this
// many records in all are applied in one transaction, not one per
// partition. At a few events per partition per poll (a live topic at a
// modest rate) each transaction's fixed cost (BEGIN, the dedupe insert,
// COMMIT and its WAL flush) dominated the group's CPU; larger polls keep a
// transaction per partition, in parallel.
const coalesceMax = slowChunk

// coalesce groups a poll's batches into units of work for process: one
// unit per partition, except that a source topic's partitions whose
// records number at most coalesceMax in all share one unit. Retry topics
// are left alone: their batches are admitted one partition at a time.
func (g *Group) coalesce(batches map[tp][]*kgo.Record) [][][]*kgo.Record {
	byTopic := map[string][]tp{}
	for k := range batches {
		byTopic[k.topic] = append(byTopic[k.topic], k)
	}
	var units [][][]*kgo.Record
	for topic, tps := range byTopic {
		slices.SortFunc(tps, func(a, b tp) int { return cmp.Compare(a.partition, b.partition) })
		n := 0
		for _, k := range tps {
			n += len(batches[k])
		}
		if g.stage[topic] == 0 && len(tps) > 1 && n <= coalesceMax {
			unit := make([][]*kgo.Record, 0, len(tps))
			for _, k := range tps {
				unit = append(unit, batches[k])
			}
			units = append(units, unit)
			continue
		}
		for _, k := range tps {
			units = append(units, [][]*kgo.Record{batches[k]})
		}
	}
	return units
}

// originLock is the mutex of a source partition (see process).
func (g *Group) originLock(o origin) *sync.Mutex {
	k := tp{o.topic, o.partition}
	if mu, ok := g.origins.Load(k); ok {
		return mu.(*sync.Mutex)
	}
	mu, _ := g.origins.LoadOrStore(k, &sync.Mutex{})
	return mu.(*sync.Mutex)
}

func headerOr(rec *kgo.Record, key string) string {
	v, _ := header(rec, key)
	return v
}

// produceCopies returns the step retryForever repeats to deliver copies:
// only the copies not yet acknowledged are produced again (a whole-batch
// retry wrote the acknowledged ones again), and a copy the broker refuses
// for good goes on to the DLT, once, with the reason (see undeliverable).
func (g *Group) produceCopies(ctx context.Context, log *slog.Logger, copies []*kgo.Record) func() error {
	pending := copies
	return func() error {
		for len(pending) > 0 {
			var again []*kgo.Record
			var errs []error
			redirected := false
			for _, r := range g.prod.ProduceSync(ctx, pending...) {
				if r.Err == nil {
					continue
				}
				if next := g.undeliverable(r.Record, r.Err); next != nil {
					log.Warn("consumers: a copy was refused for good; sending it to the DLT", "topic", r.Record.Topic,
						"partition", r.Record.Partition, "to", next.Topic, "value_dropped", next.Value == nil && r.Record.Value != nil, "err", r.Err)
					again = append(again, next)
					redirected = true
					continue
				}
				again = append(again, r.Record)
				errs = append(errs, r.Err)
			}
			pending = again
			if len(errs) > 0 || !redirected {
				return errors.Join(errs...)
			}
		}
		return nil
	}
}

// retryForever runs fn until it succeeds or ctx ends, with capped
// exponential backoff.
func (g *Group) retryForever(ctx context.Context, log *slog.Logger, what string, fn func() error) bool {
	backoff := 100 * time.Millisecond
	for {
		g.attempted.Store(time.Now().UnixNano())
		err := fn()
		if err == nil {
			return true
		}
		if ctx.Err() != nil {
			return false
		}
		log.Warn("consumers: "+what+" failed; retrying", "err", err, "in", backoff)
		t := time.NewTimer(backoff)
		select {
		case <-ctx.Done():
			t.Stop()
			return false
		case <-t.C:
		}
		backoff = min(backoff*2, g.cfg.MaxBackoff)
	}
}
