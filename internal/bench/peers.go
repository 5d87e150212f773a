package bench

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"os"
	"os/exec"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"
	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/eventline/eventline/examples/events"
	"github.com/eventline/eventline/headers"
	"github.com/eventline/eventline/relay"
	"github.com/eventline/eventline/schemas"
)

// The peers of the head-to-head (docs/benchmarks/head-to-head.md).
const (
	PeerEventlinePoll    = "eventline-poll"
	PeerEventlineLogical = "eventline-logical"
	PeerDebezium         = "debezium"
	PeerWatermill        = "watermill"
)

// AllPeers in the order a round runs them (each round starts one further
// along, so no peer always runs first).
var AllPeers = []string{PeerEventlinePoll, PeerEventlineLogical, PeerDebezium, PeerWatermill}

// PeersOptions of the head-to-head: the same events drained and streamed
// by each peer in turn, round after round.
type PeersOptions struct {
	Peers  []string // default AllPeers
	Rounds int      // default 2
	// Events is each drain's backlog; default 1,000,000.
	Events int
	// WatermillEvents is the Watermill forwarder's backlog (it sends one
	// record per broker round trip, so a million takes minutes); default
	// Events.
	WatermillEvents int
	Aggregates      int // distinct keys; default 1,000
	Partitions      int // of each round's topic; default 6
	// EventsPerTx is the size of the backlog's transactions for the peers
	// whose backlog is not one COPY (eventline logical, Debezium,
	// Watermill); default 100.
	EventsPerTx int
	// The live phase: Rate single-event transactions per second from
	// Writers writers for Warmup (not measured) then LiveFor (measured).
	Rate    int           // default 1,000
	Writers int           // default 8
	Warmup  time.Duration // default 10s; negative: none
	LiveFor time.Duration // default 30s
	// DrainTimeout bounds each drain; default 30 min.
	DrainTimeout time.Duration
	// BrokerWarmup records are produced and read back before the first
	// round, so the first peer does not meet a cold broker JVM; default
	// 200,000, negative: none.
	BrokerWarmup int

	// RelayCommand runs eventline's relay (flags appended); default this
	// executable's `relay`.
	RelayCommand []string
	// WatermillCommand is the bench/peers/watermill binary.
	WatermillCommand string
	// Watermill forwarder settings (see the doc for why).
	WatermillBatchSize    int           // default 1000
	WatermillPollInterval time.Duration // default 10ms

	Connect ConnectOptions

	// BrokerPID is the Kafka broker's process, for its CPU; 0: not measured.
	BrokerPID int
	Logger    *slog.Logger
}

func (o PeersOptions) withDefaults() PeersOptions {
	if len(o.Peers) == 0 {
		o.Peers = AllPeers
	}
	o.Rounds = cmp.Or(o.Rounds, 2)
	o.Events = cmp.Or(o.Events, 1_000_000)
	o.WatermillEvents = cmp.Or(o.WatermillEvents, o.Events)
	o.Aggregates = cmp.Or(o.Aggregates, 1000)
	o.Partitions = cmp.Or(o.Partitions, 6)
	o.EventsPerTx = cmp.Or(o.EventsPerTx, 100)
	o.Rate = cmp.Or(o.Rate, 1000)
	o.Writers = cmp.Or(o.Writers, 8)
	o.Warmup = cmp.Or(o.Warmup, 10*time.Second)
	o.LiveFor = cmp.Or(o.LiveFor, 30*time.Second)
	o.DrainTimeout = cmp.Or(o.DrainTimeout, 30*time.Minute)
	o.BrokerWarmup = cmp.Or(o.BrokerWarmup, 200_000)
	o.WatermillBatchSize = cmp.Or(o.WatermillBatchSize, 1000)
	o.WatermillPollInterval = cmp.Or(o.WatermillPollInterval, 10*time.Millisecond)
	o.Connect = o.Connect.withDefaults()
	o.Logger = cmp.Or(o.Logger, slog.Default())
	return o
}

