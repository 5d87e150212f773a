package consumers

import (
	"slices"
	"time"
)

// Stats are a Group's counters since Run started.
type Stats struct {
	Applied, Duplicates, Retried, DeadLettered, Deferred int64
	// RetryLatenessP99 is the 99th percentile of (processed - due) over
	// the last retry records processed.
	RetryLatenessP99 time.Duration
	RetryProcessed   int64
}

// Stats returns the counters.
func (g *Group) Stats() Stats {
	s := Stats{Applied: g.applied.Load(), Duplicates: g.duplicates.Load(), Retried: g.retried.Load(),
		DeadLettered: g.dead.Load(), Deferred: g.deferred.Load(), RetryProcessed: g.retryProcessed.Load()}
	g.latMu.Lock()
	l := slices.Clone(g.lateness)
	g.latMu.Unlock()
	if len(l) > 0 {
		slices.Sort(l)
		s.RetryLatenessP99 = l[(len(l)*99-1)/100]
	}
	return s
}

func (g *Group) noteLateness(d time.Duration) {
	g.latMu.Lock()
	if len(g.lateness) < cap(g.lateness) {
		g.lateness = append(g.lateness, d)
	} else {
		g.lateness[g.latPos] = d
		g.latPos = (g.latPos + 1) % len(g.lateness)
	}
	g.latMu.Unlock()
}
