package relay_test

import (
	"context"
	"errors"
	"net"
	"net/url"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kfake"
	"github.com/twmb/franz-go/pkg/kgo"
	"github.com/twmb/franz-go/pkg/kmsg"
	"github.com/twmb/franz-go/pkg/sasl/scram"

	"github.com/eventline/eventline/internal/testkit"
	"github.com/eventline/eventline/migrate"
	"github.com/eventline/eventline/pipeline"
	"github.com/eventline/eventline/relay"
)

// Configuration errors that waiting cannot heal end Run with their cause
// instead of being retried forever: refused database credentials, a missing
// database, a missing outbox table (migrations not run), an outbox the role
// may not touch, refused SASL credentials, topics the principal may not
// create.
func TestRunReturnsUnrecoverableStartupErrors(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	brokers := testkit.Kafka(t)
	migrated := testkit.Postgres(t)
	db, err := pgx.Connect(ctx, migrated)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { db.Close(context.Background()) }) // after the subtests, which run in parallel
	if _, err := migrate.Migrate(ctx, db, migrate.Options{}); err != nil {
		t.Fatal(err)
	}
	// A role that may log in but holds no privilege on the outbox (roles
	// are cluster-wide: a unique name, dropped at the end).
	role := testkit.UniqueName(t, "r")
	if _, err := db.Exec(ctx, `CREATE ROLE `+pgx.Identifier{role}.Sanitize()+` LOGIN PASSWORD 'secret'`); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if _, err := db.Exec(context.Background(), `DROP ROLE `+pgx.Identifier{role}.Sanitize()); err != nil {
			t.Errorf("dropping role: %v", err)
		}
	})

	// A SASL cluster: the admin may do anything, "relay" nothing.
	sasl, err := kfake.NewCluster(kfake.NumBrokers(1), kfake.EnableSASL(), kfake.EnableACLs(),
		kfake.Superuser("SCRAM-SHA-256", "admin", "admin"), kfake.User("SCRAM-SHA-256", "relay", "relay"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(sasl.Close)
	// A broker refusing every SASL authentication the way Apache Kafka does
	// (kfake itself closes the connection instead, which a client cannot
	// tell from a network failure).
	refusing, err := kfake.NewCluster(kfake.NumBrokers(1), kfake.EnableSASL(), kfake.Superuser("SCRAM-SHA-256", "admin", "admin"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(refusing.Close)
	refusing.ControlKey(int16(kmsg.SASLAuthenticate), func(req kmsg.Request) (kmsg.Response, error, bool) {
		refusing.KeepControl()
		resp := req.ResponseKind().(*kmsg.SASLAuthenticateResponse)
		resp.SetVersion(req.GetVersion())
		resp.ErrorCode = kerr.SaslAuthenticationFailed.Code
		resp.ErrorMessage = kmsg.StringPtr("Authentication failed: Invalid username or password")
		return resp, nil, true
	})
	scramAs := func(user, pass string) []kgo.Opt {
		return []kgo.Opt{kgo.SASL(scram.Auth{User: user, Pass: pass}.AsSha256Mechanism())}
	}

	pgCode := func(code string) func(error) bool {
		return func(err error) bool {
			var pe *pgconn.PgError
			return errors.As(err, &pe) && pe.Code == code
		}
	}
	for _, tc := range []struct {
		name    string
		dbURL   string
		brokers []string
		opts    []kgo.Opt
		cause   func(error) bool
	}{
		{name: "wrong password", dbURL: withUser(t, migrated, "", "wrong"), cause: pgCode("28P01")},
		{name: "no such database", dbURL: withDatabase(t, migrated, testkit.UniqueName(t, "nodb")), cause: pgCode("3D000")},
		{name: "outbox table missing", dbURL: testkit.Postgres(t), cause: pgCode("42P01")},
		{name: "outbox not allowed", dbURL: withUser(t, migrated, role, "secret"), cause: pgCode("42501")},
		{name: "SASL credentials refused", dbURL: migrated, brokers: refusing.ListenAddrs(), opts: scramAs("admin", "wrong"),
			cause: func(err error) bool { return errors.Is(err, kerr.SaslAuthenticationFailed) }},
		{name: "topic creation not authorized", dbURL: migrated, brokers: sasl.ListenAddrs(), opts: scramAs("relay", "relay"),
			cause: func(err error) bool {
				return errors.Is(err, kerr.TopicAuthorizationFailed) || errors.Is(err, kerr.ClusterAuthorizationFailed)
			}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			if tc.brokers == nil {
				tc.brokers = brokers
			}
			r, err := relay.New(relay.Config{DatabaseURL: tc.dbURL, Brokers: tc.brokers, KafkaOpts: tc.opts,
				Pipeline:   testPipeline(t),
				MaxBackoff: 50 * time.Millisecond, StandbyRetry: 50 * time.Millisecond, Logger: testkit.Logger(t)})
			if err != nil {
				t.Fatal(err)
			}
			defer r.Close()
			// Retried forever, Run would return nil when this context ends.
			rctx, cancel := context.WithTimeout(ctx, 45*time.Second)
			defer cancel()
			err = r.Run(rctx)
			if err == nil {
				t.Fatalf("Run returned nil after %v: it kept retrying until its context ended", rctx.Err())
			}
			if !tc.cause(err) {
				t.Fatalf("Run returned %v (%T), not the expected cause", err, errors.Unwrap(err))
			}
			t.Logf("Run: %v", err)
			if !strings.HasPrefix(err.Error(), "relay: ") || strings.Contains(err.Error(), "wrong@") {
				t.Errorf("error %q: want a relay error that does not show the password", err)
			}
		})
	}
}

// Errors that heal by waiting keep Run retrying: a broker or database that
// refuses connections (it is starting, or the network is down).
func TestRunRetriesUnreachableBrokerAndDatabase(t *testing.T) {
	t.Parallel()
	migrated := testkit.Postgres(t)
	db, err := pgx.Connect(context.Background(), migrated)
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close(context.Background())
	if _, err := migrate.Migrate(context.Background(), db, migrate.Options{}); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name string
		cfg  func(dead string) relay.Config
	}{
		{"broker", func(dead string) relay.Config {
			return relay.Config{DatabaseURL: migrated, Brokers: []string{dead}}
		}},
		{"database", func(dead string) relay.Config {
			return relay.Config{DatabaseURL: "postgres://u:p@" + dead + "/db?connect_timeout=2", Brokers: testkit.Kafka(t)}
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			dead, attempts := refusingListener(t)
			cfg := tc.cfg(dead)
			cfg.Pipeline = testPipeline(t)
			cfg.MaxBackoff = 50 * time.Millisecond
			cfg.Logger = testkit.Logger(t)
			r, err := relay.New(cfg)
			if err != nil {
				t.Fatal(err)
			}
			defer r.Close()
			ctx, cancel := context.WithCancel(context.Background())
			done := make(chan error, 1)
			go func() { done <- r.Run(ctx) }()
			for range 6 { // a client may dial more than once per attempt; six show Run retrying
				select {
				case <-attempts:
				case err := <-done:
					t.Fatalf("Run returned %v while the %s was only unreachable", err, tc.name)
				case <-time.After(60 * time.Second):
					t.Fatal("no connection attempt within 60s")
				}
			}
			cancel()
			if err := <-done; err != nil {
				t.Fatalf("Run after cancel: %v", err)
			}
		})
	}
}

// refusingListener accepts connections and closes them at once, reporting
// each on attempts: a server that is not up yet.
func refusingListener(t *testing.T) (addr string, attempts <-chan struct{}) {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	ch := make(chan struct{}, 1024)
	var wg sync.WaitGroup
	wg.Go(func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			c.Close()
			select {
			case ch <- struct{}{}:
			default:
			}
		}
	})
	t.Cleanup(func() { ln.Close(); wg.Wait() })
	return ln.Addr().String(), ch
}

