// Package roundtrip is the foundation's end-to-end smoke check, run by
// `eventline demo` until the saga demo replaces it: it registers an Avro
// schema, produces Confluent-framed records keyed by id, consumes them in a
// consumer group, writes each one to PostgreSQL in a transaction, and commits
// offsets only after that transaction commits.
package roundtrip

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"slices"
	"sort"
	"time"

	"github.com/google/uuid"
	"github.com/hamba/avro/v2"
	"github.com/jackc/pgx/v5"
	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kgo"
	"github.com/twmb/franz-go/pkg/sr"

	"github.com/eventline/eventline/internal/pgcluster"
)

// PingSchema is the Avro schema of the round trip's records.
const PingSchema = `{
  "type": "record",
  "name": "Ping",
  "namespace": "eventline.demo",
  "doc": "One record of the foundation round trip.",
  "fields": [
    {"name": "run_id",  "type": "string", "doc": "Identifies one round-trip run."},
    {"name": "seq",     "type": "int",    "doc": "Position of the record within its run, from 0."},
    {"name": "ping_id", "type": {"type": "string", "logicalType": "uuid"}, "doc": "Unique id; also the record key."},
    {"name": "sent_at", "type": {"type": "long", "logicalType": "timestamp-millis"}, "doc": "When the record was produced."}
  ]
}`

// Ping is the Go form of PingSchema.
type Ping struct {
	RunID  string    `avro:"run_id"`
	Seq    int32     `avro:"seq"`
	PingID string    `avro:"ping_id"`
	SentAt time.Time `avro:"sent_at"`
}

// Config of one run. Zero values take the documented defaults.
type Config struct {
	Brokers     []string // required
	RegistryURL string   // required
	DatabaseURL string   // required

	// Records to send. Default 10.
	Records int
	// Topic to use; created when missing. Default "eventline.demo.roundtrip".
	Topic string
	// Partitions of the topic when it is created. Default 3.
	Partitions int32
	// Timeout bounds the whole run. Default 60s.
	Timeout time.Duration
	// Logger. Default slog.Default().
	Logger *slog.Logger
}

func (c Config) withDefaults() Config {
	if c.Records == 0 {
		c.Records = 10
	}
	if c.Topic == "" {
		c.Topic = "eventline.demo.roundtrip"
	}
	if c.Partitions == 0 {
		c.Partitions = 3
	}
	if c.Timeout == 0 {
		c.Timeout = 60 * time.Second
	}
	if c.Logger == nil {
		c.Logger = slog.Default()
	}
	return c
}

func (c Config) validate() error {
	var errs []error
	if len(c.Brokers) == 0 {
		errs = append(errs, errors.New("no Kafka brokers given (KAFKA_BROKERS)"))
	}
	if c.RegistryURL == "" {
		errs = append(errs, errors.New("no schema registry URL given (SCHEMA_REGISTRY_URL)"))
	}
	if c.DatabaseURL == "" {
		errs = append(errs, errors.New("no database URL given (DATABASE_URL)"))
	}
	if c.Records < 1 {
		errs = append(errs, fmt.Errorf("records must be at least 1, got %d", c.Records))
	}
	return errors.Join(errs...)
}

// Received is one record as the consumer saw and stored it.
type Received struct {
	Seq       int32
	Partition int32
	Offset    int64
	Latency   time.Duration // produce call to database commit
}

// Result describes what one run did.
type Result struct {
	RunID    string
	Topic    string
	Subject  string
	SchemaID int
	Group    string
	Produced int
	// Received lists this run's records in the order they were stored.
	Received []Received
	// Skipped counts records of earlier runs the new group read past.
	Skipped int
	// Rows is the number of this run's rows found in PostgreSQL afterwards.
	Rows int
}

