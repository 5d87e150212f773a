package consumers

import (
	"context"
	"fmt"

	"github.com/jackc/pgx/v5"
)

// Key order (Config.KeyOrder): eventline_consumer_chain holds, per group,
// source topic, partition and key, the source offsets of the events that
// are in the retry chain. A later event of a key with a row there is
// deferred into the chain behind it; rows are written and deleted in the
// apply transactions, so the chain and the dedupe rows always agree.

// chainState is the part of eventline_consumer_chain that concerns one
// batch: source offsets in the chain per (partition, key).
type chainState map[chainKey][]int64

type chainKey struct {
	partition int32
	key       string
}

// blocked: an earlier event of it's key is in the chain. own: it is.
func (c chainState) check(it item) (blocked, own bool) {
	o := it.env.origin
	for _, off := range c[chainKey{o.partition, string(it.rec.Key)}] {
		if off < o.offset {
			blocked = true
		}
		if off == o.offset {
			own = true
		}
	}
	return blocked, own
}

func (c chainState) add(it item) {
	o := it.env.origin
	k := chainKey{o.partition, string(it.rec.Key)}
	c[k] = append(c[k], o.offset)
}

func (c chainState) remove(it item) {
	o := it.env.origin
	k := chainKey{o.partition, string(it.rec.Key)}
	offs := c[k]
	for i, off := range offs {
		if off == o.offset {
			c[k] = append(offs[:i], offs[i+1:]...)
			return
		}
	}
}

// loadChain reads the chain rows for the batch's keys (all records of a
// batch come from one source topic).
func (a *Applier) loadChain(ctx context.Context, tx pgx.Tx, items []item) (chainState, error) {
	state := chainState{}
	if !a.keyOrder || len(items) == 0 {
		return state, nil
	}
	keys := make([][]byte, 0, len(items))
	for _, it := range items {
		keys = append(keys, it.rec.Key)
	}
	rows, err := tx.Query(ctx, `SELECT partition, key, source_offset FROM `+a.chain+` WHERE group_id = $1 AND topic = $2 AND key = ANY($3::bytea[])`,
		a.group, items[0].env.origin.topic, keys)
	if err != nil {
		return nil, fmt.Errorf("error reading the retry chain: %w", err)
	}
	defer rows.Close()
	for rows.Next() {
		var p int32
		var key []byte
		var off int64
		if err := rows.Scan(&p, &key, &off); err != nil {
			return nil, fmt.Errorf("error reading the retry chain: %w", err)
		}
		k := chainKey{p, string(key)}
		state[k] = append(state[k], off)
	}
	return state, rows.Err()
}

func (a *Applier) enterChain(ctx context.Context, tx pgx.Tx, items []item) error {
	if len(items) == 0 {
		return nil
	}
	parts, keys, offs := chainColumns(items)
	_, err := tx.Exec(ctx, `INSERT INTO `+a.chain+` (group_id, topic, partition, key, source_offset)
		SELECT $1, $2, p, k, o FROM unnest($3::int[], $4::bytea[], $5::bigint[]) AS t(p, k, o) ON CONFLICT DO NOTHING`,
		a.group, items[0].env.origin.topic, parts, keys, offs)
	if err != nil {
		return fmt.Errorf("error entering the retry chain: %w", err)
	}
	return nil
}

func (a *Applier) leaveChain(ctx context.Context, tx pgx.Tx, items []item) error {
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
		parts, keys, offs = append(parts, o.partition), append(keys, it.rec.Key), append(offs, o.offset)
	}
	return parts, keys, offs
}
