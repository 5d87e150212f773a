package relay

// Logical mode: the leader streams the producers' logical decoding messages
// (producer.ModeLogical) from a replication slot with pgoutput, produces
// each event as it arrives, and tells PostgreSQL how far it may recycle WAL
// (the slot's confirmed_flush_lsn) only up to the end of the last
// transaction all of whose events, and those of every transaction before
// it, Kafka has acknowledged (confirmer). pgoutput sends committed
// transactions only, whole and in commit order, so per-aggregate order
// holds without the producers' advisory lock, and an open transaction holds
// back no other.
//
// A restart resumes at the slot's confirmed position: events acknowledged
// after the last status update are published again (duplicates, which
// consumers skip), never lost. jackc/pglogrepl speaks the replication
// protocol; what is written here is the bookkeeping no library does: which
// position is safe to confirm.

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"
	"unicode/utf8"

	"github.com/google/uuid"
	"github.com/jackc/pglogrepl"
	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgproto3"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/eventline/eventline/internal/dsn"
	"github.com/eventline/eventline/internal/outboxmsg"
	"github.com/eventline/eventline/migrate"
)

// txn is one decoded transaction that carried events (or any message).
type txn struct {
	end       pglogrepl.LSN // TransactionEndLSN, once committed
	commitAt  time.Time
	pending   int // events produced, not yet acknowledged (or parked)
	committed bool
}

// confirmer computes the position logical mode may confirm. Its methods are
// called by the stream loop (begin, add, commit, idle) and by the Kafka
// client's callbacks (ack).
type confirmer struct {
	mu        sync.Mutex
	txs       []*txn // committed or open, not yet confirmed, in commit order
	open      *txn   // between Begin and Commit
	confirmed pglogrepl.LSN
	inflight  int
	bytes     int64
	progress  time.Time     // the last ack, or when the first of the events in flight was produced
	wake      chan struct{} // an ack happened (cap 1)
}

func newConfirmer(from pglogrepl.LSN) *confirmer {
	return &confirmer{confirmed: from, wake: make(chan struct{}, 1)}
}

func (c *confirmer) begin(commitAt time.Time) *txn {
	c.mu.Lock()
	defer c.mu.Unlock()
	t := &txn{commitAt: commitAt}
	c.open = t
	c.txs = append(c.txs, t)
	return t
}

func (c *confirmer) add(t *txn, size int) {
	c.mu.Lock()
	if c.inflight == 0 {
		c.progress = time.Now()
	}
	t.pending++
	c.inflight++
	c.bytes += int64(size)
	c.mu.Unlock()
}

func (c *confirmer) ack(t *txn, size int) {
	c.ackAll(1, func(int) (*txn, int) { return t, size })
}

// ackAll acknowledges n events at once (one lock, one advance, one wake):
// event(i) is the i-th one's transaction and size.
func (c *confirmer) ackAll(n int, event func(i int) (*txn, int)) {
	c.mu.Lock()
	c.progress = time.Now()
	for i := range n {
		t, size := event(i)
		t.pending--
		c.inflight--
		c.bytes -= int64(size)
	}
	c.advance()
	c.mu.Unlock()
	select {
	case c.wake <- struct{}{}:
	default:
	}
}

// abandon takes an event out of the in-flight count without acknowledging
// it: its transaction stays pending, so nothing at or after it is
// confirmed.
func (c *confirmer) abandon(t *txn, size int) {
	c.mu.Lock()
	c.inflight--
	c.bytes -= int64(size)
	c.mu.Unlock()
	select {
	case c.wake <- struct{}{}:
	default:
	}
}

// commit closes the open transaction at end, its TransactionEndLSN: never
// its commit LSN, which PostgreSQL would decode again (it skips a
// transaction only when its commit record starts before the confirmed
// position).
func (c *confirmer) commit(t *txn, end pglogrepl.LSN) {
	c.mu.Lock()
	defer c.mu.Unlock()
	t.end, t.committed = end, true
	if c.open == t {
		c.open = nil
	}
	c.advance()
}

func (c *confirmer) advance() {
	i := 0
	for ; i < len(c.txs) && c.txs[i].committed && c.txs[i].pending == 0; i++ {
		if c.txs[i].end > c.confirmed {
			c.confirmed = c.txs[i].end
		}
	}
	if i > 0 {
		clear(c.txs[:i])
		c.txs = c.txs[i:]
	}
}

