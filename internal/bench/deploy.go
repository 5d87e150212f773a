package bench

// `eventline bench deploy`: what a consumer group's deployment events cost
// under steady load. Members are processes of their own (this executable's
// hidden `bench deploy-member`), signalled as an orchestrator does: a
// rolling restart (SIGTERM, start again, the next once the new one is
// ready), scaling out and in one member at a time, a member SIGKILLed and
// replaced. The load is produced to Kafka at a fixed rate over 1,000 keys,
// a share of events fails its first attempt (the retry chain is active),
// and every apply is a row (event, partition, record time, apply time,
// applications) in PostgreSQL, from which the stalls and latencies are
// computed afterwards.

import (
	"bufio"
	"cmp"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"os"
	"os/exec"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kgo"
	"github.com/twmb/franz-go/pkg/sr"

	"github.com/eventline/eventline/examples/events"
	"github.com/eventline/eventline/headers"
	"github.com/eventline/eventline/migrate"
	"github.com/eventline/eventline/schemas"
)

// The membership choices measured.
const (
	ChoiceClassic  = "classic"  // classic protocol, cooperative-sticky, dynamic members
	ChoiceConsumer = "consumer" // KIP-848
	ChoiceStatic   = "static"   // classic protocol, static members (instance id kept across restarts)
)

// The deployment events measured.
const (
	ScenarioRolling = "rolling" // rolling restart of every member
	ScenarioScale   = "scale"   // 1 → MaxMembers → 1, one member at a time
	ScenarioKill    = "kill"    // one member SIGKILLed, replaced at once
)

// DeployOptions of `eventline bench deploy`.
type DeployOptions struct {
	Rate       int // events/s produced; default 1,000
	Partitions int // of the source topic; default 12
	Members    int // members of the rolling and kill scenarios; default 4
	MaxMembers int // of the scale scenario; default 6
	Choices    []string
	Scenarios  []string
	// Steady is the measured steady state before each event; Settle how
	// long the load runs after it. Defaults 10 s and 5 s (the kill
	// scenario adds the session timeout: a killed dynamic member holds
	// its partitions until then).
	Steady, Settle time.Duration
	// FailShare of the events fail their first attempt and come back from
	// the retry chain (RetryDelays). Defaults 0.01 and 1 s, 5 s.
	FailShare   float64
	RetryDelays []time.Duration
	// SessionTimeout of the members; default franz-go's 45 s.
	// HeartbeatInterval of the classic protocol; default franz-go's 3 s.
	SessionTimeout, HeartbeatInterval time.Duration
	// MemberCommand runs a member (the spec travels in the environment).
	// Default: this executable's hidden `bench deploy-member`.
	MemberCommand []string
	Logger        *slog.Logger
}

func (o *DeployOptions) defaults() {
	o.Rate = cmp.Or(o.Rate, 1000)
	o.Partitions = cmp.Or(o.Partitions, 12)
	o.Members = cmp.Or(o.Members, 4)
	o.MaxMembers = cmp.Or(o.MaxMembers, 6)
	if len(o.Choices) == 0 {
		o.Choices = []string{ChoiceClassic, ChoiceConsumer, ChoiceStatic}
	}
	if len(o.Scenarios) == 0 {
		o.Scenarios = []string{ScenarioRolling, ScenarioScale, ScenarioKill}
	}
	o.Steady = cmp.Or(o.Steady, 10*time.Second)
	o.Settle = cmp.Or(o.Settle, 5*time.Second)
	if o.FailShare == 0 {
		o.FailShare = 0.01
	}
	if o.RetryDelays == nil {
		o.RetryDelays = []time.Duration{time.Second, 5 * time.Second}
	}
	o.SessionTimeout = cmp.Or(o.SessionTimeout, 45*time.Second)
	if o.Logger == nil {
		o.Logger = slog.Default()
	}
}

