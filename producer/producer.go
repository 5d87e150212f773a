package producer

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"sort"
	"strconv"
	"sync/atomic"

	"github.com/google/uuid"
	"github.com/hamba/avro/v2"
	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/twmb/franz-go/pkg/sr"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/codes"
	"go.opentelemetry.io/otel/propagation"
	"go.opentelemetry.io/otel/trace"

	"github.com/eventline/eventline/headers"
	"github.com/eventline/eventline/internal/outboxmsg"
	"github.com/eventline/eventline/migrate"
	"github.com/eventline/eventline/pipeline"
	"github.com/eventline/eventline/schemas"
)

// Message is one event to append, with its routing envelope.
type Message struct {
	// AggregateType and AggregateID identify the aggregate (e.g. "order",
	// its UUID). The id is the Kafka key: one aggregate, one partition.
	// Required.
	AggregateType string
	AggregateID   string
	// AggregateVersion is the aggregate's version after this event, if the
	// service tracks one; 0 means none.
	AggregateVersion int64
	// EventID is the dedupe key downstream. Default: a new random UUID.
	EventID uuid.UUID
	// CorrelationID ties the events of one business flow together;
	// optional.
	CorrelationID string
	// Headers are extra record headers; optional. Keys starting with
	// "eventline-" are reserved.
	Headers map[string]string
	// Event is the payload: a generated schema type. Required.
	Event schemas.Event
}

// Config of a Producer. Zero values take the documented defaults.
type Config struct {
	// DB is the database of the outbox. Required. New checks there that
	// the migrations ran under Schema and that the role may write events
	// (INSERT on the outbox in poll mode, EXECUTE on
	// pg_logical_emit_message in logical mode), so a wrong database or
	// schema fails at startup rather than at the first Append. Append
	// writes through the caller's transaction only, never through DB.
	DB *pgxpool.Pool
	// Pipeline routes event types to topics and names subjects (the
	// team's eventline.yaml, from pipeline.Load). Required.
	Pipeline *pipeline.Pipeline
	// Registry resolves schema ids at startup. Required.
	Registry *sr.Client
	// Catalog holds the team's .avsc files (schemas.LoadCatalogDir or
	// LoadCatalog over an embed.FS). What the producer looks up and
	// registers is each file's exact text, the bytes `eventline schemas
	// register` sends, so a lookup finds what CI registered. Required.
	Catalog *schemas.Catalog
	// Events are the generated types this producer appends (zero values,
	// e.g. &payments.PaymentCaptured{}). Each must have its file in
	// Catalog, with the same schema, and be routed to a topic by
	// Pipeline; New fails otherwise. Required.
	Events []schemas.Event
	// AutoRegister registers a schema missing from its subject, after
	// setting the subject's compatibility level from Pipeline (so the
	// registry's compatibility check runs at the intended level); the dev
	// default. Default false: production services fail fast instead,
	// naming the subject and the command that registers it.
	AutoRegister bool
	// Schema is the PostgreSQL schema of the outbox. Default "public".
	Schema string
	// Mode is how Append writes events: ModePoll (default: outbox rows)
	// or ModeLogical (logical decoding messages). The relay's Mode must be
	// the same.
	Mode Mode
	// Slot is the replication slot the relay streams from in logical mode
	// (relay.Config.Slot, migrate.LogicalOptions.Slot). Default
	// migrate.SlotName(database, Schema).
	Slot string
	// TracerProvider, when set, gives every Append an "outbox append"
	// span (child of the caller's span); its context is what the row
	// stores. Unset, the caller's trace context is stored as is.
	TracerProvider trace.TracerProvider
}

func (c Config) validate() error {
	var errs []error
	if c.DB == nil {
		errs = append(errs, errors.New("missing DB (required)"))
	}
	if c.Pipeline == nil {
		errs = append(errs, errors.New("missing Pipeline (required)"))
	}
	if c.Registry == nil {
		errs = append(errs, errors.New("missing Registry (required)"))
	}
	if c.Catalog == nil {
		errs = append(errs, errors.New("missing Catalog (required)"))
	}
	if len(c.Events) == 0 {
		errs = append(errs, errors.New("no Events: list the generated types this producer appends"))
	}
	for i, ev := range c.Events {
		if ev == nil {
			errs = append(errs, fmt.Errorf("nil event at Events[%d]", i))
		}
	}
	if err := errors.Join(errs...); err != nil {
		return fmt.Errorf("producer: invalid config: %w", err)
	}
	return nil
}

// route is what Append needs of one event type, resolved at startup.
type route struct {
	topic    string
	schemaID int
	schema   avro.Schema
	uuids    bool // the schema has a uuid logical type (see validate)
}