// idle moves the position to pos, a keepalive's WAL end, when nothing is
// pending: the server has decoded up to pos and every transaction before it
// was delivered. Between Begin and Commit, or with an event unacknowledged,
// it must not (#13 saw a keepalive's position arrive inside a transaction).
func (c *confirmer) idle(pos pglogrepl.LSN) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.open == nil && len(c.txs) == 0 && pos > c.confirmed {
		c.confirmed = pos
	}
}

// stalled reports how many events are in flight when none was
// acknowledged for longer than d.
func (c *confirmer) stalled(now time.Time, d time.Duration) int {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.inflight > 0 && now.Sub(c.progress) > d {
		return c.inflight
	}
	return 0
}

// state returns the confirmed position, the events in flight and their
// bytes, and the commit time of the oldest unconfirmed transaction (zero
// when none).
func (c *confirmer) state() (confirmed pglogrepl.LSN, inflight int, bytes int64, oldest time.Time) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if len(c.txs) > 0 {
		oldest = c.txs[0].commitAt
	}
	return c.confirmed, c.inflight, c.bytes, oldest
}

// failure is an event Kafka refused.
type failure struct {
	row outboxRow
	t   *txn
	err error
}

// stream is one leadership's logical session. The replication connection
// is used by this goroutine alone (pgconn is not safe for concurrent use);
// acks reach it through the confirmer.
type stream struct {
	r       *Relay
	slot    string
	conn    *pgconn.PgConn
	c       *confirmer
	prefix  string
	hb      string
	pctx    context.Context // produce context: outlives ctx by ShutdownTimeout
	mu      sync.Mutex
	failed  []failure
	written pglogrepl.LSN // end of the last WAL data received
	cur     *txn
	lastEv  time.Time // last event or heartbeat seen
	saved   pglogrepl.LSN
	save    chan pglogrepl.LSN // to the saver goroutine (nil: save synchronously)
	// decodeWithoutKafka: noKafka, when set, takes each event's record
	// instead of Kafka (acknowledged at once); run returns once done says
	// so, checked between messages.
	noKafka func(*kgo.Record)
	done    func() bool
	// Transactional output (logical_txn.go): the committer's queue, the
	// current transaction's commit record and count of events seen, and
	// what the last committed Kafka transaction already holds of it.
	ts       *txnSession
	tx       *txStream
	curFinal pglogrepl.LSN
	idx      int
	skip     streamPos
}

// streamLogical runs logical mode while this relay leads: setup, the
// leftover table rows, then the stream until ctx ends, leadership is lost
// (lost) or an error.
func (r *Relay) streamLogical(ctx context.Context, lost *atomic.Bool) error {
	// RecreateSlot is for the start of Run only: once this Run streamed, a
	// slot invalidated later ends it like any other (an operator decides
	// again to give up the events in between).
	recreate := r.cfg.RecreateSlot && !r.streamed.Load()
	l, err := migrate.SetupLogical(ctx, r.pool, migrate.LogicalOptions{Schema: r.cfg.Schema, Slot: r.cfg.Slot, RecreateSlot: recreate, AllowPublicEmit: r.cfg.AllowPublicEmit})
	if err != nil {
		return fmt.Errorf("logical mode: %w", err)
	}
	if l.LostFrom != "" {
		r.cfg.Logger.Error("relay: replication slot recreated; events committed between these positions were not delivered", "slot", l.Slot, "from", l.LostFrom, "to", l.LostTo)
	}
	r.slot.Store(&l.Slot)
	// A transactional leader fences earlier producers first, and learns
	// how far the stream is on Kafka.
	var ts *txnSession
	if r.cfg.Transactional {
		if ts, err = r.takeover(ctx); err != nil {
			return err
		}
		defer ts.close()
	}
	// Rows in the table (poll mode before, or a requeued parked row) go
	// first.
	if err := r.drainTable(ctx, lost, ts); err != nil {
		return err
	}
	conn, err := r.replicationConn(ctx)
	if err != nil {
		return err
	}
	defer conn.Close(context.Background())
	// The heartbeat is a message too: without it an idle stream's slot
	// holds back the WAL other writers make.
	canEmit, err := migrate.CanEmit(ctx, r.pool)
	if err != nil {
		return fmt.Errorf("logical mode: %w", err)
	}
	if !canEmit {
		return fmt.Errorf("logical mode: %w: the relay's role writes heartbeat messages; grant it (eventline migrate --mode logical --emitter-role <relay role>), see %s", migrate.ErrEmitNotGranted, migrate.EmitDoc)
	}
	pctx, release := r.produceContext(ctx)
	defer release()
	var from streamPos
	if ts != nil {
		from = ts.stream
	}
	s, err := r.openStream(ctx, pctx, conn, l, from)
	if err != nil {
		return err
	}
	s.ts = ts
	r.streamed.Store(true)
	r.confirmer.Store(s.c)
	defer r.confirmer.Store(nil)
	stopCommitter := func() {}
	if ts != nil {
		stopCommitter = s.startCommitter(ts)
	}
	err = s.run(ctx, lost)
	// Whatever ended the stream: wait (ShutdownTimeout at most) for the
	// acks of what was produced (or the commits of what was queued), then
	// report the final position, so a clean stop publishes nothing twice.
	if ferr := s.finish(); ferr != nil && err == nil && ctx.Err() == nil {
		err = ferr
	}
	// A committer still waiting on the broker gives up with the produce
	// context; the session's client is closed after it.
	release()
	stopCommitter()
	if err != nil && ctx.Err() == nil {
		return r.slotError(ctx, l.Slot, err)
	}
	return nil
}