// DeployRow is one (scenario, membership choice) of the table.
type DeployRow struct {
	Scenario string `json:"scenario"`
	Choice   string `json:"choice"`
	Protocol string `json:"protocol"` // what the members ran
	// EventSeconds: from the first signal to the last member ready (or
	// gone).
	EventSeconds float64 `json:"event_seconds"`
	// MaxRestartSeconds: the longest SIGTERM (or SIGKILL) → ready of a
	// member that came back.
	MaxRestartSeconds float64 `json:"max_restart_seconds"`
	// MaxStallMs: the longest time any partition went without an apply
	// while the event ran; MaxStallOthersMs the same over the partitions
	// the member being signalled (or joining) did not own.
	MaxStallMs       float64 `json:"max_stall_ms"`
	MaxStallOthersMs float64 `json:"max_stall_others_ms"`
	// Record time → applied, first attempts only: p99 in the steady state
	// before the event, and of the records produced during it.
	SteadyP99Ms float64 `json:"steady_p99_ms"`
	EventP99Ms  float64 `json:"event_p99_ms"`
	// Rebalances: the most assignments one member (slot) received during
	// the event, each rebalance it took part in giving one; PartitionsMoved:
	// partitions assigned to another member than their previous owner.
	Rebalances      int `json:"rebalances"`
	PartitionsMoved int `json:"partitions_moved"`
	// FetchedAgain: records delivered again after their apply committed
	// (the dedupe table absorbed them); AppliedTwice must be 0; Lost:
	// produced but never applied (must be 0).
	FetchedAgain int64  `json:"fetched_again"`
	AppliedTwice int64  `json:"applied_twice"`
	Lost         int64  `json:"lost"`
	Events       int64  `json:"events"`
	Brokers      string `json:"brokers"`
}

// DeployResult is what `bench deploy --json` prints.
type DeployResult struct {
	Rate       int         `json:"rate"`
	Partitions int         `json:"partitions"`
	FailShare  float64     `json:"fail_share"`
	Rows       []DeployRow `json:"rows"`
	Machine    string      `json:"machine"`
}

// member is one member process as the harness sees it.
type member struct {
	cmd    *exec.Cmd
	ready  chan struct{}
	exited chan struct{}
}

// timeline records every member's assignment callbacks, the protocol
// they ran and their dedupe hits.
type timeline struct {
	mu    sync.Mutex
	evs   []ownership
	dups  int64
	proto string
}

type ownership struct {
	t        time.Time
	slot     int // member slot (the same across restarts)
	assigned bool
	exit     bool // the process exited: what it owned is no longer consumed by it
	parts    []int32
}

// current is what each slot owns now (as its callbacks said; nothing for a
// slot whose process exited).
func (tl *timeline) current() map[int]map[int32]bool {
	tl.mu.Lock()
	defer tl.mu.Unlock()
	own := map[int]map[int32]bool{}
	for _, e := range tl.evs {
		if own[e.slot] == nil || e.exit {
			own[e.slot] = map[int32]bool{}
		}
		for _, p := range e.parts {
			if e.assigned {
				own[e.slot][p] = true
			} else {
				delete(own[e.slot], p)
			}
		}
	}
	return own
}

// settled: each live slot owns a partition (when there are enough) and
// together they own every partition once.
func (tl *timeline) settled(live []int, partitions int) bool {
	own := tl.current()
	seen := map[int32]int{}
	for _, slot := range live {
		if len(own[slot]) == 0 && len(live) <= partitions {
			return false
		}
		for p := range own[slot] {
			seen[p]++
		}
	}
	for p := range partitions {
		if seen[int32(p)] != 1 {
			return false
		}
	}
	return true
}

func (tl *timeline) setProtocol(p string) {
	tl.mu.Lock()
	defer tl.mu.Unlock()
	tl.proto = p
}

func (tl *timeline) protocol() string {
	tl.mu.Lock()
	defer tl.mu.Unlock()
	return tl.proto
}