func (o PeersOptions) validate() error {
	for _, p := range o.Peers {
		if !slices.Contains(AllPeers, p) {
			return fmt.Errorf("bench peers: unknown peer %q: want some of %v", p, AllPeers)
		}
	}
	if o.Rounds < 1 || o.Events < 1 || o.WatermillEvents < 1 || o.Aggregates < 1 || o.Partitions < 1 || o.EventsPerTx < 1 || o.Rate < 1 || o.Writers < 1 || o.LiveFor <= 0 {
		return errors.New("bench peers: counts, rates and durations must be positive")
	}
	if slices.Contains(o.Peers, PeerWatermill) && o.WatermillCommand == "" {
		return errors.New("bench peers: the watermill peer needs WatermillCommand (go build ./bench/peers/watermill)")
	}
	if slices.Contains(o.Peers, PeerDebezium) && (o.Connect.Libs == "" || o.Connect.PluginPath == "") {
		return errors.New("bench peers: the debezium peer needs the Connect libs and plugin path (bash scripts/connect.sh fetch)")
	}
	return nil
}

// PeerRun is one peer's figures in one round.
type PeerRun struct {
	Peer  string `json:"peer"`
	Round int    `json:"round"`
	// Note says how the peer started: a Connect worker's first connector
	// runs in a cold JVM, later ones in a warm one.
	Note string `json:"note,omitempty"`

	// The drain of a backlog written before the peer started.
	Events       int     `json:"events"`
	DrainSeconds float64 `json:"drain_seconds"` // first record in Kafka → all in Kafka
	EventsPerSec float64 `json:"events_per_sec"`
	// FirstRecordSeconds is start (process, or connector creation in a
	// running worker) → first record in Kafka.
	FirstRecordSeconds float64 `json:"first_record_seconds"`
	// CPU seconds per 100,000 events over the drain (first record → all
	// in Kafka): of the peer's process, of PostgreSQL (the postmaster and
	// all its children) and of the broker (-1: not measured).
	PeerCPUPer100k     float64 `json:"peer_cpu_s_per_100k"`
	PostgresCPUPer100k float64 `json:"postgres_cpu_s_per_100k"`
	BrokerCPUPer100k   float64 `json:"broker_cpu_s_per_100k"`
	// StartCPUSeconds is the peer's CPU from its start to the first record.
	StartCPUSeconds float64 `json:"start_cpu_seconds"`
	// Records read back from the topic after the drain: duplicates are
	// records beyond one per event; missing, events never read.
	Records    int `json:"records"`
	Duplicates int `json:"duplicates"`
	Missing    int `json:"missing"`

	// The live phase: commit → first read by a consumer tailing the topic.
	LiveRate     int     `json:"live_rate"`
	LiveEvents   int     `json:"live_events"`
	AchievedRate float64 `json:"live_achieved_rate"`
	LiveP50Ms    float64 `json:"live_p50_ms"`
	LiveP99Ms    float64 `json:"live_p99_ms"`
	LiveP999Ms   float64 `json:"live_p999_ms"`

	// PeakRSSMB is the peer process's peak resident memory over the round.
	PeakRSSMB float64 `json:"peak_rss_mb"`
}

// PeersResult is what the head-to-head prints as JSON.
type PeersResult struct {
	Machine  string            `json:"machine"`
	Options  map[string]any    `json:"options"`
	Settings map[string]string `json:"settings"` // per peer, what it ran with
	Runs     []PeerRun         `json:"runs"`
}

// peer is one contender: it makes its outbox, fills it, starts reading
// it, appends a live event in a writer's transaction, and stops.
type peer interface {
	name() string
	// prepare makes the round's outbox (in r.s's schema) and fills it
	// with n events.
	prepare(ctx context.Context, r *round, n int) error
	// start starts forwarding r's outbox to r.s.topic; pid is the process
	// whose CPU and memory are the peer's, cpu what it had used before
	// (a running worker's; 0 for a new process).
	start(ctx context.Context, r *round) (pid int, cpu time.Duration, err error)
	// exited reports the peer's end while it should run (nil: never).
	exited() <-chan error
	// write appends one live event in tx.
	write(ctx context.Context, r *round, tx pgx.Tx, id uuid.UUID, agg string, rng *rand.Rand) error
	// idHeader is the record header holding the event id.
	idHeader() string
	// stop stops forwarding (the round's outbox stays until r closes).
	stop(ctx context.Context)
	note() string
}

