package relay

// The outbox's SQL: rows read in id order, settled (deleted, marked or
// parked) in one statement once Kafka acknowledged them, the backlog.

import (
	"context"
	"fmt"
	"time"

	"github.com/eventline/eventline/internal/outboxmsg"
)

type outboxRow struct {
	id                        int64
	topic                     string
	key, value                []byte
	eventID                   [16]byte
	eventType, aggType, aggID string
	aggVersion                *int64
	headers                   []byte // JSON pairs, as the table stores them
	// hdrs, when not nil, are the headers already decoded (logical mode):
	// record skips the JSON.
	hdrs      []outboxmsg.Header
	createdAt time.Time
}

// read returns the next unpublished rows in id order, at most BatchSize of
// them and BatchBytes of keys and values (at least one row), skipping the
// rows of the batch still in flight (exclude). more says rows were left out
// for the byte budget, so a short batch does not mean a drained outbox.
//
// While events are small (the last batch's rows average under
// BatchBytes/BatchSize) the query is the plain LIMIT, and the budget is
// only checked as rows arrive. Otherwise the database cuts the batch
// itself with a running total of the stored lengths (octet_length does not
// read a TOASTed value), so rows beyond the budget never reach the relay;
// that costs the plain drain some 10 %, which small events do not pay.
//
// The read starts above the floor (floor.go): ids no transaction can still
// commit a row at, proven from snapshots, not assumed after a timeout (a
// row committing late below ids already read must still precede its
// aggregate's next event: TestLateCommitPrecedesItsAggregatesNextEvent).
// Without one it starts from the lowest id, and after a large backlog
// walks the index entries of the rows deleted since vacuum last ran.
func (r *Relay) read(ctx context.Context, exclude []int64) (batch []outboxRow, more bool, err error) {
	if err := r.checkFloor(ctx); err != nil {
		return nil, false, err
	}
	fr := r.floor.begin(time.Now())
	where := "WHERE id > $2 AND id <> ALL($3::bigint[]) " // hashed by PostgreSQL 15+
	if r.cfg.Retention > 0 {
		where += "AND published_at IS NULL "
	}
	if exclude == nil {
		exclude = []int64{}
	}
	const cols = `id, topic, record_key, record_value, event_id, event_type, aggregate_type, aggregate_id, aggregate_version, headers, created_at`
	avg := r.avgRow.Load()
	windowed := avg == 0 || avg*int64(r.cfg.BatchSize) > int64(r.cfg.BatchBytes)
	q := `SELECT ` + cols + ` FROM ` + r.table + ` ` + where + `ORDER BY id LIMIT $1`
	args := []any{r.cfg.BatchSize, fr.from, exclude}
	if windowed {
		q = `SELECT ` + cols + ` FROM (SELECT ` + cols + `, octet_length(record_key) + octet_length(record_value) AS size,
			sum(octet_length(record_key) + octet_length(record_value)) OVER (ORDER BY id) AS running
			FROM ` + r.table + ` ` + where + `ORDER BY id LIMIT $1) b
			WHERE running - size < $4 ORDER BY id`
		args = append(args, r.cfg.BatchBytes)
	}
	rows, err := r.pool.Query(ctx, q, args...)
	if err != nil {
		return nil, false, fmt.Errorf("reading the outbox: %w", err)
	}
	defer rows.Close()
	// Sized by the last read, not by BatchSize: a live outbox reads a few
	// rows every few ms, and 1,024 preallocated rows (a quarter MB) per
	// read were most of the relay's garbage at 1,000 events/s.
	batch = make([]outboxRow, 0, min(r.cfg.BatchSize, max(16, int(r.lastRead.Load()))))
	var bytes int64
	for rows.Next() {
		var o outboxRow
		if err := rows.Scan(&o.id, &o.topic, &o.key, &o.value, &o.eventID, &o.eventType, &o.aggType, &o.aggID, &o.aggVersion, &o.headers, &o.createdAt); err != nil {
			return nil, false, fmt.Errorf("reading the outbox: %w", err)
		}
		batch = append(batch, o)
		bytes += int64(len(o.key) + len(o.value))
		if bytes >= int64(r.cfg.BatchBytes) {
			more = true
			break // plain query: the rest is read and dropped by Close, not kept
		}
	}
	if err := rows.Err(); err != nil {
		return nil, false, fmt.Errorf("reading the outbox: %w", err)
	}
	if len(batch) > 0 {
		r.avgRow.Store(max(bytes/int64(len(batch)), 1))
	}
	r.lastRead.Store(int64(len(batch)))
	var last int64
	if len(batch) > 0 {
		last = batch[len(batch)-1].id
	}
	if at := r.floor.done(fr, last, more || len(batch) >= r.cfg.BatchSize); at > 0 {
		r.gaps.forget(at)
	}
	return batch, more, nil
}

