// Package pgcluster runs a throwaway PostgreSQL cluster from the server
// binaries installed on the machine (Debian's postgresql package). It is what
// `eventline dev` and the test harness use when no DATABASE_URL is given.
//
// The cluster listens on a loopback TCP port only (no Unix socket), uses
// SCRAM password authentication with a generated password kept beside the data
// directory, and is tied to the process that started it: Stop shuts it down
// cleanly, and if that process dies without calling Stop the kernel sends the
// postmaster SIGINT (fast shutdown) through the parent-death signal.
//
// initdb and postgres refuse to run as root. When the caller is root, both are
// run as the `postgres` system user that Debian's package creates, and the data
// directory is handed to that user.
package pgcluster

import (
	"github.com/eventline/eventline/internal/dsn"

	"bufio"
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/url"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"runtime"
	"sort"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/jackc/pgx/v5/pgconn"
)

// ErrNoBinaries is returned by Start and FindBinDir when the PostgreSQL server
// binaries (initdb, postgres) cannot be found.
var ErrNoBinaries = errors.New("PostgreSQL server binaries (initdb, postgres) not found: install Debian's `postgresql` package (apt-get install postgresql), or set EVENTLINE_PG_BINDIR to the directory that holds them")

// Config describes a cluster. Zero values take the documented defaults.
type Config struct {
	// DataDir is the cluster's data directory (PGDATA). Required. It is
	// created with initdb when it holds no cluster yet, and reused otherwise.
	DataDir string

	// PasswordFile holds the superuser's password. Default: DataDir +
	// ".password". It is created with mode 0600 on first start.
	PasswordFile string

	// User is the database superuser created by initdb. Default "eventline".
	User string

	// Port is the loopback TCP port. Default 0: a free port is picked at
	// every start.
	Port int

	// BinDir holds initdb and postgres. Default: EVENTLINE_PG_BINDIR, then
	// `pg_config --bindir`, then the newest /usr/lib/postgresql/*/bin, then
	// PATH.
	BinDir string

	// Ephemeral trades durability for speed (fsync, full_page_writes and
	// synchronous_commit off): for test clusters that are thrown away.
	// Default false: the cluster survives crashes like any PostgreSQL.
	Ephemeral bool

	// StartTimeout bounds how long Start waits for the server to accept
	// connections. Default 60s.
	StartTimeout time.Duration

	// Settings are extra server settings (name -> value), passed as -c.
	Settings map[string]string

	// Logger receives lifecycle messages. Default slog.Default().
	Logger *slog.Logger
}

func (c Config) withDefaults() Config {
	if c.PasswordFile == "" {
		c.PasswordFile = filepath.Clean(c.DataDir) + ".password"
	}
	if c.User == "" {
		c.User = "eventline"
	}
	if c.StartTimeout == 0 {
		c.StartTimeout = 60 * time.Second
	}
	if c.Logger == nil {
		c.Logger = slog.Default()
	}
	return c
}

func (c Config) validate() error {
	if c.DataDir == "" {
		return errors.New("pgcluster: DataDir is required")
	}
	if c.Port < 0 || c.Port > 65535 {
		return fmt.Errorf("pgcluster: port %d out of range", c.Port)
	}
	return nil
}

// Cluster is a running PostgreSQL server started by Start.
type Cluster struct {
	cfg      Config
	url      string
	port     int
	cmd      *exec.Cmd
	exited   chan struct{} // closed when the postmaster has exited
	waitErr  error         // set before exited is closed
	stopOnce sync.Once
	stopErr  error
	logPath  string
}

// FindBinDir locates the directory holding initdb and postgres.
func FindBinDir() (string, error) {
	if d := os.Getenv("EVENTLINE_PG_BINDIR"); d != "" {
		// An explicit choice is not second-guessed.
		if isExecutable(filepath.Join(d, "initdb")) && isExecutable(filepath.Join(d, "postgres")) {
			return d, nil
		}
		return "", fmt.Errorf("%w (EVENTLINE_PG_BINDIR=%s holds no initdb and postgres)", ErrNoBinaries, d)
	}
	var candidates []string
	if out, err := exec.Command("pg_config", "--bindir").Output(); err == nil {
		candidates = append(candidates, strings.TrimSpace(string(out)))
	}
	versioned, _ := filepath.Glob("/usr/lib/postgresql/*/bin")
	sort.Slice(versioned, func(i, j int) bool { // newest major first
		return pgMajor(versioned[i]) > pgMajor(versioned[j])
	})
	candidates = append(candidates, versioned...)
	if p, err := exec.LookPath("initdb"); err == nil {
		if real, err := filepath.EvalSymlinks(p); err == nil {
			p = real
		}
		candidates = append(candidates, filepath.Dir(p))
	}
	for _, d := range candidates {
		if isExecutable(filepath.Join(d, "initdb")) && isExecutable(filepath.Join(d, "postgres")) {
			return d, nil
		}
	}
	return "", ErrNoBinaries
}

