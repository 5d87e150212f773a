package testkit

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kerr"
)

// ClusterEnv selects the broker failover tests, which need a real
// three-node Apache Kafka cluster (scripts/kafka.sh with
// EVENTLINE_KAFKA_NODES=3):
//
//	unset        KafkaCluster skips its test
//	1            each test starts a cluster of its own (about 20 s)
//	<directory>  the run dir of a running cluster (what make test-failover
//	             sets), shared by the tests: they kill its nodes, so they
//	             must run one after another (no t.Parallel, go test -p 1)
const ClusterEnv = "EVENTLINE_TEST_KAFKA_CLUSTER"

// Cluster is a three-node KRaft cluster whose nodes a test may SIGKILL and
// start again. Node ids are 1..3, the brokers' node.id.
type Cluster struct {
	// Brokers are the nodes' client addresses, node 1 first.
	Brokers []string

	adm    *kadm.Client
	script func(args ...string) (string, error)

	mu     sync.Mutex
	killed map[int32]bool // nodes down, started again at cleanup
}

// KafkaCluster returns the cluster ClusterEnv names, or skips t when it is
// unset. A dedicated cluster is removed when t ends; a shared one gets the
// nodes t killed and did not start again started, so that the next test
// finds it whole.
func KafkaCluster(t testing.TB) *Cluster {
	t.Helper()
	env := os.Getenv(ClusterEnv)
	if env == "" {
		t.Skipf("needs a three-node Apache Kafka cluster: run make test-failover (or set %s=1)", ClusterEnv)
	}
	root, err := repoRoot()
	if err != nil {
		t.Fatal(err)
	}
	shared := env != "1"
	runDir := env
	if !shared {
		runDir = filepath.Join(DataDir(t), "kafka-cluster")
	}
	base := append(os.Environ(), "EVENTLINE_KAFKA_DIR="+runDir, "EVENTLINE_KAFKA_NODES=3")
	var envMu sync.Mutex
	scriptEnv := base
	c := &Cluster{killed: map[int32]bool{}}
	c.script = func(args ...string) (string, error) {
		envMu.Lock()
		e := scriptEnv
		envMu.Unlock()
		return runKafkaScript(root, e, args...)
	}
	if shared {
		b, err := os.ReadFile(filepath.Join(runDir, "bootstrap"))
		if err != nil {
			t.Fatalf("%s=%s: no running cluster there (%v); start one with EVENTLINE_KAFKA_NODES=3 EVENTLINE_KAFKA_DIR=%s bash scripts/kafka.sh up", ClusterEnv, env, err, env)
		}
		c.Brokers = strings.Split(strings.TrimSpace(string(b)), ",")
		t.Cleanup(func() { c.restoreAll(t) })
	} else {
		// Registered before up: down stops a half-started cluster.
		t.Cleanup(func() {
			if _, err := c.script("down"); err != nil {
				t.Errorf("stopping the dedicated cluster: %v", err)
			}
		})
		addrs := kafkaUp(t, func() {
			var ports, cports []string
			for range 3 {
				ports = append(ports, strconv.Itoa(StablePort(t)))
				cports = append(cports, strconv.Itoa(StablePort(t)))
			}
			envMu.Lock()
			scriptEnv = append(slices.Clip(base),
				"EVENTLINE_KAFKA_PORTS="+strings.Join(ports, ","),
				"EVENTLINE_KAFKA_CONTROLLER_PORTS="+strings.Join(cports, ","))
			envMu.Unlock()
		}, func() (string, error) { return c.script("up") })
		c.Brokers = strings.Split(addrs, ",")
	}
	if len(c.Brokers) != 3 {
		t.Fatalf("the cluster has brokers %v, want 3", c.Brokers)
	}
	c.adm = kadm.NewClient(Client(t, c.Brokers))
	return c
}

// kafkaUp starts kafka.sh's node(s) with up, after pickPorts has put
// fresh stable ports in the environment up runs with. Another program may
// bind a port between StablePort's probe and the brokers' binds: a start
// that finds a port "already in use" is tried again with other ones (three
// starts at most). It returns the bootstrap addresses up printed.
func kafkaUp(t testing.TB, pickPorts func(), up func() (string, error)) string {
	t.Helper()
	var line string
	var err error
	for range 3 {
		pickPorts()
		if line, err = up(); err == nil || !strings.Contains(err.Error(), "already in use") {
			break
		}
	}
	if err != nil {
		t.Fatal(err)
	}
	addrs, ok := strings.CutPrefix(line, KafkaEnv+"=")
	if !ok {
		t.Fatalf("kafka.sh up printed %q", line)
	}
	return addrs
}

func runKafkaScript(root string, env []string, args ...string) (string, error) {
	cmd := exec.Command("bash", append([]string{filepath.Join(root, "scripts", "kafka.sh")}, args...)...)
	cmd.Dir = root
	cmd.Env = env
	var stdout, stderr strings.Builder
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	err := cmd.Run()
	if err != nil {
		err = fmt.Errorf("kafka.sh %s: %w\n%s", strings.Join(args, " "), err, stderr.String())
	}
	return strings.TrimSpace(stdout.String()), err
}

// Partition is what the cluster's metadata says of one partition.
type Partition struct {
	Leader   int32
	Replicas []int32
	ISR      []int32
}

