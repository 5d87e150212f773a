package consumers

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kgo"
)

// Lag is a group's backlog as an autoscaler should count it. A record in a
// retry topic that waits for its due time is no work for another member:
// no member may process it sooner, so it is counted apart.
type Lag struct {
	// Source: records of the source topics after the group's committed
	// offsets (from the log start when nothing is committed).
	Source int64
	// SourceByTopic is Source per source topic.
	SourceByTopic map[string]int64
	// RetryDue: records of the retry topics after the retry group's
	// committed offsets whose due time has come.
	RetryDue int64
	// RetryWaiting: retry records that wait for their due time, with the
	// records behind them in their partition (processed in order, they
	// cannot be processed sooner either).
	RetryWaiting int64
}

// Scaling is the lag an autoscaler should act on: Source + RetryDue.
func (l Lag) Scaling() int64 { return l.Source + l.RetryDue }

// Lag reads the group's lag from the cluster: committed offsets of the
// group and of its retry group, the end offsets, and for each retry topic
// the first offset whose record is not due yet. A retry copy's timestamp
// is its due time minus its topic's delay, so that offset is the first at
// or after now minus the delay (one timestamp lookup per topic, answered
// from the broker's time index). Every member computes the same numbers:
// an autoscaler takes any one, or the max over members.
//
// It uses the running group's client, or a short-lived one when Run is not
// running.
func (g *Group) Lag(ctx context.Context) (Lag, error) {
	cl := g.running.Load()
	if cl == nil {
		var err error
		cl, err = kgo.NewClient(append([]kgo.Opt{kgo.SeedBrokers(g.cfg.Brokers...)}, g.cfg.KafkaOpts...)...)
		if err != nil {
			return Lag{}, fmt.Errorf("consumers: kafka client: %w", err)
		}
		defer cl.Close()
	}
	return g.lag(ctx, kadm.NewClient(cl), time.Now())
}

func (g *Group) lag(ctx context.Context, adm *kadm.Client, now time.Time) (Lag, error) {
	l := Lag{SourceByTopic: map[string]int64{}}
	src, err := backlog(ctx, adm, g.cfg.Group, g.cfg.Topics)
	if err != nil {
		return Lag{}, err
	}
	for k, b := range src {
		l.Source += b.end - b.from
		l.SourceByTopic[k.topic] += b.end - b.from
	}
	for stage, delay := range g.cfg.RetryDelays {
		topics := make([]string, 0, len(g.cfg.Topics))
		for _, t := range g.cfg.Topics {
			topics = append(topics, g.next[t][stage+1])
		}
		parts, err := backlog(ctx, adm, g.cfg.Group+".retry", topics)
		if err != nil {
			return Lag{}, err
		}
		notDue, err := adm.ListOffsetsAfterMilli(ctx, now.Add(-delay).UnixMilli(), topics...)
		if err == nil {
			err = notDue.Error()
		}
		if err != nil {
			return Lag{}, fmt.Errorf("consumers: lag of %s: first records not due: %w", g.cfg.Group, err)
		}
		for k, b := range parts {
			waitFrom := b.end
			if o, ok := notDue.Lookup(k.topic, k.partition); ok && o.Offset >= 0 {
				waitFrom = min(max(o.Offset, b.from), b.end)
			}
			l.RetryDue += waitFrom - b.from
			l.RetryWaiting += b.end - waitFrom
		}
	}
	return l, nil
}

// span is a partition's records a group has still to process: from its
// committed offset (or the log start) to the end offset.
type span struct{ from, end int64 }

func backlog(ctx context.Context, adm *kadm.Client, group string, topics []string) (map[tp]span, error) {
	fail := func(what string, err error) (map[tp]span, error) {
		return nil, fmt.Errorf("consumers: lag of %s: %s: %w", group, what, err)
	}
	committed, err := adm.FetchOffsetsForTopics(ctx, group, topics...)
	if err == nil {
		err = committed.Error()
	}
	if errors.Is(err, kerr.GroupIDNotFound) { // nothing committed yet
		committed, err = nil, nil
	}
	if err != nil {
		return fail("committed offsets", err)
	}
	// The last stable offsets: what a read_committed group can read (an
	// open transaction's records are not lag yet).
	ends, err := adm.ListCommittedOffsets(ctx, topics...)
	if err == nil {
		err = ends.Error()
	}
	if err != nil {
		return fail("end offsets", err)
	}
	starts, err := adm.ListStartOffsets(ctx, topics...)
	if err == nil {
		err = starts.Error()
	}
	if err != nil {
		return fail("start offsets", err)
	}
	out := map[tp]span{}
	var errs []error
	ends.Each(func(o kadm.ListedOffset) {
		from := int64(0)
		if s, ok := starts.Lookup(o.Topic, o.Partition); ok {
			from = s.Offset
		}
		if c, ok := committed.Lookup(o.Topic, o.Partition); ok && c.At >= 0 {
			from = max(from, c.At)
		}
		if from > o.Offset {
			errs = append(errs, fmt.Errorf("%s[%d]: committed %d beyond the end %d", o.Topic, o.Partition, from, o.Offset))
			from = o.Offset
		}
		out[tp{o.Topic, o.Partition}] = span{from: from, end: o.Offset}
	})
	if len(errs) > 0 {
		return fail("offsets", errors.Join(errs...))
	}
	return out, nil
}