func pgMajor(binDir string) int {
	n, _ := strconv.Atoi(filepath.Base(filepath.Dir(binDir)))
	return n
}

func isExecutable(p string) bool {
	st, err := os.Stat(p)
	return err == nil && !st.IsDir() && st.Mode()&0o111 != 0
}

// Start initialises the cluster if needed and starts the server. It returns
// once the server accepts connections with the superuser's credentials.
func Start(ctx context.Context, cfg Config) (*Cluster, error) {
	cfg = cfg.withDefaults()
	if err := cfg.validate(); err != nil {
		return nil, err
	}
	if cfg.BinDir == "" {
		d, err := FindBinDir()
		if err != nil {
			return nil, err
		}
		cfg.BinDir = d
	} else if !isExecutable(filepath.Join(cfg.BinDir, "postgres")) {
		return nil, fmt.Errorf("%w (looked in %s)", ErrNoBinaries, cfg.BinDir)
	}
	dataDir, err := filepath.Abs(cfg.DataDir)
	if err != nil {
		return nil, fmt.Errorf("error resolving data dir: %w", err)
	}
	cfg.DataDir = dataDir

	owner, err := serverOwner()
	if err != nil {
		return nil, err
	}
	password, err := ensureCluster(ctx, cfg, owner)
	if err != nil {
		return nil, err
	}

	// A free port can be taken by someone else between our probe and the
	// server's bind; when the server exits with "could not bind" we retry
	// on a new port.
	var lastErr error
	for attempt := 0; attempt < 3; attempt++ {
		port := cfg.Port
		if port == 0 {
			if port, err = freePort(); err != nil {
				return nil, err
			}
		}
		c, err := startServer(ctx, cfg, owner, port, password)
		if err == nil {
			return c, nil
		}
		lastErr = err
		if cfg.Port != 0 || !errors.Is(err, errPortInUse) {
			break
		}
	}
	return nil, lastErr
}

// URL is the connection string (postgres://user:password@127.0.0.1:port/postgres).
// It contains the password: never log it; log Redacted() instead.
func (c *Cluster) URL() string { return c.url }

// Redacted is URL with the password masked, for logs.
func (c *Cluster) Redacted() string { return dsn.Redact(c.url) }

// Port is the loopback port the server listens on.
func (c *Cluster) Port() int { return c.port }

// PID is the postmaster's process id.
func (c *Cluster) PID() int { return c.cmd.Process.Pid }

// Done is closed when the server process has exited, whether through Stop
// or on its own.
func (c *Cluster) Done() <-chan struct{} { return c.exited }

// Stop shuts the server down: a fast shutdown (SIGINT: clients are
// disconnected, the cluster is checkpointed) and, if that does not finish
// before ctx is done, an immediate one (SIGQUIT) and finally SIGKILL. It is
// idempotent and safe for concurrent use; every call returns the first
// call's result.
func (c *Cluster) Stop(ctx context.Context) error {
	c.stopOnce.Do(func() {
		c.stopErr = c.stop(ctx)
	})
	return c.stopErr
}

func (c *Cluster) stop(ctx context.Context) error {
	select {
	case <-c.exited:
		return nil // already gone; the exit was logged by the waiter
	default:
	}
	_ = c.cmd.Process.Signal(syscall.SIGINT)
	select {
	case <-c.exited:
		c.cfg.Logger.Info("postgres stopped", "pid", c.PID())
		return nil
	case <-ctx.Done():
	}
	c.cfg.Logger.Warn("postgres fast shutdown timed out, sending SIGQUIT", "pid", c.PID())
	_ = c.cmd.Process.Signal(syscall.SIGQUIT)
	select {
	case <-c.exited:
		return fmt.Errorf("postgres needed an immediate shutdown: %w", ctx.Err())
	case <-time.After(5 * time.Second):
	}
	_ = c.cmd.Process.Kill()
	<-c.exited
	return fmt.Errorf("postgres had to be killed: %w", ctx.Err())
}