// Partition asks the cluster about topic's partition; ok is false while no
// broker answers or the metadata has no usable answer (a node just died).
func (c *Cluster) Partition(topic string, partition int32) (p Partition, ok bool) {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	td, err := c.adm.ListTopics(ctx, topic)
	if err != nil || !td.Has(topic) || td[topic].Err != nil {
		return p, false
	}
	pd, found := td[topic].Partitions[partition]
	if !found || pd.Err != nil {
		return p, false
	}
	return Partition{Leader: pd.Leader, Replicas: slices.Clone(pd.Replicas), ISR: slices.Clone(pd.ISR)}, true
}

// Leader waits up to limit for a leader of topic's partition other than
// not (-1: any) and returns it.
func (c *Cluster) Leader(t testing.TB, topic string, partition int32, not int32, limit time.Duration) int32 {
	t.Helper()
	var leader int32 = -1
	WaitFor(t, limit, fmt.Sprintf("a leader of %s/%d other than %d", topic, partition, not), func() bool {
		p, ok := c.Partition(topic, partition)
		leader = p.Leader
		return ok && p.Leader >= 0 && p.Leader != not
	})
	return leader
}

// TxnCoordinator asks the cluster for the transaction coordinator of
// transactional.id txnID, the leader of the id's partition of
// __transaction_state; ok is false while no broker answers or the answer is
// an error (COORDINATOR_NOT_AVAILABLE while no replica leads). A broker
// answers from its metadata: the dead leader until the controller fenced it.
func (c *Cluster) TxnCoordinator(txnID string) (node int32, ok bool) {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	r, found := c.adm.FindTxnCoordinators(ctx, txnID)[txnID]
	if !found || r.Err != nil || r.NodeID < 0 {
		return -1, false
	}
	return r.NodeID, true
}

// WaitInSync waits up to limit until every replica of topic's partition is
// in its ISR again (a restarted node has caught up).
func (c *Cluster) WaitInSync(t testing.TB, topic string, partition int32, limit time.Duration) {
	t.Helper()
	WaitFor(t, limit, fmt.Sprintf("every replica of %s/%d in sync", topic, partition), func() bool {
		p, ok := c.Partition(topic, partition)
		return ok && len(p.Replicas) > 0 && len(p.ISR) == len(p.Replicas)
	})
}

// ElectPreferred moves the leadership of topic's partitions (0..partitions-1)
// back to their preferred replicas, the first of each assignment, as Kafka
// itself does after leader.imbalance.check.interval.seconds (5 minutes),
// and waits up to limit until each is led by it.
func (c *Cluster) ElectPreferred(t testing.TB, topic string, partitions int32, limit time.Duration) {
	t.Helper()
	set := kadm.TopicsSet{}
	for p := range partitions {
		set.Add(topic, p)
	}
	deadline := time.Now().Add(limit)
	for {
		err := c.electPreferred(topic, partitions, set)
		if err == nil {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("the preferred replicas of %s not leading within %s: %v", topic, limit, err)
		}
		time.Sleep(200 * time.Millisecond) // polling the cluster, not synchronisation
	}
}

// electPreferred asks for one election and says why the preferred replicas
// do not all lead yet, if they do not.
func (c *Cluster) electPreferred(topic string, partitions int32, set kadm.TopicsSet) error {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	res, err := c.adm.ElectLeaders(ctx, kadm.ElectPreferredReplica, set)
	if err != nil {
		return err
	}
	for _, ps := range res {
		for _, r := range ps {
			// ELECTION_NOT_NEEDED: the preferred replica leads already.
			if r.Err != nil && !errors.Is(r.Err, kerr.ElectionNotNeeded) {
				return fmt.Errorf("partition %d: %w", r.Partition, r.Err)
			}
		}
	}
	for p := range partitions {
		pd, ok := c.Partition(topic, p)
		switch {
		case !ok || len(pd.Replicas) == 0:
			return fmt.Errorf("partition %d: no metadata", p)
		case pd.Leader != pd.Replicas[0]:
			return fmt.Errorf("partition %d: led by %d, preferred %d", p, pd.Leader, pd.Replicas[0])
		}
	}
	return nil
}

// Kill SIGKILLs node (1..3) and returns once the process is gone.
func (c *Cluster) Kill(t testing.TB, node int32) {
	t.Helper()
	c.mu.Lock()
	c.killed[node] = true
	c.mu.Unlock()
	if _, err := c.script("kill", strconv.Itoa(int(node))); err != nil {
		t.Fatal(err)
	}
}

// Start starts node on its data and returns once it serves and the cluster
// lists all three brokers again.
func (c *Cluster) Start(t testing.TB, node int32) {
	t.Helper()
	if _, err := c.script("start-node", strconv.Itoa(int(node))); err != nil {
		t.Fatal(err)
	}
	c.mu.Lock()
	delete(c.killed, node)
	c.mu.Unlock()
}

// restoreAll starts the nodes a test killed and left down.
func (c *Cluster) restoreAll(t testing.TB) {
	c.mu.Lock()
	var down []int32
	for n := range c.killed {
		down = append(down, n)
	}
	c.mu.Unlock()
	for _, n := range down {
		if _, err := c.script("start-node", strconv.Itoa(int(n))); err != nil {
			t.Errorf("starting node %d of the shared cluster again: %v", n, err)
		}
	}
}
