package bench

import (
	"bytes"
	"cmp"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"math/rand/v2"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"

	"github.com/eventline/eventline/schemas"
)

// ConnectOptions run the Kafka Connect worker of the Debezium peer.
type ConnectOptions struct {
	Libs       string // the worker's jars (scripts/connect.sh fetch: CONNECT_LIBS)
	PluginPath string // plugin.path, holding Debezium's connector (CONNECT_PLUGIN_PATH)
	Log4j      string // log4j2 config (scripts/connect/log4j2.properties)
	RunDir     string // config, offsets, the password file, logs; default a temporary one
	Port       int    // REST listener on 127.0.0.1; default 28083
	Java       string // default java on PATH (or JAVA_HOME's)
	// Heap is the JVM's heap options; default connect-standalone.sh's
	// "-Xms256M -Xmx2G".
	Heap []string

	// The connector's and the worker's tuning (the doc gives the reasons).
	PollIntervalMs     int // poll.interval.ms; default 10 (Debezium's: 500)
	MaxBatchSize       int // max.batch.size; default 8192 (Debezium's: 2048)
	MaxQueueSize       int // max.queue.size; default 32768 (Debezium's: 8192)
	ProducerLingerMs   int // producer.linger.ms; default 5 (the Kafka 4 client's)
	ProducerBatchBytes int // producer.batch.size; default 262144 (the client's: 16384)
	// ProducerInFlight is producer.max.in.flight.requests.per.connection:
	// Connect sets 1; the idempotent producer keeps order with up to 5.
	// Default 5.
	ProducerInFlight int
}

func (c ConnectOptions) withDefaults() ConnectOptions {
	c.Port = cmp.Or(c.Port, 28083)
	if len(c.Heap) == 0 {
		c.Heap = []string{"-Xms256M", "-Xmx2G"}
	}
	c.PollIntervalMs = cmp.Or(c.PollIntervalMs, 10)
	c.MaxBatchSize = cmp.Or(c.MaxBatchSize, 8192)
	c.MaxQueueSize = cmp.Or(c.MaxQueueSize, 4*c.MaxBatchSize)
	c.ProducerLingerMs = cmp.Or(c.ProducerLingerMs, 5)
	c.ProducerBatchBytes = cmp.Or(c.ProducerBatchBytes, 262144)
	c.ProducerInFlight = cmp.Or(c.ProducerInFlight, 5)
	if c.Java == "" {
		c.Java = "java"
		if h := os.Getenv("JAVA_HOME"); h != "" {
			c.Java = filepath.Join(h, "bin", "java")
		}
	}
	return c
}

// connectWorker is one Kafka Connect worker in standalone mode, started at
// the first Debezium round (a cold JVM) and kept for the later ones (warm),
// each of which creates its connector over the REST API.
type connectWorker struct {
	o       ConnectOptions
	brokers []string
	log     *slog.Logger
	proc    *childProcess
	dir     string
	tmp     bool // dir is ours to remove
	logFile *os.File
}

func (w *connectWorker) url(path string) string {
	return "http://127.0.0.1:" + strconv.Itoa(w.o.Port) + path
}