// openStream starts streaming l.Slot on conn from the slot's confirmed
// position: the session of streamLogical, and of decodeWithoutKafka.
//
// from is a transactional leader's position on Kafka (zero otherwise): the
// stream starts at its Through at the earliest and skips what it holds of
// the transaction at its Tx.
func (r *Relay) openStream(ctx, pctx context.Context, conn *pgconn.PgConn, l migrate.Logical, from streamPos) (*stream, error) {
	// Start at the position the last leader saved, when it is past the
	// slot's: PostgreSQL writes a slot's confirmed position to disk only at
	// checkpoints, so after a crash (or, on 15, any restart) the slot is
	// behind what the relay had confirmed, and starting from it would
	// publish that stretch again. A later start point makes the server skip
	// the transactions that commit before it; an earlier one is ignored.
	var start pglogrepl.LSN
	var saved *string
	if err := r.pool.QueryRow(ctx, `SELECT confirmed_lsn::text FROM `+r.state+` WHERE slot = $1`, l.Slot).Scan(&saved); err == nil && saved != nil {
		start, _ = pglogrepl.ParseLSN(*saved)
	}
	start = max(start, from.Through)
	err := pglogrepl.StartReplication(ctx, conn, l.Slot, start, pglogrepl.StartReplicationOptions{
		Mode:       pglogrepl.LogicalReplication,
		PluginArgs: []string{"proto_version '1'", "publication_names '" + l.Publication + "'", "messages 'true'"},
	})
	if err != nil {
		return nil, r.slotError(ctx, l.Slot, fmt.Errorf("starting replication from slot %s: %w", l.Slot, err))
	}
	var confirmed pglogrepl.LSN
	var lsnText *string
	if err := r.pool.QueryRow(ctx, `SELECT confirmed_flush_lsn::text FROM pg_replication_slots WHERE slot_name = $1`, l.Slot).Scan(&lsnText); err == nil && lsnText != nil {
		confirmed, _ = pglogrepl.ParseLSN(*lsnText)
	}
	confirmed = max(confirmed, start)
	r.cfg.Logger.Info("relay: streaming", "slot", l.Slot, "from", confirmed.String())
	return &stream{
		r: r, slot: l.Slot, conn: conn, c: newConfirmer(confirmed), pctx: pctx,
		prefix: outboxmsg.Prefix(r.cfg.Schema), hb: outboxmsg.HeartbeatPrefix(r.cfg.Schema),
		lastEv: time.Now(), saved: confirmed, skip: from,
	}, nil
}

