package relay

import (
	"errors"
	"fmt"
	"log/slog"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"
	"go.opentelemetry.io/otel/trace"

	"github.com/eventline/eventline/migrate"
	"github.com/eventline/eventline/pipeline"
)

// DefaultBatchSize: `eventline bench relay` drains fastest around 10,000 on
// the project's 2-core machine (500: 42k events/s, 2,000: 63k, 10,000: 89k,
// 20,000: 94k for 300,000 events); a batch is held in memory twice at most.
const DefaultBatchSize = 10000

// DefaultBatchBytes: 16 MiB, ten thousand events of 1.6 KB; larger events
// make smaller batches (1,000 rows of 900 KB took the relay to 927 MB when
// only rows were counted).
const DefaultBatchBytes = 16 << 20

// Mode is where the relay reads events: the outbox's mode, shared with the
// producers (producer.Mode is the same type) and read from flags and
// EVENTLINE_MODE with migrate.ParseMode.
type Mode = migrate.Mode

const (
	// ModePoll drains the eventline_outbox table (producers in
	// producer.ModePoll): any PostgreSQL, no privilege beyond the tables.
	ModePoll = migrate.ModePoll
	// ModeLogical streams the producers' logical decoding messages
	// (producers in producer.ModeLogical) from a replication slot, in
	// commit order. It needs wal_level=logical and a role with
	// REPLICATION. It also drains rows found in the outbox table (left by
	// poll mode, or requeued), so a switch from poll mode loses nothing.
	ModeLogical = migrate.ModeLogical
)