func (tl *timeline) fetchedAgain() int64 {
	tl.mu.Lock()
	defer tl.mu.Unlock()
	return tl.dups
}

// owned returns the partitions slot owned at any time in [from, to]: what
// it owned at from, and what it was assigned until to.
func (tl *timeline) owned(slot int, from, to time.Time) map[int32]bool {
	tl.mu.Lock()
	defer tl.mu.Unlock()
	owned := map[int32]bool{}
	at := map[int32]bool{}
	for _, e := range tl.evs {
		if e.slot != slot || e.t.After(to) || e.exit {
			continue
		}
		for _, p := range e.parts {
			switch {
			case !e.t.After(from) && e.assigned:
				at[p] = true
			case !e.t.After(from):
				delete(at, p)
			case e.assigned:
				owned[p] = true
			}
		}
	}
	for p := range at {
		owned[p] = true
	}
	return owned
}

// changes counts, in [from, to], the rebalances (the most assignments one
// member slot received: every member gets one per rebalance it takes part
// in, an empty one too) and the partitions that moved (assigned to another
// member slot than their previous owner's; a static member taking its own
// partitions back is no move).
func (tl *timeline) changes(from, to time.Time) (rebalances, moved int) {
	tl.mu.Lock()
	defer tl.mu.Unlock()
	owner := map[int32]int{}
	perSlot := map[int]int{}
	for _, e := range tl.evs {
		if e.exit || !e.assigned || e.t.After(to) {
			continue
		}
		in := !e.t.Before(from)
		if in {
			perSlot[e.slot]++
			rebalances = max(rebalances, perSlot[e.slot])
		}
		for _, p := range e.parts {
			if prev, ok := owner[p]; ok && prev != e.slot && in {
				moved++
			}
			owner[p] = e.slot
		}
	}
	return rebalances, moved
}

// step is one signalled member: the window its partitions are judged in.
type step struct {
	slot     int
	from, to time.Time
}

// Deploy runs every (scenario, choice) and returns the table.
func Deploy(ctx context.Context, env Env, o DeployOptions) (DeployResult, error) {
	o.defaults()
	res := DeployResult{Rate: o.Rate, Partitions: o.Partitions, FailShare: o.FailShare, Machine: Machine()}
	for _, sc := range o.Scenarios {
		for _, ch := range o.Choices {
			o.Logger.Info("bench deploy: running", "scenario", sc, "choice", ch)
			row, err := deployRun(ctx, env, o, sc, ch)
			if err != nil {
				return res, fmt.Errorf("%s, %s: %w", sc, ch, err)
			}
			res.Rows = append(res.Rows, row)
		}
	}
	return res, nil
}

