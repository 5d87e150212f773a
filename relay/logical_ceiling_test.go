package relay_test

import (
	"context"
	"testing"

	"github.com/google/uuid"

	"github.com/eventline/eventline/internal/hook"
	"github.com/eventline/eventline/internal/testkit"
	"github.com/eventline/eventline/migrate"
	"github.com/eventline/eventline/relay"
)

// hook.RelayDecode reads the slot's events with the relay's own path,
// publishes none, and confirms what it read: a second call sees only what
// was appended after the first.
func TestDecodeHook(t *testing.T) {
	t.Parallel()
	b := setupLogical(t)
	aggs := []string{uuid.NewString(), uuid.NewString()}
	b.appendTickets(aggs, 3)
	var slot string
	if err := b.db.QueryRow(context.Background(), `SELECT slot_name FROM pg_replication_slots WHERE database = current_database()`).Scan(&slot); err != nil {
		t.Fatal(err)
	}
	r, err := relay.New(relay.Config{Mode: relay.ModeLogical, DatabaseURL: b.dbURL, Brokers: b.brokers, Pipeline: b.pipe(), Logger: testkit.Logger(t)})
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	ctx := context.Background()
	before, _ := b.slot()
	if n, err := hook.RelayDecode(ctx, r, slot, 6); err != nil || n != 6 {
		t.Fatalf("decoded %d of 6: %v", n, err)
	}
	// The server applies the final status update as the session ends.
	waitFor(t, func() bool { _, active := b.slot(); return !active })
	if after, _ := b.slot(); after <= before {
		t.Errorf("confirmed position did not move: %s, then %s", before, after)
	}
	if p := r.Stats().Published; p != 0 {
		t.Errorf("published %d events", p)
	}
	// All six transactions were confirmed, the last one too: the slot has
	// no message left (peeked: not consumed).
	l, err := migrate.LogicalNames(ctx, b.db, migrate.LogicalOptions{Slot: slot})
	if err != nil {
		t.Fatal(err)
	}
	var left int
	if err := b.db.QueryRow(ctx, `SELECT count(*) FROM pg_logical_slot_peek_binary_changes($1, NULL, NULL, 'proto_version', '1', 'publication_names', $2, 'messages', 'true')
		WHERE get_byte(data, 0) = ascii('M')`, slot, l.Publication).Scan(&left); err != nil {
		t.Fatal(err)
	}
	if left != 0 {
		t.Errorf("%d messages left in the slot after decoding them all", left)
	}
	b.appendVersion(aggs[0], 4)
	if n, err := hook.RelayDecode(ctx, r, slot, 1); err != nil || n != 1 {
		t.Fatalf("second call decoded %d of 1: %v", n, err)
	}
	cctx, cancel := context.WithCancel(ctx)
	cancel()
	if _, err := hook.RelayDecode(cctx, r, slot, 1); err == nil {
		t.Error("a cancelled context decoded an event that was never written")
	}
}