// round is one peer's turn: a fresh schema, topic and registered schema.
type round struct {
	env      Env
	o        PeersOptions
	s        *setup
	schemaID int
	log      *slog.Logger
}

// Peers runs the head-to-head: for each round, each peer in turn drains a
// backlog of the same events into its own topic, then streams live events,
// and its figures are taken.
func Peers(ctx context.Context, env Env, o PeersOptions) (PeersResult, error) {
	o = o.withDefaults()
	res := PeersResult{Machine: Machine(), Settings: map[string]string{}, Options: map[string]any{
		"rounds": o.Rounds, "events": o.Events, "watermill_events": o.WatermillEvents, "aggregates": o.Aggregates,
		"partitions": o.Partitions, "events_per_tx": o.EventsPerTx, "rate": o.Rate, "writers": o.Writers,
		"warmup_seconds": o.Warmup.Seconds(), "live_seconds": o.LiveFor.Seconds(), "broker_warmup_records": o.BrokerWarmup,
	}}
	if err := o.validate(); err != nil {
		return res, err
	}
	pgPID, err := postmasterPID(ctx, env)
	if err != nil {
		return res, err
	}
	worker := &connectWorker{o: o.Connect, brokers: env.Brokers, log: o.Logger}
	defer worker.stop()
	peers := map[string]peer{}
	for _, name := range o.Peers {
		switch name {
		case PeerEventlinePoll:
			peers[name] = &eventlinePeer{mode: relay.ModePoll, command: o.RelayCommand}
		case PeerEventlineLogical:
			peers[name] = &eventlinePeer{mode: relay.ModeLogical, command: o.RelayCommand}
		case PeerDebezium:
			peers[name] = &debeziumPeer{worker: worker}
		case PeerWatermill:
			peers[name] = &watermillPeer{command: o.WatermillCommand, batch: o.WatermillBatchSize, poll: o.WatermillPollInterval}
		}
		res.Settings[name] = peerSettings(name, o)
	}
	if o.BrokerWarmup > 0 {
		if err := warmBroker(ctx, env, o.Partitions, o.BrokerWarmup, o.Logger); err != nil {
			return res, fmt.Errorf("warming the broker up: %w", err)
		}
	}
	for i := range o.Rounds {
		for j := range o.Peers {
			name := o.Peers[(i+j)%len(o.Peers)]
			o.Logger.Info("bench peers: round", "round", i+1, "peer", name)
			run, err := runPeer(ctx, env, o, peers[name], pgPID)
			run.Round = i + 1
			if err != nil {
				return res, fmt.Errorf("round %d, %s: %w", i+1, name, err)
			}
			o.Logger.Info("bench peers: done", "round", i+1, "peer", name, "events_per_sec", int(run.EventsPerSec),
				"live_p99_ms", run.LiveP99Ms, "duplicates", run.Duplicates, "missing", run.Missing)
			res.Runs = append(res.Runs, run)
		}
	}
	return res, nil
}

// warmBroker produces n records of the benchmark's size to a scratch
// topic and reads them back, then deletes the topic: the broker's JIT
// warms up on its produce and fetch paths before any peer is measured.
func warmBroker(ctx context.Context, env Env, partitions, n int, log *slog.Logger) error {
	topic := "bench.warmup." + uuid.NewString()[:8]
	cl, err := env.kafka(kgo.DefaultProduceTopic(topic), kgo.ConsumeTopics(topic), kgo.ConsumeResetOffset(kgo.NewOffset().AtStart()))
	if err != nil {
		return err
	}
	defer cl.Close()
	adm := kadm.NewClient(cl)
	if _, err := adm.CreateTopic(ctx, int32(partitions), -1, nil, topic); err != nil {
		return err
	}
	defer func() { _, _ = adm.DeleteTopics(context.WithoutCancel(ctx), topic) }() // a scratch topic
	log.Info("bench peers: warming the broker up", "records", n)
	value := make([]byte, 174)
	var perr error
	var once sync.Once
	for i := range n {
		cl.Produce(ctx, &kgo.Record{Key: []byte(strconv.Itoa(i % 1000)), Value: value}, func(_ *kgo.Record, err error) {
			if err != nil {
				once.Do(func() { perr = err })
			}
		})
	}
	if err := cl.Flush(ctx); err != nil {
		return err
	}
	if perr != nil {
		return perr
	}
	wctx, cancel := context.WithTimeout(ctx, 5*time.Minute)
	defer cancel()
	for read := 0; read < n; {
		fs := cl.PollFetches(wctx)
		if err := wctx.Err(); err != nil {
			return fmt.Errorf("%d of %d records read back: %w", read, n, err)
		}
		read += fs.NumRecords()
	}
	return nil
}

