package consumers

import (
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"strings"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/twmb/franz-go/pkg/kgo"
	"go.opentelemetry.io/otel/trace"

	"github.com/eventline/eventline/migrate"
	"github.com/eventline/eventline/pipeline"
	"github.com/eventline/eventline/schemas"
)

// DefaultRetryDelays are the delays of retry.1, retry.2, retry.3.
var DefaultRetryDelays = pipeline.DefaultRetryDelays

// Config configures a Group.
type Config struct {
	// Group is the consumer group: the Kafka group id of the source
	// consumer (the retry consumer uses Group+".retry"), the dedupe scope
	// and part of the retry and DLT topic names.
	Group string
	// Topics are the source topics.
	Topics  []string
	Brokers []string
	// DB is where handlers apply effects and the dedupe rows live.
	DB *pgxpool.Pool
	// Schema is the PostgreSQL schema of eventline's tables (dedupe,
	// chain), as given to migrate. Default "public".
	Schema string
	// Serde decodes values (Confluent framing, registry lookups cached).
	Serde *schemas.Serde
	// Mux applies events with typed handlers, one per event type (see
	// Mux): it is both the group's handler and the list of Go types
	// payloads decode into, so it is the only handler setting: with a
	// Mux, Handler, BatchHandler and Events must be unset (New refuses
	// them). Exactly one of Mux, Handler or BatchHandler is required.
	Mux *Mux
	// Handler applies one event; BatchHandler a partition's batch at once
	// (with both, Handler isolates a failing event of a failed batch).
	// They receive every event of the source topics; for typed handlers
	// per event type use Mux instead.
	Handler      HandlerFunc
	BatchHandler BatchHandlerFunc
	// Events, with Handler or BatchHandler, are zero values of the
	// generated types payloads decode into (e.g.
	// &payments.PaymentCaptured{}), read with each type's schema
	// (reader-side resolution against the record's writer schema). Events
	// of other types reach handlers in the generic form (map[string]any).
	// A Mux lists its own.
	Events []schemas.Event
	// EventID chooses the dedupe key of records without an
	// eventline-event-id header (written by other producers). Default
	// DefaultEventID: derived from the record's source topic, partition
	// and offset.
	EventID EventIDFunc
	// RetryDelays: one retry topic per delay. Default: Pipeline's
	// consumers.retry_delays when Pipeline is set, else
	// DefaultRetryDelays. Empty but non-nil: no retry topics (failures go
	// to the DLT at once).
	RetryDelays []time.Duration
	// Pipeline, when set, is the source of RetryDelays (the team's
	// eventline.yaml, consumers.retry_delays). Set one of the two: New
	// refuses a RetryDelays that differs from the pipeline's, so the retry
	// topics a group uses cannot drift from the file the team reviews.
	Pipeline *pipeline.Pipeline
	// KeyOrder keeps a key's events in order across retries: while one is
	// in the retry chain, later events of the same key follow it there.
	KeyOrder bool
	// CreateTopics lets the group create missing retry and DLT topics
	// (with the source's partition count and ReplicationFactor, -1 =
	// broker default). Otherwise a missing one is a startup error.
	CreateTopics      bool
	ReplicationFactor int16
	// DedupeRetention: dedupe rows older than this are deleted. It must
	// exceed the longest time a record can be redelivered. Default 7 days;
	// negative keeps them forever.
	DedupeRetention time.Duration
	// CommitInterval between commits of marked offsets. Default 1s.
	CommitInterval time.Duration
	// MaxPollRecords bounds one poll (and so one transaction per
	// partition). Default 10000.
	MaxPollRecords int
	// Linger: while records arrive steadily (the previous poll returned
	// records too, and this one's came within Linger), a poll of a few
	// records (fewer than 64) waits Linger for more before they are
	// applied, so that several share one transaction. A modest live rate otherwise pays a
	// transaction (BEGIN, the dedupe insert, COMMIT and its WAL flush) per
	// record or two. Default 2ms, as the relay's; negative turns it off. A
	// lone record, after a quiet spell, never waits.
	Linger time.Duration
	// MaxBackoff caps the wait between retries of a failing database or
	// broker call. Default 5s.
	MaxBackoff time.Duration
	// ShutdownTimeout bounds finishing in-flight batches, the final
	// commit and leaving the groups after ctx ends. Default 20s: with the
	// clients' close (1 s at most) it fits Kubernetes' default 30 s
	// termination grace, so a SIGTERMed pod commits what it applied
	// before it is killed.
	ShutdownTimeout time.Duration
	// Protocol is how the group's members share partitions: classic
	// (cooperative-sticky, heartbeats every second), consumer (KIP-848, the
	// broker assigns) or auto (consumer where every broker offers it).
	// Default DefaultProtocol. Both of the group's consumers (source and
	// retry) use it.
	Protocol Protocol
	// InstanceID, when set, makes this member static (KIP-345; KIP-848's
	// static members): it does not leave its groups when Run returns, and
	// a member that comes back with the same id within the session timeout
	// (ConsumerOpts: kgo.SessionTimeout, default 45 s) takes its
	// partitions back without a rebalance. Meant for stable names (a
	// StatefulSet's pod names); under a Deployment every restart has a
	// new pod name, and the departed member's partitions would wait for
	// the session timeout. Unique per member of the group.
	//
	// Static members use the classic protocol: New refuses InstanceID
	// with ProtocolConsumer, and ProtocolAuto picks classic for them.
	// franz-go (v1.22.3) leaves a KIP-848 group as a static member
	// without its instance id, which Apache Kafka 4.4 rejects
	// (INVALID_REQUEST "InstanceId can't be null"), so the member never
	// leaves and its return fails with UNRELEASED_INSTANCE_ID until the
	// session times out (kfake accepts that leave).
	InstanceID string
	// KafkaOpts are extra franz-go options for every client (TLS, SASL...);
	// ConsumerOpts only for the two group consumers (session timeout,
	// instance id, fetch sizes...).
	KafkaOpts    []kgo.Opt
	ConsumerOpts []kgo.Opt
	Logger       *slog.Logger
	// TracerProvider, when set, traces the group: kotel receive spans on
	// the consumers, a process span per handler call, kotel publish spans
	// on retry and DLT copies (children of the failed attempt's process
	// span, so retries stay in the event's trace).
	TracerProvider trace.TracerProvider
	// OnAssigned and OnRevoked observe the source consumer's partitions.
	OnAssigned, OnRevoked func(map[string][]int32)
}

