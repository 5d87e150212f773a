package consumers

import (
	"context"
	"crypto/sha256"
	"fmt"
	"time"

	"github.com/jackc/pgx/v5"
)

// Key order (Config.KeyOrder): eventline_consumer_chain holds, per group,
// source topic, partition and key, the source offsets of the events that
// are in the retry chain and when each one's current retry copy is due. A
// later event of a key with a row there is deferred into the chain behind
// it; rows are written and deleted in the apply transactions, so the chain
// and the dedupe rows always agree.
//
// A deferred event's copy is due just after its predecessors' copies
// (deferGap after the latest of them), not a whole retry delay after it was
// deferred: the key's events then leave the chain right behind the event
// that failed. With a retry delay of its own, every event that arrived
// while the key was in the chain would hold the key there for another
// delay, and a busy key would never leave the chain.

// deferGap: a deferred copy is due this long after its predecessors', so
// they are normally applied first; if not, it is deferred one step more.
const deferGap = 100 * time.Millisecond

// chainState is the part of eventline_consumer_chain that concerns one
// batch: the entries in the chain per (partition, key).
type chainState map[chainKey][]link

type chainKey struct {
	partition int32
	key       string
}

// link is one chain entry: a source offset and when its copy is due (zero:
// unknown, a row from before due times were kept).
type link struct {
	offset int64
	due    time.Time
}

// check: blocked, an earlier event of it's key is in the chain; own, it
// is; after, when the latest of the earlier ones is due (zero if one of
// them has no due time).
func (c chainState) check(it item) (blocked, own bool, after time.Time) {
	o := it.env.origin
	unknown := false
	for _, l := range c[chainKey{o.partition, string(chainKeyOf(it.rec.Key))}] {
		if l.offset < o.offset {
			blocked = true
			if l.due.IsZero() {
				unknown = true
			} else if l.due.After(after) {
				after = l.due
			}
		}
		if l.offset == o.offset {
			own = true
		}
	}
	if unknown {
		after = time.Time{}
	}
	return blocked, own, after
}

// set adds it to the chain, or updates its due time.
func (c chainState) set(it item, due time.Time) {
	o := it.env.origin
	k := chainKey{o.partition, string(chainKeyOf(it.rec.Key))}
	for i, l := range c[k] {
		if l.offset == o.offset {
			c[k][i].due = due
			return
		}
	}
	c[k] = append(c[k], link{o.offset, due})
}

func (c chainState) remove(it item) {
	o := it.env.origin
	k := chainKey{o.partition, string(chainKeyOf(it.rec.Key))}
	links := c[k]
	for i, l := range links {
		if l.offset == o.offset {
			c[k] = append(links[:i], links[i+1:]...)
			return
		}
	}
}

// step is where a batch is in the retry chain: last, a retriable failure
// goes to the DLT; next, the delay of the step a failure goes to (0 when
// the caller forwards failures itself, ApplyBatch).
type step struct {
	last bool
	next time.Duration
}

// failDue is when the retry copy of an event failing now is due.
func (s step) failDue(now time.Time) time.Time {
	if s.next <= 0 {
		return time.Time{}
	}
	return now.Add(s.next)
}

// deferDue is for an event deferred now behind predecessors due at after:
// copy, when its copy is due (deferGap after them, or a retry delay from
// now when their due time is unknown); row, the due time its chain row
// keeps, its predecessors' (so that the key's next followers share it
// instead of adding a gap each).
func (s step) deferDue(now, after time.Time) (row, copy time.Time) {
	if after.IsZero() {
		d := s.failDue(now)
		return d, d
	}
	if after.Before(now) {
		after = now
	}
	return after, after.Add(deferGap)
}

// maxRawChainKey: record keys up to this long are stored as they are in
// the chain's key column; longer ones as their SHA-256 (32 bytes, so never
// equal to a stored raw key of another length but 32, and equal to one of
// those only by a SHA-256 preimage). A btree entry must fit a third of a
// page: a 4,000-byte key made every insert fail, and its batch retry
// forever.
const maxRawChainKey = 64