// postmasterPID is the PostgreSQL server's process: the parent of this
// connection's backend. The server must run on this machine.
func postmasterPID(ctx context.Context, env Env) (int, error) {
	conn, err := pgx.Connect(ctx, env.DatabaseURL)
	if err != nil {
		return 0, err
	}
	defer conn.Close(ctx)
	var backend int
	if err := conn.QueryRow(ctx, `SELECT pg_backend_pid()`).Scan(&backend); err != nil {
		return 0, err
	}
	st, err := readProcStat(backend)
	if err != nil {
		return 0, fmt.Errorf("bench peers: PostgreSQL must run on this machine, for its CPU: %w", err)
	}
	return st.ppid, nil
}

// cpuSample is the CPU used so far by the peer, PostgreSQL and the broker.
type cpuSample struct{ peer, pg, broker time.Duration }

func sampleCPU(peerPID, pgPID, brokerPID int) cpuSample {
	c := cpuSample{pg: treeCPU(pgPID)}
	if peerPID > 0 {
		c.peer = processCPU(peerPID)
	}
	if brokerPID > 0 {
		c.broker = processCPU(brokerPID)
	}
	return c
}

// runPeer is one peer's turn: prepare, drain, check, live phase, stop.
func runPeer(ctx context.Context, env Env, o PeersOptions, p peer, pgPID int) (PeerRun, error) {
	log := o.Logger
	run := PeerRun{Peer: p.name(), Events: o.Events, LiveRate: o.Rate}
	if p.name() == PeerWatermill {
		run.Events = o.WatermillEvents
	}
	mode := relay.ModePoll
	if p.name() == PeerEventlineLogical {
		mode = relay.ModeLogical
	}
	s, err := newSetup(ctx, env, mode, o.Partitions, o.Writers+4, log)
	if err != nil {
		return run, err
	}
	defer s.close()
	r := &round{env: env, o: o, s: s, log: log}
	if r.schemaID, err = s.orderSchemaID(ctx); err != nil {
		return run, err
	}
	kcl, err := env.kafka()
	if err != nil {
		return run, err
	}
	defer kcl.Close()
	adm := kadm.NewClient(kcl)
	// Every peer finds its topic made (6 partitions), and completion reads
	// its end offsets from the start (a missing topic's answer is cached).
	if err := createTopic(ctx, env, s.topic, o.Partitions); err != nil {
		return run, err
	}
	log.Info("bench peers: writing the backlog", "peer", p.name(), "events", run.Events)
	if err := p.prepare(ctx, r, run.Events); err != nil {
		return run, fmt.Errorf("writing the backlog: %w", err)
	}

	// The drain, from the peer's start.
	published := func() int64 {
		n, _ := onTopic(ctx, adm, s.topic) // an error reads as nothing yet: asked again
		return n
	}
	startSample := sampleCPU(0, pgPID, o.BrokerPID)
	begin := time.Now()
	var pid int
	pid, startSample.peer, err = p.start(ctx, r)
	if err != nil {
		return run, err
	}
	defer p.stop(context.WithoutCancel(ctx))
	dctx, cancel := context.WithTimeout(ctx, o.DrainTimeout)
	defer cancel()
	// The end offsets are read every 10 ms: the first record landed
	// between the poll before the one that saw it and that one. A drain
	// done within one poll counts from the poll before (an upper bound).
	var first, last, prev time.Time
	var atFirst, atLast cpuSample
	for {
		asked := time.Now()
		n := published()
		now := time.Now()
		if n > 0 && first.IsZero() {
			first, atFirst = now, sampleCPU(pid, pgPID, o.BrokerPID)
			if n >= int64(run.Events) {
				first = cmp.Or(prev, begin)
			}
		}
		if n >= int64(run.Events) {
			last, atLast = now, sampleCPU(pid, pgPID, o.BrokerPID)
			break
		}
		prev = asked
		select {
		case err := <-p.exited():
			return run, fmt.Errorf("%s exited during the drain: %v", p.name(), err)
		case <-dctx.Done():
			return run, fmt.Errorf("drain: %d of %d events in Kafka after %v: %w", n, run.Events, time.Since(begin).Round(time.Second), dctx.Err())
		case <-time.After(10 * time.Millisecond):
		}
	}
	drain := last.Sub(first)
	run.DrainSeconds = drain.Seconds()
	if drain > 0 {
		run.EventsPerSec = float64(run.Events) / drain.Seconds()
	}
	run.FirstRecordSeconds = first.Sub(begin).Seconds()
	per100k := func(d time.Duration) float64 { return d.Seconds() * 100_000 / float64(run.Events) }
	run.PeerCPUPer100k = per100k(atLast.peer - atFirst.peer)
	run.PostgresCPUPer100k = per100k(atLast.pg - atFirst.pg)
	run.BrokerCPUPer100k = -1
	if o.BrokerPID > 0 {
		run.BrokerCPUPer100k = per100k(atLast.broker - atFirst.broker)
	}
	run.StartCPUSeconds = (atFirst.peer - startSample.peer).Seconds()
	log.Info("bench peers: drained", "peer", p.name(), "events", run.Events, "seconds", run.DrainSeconds)

	if run.Records, run.Duplicates, run.Missing, err = countTopic(ctx, env, s.topic, p.idHeader(), run.Events); err != nil {
		return run, fmt.Errorf("reading the drain back: %w", err)
	}

	// The live phase.
	lat, achieved, err := peerLive(ctx, r, p)
	if err != nil {
		return run, fmt.Errorf("live phase: %w", err)
	}
	run.LiveEvents, run.AchievedRate = len(lat), achieved
	run.LiveP50Ms, run.LiveP99Ms, run.LiveP999Ms = ms(percentile(lat, 0.5)), ms(percentile(lat, 0.99)), ms(percentile(lat, 0.999))
	run.PeakRSSMB = peakRSS(pid)
	run.Note = p.note()
	return run, nil
}

