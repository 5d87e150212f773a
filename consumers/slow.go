package consumers

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/jackc/pgx/v5"
)

// slow applies the batch again after the fast path failed, isolating the
// failing events by bisection: a range of events is applied under one
// savepoint (dedupe rows, then the batch handler once or the per-event
// handlers back to back); if it fails, it is rolled back to the savepoint
// and its halves are applied the same way, down to single events, which
// fail alone. k failures among n events cost about 2k·log2(n/k) savepoints
// instead of n. known is the event the fast path saw fail with knownErr:
// it is failed directly, its handler not run again for the same attempt.
func (a *applier) slow(ctx context.Context, db beginner, items []item, events []*Event, results []result, st step, known *Event, knownErr error) error {
	tx, err := db.Begin(ctx)
	if err != nil {
		return fmt.Errorf("error beginning apply transaction: %w", err)
	}
	defer func() { _ = tx.Rollback(context.WithoutCancel(ctx)) }()
	chain, err := a.loadChain(ctx, tx, items)
	if err != nil {
		return err
	}
	s := &slowRun{a: a, tx: tx, items: items, events: events, results: results, st: st, now: time.Now(), chain: chain, known: known, knownErr: knownErr}
	all := make([]int, len(items))
	for i := range all {
		all[i] = i
	}
	if err := s.run(ctx, all); err != nil {
		return err
	}
	if err := a.enterChain(ctx, tx, s.enter); err != nil {
		return err
	}
	if err := a.leaveChain(ctx, tx, s.leave); err != nil {
		return err
	}
	if err := tx.Commit(ctx); err != nil {
		return fmt.Errorf("error committing apply transaction: %w", err)
	}
	return nil
}

// slowRun is one slow-path transaction.
type slowRun struct {
	a        *applier
	tx       pgx.Tx
	items    []item
	events   []*Event
	results  []result
	st       step
	now      time.Time
	chain    chainState
	known    *Event
	knownErr error
	enter    []entry
	leave    []item
}

func (s *slowRun) check(i int) (blocked, own bool, after time.Time) {
	if !s.a.keyOrder {
		return false, false, time.Time{}
	}
	return s.chain.check(s.items[i])
}

// run classifies the records at idx in order against the chain (what is
// undecodable, deferred or known to fail) and applies the rest.
func (s *slowRun) run(ctx context.Context, idx []int) error {
	var todo []int
	for _, i := range idx {
		it, ev := s.items[i], s.events[i]
		blocked, own, after := s.check(i)
		isSource := it.env.isSource()
		switch {
		case ev == nil: // undecodable or skipped: its outcome is set
			if own {
				s.leave = append(s.leave, it)
				s.chain.remove(it)
			}
		case blocked || (own && isSource):
			s.results[i].Outcome = outDeferred
			row, due := s.st.deferDue(s.now, after)
			s.results[i].due = due
			s.enter = append(s.enter, entry{it, row})
			s.chain.set(it, row)
		case ev == s.known:
			if err := s.bisect(ctx, todo); err != nil {
				return err
			}
			todo = nil
			s.fail(i, s.knownErr, own)
		default:
			todo = append(todo, i)
		}
	}
	return s.bisect(ctx, todo)
}

func (s *slowRun) fail(i int, err error, own bool) {
	s.results[i].Outcome, s.results[i].Err = outFailed, err
	if !s.a.keyOrder {
		return
	}
	it := s.items[i]
	switch {
	case !goesToDLT(err, s.st.last): // entering the chain, or staying in it for another step
		due := s.st.failDue(s.now)
		s.results[i].due = due
		s.enter = append(s.enter, entry{it, due})
		s.chain.set(it, due)
	case own:
		s.leave = append(s.leave, it)
		s.chain.remove(it)
	}
}

// bisect applies the events at list under a savepoint, or its halves.
func (s *slowRun) bisect(ctx context.Context, list []int) error {
	if len(list) == 0 {
		return nil
	}
	sp, err := s.tx.Begin(ctx) // SAVEPOINT
	if err != nil {
		return fmt.Errorf("error creating savepoint: %w", err)
	}
	outcomes, herr, err := s.try(ctx, sp, list)
	if err != nil {
		return err // the transaction is broken or conflicted: retry the batch
	}
	if herr == nil {
		if err := sp.Commit(ctx); err != nil { // RELEASE SAVEPOINT
			return fmt.Errorf("error releasing savepoint: %w", err)
		}
		for j, i := range list {
			s.results[i].Outcome = outcomes[j]
			if _, own, _ := s.check(i); own {
				s.leave = append(s.leave, s.items[i])
				s.chain.remove(s.items[i])
			}
		}
		return nil
	}
	if err := sp.Rollback(ctx); err != nil { // ROLLBACK TO SAVEPOINT
		return fmt.Errorf("error rolling back to savepoint: %w", errors.Join(err, herr))
	}
	if len(list) == 1 {
		_, own, _ := s.check(list[0])
		s.fail(list[0], herr, own)
		return nil
	}
	mid := len(list) / 2
	if err := s.bisect(ctx, list[:mid]); err != nil {
		return err
	}
	return s.run(ctx, list[mid:]) // a failure on the left may defer some on the right
}

// try inserts the dedupe rows of list and runs the handler on the new
// events. herr is the handler's failure; err a broken transaction or a
// conflict.
func (s *slowRun) try(ctx context.Context, tx pgx.Tx, list []int) (outcomes []outcome, herr, err error) {
	ids := make([][16]byte, len(list))
	for j, i := range list {
		ids[j] = s.events[i].ID
	}
	isNew, err := s.a.insertDedupe(ctx, tx, ids)
	if err != nil {
		return nil, nil, err
	}
	outcomes = make([]outcome, len(list))
	todo := make([]*Event, 0, len(isNew))
	for j, i := range list {
		ev := s.events[i]
		if !isNew[ev.ID] {
			outcomes[j] = outDuplicate
			continue
		}
		delete(isNew, ev.ID)
		outcomes[j] = outApplied
		todo = append(todo, ev)
	}
	switch {
	case len(todo) == 0:
	case s.a.batch != nil && len(todo) > 1:
		herr = s.a.handleBatch(ctx, tx, todo)
	default:
		for _, ev := range todo {
			if herr = s.a.handle(ctx, tx, ev); herr != nil {
				break
			}
		}
	}
	if isConflict(herr) || (herr != nil && tx.Conn().IsClosed()) {
		return nil, nil, herr // not the event's fault: retry the batch
	}
	return outcomes, herr, nil
}