// Run performs one round trip.
func Run(ctx context.Context, cfg Config) (Result, error) {
	cfg = cfg.withDefaults()
	if err := cfg.validate(); err != nil {
		return Result{}, err
	}
	ctx, cancel := context.WithTimeout(ctx, cfg.Timeout)
	defer cancel()

	runID := newID()[:8]
	res := Result{
		RunID:   runID,
		Topic:   cfg.Topic,
		Subject: cfg.Topic + "-eventline.demo.Ping", // TopicRecordNameStrategy
		Group:   "eventline-demo-" + runID,
	}

	conn, err := pgx.Connect(ctx, cfg.DatabaseURL)
	if err != nil {
		return res, fmt.Errorf("error connecting to postgres at %s: %w", pgcluster.Redact(cfg.DatabaseURL), err)
	}
	defer conn.Close(context.WithoutCancel(ctx))
	if _, err := conn.Exec(ctx, `CREATE TABLE IF NOT EXISTS eventline_demo_pings (
		ping_id     uuid PRIMARY KEY,
		run_id      text NOT NULL,
		seq         int NOT NULL,
		partition   int NOT NULL,
		"offset"    bigint NOT NULL,
		sent_at     timestamptz NOT NULL,
		received_at timestamptz NOT NULL DEFAULT now())`); err != nil {
		return res, fmt.Errorf("error creating table: %w", err)
	}

	schema, err := avro.Parse(PingSchema)
	if err != nil {
		return res, fmt.Errorf("error parsing ping schema: %w", err)
	}
	reg, err := sr.NewClient(sr.URLs(cfg.RegistryURL))
	if err != nil {
		return res, fmt.Errorf("error creating registry client: %w", err)
	}
	ss, err := reg.CreateSchema(ctx, res.Subject, sr.Schema{Schema: PingSchema, Type: sr.TypeAvro})
	if err != nil {
		return res, fmt.Errorf("error registering subject %s at %s: %w", res.Subject, cfg.RegistryURL, err)
	}
	res.SchemaID = ss.ID
	var serde sr.Serde
	serde.Register(ss.ID, Ping{},
		sr.EncodeFn(func(v any) ([]byte, error) { return avro.Marshal(schema, v) }),
		sr.DecodeFn(func(b []byte, v any) error { return avro.Unmarshal(schema, b, v) }),
	)

	cl, err := kgo.NewClient(
		kgo.SeedBrokers(cfg.Brokers...),
		kgo.RequiredAcks(kgo.AllISRAcks()), // idempotent producer needs all acks
		kgo.ConsumerGroup(res.Group),
		kgo.ConsumeTopics(cfg.Topic),
		kgo.ConsumeResetOffset(kgo.NewOffset().AtStart()),
		kgo.DisableAutoCommit(),
	)
	if err != nil {
		return res, fmt.Errorf("error creating kafka client: %w", err)
	}
	defer cl.Close()
	if err := ensureTopic(ctx, kadm.NewClient(cl), cfg.Topic, cfg.Partitions); err != nil {
		return res, err
	}

	// Produce, keyed by ping id, and wait for every ack.
	sent := make([]time.Time, cfg.Records) // by seq
	recs := make([]*kgo.Record, 0, cfg.Records)
	for i := 0; i < cfg.Records; i++ {
		p := Ping{RunID: runID, Seq: int32(i), PingID: uuid.NewString(), SentAt: time.Now().UTC().Truncate(time.Millisecond)}
		v, err := serde.Encode(p)
		if err != nil {
			return res, fmt.Errorf("error encoding ping %d: %w", i, err)
		}
		sent[i] = time.Now()
		recs = append(recs, &kgo.Record{
			Topic: cfg.Topic,
			Key:   []byte(p.PingID),
			Value: v,
			Headers: []kgo.RecordHeader{
				{Key: "eventline-event-id", Value: []byte(p.PingID)},
				{Key: "eventline-event-type", Value: []byte("eventline.demo.Ping")},
			},
		})
	}
	if err := cl.ProduceSync(ctx, recs...).FirstErr(); err != nil {
		return res, fmt.Errorf("error producing to %s: %w", cfg.Topic, err)
	}
	res.Produced = len(recs)
	cfg.Logger.Info("produced", "records", res.Produced, "topic", cfg.Topic, "schema_id", res.SchemaID)

	// Consume until every ping of this run is stored. Each fetch is stored
	// in one transaction; offsets are committed only after it commits.
	seen := make(map[string]bool, cfg.Records)
	for len(seen) < cfg.Records {
		fetches := cl.PollFetches(ctx)
		if err := ctx.Err(); err != nil {
			return res, fmt.Errorf("timed out after receiving %d of %d records: %w", len(seen), cfg.Records, err)
		}
		var fetchErr error
		fetches.EachError(func(t string, p int32, err error) {
			fetchErr = errors.Join(fetchErr, fmt.Errorf("fetching %s/%d: %w", t, p, err))
		})
		if fetchErr != nil {
			return res, fetchErr
		}
		tx, err := conn.Begin(ctx)
		if err != nil {
			return res, fmt.Errorf("error beginning transaction: %w", err)
		}
		var batch []Received
		var stored []*kgo.Record
		for _, r := range fetches.Records() {
			var p Ping
			if err := serde.Decode(r.Value, &p); err != nil {
				// Records of earlier runs share the topic and schema; any
				// other bytes mean the topic holds something unexpected.
				_ = tx.Rollback(context.WithoutCancel(ctx))
				return res, fmt.Errorf("error decoding %s/%d@%d: %w", r.Topic, r.Partition, r.Offset, err)
			}
			stored = append(stored, r)
			if p.RunID != runID {
				res.Skipped++
				continue
			}
			if _, err := tx.Exec(ctx, `INSERT INTO eventline_demo_pings (ping_id, run_id, seq, partition, "offset", sent_at)
				VALUES ($1, $2, $3, $4, $5, $6) ON CONFLICT (ping_id) DO NOTHING`,
				p.PingID, p.RunID, p.Seq, r.Partition, r.Offset, p.SentAt); err != nil {
				_ = tx.Rollback(context.WithoutCancel(ctx))
				return res, fmt.Errorf("error storing ping %d: %w", p.Seq, err)
			}
			if !seen[p.PingID] {
				seen[p.PingID] = true
				batch = append(batch, Received{Seq: p.Seq, Partition: r.Partition, Offset: r.Offset})
			}
		}
		if err := tx.Commit(ctx); err != nil {
			return res, fmt.Errorf("error committing transaction: %w", err)
		}
		now := time.Now()
		for i := range batch {
			batch[i].Latency = now.Sub(sent[batch[i].Seq])
		}
		res.Received = append(res.Received, batch...)
		if err := cl.CommitRecords(ctx, stored...); err != nil {
			return res, fmt.Errorf("error committing offsets: %w", err)
		}
	}

	if err := conn.QueryRow(ctx, `SELECT count(*) FROM eventline_demo_pings WHERE run_id = $1`, runID).Scan(&res.Rows); err != nil {
		return res, fmt.Errorf("error counting rows: %w", err)
	}
	if res.Rows != cfg.Records {
		return res, fmt.Errorf("round trip incomplete: %d records produced, %d rows stored", cfg.Records, res.Rows)
	}
	return res, nil
}

