package cli_test

import (
	"context"
	"encoding/json"
	"fmt"
	"runtime"
	"strings"
	"testing"
	"time"
	"unicode/utf8"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kgo"
	"github.com/twmb/franz-go/pkg/sr"

	"github.com/eventline/eventline/consumers"
	"github.com/eventline/eventline/deadletter"
	"github.com/eventline/eventline/headers"
	"github.com/eventline/eventline/internal/cli"
	"github.com/eventline/eventline/internal/testkit"
	"github.com/eventline/eventline/schemas"
)

// `eventline dlt list|show|replay` on dead letters written the way the
// consumer runtime writes them (the runtime's own path is proved in
// consumers' TestReplayReachesOnlyFailingGroup).
func TestDLTCommands(t *testing.T) {
	t.Parallel()
	brokers := testkit.Kafka(t)
	topic := testkit.Topic(t, brokers, 1)
	group := testkit.UniqueName(t, "g")
	dlt := consumers.DLTTopic(topic, group)
	cl := testkit.Client(t, brokers, kgo.RecordPartitioner(kgo.ManualPartitioner()))
	if _, err := kadm.NewClient(cl).CreateTopic(context.Background(), 1, 1, nil, dlt); err != nil {
		t.Fatal(err)
	}
	dead := func(offset, class, replays string) *kgo.Record {
		return &kgo.Record{Topic: dlt, Key: []byte("k" + offset), Value: []byte("\x00garbage"), Headers: []kgo.RecordHeader{
			{Key: headers.EventID, Value: []byte("6f1c6a86-8f0e-4a43-9b54-6a2f4f7d1a0" + offset)},
			{Key: headers.Group, Value: []byte(group)},
			{Key: headers.OriginalTopic, Value: []byte(topic)},
			{Key: headers.OriginalPartition, Value: []byte("0")},
			{Key: headers.OriginalOffset, Value: []byte(offset)},
			{Key: headers.ErrorClass, Value: []byte(class)},
			{Key: headers.ErrorMessage, Value: []byte(class + " failure of " + offset)},
			{Key: headers.Attempt, Value: []byte("4")},
			{Key: headers.ReplayCount, Value: []byte(replays)},
		}}
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if err := cl.ProduceSync(ctx, dead("0", consumers.ClassDecode, "0"), dead("1", consumers.ClassPermanent, "0"), dead("2", consumers.ClassHandler, "3")).FirstErr(); err != nil {
		t.Fatal(err)
	}
	env := map[string]string{"KAFKA_BROKERS": strings.Join(brokers, ",")}

	code, out, errOut := run(t, env, "dlt", "list", "--group", group, "--topic", topic, "--json")
	var dls []deadletter.Record
	if code != 0 || json.Unmarshal([]byte(out), &dls) != nil || len(dls) != 3 || dls[1].ErrorClass != consumers.ClassPermanent || dls[1].OriginalOffset != 1 {
		t.Fatalf("list --json: exit %d\n%s\n%s", code, out, errOut)
	}
	code, out, _ = run(t, env, "dlt", "list", "--topic", topic, "--class", "permanent")
	if code != 0 || !strings.Contains(out, "1 dead letters") || !strings.Contains(out, "permanent failure of 1") {
		t.Fatalf("list --class (all DLT topics scanned): exit %d\n%s", code, out)
	}
	pos := dlt + "/0/1"
	code, out, _ = run(t, env, "dlt", "show", pos)
	if code != 0 || !strings.Contains(out, "permanent: permanent failure of 1") || !strings.Contains(out, "eventline-original-topic: "+topic) {
		t.Fatalf("show: exit %d\n%s", code, out)
	}
	code, out, _ = run(t, env, "dlt", "replay", "--group", group, "--offsets", pos, "--dry-run")
	if code != 0 || !strings.Contains(out, "would replay "+pos+" → "+consumers.RetryTopic(topic, group, 1)) {
		t.Fatalf("replay --dry-run: exit %d\n%s", code, out)
	}
	code, out, _ = run(t, env, "dlt", "replay", "--group", group, "--topic", topic, "--class", "handler")
	if code != cli.ExitFail || !strings.Contains(out, "refused "+dlt+"/0/2: replayed too often") {
		t.Fatalf("replay over the limit: exit %d\n%s", code, out)
	}
	code, _, errOut = run(t, env, "dlt", "replay", "--group", group, "--offsets", pos)
	if code != cli.ExitFail || !strings.Contains(errOut, "retry topic "+consumers.RetryTopic(topic, group, 1)+" does not exist") {
		t.Fatalf("replay before the group ever ran: exit %d\n%s", code, errOut)
	}
	adm := kadm.NewClient(cl)
	if _, err := adm.CreateTopic(context.Background(), 1, 1, nil, consumers.RetryTopic(topic, group, 1)); err != nil {
		t.Fatal(err)
	}
	// Apache Kafka answers CreateTopics before its metadata shows the topic.
	testkit.WaitFor(t, 30*time.Second, "the retry topic in the metadata", func() bool {
		td, err := adm.ListTopics(context.Background(), consumers.RetryTopic(topic, group, 1))
		return err == nil && td.Has(consumers.RetryTopic(topic, group, 1)) && td[consumers.RetryTopic(topic, group, 1)].Err == nil
	})
	code, out, _ = run(t, env, "dlt", "replay", "--group", group, "--offsets", pos, "--json")
	if code != 0 || !strings.Contains(out, `"replayed"`) {
		t.Fatalf("replay: exit %d\n%s", code, out)
	}
	got := 0
	rc := testkit.Client(t, brokers, kgo.ConsumeTopics(consumers.RetryTopic(topic, group, 1)), kgo.ConsumeResetOffset(kgo.NewOffset().AtStart()))
	for got == 0 {
		f := rc.PollFetches(ctx)
		if ctx.Err() != nil {
			t.Fatal("the replayed record never reached retry.1")
		}
		f.EachRecord(func(r *kgo.Record) {
			got++
			for _, h := range r.Headers {
				if h.Key == headers.ReplayCount && string(h.Value) != "1" {
					t.Errorf("replay count %s, want 1", h.Value)
				}
			}
		})
	}

	for _, tc := range []struct {
		args []string
		code int
		want string
	}{
		{[]string{"dlt"}, cli.ExitUsage, "usage: eventline dlt"},
		{[]string{"dlt", "show"}, cli.ExitUsage, "needs TOPIC/PARTITION/OFFSET"},
		{[]string{"dlt", "show", "nonsense"}, cli.ExitUsage, "want TOPIC/PARTITION/OFFSET"},
		{[]string{"dlt", "list", "--since", "yesterday"}, cli.ExitUsage, "neither a duration"},
		{[]string{"dlt", "replay", "--all"}, cli.ExitUsage, "needs --group"},
		{[]string{"dlt", "replay", "--group", group}, cli.ExitUsage, "select records"},
		{[]string{"dlt", "list", "--brokers", "127.0.0.1:1", "--timeout", "2s"}, cli.ExitFail, "reading dead letters from 127.0.0.1:1"},
	} {
		code, _, errOut := run(t, env, tc.args...)
		if code != tc.code || !strings.Contains(errOut, tc.want) {
			t.Errorf("%v: exit %d (want %d)\n%s", tc.args, code, tc.code, errOut)
		}
	}
}

// dltHeapBound bounds what one `eventline dlt list|show` allocates on the
// hostile DLT of TestDLTHostileRecords (14 MiB at most seen on kfake, in
// the process, with -race): the heap bound of the consumers' hostile
// matrix. One nested bomb decoded without the budget allocates 640 MB and
// more.
const dltHeapBound = 128 << 20

// `eventline dlt list|show` on a DLT holding the hostile-record matrix's
// nested bombs, a record with terminal escape sequences in its key, error
// message and headers, and one whose eventline-first-failure-at is in the
// year 10000: every command exits 0 and allocates less than dltHeapBound
// (a list of such a DLT died of out-of-memory, a show reached 23 GB);
// the bombs show the decode budget's error; text output carries no
// control character, --json none a terminal acts on; the far-future
// record is listed with a note (it used to stop `list --json` with exit 1).
// Not parallel: it measures the process's allocations.
func TestDLTHostileRecords(t *testing.T) {
	brokers := testkit.Kafka(t)
	reg := testkit.Registry(t)
	rc, err := sr.NewClient(sr.URLs(reg))
	if err != nil {
		t.Fatal(err)
	}
	topic := testkit.Topic(t, brokers, 1)
	group := testkit.UniqueName(t, "g")
	dlt := consumers.DLTTopic(topic, group)
	cl := testkit.Client(t, brokers, kgo.RecordPartitioner(kgo.ManualPartitioner()))
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	if _, err := kadm.NewClient(cl).CreateTopic(ctx, 1, 1, nil, dlt); err != nil {
		t.Fatal(err)
	}
	dead := func(key, msg string, value []byte, extra ...kgo.RecordHeader) *kgo.Record {
		return &kgo.Record{Topic: dlt, Key: []byte(key), Value: value, Headers: append([]kgo.RecordHeader{
			{Key: headers.Group, Value: []byte(group)}, {Key: headers.OriginalTopic, Value: []byte(topic)},
			{Key: headers.OriginalPartition, Value: []byte("0")}, {Key: headers.ErrorClass, Value: []byte(consumers.ClassDecode)},
			{Key: headers.ErrorMessage, Value: []byte(msg)},
		}, extra...)}
	}
	var recs []*kgo.Record
	for i, hv := range testkit.HostileValues() {
		ss, err := rc.CreateSchema(ctx, fmt.Sprintf("%s-nested%d-value", topic, i), sr.Schema{Schema: hv.Schema})
		if err != nil {
			t.Fatal(err)
		}
		recs = append(recs, dead(hv.Name, "budget", append(schemas.AppendHeader(nil, ss.ID), hv.Body...)))
	}
	const evil = "\x1b]0;owned\x07\x1b[2J\u009b31m\u202eevil\x7f\xff"
	recs = append(recs, dead("key"+evil, "message"+evil, []byte("x"), kgo.RecordHeader{Key: "x-header" + evil, Value: []byte("value" + evil)}),
		dead("far-future", "later", []byte("x"), kgo.RecordHeader{Key: headers.FirstFailureAt, Value: []byte("253402300800000")}))
	if err := cl.ProduceSync(ctx, recs...).FirstErr(); err != nil {
		t.Fatal(err)
	}
	env := map[string]string{"KAFKA_BROKERS": strings.Join(brokers, ","), "SCHEMA_REGISTRY_URL": reg}
	bounded := func(args ...string) (string, string) {
		t.Helper()
		var before, after runtime.MemStats
		runtime.ReadMemStats(&before)
		code, out, errOut := run(t, env, args...)
		runtime.ReadMemStats(&after)
		allocated := after.TotalAlloc - before.TotalAlloc
		t.Logf("%v: exit %d, %d KiB allocated", args, code, allocated>>10)
		if code != 0 {
			t.Fatalf("%v: exit %d\n%s\n%s", args, code, out, errOut)
		}
		if allocated > dltHeapBound {
			t.Errorf("%v allocated %d MiB, over %d MiB", args, allocated>>20, dltHeapBound>>20)
		}
		return out, errOut
	}
	noControls := func(what, s string) {
		t.Helper()
		for _, r := range s {
			if (r < 0x20 && r != '\n' && r != '\t') || (r >= 0x7f && r <= 0x9f) || r == 0x202e || r == utf8.RuneError {
				t.Errorf("%s prints %U raw:\n%q", what, r, s)
				return
			}
		}
	}

	out, _ := bounded("dlt", "list", "--group", group)
	noControls("list", out)
	if !strings.Contains(out, fmt.Sprintf("%d dead letters", len(recs))) || !strings.Contains(out, `message\x1b]0;owned\x07`) {
		t.Errorf("list:\n%s", out)
	}
	out, _ = bounded("dlt", "list", "--group", group, "--json")
	noControls("list --json", strings.ReplaceAll(out, "\n", ""))
	var dls []deadletter.Record
	if err := json.Unmarshal([]byte(out), &dls); err != nil || len(dls) != len(recs) {
		t.Fatalf("list --json: %d records, %v\n%s", len(dls), err, out)
	}
	for i, d := range dls {
		switch {
		case i < len(recs)-2 && !strings.Contains(d.DecodeError, "decoding budget"):
			t.Errorf("%s: decode error %q, want the decoding budget's", d.Key, d.DecodeError)
		case d.Key == "key"+strings.ToValidUTF8(evil, "\uFFFD") && d.Headers["x-header"+strings.ToValidUTF8(evil, "\uFFFD")] != "value"+strings.ToValidUTF8(evil, "\uFFFD"):
			t.Errorf("the escaped record does not read back: %+v", d)
		case d.Key == "far-future" && (!d.FirstFailureAt.IsZero() || len(d.Notes) == 0 || !strings.Contains(d.Notes[0], "10000")):
			t.Errorf("far-future record: first failure %v, notes %q", d.FirstFailureAt, d.Notes)
		}
	}
	for i := range recs {
		pos := fmt.Sprintf("%s/0/%d", dlt, i)
		out, _ := bounded("dlt", "show", pos)
		noControls("show "+pos, out)
		if i < len(recs)-2 && !strings.Contains(out, "decoding budget") {
			t.Errorf("show %s:\n%s", pos, out)
		}
		out, _ = bounded("dlt", "show", pos, "--json")
		noControls("show --json "+pos, strings.ReplaceAll(out, "\n", ""))
	}
}
