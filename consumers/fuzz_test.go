package consumers

import (
	"encoding/json"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"
)

// Fuzz targets of what the runtime decodes from records anybody can
// produce: the bookkeeping headers (envelopeOf), a dead letter's headers
// (deadLetter) and a position given on the command line (ParsePosition).
// The record values' Avro decoding is fuzzed in package schemas
// (FuzzDecode, FuzzRecursiveDecode). Interesting inputs are kept in
// testdata/fuzz/<target>/.

// fuzzHeaders turns "k=v" lines into record headers: the fuzzer mutates one
// string rather than a list, and may repeat a key (the last one counts).
func fuzzHeaders(s string) []kgo.RecordHeader {
	var hs []kgo.RecordHeader
	for _, line := range strings.Split(s, "\n") {
		if line == "" {
			continue
		}
		k, v, _ := strings.Cut(line, "=")
		hs = append(hs, kgo.RecordHeader{Key: k, Value: []byte(v)})
	}
	return hs
}

func addEnvelopeSeeds(f *testing.F) {
	full := strings.Join([]string{
		HeaderOriginalTopic + "=orders", HeaderOriginalPartition + "=2", HeaderOriginalOffset + "=41",
		HeaderAttempt + "=3", HeaderDueAt + "=1790000000123", HeaderGroup + "=billing",
		HeaderErrorClass + "=" + ClassHandler, HeaderErrorMessage + "=boom", HeaderReplayCount + "=1",
	}, "\n")
	forged := strings.Join([]string{
		HeaderOriginalTopic + "=other", HeaderOriginalPartition + "=7", HeaderOriginalOffset + "=-5",
		HeaderAttempt + "=99999999999999999999", HeaderDueAt + "=-9223372036854775808", HeaderGroup + "=billing",
		HeaderReplayCount + "=-1", HeaderAttempt + "=2",
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
		rec := &kgo.Record{Topic: topic, Partition: partition, Offset: offset, Headers: fuzzHeaders(headers)}
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

// A dead letter whose headers do not match the DLT it was read from is
// marked untrusted (ReplayDLT refuses those); a trusted one names the
// source of that DLT, in the partition it was read from. Every dead letter
// encodes as JSON (a time past the year 9999 used to stop `dlt list
// --json`).
func FuzzDeadLetter(f *testing.F) {
	addEnvelopeSeeds(f)
	f.Add("orders.billing.dlt", "billing", int32(0), int64(3), HeaderGroup+"=billing\n"+HeaderOriginalTopic+"=orders\n"+
		HeaderOriginalPartition+"=0\n"+HeaderFirstFailureAt+"=253402300800000")
	f.Fuzz(func(t *testing.T, topic, _ string, partition int32, offset int64, headers string) {
		rec := &kgo.Record{Topic: topic, Partition: partition, Offset: offset, Headers: fuzzHeaders(headers), Value: []byte{0, 0, 0, 0, 1},
			Timestamp: time.UnixMilli(offset)}
		d := deadLetter(rec)
		if _, err := json.Marshal(d); err != nil {
			t.Fatalf("%+v does not encode as JSON: %v", d, err)
		}
		if d.Untrusted != "" {
			return
		}
		src, ok := ParseDLTTopic(topic, d.Group)
		if !ok || src != d.OriginalTopic || d.OriginalPartition != partition || d.ReplayCount < 0 {
			t.Fatalf("trusted dead letter on %q/%d: group %q, original %q/%d, replay count %d", topic, partition, d.Group, d.OriginalTopic, d.OriginalPartition, d.ReplayCount)
		}
		if d.Position != (Position{topic, partition, offset}) {
			t.Fatalf("position %+v of a record at %q/%d/%d", d.Position, topic, partition, offset)
		}
	})
}

// ParsePosition (`eventline dlt replay --position`) accepts only what
// Position.String prints back the same.
func FuzzParsePosition(f *testing.F) {
	for _, s := range []string{"orders.billing.dlt/2/41", "a/b/c/0/0", "t/-1/0", "t/0/-1", "/0/0", "t//0", "t/0/", "t/2147483648/0",
		"t/+1/0", "t/0/9223372036854775808", "t/0x1/2", "t/1/2/", "\x00/1/2"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		p, err := ParsePosition(s)
		if err != nil {
			return
		}
		if p.Topic == "" || p.Partition < 0 || p.Offset < 0 {
			t.Fatalf("%q parsed as %+v", s, p)
		}
		again, err := ParsePosition(p.String())
		if err != nil || again != p {
			t.Fatalf("%q parsed as %+v, which prints as %q and parses as %+v, %v", s, p, p.String(), again, err)
		}
	})
}