// countTopic reads topic from its start to its end now and counts the
// records and the distinct event ids (in header idHeader) of events.
func countTopic(ctx context.Context, env Env, topic, idHeader string, events int) (records, duplicates, missing int, err error) {
	cl, err := env.kafka()
	if err != nil {
		return 0, 0, 0, err
	}
	ends, err := kadm.NewClient(cl).ListEndOffsets(ctx, topic)
	cl.Close()
	if err == nil {
		err = ends.Error()
	}
	if err != nil {
		return 0, 0, 0, err
	}
	left := map[int32]int64{}
	start := map[int32]kgo.Offset{}
	ends.Each(func(lo kadm.ListedOffset) {
		if lo.Offset > 0 {
			left[lo.Partition] = lo.Offset
			start[lo.Partition] = kgo.NewOffset().AtStart()
		}
	})
	cons, err := env.kafka(kgo.ConsumePartitions(map[string]map[int32]kgo.Offset{topic: start}))
	if err != nil {
		return 0, 0, 0, err
	}
	defer cons.Close()
	cctx, cancel := context.WithTimeout(ctx, 10*time.Minute)
	defer cancel()
	seen := make(map[string]struct{}, events)
	for len(left) > 0 {
		fs := cons.PollFetches(cctx)
		if err := cctx.Err(); err != nil {
			return records, 0, 0, fmt.Errorf("%d records read: %w", records, err)
		}
		fs.EachError(func(_ string, _ int32, e error) { err = e })
		if err != nil {
			return records, 0, 0, err
		}
		fs.EachRecord(func(rec *kgo.Record) {
			records++
			if id := headerValue(rec, idHeader); id != "" {
				seen[id] = struct{}{}
			}
			if end, ok := left[rec.Partition]; ok && rec.Offset+1 >= end {
				delete(left, rec.Partition)
			}
		})
	}
	return records, records - len(seen), max(events-len(seen), 0), nil
}

