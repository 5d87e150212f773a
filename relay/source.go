package relay

// Where a leader reads committed events: the seam between the relay's two
// modes. The leader's session (leadership, the lock connection's watch) is
// the same for both; what it does while it leads is a source's.

import (
	"context"
	"errors"
	"fmt"
	"sync/atomic"
	"time"
)

// source publishes committed events while the relay leads. lead returns
// nil when ctx ends, an ErrNotLeader error when leadership is lost (lost
// delivers the lock connection's failure; lostFlag says it happened), or
// the error that ended the session.
type source interface {
	lead(ctx context.Context, lost chan error, lostFlag *atomic.Bool) error
}

// newSource is the source of cfg's mode.
func newSource(r *Relay) source {
	if r.cfg.Mode == ModeLogical {
		return slotSource{r}
	}
	return tableSource{r}
}

var (
	_ source = tableSource{}
	_ source = slotSource{}
)

// tableSource is poll mode: drain the eventline_outbox table in id order,
// probing its primary key for new rows between drains (probe.go has the
// probes, publish.go the drain).
type tableSource struct{ r *Relay }

// slotSource is logical mode: stream the producers' messages from the
// replication slot (logical.go).
type slotSource struct{ r *Relay }

func (s slotSource) lead(ctx context.Context, lost chan error, lostFlag *atomic.Bool) error {
	err := s.r.streamLogical(ctx, lostFlag)
	switch {
	case ctx.Err() != nil:
		return nil
	case lostFlag.Load():
		return fmt.Errorf("%w: %v", ErrNotLeader, <-lost)
	}
	return err
}

func (s tableSource) lead(ctx context.Context, lost chan error, lostFlag *atomic.Bool) error {
	r := s.r
	log := r.cfg.Logger
	var cleanup <-chan time.Time
	if r.cfg.Retention > 0 {
		t := time.NewTicker(min(r.cfg.Retention/2, time.Minute))
		defer t.Stop()
		cleanup = t.C
	}
	usable, err := r.floorUsable(ctx)
	if err != nil && ctx.Err() == nil {
		log.Warn("relay: reading from the lowest id only", "err", err)
	}
	r.floor.lead(usable, r.cfg.PollInterval)
	backoff := 100 * time.Millisecond
	wait := minProbe   // the next wait between probes (probe.go)
	var ts *txnSession // Config.Transactional: this leadership's producer
	defer func() { ts.close() }()
	drain := func() error {
		if !r.cfg.Transactional {
			return r.drain(ctx, lostFlag)
		}
		if ts == nil {
			var err error
			if ts, err = r.takeover(ctx); err != nil {
				return err
			}
		}
		err := r.drainTx(ctx, lostFlag, ts)
		if errors.Is(err, errTxn) {
			ts.close() // the next takeover settles what the broker holds
			ts = nil
		}
		return err
	}
	for {
		select {
		case err := <-lost:
			if ctx.Err() != nil {
				return nil
			}
			return fmt.Errorf("%w: %v", ErrNotLeader, err)
		default:
		}
		if ctx.Err() != nil {
			return nil
		}
		before := r.published.Load() + r.parked.Load()
		err := drain()
		if err != nil {
			r.floor.drop() // rows read may be left unpublished
			if ctx.Err() != nil {
				return nil
			}
			if unrecoverable(err, false) {
				return err
			}
			log.Error("relay: batch failed; retrying", "err", err, "in", backoff)
			if !r.sleep(ctx, backoff) {
				return nil
			}
			backoff = min(backoff*2, r.cfg.MaxBackoff)
			continue
		}
		backoff = 100 * time.Millisecond
		if r.published.Load()+r.parked.Load() != before {
			// Rows are flowing: drain again shortly (the read is the
			// probe), letting a few more commits join the batch.
			wait = minProbe
			select {
			case <-cleanup: // due while rows flow too
				if err := r.cleanup(ctx); err != nil && ctx.Err() == nil {
					log.Error("relay: retention cleanup failed", "err", err)
				}
			default:
			}
			if !r.sleep(ctx, r.cfg.Linger) {
				return nil
			}
			continue
		}
		r.idle(ctx, &wait, lost, cleanup)
	}
}

// idle waits until a probe finds a row the relay has not read, PollInterval
// has passed (the full drain), the context ends or leadership is lost
// (left in lost for the caller). Each empty probe doubles *wait, up to
// ProbeInterval.
func (r *Relay) idle(ctx context.Context, wait *time.Duration, lost chan error, cleanup <-chan time.Time) {
	full := time.NewTimer(r.cfg.PollInterval)
	defer full.Stop()
	for {
		next := time.NewTimer(*wait)
		select {
		case <-ctx.Done():
			next.Stop()
			return
		case err := <-lost:
			next.Stop()
			lost <- err // handled at the top of the session loop
			return
		case <-full.C:
			next.Stop()
			return
		case <-cleanup:
			next.Stop()
			if err := r.cleanup(ctx); err != nil && ctx.Err() == nil {
				r.cfg.Logger.Error("relay: retention cleanup failed", "err", err)
			}
		case <-next.C:
			found, err := r.probe(ctx)
			if err != nil {
				if ctx.Err() == nil {
					r.cfg.Logger.Warn("relay: probe failed; draining instead", "err", err)
				}
				// The drain shows a database failure with its own
				// backoff; the probe's wait grows meanwhile.
				*wait = min(*wait*2, r.cfg.ProbeInterval)
				return
			}
			if found {
				*wait = minProbe
				return
			}
			*wait = min(*wait*2, r.cfg.ProbeInterval)
		}
	}
}
