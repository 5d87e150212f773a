package relay

import (
	"context"
	"fmt"
	"sync/atomic"

	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/eventline/eventline/migrate"
)

// decodeWithoutKafka streams slot with logical mode's own path (the same
// session start, receive loop, pgoutput parsing, outboxmsg.Decode, Kafka
// record building, confirmer and status updates) but hands no record to
// Kafka: the decode-only ceiling `eventline bench relay --mode logical`
// compares the relay with. It returns the events decoded once at least want
// were (want must be positive), at the end of the transaction of the
// want-th, after confirming that position to the slot.
//
// slot is a logical replication slot of the Relay's database with the
// pgoutput plugin, such as a second slot made beside the relay's
// (pg_create_logical_replication_slot) so both hold the same events; the
// schema's publication must exist (migrate.SetupLogical). It reads no
// table rows a relay would publish.
func (r *Relay) decodeWithoutKafka(ctx context.Context, slot string, want int) (int, error) {
	if want < 1 {
		return 0, fmt.Errorf("relay: decoding without Kafka wants a positive count, got %d", want)
	}
	l, err := migrate.LogicalNames(ctx, r.pool, migrate.LogicalOptions{Schema: r.cfg.Schema, Slot: slot})
	if err != nil {
		return 0, err
	}
	conn, err := r.replicationConn(ctx)
	if err != nil {
		return 0, err
	}
	defer conn.Close(context.Background())
	s, err := r.openStream(ctx, ctx, conn, l, streamPos{})
	if err != nil {
		return 0, err
	}
	// Both run in run's goroutine. The stream stops at the end of the
	// transaction of the want-th event, so its position is confirmed.
	n := 0
	s.noKafka = func(*kgo.Record) { n++ }
	s.done = func() bool { return n >= want && s.cur == nil }
	var lost atomic.Bool
	err = s.run(ctx, &lost)
	if ferr := s.finish(); err == nil && ctx.Err() == nil {
		err = ferr
	}
	if err == nil && n < want {
		err = fmt.Errorf("relay: decoded %d of %d events from slot %s: %w", n, want, slot, context.Cause(ctx))
	}
	return n, err
}