func (r *Relay) replicationConn(ctx context.Context) (*pgconn.PgConn, error) {
	cfg, err := pgconn.ParseConfig(r.cfg.DatabaseURL)
	if err != nil {
		return nil, fmt.Errorf("bad database URL %s: %w", dsn.Redact(r.cfg.DatabaseURL), err)
	}
	cfg.RuntimeParams["replication"] = "database"
	setApplicationName(cfg.RuntimeParams)
	cctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	conn, err := pgconn.ConnectConfig(cctx, cfg)
	if err != nil {
		var pe *pgconn.PgError
		if errors.As(err, &pe) && pe.Code == "42501" {
			return nil, fmt.Errorf("%w: the role may not open a replication connection (ALTER ROLE … REPLICATION): %w", migrate.ErrNoReplicationPrivilege, err)
		}
		return nil, fmt.Errorf("replication connection: %w", err)
	}
	return conn, nil
}

// slotError turns an error of the stream into ErrSlotInvalidated when the
// slot is what failed (the server invalidates an active slot by ending its
// walsender with 57P01, and refuses to start from an invalidated one with
// 55000: codes, not texts, which change between versions).
func (r *Relay) slotError(ctx context.Context, slot string, err error) error {
	var pe *pgconn.PgError
	if errors.As(err, &pe) && pe.Code == "55006" {
		return fmt.Errorf("replication slot %s is active in another process (another relay, or a leftover walsender ending): %w", slot, err)
	}
	var status *string
	qerr := r.pool.QueryRow(ctx, `SELECT wal_status FROM pg_replication_slots WHERE slot_name = $1`, slot).Scan(&status)
	switch {
	case qerr == nil && status != nil && *status == "lost":
		return fmt.Errorf("%w: slot %s (wal_status lost: it held more WAL than max_slot_wal_keep_size; undelivered events are gone from the WAL); see %s: %v", ErrSlotInvalidated, slot, migrate.RecoveryDoc, err)
	case errors.Is(qerr, pgx.ErrNoRows):
		return fmt.Errorf("%w: slot %s disappeared while streaming; see %s: %v", ErrSlotLost, slot, migrate.RecoveryDoc, err)
	}
	return err
}

func (s *stream) run(ctx context.Context, lost *atomic.Bool) error {
	r := s.r
	// A cancelled ctx interrupts a receive at once; the receive itself
	// runs without a context (a context per message would cost a
	// goroutine handoff each) and with a read deadline.
	stopRead := context.AfterFunc(ctx, func() { _ = s.conn.Conn().SetReadDeadline(time.Now()) })
	defer stopRead()
	// Backpressure: two batches' worth in flight keeps the client busy
	// (transactional: the transaction being committed and the next one,
	// queued meanwhile). Four held more memory for no more speed: bench
	// relay 1M logical on Kafka 4.4 drained 176k-231k events/s at four
	// (peak RSS 105-172 MiB), 199k-222k at two (77-127 MiB); transactional
	// 198-209 MiB at four, 117-123 at two.
	maxInflight := 2 * r.cfg.BatchSize
	maxBytes := 2 * int64(r.cfg.BatchBytes)
	nextStatus := time.Now().Add(r.cfg.StatusInterval)
	var warned time.Time
	// Saving the position and probing the table are database round trips:
	// in goroutines of their own, so no event waits behind them (under
	// load one took tens of ms, and the events that came meanwhile waited).
	stopSaver := s.startSaver()
	defer stopSaver()
	if s.noKafka == nil {
		stopProbe := s.startTableProbe(ctx, lost)
		defer stopProbe()
	}
	for {
		if ctx.Err() != nil {
			return nil
		}
		if lost.Load() {
			return ErrNotLeader
		}
		if s.done != nil && s.done() {
			return nil
		}
		if err := s.handleFailures(ctx); err != nil {
			return err
		}
		now := time.Now()
		if !now.Before(nextStatus) {
			if err := s.status(ctx, false); err != nil {
				return err
			}
			if now.Sub(s.lastEv) >= r.cfg.HeartbeatInterval {
				s.heartbeat(ctx)
			}
			nextStatus = now.Add(r.cfg.StatusInterval)
		}
		if n := s.c.stalled(now, r.slowAck); n > 0 && now.Sub(warned) > r.slowAck {
			// The client retries for ever (a missing topic too): say so,
			// or a stalled relay is silent.
			warned = now
			r.cfg.Logger.Warn("relay: events unacknowledged for a while; the client keeps retrying (is a topic missing, or a broker or partition leader down?)", "events", n)
		}
		if _, inflight, bytes, _ := s.c.state(); inflight >= maxInflight || bytes >= maxBytes {
			// Backpressure: Kafka is behind. Stop reading (the walsender
			// waits on TCP) but keep the status updates going.
			t := time.NewTimer(time.Until(nextStatus))
			select {
			case <-ctx.Done():
			case <-s.c.wake:
			case <-t.C:
			}
			t.Stop()
			continue
		}
		_ = s.conn.Conn().SetReadDeadline(nextStatus)
		msg, err := s.conn.ReceiveMessage(context.Background())
		if err != nil {
			if ctx.Err() != nil {
				return nil
			}
			if pgconn.Timeout(err) {
				continue
			}
			return fmt.Errorf("receiving from slot %s: %w", s.slot, err)
		}
		switch m := msg.(type) {
		case *pgproto3.CopyData:
			if err := s.copyData(ctx, m.Data); err != nil {
				return err
			}
		case *pgproto3.ErrorResponse:
			return fmt.Errorf("slot %s: %w", s.slot, pgconn.ErrorResponseToPgError(m))
		case *pgproto3.CopyDone:
			return fmt.Errorf("slot %s: the server ended the stream", s.slot)
		}
	}
}

