package bench

import (
	"cmp"
	"context"
	"log/slog"
	"math/rand/v2"
	"sync"
	"sync/atomic"
	"time"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"

	"github.com/eventline/eventline/producer"
	"github.com/eventline/eventline/relay"
)

// AppendOptions of `eventline bench append`.
type AppendOptions struct {
	Writers  int           // concurrent writers; default 8
	Duration time.Duration // per phase; default 5s (each mode runs two phases, interleaved)
	Logger   *slog.Logger
	// WithoutRelay runs no relay: the outbox only grows.
	WithoutRelay bool
	// RelayCommand as in RelayOptions.
	RelayCommand []string
	// Mode is relay.ModePoll (default: writers insert outbox rows, the
	// relay drains the table) or relay.ModeLogical (writers write
	// messages, the relay streams its slot).
	Mode relay.Mode
}

// AppendResult is what `bench append --json` prints.
type AppendResult struct {
	Mode                 string  `json:"mode"` // how events are written and read: "poll" or "logical"
	Writers              int     `json:"writers"`
	PhaseSeconds         float64 `json:"phase_seconds"`
	BusinessOnlyTxPerSec float64 `json:"business_only_tx_per_sec"`
	WithOutboxTxPerSec   float64 `json:"with_outbox_tx_per_sec"`
	Ratio                float64 `json:"ratio"`
	RelayRunning         bool    `json:"relay_running"`
	Machine              string  `json:"machine"`
}

// Append measures, in one run and at the same concurrency, the rate of a
// business transaction (insert an order row) alone and with one outbox
// event appended (producer.Append: a row, or in logical mode a message) in
// the same transaction, with a relay process draining the outbox (or
// streaming its slot) meanwhile. Phases are
// interleaved (business, outbox, business, outbox) so drift in the machine's
// speed hits both alike.
func Append(ctx context.Context, env Env, o AppendOptions) (AppendResult, error) {
	o.Writers = cmp.Or(o.Writers, 8)
	o.Duration = cmp.Or(o.Duration, 5*time.Second)
	o.Logger = cmp.Or(o.Logger, slog.Default())
	o.Mode = cmp.Or(o.Mode, relay.ModePoll)
	res := AppendResult{Mode: string(o.Mode), Writers: o.Writers, PhaseSeconds: o.Duration.Seconds(), Machine: Machine(), RelayRunning: !o.WithoutRelay}
	s, err := newSetup(ctx, env, o.Mode, 6, o.Writers, o.Logger)
	if err != nil {
		return res, err
	}
	defer s.close()
	orders := pgx.Identifier{s.schema, "bench_orders"}.Sanitize()
	if _, err := s.pool.Exec(ctx, `CREATE TABLE `+orders+` (id uuid PRIMARY KEY, customer_id uuid NOT NULL, total_minor bigint NOT NULL, currency text NOT NULL, created_at timestamptz NOT NULL DEFAULT now())`); err != nil {
		return res, err
	}
	if !o.WithoutRelay {
		// As deployed: a relay drains the outbox while writers commit
		// (here on the same two cores).
		proc, err := startRelayProcess(env, s, 6, 10000, false, o.RelayCommand)
		if err != nil {
			return res, err
		}
		defer proc.stop()
	}
	var business, outbox [2]float64
	for round := 0; round < 2; round++ {
		for _, withOutbox := range []bool{false, true} {
			rate, err := appendPhase(ctx, s, orders, o, withOutbox)
			if err != nil {
				return res, err
			}
			o.Logger.Info("bench append: phase", "with_outbox", withOutbox, "tx_per_sec", rate)
			if withOutbox {
				outbox[round] = rate
			} else {
				business[round] = rate
			}
		}
	}
	res.BusinessOnlyTxPerSec = (business[0] + business[1]) / 2
	res.WithOutboxTxPerSec = (outbox[0] + outbox[1]) / 2
	res.Ratio = res.WithOutboxTxPerSec / res.BusinessOnlyTxPerSec
	return res, nil
}

func appendPhase(ctx context.Context, s *setup, orders string, o AppendOptions, withOutbox bool) (float64, error) {
	pctx, cancel := context.WithTimeout(ctx, o.Duration)
	defer cancel()
	var done atomic.Int64
	var wg sync.WaitGroup
	errc := make(chan error, o.Writers)
	start := time.Now()
	for w := 0; w < o.Writers; w++ {
		wg.Add(1)
		go func(seed uint64) {
			defer wg.Done()
			rng := rand.New(rand.NewPCG(seed, 7))
			for pctx.Err() == nil {
				id := uuid.New()
				err := pgx.BeginFunc(pctx, s.pool, func(tx pgx.Tx) error {
					if _, err := tx.Exec(pctx, `INSERT INTO `+orders+` (id, customer_id, total_minor, currency) VALUES ($1, $2, $3, 'EUR')`, id, id, rng.Int64N(100000)); err != nil {
						return err
					}
					if withOutbox {
						return s.prod.Append(pctx, tx, producer.Message{AggregateType: "order", AggregateID: id.String(), EventID: id, Event: sampleOrder(id.String(), rng)})
					}
					return nil
				})
				if err != nil {
					if pctx.Err() != nil {
						return // the phase ended mid-transaction
					}
					errc <- err
					return
				}
				done.Add(1)
			}
		}(uint64(w))
	}
	wg.Wait()
	elapsed := time.Since(start)
	select {
	case err := <-errc:
		return 0, err
	default:
	}
	return float64(done.Load()) / elapsed.Seconds(), nil
}