// owner is the account the server runs as: the caller, or the postgres
// system user when the caller is root.
type owner struct {
	cred *syscall.Credential // nil: run as the caller
	name string
}

func serverOwner() (owner, error) {
	if os.Geteuid() != 0 {
		return owner{}, nil
	}
	u, err := user.Lookup("postgres")
	if err != nil {
		return owner{}, fmt.Errorf("running as root, PostgreSQL must run as the `postgres` system user, which does not exist (install Debian's `postgresql` package, which creates it): %w", err)
	}
	uid, _ := strconv.Atoi(u.Uid)
	gid, _ := strconv.Atoi(u.Gid)
	return owner{cred: &syscall.Credential{Uid: uint32(uid), Gid: uint32(gid), NoSetGroups: true}, name: "postgres"}, nil
}

func (o owner) chown(path string) error {
	if o.cred == nil {
		return nil
	}
	return os.Chown(path, int(o.cred.Uid), int(o.cred.Gid))
}

// checkReachable makes sure the server's user can traverse every ancestor
// of dir; initdb's own message for this ("could not change directory") does
// not say which directory is at fault.
func (o owner) checkReachable(dir string) error {
	if o.cred == nil {
		return nil
	}
	for d := filepath.Dir(dir); ; d = filepath.Dir(d) {
		st, err := os.Stat(d)
		if err != nil {
			return err
		}
		sys := st.Sys().(*syscall.Stat_t)
		mode := st.Mode().Perm()
		ok := mode&0o001 != 0 ||
			(sys.Gid == o.cred.Gid && mode&0o010 != 0) ||
			(sys.Uid == o.cred.Uid && mode&0o100 != 0)
		if !ok {
			return fmt.Errorf("PostgreSQL runs as the `postgres` user, which cannot reach %s: %s has mode %04o; pick a data dir under a directory others can traverse (e.g. /tmp or /var/tmp) or run `chmod o+x %s`", dir, d, mode, d)
		}
		if d == "/" || d == filepath.Dir(d) {
			return nil
		}
	}
}