func (s *stream) copyData(ctx context.Context, data []byte) error {
	if len(data) == 0 {
		return nil
	}
	switch data[0] {
	case pglogrepl.PrimaryKeepaliveMessageByteID:
		k, err := pglogrepl.ParsePrimaryKeepaliveMessage(data[1:])
		if err != nil {
			return fmt.Errorf("slot %s: keepalive: %w", s.slot, err)
		}
		if s.cur == nil {
			s.c.idle(k.ServerWALEnd)
		}
		if k.ReplyRequested {
			return s.status(ctx, false)
		}
	case pglogrepl.XLogDataByteID:
		x, err := pglogrepl.ParseXLogData(data[1:])
		if err != nil {
			return fmt.Errorf("slot %s: WAL data: %w", s.slot, err)
		}
		if end := x.WALStart + pglogrepl.LSN(len(x.WALData)); end > s.written {
			s.written = end
		}
		m, err := pglogrepl.Parse(x.WALData)
		if err != nil {
			return fmt.Errorf("slot %s: decoding: %w", s.slot, err)
		}
		switch m := m.(type) {
		case *pglogrepl.BeginMessage:
			s.cur = s.c.begin(m.CommitTime)
			s.curFinal, s.idx = m.FinalLSN, 0
		case *pglogrepl.CommitMessage:
			if s.cur != nil {
				if s.tx != nil && s.idx > 0 {
					s.tx.push(txItem{tx: s.curFinal, end: m.TransactionEndLSN})
				}
				s.c.commit(s.cur, m.TransactionEndLSN)
				s.cur = nil
			}
		case *pglogrepl.LogicalDecodingMessage:
			switch {
			case m.Prefix == s.hb:
				s.lastEv = time.Now()
				// The walsender decoded up to this heartbeat: like a
				// keepalive's position, it may be confirmed when nothing
				// is pending. A keepalive alone is not enough: the
				// walsender sends one when it waits for WAL (or after
				// wal_sender_timeout/2 without a reply, which the status
				// timer never lets pass), so while a busy cluster keeps
				// it decoding other databases' WAL an idle outbox's slot
				// stayed at its last commit, holding that WAL.
				if s.cur == nil && !m.Transactional {
					s.c.idle(m.LSN)
				}
			case m.Prefix != s.prefix || !m.Transactional || s.cur == nil:
				// Another application's message, or one written outside
				// a transaction (the producer never does): not an event.
			default:
				s.lastEv = time.Now()
				return s.event(ctx, m)
			}
		}
	}
	return nil
}

