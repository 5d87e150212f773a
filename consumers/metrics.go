package consumers

import (
	"context"
	"errors"
	"fmt"
	"sync/atomic"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/metric"
)

// Ready reports whether both of the group's consumers have joined their
// Kafka groups (nil), or which has not.
func (g *Group) Ready() error {
	var errs []error
	if !g.joined[0].Load() {
		errs = append(errs, fmt.Errorf("consumer group %s not joined", g.cfg.Group))
	}
	if len(g.cfg.RetryDelays) > 0 && !g.joined[1].Load() {
		errs = append(errs, fmt.Errorf("consumer group %s.retry not joined", g.cfg.Group))
	}
	return errors.Join(errs...)
}

// livenessWindow is how long a loop may go without returning from a poll,
// while no failing database or broker call is being retried, before Live
// reports it stuck (settable by the tests, read by every group's loop:
// atomic).
var livenessWindow atomic.Int64 // ns; 2 minutes (init), shorter in tests

func init() { livenessWindow.Store(int64(2 * time.Minute)) }

func liveWindow() time.Duration { return time.Duration(livenessWindow.Load()) }

// pollTurn bounds one poll: an idle loop comes back at least this often
// (5 s for the 2-minute window).
func pollTurn() time.Duration { return liveWindow() / 24 }

// Live reports whether the group is making progress (nil), for a liveness
// probe: Run is running, and each of its consumer loops has come back from
// a poll within the last 2 minutes (an idle loop comes back every 5 s) or
// the group is retrying a failing database or broker call (a restart
// would not heal an outage; it waits with backoff). A handler that never
// returns fails it: restarting the process is then the remedy, and the
// records are delivered again and deduplicated. Before Run and after it
// returned, Live reports an error.
func (g *Group) Live() error {
	if g.running.Load() == nil {
		return fmt.Errorf("consumer group %s is not running", g.cfg.Group)
	}
	now := time.Now()
	window := liveWindow()
	if now.Sub(time.Unix(0, g.attempted.Load())) < window {
		return nil
	}
	var errs []error
	for i, name := range []string{g.cfg.Group, g.cfg.Group + ".retry"} {
		if i == 1 && len(g.cfg.RetryDelays) == 0 {
			continue
		}
		last := g.turned[i].Load()
		if last == 0 { // still joining
			continue
		}
		if d := now.Sub(time.Unix(0, last)); d > window {
			errs = append(errs, fmt.Errorf("consumer group %s: no poll for %s (a handler or batch has not returned)", name, d.Round(time.Second)))
		}
	}
	return errors.Join(errs...)
}

// RegisterMetrics publishes the group's metrics through mp, labelled with
// the group: eventline_consumer_applied_total, _duplicates_total,
// _retried_total, _dead_lettered_total, _deferred_total,
// _skipped_total (labelled with event_type too: see Mux), the
// eventline_consumer_apply_seconds histogram (one observation per applied
// batch), eventline_consumer_retry_lateness_p99_seconds and
// eventline_consumer_lag per source topic (committed offsets behind the
// high watermark), eventline_consumer_retry_due,
// eventline_consumer_retry_waiting and eventline_consumer_scaling_lag
// (source lag + due retry records: the autoscaling signal), read from the
// cluster when scraped (see Lag).
func (g *Group) RegisterMetrics(mp metric.MeterProvider) error {
	m := mp.Meter("github.com/eventline/eventline/consumers")
	attrs := metric.WithAttributes(attribute.String("group", g.cfg.Group))
	applied, e1 := m.Int64ObservableCounter("eventline_consumer_applied", metric.WithDescription("events applied"))
	dups, e2 := m.Int64ObservableCounter("eventline_consumer_duplicates", metric.WithDescription("redelivered events skipped by the dedupe table"))
	retried, e3 := m.Int64ObservableCounter("eventline_consumer_retried", metric.WithDescription("events sent to a retry topic"))
	dead, e4 := m.Int64ObservableCounter("eventline_consumer_dead_lettered", metric.WithDescription("events sent to the dead-letter topic"))
	deferred, e5 := m.Int64ObservableCounter("eventline_consumer_deferred", metric.WithDescription("events that followed their key into the retry chain"))
	late, e6 := m.Float64ObservableGauge("eventline_consumer_retry_lateness_p99", metric.WithUnit("s"), metric.WithDescription("p99 of processing time minus due time of recent retry records"))
	lag, e7 := m.Int64ObservableGauge("eventline_consumer_lag", metric.WithDescription("records between the group's committed offsets and the high watermarks"))
	hist, e8 := m.Float64Histogram("eventline_consumer_apply", metric.WithUnit("s"), metric.WithDescription("time to apply one batch: a partition's records, or a poll's few of one topic (transaction and retry/DLT copies)"),
		metric.WithExplicitBucketBoundaries(.001, .0025, .005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5, 10))
	skipped, e9 := m.Int64ObservableCounter("eventline_consumer_skipped", metric.WithDescription("events of a type the Mux has no handler for, by event_type"))
	due, e10 := m.Int64ObservableGauge("eventline_consumer_retry_due", metric.WithDescription("retry-topic records whose due time has come, not yet processed"))
	waiting, e11 := m.Int64ObservableGauge("eventline_consumer_retry_waiting", metric.WithDescription("retry-topic records waiting for their due time (no member may process them sooner)"))
	scaling, e12 := m.Int64ObservableGauge("eventline_consumer_scaling_lag", metric.WithDescription("the lag to autoscale on: source-topic lag plus due retry records"))
	if err := errors.Join(e1, e2, e3, e4, e5, e6, e7, e8, e9, e10, e11, e12); err != nil {
		return err
	}
	g.applyHist.Store(&hist)
	_, err := m.RegisterCallback(func(ctx context.Context, o metric.Observer) error {
		st := g.Stats()
		o.ObserveInt64(applied, st.Applied, attrs)
		o.ObserveInt64(dups, st.Duplicates, attrs)
		o.ObserveInt64(retried, st.Retried, attrs)
		o.ObserveInt64(dead, st.DeadLettered, attrs)
		o.ObserveInt64(deferred, st.Deferred, attrs)
		o.ObserveFloat64(late, st.RetryLatenessP99.Seconds(), attrs)
		for typ, n := range st.SkippedByType {
			o.ObserveInt64(skipped, n, metric.WithAttributes(attribute.String("group", g.cfg.Group), attribute.String("event_type", typ)))
		}
		if prod := g.running.Load(); prod != nil {
			lctx, cancel := context.WithTimeout(ctx, 2*time.Second)
			defer cancel()
			if l, err := g.lag(lctx, kadm.NewClient(prod), time.Now()); err == nil {
				for topic, n := range l.SourceByTopic {
					o.ObserveInt64(lag, n, metric.WithAttributes(attribute.String("group", g.cfg.Group), attribute.String("topic", topic)))
				}
				o.ObserveInt64(due, l.RetryDue, attrs)
				o.ObserveInt64(waiting, l.RetryWaiting, attrs)
				o.ObserveInt64(scaling, l.Scaling(), attrs)
			}
		}
		return nil
	}, applied, dups, retried, dead, deferred, late, lag, skipped, due, waiting, scaling)
	return err
}