func chainKeyOf(key []byte) []byte {
	if len(key) <= maxRawChainKey {
		return key
	}
	sum := sha256.Sum256(key)
	return sum[:]
}

// entry is a chain row to write: it, due at due.
type entry struct {
	it  item
	due time.Time
}

// loadChain reads the chain rows for the batch's keys (all records of a
// batch come from one source topic).
func (a *applier) loadChain(ctx context.Context, tx pgx.Tx, items []item) (chainState, error) {
	state := chainState{}
	if !a.keyOrder || len(items) == 0 {
		return state, nil
	}
	keys := make([][]byte, 0, len(items))
	for _, it := range items {
		keys = append(keys, chainKeyOf(it.rec.Key))
	}
	rows, err := tx.Query(ctx, `SELECT partition, key, source_offset, due_at FROM `+a.chain+` WHERE group_id = $1 AND topic = $2 AND key = ANY($3::bytea[])`,
		a.group, items[0].env.origin.topic, keys)
	if err != nil {
		return nil, fmt.Errorf("error reading the retry chain: %w", err)
	}
	defer rows.Close()
	for rows.Next() {
		var p int32
		var key []byte
		var off int64
		var due *time.Time
		if err := rows.Scan(&p, &key, &off, &due); err != nil {
			return nil, fmt.Errorf("error reading the retry chain: %w", err)
		}
		k := chainKey{p, string(key)}
		l := link{offset: off}
		if due != nil {
			l.due = *due
		}
		state[k] = append(state[k], l)
	}
	return state, rows.Err()
}

// enterChain writes entries into the chain, or updates the due time of
// those already in it.
func (a *applier) enterChain(ctx context.Context, tx pgx.Tx, entries []entry) error {
	if len(entries) == 0 {
		return nil
	}
	// One row per origin: a batch may hold two copies of one event (a
	// copy forwarded again after a crash), and an upsert may not touch a
	// row twice.
	last := make(map[origin]int, len(entries))
	for i, e := range entries {
		last[e.it.env.origin] = i
	}
	var items []item
	var dues []*time.Time
	for i, e := range entries {
		if last[e.it.env.origin] != i {
			continue
		}
		items = append(items, e.it)
		if e.due.IsZero() {
			dues = append(dues, nil)
		} else {
			dues = append(dues, &e.due)
		}
	}
	parts, keys, offs := chainColumns(items)
	_, err := tx.Exec(ctx, `INSERT INTO `+a.chain+` (group_id, topic, partition, key, source_offset, due_at)
		SELECT $1, $2, p, k, o, d FROM unnest($3::int[], $4::bytea[], $5::bigint[], $6::timestamptz[]) AS t(p, k, o, d)
		ON CONFLICT (group_id, topic, key, partition, source_offset) DO UPDATE SET due_at = EXCLUDED.due_at`,
		a.group, items[0].env.origin.topic, parts, keys, offs, dues)
	if err != nil {
		return fmt.Errorf("error entering the retry chain: %w", err)
	}
	return nil
}

func (a *applier) leaveChain(ctx context.Context, tx pgx.Tx, items []item) error {
	if len(items) == 0 {
		return nil
	}
	parts, keys, offs := chainColumns(items)
	_, err := tx.Exec(ctx, `DELETE FROM `+a.chain+` c USING unnest($3::int[], $4::bytea[], $5::bigint[]) AS t(p, k, o)
		WHERE c.group_id = $1 AND c.topic = $2 AND c.key = t.k AND c.partition = t.p AND c.source_offset = t.o`,
		a.group, items[0].env.origin.topic, parts, keys, offs)
	if err != nil {
		return fmt.Errorf("error leaving the retry chain: %w", err)
	}
	return nil
}

func chainColumns(items []item) (parts []int32, keys [][]byte, offs []int64) {
	for _, it := range items {
		o := it.env.origin
		parts, keys, offs = append(parts, o.partition), append(keys, chainKeyOf(it.rec.Key)), append(offs, o.offset)
	}
	return parts, keys, offs
}