// ensure starts the worker unless it runs; cold says it did.
func (w *connectWorker) ensure(ctx context.Context) (cold bool, err error) {
	if w.proc != nil {
		return false, nil
	}
	if w.dir == "" {
		w.dir = w.o.RunDir
		if w.dir == "" {
			if w.dir, err = os.MkdirTemp("", "eventline-connect-"); err != nil {
				return false, err
			}
			w.tmp = true
		}
	}
	if err := os.MkdirAll(filepath.Join(w.dir, "logs"), 0o700); err != nil {
		return false, err
	}
	if resp, err := http.Get(w.url("/")); err == nil {
		resp.Body.Close()
		return false, fmt.Errorf("127.0.0.1:%d already answers HTTP: another Connect worker? stop it or choose another port", w.o.Port)
	}
	// The config providers resolve ${file:...} in a connector's config when
	// the task starts: the database password stays in a 0600 file, out of
	// the REST API's answers and of every command line.
	props := fmt.Sprintf(`# Written by eventline's head-to-head (internal/bench/peers_debezium.go).
bootstrap.servers=%s
listeners=http://127.0.0.1:%d
plugin.path=%s
plugin.discovery=service_load
key.converter=org.apache.kafka.connect.json.JsonConverter
value.converter=org.apache.kafka.connect.json.JsonConverter
offset.storage.file.filename=%s
config.providers=file
config.providers.file.class=org.apache.kafka.common.config.provider.FileConfigProvider
producer.linger.ms=%d
producer.batch.size=%d
producer.max.in.flight.requests.per.connection=%d
producer.enable.idempotence=true
`, joinComma(w.brokers), w.o.Port, w.o.PluginPath, filepath.Join(w.dir, "connect.offsets"),
		w.o.ProducerLingerMs, w.o.ProducerBatchBytes, w.o.ProducerInFlight)
	cfg := filepath.Join(w.dir, "worker.properties")
	if err := os.WriteFile(cfg, []byte(props), 0o600); err != nil {
		return false, err
	}
	if w.logFile, err = os.OpenFile(filepath.Join(w.dir, "logs", "connect.out"), os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o600); err != nil {
		return false, err
	}
	// connect-standalone.sh's JVM options (kafka-run-class.sh's
	// performance options), its heap, our log4j config.
	args := append(append([]string{}, w.o.Heap...),
		"-server", "-XX:+UseG1GC", "-XX:MaxGCPauseMillis=20", "-XX:InitiatingHeapOccupancyPercent=35",
		"-XX:+ExplicitGCInvokesConcurrent", "-XX:MaxInlineLevel=15", "-Djava.awt.headless=true",
		"-Dconnect.logs.dir="+filepath.Join(w.dir, "logs"),
		"-cp", filepath.Join(w.o.Libs, "*"), "org.apache.kafka.connect.cli.ConnectStandalone", cfg)
	if w.o.Log4j != "" {
		args = append([]string{"-Dlog4j2.configurationFile=" + w.o.Log4j}, args...)
	}
	w.log.Info("bench peers: starting the Kafka Connect worker", "dir", w.dir, "port", w.o.Port)
	if w.proc, err = startChild(w.o.Java, args, nil, w.logFile); err != nil {
		return false, err
	}
	deadline := time.Now().Add(3 * time.Minute)
	for {
		if resp, err := http.Get(w.url("/")); err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return true, nil
			}
		}
		select {
		case err := <-w.proc.done:
			w.proc = nil
			return false, fmt.Errorf("the Connect worker exited during startup (%v); see %s", err, filepath.Join(w.dir, "logs"))
		case <-ctx.Done():
			return false, ctx.Err()
		case <-time.After(100 * time.Millisecond):
		}
		if time.Now().After(deadline) {
			return false, fmt.Errorf("the Connect worker's REST API did not answer within 3 minutes; see %s", filepath.Join(w.dir, "logs"))
		}
	}
}

func (w *connectWorker) pid() int { return w.proc.cmd.Process.Pid }

// rest sends a request to the worker and decodes a JSON answer into out.
func (w *connectWorker) rest(ctx context.Context, method, path string, body, out any) error {
	var rd io.Reader
	if body != nil {
		b, err := json.Marshal(body)
		if err != nil {
			return err
		}
		rd = bytes.NewReader(b)
	}
	req, err := http.NewRequestWithContext(ctx, method, w.url(path), rd)
	if err != nil {
		return err
	}
	req.Header.Set("Content-Type", "application/json")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	if resp.StatusCode >= 300 {
		return fmt.Errorf("%s %s: HTTP %d: %s", method, path, resp.StatusCode, strings.TrimSpace(string(b)))
	}
	if out != nil {
		return json.Unmarshal(b, out)
	}
	return nil
}

// stop ends the worker (SIGTERM: it stops its connectors cleanly).
func (w *connectWorker) stop() {
	if w.proc != nil {
		w.proc.stop()
		w.proc = nil
	}
	if w.logFile != nil {
		w.logFile.Close()
		w.logFile = nil
	}
	if w.tmp {
		os.RemoveAll(w.dir)
	}
}

// debeziumPeer is Debezium's PostgreSQL connector with the outbox event
// router, in the worker, reading its outbox table through a pgoutput slot.
type debeziumPeer struct {
	worker *connectWorker
	cold   bool
	conn   string // the round's connector
	failed chan error
	cancel context.CancelFunc
}

func (p *debeziumPeer) name() string     { return PeerDebezium }
func (p *debeziumPeer) idHeader() string { return "id" } // EventRouter: table.field.event.id
func (p *debeziumPeer) note() string {
	if p.cold {
		return "cold JVM"
	}
	return "warm JVM"
}

// debeziumOutbox is the round's outbox table, with the columns the
// EventRouter reads by default.
func debeziumOutbox(r *round) string { return pgx.Identifier{r.s.schema, "outbox"}.Sanitize() }

