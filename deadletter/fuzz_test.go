package deadletter

import (
	"encoding/json"
	"strings"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/eventline/eventline/consumers"
	"github.com/eventline/eventline/headers"
	"github.com/eventline/eventline/internal/testkit"
)

// Fuzz targets of what the tooling reads from records anybody can produce
// (a dead letter's headers) and from the command line (a position).
// Interesting inputs are kept in testdata/fuzz/<target>/.

// A dead letter whose headers do not match the DLT it was read from is
// marked untrusted (Replay refuses those); a trusted one names the source
// of that DLT, in the partition it was read from. Every dead letter
// encodes as JSON (a time past the year 9999 used to stop `dlt list
// --json`). The second argument is unused: the corpus keeps the shape of
// the runtime's envelope target.
func FuzzDeadLetter(f *testing.F) {
	full := strings.Join([]string{
		headers.OriginalTopic + "=orders", headers.OriginalPartition + "=2", headers.OriginalOffset + "=41",
		headers.Attempt + "=3", headers.Group + "=billing", headers.ErrorClass + "=" + consumers.ClassHandler,
		headers.ErrorMessage + "=boom", headers.ReplayCount + "=1",
	}, "\n")
	forged := strings.Join([]string{
		headers.OriginalTopic + "=other", headers.OriginalPartition + "=7", headers.OriginalOffset + "=-5",
		headers.Group + "=billing", headers.ReplayCount + "=-1",
	}, "\n")
	for _, topic := range []string{"orders.billing.dlt", ".billing.dlt", "orders.billing.retry.1", "orders.x.y.dlt"} {
		for _, partition := range []int32{2, 7} {
			f.Add(topic, "", partition, int64(9), full)
			f.Add(topic, "", partition, int64(9), forged)
		}
	}
	f.Add("orders.billing.dlt", "", int32(0), int64(3), headers.Group+"=billing\n"+headers.OriginalTopic+"=orders\n"+
		headers.OriginalPartition+"=0\n"+headers.FirstFailureAt+"=253402300800000")
	f.Fuzz(func(t *testing.T, topic, _ string, partition int32, offset int64, headers string) {
		rec := &kgo.Record{Topic: topic, Partition: partition, Offset: offset, Headers: testkit.FuzzHeaders(headers), Value: []byte{0, 0, 0, 0, 1},
			Timestamp: time.UnixMilli(offset)}
		d := parse(rec)
		if _, err := json.Marshal(d); err != nil {
			t.Fatalf("%+v does not encode as JSON: %v", d, err)
		}
		if d.Untrusted != "" {
			return
		}
		src, ok := consumers.ParseDLTTopic(topic, d.Group)
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