func headerValue(r *kgo.Record, key string) string {
	for _, h := range r.Headers {
		if h.Key == key {
			return string(h.Value)
		}
	}
	return ""
}

// peerLive appends Rate single-event transactions per second through p's
// write for Warmup+LiveFor, while a consumer tails the topic, and returns
// the commit → first-read latencies of the events committed after the
// warm-up, and the rate achieved.
func peerLive(ctx context.Context, r *round, p peer) ([]time.Duration, float64, error) {
	o := r.o
	warm := max(o.Warmup, 0)
	total := int(float64(o.Rate) * (warm + o.LiveFor).Seconds())
	cctx, cancel := context.WithTimeout(ctx, warm+o.LiveFor+2*time.Minute)
	defer cancel()
	tail, err := tailFromEnd(cctx, r.env, r.s.topic)
	if err != nil {
		return nil, 0, err
	}
	defer tail.Close()
	var mu sync.Mutex
	committed := make(map[string]time.Time, total)
	read := make(map[string]time.Time, total)
	tailed := make(chan error, 1)
	go func() { tailed <- firstSeenBy(cctx, tail, p.idHeader(), &mu, read, total) }()
	r.log.Info("bench peers: live phase", "peer", p.name(), "rate", o.Rate, "events", total)
	begin := time.Now()
	err = appendPacedWith(cctx, r.s.pool, o.Rate, total, o.Writers, func(ctx context.Context, tx pgx.Tx, id uuid.UUID, agg string, rng *rand.Rand) error {
		return p.write(ctx, r, tx, id, agg, rng)
	}, func(id string, at time.Time) {
		mu.Lock()
		committed[id] = at
		mu.Unlock()
	})
	elapsed := time.Since(begin)
	if err != nil {
		return nil, 0, err
	}
	select {
	case err = <-tailed:
	case err = <-p.exited():
		err = fmt.Errorf("%s exited: %v", p.name(), err)
	}
	if err != nil {
		return nil, 0, err
	}
	mu.Lock()
	defer mu.Unlock()
	from := begin.Add(warm)
	var lat []time.Duration
	for id, c := range committed {
		if c.Before(from) {
			continue
		}
		lat = append(lat, read[id].Sub(c))
	}
	return lat, float64(total) / elapsed.Seconds(), nil
}

// firstSeenBy is firstSeen with the event id in header idHeader.
func firstSeenBy(ctx context.Context, cl *kgo.Client, idHeader string, mu *sync.Mutex, seen map[string]time.Time, total int) error {
	for {
		fs := cl.PollFetches(ctx)
		now := time.Now()
		mu.Lock()
		fs.EachRecord(func(r *kgo.Record) {
			if id := headerValue(r, idHeader); id != "" && seen[id].IsZero() {
				seen[id] = now
			}
		})
		n := len(seen)
		mu.Unlock()
		if n >= total {
			return nil
		}
		if err := ctx.Err(); err != nil {
			return fmt.Errorf("%d of %d events read: %w", n, total, err)
		}
	}
}

// childProcess is a peer's process: started with the environment (which
// carries DATABASE_URL: never a flag, which ps shows every user), ended
// with SIGTERM.
type childProcess struct {
	cmd  *exec.Cmd
	done chan error
	once sync.Once
}

func startChild(name string, args []string, env []string, stderr *os.File) (*childProcess, error) {
	cmd := exec.Command(name, args...)
	cmd.Env = append(childEnviron(), env...)
	cmd.Stdout, cmd.Stderr = stderr, stderr
	if err := cmd.Start(); err != nil {
		return nil, fmt.Errorf("starting %s: %w", name, err)
	}
	c := &childProcess{cmd: cmd, done: make(chan error, 1)}
	go func() { c.done <- cmd.Wait() }()
	return c, nil
}