func (p *debeziumPeer) slot(r *round) string {
	return "h2h_" + strings.TrimPrefix(r.s.schema, "bench_")
}

// prepare makes the outbox table, a publication of it and the slot the
// connector will stream (before the backlog, so the slot holds it), then
// writes the backlog, EventsPerTx rows per transaction.
func (p *debeziumPeer) prepare(ctx context.Context, r *round, n int) error {
	if _, err := r.s.pool.Exec(ctx, `CREATE TABLE `+debeziumOutbox(r)+` (
		id uuid PRIMARY KEY,
		aggregatetype text NOT NULL,
		aggregateid text NOT NULL,
		type text NOT NULL,
		payload bytea)`); err != nil {
		return err
	}
	name := p.slot(r)
	if _, err := r.s.pool.Exec(ctx, `CREATE PUBLICATION `+pgx.Identifier{name}.Sanitize()+` FOR TABLE `+debeziumOutbox(r)); err != nil {
		return err
	}
	r.s.publication = name
	if err := r.s.createSlot(ctx, name); err != nil {
		return err
	}
	info, aggs, values, err := sampleAggregates(r.o.Aggregates, r.schemaID)
	if err != nil {
		return err
	}
	return fillBatched(ctx, r, n, `INSERT INTO `+debeziumOutbox(r)+` (id, aggregatetype, aggregateid, type, payload)
		SELECT * FROM unnest($1::uuid[], $2::text[], $3::text[], $4::text[], $5::bytea[])`,
		func(rows, at int) []any {
			ids, types, aggTypes, aggIDs, payloads := make([]uuid.UUID, rows), make([]string, rows), make([]string, rows), make([]string, rows), make([][]byte, rows)
			for j := range rows {
				a := (at + j) % r.o.Aggregates
				ids[j], aggTypes[j], aggIDs[j], types[j], payloads[j] = uuid.New(), "order", aggs[a], info.Name, values[a]
			}
			return []any{ids, aggTypes, aggIDs, types, payloads}
		})
}

// fillBatched writes n rows with stmt, EventsPerTx per transaction, a
// pipeline of transactions per round trip; args gives the statement's
// arguments for rows rows from row at.
func fillBatched(ctx context.Context, r *round, n int, stmt string, args func(rows, at int) []any) error {
	conn, err := r.s.pool.Acquire(ctx)
	if err != nil {
		return err
	}
	defer conn.Release()
	const perRoundTrip = 2000 // rows
	for i := 0; i < n; {
		b := &pgx.Batch{}
		for sent := 0; sent < perRoundTrip && i < n; {
			k := min(r.o.EventsPerTx, n-i)
			b.Queue(`BEGIN`)
			b.Queue(stmt, args(k, i)...)
			b.Queue(`COMMIT`)
			i += k
			sent += k
		}
		if err := conn.SendBatch(ctx, b).Close(); err != nil {
			return err
		}
	}
	return nil
}

func (p *debeziumPeer) start(ctx context.Context, r *round) (int, time.Duration, error) {
	w := p.worker
	var err error
	if p.cold, err = w.ensure(ctx); err != nil {
		return 0, 0, err
	}
	// This round's peak, not the worker's since it started.
	if err := resetPeakRSS(w.pid()); err != nil {
		r.log.Warn("bench peers: cannot reset the worker's peak RSS: the figure is the worker's lifetime peak", "err", err)
	}
	cpu := processCPU(w.pid())
	cfg, err := pgconn.ParseConfig(r.env.DatabaseURL)
	if err != nil {
		return 0, 0, err
	}
	secret := filepath.Join(w.dir, "database.properties")
	if err := os.WriteFile(secret, []byte("password="+propertiesEscape(cfg.Password)+"\n"), 0o600); err != nil {
		return 0, 0, err
	}
	o := w.o
	p.conn = "h2h-" + strings.TrimPrefix(r.s.schema, "bench_")
	config := map[string]string{
		"connector.class":             "io.debezium.connector.postgresql.PostgresConnector",
		"tasks.max":                   "1",
		"plugin.name":                 "pgoutput",
		"database.hostname":           cfg.Host,
		"database.port":               strconv.Itoa(int(cfg.Port)),
		"database.user":               cfg.User,
		"database.password":           "${file:" + secret + ":password}",
		"database.dbname":             cfg.Database,
		"topic.prefix":                p.conn,
		"slot.name":                   p.slot(r),
		"publication.name":            p.slot(r),
		"publication.autocreate.mode": "disabled",
		"table.include.list":          r.s.schema + ".outbox",
		"snapshot.mode":               "no_data",
		"tombstones.on.delete":        "false",
		"transforms":                  "outbox",
		"transforms.outbox.type":      "io.debezium.transforms.outbox.EventRouter",
		"transforms.outbox.route.topic.replacement": r.s.topic,
		"key.converter":   "org.apache.kafka.connect.storage.StringConverter",
		"value.converter": "io.debezium.converters.BinaryDataConverter",
		"value.converter.delegate.converter.type": "org.apache.kafka.connect.json.JsonConverter",
		"poll.interval.ms":                        strconv.Itoa(o.PollIntervalMs),
		"max.batch.size":                          strconv.Itoa(o.MaxBatchSize),
		"max.queue.size":                          strconv.Itoa(o.MaxQueueSize),
	}
	if err := w.rest(ctx, http.MethodPut, "/connectors/"+p.conn+"/config", config, nil); err != nil {
		return 0, 0, fmt.Errorf("creating the connector: %w", err)
	}
	// A failed task ends the round now rather than at the drain timeout.
	p.failed = make(chan error, 1)
	wctx, cancel := context.WithCancel(context.WithoutCancel(ctx))
	p.cancel = cancel
	go p.watch(wctx)
	return w.pid(), cpu, nil
}

