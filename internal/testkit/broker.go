package testkit

import (
	"bytes"
	"errors"
	"math/rand/v2"
	"net"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kfake"

	"github.com/eventline/eventline/internal/devbroker"
)

// RestartableKafka returns the seed brokers of a single-node Kafka that t
// may stop and start again with its data, and restart, which does so: it
// stops the broker (cleanly), waits down, starts it on the same address and
// data, and returns once it is ready. Call restart from t's goroutine.
//
// With EVENTLINE_TEST_KAFKA unset it is an in-process kfake cluster
// persisting to a directory of t's (kfake.DataDir) on a fixed port. With it
// set it is a dedicated Apache Kafka node that scripts/kafka.sh runs from t's
// own run directory on free ports (up, then stop and start): not the shared
// broker named by the variable, which the tests of other packages are using
// at the same time. The broker is removed when t ends.
func RestartableKafka(t testing.TB) (brokers []string, restart func(down time.Duration)) {
	t.Helper()
	if RealKafka() {
		return restartableApacheKafka(t)
	}
	return restartableKfake(t)
}

func restartableKfake(t testing.TB) ([]string, func(time.Duration)) {
	t.Helper()
	dir := DataDir(t)
	var (
		port int
		opts []kfake.Opt
		c    *devbroker.Broker
		err  error
	)
	// Another program may bind the port between StablePort's probe and
	// ours: the first start may pick another one.
	for range 3 {
		port = StablePort(t)
		opts = []kfake.Opt{
			kfake.Ports(port), kfake.DataDir(dir),
			kfake.AllowAutoTopicCreation(), kfake.DefaultNumPartitions(3),
		}
		if c, err = devbroker.New(devbroker.Options{}, opts...); err == nil || !errors.Is(err, syscall.EADDRINUSE) {
			break
		}
	}
	if err != nil {
		t.Fatalf("starting kfake: %v", err)
	}
	var mu sync.Mutex // guards c against the cleanup of a test that failed mid-restart
	t.Cleanup(func() {
		mu.Lock()
		defer mu.Unlock()
		if c != nil {
			c.Close()
		}
	})
	brokers := c.ListenAddrs()
	restart := func(down time.Duration) {
		t.Helper()
		mu.Lock()
		c.Close() // saves the cluster's state to the data dir
		c = nil
		mu.Unlock()
		time.Sleep(down) // the outage itself
		// The port is outside the ephemeral range, so no client's
		// connection took it meanwhile; a listener of another program
		// could, which the retries do not cure but report.
		deadline := time.Now().Add(10 * time.Second)
		for {
			nc, err := devbroker.New(devbroker.Options{}, opts...)
			if err == nil {
				mu.Lock()
				c = nc
				mu.Unlock()
				return
			}
			if time.Now().After(deadline) {
				t.Fatalf("restarting kfake on port %d: %v", port, err)
			}
			time.Sleep(50 * time.Millisecond)
		}
	}
	return brokers, restart
}

func restartableApacheKafka(t testing.TB) ([]string, func(time.Duration)) {
	t.Helper()
	addr, script := apacheNode(t, nil)
	restart := func(down time.Duration) {
		t.Helper()
		if _, err := script("stop"); err != nil {
			t.Fatal(err)
		}
		time.Sleep(down) // the outage itself
		if _, err := script("start"); err != nil {
			t.Fatal(err)
		}
	}
	return strings.Split(addr, ","), restart
}

// apacheNode starts an Apache Kafka node of t's own through
// scripts/kafka.sh, in a run directory of t's, on free ports, and stops it
// when t ends. props, when set, returns server properties to add for the
// node's client and controller ports (EVENTLINE_KAFKA_EXTRA_PROPERTIES); it
// is called again when a port was taken meanwhile. It returns the PLAINTEXT
// address and a runner of the script's other commands on that node.
func apacheNode(t testing.TB, props func(port, controller int) string) (string, func(cmd string) (string, error)) {
	t.Helper()
	root, err := repoRoot()
	if err != nil {
		t.Fatal(err)
	}
	// Every call names the run dir: with the default one, down would stop
	// the shared broker.
	dir := DataDir(t)
	runDir := filepath.Join(dir, "kafka")
	// A single node, whatever the caller's environment asks of kafka.sh.
	env0 := os.Environ()
	for _, k := range []string{"EVENTLINE_KAFKA_NODES", "EVENTLINE_KAFKA_PORTS", "EVENTLINE_KAFKA_CONTROLLER_PORTS", "EVENTLINE_KAFKA_EXTRA_PROPERTIES"} {
		env0 = WithoutEnv(env0, k)
	}
	base := append(env0, "EVENTLINE_KAFKA_DIR="+runDir)
	env := base
	script := func(cmd string) (string, error) { return runKafkaScript(root, env, cmd) }
	// Registered before up: down stops a half-started node.
	t.Cleanup(func() {
		if _, err := script("down"); err != nil {
			t.Errorf("stopping the dedicated broker: %v", err)
		}
	})
	addr := kafkaUp(t, func() {
		port, controller := StablePort(t), StablePort(t)
		env = append(slices.Clip(base),
			"EVENTLINE_KAFKA_PORT="+strconv.Itoa(port),
			"EVENTLINE_KAFKA_CONTROLLER_PORT="+strconv.Itoa(controller),
		)
		if props != nil {
			f := filepath.Join(dir, "extra.properties")
			if err := os.WriteFile(f, []byte(props(port, controller)), 0o600); err != nil {
				t.Fatal(err)
			}
			env = append(env, "EVENTLINE_KAFKA_EXTRA_PROPERTIES="+f)
		}
	}, func() (string, error) { return script("up") })
	return addr, script
}

// repoRoot is the directory of eventline's go.mod, found upwards from the
// working directory (a test runs in its package's directory).
func repoRoot() (string, error) {
	dir, err := os.Getwd()
	if err != nil {
		return "", err
	}
	for {
		b, err := os.ReadFile(filepath.Join(dir, "go.mod"))
		if err == nil && bytes.HasPrefix(b, []byte("module github.com/eventline/eventline\n")) {
			return dir, nil
		}
		parent := filepath.Dir(dir)
		if parent == dir {
			return "", errors.New("testkit: eventline's go.mod not found above the working directory")
		}
		dir = parent
	}
}

// StablePort returns a loopback TCP port that is free now and lies below the
// kernel's ephemeral range (net.ipv4.ip_local_port_range), for a server
// that t stops and starts again on the same port: a port from the ephemeral
// range (what listening on port 0 gives) can be taken, while the server is
// down, by the local end of any outgoing connection, and the restart then
// fails with "address already in use".
func StablePort(t testing.TB) int {
	t.Helper()
	low := 32768 // Linux's default lower bound
	if b, err := os.ReadFile("/proc/sys/net/ipv4/ip_local_port_range"); err == nil {
		if f := strings.Fields(string(b)); len(f) == 2 {
			if n, err := strconv.Atoi(f[0]); err == nil {
				low = n
			}
		}
	}
	const from = 10000
	if low <= from+100 {
		t.Fatalf("the ephemeral port range starts at %d: no room for a stable port", low)
	}
	for range 100 {
		port := from + rand.IntN(low-from)
		l, err := net.Listen("tcp", net.JoinHostPort("127.0.0.1", strconv.Itoa(port)))
		if err != nil {
			continue // taken: another try
		}
		l.Close()
		return port
	}
	t.Fatalf("no free port in [%d, %d) after 100 tries", from, low)
	return 0
}