// stop sends SIGTERM and waits (SIGKILL after 30 s); idempotent.
func (c *childProcess) stop() {
	c.once.Do(func() {
		_ = c.cmd.Process.Signal(syscall.SIGTERM)
		select {
		case <-c.done:
		case <-time.After(30 * time.Second):
			_ = c.cmd.Process.Kill()
			<-c.done
		}
	})
}

// eventlinePeer is eventline's relay in mode, as its own process with its
// defaults.
type eventlinePeer struct {
	mode    relay.Mode
	command []string
	proc    *relayProcess
}

func (p *eventlinePeer) name() string {
	if p.mode == relay.ModeLogical {
		return PeerEventlineLogical
	}
	return PeerEventlinePoll
}

func (p *eventlinePeer) note() string { return "" }

func (p *eventlinePeer) idHeader() string { return headers.EventID }

// prepare fills the outbox as the producer would have: rows by one COPY
// (poll mode), or logical decoding messages, EventsPerTx per transaction.
func (p *eventlinePeer) prepare(ctx context.Context, r *round, n int) error {
	ro := RelayOptions{Events: n, Aggregates: r.o.Aggregates, EventsPerTx: r.o.EventsPerTx}
	if p.mode == relay.ModeLogical {
		return fillMessages(ctx, r.s, ro, r.schemaID)
	}
	return fill(ctx, r.s, ro, r.schemaID)
}

func (p *eventlinePeer) start(ctx context.Context, r *round) (int, time.Duration, error) {
	// Its defaults: no tuning flag.
	proc, err := startRelayChild(r.env, p.command, r.s.topic, r.o.Partitions, []string{"--schema", r.s.schema, "--mode", string(p.mode)})
	if err != nil {
		return 0, 0, err
	}
	p.proc = proc
	return proc.cmd.Process.Pid, 0, nil
}

func (p *eventlinePeer) exited() <-chan error {
	if p.proc == nil {
		return nil
	}
	return p.proc.done
}

func (p *eventlinePeer) write(ctx context.Context, r *round, tx pgx.Tx, id uuid.UUID, agg string, rng *rand.Rand) error {
	return appendEventline(ctx, r.s, tx, id, agg, rng)
}

func (p *eventlinePeer) stop(context.Context) {
	if p.proc != nil {
		p.proc.stop()
		p.proc = nil
	}
}

func orderInfo() (schemas.Info, bool) {
	return events.Catalog().Lookup("eventline.orders.OrderCreated")
}

// peerSettings says what a peer runs with (the doc gives the reasons).
func peerSettings(name string, o PeersOptions) string {
	switch name {
	case PeerEventlinePoll:
		return "eventline relay defaults (--batch-size 10000, probe every 50 ms, 2 ms between drains while rows flow; idempotent producer, acks=all, producer linger 1 ms)"
	case PeerEventlineLogical:
		return "eventline relay defaults (--batch-size 10000; idempotent producer, acks=all, producer linger 4 ms)"
	case PeerDebezium:
		c := o.Connect
		return fmt.Sprintf("Kafka Connect standalone (JVM %s), Debezium PostgreSQL connector, pgoutput, outbox EventRouter, BinaryDataConverter; poll.interval.ms=%d max.batch.size=%d max.queue.size=%d; producer linger.ms=%d batch.size=%d max.in.flight=%d idempotent acks=all",
			joinSpace(c.Heap), c.PollIntervalMs, c.MaxBatchSize, c.MaxQueueSize, c.ProducerLingerMs, c.ProducerBatchBytes, c.ProducerInFlight)
	case PeerWatermill:
		return fmt.Sprintf("Watermill forwarder, watermill-sql PostgreSQL subscriber (SubscribeBatchSize=%d, PollInterval=%v), watermill-kafka sync publisher (Sarama, protocol 4.0, acks=all)",
			o.WatermillBatchSize, o.WatermillPollInterval)
	}
	return ""
}

func joinSpace(xs []string) string { return strings.Join(xs, " ") }