// watch reports the worker's end or the connector's failure on p.failed.
func (p *debeziumPeer) watch(ctx context.Context) {
	done := p.worker.proc.done
	for {
		select {
		case err := <-done:
			p.failed <- fmt.Errorf("the Connect worker exited: %v (see %s)", err, filepath.Join(p.worker.dir, "logs"))
			return
		case <-ctx.Done():
			return
		case <-time.After(500 * time.Millisecond):
		}
		var st struct {
			Connector struct{ State, Trace string }
			Tasks     []struct{ State, Trace string }
		}
		if err := p.worker.rest(ctx, http.MethodGet, "/connectors/"+p.conn+"/status", nil, &st); err != nil {
			continue // not yet known
		}
		for _, t := range append(st.Tasks, st.Connector) {
			if t.State == "FAILED" {
				trace, _, _ := strings.Cut(t.Trace, "\n\tat ")
				p.failed <- fmt.Errorf("connector %s failed: %s", p.conn, trace)
				return
			}
		}
	}
}

func (p *debeziumPeer) exited() <-chan error { return p.failed }

// write appends one event to the outbox table, as the application's
// transaction would.
func (p *debeziumPeer) write(ctx context.Context, r *round, tx pgx.Tx, id uuid.UUID, agg string, rng *rand.Rand) error {
	v, err := encodeOrder(r, agg, rng)
	if err != nil {
		return err
	}
	_, err = tx.Exec(ctx, `INSERT INTO `+debeziumOutbox(r)+` (id, aggregatetype, aggregateid, type, payload) VALUES ($1, 'order', $2, 'eventline.orders.OrderCreated', $3)`, id, agg, v)
	return err
}

// stop deletes the connector; the worker runs on for the next round. The
// round's close drops the slot once the connector's session left it.
func (p *debeziumPeer) stop(ctx context.Context) {
	if p.cancel != nil {
		p.cancel()
	}
	if p.conn != "" && p.worker.proc != nil {
		if err := p.worker.rest(ctx, http.MethodDelete, "/connectors/"+p.conn, nil, nil); err != nil {
			p.worker.log.Warn("bench peers: deleting the connector", "connector", p.conn, "err", err)
		}
	}
	p.conn = ""
}

// encodeOrder is a Confluent-framed OrderCreated for aggregate agg: the
// bytes eventline's producer writes for the same event.
func encodeOrder(r *round, agg string, rng *rand.Rand) ([]byte, error) {
	info, ok := orderInfo()
	if !ok {
		return nil, errors.New("OrderCreated is not in the examples catalog")
	}
	return schemas.Encode(r.schemaID, info.Schema, sampleOrder(agg, rng))
}

// propertiesEscape escapes a value for a Java properties file.
func propertiesEscape(s string) string {
	var b strings.Builder
	for _, c := range s {
		switch c {
		case '\\', ':', '=', '#', '!', ' ':
			b.WriteByte('\\')
			b.WriteRune(c)
		case '\n':
			b.WriteString(`\n`)
		default:
			b.WriteRune(c)
		}
	}
	return b.String()
}