// ensureCluster runs initdb when DataDir holds no cluster yet and returns the
// superuser's password.
func ensureCluster(ctx context.Context, cfg Config, o owner) (string, error) {
	if err := os.MkdirAll(filepath.Dir(cfg.DataDir), 0o755); err != nil {
		return "", fmt.Errorf("error creating %s: %w", filepath.Dir(cfg.DataDir), err)
	}
	if err := o.checkReachable(cfg.DataDir); err != nil {
		return "", err
	}
	_, statErr := os.Stat(filepath.Join(cfg.DataDir, "PG_VERSION"))
	if statErr == nil {
		pw, err := os.ReadFile(cfg.PasswordFile)
		if err != nil {
			return "", fmt.Errorf("cluster in %s exists but its password file is unreadable: %w", cfg.DataDir, err)
		}
		return strings.TrimSpace(string(pw)), nil
	}

	// Reuse the password of an initdb that was interrupted; otherwise save
	// a new one before initdb runs, so a crash in between leaves a cluster
	// whose password is known.
	var pw string
	if b, err := os.ReadFile(cfg.PasswordFile); err == nil && len(strings.TrimSpace(string(b))) > 0 {
		pw = strings.TrimSpace(string(b))
	} else {
		if pw, err = newPassword(); err != nil {
			return "", err
		}
		if err := writeFileAtomic(cfg.PasswordFile, []byte(pw+"\n")); err != nil {
			return "", fmt.Errorf("error saving password file: %w", err)
		}
	}
	// initdb wants an empty directory. What an interrupted initdb of ours
	// left is cleared: the marker next to the directory says it was ours.
	// Anything else is somebody's data, and is left alone.
	marker := filepath.Clean(cfg.DataDir) + ".initdb"
	if entries, err := os.ReadDir(cfg.DataDir); err == nil && len(entries) > 0 {
		if _, err := os.Stat(marker); err != nil {
			return "", fmt.Errorf("%s is not empty and holds no PostgreSQL cluster eventline created (no PG_VERSION, no %s): "+
				"refusing to delete it; move it away or choose another data directory", cfg.DataDir, filepath.Base(marker))
		}
		if err := os.RemoveAll(cfg.DataDir); err != nil {
			return "", fmt.Errorf("error clearing the unfinished cluster in %s: %w", cfg.DataDir, err)
		}
	}
	if err := os.WriteFile(marker, []byte("initdb by eventline in progress; remove the directory next to this file and this file to start over\n"), 0o600); err != nil {
		return "", fmt.Errorf("error marking %s as being initialised: %w", cfg.DataDir, err)
	}
	if err := os.MkdirAll(cfg.DataDir, 0o700); err != nil {
		return "", fmt.Errorf("error creating data dir: %w", err)
	}
	if err := o.chown(cfg.DataDir); err != nil {
		return "", fmt.Errorf("error handing %s to postgres: %w", cfg.DataDir, err)
	}
	// initdb reads the password from a file, so it never shows in ps.
	pwf, err := os.CreateTemp("", "eventline-pw-*")
	if err != nil {
		return "", fmt.Errorf("error creating password file: %w", err)
	}
	defer os.Remove(pwf.Name())
	_, werr := pwf.WriteString(pw + "\n")
	if cerr := pwf.Close(); werr == nil {
		werr = cerr
	}
	if werr == nil {
		werr = o.chown(pwf.Name())
	}
	if werr != nil {
		return "", fmt.Errorf("error writing password file: %w", werr)
	}

	args := []string{"-D", cfg.DataDir, "-U", cfg.User, "--pwfile=" + pwf.Name(),
		"--auth=scram-sha-256", "--encoding=UTF8", "--no-locale"}
	if cfg.Ephemeral {
		args = append(args, "--no-sync")
	}
	cmd := exec.CommandContext(ctx, filepath.Join(cfg.BinDir, "initdb"), args...)
	cmd.Dir = "/" // the server's user may not be able to read the caller's cwd
	cmd.SysProcAttr = &syscall.SysProcAttr{Credential: o.cred, Pdeathsig: syscall.SIGKILL}
	start := time.Now()
	if out, err := cmd.CombinedOutput(); err != nil {
		return "", fmt.Errorf("initdb failed: %w\n%s", err, tail(string(out), 20))
	}
	if err := os.Remove(marker); err != nil {
		return "", fmt.Errorf("error removing %s after initdb: %w", marker, err)
	}
	cfg.Logger.Info("postgres cluster initialised", "data_dir", cfg.DataDir, "took", time.Since(start).Round(time.Millisecond))
	return pw, nil
}

func newPassword() (string, error) {
	b := make([]byte, 16)
	if _, err := rand.Read(b); err != nil {
		return "", fmt.Errorf("error generating password: %w", err)
	}
	return hex.EncodeToString(b), nil
}

var errPortInUse = errors.New("port in use")