// event produces one decoded message; a message that is not an event this
// relay can read is parked at once (its id is minus its LSN).
func (s *stream) event(ctx context.Context, m *pglogrepl.LogicalDecodingMessage) error {
	r := s.r
	idx := s.idx
	s.idx++
	if s.skipped(idx) {
		return nil
	}
	row := outboxRow{id: -int64(m.LSN), createdAt: s.cur.commitAt}
	e, err := outboxmsg.Decode(m.Content)
	if err != nil {
		// Kept as it came (Requeue writes it again), unless larger than
		// any event can be: a writer's 200 MB message must not become a
		// 200 MB parked row.
		row.headers = []byte("[]")
		if len(m.Content) <= outboxmsg.MaxSize {
			row.value = m.Content
		} else {
			err = fmt.Errorf("%w (its content was not kept)", err)
		}
		return s.park(ctx, []failure{{row: row, err: err}})
	}
	row.topic, row.key, row.value, row.eventID = e.Topic, e.Key, e.Value, e.EventID
	row.eventType, row.aggType, row.aggID, row.aggVersion, row.hdrs = e.EventType, e.AggregateType, e.AggregateID, e.AggregateVersion, e.Headers
	if row.hdrs == nil {
		row.hdrs = []outboxmsg.Header{}
	}
	rec, err := r.publishable(s.pctx, &row)
	if err != nil {
		return s.park(ctx, []failure{{row: row, err: err}})
	}
	t, size := s.cur, len(row.key)+len(row.value)
	s.c.add(t, size)
	if s.noKafka != nil {
		s.noKafka(rec)
		s.c.ack(t, size)
		return nil
	}
	if s.tx != nil {
		s.queue(rec, row, size, idx)
		return nil
	}
	r.kafka.Produce(s.pctx, rec, func(_ *kgo.Record, err error) {
		if err == nil {
			r.published.Add(1)
			s.c.ack(t, size)
			return
		}
		s.mu.Lock()
		s.failed = append(s.failed, failure{row: row, t: t, err: err})
		s.mu.Unlock()
		select {
		case s.c.wake <- struct{}{}:
		default:
		}
	})
	return nil
}

// handleFailures parks the events Kafka refused for good and acknowledges
// them; any other failure ends the stream, which resumes from the confirmed
// position (the failed event is not confirmed, so it is read again).
func (s *stream) handleFailures(ctx context.Context) error {
	if s.tx != nil {
		return s.tx.failure()
	}
	s.mu.Lock()
	failed := s.failed
	s.failed = nil
	s.mu.Unlock()
	if len(failed) == 0 {
		return nil
	}
	var park []failure
	for _, f := range failed {
		if !parkable(f.err) {
			s.abandon(failed)
			return fmt.Errorf("producing: %w", f.err)
		}
		park = append(park, f)
	}
	if err := s.park(ctx, park); err != nil {
		s.abandon(failed)
		return err
	}
	for _, f := range park {
		s.c.ack(f.t, len(f.row.key)+len(f.row.value))
	}
	return nil
}

// abandon stops waiting for failed events without confirming them: the
// stream ends and the next one reads them again from the confirmed position.
func (s *stream) abandon(failed []failure) {
	for _, f := range failed {
		if f.t != nil {
			s.c.abandon(f.t, len(f.row.key)+len(f.row.value))
		}
	}
}

// park writes events to eventline_outbox_parked under minus their LSN.
func (s *stream) park(ctx context.Context, fs []failure) error {
	r := s.r
	for _, f := range fs {
		o := storable(f.row)
		_, err := r.pool.Exec(context.WithoutCancel(ctx), `INSERT INTO `+r.park+` (id, topic, record_key, record_value, event_id, event_type, aggregate_type, aggregate_id, aggregate_version, headers, created_at, error)
			VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10::jsonb, $11, $12)
			ON CONFLICT (id) DO UPDATE SET error = EXCLUDED.error, parked_at = clock_timestamp()`,
			o.id, o.topic, orEmpty(o.key), orEmpty(o.value), uuid.UUID(o.eventID), o.eventType, o.aggType, o.aggID, o.aggVersion, parkedHeaders(&o), o.createdAt, pgText(f.err.Error()))
		if err != nil {
			return fmt.Errorf("parking the event at %s: %w", pglogrepl.LSN(-o.id), err)
		}
		r.parked.Add(1)
		r.cfg.Logger.Error("relay: parked an event", "id", o.id, "lsn", pglogrepl.LSN(-o.id).String(), "err", f.err.Error())
	}
	return nil
}

