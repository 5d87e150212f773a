// Package testkit is the integration-test harness shared by eventline's
// packages. One variable picks the Kafka the tests run against:
//
//	EVENTLINE_TEST_KAFKA unset        each test gets an in-process kfake cluster
//	EVENTLINE_TEST_KAFKA=host:port,…  every test uses that broker (e.g. the real
//	                                  Apache Kafka of `make test-kafka`)
//
// The same test code runs on both; topic and group names are unique per test
// so tests can share a real broker.
//
// PostgreSQL comes from EVENTLINE_TEST_DATABASE_URL when set (a superuser
// URL; each test gets a fresh database on that server) or else from a
// throwaway cluster started once per test binary (see Main).
package testkit

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"io"
	"log/slog"
	"net/http/httptest"
	"net/url"
	"os"
	"regexp"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kfake"
	"github.com/twmb/franz-go/pkg/kgo"
	"go.uber.org/goleak"

	"github.com/eventline/eventline/internal/devbroker"
	"github.com/eventline/eventline/internal/dsn"
	"github.com/eventline/eventline/internal/pgcluster"
	"github.com/eventline/eventline/registry"
)

// KafkaEnv is the variable naming an external broker for the tests.
const KafkaEnv = "EVENTLINE_TEST_KAFKA"

// DatabaseEnv is the variable naming an external PostgreSQL server.
const DatabaseEnv = "EVENTLINE_TEST_DATABASE_URL"

var (
	pgOnce    sync.Once
	pgCluster *pgcluster.Cluster
	pgDir     string
	pgURL     string
	pgErr     error
)

// Main runs a package's tests, then the cleanups, then stops the package's
// PostgreSQL cluster (if one was started) and checks for leaked goroutines.
// Call it from TestMain: func TestMain(m *testing.M) { testkit.Main(m) }.
// It does not return.
func Main(m *testing.M, cleanups ...func()) {
	code := m.Run()
	for _, f := range cleanups {
		f()
	}
	if pgCluster != nil {
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		if err := pgCluster.Stop(ctx); err != nil {
			fmt.Fprintln(os.Stderr, "testkit: stopping postgres:", err)
		}
		cancel()
		os.RemoveAll(pgDir)
	}
	if code == 0 {
		if err := goleak.Find(goleakOptions()...); err != nil {
			fmt.Fprintln(os.Stderr, "testkit: leaked goroutines:", err)
			code = 1
		}
	}
	os.Exit(code)
}

func goleakOptions() []goleak.Option { return nil }

// Logger returns a logger writing to t's log, so output shows only for
// failing tests (or with -v).
func Logger(t testing.TB) *slog.Logger {
	return slog.New(slog.NewTextHandler(tWriter{t}, &slog.HandlerOptions{Level: slog.LevelDebug}))
}

// CapturingLogger is Logger whose output is also kept in the returned
// buffer, for a test asserting what was logged.
func CapturingLogger(t testing.TB) (*slog.Logger, *SyncBuffer) {
	buf := &SyncBuffer{}
	return slog.New(slog.NewTextHandler(io.MultiWriter(tWriter{t}, buf), &slog.HandlerOptions{Level: slog.LevelDebug})), buf
}

type tWriter struct{ t testing.TB }

func (w tWriter) Write(p []byte) (int, error) {
	w.t.Helper()
	w.t.Log(strings.TrimRight(string(p), "\n"))
	return len(p), nil
}

func quietLogger() *slog.Logger {
	return slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelWarn}))
}

// RealKafka reports whether the tests run against an external broker.
func RealKafka() bool { return os.Getenv(KafkaEnv) != "" }