// Config of a Relay. Zero values take the documented defaults.
type Config struct {
	// Mode is ModePoll (default) or ModeLogical; it must match the
	// producers' mode.
	Mode Mode
	// DatabaseURL of the outbox's database. Required. The relay opens a
	// pool for batches and probes, and one dedicated connection for the
	// leader lock.
	//
	// A URL rather than a caller's pool (a consumer Group takes a pool):
	// the leader lock lives in a session the relay must own for its
	// whole lifetime, and logical mode opens replication connections
	// (replication=database), which no pool hands out. The relay is
	// usually its own process, so a pool shared with business code would
	// buy nothing.
	DatabaseURL string
	// Brokers are the Kafka seed brokers. Required.
	Brokers []string
	// Schema is the PostgreSQL schema of the outbox. Default "public".
	Schema string
	// Pipeline is the parsed eventline.yaml. Required. Its topics are
	// created (or checked) at startup, and it is the relay's publishing
	// policy: an event is produced only to a pipeline topic that routes
	// its event type; any other event (an internal, retry, dead-letter,
	// unknown or empty topic, an unrouted type, a value not in Confluent
	// framing, a header reserved for eventline) is parked with the reason
	// and the relay moves on (ErrNotAllowed). A topic's cloudevents option
	// adds the CloudEvents binary-mode headers to its records.
	Pipeline *pipeline.Pipeline
	// BatchSize is the most rows read, produced and deleted at once.
	// Default DefaultBatchSize.
	BatchSize int
	// BatchBytes bounds the key and value bytes of one batch (a batch
	// holds at least one row, however large). With the batch in flight and
	// the producer's buffer (4 batches) it bounds the relay's memory for
	// events of any size. Default DefaultBatchBytes.
	BatchBytes int
	// ProbeInterval is the longest wait between two probes for new rows
	// while the outbox is idle: the relay probes every millisecond while
	// rows arrive and doubles the wait after each empty probe, up to
	// this. It bounds how long an event committed after a quiet spell
	// waits for the relay. Default 50ms.
	ProbeInterval time.Duration
	// Linger is how long the relay lets events gather before it sends
	// them, trading latency for work per event.
	//
	// Poll mode: the pause between drains while rows arrive, so that a
	// few commits share a drain's read, produce and delete. Longer saves
	// the writers' database work: bench append (8 writers, relay on the
	// same 2 cores) ran at 0.47-0.55 of business-only with 2ms, 0.51-0.56
	// with 10ms, 0.57-0.59 with 50ms. Default 2ms.
	//
	// Logical mode: how long the Kafka client holds a partition's batch
	// open for more events (franz-go's ProducerLinger). Each event is
	// handed over as soon as its commit is decoded; at a live 1,000
	// events/s over 6 partitions most batches are then one event, and
	// the produce requests, the broker's appends and the consumers'
	// fetches are per event. bench e2e --rate 1000 (embedded stack, 2
	// cores), total CPU s per 1,000 events and commit → readable p99:
	// 1ms 1.16 / 3.3 ms, 3ms 1.01 / 4.9 ms, 4ms 0.93 / 6.0 ms, 6ms 0.87 /
	// 8.0 ms (poll mode's, same runs: 7.4-7.5 ms). Default 4ms.
	Linger time.Duration
	// PollInterval is how often the relay drains whatever the probes say,
	// reading the outbox from its lowest id: it finds the rows of
	// transactions that committed long after taking their ids. Default 2s.
	PollInterval time.Duration
	// StandbyRetry is how often a standby tries to become leader.
	// Default 1s.
	StandbyRetry time.Duration
	// Retention, when positive, marks published rows instead of deleting
	// them and deletes them once older than Retention. Default 0: delete.
	Retention time.Duration
	// MaxBackoff caps the wait between retries of database errors.
	// Default 10s.
	MaxBackoff time.Duration
	// ShutdownTimeout bounds how long Run waits for the in-flight batch's
	// acks after its context is cancelled. Default 20s, inside
	// Kubernetes' default 30 s termination grace (a batch cut short is
	// published again by the next leader, never lost).
	ShutdownTimeout time.Duration
	// Slot is the replication slot of logical mode. Default
	// migrate.SlotName(database, Schema); producers must name the same.
	Slot string
	// RecreateSlot, in logical mode, replaces a slot that is invalidated
	// or gone with a new one and logs the WAL window whose events were not
	// delivered; only until this Run first streams (a slot lost later ends
	// Run again). Default false: such a slot ends Run with
	// ErrSlotInvalidated or ErrSlotLost (docs/operations.md).
	RecreateSlot bool
	// StatusInterval is how often logical mode reports its confirmed
	// position to PostgreSQL (the slot's confirmed_flush_lsn), whether or
	// not the server asks: it bounds what a restart publishes again, and
	// keeps wal_sender_timeout (60s by default) from ending a quiet
	// stream. Default 1s.
	StatusInterval time.Duration
	// HeartbeatInterval: in logical mode, after this long without an
	// event the leader writes a heartbeat message, so the slot's position
	// advances past WAL other databases (or tables) write and PostgreSQL
	// can recycle it. Default 10s.
	HeartbeatInterval time.Duration
	// AllowPublicEmit, in logical mode, lets the relay stream although
	// every role of the database may execute pg_logical_emit_message (the
	// server's default), so any role that can connect can write events
	// the relay reads. Default false: such a database ends Run with
	// migrate.ErrPublicEmit until `eventline migrate --mode logical
	// --emitter-role ROLE` (migrate.LogicalOptions.Emitters) restricted
	// it. Set it only where the function's privileges cannot be changed
	// (a managed server without superuser); the pipeline check still
	// parks whatever the pipeline does not route.
	AllowPublicEmit bool
	// Transactional makes the relay a transactional producer: each batch
	// is one Kafka transaction holding its records and the relay's
	// position on the outbox's position topic (PositionTopic). In poll
	// mode the position is the batch's outbox ids, and the rows are
	// deleted, with a synchronous commit, only after it committed; in
	// logical mode it is how far the stream is, and the slot is confirmed
	// only behind committed transactions. A consumer reading with
	// isolation.level=read_committed (eventline's groups do) then sees
	// each event once, across relay crashes and takeovers, and a leader
	// that lost its lock is fenced by the broker: a new leader's
	// InitProducerID aborts what the old one left open and refuses its
	// later writes. On a secured cluster the relay's principal needs Write
	// and Describe on the transactional.id. Default false.
	Transactional bool
	// TransactionalID is the transactional.id of a transactional relay.
	// Default "eventline-relay.<database>.<Schema>.<Mode>": set it when
	// databases of the same name in different clusters publish to one
	// Kafka cluster, since relays sharing an id fence each other.
	TransactionalID string
	// KafkaOpts are extra franz-go client options.
	KafkaOpts []kgo.Opt
	// TracerProvider, when set, gives every record a "<topic> publish"
	// span (franz-go's kotel plugin), child of the trace context the
	// producer stored in the row, and injects that span into the record's
	// traceparent header. Unset, the stored context is passed on as is.
	TracerProvider trace.TracerProvider
	// Logger. Default slog.Default().
	Logger *slog.Logger
}

