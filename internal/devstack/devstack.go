// Package devstack runs eventline's embedded development stack in one
// process: a Kafka broker (franz-go's kfake, persisted to disk), a schema
// registry (package registry, enforcing compatibility, persisted in the
// broker), and a PostgreSQL cluster (see internal/pgcluster).
// `eventline dev` and `eventline demo` are thin wrappers around it, and the
// tests start it in-process.
//
// Layout of the data directory:
//
//	<data-dir>/kafka          kfake's persisted topics, records, groups (0700)
//	<data-dir>/pg             PGDATA of the PostgreSQL cluster (0700)
//	<data-dir>/pg.password    the cluster superuser's password (0600)
//	<data-dir>/pg.log         the server's log (0600)
//	<data-dir>/pg.initdb      present only while eventline's initdb runs
//
// A pg directory that is not empty, has no PG_VERSION and no pg.initdb
// marker is not eventline's: dev refuses to start rather than delete it.
package devstack

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/twmb/franz-go/pkg/kfake"

	"github.com/eventline/eventline/internal/devbroker"
	"github.com/eventline/eventline/internal/dsn"
	"github.com/eventline/eventline/internal/pgcluster"
	"github.com/eventline/eventline/registry"
)

// Default ports of the embedded services: the conventional Kafka and
// Confluent Schema Registry ports, so clients configured for a local
// Confluent stack work unchanged.
const (
	DefaultKafkaPort    = 9092
	DefaultRegistryPort = 8081
)

// Config configures a Stack. Zero values take the documented defaults.
type Config struct {
	// DataDir holds all state; restarting with the same DataDir keeps
	// topics, records, consumer group offsets and database contents.
	// Required.
	DataDir string

	// KafkaPort is the broker's loopback port. Default DefaultKafkaPort;
	// -1 picks a free port.
	KafkaPort int

	// RegistryPort is the schema registry's loopback port. Default
	// DefaultRegistryPort; -1 picks a free port.
	RegistryPort int

	// DatabaseURL, when set, is used instead of starting a PostgreSQL
	// cluster (the DATABASE_URL environment variable in `eventline dev`).
	DatabaseURL string

	// Partitions is the partition count of auto-created topics. Default 3.
	Partitions int

	// RegistryBasicAuth, when not empty, makes the schema registry require
	// HTTP Basic authentication as one of these users (user name →
	// password); see registry.Config.BasicAuth. Default nil: open, as the
	// registry listens on loopback only. `eventline dev` fills it from
	// EVENTLINE_DEV_REGISTRY_USER_INFO[_FILE]. Env does not print it.
	RegistryBasicAuth map[string]string

	// EphemeralPostgres runs PostgreSQL without fsync (tests only).
	EphemeralPostgres bool

	// Logger receives lifecycle logs. Default slog.Default().
	Logger *slog.Logger
}

func (c Config) withDefaults() Config {
	if c.KafkaPort == 0 {
		c.KafkaPort = DefaultKafkaPort
	}
	if c.RegistryPort == 0 {
		c.RegistryPort = DefaultRegistryPort
	}
	if c.Partitions == 0 {
		c.Partitions = 3
	}
	if c.Logger == nil {
		c.Logger = slog.Default()
	}
	return c
}

func (c Config) validate() error {
	if c.DataDir == "" {
		return errors.New("devstack: a data dir is required")
	}
	for name, p := range map[string]int{"kafka": c.KafkaPort, "registry": c.RegistryPort} {
		if p < -1 || p > 65535 {
			return fmt.Errorf("devstack: %s port %d out of range", name, p)
		}
	}
	if c.Partitions < 1 {
		return fmt.Errorf("devstack: partitions must be at least 1, got %d", c.Partitions)
	}
	return nil
}

// Stack is a running development stack.
type Stack struct {
	cfg      Config
	kafka    *devbroker.Broker
	registry *http.Server
	regLn    net.Listener
	reg      *registry.Registry
	regDone  chan struct{}
	pg       *pgcluster.Cluster // nil when DatabaseURL was given

	brokers     string
	registryURL string
	databaseURL string

	stopOnce sync.Once
	stopErr  error
}