// Producer appends events to the outbox inside callers' transactions. It is
// safe for concurrent use; it holds no connection of its own.
type Producer struct {
	table  string // quoted, schema-qualified eventline_outbox
	schema string
	mode   Mode
	slot   string
	prefix string // logical mode's logical decoding message prefix
	// checked is when logical mode last found the server able to decode
	// what it writes (unix nanos; 0: never).
	checked atomic.Int64
	routes  map[string]route
	tracer  trace.Tracer // nil: no spans
}

// New checks that every event type is in the catalogue and routed to a
// topic, then resolves each schema's id under its subject once, so a
// registry outage after startup never blocks business writes.
func New(ctx context.Context, cfg Config) (*Producer, error) {
	if err := cfg.validate(); err != nil {
		return nil, err
	}
	schema := cfg.Schema
	if schema == "" {
		schema = migrate.DefaultSchema
	}
	if err := migrate.ValidateSchema(schema); err != nil {
		return nil, fmt.Errorf("producer: Schema: %w", err)
	}
	if cfg.Mode == "" {
		cfg.Mode = ModePoll
	}
	if !cfg.Mode.Valid() {
		return nil, fmt.Errorf("producer: invalid config: Mode %q: want %q or %q", cfg.Mode, ModePoll, ModeLogical)
	}
	p := &Producer{
		table: pgx.Identifier{schema, "eventline_outbox"}.Sanitize(), routes: map[string]route{},
		schema: schema, mode: cfg.Mode, slot: cfg.Slot, prefix: outboxmsg.Prefix(schema),
	}
	if err := p.checkOutbox(ctx, cfg.DB); err != nil {
		return nil, err
	}
	if cfg.TracerProvider != nil {
		p.tracer = cfg.TracerProvider.Tracer("github.com/eventline/eventline/producer")
	}
	var errs []error
	infos := make([]schemas.Info, 0, len(cfg.Events))
	topics := make([]pipeline.Topic, 0, len(cfg.Events))
	for _, ev := range cfg.Events {
		info, err := cfg.Catalog.Of(ev)
		if err != nil {
			errs = append(errs, err)
			continue
		}
		topic, ok := cfg.Pipeline.TopicFor(info.Name)
		if !ok {
			errs = append(errs, fmt.Errorf("%w: %s is routed to no topic in eventline.yaml", ErrNotRouted, info.Name))
			continue
		}
		infos, topics = append(infos, info), append(topics, topic)
	}
	if err := errors.Join(errs...); err != nil {
		return nil, fmt.Errorf("producer: %w", err)
	}
	for i, info := range infos {
		if _, done := p.routes[info.Name]; done {
			continue
		}
		subject := cfg.Pipeline.SubjectFor(topics[i].Name, info.Name)
		sch, _, err := cfg.Catalog.RegistrySchema(ctx, cfg.Registry, info.Name, schemas.RefOptions{Register: cfg.AutoRegister, Level: cfg.Pipeline.Level})
		if err != nil {
			if errors.Is(err, schemas.ErrReferenceNotRegistered) {
				err = fmt.Errorf("%w: %w", ErrNotRegistered, err)
			}
			return nil, fmt.Errorf("producer: %s: %w", info.Name, err)
		}
		id, err := resolve(ctx, cfg.Registry, subject, sch, cfg.Pipeline.Level(subject), cfg.AutoRegister)
		if err != nil {
			return nil, err
		}
		p.routes[info.Name] = route{topic: topics[i].Name, schemaID: id, schema: info.Schema, uuids: hasUUID(info.Schema, map[string]bool{})}
	}
	return p, nil
}

// checkOutbox fails when the outbox is not where the producer would write,
// or the role may not write events there.
func (p *Producer) checkOutbox(ctx context.Context, db *pgxpool.Pool) error {
	var exists, canInsert bool
	err := db.QueryRow(ctx, `SELECT to_regclass($1) IS NOT NULL,
		to_regclass($1) IS NOT NULL AND has_table_privilege(to_regclass($1), 'INSERT')`, p.table).Scan(&exists, &canInsert)
	canEmit := true
	if err == nil && p.mode == ModeLogical {
		canEmit, err = migrate.CanEmit(ctx, db)
	}
	switch {
	case err != nil:
		return fmt.Errorf("producer: error checking the outbox %s: %w", p.table, err)
	case !exists:
		return fmt.Errorf("producer: %w: %s does not exist in this database (Config.Schema %q): run `eventline migrate --schema %s` (or migrate.Migrate) first", ErrNotMigrated, p.table, p.schema, p.schema)
	case p.mode == ModePoll && !canInsert:
		return fmt.Errorf("producer: the database role may not INSERT into %s (poll mode writes a row per event): GRANT INSERT ON %s TO <role>", p.table, p.table)
	case p.mode == ModeLogical && !canEmit:
		return fmt.Errorf("producer: the database role may not execute pg_logical_emit_message (logical mode writes a message per event): `eventline migrate --mode logical --emitter-role <role>`, see %s", migrate.EmitDoc)
	}
	return nil
}