// Kafka returns seed brokers for t: the external broker from
// EVENTLINE_TEST_KAFKA, or a fresh in-process kfake cluster closed when t
// ends.
func Kafka(t testing.TB) []string {
	t.Helper()
	if env := os.Getenv(KafkaEnv); env != "" {
		return strings.Split(env, ",")
	}
	c, err := devbroker.New(devbroker.Options{}, kfake.NumBrokers(1), kfake.AllowAutoTopicCreation(), kfake.DefaultNumPartitions(3))
	if err != nil {
		t.Fatalf("starting kfake: %v", err)
	}
	t.Cleanup(c.Close)
	return c.ListenAddrs()
}

// Client returns a kgo client for brokers with opts, closed when t ends.
func Client(t testing.TB, brokers []string, opts ...kgo.Opt) *kgo.Client {
	t.Helper()
	cl, err := kgo.NewClient(append([]kgo.Opt{kgo.SeedBrokers(brokers...)}, opts...)...)
	if err != nil {
		t.Fatalf("creating kafka client: %v", err)
	}
	t.Cleanup(cl.Close)
	return cl
}

// Topic creates a topic with a name unique to t and returns its name; opts
// are the client's (TLS and SASL for a secured cluster).
func Topic(t testing.TB, brokers []string, partitions int32, opts ...kgo.Opt) string {
	t.Helper()
	return ReplicatedTopic(t, brokers, partitions, 1, opts...)
}

// ReplicatedTopic is Topic with replicas replicas per partition (a cluster's
// topic: KafkaCluster).
func ReplicatedTopic(t testing.TB, brokers []string, partitions int32, replicas int16, opts ...kgo.Opt) string {
	t.Helper()
	name := UniqueName(t, "t")
	adm := kadm.NewClient(Client(t, brokers, opts...))
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	resp, err := adm.CreateTopic(ctx, partitions, replicas, nil, name)
	if err == nil {
		err = resp.Err
	}
	if err != nil {
		t.Fatalf("creating topic %s: %v", name, err)
	}
	// A real cluster answers CreateTopics before every broker's metadata
	// shows the topic; a consumer started now may be told it does not
	// exist. Return once metadata shows every partition with a leader.
	WaitFor(t, 30*time.Second, "topic "+name+" in the cluster's metadata", func() bool {
		td, err := adm.ListTopics(ctx, name)
		if err != nil || !td.Has(name) || td[name].Err != nil || len(td[name].Partitions) != int(partitions) {
			return false
		}
		for _, p := range td[name].Partitions {
			if p.Err != nil || p.Leader < 0 {
				return false
			}
		}
		return true
	})
	return name
}

var unsafeChars = regexp.MustCompile(`[^a-zA-Z0-9_]+`)

// UniqueName returns prefix + the test's name + a random suffix, usable as a
// topic, group or database name.
func UniqueName(t testing.TB, prefix string) string {
	b := make([]byte, 4)
	_, _ = rand.Read(b)
	name := strings.ToLower(unsafeChars.ReplaceAllString(t.Name(), "_"))
	if len(name) > 30 {
		name = name[:30]
	}
	return prefix + "_" + name + "_" + hex.EncodeToString(b)
}

