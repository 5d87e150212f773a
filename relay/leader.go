package relay

// Leadership: one relay per outbox holds a session-level advisory lock on a
// dedicated connection; the leader's session checks the outbox, then hands
// over to the mode's source (source.go) until it ends; standbys retry the
// lock.

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"sync/atomic"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"

	"github.com/eventline/eventline/internal/dsn"
)

func (r *Relay) connect(ctx context.Context) (*pgx.Conn, error) {
	var conn *pgx.Conn
	err := r.retry(ctx, "connecting to postgres at "+dsn.Redact(r.cfg.DatabaseURL), false, func(ctx context.Context) error {
		cctx, cancel := context.WithTimeout(ctx, 10*time.Second)
		defer cancel()
		c, err := pgx.Connect(cctx, r.cfg.DatabaseURL)
		if err != nil {
			return err
		}
		conn = c
		return nil
	})
	return conn, err
}

// session holds conn for one standby/leader period. It returns when the
// connection fails, a batch fails with an unrecoverable error, or ctx is
// done.
func (r *Relay) session(ctx context.Context, conn *pgx.Conn) error {
	log := r.cfg.Logger
	if err := r.checkOutbox(ctx, conn); err != nil {
		return err
	}
	for {
		var got bool
		if err := conn.QueryRow(ctx, `SELECT pg_try_advisory_lock(hashtextextended($1, 0))`, r.key).Scan(&got); err != nil {
			return fmt.Errorf("trying the leader lock: %w", err)
		}
		if got {
			break
		}
		if !r.sleep(ctx, r.cfg.StandbyRetry) {
			return nil
		}
	}
	r.leader.Store(true)
	log.Info("relay: leader", "schema", r.cfg.Schema)
	r.gaps.reset() // another relay may have led meanwhile: what this one read is stale

	// The lock connection is watched by one goroutine (a pgx.Conn is not
	// safe for concurrent use): a dead connection is lost leadership.
	lost := make(chan error, 1)
	var lostFlag atomic.Bool
	watchCtx, stopWatch := context.WithCancel(ctx)
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		err := r.watch(watchCtx, conn)
		lostFlag.Store(true)
		lost <- err
	}()
	defer func() { stopWatch(); wg.Wait() }()

	return r.source.lead(ctx, lost, &lostFlag)
}

// checkOutbox fails when the outbox cannot be drained however long the
// relay waits (unrecoverable): the tables are missing, or the role may not
// read, delete (or mark) and park rows. The statements touch no row (WHERE
// false) and are rolled back, yet PostgreSQL checks existence and privileges
// as for real ones.
func (r *Relay) checkOutbox(ctx context.Context, conn *pgx.Conn) error {
	tx, err := conn.Begin(ctx)
	if err != nil {
		return fmt.Errorf("checking the outbox: %w", err)
	}
	defer func() { _ = tx.Rollback(context.WithoutCancel(ctx)) }()
	stmts := []string{
		`SELECT id FROM ` + r.table + ` WHERE false`,
		`DELETE FROM ` + r.table + ` WHERE false`,
		`INSERT INTO ` + r.park + ` (id, topic, record_key, record_value, event_id, event_type, aggregate_type, aggregate_id, aggregate_version, headers, created_at, error)
			SELECT id, topic, record_key, record_value, event_id, event_type, aggregate_type, aggregate_id, aggregate_version, headers, created_at, '' FROM ` + r.table + ` WHERE false`,
	}
	if r.cfg.Retention > 0 {
		stmts = append(stmts, `UPDATE `+r.table+` SET published_at = clock_timestamp() WHERE false`)
	}
	for _, q := range stmts {
		if _, err := tx.Exec(ctx, q); err != nil {
			var pe *pgconn.PgError
			if errors.As(err, &pe) && pe.Code == "42P01" {
				return fmt.Errorf("checking the outbox: %s or %s does not exist (have the migrations run? eventline migrate): %w", r.table, r.park, err)
			}
			return fmt.Errorf("checking the outbox %s: %w", r.table, err)
		}
	}
	return nil
}

// watch blocks reading conn (nothing is expected: a read that fails says at
// once that the connection, and with it the leader lock, is gone) and pings
// it every StandbyRetry; it returns the error that ended the connection, or
// nil when ctx is done.
func (r *Relay) watch(ctx context.Context, conn *pgx.Conn) error {
	for {
		wctx, cancel := context.WithTimeout(ctx, r.cfg.StandbyRetry)
		_, err := conn.WaitForNotification(wctx)
		cancel()
		if ctx.Err() != nil {
			return nil
		}
		if err == nil {
			continue // a notification from some other use of the channel: ignored
		}
		if !errors.Is(err, context.DeadlineExceeded) {
			return err
		}
		pctx, cancel := context.WithTimeout(ctx, r.cfg.StandbyRetry)
		err = conn.Ping(pctx)
		cancel()
		if err != nil && ctx.Err() == nil {
			return err
		}
	}
}
