package relay

import (
	"context"
	"errors"
	"time"

	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/metric"
)

// Ready reports whether the relay holds its database session, as leader or
// as hot standby (nil), or why not.
func (r *Relay) Ready() error {
	if !r.connected.Load() {
		return errors.New("relay: no database session (starting, or the database is unreachable)")
	}
	return nil
}

// Live reports whether the relay process is worth keeping (nil), for a
// liveness probe: an error once Run has returned. A relay that cannot reach
// PostgreSQL or Kafka stays live (it retries with backoff; restarting
// would not heal an outage) and says so through Ready and the logs; a
// standby is live and ready, and eventline_relay_leader tells which relay
// leads.
func (r *Relay) Live() error {
	if r.returned.Load() {
		return errors.New("relay: Run has returned")
	}
	return nil
}

// RegisterMetrics publishes the relay's metrics through mp (read when
// scraped): eventline_outbox_backlog, eventline_outbox_oldest_age_seconds
// (a query on the outbox, by the leader or standby alike),
// eventline_relay_published_total, eventline_relay_parked_total,
// eventline_relay_batches_total, eventline_relay_last_batch_seconds and
// eventline_relay_leader, and in logical mode eventline_relay_slot_lag_bytes,
// eventline_relay_slot_retained_bytes and eventline_relay_slot_lag_age_seconds
// (SlotLag), each labelled with the outbox schema.
func (r *Relay) RegisterMetrics(mp metric.MeterProvider) error {
	m := mp.Meter("github.com/eventline/eventline/relay")
	attrs := metric.WithAttributes(attribute.String("schema", r.cfg.Schema))
	backlog, err1 := m.Int64ObservableGauge("eventline_outbox_backlog", metric.WithDescription("outbox rows not yet published"))
	oldest, err2 := m.Float64ObservableGauge("eventline_outbox_oldest_age", metric.WithUnit("s"), metric.WithDescription("age of the oldest unpublished outbox row"))
	published, err3 := m.Int64ObservableCounter("eventline_relay_published", metric.WithDescription("events published and acknowledged"))
	parked, err4 := m.Int64ObservableCounter("eventline_relay_parked", metric.WithDescription("rows parked after a permanent error"))
	batches, err5 := m.Int64ObservableCounter("eventline_relay_batches", metric.WithDescription("batches published"))
	last, err6 := m.Float64ObservableGauge("eventline_relay_last_batch", metric.WithUnit("s"), metric.WithDescription("read-produce-settle time of the last batch"))
	leader, err7 := m.Int64ObservableGauge("eventline_relay_leader", metric.WithDescription("1 while this relay is the leader"))
	lagBytes, err8 := m.Int64ObservableGauge("eventline_relay_slot_lag", metric.WithUnit("By"), metric.WithDescription("logical mode: WAL written since the slot's confirmed position"))
	retained, err9 := m.Int64ObservableGauge("eventline_relay_slot_retained", metric.WithUnit("By"), metric.WithDescription("logical mode: WAL the server keeps for the slot"))
	lagAge, err10 := m.Float64ObservableGauge("eventline_relay_slot_lag_age", metric.WithUnit("s"), metric.WithDescription("logical mode: age of the oldest event not yet confirmed"))
	if err := errors.Join(err1, err2, err3, err4, err5, err6, err7, err8, err9, err10); err != nil {
		return err
	}
	_, err := m.RegisterCallback(func(ctx context.Context, o metric.Observer) error {
		st := r.Stats()
		o.ObserveInt64(published, int64(st.Published), attrs)
		o.ObserveInt64(parked, int64(st.Parked), attrs)
		o.ObserveInt64(batches, int64(st.Batches), attrs)
		o.ObserveFloat64(last, st.LastBatch.Seconds(), attrs)
		l := int64(0)
		if st.Leader {
			l = 1
		}
		o.ObserveInt64(leader, l, attrs)
		qctx, cancel := context.WithTimeout(ctx, 2*time.Second)
		defer cancel()
		if rows, age, err := r.Backlog(qctx); err == nil {
			o.ObserveInt64(backlog, rows, attrs)
			o.ObserveFloat64(oldest, age.Seconds(), attrs)
		}
		if r.cfg.Mode == ModeLogical {
			if lag, err := r.SlotLag(qctx); err == nil {
				o.ObserveInt64(lagBytes, lag.Bytes, attrs)
				o.ObserveInt64(retained, lag.Retained, attrs)
				o.ObserveFloat64(lagAge, lag.Age.Seconds(), attrs)
			}
		}
		return nil
	}, backlog, oldest, published, parked, batches, last, leader, lagBytes, retained, lagAge)
	return err
}
