package relay

import (
	"context"
	"encoding/binary"
	"math/rand/v2"
	"testing"
	"time"

	"github.com/jackc/pglogrepl"
)

// The confirmer never confirms past the end of a transaction with an event
// Kafka has not acknowledged (or still open), whatever order the acks come
// in, and confirms everything once all are acknowledged.
func TestConfirmerNeverPassesUnackedEvents(t *testing.T) {
	for seed := range uint64(300) {
		rng := rand.New(rand.NewPCG(seed, 1))
		c := newConfirmer(100)
		type ev struct{ t *txn }
		var pending []ev     // produced, not acked
		var unsettled []*txn // committed or open with pending > 0, or open
		lsn := pglogrepl.LSN(100)
		var open *txn
		var lastEnd pglogrepl.LSN
		check := func(step string) {
			confirmed, _, _, _ := c.state()
			for _, x := range unsettled {
				if x.committed && x.pending > 0 && confirmed >= x.end {
					t.Fatalf("seed %d, %s: confirmed %s at or past the end %s of a transaction with %d unacked events", seed, step, confirmed, x.end, x.pending)
				}
			}
			if open != nil && confirmed > lsn {
				t.Fatalf("seed %d, %s: confirmed %s past the open transaction's WAL %s", seed, step, confirmed, lsn)
			}
		}
		for range 400 {
			switch op := rng.IntN(6); {
			case op == 0 && open == nil:
				open = c.begin(time.Now())
				unsettled = append(unsettled, open)
			case op == 1 && open != nil:
				c.add(open, 10)
				lsn += pglogrepl.LSN(1 + rng.IntN(100))
				pending = append(pending, ev{t: open})
			case op == 2 && open != nil:
				lsn += pglogrepl.LSN(1 + rng.IntN(100))
				c.commit(open, lsn)
				lastEnd = lsn
				open = nil
			case op == 3 && len(pending) > 0:
				i := rng.IntN(len(pending))
				e := pending[i]
				pending = append(pending[:i], pending[i+1:]...)
				c.ack(e.t, 10)
			case op == 4:
				// A keepalive: WAL written by others moves the server's end.
				lsn += pglogrepl.LSN(rng.IntN(50))
				if open == nil {
					c.idle(lsn)
				}
			}
			check("step")
		}
		if open != nil {
			lsn += 10
			c.commit(open, lsn)
			lastEnd = lsn
			open = nil
		}
		for _, e := range pending {
			c.ack(e.t, 10)
		}
		confirmed, inflight, bytes, oldest := c.state()
		if inflight != 0 || bytes != 0 || !oldest.IsZero() || (lastEnd > 0 && confirmed < lastEnd) {
			t.Fatalf("seed %d: all acked, yet confirmed %s (last end %s), inflight %d, bytes %d, oldest %v", seed, confirmed, lastEnd, inflight, bytes, oldest)
		}
	}
}

// The relay's own heartbeat, decoded outside any transaction, confirms its
// position as a keepalive does: a walsender kept busy by other databases'
// WAL sends no keepalive (it sends them while waiting for WAL, or after
// wal_sender_timeout/2 without a reply), and an idle outbox's slot would
// hold that WAL. With a transaction unacknowledged it confirms nothing.
func TestHeartbeatConfirmsAnIdleStream(t *testing.T) {
	s := &stream{slot: "s", c: newConfirmer(100), prefix: "eventline", hb: "eventline-heartbeat"}
	heartbeat := func(at pglogrepl.LSN) {
		t.Helper()
		msg := []byte{'M', 0}
		msg = binary.BigEndian.AppendUint64(msg, uint64(at))
		msg = append(append(msg, s.hb...), 0)
		msg = binary.BigEndian.AppendUint32(msg, 1)
		msg = append(msg, '1')
		data := []byte{pglogrepl.XLogDataByteID}
		data = binary.BigEndian.AppendUint64(data, uint64(at)) // WAL start
		data = binary.BigEndian.AppendUint64(data, uint64(at)) // server WAL end
		data = binary.BigEndian.AppendUint64(data, 0)          // server time
		if err := s.copyData(context.Background(), append(data, msg...)); err != nil {
			t.Fatal(err)
		}
	}
	heartbeat(500)
	if confirmed, _, _, _ := s.c.state(); confirmed != 500 {
		t.Fatalf("confirmed %s after a heartbeat at 0/1F4 on an idle stream", confirmed)
	}
	x := s.c.begin(time.Now())
	s.c.add(x, 10)
	s.c.commit(x, 600)
	heartbeat(700)
	if confirmed, _, _, _ := s.c.state(); confirmed != 500 {
		t.Fatalf("confirmed %s past a transaction with an event unacknowledged", confirmed)
	}
	s.c.ack(x, 10)
	heartbeat(800)
	if confirmed, _, _, _ := s.c.state(); confirmed != 800 {
		t.Fatalf("confirmed %s after everything was acknowledged and a heartbeat at 0/320", confirmed)
	}
}