func ensureTopic(ctx context.Context, adm *kadm.Client, topic string, partitions int32) error {
	resp, err := adm.CreateTopic(ctx, partitions, -1, nil, topic)
	if err == nil {
		err = resp.Err
	}
	if err != nil && !errors.Is(err, kerr.TopicAlreadyExists) {
		return fmt.Errorf("error creating topic %s: %w", topic, err)
	}
	return nil
}

// Print writes a human summary of r.
func (r Result) Print(w io.Writer) {
	fmt.Fprintf(w, "round trip %s\n", r.RunID)
	fmt.Fprintf(w, "  registry   subject %s -> schema id %d\n", r.Subject, r.SchemaID)
	perPart := map[int32]int{}
	var lat []time.Duration
	for _, rc := range r.Received {
		perPart[rc.Partition]++
		lat = append(lat, rc.Latency)
	}
	parts := make([]int32, 0, len(perPart))
	for p := range perPart {
		parts = append(parts, p)
	}
	slices.Sort(parts)
	fmt.Fprintf(w, "  kafka      produced %d records to %s (all acks), keyed by ping id\n", r.Produced, r.Topic)
	for _, p := range parts {
		fmt.Fprintf(w, "               partition %d: %d records\n", p, perPart[p])
	}
	fmt.Fprintf(w, "  consumer   group %s read %d records of this run", r.Group, len(r.Received))
	if r.Skipped > 0 {
		fmt.Fprintf(w, " (and skipped %d of earlier runs)", r.Skipped)
	}
	fmt.Fprintln(w)
	fmt.Fprintf(w, "  postgres   %d rows in eventline_demo_pings for this run; offsets committed after each transaction\n", r.Rows)
	if len(lat) > 0 {
		sort.Slice(lat, func(i, j int) bool { return lat[i] < lat[j] })
		fmt.Fprintf(w, "  latency    produce to database commit (includes the group join): p50 %s, max %s\n",
			lat[len(lat)/2].Round(time.Millisecond), lat[len(lat)-1].Round(time.Millisecond))
	}
}

func newID() string {
	b := make([]byte, 16)
	_, _ = rand.Read(b)
	return hex.EncodeToString(b)
}