// drainWithoutKafka empties the outbox with exactly the relay's queries and
// batch size but no Kafka: the SQL-only ceiling `eventline bench relay`
// compares the relay with. It returns the rows drained.
func (r *Relay) drainWithoutKafka(ctx context.Context) (int, error) {
	total := 0
	for {
		batch, _, err := r.read(ctx, nil)
		if err != nil {
			return total, err
		}
		if len(batch) == 0 {
			return total, nil
		}
		done := make([]int64, len(batch))
		for i := range batch {
			if _, err := r.policy.record(&batch[i]); err != nil { // the same per-row work
				return total, err
			}
			done[i] = batch[i].id
		}
		if err := r.settle(ctx, done, nil, nil); err != nil {
			return total, err
		}
		total += len(batch)
	}
}

// settle removes (or marks) the published rows and moves the parked ones,
// in one transaction.
func (r *Relay) settle(ctx context.Context, done, parkIDs []int64, parkErrs []string) error {
	if len(done) == 0 && len(parkIDs) == 0 {
		return nil
	}
	if len(parkIDs) > 0 {
		r.floor.drop() // Requeue may put these rows back under their ids
	}
	if len(parkIDs) == 0 && r.cfg.Retention <= 0 {
		// The common case is one statement: its own transaction, one round
		// trip instead of three (a drain runs every few ms while rows flow).
		if _, err := r.pool.Exec(ctx, `DELETE FROM `+r.table+` WHERE id = ANY($1)`, done); err != nil {
			return fmt.Errorf("deleting published rows: %w", err)
		}
		return nil
	}
	tx, err := r.pool.Begin(ctx)
	if err != nil {
		return fmt.Errorf("settling the batch: %w", err)
	}
	defer func() { _ = tx.Rollback(context.WithoutCancel(ctx)) }()
	if len(parkIDs) > 0 {
		if _, err := tx.Exec(ctx, `INSERT INTO `+r.park+` (id, topic, record_key, record_value, event_id, event_type, aggregate_type, aggregate_id, aggregate_version, headers, created_at, error)
			SELECT o.id, o.topic, o.record_key, o.record_value, o.event_id, o.event_type, o.aggregate_type, o.aggregate_id, o.aggregate_version, o.headers, o.created_at, e.err
			FROM `+r.table+` o JOIN unnest($1::bigint[], $2::text[]) AS e(id, err) ON o.id = e.id
			ON CONFLICT (id) DO UPDATE SET error = EXCLUDED.error, parked_at = clock_timestamp()`, parkIDs, parkErrs); err != nil {
			return fmt.Errorf("parking rows: %w", err)
		}
		done = append(done, parkIDs...)
	}
	if r.cfg.Retention > 0 && len(done) > len(parkIDs) {
		if _, err := tx.Exec(ctx, `UPDATE `+r.table+` SET published_at = clock_timestamp() WHERE id = ANY($1)`, done[:len(done)-len(parkIDs)]); err != nil {
			return fmt.Errorf("marking published rows: %w", err)
		}
		if len(parkIDs) > 0 {
			if _, err := tx.Exec(ctx, `DELETE FROM `+r.table+` WHERE id = ANY($1)`, parkIDs); err != nil {
				return fmt.Errorf("removing parked rows: %w", err)
			}
		}
	} else if _, err := tx.Exec(ctx, `DELETE FROM `+r.table+` WHERE id = ANY($1)`, done); err != nil {
		return fmt.Errorf("deleting published rows: %w", err)
	}
	if err := tx.Commit(ctx); err != nil {
		return fmt.Errorf("settling the batch: %w", err)
	}
	return nil
}

func (r *Relay) cleanup(ctx context.Context) error {
	_, err := r.pool.Exec(ctx, `DELETE FROM `+r.table+` WHERE published_at < clock_timestamp() - make_interval(secs => $1)`, r.cfg.Retention.Seconds())
	return err
}

// Backlog reports the unpublished rows and the age of the oldest one: the
// relay's lag behind committed business transactions.
func (r *Relay) Backlog(ctx context.Context) (rows int64, oldest time.Duration, err error) {
	where := ""
	if r.cfg.Retention > 0 {
		where = " WHERE published_at IS NULL"
	}
	var age *float64
	err = r.pool.QueryRow(ctx, `SELECT count(*), extract(epoch FROM clock_timestamp() - min(created_at))::float8 FROM `+r.table+where).Scan(&rows, &age)
	if err != nil {
		return 0, 0, fmt.Errorf("reading the backlog: %w", err)
	}
	if age != nil {
		oldest = time.Duration(*age * float64(time.Second))
	}
	return rows, oldest, nil
}