// storable is o with text PostgreSQL accepts (pgText for the error too): a message's strings are
// whatever bytes its writer chose, and a NUL or invalid UTF-8 in a text or
// jsonb column would fail the parking, end the stream and read the same
// message again, for ever. Parked events only: what is published is passed
// on as written.
func storable(o outboxRow) outboxRow {
	o.topic, o.eventType, o.aggType, o.aggID = pgText(o.topic), pgText(o.eventType), pgText(o.aggType), pgText(o.aggID)
	if o.hdrs != nil {
		hs := make([]outboxmsg.Header, len(o.hdrs))
		for i, h := range o.hdrs {
			hs[i] = outboxmsg.Header{Key: pgText(h.Key), Value: pgText(h.Value)}
		}
		o.hdrs = hs
	}
	return o
}

func pgText(s string) string {
	if utf8.ValidString(s) && !strings.ContainsRune(s, 0) {
		return s
	}
	return strings.ReplaceAll(strings.ToValidUTF8(s, "\uFFFD"), "\x00", "\uFFFD")
}

func orEmpty(b []byte) []byte {
	if b == nil {
		return []byte{}
	}
	return b
}

// parkedHeaders is the row's headers as the parked table stores them.
func parkedHeaders(o *outboxRow) string {
	if o.hdrs != nil {
		return string(outboxmsg.HeadersJSON(o.hdrs))
	}
	if len(o.headers) == 0 || !json.Valid(o.headers) {
		return "[]"
	}
	return string(o.headers)
}

// status reports the position to the server: written = received, flushed
// and applied = confirmed (the slot advances from the flush position), and
// records it in eventline_relay_state when it moved.
func (s *stream) status(ctx context.Context, final bool) error {
	confirmed, _, _, _ := s.c.state()
	written := max(s.written, confirmed)
	sctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 5*time.Second)
	defer cancel()
	if err := pglogrepl.SendStandbyStatusUpdate(sctx, s.conn, pglogrepl.StandbyStatusUpdate{
		WALWritePosition: written, WALFlushPosition: confirmed, WALApplyPosition: confirmed, ClientTime: time.Now(),
	}); err != nil {
		return fmt.Errorf("status update to slot %s: %w", s.slot, err)
	}
	if confirmed != s.saved && s.noKafka == nil { // the ceiling's slot has no state row
		if s.save == nil { // the final update: written before the stream ends
			if s.saveState(sctx, confirmed) {
				s.saved = confirmed
			}
		} else {
			select {
			case s.save <- confirmed:
				s.saved = confirmed
			default: // the saver is still writing the last one: next time
			}
		}
	}
	return nil
}

// saveState records confirmed in eventline_relay_state. The saved position
// only moves forward: a deposed leader resuming from a pause must not write
// its older position over the new leader's (which would cost duplicates
// after a PostgreSQL crash; recreating the slot resets it).
func (s *stream) saveState(ctx context.Context, confirmed pglogrepl.LSN) bool {
	tag, err := s.r.pool.Exec(ctx, `UPDATE `+s.r.state+` SET confirmed_lsn = greatest(confirmed_lsn, $2::pg_lsn), confirmed_at = clock_timestamp() WHERE slot = $1`, s.slot, confirmed.String())
	if err != nil {
		if ctx.Err() == nil {
			s.r.cfg.Logger.Warn("relay: recording the confirmed position failed", "err", err)
		}
		return false
	}
	if tag.RowsAffected() == 0 {
		s.r.cfg.Logger.Warn("relay: the slot has no row in eventline_relay_state (run eventline migrate --mode logical)", "slot", s.slot)
		return false
	}
	return true
}

// startSaver writes the positions status hands it in a goroutine; stop
// waits for the last write, after which status writes synchronously.
func (s *stream) startSaver() (stop func()) {
	ch := make(chan pglogrepl.LSN, 1)
	done := make(chan struct{})
	go func() {
		defer close(done)
		for lsn := range ch {
			ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
			s.saveState(ctx, lsn)
			cancel()
		}
	}()
	s.save = ch
	return func() {
		s.save = nil
		close(ch)
		<-done
	}
}