// defaultLogicalLinger is Config.Linger's default in logical mode.
const defaultLogicalLinger = 4 * time.Millisecond

func (c Config) withDefaults() Config {
	if c.Schema == "" {
		c.Schema = migrate.DefaultSchema
	}
	if c.Mode == "" {
		c.Mode = ModePoll
	}
	if c.StatusInterval == 0 {
		c.StatusInterval = time.Second
	}
	if c.HeartbeatInterval == 0 {
		c.HeartbeatInterval = 10 * time.Second
	}
	if c.BatchSize == 0 {
		c.BatchSize = DefaultBatchSize
	}
	if c.BatchBytes == 0 {
		c.BatchBytes = DefaultBatchBytes
	}
	if c.PollInterval == 0 {
		c.PollInterval = 2 * time.Second
	}
	if c.ProbeInterval == 0 {
		c.ProbeInterval = 50 * time.Millisecond
	}
	if c.Linger == 0 {
		c.Linger = 2 * time.Millisecond
		if c.Mode == ModeLogical {
			c.Linger = defaultLogicalLinger
		}
	}
	if c.StandbyRetry == 0 {
		c.StandbyRetry = time.Second
	}
	if c.MaxBackoff == 0 {
		c.MaxBackoff = 10 * time.Second
	}
	if c.ShutdownTimeout == 0 {
		c.ShutdownTimeout = 20 * time.Second
	}
	if c.Logger == nil {
		c.Logger = slog.Default()
	}
	return c
}

func (c Config) validate() error {
	var errs []error
	if c.DatabaseURL == "" {
		errs = append(errs, errors.New("relay: DatabaseURL is required"))
	}
	if len(c.Brokers) == 0 {
		errs = append(errs, errors.New("relay: Brokers are required"))
	}
	if c.Pipeline == nil || len(c.Pipeline.Topics) == 0 {
		errs = append(errs, errors.New("relay: Pipeline with at least one topic is required: the relay publishes only the events eventline.yaml routes"))
	}
	if c.BatchSize < 1 {
		errs = append(errs, fmt.Errorf("relay: BatchSize must be positive, got %d", c.BatchSize))
	}
	if c.BatchBytes < 1 {
		errs = append(errs, fmt.Errorf("relay: BatchBytes must be positive, got %d", c.BatchBytes))
	}
	if err := migrate.ValidateSchema(c.Schema); err != nil {
		errs = append(errs, fmt.Errorf("relay: Schema: %w", err))
	}
	if !c.Mode.Valid() {
		errs = append(errs, fmt.Errorf("relay: Mode %q: want %q or %q", c.Mode, ModePoll, ModeLogical))
	}
	if c.StatusInterval < 0 || c.HeartbeatInterval < 0 {
		errs = append(errs, errors.New("relay: StatusInterval and HeartbeatInterval must not be negative"))
	}
	if c.Retention < 0 {
		errs = append(errs, errors.New("relay: Retention must not be negative"))
	}
	if c.PollInterval < 0 || c.ProbeInterval < 0 || c.Linger < 0 {
		errs = append(errs, errors.New("relay: PollInterval, ProbeInterval and Linger must not be negative"))
	}
	return errors.Join(errs...)
}
