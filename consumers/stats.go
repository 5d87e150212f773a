package consumers

import (
	"context"
	"log/slog"
	"maps"
	"slices"
	"time"
)

// Stats are a Group's counters since Run started.
type Stats struct {
	Applied, Duplicates, Retried, DeadLettered, Deferred int64
	// Skipped counts the events of a type the Mux has no handler for
	// (see Mux), SkippedByType per event type (the first 256 types met,
	// the others under "(other)"); nil when there were none.
	Skipped       int64
	SkippedByType map[string]int64
	// RetryLatenessP99 is the 99th percentile of (processed - due) over
	// the last retry records processed.
	RetryLatenessP99 time.Duration
	RetryProcessed   int64
	// Protocol is the group protocol in use (Config.Protocol, with
	// ProtocolAuto resolved); empty until Run has asked the cluster.
	Protocol Protocol
}

// Stats returns the counters.
func (g *Group) Stats() Stats {
	s := Stats{Applied: g.applied.Load(), Duplicates: g.duplicates.Load(), Retried: g.retried.Load(),
		DeadLettered: g.dead.Load(), Deferred: g.deferred.Load(), RetryProcessed: g.retryProcessed.Load()}
	if p := g.protocol.Load(); p != nil {
		s.Protocol = *p
	}
	g.skipMu.Lock()
	if len(g.skipped) > 0 {
		s.SkippedByType = maps.Clone(g.skipped)
		for _, n := range g.skipped {
			s.Skipped += n
		}
	}
	g.skipMu.Unlock()
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

// maxSkippedTypes bounds the event types counted apart: the type comes
// from a header any producer can set, and each is a metric label. The
// others are counted under otherTypes.
const (
	maxSkippedTypes = 256
	otherTypes      = "(other)"
)

// noteSkipped counts a batch's skipped events by type. The first event of
// a type the group skips is logged at Info (a handler may have been
// forgotten), later ones at Debug.
func (g *Group) noteSkipped(ctx context.Context, log *slog.Logger, byType map[string]int64) {
	if len(byType) == 0 {
		return
	}
	g.skipMu.Lock()
	defer g.skipMu.Unlock()
	if g.skipped == nil {
		g.skipped = map[string]int64{}
	}
	for typ, n := range byType {
		if _, ok := g.skipped[typ]; !ok && len(g.skipped) >= maxSkippedTypes {
			typ = otherTypes
		}
		level := slog.LevelDebug
		if g.skipped[typ] == 0 {
			level = slog.LevelInfo
		}
		g.skipped[typ] += n
		log.Log(ctx, level, "consumers: skipping events of a type the Mux has no handler for (register one with Handle, or set Mux.Unhandled)",
			"event_type", typ, "skipped", g.skipped[typ])
	}
}