func deployRun(ctx context.Context, env Env, o DeployOptions, scenario, choice string) (row DeployRow, err error) {
	row = DeployRow{Scenario: scenario, Choice: choice, Brokers: strings.Join(env.Brokers, ",")}
	protocol := map[string]string{ChoiceClassic: "classic", ChoiceConsumer: "consumer", ChoiceStatic: "classic"}[choice]
	if protocol == "" {
		return row, fmt.Errorf("membership choice %q: want %s, %s or %s", choice, ChoiceClassic, ChoiceConsumer, ChoiceStatic)
	}
	id := strings.ReplaceAll(uuid.NewString()[:8], "-", "")
	schema, topic, group := "bench_"+id, "bench.deploy."+id, "bench-deploy-"+id
	pool, err := pgxpool.New(ctx, env.DatabaseURL)
	if err != nil {
		return row, err
	}
	defer pool.Close()
	if _, err := migrate.Migrate(ctx, pool, migrate.Options{Schema: schema}); err != nil {
		return row, err
	}
	defer func() {
		_, _ = pool.Exec(context.WithoutCancel(ctx), `DROP SCHEMA `+pgx.Identifier{schema}.Sanitize()+` CASCADE`)
	}()
	table := pgx.Identifier{schema, "deploy_applied"}.Sanitize()
	if _, err := pool.Exec(ctx, `CREATE TABLE `+table+` (event_id uuid PRIMARY KEY, partition int NOT NULL, attempt int NOT NULL,
		produced_at timestamptz NOT NULL, applied_at timestamptz NOT NULL, n int NOT NULL DEFAULT 1)`); err != nil {
		return row, err
	}
	cl, err := env.kafka(kgo.RecordPartitioner(kgo.StickyKeyPartitioner(nil)), kgo.ProducerLinger(5*time.Millisecond), kgo.MaxBufferedRecords(100_000))
	if err != nil {
		return row, err
	}
	defer cl.Close()
	adm := kadm.NewClient(cl)
	if _, err := adm.CreateTopic(ctx, int32(o.Partitions), -1, nil, topic); err != nil {
		return row, fmt.Errorf("creating %s: %w", topic, err)
	}
	reg, err := env.registry()
	if err != nil {
		return row, err
	}
	info, _ := events.Catalog().Lookup("eventline.orders.OrderCreated")
	ss, err := reg.CreateSchema(ctx, topic+"-"+info.Name, sr.Schema{Schema: info.Text})
	if err != nil {
		return row, fmt.Errorf("registering the benchmark schema: %w", err)
	}

	// The load: Rate events/s in 10 ms ticks, until stopLoad.
	var produced, produceErrs atomic.Int64
	stopLoad := make(chan struct{})
	loadDone := make(chan struct{})
	go func() {
		defer close(loadDone)
		rng := rand.New(rand.NewPCG(1, 2))
		tick := time.NewTicker(10 * time.Millisecond)
		defer tick.Stop()
		start, sent := time.Now(), 0
		for {
			select {
			case <-stopLoad:
				return
			case <-ctx.Done():
				return
			case <-tick.C:
			}
			due := int(time.Since(start).Seconds() * float64(o.Rate))
			for ; sent < due; sent++ {
				key := fmt.Sprintf("agg%d", rng.IntN(1000))
				v, err := schemas.Encode(ss.ID, info.Schema, sampleOrder(key, rng))
				if err != nil {
					produceErrs.Add(1)
					continue
				}
				evID := uuid.New()
				cl.Produce(ctx, &kgo.Record{Topic: topic, Key: []byte(key), Value: v, Headers: []kgo.RecordHeader{
					{Key: headers.EventID, Value: []byte(evID.String())},
					{Key: headers.EventType, Value: []byte(info.Name)},
					{Key: headers.AggregateType, Value: []byte("order")},
					{Key: headers.AggregateID, Value: []byte(key)},
				}}, func(_ *kgo.Record, err error) {
					if err != nil {
						produceErrs.Add(1)
						return
					}
					produced.Add(1)
				})
			}
		}
	}()
	stopTheLoad := sync.OnceFunc(func() {
		close(stopLoad)
		<-loadDone
		_ = cl.Flush(context.WithoutCancel(ctx))
	})
	defer stopTheLoad()

	tl := &timeline{}
	slots := map[int]*member{}
	var slotsMu sync.Mutex
	spec := DeployMemberSpec{Env: env, Schema: schema, Group: group, Topic: topic, Protocol: protocol,
		FailShare: o.FailShare, RetryDelays: o.RetryDelays, SessionTimeout: o.SessionTimeout, HeartbeatInterval: o.HeartbeatInterval}
	start := func(slot int) (*member, error) {
		s := spec
		if choice == ChoiceStatic {
			s.InstanceID = fmt.Sprintf("member-%d", slot)
		}
		m, err := startMember(ctx, o.MemberCommand, s, slot, tl)
		if err != nil {
			return nil, err
		}
		slotsMu.Lock()
		slots[slot] = m
		slotsMu.Unlock()
		return m, nil
	}
	defer func() {
		slotsMu.Lock()
		defer slotsMu.Unlock()
		for _, m := range slots {
			_ = m.cmd.Process.Signal(syscall.SIGTERM)
		}
		for _, m := range slots {
			<-m.exited
		}
	}()
	waitReady := func(m *member) error {
		select {
		case <-m.ready:
			return nil
		case <-m.exited:
			return errors.New("a member exited before it was ready (see its log above)")
		case <-time.After(2 * time.Minute):
			return errors.New("a member was not ready within 2 minutes")
		case <-ctx.Done():
			return ctx.Err()
		}
	}
	stopMember := func(slot int, sig syscall.Signal) error {
		slotsMu.Lock()
		m := slots[slot]
		delete(slots, slot)
		slotsMu.Unlock()
		if err := m.cmd.Process.Signal(sig); err != nil {
			return err
		}
		select {
		case <-m.exited:
			return nil
		case <-time.After(time.Minute):
			return fmt.Errorf("member %d did not exit within a minute of %v", slot, sig)
		}
	}

	initial := o.Members
	if scenario == ScenarioScale {
		initial = 1
	}
	for i := range initial {
		m, err := start(i)
		if err != nil {
			return row, err
		}
		if err := waitReady(m); err != nil {
			return row, err
		}
	}
	live := make([]int, initial)
	for i := range live {
		live[i] = i
	}
	if err := waitSettled(ctx, tl, live, o.Partitions); err != nil {
		return row, err
	}
	steadyFrom := time.Now()
	sleepCtx(ctx, o.Steady) // measuring the steady state: a benchmark's wait, not synchronisation
	eventFrom := time.Now()
	var steps []step
	settle := o.Settle
	switch scenario {
	case ScenarioRolling:
		for i := range initial {
			t0 := time.Now()
			if err := stopMember(i, syscall.SIGTERM); err != nil {
				return row, err
			}
			m, err := start(i)
			if err != nil {
				return row, err
			}
			if err := waitReady(m); err != nil {
				return row, err
			}
			row.MaxRestartSeconds = max(row.MaxRestartSeconds, time.Since(t0).Seconds())
			steps = append(steps, step{slot: i, from: t0, to: time.Now()})
		}
	case ScenarioScale:
		// Each step waits for the group to settle (every member owns a
		// partition, each partition one owner): what one scaling step
		// costs, not a pile of overlapping ones.
		for i := 1; i < o.MaxMembers; i++ {
			t0 := time.Now()
			m, err := start(i)
			if err != nil {
				return row, err
			}
			if err := waitReady(m); err != nil {
				return row, err
			}
			live = append(live, i)
			if err := waitSettled(ctx, tl, live, o.Partitions); err != nil {
				return row, err
			}
			steps = append(steps, step{slot: i, from: t0, to: time.Now()})
		}
		for i := o.MaxMembers - 1; i >= 1; i-- {
			t0 := time.Now()
			if err := stopMember(i, syscall.SIGTERM); err != nil {
				return row, err
			}
			live = live[:len(live)-1]
			if err := waitSettled(ctx, tl, live, o.Partitions); err != nil {
				return row, err
			}
			steps = append(steps, step{slot: i, from: t0, to: time.Now()})
		}
	case ScenarioKill:
		t0 := time.Now()
		if err := stopMember(0, syscall.SIGKILL); err != nil {
			return row, err
		}
		m, err := start(0)
		if err != nil {
			return row, err
		}
		if err := waitReady(m); err != nil {
			return row, err
		}
		row.MaxRestartSeconds = time.Since(t0).Seconds()
		steps = append(steps, step{slot: 0, from: t0, to: time.Now()})
		settle += o.SessionTimeout
	default:
		return row, fmt.Errorf("scenario %q: want %s, %s or %s", scenario, ScenarioRolling, ScenarioScale, ScenarioKill)
	}
	eventTo := time.Now()
	row.EventSeconds = eventTo.Sub(eventFrom).Seconds()
	sleepCtx(ctx, settle) // the load runs on past the event
	windowTo := time.Now()
	stopTheLoad()
	if n := produceErrs.Load(); n > 0 {
		return row, fmt.Errorf("%d records could not be produced", n)
	}
	row.Events = produced.Load()
	deadline := time.Now().Add(3 * time.Minute)
	var applied int64
	for time.Now().Before(deadline) && ctx.Err() == nil {
		if err := pool.QueryRow(ctx, `SELECT count(*) FROM `+table).Scan(&applied); err != nil {
			return row, err
		}
		if applied >= row.Events {
			break
		}
		sleepCtx(ctx, 200*time.Millisecond) // polling the drain
	}
	row.Lost = row.Events - applied
	if err := pool.QueryRow(ctx, `SELECT count(*) FROM `+table+` WHERE n > 1`).Scan(&row.AppliedTwice); err != nil {
		return row, err
	}
	// Let every member print its last counters.
	slotsMu.Lock()
	for _, m := range slots {
		_ = m.cmd.Process.Signal(syscall.SIGTERM)
	}
	for _, m := range slots {
		<-m.exited
	}
	slotsMu.Unlock()
	row.FetchedAgain = tl.fetchedAgain()
	row.Rebalances, row.PartitionsMoved = tl.changes(eventFrom, windowTo)
	row.Protocol = tl.protocol()

	applies, err := readApplies(ctx, pool, table)
	if err != nil {
		return row, err
	}
	all := map[int32]bool{}
	for p := range o.Partitions {
		all[int32(p)] = true
	}
	row.MaxStallMs = ms(maxStall(applies, all, eventFrom, windowTo))
	for _, s := range steps {
		owned := tl.owned(s.slot, s.from, s.to)
		others := map[int32]bool{}
		for p := range all {
			if !owned[p] {
				others[p] = true
			}
		}
		row.MaxStallOthersMs = max(row.MaxStallOthersMs, ms(maxStall(applies, others, s.from, s.to)))
	}
	row.SteadyP99Ms = ms(latencyP99(applies, steadyFrom, eventFrom))
	row.EventP99Ms = ms(latencyP99(applies, eventFrom, windowTo))
	return row, nil
}

