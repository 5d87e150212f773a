package relay

import (
	"slices"
	"testing"
	"time"
)

// The tracker watches the ids skipped below the highest one read, forgets
// those that show up (late commits), expires the rest after its TTL and
// keeps at most maxGaps.
func TestGapsTracker(t *testing.T) {
	now := time.Now()
	g := gaps{ttl: time.Second}
	g.saw([]int64{10, 11, 14, 16}, now) // the first read: below 10 is not watched
	if hi, open := g.probeArgs(now); hi != 16 || !slices.Equal(open, []int64{12, 13, 15}) {
		t.Fatalf("hi %d, gaps %v; want 16, [12 13 15]", hi, open)
	}
	g.saw([]int64{13, 17}, now.Add(100*time.Millisecond)) // 13 committed late
	if hi, open := g.probeArgs(now.Add(100 * time.Millisecond)); hi != 17 || !slices.Equal(open, []int64{12, 15}) {
		t.Fatalf("hi %d, gaps %v; want 17, [12 15]", hi, open)
	}
	g.saw([]int64{20}, now.Add(900*time.Millisecond))
	if _, open := g.probeArgs(now.Add(1100 * time.Millisecond)); !slices.Equal(open, []int64{18, 19}) {
		t.Fatalf("after the TTL, gaps %v; want [18 19] (12 and 15 expired)", open)
	}
	g.saw([]int64{20 + 3*maxGaps}, now.Add(1200*time.Millisecond)) // a jump: the maxGaps ids just below it watched
	if hi, open := g.probeArgs(now.Add(1200 * time.Millisecond)); hi != 20+3*maxGaps || len(open) != maxGaps || open[0] != 20+2*maxGaps {
		t.Fatalf("hi %d, %d gaps from %v; want %d, %d from %d", hi, len(open), open[:1], 20+3*maxGaps, maxGaps, 20+2*maxGaps)
	}
	g.reset()
	g.saw([]int64{5000, 5002}, now) // after a reset, the first read again watches nothing below it
	if hi, open := g.probeArgs(now); hi != 5002 || !slices.Equal(open, []int64{5001}) {
		t.Fatalf("after reset: hi %d, gaps %v; want 5002, [5001]", hi, open)
	}
}
