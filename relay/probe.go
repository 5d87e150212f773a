package relay

import (
	"context"
	"fmt"
	"slices"
	"sync"
	"time"
)

// The relay learns of new rows by probing the outbox, not by NOTIFY: a
// notifying transaction takes a cluster-wide lock at commit, which stops
// concurrent commits from sharing a WAL flush, and that cost fell on every
// writer's business transactions (#13: business + outbox ran at 0.39 of
// business alone with the trigger, 0.635 without).
//
// A probe asks the primary key index whether a row exists above the highest
// id the relay has read (hi), or at one of the ids it has not seen below hi
// (gaps). Rows are deleted once published, so the index's dead entries all
// lie at or below hi, and the probe descends the index once instead of
// walking them. A gap is an id taken by a transaction that had not
// committed when the relay read past it: it commits later (its row then
// appears below hi) or rolls back (the id never appears). Gaps are watched
// for gapTTL, then left to the full drain every PollInterval, which reads
// the outbox from its lowest id whatever the probes say.
//
// While rows arrive the relay drains again every Config.Linger (the read is
// the probe). Once a drain finds nothing it probes after minProbe, and each
// empty probe doubles the wait, up to Config.ProbeInterval.

const (
	minProbe = time.Millisecond
	// maxGaps bounds the ids watched; beyond it the oldest are dropped
	// (the full drain still finds their rows).
	maxGaps = 4096
)

// gaps tracks hi and the ids below it not read yet. Its methods are called
// from the leader's loop only; the mutex guards Stats-like readers (none
// today) and keeps the race detector's view simple.
type gaps struct {
	mu   sync.Mutex
	hi   int64
	open []gap // ascending ids
	ttl  time.Duration
}

type gap struct {
	id   int64
	seen time.Time
}

// saw records the ids of one read (ascending).
func (g *gaps) saw(ids []int64, now time.Time) {
	g.mu.Lock()
	defer g.mu.Unlock()
	for _, id := range ids {
		switch {
		case id > g.hi:
			if g.hi > 0 {
				// After a long jump only the ids just below id are
				// watched: a late commit is likeliest there.
				for missing := max(g.hi+1, id-maxGaps); missing < id; missing++ {
					g.open = append(g.open, gap{missing, now})
				}
			}
			g.hi = id
		default: // a late commit below hi: no longer a gap
			if i, ok := slices.BinarySearchFunc(g.open, id, func(x gap, id int64) int { return cmpInt(x.id, id) }); ok {
				g.open = slices.Delete(g.open, i, i+1)
			}
		}
	}
	g.expire(now)
}

// expire drops gaps older than ttl and the oldest beyond maxGaps.
func (g *gaps) expire(now time.Time) {
	keep := g.open[:0]
	for _, x := range g.open {
		if now.Sub(x.seen) < g.ttl {
			keep = append(keep, x)
		}
	}
	clear(g.open[len(keep):])
	g.open = keep
	if n := len(g.open) - maxGaps; n > 0 {
		g.open = slices.Delete(g.open, 0, n)
	}
}

// reset forgets what was read (a new leadership: another relay may have
// read and published meanwhile).
func (g *gaps) reset() {
	g.mu.Lock()
	defer g.mu.Unlock()
	g.hi, g.open = 0, nil
}

// forget drops the gaps at or below the floor: their transactions have
// finished, and a row any of them committed has been read.
func (g *gaps) forget(floor int64) {
	g.mu.Lock()
	defer g.mu.Unlock()
	i, _ := slices.BinarySearchFunc(g.open, floor+1, func(x gap, id int64) int { return cmpInt(x.id, id) })
	g.open = slices.Delete(g.open, 0, i)
}

// probeArgs returns hi and the gap ids to ask about.
func (g *gaps) probeArgs(now time.Time) (int64, []int64) {
	g.mu.Lock()
	defer g.mu.Unlock()
	g.expire(now)
	ids := make([]int64, len(g.open))
	for i, x := range g.open {
		ids[i] = x.id
	}
	return g.hi, ids
}

func cmpInt(a, b int64) int {
	switch {
	case a < b:
		return -1
	case a > b:
		return 1
	}
	return 0
}

// probe reports whether the outbox may hold a row the relay has not read:
// one above hi, or at a watched gap. Two index lookups, whatever the number
// of dead entries below hi.
func (r *Relay) probe(ctx context.Context) (bool, error) {
	hi, open := r.gaps.probeArgs(time.Now())
	var found bool
	err := r.pool.QueryRow(ctx, r.probeSQL(), hi, open).Scan(&found)
	if err != nil {
		return false, fmt.Errorf("probing the outbox: %w", err)
	}
	return found, nil
}

// probeSQL is the probe's query. The row above hi is asked for as the
// first one in id order (a scalar subquery with ORDER BY and LIMIT), not
// with EXISTS: after a few executions PostgreSQL plans a prepared statement
// generically, and for EXISTS (... WHERE id > $1) the generic plan
// expects a third of the table to match and scans the heap from its first
// page, through every row deleted since vacuum last ran (110-170 ms per
// probe after a million-row drain, which set poll mode's live p99.9).
// Ordered by id, only the primary key's index can answer cheaply
// (TestProbePlansUseTheIndex).
func (r *Relay) probeSQL() string {
	unpublished := ""
	if r.cfg.Retention > 0 {
		unpublished = " AND published_at IS NULL"
	}
	return `SELECT (SELECT id FROM ` + r.table + ` WHERE id > $1` + unpublished + ` ORDER BY id LIMIT 1) IS NOT NULL
		OR EXISTS (SELECT 1 FROM ` + r.table + ` WHERE id = ANY($2::bigint[])` + unpublished + `)`
}
