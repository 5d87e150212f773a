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

// A drain's read starts above what was read, below the lowest gap; from
// the lowest id when nothing was read, after a failed drain and once a
// TTL while rows flow.
func TestReadFloor(t *testing.T) {
	now := time.Now()
	g := gaps{ttl: time.Second}
	if f := g.floor(now); f != 0 {
		t.Fatalf("nothing read yet: floor %d, want 0", f)
	}
	g.saw([]int64{10, 11, 14, 16}, now)
	if f := g.floor(now.Add(time.Millisecond)); f != 11 {
		t.Fatalf("gaps 12, 13, 15: floor %d, want 11", f)
	}
	g.saw([]int64{12, 13, 15, 17}, now.Add(2*time.Millisecond))
	if f := g.floor(now.Add(3 * time.Millisecond)); f != 17 {
		t.Fatalf("no gap: floor %d, want 17 (the highest read)", f)
	}
	g.readAll()
	if f := g.floor(now.Add(4 * time.Millisecond)); f != 0 {
		t.Fatalf("after a failed drain: floor %d, want 0", f)
	}
	if f := g.floor(now.Add(5 * time.Millisecond)); f != 17 {
		t.Fatalf("the read after: floor %d, want 17", f)
	}
	if f := g.floor(now.Add(4*time.Millisecond + time.Second)); f != 0 {
		t.Fatalf("a TTL after the last read from the lowest id: floor %d, want 0", f)
	}
	g.saw([]int64{20}, now.Add(1100*time.Millisecond))
	if f := g.floor(now.Add(1101 * time.Millisecond)); f != 17 {
		t.Fatalf("gaps 18, 19: floor %d, want 17", f)
	}
	g.reset()
	if f := g.floor(now.Add(1102 * time.Millisecond)); f != 0 {
		t.Fatalf("a new leadership: floor %d, want 0", f)
	}
}