// Start starts every service and returns when all accept connections. On
// error, whatever was already started is stopped again.
func Start(ctx context.Context, cfg Config) (_ *Stack, err error) {
	cfg = cfg.withDefaults()
	if err := cfg.validate(); err != nil {
		return nil, err
	}
	dataDir, err := filepath.Abs(cfg.DataDir)
	if err != nil {
		return nil, fmt.Errorf("error resolving data dir: %w", err)
	}
	cfg.DataDir = dataDir
	if err := os.MkdirAll(dataDir, 0o755); err != nil {
		return nil, fmt.Errorf("error creating data dir: %w", err)
	}

	s := &Stack{cfg: cfg}
	defer func() {
		if err != nil {
			_ = s.Stop(context.Background())
		}
	}()

	// PostgreSQL first: it is the slowest to start and the likeliest to
	// fail (binaries missing, data dir unreachable).
	if cfg.DatabaseURL != "" {
		s.databaseURL = cfg.DatabaseURL
		cfg.Logger.Info("using external database from DATABASE_URL", "url", dsn.Redact(cfg.DatabaseURL))
	} else {
		s.pg, err = pgcluster.Start(ctx, pgcluster.Config{
			DataDir:   filepath.Join(dataDir, "pg"),
			Ephemeral: cfg.EphemeralPostgres,
			Logger:    cfg.Logger.With("component", "postgres"),
		})
		if err != nil {
			return nil, fmt.Errorf("error starting postgres: %w", err)
		}
		s.databaseURL = s.pg.URL()
	}

	kafkaPort := cfg.KafkaPort
	if kafkaPort == -1 {
		kafkaPort = 0 // kfake: 0 means any free port
	}
	kafkaDir := filepath.Join(dataDir, "kafka") // the events themselves: the owner's only
	if err := os.MkdirAll(kafkaDir, 0o700); err != nil {
		return nil, fmt.Errorf("error creating %s: %w", kafkaDir, err)
	}
	if err := os.Chmod(kafkaDir, 0o700); err != nil {
		return nil, fmt.Errorf("error restricting %s: %w", kafkaDir, err)
	}
	// devbroker: kfake, plus the removal of members that died mid-join,
	// which kfake alone keeps for minutes.
	s.kafka, err = devbroker.New(devbroker.Options{Logger: cfg.Logger.With("component", "kafka")},
		kfake.NumBrokers(1),
		kfake.Ports(kafkaPort),
		kfake.DataDir(kafkaDir),
		kfake.AllowAutoTopicCreation(),
		kfake.DefaultNumPartitions(cfg.Partitions),
		kfake.ClusterID("eventline-dev"),
	)
	if err != nil {
		return nil, fmt.Errorf("error starting embedded kafka on port %d: %w", kafkaPort, err)
	}
	s.brokers = strings.Join(s.kafka.ListenAddrs(), ",")
	cfg.Logger.Info("kafka ready", "brokers", s.brokers, "data_dir", filepath.Join(dataDir, "kafka"))

	// The schema registry keeps its state in the broker's compacted
	// _schemas topic, so it survives restarts with the broker's data dir.
	store, err := registry.NewKafkaStore(ctx, s.kafka.ListenAddrs(), registry.DefaultTopic)
	if err != nil {
		return nil, fmt.Errorf("error opening the registry's store: %w", err)
	}
	s.reg, err = registry.New(ctx, registry.Config{Store: store, Logger: cfg.Logger.With("component", "registry"), BasicAuth: cfg.RegistryBasicAuth})
	if err != nil {
		store.Close()
		return nil, err
	}
	regPort := cfg.RegistryPort
	if regPort == -1 {
		regPort = 0
	}
	s.regLn, err = net.Listen("tcp", net.JoinHostPort("127.0.0.1", strconv.Itoa(regPort)))
	if err != nil {
		return nil, fmt.Errorf("error listening for the schema registry on port %d: %w", regPort, err)
	}
	// A client that trickles a body cannot hold a connection for long.
	s.registry = &http.Server{Handler: s.reg.Handler(), ReadHeaderTimeout: 10 * time.Second, ReadTimeout: 30 * time.Second, IdleTimeout: 2 * time.Minute}
	s.regDone = make(chan struct{})
	go func() {
		defer close(s.regDone)
		if err := s.registry.Serve(s.regLn); err != nil && !errors.Is(err, http.ErrServerClosed) {
			cfg.Logger.Error("schema registry stopped", "err", err)
		}
	}()
	s.registryURL = "http://" + s.regLn.Addr().String()
	auth := "none"
	if len(cfg.RegistryBasicAuth) > 0 {
		auth = "basic"
	}
	cfg.Logger.Info("schema registry ready", "url", s.registryURL, "auth", auth)
	return s, nil
}

// Brokers is the comma-separated seed broker list.
func (s *Stack) Brokers() string { return s.brokers }

// RegistryURL is the schema registry's base URL.
func (s *Stack) RegistryURL() string { return s.registryURL }

// DatabaseURL is the PostgreSQL connection string. It may hold a password:
// log dsn.Redact(DatabaseURL()) instead.
func (s *Stack) DatabaseURL() string { return s.databaseURL }

// Postgres is the embedded cluster, or nil when an external database is used.
func (s *Stack) Postgres() *pgcluster.Cluster { return s.pg }

// Env returns the stack's addresses as KEY=value lines, the contract of
// `eventline dev`: KAFKA_BROKERS, SCHEMA_REGISTRY_URL, DATABASE_URL. The
// registry's credentials (Config.RegistryBasicAuth) are not among them:
// the user chose them, and clients take them from
// SCHEMA_REGISTRY_BASIC_AUTH_USER_INFO.
func (s *Stack) Env() []string {
	return []string{
		"KAFKA_BROKERS=" + s.brokers,
		"SCHEMA_REGISTRY_URL=" + s.registryURL,
		"DATABASE_URL=" + s.databaseURL,
	}
}

// Stop stops every service in reverse order of start: the registry, the
// broker (which flushes its state to the data dir), then PostgreSQL. It is
// idempotent; every call returns the first call's result.
func (s *Stack) Stop(ctx context.Context) error {
	s.stopOnce.Do(func() {
		var errs []error
		if s.registry != nil {
			if err := s.registry.Shutdown(ctx); err != nil {
				errs = append(errs, fmt.Errorf("error stopping schema registry: %w", err))
			}
			<-s.regDone
		} else if s.regLn != nil {
			s.regLn.Close()
		}
		if s.reg != nil {
			s.reg.Close()
		}
		if s.kafka != nil {
			s.kafka.Close()
			s.cfg.Logger.Info("kafka stopped")
		}
		if s.pg != nil {
			if err := s.pg.Stop(ctx); err != nil {
				errs = append(errs, fmt.Errorf("error stopping postgres: %w", err))
			}
		}
		s.stopErr = errors.Join(errs...)
	})
	return s.stopErr
}