// A Relay runs once: a second Run, while the first runs or after it
// returned, is refused.
func TestRunTwiceRefused(t *testing.T) {
	t.Parallel()
	b := setup(t)
	r, stop := b.start(relay.Config{})
	waitFor(t, func() bool { return r.Ready() == nil })
	if err := r.Run(context.Background()); !errors.Is(err, relay.ErrAlreadyRunning) {
		t.Fatalf("second Run while running: %v, want ErrAlreadyRunning", err)
	}
	stop()
	if err := r.Run(context.Background()); !errors.Is(err, relay.ErrAlreadyRunning) {
		t.Fatalf("Run after the first returned: %v, want ErrAlreadyRunning", err)
	}
}

// A broker that stops answering while a batch waits for its acks: Run
// returns within ShutdownTimeout of the cancel (plus a margin), and the
// unacknowledged rows stay in the outbox to be published again.
func TestRunReturnsWithinShutdownTimeoutWhenBrokerStopsAnswering(t *testing.T) {
	t.Parallel()
	b := setup(t)
	c, err := kfake.NewCluster(kfake.NumBrokers(1), kfake.DefaultNumPartitions(3))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(c.Close)
	b.brokers = c.ListenAddrs()
	produced := make(chan struct{})
	var once sync.Once
	c.ControlKey(int16(kmsg.Produce), func(kmsg.Request) (kmsg.Response, error, bool) {
		c.KeepControl()
		once.Do(func() { close(produced) })
		return nil, nil, true // handled, never answered
	})
	b.appendTickets([]string{uuid.NewString(), uuid.NewString(), uuid.NewString()}, 4)
	const shutdown = 2 * time.Second
	r, err := relay.New(relay.Config{DatabaseURL: b.dbURL, Brokers: b.brokers, Pipeline: b.pipe(), ShutdownTimeout: shutdown, Logger: testkit.Logger(t)})
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	done := make(chan error, 1)
	go func() { done <- r.Run(ctx) }()
	select {
	case <-produced:
	case err := <-done:
		t.Fatalf("Run returned early: %v", err)
	case <-time.After(60 * time.Second):
		t.Fatal("no produce request within 60s")
	}
	cancel()
	start := time.Now()
	select {
	case err := <-done:
		if err != nil {
			t.Fatalf("Run: %v", err)
		}
	case <-time.After(shutdown + 10*time.Second):
		t.Fatalf("Run still running %v after cancel (ShutdownTimeout %v)", time.Since(start), shutdown)
	}
	took := time.Since(start)
	t.Logf("Run returned %v after cancel", took)
	if took > shutdown+2*time.Second {
		t.Errorf("Run took %v after cancel, ShutdownTimeout is %v", took, shutdown)
	}
	if n := b.outboxCount(); n != 12 {
		t.Errorf("%d rows left in the outbox, want all 12 (none was acknowledged)", n)
	}
}

func withUser(t *testing.T, dbURL, user, pass string) string {
	t.Helper()
	u, err := url.Parse(dbURL)
	if err != nil {
		t.Fatal(err)
	}
	if user == "" {
		user = u.User.Username()
	}
	u.User = url.UserPassword(user, pass)
	return u.String()
}

func withDatabase(t *testing.T, dbURL, name string) string {
	t.Helper()
	u, err := url.Parse(dbURL)
	if err != nil {
		t.Fatal(err)
	}
	u.Path = "/" + name
	return u.String()
}

// testPipeline routes one event type to a topic of its own.
func testPipeline(t *testing.T) *pipeline.Pipeline {
	return &pipeline.Pipeline{Topics: []pipeline.Topic{{Name: testkit.UniqueName(t, "t"), Partitions: 1, ReplicationFactor: 1, Events: []string{"T"}}}}
}