func startServer(ctx context.Context, cfg Config, o owner, port int, password string) (*Cluster, error) {
	logPath := filepath.Clean(cfg.DataDir) + ".log"
	logf, err := os.OpenFile(logPath, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o600) // queries and errors may quote data
	if err != nil {
		return nil, fmt.Errorf("error opening postgres log: %w", err)
	}
	if err := logf.Chmod(0o600); err != nil { // a log from an older version may be world-readable
		logf.Close()
		return nil, fmt.Errorf("error restricting postgres log: %w", err)
	}
	defer logf.Close() // the child has its own copy of the descriptor

	args := []string{"-D", cfg.DataDir, "-p", strconv.Itoa(port),
		"-c", "listen_addresses=127.0.0.1",
		"-c", "unix_socket_directories=",
		"-c", "logging_collector=off",
		"-c", "max_connections=200",
		// Logical decoding available (the relay's logical mode, #13): it
		// costs nothing measurable on this write load (-1 to -2.5 %, inside
		// the noise, measured for #13).
		"-c", "wal_level=logical",
		"-c", "max_replication_slots=64", // the tests run logical relays in parallel, one slot per database
		"-c", "max_wal_senders=64",
	}
	if cfg.Ephemeral {
		args = append(args, "-c", "fsync=off", "-c", "full_page_writes=off", "-c", "synchronous_commit=off")
	}
	names := make([]string, 0, len(cfg.Settings))
	for k := range cfg.Settings {
		names = append(names, k)
	}
	sort.Strings(names)
	for _, k := range names {
		args = append(args, "-c", k+"="+cfg.Settings[k])
	}
	cmd := exec.Command(filepath.Join(cfg.BinDir, "postgres"), args...)
	cmd.Dir = "/"
	cmd.Stdout = logf
	cmd.Stderr = logf
	cmd.SysProcAttr = &syscall.SysProcAttr{
		Credential: o.cred,
		// If this process dies without stopping the server, the kernel
		// sends the postmaster SIGINT: a fast, clean shutdown, so no
		// orphaned server survives `eventline dev`.
		Pdeathsig: syscall.SIGINT,
		// Own process group: a Ctrl-C on the terminal reaches only us,
		// and we shut the server down in order.
		Setpgid: true,
	}

	c := &Cluster{cfg: cfg, port: port, cmd: cmd, exited: make(chan struct{}), logPath: logPath}
	c.url = (&url.URL{
		Scheme:   "postgres",
		User:     url.UserPassword(cfg.User, password),
		Host:     net.JoinHostPort("127.0.0.1", strconv.Itoa(port)),
		Path:     "/postgres",
		RawQuery: "sslmode=disable",
	}).String()

	// The parent-death signal fires when the *thread* that forked the
	// child exits, not the process. Go may retire an OS thread whose
	// goroutine locked it, so the child is started and waited for on a
	// locked thread that lives exactly as long as the child.
	started := make(chan error, 1)
	go func() {
		runtime.LockOSThread()
		defer runtime.UnlockOSThread()
		if err := cmd.Start(); err != nil {
			started <- err
			return
		}
		started <- nil
		c.waitErr = cmd.Wait()
		close(c.exited)
	}()
	if err := <-started; err != nil {
		return nil, fmt.Errorf("error starting postgres: %w", err)
	}

	if err := c.waitReady(ctx); err != nil {
		_ = c.Stop(context.Background())
		return nil, err
	}
	cfg.Logger.Info("postgres ready", "url", c.Redacted(), "pid", c.PID(), "log", logPath)
	return c, nil
}

// waitReady polls the server with a real login until it answers, the
// process exits, or the start timeout passes. Polling is the only readiness
// signal PostgreSQL offers (pg_isready does the same).
func (c *Cluster) waitReady(ctx context.Context) error {
	ctx, cancel := context.WithTimeout(ctx, c.cfg.StartTimeout)
	defer cancel()
	backoff := 10 * time.Millisecond
	var lastErr error
	for {
		cctx, ccancel := context.WithTimeout(ctx, 2*time.Second)
		conn, err := pgconn.Connect(cctx, c.url)
		ccancel()
		if err == nil {
			_ = conn.Close(ctx)
			return nil
		}
		lastErr = err
		select {
		case <-c.exited:
			logTail := c.logTail()
			if strings.Contains(logTail, "could not bind") || strings.Contains(logTail, "Address already in use") {
				return fmt.Errorf("postgres could not bind port %d: %w", c.port, errPortInUse)
			}
			return fmt.Errorf("postgres exited during startup (%v); log %s:\n%s", c.waitErr, c.logPath, logTail)
		case <-ctx.Done():
			return fmt.Errorf("postgres did not accept connections within %s: %v; log %s:\n%s", c.cfg.StartTimeout, dsn.Redact(lastErr.Error()), c.logPath, c.logTail())
		case <-time.After(backoff):
		}
		if backoff < 200*time.Millisecond {
			backoff *= 2
		}
	}
}

func (c *Cluster) logTail() string {
	b, err := os.ReadFile(c.logPath)
	if err != nil {
		return ""
	}
	return tail(string(b), 15)
}

func tail(s string, n int) string {
	var lines []string
	sc := bufio.NewScanner(strings.NewReader(s))
	for sc.Scan() {
		lines = append(lines, sc.Text())
	}
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.Join(lines, "\n")
}

func freePort() (int, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, fmt.Errorf("error finding a free port: %w", err)
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port, nil
}

func writeFileAtomic(path string, b []byte) error {
	tmp := path + ".tmp"
	if err := os.WriteFile(tmp, b, 0o600); err != nil {
		return err
	}
	return os.Rename(tmp, path)
}
