package cli

import (
	"context"
	"fmt"
	"github.com/eventline/eventline/connection"
	"github.com/eventline/eventline/internal/devstack"
	"github.com/eventline/eventline/internal/dsn"
	"github.com/jackc/pgx/v5"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"
)

// DefaultDataDir is where `eventline dev` keeps its state unless told
// otherwise.
const DefaultDataDir = ".eventline/dev"

func runDev(ctx context.Context, env *Env, args []string) int {
	fs := newFlagSet(env, "dev", "[flags]")
	dataDir := fs.String("data-dir", envOr(env, "EVENTLINE_DATA_DIR", DefaultDataDir), "state directory; restarting with the same one keeps topics, records and database contents (env EVENTLINE_DATA_DIR)")
	kafkaPort := fs.Int("kafka-port", envInt(env, "EVENTLINE_KAFKA_PORT", devstack.DefaultKafkaPort), "loopback port of the embedded Kafka broker; -1 picks a free one (env EVENTLINE_KAFKA_PORT)")
	regPort := fs.Int("registry-port", envInt(env, "EVENTLINE_REGISTRY_PORT", devstack.DefaultRegistryPort), "loopback port of the schema registry; -1 picks a free one (env EVENTLINE_REGISTRY_PORT)")
	partitions := fs.Int("partitions", 3, "partition count of auto-created topics")
	envFile := fs.String("env-file", "", "also write the KEY=value lines to this file once the stack is ready (removed on exit)")
	if code := parse(fs, args); code >= 0 {
		return code
	}
	if *kafkaPort == 0 || *regPort == 0 {
		fmt.Fprintln(env.Stderr, "eventline dev: ports must be between 1 and 65535, or -1 for a free port")
		return ExitUsage
	}
	log := env.Logger
	regAuth, err := devRegistryAuth(env)
	if err != nil {
		fmt.Fprintln(env.Stderr, "eventline dev:", err)
		return ExitUsage
	}

	dbURL, err := databaseURL(env, "")
	if err != nil {
		fmt.Fprintln(env.Stderr, "eventline dev:", err)
		return ExitUsage
	}
	if dbURL != "" {
		// Fail now, with the reason, rather than print an address that
		// does not work.
		if err := ping(ctx, dbURL); err != nil {
			log.Error("DATABASE_URL is set but unusable; unset it to start an embedded PostgreSQL", "url", dsn.Redact(dbURL), "err", err)
			return ExitFail
		}
	}

	startCtx, cancel := context.WithTimeout(ctx, 2*time.Minute)
	stack, err := devstack.Start(startCtx, devstack.Config{
		DataDir:      *dataDir,
		KafkaPort:    *kafkaPort,
		RegistryPort: *regPort,
		DatabaseURL:  dbURL,
		Partitions:   *partitions,
		Logger:       log,

		RegistryBasicAuth: regAuth,
	})
	cancel()
	if err != nil {
		log.Error("dev stack failed to start", "err", err)
		return ExitFail
	}

	// The env file first, so a reader of stdout may rely on it too.
	lines := strings.Join(stack.Env(), "\n") + "\n"
	if *envFile != "" {
		if err := writeFileAtomic(*envFile, []byte(lines)); err != nil {
			log.Error("writing env file", "path", *envFile, "err", err)
			_ = stack.Stop(context.Background())
			return ExitFail
		}
		defer os.Remove(*envFile)
	}
	fmt.Fprint(env.Stdout, lines)
	log.Info("dev stack ready; stop with Ctrl-C or SIGTERM", "data_dir", *dataDir)

	code := ExitOK
	var pgDone <-chan struct{}
	if pg := stack.Postgres(); pg != nil {
		pgDone = pg.Done()
	}
	select {
	case <-ctx.Done():
		log.Info("stopping dev stack")
	case <-pgDone:
		log.Error("postgres exited unexpectedly; stopping the dev stack", "log", filepath.Join(*dataDir, "pg.log"))
		code = ExitFail
	}
	stopCtx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if err := stack.Stop(stopCtx); err != nil {
		log.Error("stopping dev stack", "err", err)
		return ExitFail
	}
	log.Info("dev stack stopped")
	return code
}

// devRegistryAuth reads the credentials the dev stack's registry requires
// from EVENTLINE_DEV_REGISTRY_USER_INFO[_FILE] ("user:password", the
// format clients give in SCHEMA_REGISTRY_BASIC_AUTH_USER_INFO). From the
// environment only, never a flag: ps shows a process's arguments to every
// user. Nil when unset: the registry is open.
func devRegistryAuth(env *Env) (map[string]string, error) {
	const name = "EVENTLINE_DEV_REGISTRY_USER_INFO"
	info, err := connection.Secret(env.Getenv, name)
	if err != nil || info == "" {
		return nil, err
	}
	user, pass, err := connection.ParseUserInfo(name, info)
	if err != nil {
		return nil, err
	}
	if user == "" || pass == "" || strings.Contains(user, ":") {
		return nil, fmt.Errorf(`%s: want "user:password" with a non-empty user and password`, name)
	}
	return map[string]string{user: pass}, nil
}

func ping(ctx context.Context, url string) error {
	ctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	conn, err := pgx.Connect(ctx, url)
	if err != nil {
		return err
	}
	defer conn.Close(context.Background())
	return conn.Ping(ctx)
}

func writeFileAtomic(path string, b []byte) error {
	tmp := path + ".tmp"
	if err := os.WriteFile(tmp, b, 0o600); err != nil { // holds the database password
		return err
	}
	return os.Rename(tmp, path)
}

func envOr(env *Env, key, def string) string {
	if v := env.Getenv(key); v != "" {
		return v
	}
	return def
}

// envInt reads an integer default from the environment; a malformed value
// is reported when flags are parsed, through the flag's own validation.
func envInt(env *Env, key string, def int) int {
	if v := env.Getenv(key); v != "" {
		if n, err := strconv.Atoi(v); err == nil {
			return n
		}
		fmt.Fprintf(env.Stderr, "eventline: ignoring %s=%q: not an integer\n", key, v)
	}
	return def
}

// envBool reads a boolean default from the environment (strconv.ParseBool's
// spellings); a malformed value is an error naming the variable.
func envBool(env *Env, key string) (bool, error) {
	v := env.Getenv(key)
	if v == "" {
		return false, nil
	}
	b, err := strconv.ParseBool(v)
	if err != nil {
		return false, fmt.Errorf("%s=%q: want true or false", key, v)
	}
	return b, nil
}
