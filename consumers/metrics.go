package consumers

import (
	"context"
	"errors"
	"fmt"
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

// RegisterMetrics publishes the group's metrics through mp, labelled with
// the group: eventline_consumer_applied_total, _duplicates_total,
// _retried_total, _dead_lettered_total, _deferred_total,
// _skipped_total (labelled with event_type too: see Mux), the
// eventline_consumer_apply_seconds histogram (one observation per
// partition batch), eventline_consumer_retry_lateness_p99_seconds and
// eventline_consumer_lag per source topic (committed offsets behind the
// high watermark, read from the cluster when scraped).
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
	hist, e8 := m.Float64Histogram("eventline_consumer_apply", metric.WithUnit("s"), metric.WithDescription("time to apply one partition batch (transaction and retry/DLT copies)"),
		metric.WithExplicitBucketBoundaries(.001, .0025, .005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5, 10))
	skipped, e9 := m.Int64ObservableCounter("eventline_consumer_skipped", metric.WithDescription("events of a type the Mux has no handler for, by event_type"))
	if err := errors.Join(e1, e2, e3, e4, e5, e6, e7, e8, e9); err != nil {
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
			lags, err := kadm.NewClient(prod).Lag(lctx, g.cfg.Group)
			if err == nil {
				if l, ok := lags[g.cfg.Group]; ok && l.Error() == nil {
					for topic, tl := range l.Lag.TotalByTopic() {
						o.ObserveInt64(lag, tl.Lag, metric.WithAttributes(attribute.String("group", g.cfg.Group), attribute.String("topic", topic)))
					}
				}
			}
		}
		return nil
	}, applied, dups, retried, dead, deferred, late, lag, skipped)
	return err
}