// Postgres returns the URL of a fresh, empty database for t, dropped when t
// ends.
func Postgres(t testing.TB) string {
	t.Helper()
	server := postgresServer(t)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	conn, err := pgx.Connect(ctx, server)
	if err != nil {
		t.Fatalf("connecting to test postgres %s: %v", dsn.Redact(server), err)
	}
	defer conn.Close(ctx)
	db := UniqueName(t, "db")
	if _, err := conn.Exec(ctx, "CREATE DATABASE "+pgx.Identifier{db}.Sanitize()); err != nil {
		t.Fatalf("creating database: %v", err)
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		conn, err := pgx.Connect(ctx, server)
		if err != nil {
			t.Errorf("connecting to drop database: %v", err)
			return
		}
		defer conn.Close(ctx)
		// A logical-mode test leaves its replication slot, which would
		// refuse the drop (and hold WAL): its walsender is ended, then the
		// slot dropped (a slot being released may take a moment).
		for attempt := 0; ; attempt++ {
			_, err := conn.Exec(ctx, `SELECT pg_terminate_backend(active_pid) FROM pg_replication_slots WHERE database = $1 AND active_pid IS NOT NULL`, db)
			if err == nil {
				_, err = conn.Exec(ctx, `SELECT pg_drop_replication_slot(slot_name) FROM pg_replication_slots WHERE database = $1`, db)
			}
			if err == nil {
				break
			}
			if attempt == 50 || ctx.Err() != nil {
				t.Errorf("dropping the replication slots of %s: %v", db, err)
				break
			}
			time.Sleep(100 * time.Millisecond) // retry pacing while a walsender exits
		}
		if _, err := conn.Exec(ctx, "DROP DATABASE "+pgx.Identifier{db}.Sanitize()+" WITH (FORCE)"); err != nil {
			t.Errorf("dropping database %s: %v", db, err)
		}
	})
	u, err := url.Parse(server)
	if err != nil {
		t.Fatalf("parsing database url: %v", err)
	}
	u.Path = "/" + db
	return u.String()
}

func postgresServer(t testing.TB) string {
	t.Helper()
	if env := os.Getenv(DatabaseEnv); env != "" {
		return env
	}
	pgOnce.Do(func() {
		pgDir, pgErr = TempDir("eventline-testpg-")
		if pgErr != nil {
			return
		}
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
		defer cancel()
		pgCluster, pgErr = pgcluster.Start(ctx, pgcluster.Config{
			DataDir: pgDir + "/pg", Ephemeral: true, Logger: quietLogger(),
			// Order tests compare outbox ids with commit order.
			Settings: map[string]string{"track_commit_timestamp": "on"},
		})
		if pgErr == nil {
			pgURL = pgCluster.URL()
		}
	})
	if pgErr != nil {
		t.Fatalf("starting test postgres (is testkit.Main in TestMain?): %v", pgErr)
	}
	return pgURL
}

// TempDir makes a directory under the system temp dir that the postgres
// system user can traverse (t.TempDir's are 0700, which a cluster run as
// `postgres` by root cannot enter). The caller removes it.
func TempDir(pattern string) (string, error) {
	d, err := os.MkdirTemp("", pattern)
	if err != nil {
		return "", err
	}
	if err := os.Chmod(d, 0o711); err != nil {
		os.RemoveAll(d)
		return "", err
	}
	return d, nil
}

// DataDir is TempDir for one test, removed when t ends.
func DataDir(t testing.TB) string {
	t.Helper()
	d, err := TempDir("eventline-test-")
	if err != nil {
		t.Fatalf("creating data dir: %v", err)
	}
	t.Cleanup(func() { os.RemoveAll(d) })
	return d
}

// Registry starts a schema registry for t and returns its URL: eventline's
// enforcing registry (package registry) in memory, as the dev stack serves
// it, so a test registering an incompatible version gets the 409 that
// production would answer (srfake says "compatible" to everything).
func Registry(t testing.TB) string {
	t.Helper()
	return startRegistry(t, nil)
}

// RegistryWithAuth is Registry requiring HTTP Basic authentication as user
// with password on every endpoint (registry.Config.BasicAuth).
func RegistryWithAuth(t testing.TB, user, password string) string {
	t.Helper()
	return startRegistry(t, map[string]string{user: password})
}

func startRegistry(t testing.TB, users map[string]string) string {
	t.Helper()
	reg, err := registry.New(context.Background(), registry.Config{Store: &registry.MemoryStore{}, Logger: Logger(t), BasicAuth: users})
	if err != nil {
		t.Fatalf("starting the schema registry: %v", err)
	}
	srv := httptest.NewServer(reg.Handler())
	t.Cleanup(func() {
		srv.Close() // waits for requests in flight: nothing logs to t after it ends
		reg.Close()
	})
	return srv.URL
}