func resolve(ctx context.Context, reg *sr.Client, subject string, sch sr.Schema, level string, autoRegister bool) (int, error) {
	ss, err := reg.LookupSchema(ctx, subject, sch)
	if err == nil {
		return ss.ID, nil
	}
	var re *sr.ResponseError
	notFound := errors.As(err, &re) && (re.ErrorCode == 40401 || re.ErrorCode == 40403 || re.StatusCode == http.StatusNotFound)
	if !notFound {
		return 0, fmt.Errorf("producer: error looking up subject %s in the registry: %w", subject, err)
	}
	if !autoRegister {
		return 0, fmt.Errorf("producer: %w: subject %s has no version equal to this build's schema; register it with `eventline schemas register` (or enable auto-register in development)", ErrNotRegistered, subject)
	}
	var lvl sr.CompatibilityLevel
	if err := lvl.UnmarshalText([]byte(level)); err != nil {
		return 0, fmt.Errorf("producer: subject %s: compatibility level %q: %w", subject, level, err)
	}
	if res := reg.SetCompatibility(ctx, sr.SetCompatibility{Level: lvl}, subject); len(res) == 1 && res[0].Err != nil {
		return 0, fmt.Errorf("producer: error setting compatibility %s of subject %s: %w", level, subject, res[0].Err)
	}
	ss, err = reg.CreateSchema(ctx, subject, sch)
	if err != nil {
		return 0, fmt.Errorf("producer: error registering subject %s: %w", subject, err)
	}
	return ss.ID, nil
}

var propagator = propagation.TraceContext{}

type row struct {
	topic, eventType, aggType, aggID string
	key, value                       []byte
	eventID                          uuid.UUID
	aggVersion                       *int64
	headers                          []byte
	pairs                            [][2]string // headers, unencoded (logical mode)
}

// Append writes msgs to the outbox in tx, in order. It first validates and
// encodes all of them (an error leaves tx untouched). In logical mode it then
// writes one logical decoding message per event (failing with
// ErrNotDecodable, writing nothing, when the server would not decode it).
// In poll mode it takes a transaction-scoped advisory lock per aggregate,
// so that rows of one aggregate get outbox ids in commit order even with
// concurrent writers, and inserts them in one statement.
func (p *Producer) Append(ctx context.Context, tx pgx.Tx, msgs ...Message) (err error) {
	if len(msgs) == 0 {
		return nil
	}
	if p.tracer != nil {
		var span trace.Span
		ctx, span = p.tracer.Start(ctx, "outbox append", trace.WithSpanKind(trace.SpanKindProducer),
			trace.WithAttributes(attribute.Int("eventline.events", len(msgs)), attribute.String("eventline.event_type", eventTypeOf(msgs[0]))))
		defer func() {
			if err != nil {
				span.RecordError(err)
				span.SetStatus(codes.Error, err.Error())
			}
			span.End()
		}()
	}
	carrier := propagation.MapCarrier{}
	propagator.Inject(ctx, carrier)

	rows := make([]row, len(msgs))
	for i, m := range msgs {
		r, err := p.encode(m, carrier)
		if err != nil {
			return fmt.Errorf("producer: event %d of %d: %w", i+1, len(msgs), err)
		}
		rows[i] = r
	}
	if p.mode == ModeLogical {
		return p.emit(ctx, tx, rows)
	}

	// Aggregates are locked (transaction-scoped advisory locks) in a fixed
	// order so two transactions appending to the same pair of aggregates
	// cannot deadlock.
	keys := make([]string, 0, len(rows))
	seen := map[string]bool{}
	for _, r := range rows {
		// Length-prefixed, so ("ab","c") and ("a","bc") differ; PostgreSQL
		// text cannot hold the NUL byte a plain separator would want.
		k := "eventline:" + strconv.Itoa(len(r.aggType)) + ":" + r.aggType + ":" + r.aggID
		if !seen[k] {
			seen[k] = true
			keys = append(keys, k)
		}
	}
	sort.Strings(keys)
	// Typed columns: pgx encodes them straight into the binary format,
	// where []any (reflection per element) and uuid.UUID (its text Valuer,
	// parsed again by the server) cost a sixth of a writer's CPU.
	cols := struct {
		topic, eventType, aggType, aggID, headers []string
		key, value                                [][]byte
		eventID                                   [][16]byte
		version                                   []*int64
	}{}
	for _, r := range rows {
		cols.topic = append(cols.topic, r.topic)
		cols.key = append(cols.key, r.key)
		cols.value = append(cols.value, r.value)
		cols.eventID = append(cols.eventID, r.eventID)
		cols.eventType = append(cols.eventType, r.eventType)
		cols.aggType = append(cols.aggType, r.aggType)
		cols.aggID = append(cols.aggID, r.aggID)
		cols.headers = append(cols.headers, string(r.headers))
		cols.version = append(cols.version, r.aggVersion)
	}
	// One round trip: the scalar subquery is an InitPlan, evaluated once
	// before the first row is produced, so every lock is held before any
	// outbox id is drawn. WITH ORDINALITY keeps the order of msgs.
	_, err = tx.Exec(ctx, `INSERT INTO `+p.table+` (topic, record_key, record_value, event_id, event_type, aggregate_type, aggregate_id, aggregate_version, headers)
		SELECT topic, k, v, eid, et, at, aid, ver, h::jsonb
		FROM unnest($1::text[], $2::bytea[], $3::bytea[], $4::uuid[], $5::text[], $6::text[], $7::text[], $8::bigint[], $9::text[])
			WITH ORDINALITY AS t(topic, k, v, eid, et, at, aid, ver, h, n)
		WHERE (SELECT count(pg_advisory_xact_lock(hashtextextended(lk, 0))) FROM unnest($10::text[]) AS lk) >= 0
		ORDER BY n`,
		cols.topic, cols.key, cols.value, cols.eventID, cols.eventType, cols.aggType, cols.aggID, cols.version, cols.headers, keys)
	if err != nil {
		return fmt.Errorf("producer: error inserting into %s: %w", p.table, err)
	}
	return nil
}

