package consumers

import (
	"strconv"
	"strings"
	"testing"

	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/eventline/eventline/headers"
	"github.com/eventline/eventline/internal/testkit"
)

// Fuzz target of what the runtime decodes from records anybody can
// produce: the bookkeeping headers (envelopeOf). The record values' Avro
// decoding is fuzzed in package schemas (FuzzDecode, FuzzRecursiveDecode),
// a dead letter's headers and a position in package deadletter.
// Interesting inputs are kept in testdata/fuzz/<target>/.

func addEnvelopeSeeds(f *testing.F) {
	full := strings.Join([]string{
		headers.OriginalTopic + "=orders", headers.OriginalPartition + "=2", headers.OriginalOffset + "=41",
		headers.Attempt + "=3", headers.DueAt + "=1790000000123", headers.Group + "=billing",
		headers.ErrorClass + "=" + ClassHandler, headers.ErrorMessage + "=boom", headers.ReplayCount + "=1",
	}, "\n")
	forged := strings.Join([]string{
		headers.OriginalTopic + "=other", headers.OriginalPartition + "=7", headers.OriginalOffset + "=-5",
		headers.Attempt + "=99999999999999999999", headers.DueAt + "=-9223372036854775808", headers.Group + "=billing",
		headers.ReplayCount + "=-1", headers.Attempt + "=2",
	}, "\n")
	for _, c := range []struct {
		topic, group string
		partition    int32
		offset       int64
		headers      string
	}{
		{"orders", "billing", 2, 100, ""},
		{"orders", "billing", 2, 100, full},
		{"orders.billing.retry.1", "billing", 2, 7, full},
		{"orders.billing.retry.01", "billing", 2, 7, full},
		{"orders.billing.retry.0", "billing", 2, 7, forged},
		{"orders.billing.dlt", "billing", 2, 9, full},
		{"orders.billing.dlt", "billing", 7, 9, forged},
		{".billing.dlt", "billing", 0, 0, full},
		{"a.b.retry.2.b.retry.3", "b", 1, 1, forged},
		{"orders.billing.dlt", "", 0, 0, full},
		{"orders.x.y.dlt", "x.y", 0, 0, full},
	} {
		f.Add(c.topic, c.group, c.partition, c.offset, c.headers)
	}
}

// envelopeOf trusts the bookkeeping headers only on the group's own retry
// topics and DLT, and bounds what they may claim there.
func FuzzEnvelope(f *testing.F) {
	addEnvelopeSeeds(f)
	f.Fuzz(func(t *testing.T, topic, group string, partition int32, offset int64, headers string) {
		if partition < 0 || offset < 0 {
			return // the broker hands out no such record
		}
		rec := &kgo.Record{Topic: topic, Partition: partition, Offset: offset, Headers: testkit.FuzzHeaders(headers)}
		env := envelopeOf(rec, group)
		src, isCopy := copyTopicSource(topic, group)
		if env.hasOrigin != isCopy {
			t.Fatalf("hasOrigin %v on %q (group %q), a copy topic: %v", env.hasOrigin, topic, group, isCopy)
		}
		if !isCopy {
			if env.origin != (origin{topic, partition, offset}) || env.attempt != 0 || !env.due.IsZero() {
				t.Fatalf("a source record's envelope took its headers: %+v", env)
			}
			return
		}
		if retry := strings.TrimPrefix(topic, src+"."+group+".retry."); topic != DLTTopic(src, group) {
			n, err := strconv.Atoi(retry)
			if err != nil || RetryTopic(src, group, n) != topic {
				t.Fatalf("%q (group %q) taken for a copy of %q, but it is neither its DLT nor a retry topic", topic, group, src)
			}
		}
		if env.origin.topic != src || env.origin.partition != partition || env.origin.offset < 0 {
			t.Fatalf("copy on %q/%d: origin %+v", topic, partition, env.origin)
		}
		if env.attempt < 1 || env.attempt > maxAttempt {
			t.Fatalf("attempt %d out of [1, %d]", env.attempt, maxAttempt)
		}
	})
}
