package relay

// Where a poll-mode read starts: above a floor of ids that can never again
// appear in the outbox, instead of at its lowest id. Rows are deleted once
// published, and until vacuum runs their index entries stay: after a large
// backlog every read from the lowest id walks thousands of index pages of
// deleted rows before it reaches a live one.
//
// A floor is only safe once no transaction that could still commit a row
// below it is running: a row committing late below ids already read must
// be published before its aggregate's next event, which has a higher id
// (TestLateCommitPrecedesItsAggregatesNextEvent). A timer cannot tell;
// snapshots can, because the outbox's id default takes the transaction's
// xid before the id (migration 007):
//
//  1. The relay has read rows up to id mark. Every id below mark was taken
//     before mark was, so by a transaction whose xid was assigned before
//     the read. The relay then assigns an xid of its own (a statement of
//     its own, committed at once): every such transaction's xid is below
//     it.
//  2. Later, a snapshot whose xmin is above that xid shows every one of
//     those transactions finished, committed or rolled back.
//  3. A read begun after that snapshot, starting at the floor, sees every
//     committed row up to mark (up to its last row when a full batch cut
//     it short). Once it returns, the floor moves up to there.
//
// The floor is dropped, and reads start from the lowest id again, when the
// relay becomes leader, when a drain fails, when it parks a row (Requeue
// puts a parked row back under its old id), and while the parked table
// holds any row. Every PollInterval one read starts from the lowest id
// whatever the floor (a row written with an explicit id is still found).
// A database whose id column lacks the default (migration 007 not
// applied) never gets a floor. The relay spends one xid per checkpoint, at
// most one per two floorCheckEvery, only while rows flow.

import (
	"context"
	"fmt"
	"sync"
	"time"
)

// floorCheckEvery is the least time between two checks of the snapshot:
// the floor trails the reads by two or three of these.
const floorCheckEvery = 50 * time.Millisecond

type idFloor struct {
	mu     sync.Mutex
	usable bool          // the id default takes the xid first
	every  time.Duration // a read starts from the lowest id this often (Config.PollInterval)
	since  time.Time     // the last read from the lowest id
	gen    uint64        // bumped when dropped: a read begun before does not move it

	at   int64 // reads start above it; 0 is from the lowest id
	hi   int64 // the highest id read since the floor was dropped
	mark int64 // a checkpoint (0: none): every id ≤ mark was taken
	xid  int64 // by a transaction with an xid below this
	// clear: a snapshot with xmin above xid was taken, so every read begun
	// since sees all of mark's transactions finished.
	clear   bool
	checked time.Time
}

// floorRead is what a read remembers of the floor when it begins.
type floorRead struct {
	gen   uint64
	from  int64
	clear int64 // the mark that was clear when the read began (0: none)
}

// lead starts a leadership: nothing read yet.
func (f *idFloor) lead(usable bool, every time.Duration) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.usable, f.every = usable, every
	f.dropLocked(time.Now())
}

// drop makes the next reads start from the lowest id.
func (f *idFloor) drop() {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.dropLocked(time.Now())
}

func (f *idFloor) dropLocked(now time.Time) {
	f.gen++
	f.since = now
	f.at, f.hi, f.mark, f.xid, f.clear = 0, 0, 0, 0, false
}

// begin is called before a read's query: where it starts.
func (f *idFloor) begin(now time.Time) floorRead {
	f.mu.Lock()
	defer f.mu.Unlock()
	r := floorRead{gen: f.gen, from: f.at}
	if now.Sub(f.since) >= f.every {
		// One read from the lowest id, the floor kept: dropping it would
		// send every read until it rose again (a few checks) down the
		// deleted rows' index entries.
		r.from = 0
	}
	if r.from == 0 {
		f.since = now
	}
	if f.clear {
		r.clear = f.mark
	}
	return r
}

// done is called with a read's last id (0 when it returned nothing) and
// whether a full batch cut it short; it returns the floor.
func (f *idFloor) done(r floorRead, last int64, cut bool) int64 {
	f.mu.Lock()
	defer f.mu.Unlock()
	if r.gen != f.gen {
		return f.at
	}
	f.hi = max(f.hi, last)
	if r.clear > 0 {
		reach := r.clear
		if cut {
			reach = min(reach, last)
		}
		f.at = max(f.at, reach)
		if f.at >= f.mark {
			f.mark, f.xid, f.clear = 0, 0, false
		}
	}
	return f.at
}

// checkFloor runs the snapshot check when one is due: it clears the
// pending checkpoint if the snapshot's xmin is above its xid, takes a new
// checkpoint when none is pending, and drops the floor while the parked
// table holds rows.
func (r *Relay) checkFloor(ctx context.Context) error {
	f := &r.floor
	now := time.Now()
	f.mu.Lock()
	due := f.usable && f.hi > f.at && now.Sub(f.checked) >= floorCheckEvery
	need, hi, gen := f.mark == 0, f.hi, f.gen
	f.mu.Unlock()
	if !due {
		return nil
	}
	// pg_current_xact_id assigns this statement an xid, only when a new
	// checkpoint needs one. Committing it writes a commit record and no
	// other WAL, which PostgreSQL does not flush.
	var xmin int64
	var xid *int64
	var parked bool
	if err := r.pool.QueryRow(ctx, `SELECT pg_snapshot_xmin(pg_current_snapshot())::text::bigint,
		CASE WHEN $1 THEN pg_current_xact_id()::text::bigint END,
		EXISTS (SELECT 1 FROM `+r.park+`)`, need).Scan(&xmin, &xid, &parked); err != nil {
		return fmt.Errorf("checking the outbox's floor: %w", err)
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.gen != gen {
		return nil
	}
	f.checked = now
	if parked {
		f.dropLocked(f.since) // Requeue may put a row back below any floor
		return nil
	}
	if f.mark > 0 && !f.clear && xmin > f.xid {
		f.clear = true
	}
	if need && xid != nil {
		f.mark, f.xid, f.clear = hi, *xid, false
	}
	return nil
}

// floorUsable reports whether the outbox's id default takes the inserting
// transaction's xid before the id (migration 007).
func (r *Relay) floorUsable(ctx context.Context) (bool, error) {
	var ok bool
	err := r.pool.QueryRow(ctx, `SELECT coalesce(bool_or(regexp_replace(pg_get_expr(d.adbin, d.adrelid), '\s+', ' ', 'g')
			LIKE '%CASE WHEN (pg_current_xact_id() IS NOT NULL) THEN nextval(%'), false)
		FROM pg_attribute a JOIN pg_attrdef d ON d.adrelid = a.attrelid AND d.adnum = a.attnum
		WHERE a.attrelid = $1::regclass AND a.attname = 'id'`, r.table).Scan(&ok)
	if err != nil {
		return false, fmt.Errorf("reading the outbox's id default: %w", err)
	}
	return ok, nil
}

// current is the floor (tests).
func (f *idFloor) current() int64 {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.at
}