// startTableProbe asks every PollInterval whether the outbox table has rows
// (poll mode's leftovers, requeued rows) and drains them, in a goroutine of
// its own: a drain waits for Kafka's acks (forever while the broker is
// down), and the stream loop must keep reporting its position meanwhile.
// stop ends the drain (ShutdownTimeout at most for its acks) and waits.
func (s *stream) startTableProbe(ctx context.Context, lost *atomic.Bool) (stop func()) {
	ctx, cancel := context.WithCancel(ctx)
	done := make(chan struct{})
	go func() {
		defer close(done)
		t := time.NewTicker(s.r.cfg.PollInterval)
		defer t.Stop()
		for {
			select {
			case <-ctx.Done():
				return
			case <-t.C:
			}
			found, err := s.tableHasRows(ctx)
			if err != nil && ctx.Err() == nil {
				s.r.cfg.Logger.Warn("relay: probing the outbox table failed", "err", err)
			}
			if !found {
				continue
			}
			err = s.r.drainTable(ctx, lost, s.ts)
			if errors.Is(err, errTxn) && s.tx != nil {
				// The session's client is done for: end the stream,
				// and the next takeover settles what Kafka holds.
				s.tx.fail(err)
				return
			}
			if err != nil && ctx.Err() == nil {
				s.r.cfg.Logger.Warn("relay: draining the outbox table failed; retrying", "err", err)
			}
		}
	}()
	return func() { cancel(); <-done }
}

// heartbeat writes a message outside any transaction: decoding it (or the
// keepalive after it) lets an idle stream confirm the WAL others wrote
// meanwhile.
func (s *stream) heartbeat(ctx context.Context) {
	hctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	if _, err := s.r.pool.Exec(hctx, `SELECT pg_logical_emit_message(false, $1, $2::text)`, s.hb, strconv.FormatInt(time.Now().UnixNano(), 10)); err != nil && ctx.Err() == nil {
		s.r.cfg.Logger.Warn("relay: heartbeat failed", "err", err)
	}
	s.lastEv = time.Now()
}

// tableHasRows says whether the outbox table has rows to publish.
func (s *stream) tableHasRows(ctx context.Context) (bool, error) {
	q := `SELECT EXISTS (SELECT 1 FROM ` + s.r.table + `)`
	if s.r.cfg.Retention > 0 {
		q = `SELECT EXISTS (SELECT 1 FROM ` + s.r.table + ` WHERE published_at IS NULL)`
	}
	var found bool
	err := s.r.pool.QueryRow(ctx, q).Scan(&found)
	return found, err
}

// finish waits for the acks of the events in flight (until the produce
// context ends), parks what Kafka refused for good, and sends the final
// status update and CopyDone.
func (s *stream) finish() error {
	// Bounded also when the stream ended for an error while ctx lives (a
	// lost leadership with the broker down): what is unacknowledged stays
	// unconfirmed and is read again by the next leader.
	limit := time.NewTimer(s.r.cfg.ShutdownTimeout)
	defer limit.Stop()
	var committerEnded <-chan struct{} // transactional: the committer stopped
	if s.tx != nil {
		close(s.tx.stop) // commit what is queued, then end
		committerEnded = s.tx.ended
	}
wait:
	for {
		_ = s.handleFailures(s.pctx)
		if _, inflight, _, _ := s.c.state(); inflight == 0 {
			break
		}
		select {
		case <-s.c.wake:
		case <-committerEnded:
			break wait
		case <-s.pctx.Done():
			break wait
		case <-limit.C:
			break wait
		}
	}
	// A receive that failed other than by its deadline (the server gone:
	// unexpected EOF) closed the connection, and pgconn's goroutine is
	// writing its Terminate on it: pglogrepl writes to the frontend
	// directly, so nothing more may be sent (a data race, seen under a
	// PostgreSQL crash restart).
	if s.conn.IsClosed() {
		return fmt.Errorf("slot %s: the replication connection is closed; the final position was not reported", s.slot)
	}
	_ = s.conn.Conn().SetReadDeadline(time.Time{})
	err := s.status(s.pctx, true)
	cctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	_, _ = pglogrepl.SendStandbyCopyDone(cctx, s.conn)
	return err
}
