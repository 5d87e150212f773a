// Package kafkalog logs what a Kafka client rides out on its own, so that an
// operator reading the relay's or a consumer group's log sees a broker
// failover: franz-go retries a dead broker and follows a partition's new
// leader without returning an error, and the records simply arrive late.
//
// A Hooks value logs, through kgo hooks:
//   - "kafka broker unreachable" (warn) at the first failed connection to a
//     broker after it was reachable, not at every retry;
//   - "kafka broker reachable again" (info) at the next connection that
//     succeeds, with how long the broker was unreachable;
//   - "kafka partition leader moved" (info) when a partition's records are
//     produced to, or fetched from, another broker than before: the client
//     follows the new leader.
package kafkalog

import (
	"context"
	"errors"
	"log/slog"
	"net"
	"strconv"
	"sync"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"
)

// Hooks logs broker outages and leader moves of one client. Give each client
// its own: the state is the client's view.
type Hooks struct {
	log *slog.Logger

	// gate orders log lines before Stop: a client's goroutines can still
	// run a hook after Close returned, and the log's owner may have moved
	// on (a test reading its buffer).
	gate    sync.RWMutex
	stopped bool

	mu       sync.Mutex
	downFrom map[string]time.Time // broker address → first failed connection
	leaders  map[topicPartition]int32
}

type topicPartition struct {
	topic     string
	partition int32
}

var (
	_ kgo.HookBrokerConnect       = (*Hooks)(nil)
	_ kgo.HookProduceBatchWritten = (*Hooks)(nil)
	_ kgo.HookFetchBatchRead      = (*Hooks)(nil)
)

// New returns the hooks of a client whose lines go to log with the attribute
// client=name (e.g. "relay", "consumer").
func New(log *slog.Logger, name string) *Hooks {
	return &Hooks{
		log:      log.With("client", name),
		downFrom: map[string]time.Time{},
		leaders:  map[topicPartition]int32{},
	}
}

// Opt is the client option installing h.
func (h *Hooks) Opt() kgo.Opt { return kgo.WithHooks(h) }

// Stop ends the logging: a line being written finishes first, later hook
// calls log nothing. Call it once the client is closed.
func (h *Hooks) Stop() {
	h.gate.Lock()
	h.stopped = true
	h.gate.Unlock()
}

// emit writes one line unless stopped.
func (h *Hooks) emit(level slog.Level, msg string, args ...any) {
	h.gate.RLock()
	defer h.gate.RUnlock()
	if !h.stopped {
		h.log.Log(context.Background(), level, msg, args...)
	}
}

// OnBrokerConnect logs the first failed connection to a broker and the
// first successful one after it.
func (h *Hooks) OnBrokerConnect(meta kgo.BrokerMetadata, _ time.Duration, _ net.Conn, err error) {
	// A client being closed cancels its dials: not the broker's doing.
	if err != nil && (errors.Is(err, context.Canceled) || errors.Is(err, kgo.ErrClientClosed)) {
		return
	}
	addr := net.JoinHostPort(meta.Host, strconv.Itoa(int(meta.Port)))
	h.mu.Lock()
	from, down := h.downFrom[addr]
	switch {
	case err != nil && !down:
		h.downFrom[addr] = time.Now()
	case err == nil && down:
		delete(h.downFrom, addr)
	}
	h.mu.Unlock()
	switch {
	case err != nil && !down:
		h.emit(slog.LevelWarn, "kafka broker unreachable; retrying", "broker", nodeName(meta.NodeID), "addr", addr, "err", err)
	case err == nil && down:
		h.emit(slog.LevelInfo, "kafka broker reachable again", "broker", nodeName(meta.NodeID), "addr", addr,
			"unreachable_for", time.Since(from).Round(time.Millisecond))
	}
}

// OnProduceBatchWritten notes which broker took the partition's batch.
func (h *Hooks) OnProduceBatchWritten(meta kgo.BrokerMetadata, topic string, partition int32, _ kgo.ProduceBatchMetrics) {
	h.servedBy(meta.NodeID, topic, partition, "produce")
}

// OnFetchBatchRead notes which broker served the partition's batch.
func (h *Hooks) OnFetchBatchRead(meta kgo.BrokerMetadata, topic string, partition int32, _ kgo.FetchBatchMetrics) {
	h.servedBy(meta.NodeID, topic, partition, "fetch")
}

// servedBy logs a partition served by another broker than its last batch.
// It runs for every batch, so the common case is one map lookup.
func (h *Hooks) servedBy(node int32, topic string, partition int32, what string) {
	tp := topicPartition{topic, partition}
	h.mu.Lock()
	prev, seen := h.leaders[tp]
	if !seen || prev != node {
		h.leaders[tp] = node
	}
	h.mu.Unlock()
	if seen && prev != node {
		h.emit(slog.LevelInfo, "kafka partition leader moved", "topic", topic, "partition", partition,
			"from", nodeName(prev), "to", nodeName(node), "seen_by", what)
	}
}

// nodeName is a broker's node id, or "seed" for a seed broker (kgo gives
// those very negative ids until the metadata names them).
func nodeName(id int32) string {
	if id < 0 {
		return "seed"
	}
	return strconv.Itoa(int(id))
}
