package consumers

// Retry waiting: the retry consumer holds records that are not due yet,
// per partition, pauses only a partition that holds enough, and wakes at
// the earliest due time.

import (
	"sync"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"
)

type tp struct {
	topic     string
	partition int32
}

// waiting holds retry records that are not due yet, per partition; a
// partition with a waiting head is paused so that only it stops.
type waiting struct {
	mu     sync.Mutex
	parts  map[tp][]*kgo.Record
	paused map[tp]bool
}

// prefetch is how far ahead of their due time the retry consumer keeps
// fetching: a partition is paused only while the records it holds reach
// further than this, and resumed when they no longer do, so the next
// records are fetched (a fetch can wait up to retryFetchMaxWait) before
// they are due.
const (
	prefetch          = time.Second
	retryFetchMaxWait = 250 * time.Millisecond
)

// earliest is when the retry loop must wake: the first waiting head's due
// time, or the time a paused partition must be resumed to prefetch.
func (w *waiting) earliest() (time.Time, bool) {
	w.mu.Lock()
	defer w.mu.Unlock()
	var best time.Time
	for k, recs := range w.parts {
		if d := dueAt(recs[0]); best.IsZero() || d.Before(best) {
			best = d
		}
		if w.paused[k] {
			if r := dueAt(recs[len(recs)-1]).Add(-prefetch); r.Before(best) {
				best = r
			}
		}
	}
	return best, !best.IsZero()
}

// admit adds fresh records behind the waiting ones and returns each
// partition's due prefix. A partition whose waiting records reach more
// than prefetch past now is paused (it holds enough), one that no longer
// does is resumed.
func (w *waiting) admit(cl *kgo.Client, fresh map[tp][]*kgo.Record, now time.Time) map[tp][]*kgo.Record {
	w.mu.Lock()
	defer w.mu.Unlock()
	for k, recs := range fresh {
		w.parts[k] = append(w.parts[k], recs...)
	}
	due := map[tp][]*kgo.Record{}
	pause, resume := map[string][]int32{}, map[string][]int32{}
	for k, recs := range w.parts {
		n := 0
		for n < len(recs) && !dueAt(recs[n]).After(now) {
			n++
		}
		if n > 0 {
			due[k] = recs[:n]
		}
		holdsEnough := false
		if n == len(recs) {
			delete(w.parts, k)
		} else {
			w.parts[k] = recs[n:]
			holdsEnough = dueAt(recs[len(recs)-1]).After(now.Add(prefetch))
		}
		switch {
		case holdsEnough && !w.paused[k]:
			w.paused[k] = true
			pause[k.topic] = append(pause[k.topic], k.partition)
		case !holdsEnough && w.paused[k]:
			delete(w.paused, k)
			resume[k.topic] = append(resume[k.topic], k.partition)
		}
	}
	if len(pause) > 0 {
		cl.PauseFetchPartitions(pause)
	}
	if len(resume) > 0 {
		cl.ResumeFetchPartitions(resume)
	}
	return due
}

// drop forgets the waiting records of revoked partitions (unmarked, so
// their next owner reads them again) and unpauses them.
func (w *waiting) drop(cl *kgo.Client, m map[string][]int32) {
	w.mu.Lock()
	defer w.mu.Unlock()
	for t, ps := range m {
		for _, p := range ps {
			delete(w.parts, tp{t, p})
			delete(w.paused, tp{t, p})
		}
	}
	cl.ResumeFetchPartitions(m)
}
