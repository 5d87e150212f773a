package kafkalog

import (
	"bytes"
	"context"
	"log/slog"
	"net"
	"strings"
	"syscall"
	"testing"

	"github.com/twmb/franz-go/pkg/kgo"
)

func capture() (*Hooks, *bytes.Buffer) {
	var buf bytes.Buffer
	log := slog.New(slog.NewTextHandler(&buf, &slog.HandlerOptions{Level: slog.LevelDebug, ReplaceAttr: func(_ []string, a slog.Attr) slog.Attr {
		if a.Key == slog.TimeKey {
			return slog.Attr{}
		}
		return a
	}}))
	return New(log, "test"), &buf
}

func lines(buf *bytes.Buffer) []string {
	s := strings.TrimSpace(buf.String())
	buf.Reset()
	if s == "" {
		return nil
	}
	return strings.Split(s, "\n")
}

// A broker refusing connections is logged once, however often the client
// retries, and its return once; a cancelled dial is not an outage.
func TestBrokerOutageLoggedOncePerOutage(t *testing.T) {
	h, buf := capture()
	b2 := kgo.BrokerMetadata{NodeID: 2, Host: "127.0.0.1", Port: 9094}
	refused := &net.OpError{Op: "dial", Net: "tcp", Err: syscall.ECONNREFUSED}

	h.OnBrokerConnect(b2, 0, nil, nil) // reachable: nothing to say
	h.OnBrokerConnect(b2, 0, nil, context.Canceled)
	if got := lines(buf); len(got) != 0 {
		t.Fatalf("a reachable broker and a cancelled dial logged %q", got)
	}
	for range 5 {
		h.OnBrokerConnect(b2, 0, nil, refused)
	}
	got := lines(buf)
	if len(got) != 1 || !strings.Contains(got[0], `msg="kafka broker unreachable; retrying"`) ||
		!strings.Contains(got[0], "broker=2") || !strings.Contains(got[0], "addr=127.0.0.1:9094") || !strings.Contains(got[0], "client=test") {
		t.Fatalf("5 refused connections logged %q, want one unreachable line for broker 2", got)
	}
	h.OnBrokerConnect(b2, 0, nil, nil)
	h.OnBrokerConnect(b2, 0, nil, nil)
	got = lines(buf)
	if len(got) != 1 || !strings.Contains(got[0], `msg="kafka broker reachable again"`) || !strings.Contains(got[0], "unreachable_for=") {
		t.Fatalf("reconnecting logged %q, want one reachable-again line", got)
	}
	// A second outage is a new one.
	h.OnBrokerConnect(b2, 0, nil, refused)
	if got := lines(buf); len(got) != 1 {
		t.Fatalf("a second outage logged %q, want one line", got)
	}
}

// A partition is logged when another broker serves it than before, not at
// its first batch nor while the same broker serves it.
func TestLeaderMoveLogged(t *testing.T) {
	h, buf := capture()
	b1, b3 := kgo.BrokerMetadata{NodeID: 1}, kgo.BrokerMetadata{NodeID: 3}
	h.OnProduceBatchWritten(b1, "orders", 0, kgo.ProduceBatchMetrics{})
	h.OnProduceBatchWritten(b1, "orders", 0, kgo.ProduceBatchMetrics{})
	h.OnProduceBatchWritten(b3, "orders", 1, kgo.ProduceBatchMetrics{}) // another partition
	if got := lines(buf); len(got) != 0 {
		t.Fatalf("first batches logged %q", got)
	}
	h.OnProduceBatchWritten(b3, "orders", 0, kgo.ProduceBatchMetrics{})
	got := lines(buf)
	if len(got) != 1 || !strings.Contains(got[0], `msg="kafka partition leader moved"`) || !strings.Contains(got[0], "from=1 to=3") ||
		!strings.Contains(got[0], "partition=0") || !strings.Contains(got[0], "seen_by=produce") {
		t.Fatalf("a move of orders/0 from 1 to 3 logged %q", got)
	}
	h.OnFetchBatchRead(b3, "orders", 0, kgo.FetchBatchMetrics{})
	h.OnFetchBatchRead(b1, "orders", 0, kgo.FetchBatchMetrics{})
	if got := lines(buf); len(got) != 1 || !strings.Contains(got[0], "from=3 to=1") || !strings.Contains(got[0], "seen_by=fetch") {
		t.Fatalf("a move back logged %q", got)
	}
}