func eventTypeOf(m Message) string {
	if m.Event == nil {
		return ""
	}
	return schemas.FullName(m.Event.Schema())
}

func (p *Producer) encode(m Message, trace propagation.MapCarrier) (row, error) {
	if m.Event == nil {
		return row{}, fmt.Errorf("%w: no payload", ErrInvalidEvent)
	}
	if m.AggregateType == "" || m.AggregateID == "" {
		return row{}, fmt.Errorf("%w: aggregate type and id are required", ErrInvalidEvent)
	}
	if m.AggregateVersion < 0 {
		return row{}, fmt.Errorf("%w: negative aggregate version %d", ErrInvalidEvent, m.AggregateVersion)
	}
	s := m.Event.Schema()
	name := schemas.FullName(s)
	rt, ok := p.routes[name]
	if !ok {
		return row{}, fmt.Errorf("%w: %s (not among the producer's Config.Events)", ErrUnknownEventType, name)
	}
	if s.Fingerprint() != rt.schema.Fingerprint() {
		return row{}, fmt.Errorf("%w: %s has a schema other than the one resolved at startup", ErrUnknownEventType, name)
	}
	value, err := schemas.Encode(rt.schemaID, rt.schema, m.Event)
	if err != nil {
		return row{}, fmt.Errorf("%w: %v", ErrInvalidEvent, err)
	}
	if rt.uuids {
		if err := validate(rt.schema, value[schemas.HeaderSize:]); err != nil {
			return row{}, fmt.Errorf("%w: %s: %v", ErrInvalidEvent, name, err)
		}
	}
	id := m.EventID
	if id == uuid.Nil {
		id = uuid.New()
	}
	var hdrs [][2]string
	for _, k := range []string{"traceparent", "tracestate"} {
		if v := trace.Get(k); v != "" {
			hdrs = append(hdrs, [2]string{k, v})
		}
	}
	if m.CorrelationID != "" {
		hdrs = append(hdrs, [2]string{headers.CorrelationID, m.CorrelationID})
	}
	extra := make([]string, 0, len(m.Headers))
	for k := range m.Headers {
		if headers.Reserved(k) {
			return row{}, fmt.Errorf("%w: header %q uses the reserved eventline- prefix", ErrInvalidEvent, k)
		}
		extra = append(extra, k)
	}
	sort.Strings(extra)
	for _, k := range extra {
		hdrs = append(hdrs, [2]string{k, m.Headers[k]})
	}
	hb, err := json.Marshal(hdrsOrEmpty(hdrs))
	if err != nil {
		return row{}, err
	}
	r := row{
		topic: rt.topic, eventType: name, aggType: m.AggregateType, aggID: m.AggregateID,
		key: []byte(m.AggregateID), value: value, eventID: id, headers: hb, pairs: hdrs,
	}
	if m.AggregateVersion > 0 {
		v := m.AggregateVersion
		r.aggVersion = &v
	}
	return r, nil
}

func hdrsOrEmpty(h [][2]string) [][2]string {
	if h == nil {
		return [][2]string{}
	}
	return h
}