// waitSettled polls the timeline until the live members settled (up to 3
// minutes: a static member that left holds its partitions for the session
// timeout).
func waitSettled(ctx context.Context, tl *timeline, live []int, partitions int) error {
	deadline := time.Now().Add(3 * time.Minute)
	for !tl.settled(live, partitions) {
		if time.Now().After(deadline) {
			return fmt.Errorf("members %v did not settle on the %d partitions within 3 minutes", live, partitions)
		}
		sleepCtx(ctx, 20*time.Millisecond) // polling the members' reports
		if ctx.Err() != nil {
			return ctx.Err()
		}
	}
	return nil
}

// childCommand is a benchmark's child process: command (default this
// executable's hidden `bench <sub>`), with spec as JSON in the environment
// variable specEnv (not argv: specs hold the database URL), SIGTERMed when
// ctx ends.
func childCommand(ctx context.Context, command []string, sub, specEnv string, spec any) (*exec.Cmd, error) {
	if len(command) == 0 {
		exe, err := os.Executable()
		if err != nil {
			return nil, err
		}
		command = []string{exe, "bench", sub}
	}
	b, err := json.Marshal(spec)
	if err != nil {
		return nil, err
	}
	cmd := exec.CommandContext(ctx, command[0], command[1:]...)
	cmd.Cancel = func() error { return cmd.Process.Signal(syscall.SIGTERM) }
	cmd.WaitDelay = 30 * time.Second
	cmd.Env = append(childEnviron(), specEnv+"="+string(b), "EVENTLINE_LOG_LEVEL=warn")
	return cmd, nil
}