func (c Config) withDefaults() Config {
	if c.Schema == "" {
		c.Schema = migrate.DefaultSchema
	}
	if c.Protocol == "" {
		c.Protocol = DefaultProtocol
	}
	if c.RetryDelays == nil {
		c.RetryDelays = DefaultRetryDelays
		if c.Pipeline != nil && c.Pipeline.Consumers.RetryDelays != nil {
			c.RetryDelays = c.Pipeline.Consumers.RetryDelays
		}
	}
	if c.DedupeRetention == 0 {
		c.DedupeRetention = 7 * 24 * time.Hour
	}
	if c.CommitInterval == 0 {
		c.CommitInterval = time.Second
	}
	if c.MaxPollRecords == 0 {
		c.MaxPollRecords = 10000
	}
	if c.Linger == 0 {
		c.Linger = 2 * time.Millisecond
	}
	if c.MaxBackoff == 0 {
		c.MaxBackoff = 5 * time.Second
	}
	if c.ShutdownTimeout == 0 {
		c.ShutdownTimeout = 20 * time.Second
	}
	if c.ReplicationFactor == 0 {
		c.ReplicationFactor = -1
	}
	if c.Logger == nil {
		c.Logger = slog.Default()
	}
	return c
}

func (c Config) validate() error {
	errs := c.validateApply()
	if c.Pipeline != nil && c.Pipeline.Consumers.RetryDelays != nil && !slices.Equal(c.RetryDelays, c.Pipeline.Consumers.RetryDelays) {
		errs = append(errs, fmt.Errorf("consumers: RetryDelays %v differ from Pipeline's consumers.retry_delays %v: set one of them (Pipeline alone takes the file's)", c.RetryDelays, c.Pipeline.Consumers.RetryDelays))
	}
	if len(c.Topics) == 0 {
		errs = append(errs, errors.New("consumers: Topics are required"))
	}
	if len(c.Brokers) == 0 {
		errs = append(errs, errors.New("consumers: Brokers are required"))
	}
	if _, err := ParseProtocol(string(c.Protocol)); err != nil {
		errs = append(errs, err)
	}
	if c.InstanceID != "" && c.Protocol == ProtocolConsumer {
		errs = append(errs, errors.New("consumers: InstanceID (static membership) needs the classic group protocol: set Protocol classic or auto (see Config.InstanceID)"))
	}
	if c.DB == nil {
		errs = append(errs, errors.New("consumers: DB is required"))
	}
	for i, d := range c.RetryDelays {
		if d <= 0 {
			errs = append(errs, fmt.Errorf("consumers: RetryDelays[%d] must be positive", i))
		}
	}
	return errors.Join(errs...)
}

// validateApply checks what applying an event needs: the group, the
// schema, the serde and the handler settings.
func (c Config) validateApply() []error {
	var errs []error
	if c.Group == "" {
		errs = append(errs, errors.New("consumers: Group is required"))
	}
	if err := migrate.ValidateSchema(c.Schema); err != nil {
		errs = append(errs, fmt.Errorf("consumers: Schema: %w", err))
	}
	if c.Serde == nil {
		errs = append(errs, errors.New("consumers: Serde is required"))
	}
	if err := c.validateHandler(); err != nil {
		errs = append(errs, err)
	}
	return errs
}

// validateHandler checks the handler settings: a Mux alone, or Handler
// and/or BatchHandler with Events.
func (c Config) validateHandler() error {
	if c.Mux != nil {
		var also []string
		if c.Handler != nil {
			also = append(also, "Handler")
		}
		if c.BatchHandler != nil {
			also = append(also, "BatchHandler")
		}
		if len(c.Events) > 0 {
			also = append(also, "Events")
		}
		if len(c.Mux.handlers) == 0 && c.Mux.unhandled == nil {
			return errors.New("consumers: Mux has no handler: register typed handlers with Handle (it would skip every event)")
		}
		if len(also) > 0 {
			return fmt.Errorf("consumers: Mux is set together with %s: a Mux is the group's handler and lists the types its payloads decode into; set Mux alone (or, without a Mux, Handler/BatchHandler with Events)",
				strings.Join(also, " and "))
		}
		return nil
	}
	if c.Handler == nil && c.BatchHandler == nil {
		return errors.New("consumers: a Mux, Handler or BatchHandler is required")
	}
	_, err := newTypeSet(c.Events)
	return err
}
