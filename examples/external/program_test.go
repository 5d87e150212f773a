package shipping_test

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/twmb/franz-go/pkg/kfake"

	"github.com/eventline/eventline/eventlinetest"
	"github.com/eventline/eventline/migrate"

	"example.com/shipping"
)

// The service as it is deployed: cmd/shipping (the program the README
// quotes) built and run as a process, configured by its environment only,
// in each mode of the outbox. Shipments created through its API reach its
// tracking table through its own relay and consumer group, exactly once;
// SIGTERM stops it with exit code 0 within its shutdown bound.
//
// PostgreSQL is the dev stack's, a new database for each run. The broker
// (kfake, as the dev stack's) and the registry are each run's own: the
// topic and the subjects are fixed by eventline.yaml, and
// TestShippingEndToEnd starts from an unregistered registry and rewinds the
// topic to its first offset, so they must not meet the program's.
func TestShippingProgram(t *testing.T) {
	bin := filepath.Join(t.TempDir(), "shipping")
	if out, err := exec.Command("go", "build", "-o", bin, "./cmd/shipping").CombinedOutput(); err != nil {
		t.Fatalf("go build ./cmd/shipping: %v\n%s", err, out)
	}
	for _, mode := range []migrate.Mode{migrate.ModePoll, migrate.ModeLogical} {
		t.Run(string(mode), func(t *testing.T) { runProgram(t, bin, mode) })
	}
	// A setting it cannot use ends it at once, non-zero, naming the
	// variable: here the producer's mode in its old words.
	cmd := exec.Command(bin)
	cmd.Env = []string{"DATABASE_URL=postgres://127.0.0.1:1/none", "KAFKA_BROKERS=127.0.0.1:1",
		"SCHEMA_REGISTRY_URL=http://127.0.0.1:1", "EVENTLINE_MODE=table"}
	out, err := cmd.CombinedOutput()
	var exit *exec.ExitError
	if !errors.As(err, &exit) || exit.ExitCode() != 1 || !strings.Contains(string(out), "EVENTLINE_MODE") {
		t.Fatalf("EVENTLINE_MODE=table: %v, %s; want exit code 1 naming EVENTLINE_MODE", err, out)
	}
}