// childEnviron is this process's environment for a child process, without
// EVENTLINE_CPUPROFILE: a child inheriting it would write its profile over
// this process's one. A child is profiled by its own variable
// (EVENTLINE_RELAY_CPUPROFILE, EVENTLINE_GROUP_CPUPROFILE).
func childEnviron() []string {
	env := os.Environ()
	return slices.DeleteFunc(env, func(kv string) bool { return strings.HasPrefix(kv, "EVENTLINE_CPUPROFILE=") })
}

func sleepCtx(ctx context.Context, d time.Duration) {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
	case <-t.C:
	}
}

// startMember starts a member process for slot and follows its output.
func startMember(ctx context.Context, command []string, spec DeployMemberSpec, slot int, tl *timeline) (*member, error) {
	cmd, err := childCommand(ctx, command, "deploy-member", DeployMemberSpecEnv, spec)
	if err != nil {
		return nil, err
	}
	cmd.Stderr = os.Stderr
	out, err := cmd.StdoutPipe()
	if err != nil {
		return nil, err
	}
	if err := cmd.Start(); err != nil {
		return nil, err
	}
	m := &member{cmd: cmd, ready: make(chan struct{}), exited: make(chan struct{})}
	go func() {
		defer close(m.exited)
		var lastDups int64
		sc := bufio.NewScanner(out)
		readyOnce := sync.OnceFunc(func() { close(m.ready) })
		for sc.Scan() {
			var l memberLine
			if json.Unmarshal(sc.Bytes(), &l) != nil {
				continue
			}
			t := time.UnixMilli(l.T)
			switch l.Ev {
			case "ready":
				tl.setProtocol(l.Proto)
				readyOnce()
			case "assigned", "revoked":
				tl.mu.Lock()
				tl.evs = append(tl.evs, ownership{t: t, slot: slot, assigned: l.Ev == "assigned", parts: l.Parts})
				tl.mu.Unlock()
			case "stats":
				tl.mu.Lock()
				tl.dups += l.Dups - lastDups
				tl.mu.Unlock()
				lastDups = l.Dups
			}
		}
		_ = cmd.Wait()
		tl.mu.Lock()
		tl.evs = append(tl.evs, ownership{t: time.Now(), slot: slot, exit: true})
		tl.mu.Unlock()
	}()
	return m, nil
}

