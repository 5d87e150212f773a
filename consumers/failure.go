package consumers

// What happens when a handler fails: the failure policy in one place. A
// failed record goes to the group's next retry topic with that step's
// delay, or, when the chain is exhausted or the error is permanent
// (Permanent, an undecodable value, no event id), to the dead-letter
// topic; a record deferred behind its key's earlier event (key order)
// follows it into the chain but never into the dead-letter topic; a copy
// the broker refuses for good goes to the dead-letter topic instead, last
// without its value. The apply path decides applied / failed / deferred
// (apply.go, slow.go, chain.go); process sends the copies (forward.go).

import (
	"errors"
	"fmt"
	"slices"
	"time"

	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/eventline/eventline/headers"
	"github.com/eventline/eventline/schemas"
)

// step is where a batch of stage stage is in the chain, for the applier.
func (g *Group) step(stage int) step {
	steps := len(g.cfg.RetryDelays)
	st := step{last: stage == steps}
	if stage < steps {
		st.next = g.cfg.RetryDelays[stage]
	} else if steps > 0 { // a deferred record waits on the last step again
		st.next = g.cfg.RetryDelays[steps-1]
	}
	return st
}

// goesToDLT: a failed record leaves the chain (it ends in the DLT).
func goesToDLT(err error, last bool) bool { return last || IsPermanent(err) }

// routing is where a failed or deferred record's copy goes.
type routing struct {
	topic string
	due   time.Time // zero for the DLT
	// created is the copy's record timestamp on a retry topic: due minus
	// that topic's delay, at most now. The group's lag (Lag) finds the
	// first record not yet due with a timestamp lookup.
	created time.Time
	class   string // eventline-error-class
	cause   error
}

func (r routing) dead() bool { return r.due.IsZero() }

// route decides where r, failed or deferred in a batch of stage (0: the
// source topic) of source, goes next.
func (g *Group) route(r result, source string, stage int, now time.Time) routing {
	steps := len(g.cfg.RetryDelays)
	class, cause := classify(r)
	next := stage + 1
	switch {
	case r.Outcome == outFailed && IsPermanent(r.Err):
		next = steps + 1
	case r.Outcome == outDeferred && stage == steps && steps > 0:
		// A deferred event did not fail: it waits on the last step for its
		// key's earlier events, never in the DLT.
		next = steps
	}
	st := g.next[source]
	if st == nil { // a copy of a topic this group no longer consumes
		st = stageTopics(source, g.cfg.Group, steps)
	}
	to := routing{topic: st[next], class: class, cause: cause}
	if next <= steps {
		to.due = r.due
		if to.due.IsZero() {
			to.due = now.Add(g.cfg.RetryDelays[next-1])
		}
		// Never in the future: brokers refuse timestamps too far ahead
		// (message.timestamp.after.max.ms). A clamped copy (deferred
		// behind a later due time) reads as due early: Lag overcounts it.
		to.created = to.due.Add(-g.cfg.RetryDelays[next-1])
		if to.created.After(now) {
			to.created = now
		}
	}
	return to
}

func classify(r result) (string, error) {
	if r.Outcome == outDeferred {
		return ClassKeyOrder, errors.New("an earlier event of this key is in the retry chain")
	}
	var pe *permanentError
	switch {
	case errors.Is(r.Err, ErrNoEventID):
		return ClassNoEventID, r.Err
	case errors.As(r.Err, &pe):
		return ClassPermanent, r.Err
	case schemas.IsDecodeError(r.Err):
		return ClassDecode, r.Err
	}
	return ClassHandler, r.Err
}

// undeliverable returns where a copy the broker refused with err goes
// instead, or nil when err may pass (retry the same copy). A copy too large
// for its retry topic goes to the DLT; one too large for the DLT goes there
// without its value (the headers say where the original is).
func (g *Group) undeliverable(rec *kgo.Record, err error) *kgo.Record {
	refused := errors.Is(err, kerr.MessageTooLarge) || errors.Is(err, kerr.RecordListTooLarge) ||
		errors.Is(err, kerr.InvalidRecord) || errors.Is(err, kerr.CorruptMessage)
	src, ok := copyTopicSource(rec.Topic, g.cfg.Group)
	if !refused || !ok || (rec.Topic == DLTTopic(src, g.cfg.Group) && rec.Value == nil) {
		return nil // may pass later; or nothing left to drop: retried, and logged
	}
	cp := &kgo.Record{Topic: DLTTopic(src, g.cfg.Group), Partition: rec.Partition, Key: rec.Key, Value: rec.Value,
		Headers: slices.Clone(rec.Headers)}
	msg := fmt.Sprintf("the copy for %s (%d bytes) was refused: %v", rec.Topic, len(rec.Key)+len(rec.Value), err)
	if rec.Topic == cp.Topic { // already the DLT: drop the value, keep the record
		cp.Value = nil
		msg += "; value dropped, read it from the original topic at eventline-original-partition/offset"
	}
	setHeader(cp, headers.ErrorClass, ClassUndeliverable)
	setHeader(cp, headers.ErrorMessage, truncate(msg, maxErrorMessage))
	return cp
}