func runProgram(t *testing.T, bin string, mode migrate.Mode) {
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	dsn, dbName := newDatabase(t, ctx, "shipping_"+string(mode))
	db, err := pgxpool.New(ctx, dsn)
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	kafka, err := kfake.NewCluster(kfake.NumBrokers(1))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(kafka.Close)
	// CI registered the schemas; the service starts lookup-only.
	reg := eventlinetest.StartRegistry(t)
	eventlineCLI(t, reg.URL(), "schemas", "register", "--config", "eventline.yaml")

	// The database URL as a mounted secret file, as the eventline chart
	// wires it (never in the environment itself).
	dsnFile := filepath.Join(t.TempDir(), "database-url")
	if err := os.WriteFile(dsnFile, []byte(dsn+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	env := []string{"DATABASE_URL_FILE=" + dsnFile, "KAFKA_BROKERS=" + strings.Join(kafka.ListenAddrs(), ","),
		"SCHEMA_REGISTRY_URL=" + reg.URL(), "EVENTLINE_MODE=" + string(mode), "SHIPPING_ADDR=127.0.0.1:0", "EVENTLINE_METRICS_ADDR=127.0.0.1:0"}
	if mode == migrate.ModeLogical {
		// The dev stack's role is a superuser: it may restrict who emits,
		// and it is the only role that does (producer and relay).
		var role string
		if err := db.QueryRow(ctx, `SELECT current_user`).Scan(&role); err != nil {
			t.Fatal(err)
		}
		env = append(env, "EVENTLINE_EMITTER_ROLES="+role)
	}
	p := startProgram(t, bin, env)

	p.post(t, `{"order_ref": "o-1", "parcels": 0, "carrier": "DHL"}`, http.StatusBadRequest)
	var ids []string
	for i := range 5 {
		body := p.post(t, fmt.Sprintf(`{"order_ref": "order-%d", "parcels": %d, "carrier": "UPS"}`, i, i+1), http.StatusCreated)
		var created struct{ ID string }
		if err := json.Unmarshal(body, &created); err != nil || created.ID == "" {
			t.Fatalf("POST /shipments answered %q (%v), want {\"id\": …}", body, err)
		}
		ids = append(ids, created.ID)
	}
	waitFor(t, ctx, "5 shipments in transit", func() bool {
		return count(t, db, `SELECT count(*) FROM shipping.tracking WHERE shipment_id = ANY($1::uuid[]) AND status = 'in_transit' AND carrier = 'UPS'`, ids) == 5
	})
	waitFor(t, ctx, "the outbox drained", func() bool { return count(t, db, `SELECT count(*) FROM shipping.eventline_outbox`) == 0 })
	// The probes a Deployment asks: live, and ready once the relay holds
	// its session and the group joined.
	for _, path := range []string{"/healthz", "/readyz"} {
		waitFor(t, ctx, path+" answers 200", func() bool { return p.get(t, path) == http.StatusOK })
	}
	if n := count(t, db, `SELECT count(*) FROM shipping.tracking WHERE applications <> 1`); n != 0 {
		t.Fatalf("%d shipments applied more than once", n)
	}
	if mode == migrate.ModeLogical {
		// Set up by the program: the slot it streams, and only the
		// emitters it named may write events.
		if n := count(t, db, `SELECT count(*) FROM pg_replication_slots WHERE slot_name = $1`, migrate.SlotName(dbName, shipping.Schema)); n != 1 {
			t.Fatalf("replication slot %s: %d found", migrate.SlotName(dbName, shipping.Schema), n)
		}
		if acc, err := migrate.ReadEmitAccess(ctx, db); err != nil || acc.Public {
			t.Fatalf("emit access %+v, %v: want PUBLIC revoked", acc, err)
		}
	}
	p.stop(t, 30*time.Second)
}

// newDatabase creates a database on the stack's server and returns its URL
// and name. It is left in place, thrown away with the stack: dropping it
// needs its logical slot dropped first, which fails for as long as the
// walsender of the stopped program still holds it.
func newDatabase(t *testing.T, ctx context.Context, prefix string) (dsn, name string) {
	t.Helper()
	admin, err := pgx.Connect(ctx, stack["DATABASE_URL"])
	if err != nil {
		t.Fatal(err)
	}
	defer admin.Close(context.WithoutCancel(ctx))
	name = fmt.Sprintf("%s_%d", prefix, time.Now().UnixNano())
	if _, err := admin.Exec(ctx, "CREATE DATABASE "+name); err != nil {
		t.Fatal(err)
	}
	u, err := url.Parse(stack["DATABASE_URL"])
	if err != nil {
		t.Fatal(err)
	}
	u.Path = "/" + name
	return u.String(), name
}

// program is the service's process.
type program struct {
	cmd    *exec.Cmd
	addr   string        // its HTTP API
	probes string        // its /healthz and /readyz
	done   chan struct{} // closed when it exited
	err    error         // its exit, once done
	mu     sync.Mutex
	log    strings.Builder // its stderr
}

// startProgram starts bin with env as its whole environment (secrets go
// there, never in argv) and waits until it serves. Its log is shown when
// the test fails; it is killed if still running when the test ends.
func startProgram(t *testing.T, bin string, env []string) *program {
	t.Helper()
	p := &program{cmd: exec.Command(bin), done: make(chan struct{})}
	p.cmd.Env = env
	stderr, err := p.cmd.StderrPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := p.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	serving := make(chan [2]string, 1)
	go func() {
		sc := bufio.NewScanner(stderr)
		for sc.Scan() {
			line := sc.Text()
			p.mu.Lock()
			p.log.WriteString(line + "\n")
			p.mu.Unlock()
			if _, rest, ok := strings.Cut(line, `msg="shipping: serving" addr=`); ok {
				addr, rest, _ := strings.Cut(rest, " probes=")
				probes, _, _ := strings.Cut(rest, " ")
				serving <- [2]string{addr, probes}
			}
		}
		_, _ = io.Copy(io.Discard, stderr)
		p.err = p.cmd.Wait() // after stderr is read to its end
		close(p.done)
	}()
	t.Cleanup(func() {
		select {
		case <-p.done:
		default:
			_ = p.cmd.Process.Kill()
			<-p.done
		}
		if t.Failed() {
			t.Logf("the program's log:\n%s", p.logged())
		}
	})
	select {
	case a := <-serving:
		p.addr, p.probes = a[0], a[1]
	case <-p.done:
		t.Fatalf("the program exited before serving: %v", p.err)
	case <-time.After(2 * time.Minute):
		t.Fatal("the program did not serve within 2 minutes")
	}
	return p
}

func (p *program) logged() string {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.log.String()
}

// get asks path of the probes' port and returns the status code.
func (p *program) get(t *testing.T, path string) int {
	t.Helper()
	resp, err := http.Get("http://" + p.probes + path)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	_, _ = io.Copy(io.Discard, resp.Body)
	return resp.StatusCode
}

// post sends body to POST /shipments and returns the answer, which must
// have status want.
func (p *program) post(t *testing.T, body string, want int) []byte {
	t.Helper()
	resp, err := http.Post("http://"+p.addr+"/shipments", "application/json", strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	if resp.StatusCode != want {
		t.Fatalf("POST /shipments %s: %s %s, want %d", body, resp.Status, b, want)
	}
	return b
}

// stop sends SIGTERM and requires exit code 0 within bound.
func (p *program) stop(t *testing.T, bound time.Duration) {
	t.Helper()
	if err := p.cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	start := time.Now()
	select {
	case <-p.done:
	case <-time.After(bound):
		t.Fatalf("the program did not exit within %s of SIGTERM", bound)
	}
	var exit *exec.ExitError
	if errors.As(p.err, &exit) {
		t.Fatalf("the program exited with code %d after SIGTERM, want 0", exit.ExitCode())
	} else if p.err != nil {
		t.Fatal(p.err)
	}
	t.Logf("exited with code 0 %s after SIGTERM", time.Since(start).Round(time.Millisecond))
	if !strings.Contains(p.logged(), `msg="shipping: stopped"`) {
		t.Fatal(`exit code 0 without "shipping: stopped" in the log`)
	}
}