// apply is one applied event as the table holds it.
type apply struct {
	partition int32
	attempt   int32
	produced  time.Time
	applied   time.Time
}

func readApplies(ctx context.Context, pool *pgxpool.Pool, table string) ([]apply, error) {
	rows, err := pool.Query(ctx, `SELECT partition, attempt, produced_at, applied_at FROM `+table+` ORDER BY applied_at`)
	if err != nil {
		return nil, err
	}
	return pgx.CollectRows(rows, func(r pgx.CollectableRow) (apply, error) {
		var a apply
		err := r.Scan(&a.partition, &a.attempt, &a.produced, &a.applied)
		return a, err
	})
}

// maxStall is the longest time one of parts went without an apply, over
// the gaps that overlap [from, to] (applies sorted by time).
func maxStall(applies []apply, parts map[int32]bool, from, to time.Time) time.Duration {
	last := map[int32]time.Time{}
	var worst time.Duration
	for _, a := range applies {
		if !parts[a.partition] {
			continue
		}
		if prev, ok := last[a.partition]; ok && a.applied.After(from) && prev.Before(to) {
			worst = max(worst, a.applied.Sub(prev))
		}
		last[a.partition] = a.applied
	}
	return worst
}

// latencyP99 is the p99 of record time → applied of the first attempts
// produced in [from, to).
func latencyP99(applies []apply, from, to time.Time) time.Duration {
	var ds []time.Duration
	for _, a := range applies {
		if a.attempt == 0 && !a.produced.Before(from) && a.produced.Before(to) {
			ds = append(ds, a.applied.Sub(a.produced))
		}
	}
	slices.Sort(ds)
	return percentile(ds, 0.99)
}
