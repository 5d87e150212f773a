package consumers_test

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"
	"github.com/twmb/franz-go/pkg/sasl/scram"

	"github.com/eventline/eventline/consumers"
	"github.com/eventline/eventline/internal/testkit"
)

// A group on a cluster that serves only TLS and SASL (kfake, or Apache
// Kafka's SASL_SSL listener) applies every record once, through its retry
// topic too, with the TLS and SASL options a user passes in KafkaOpts; with
// a wrong password or a CA that did not sign the broker's certificate, Run
// returns a clear error at once instead of retrying.
func TestGroupOnSecuredCluster(t *testing.T) {
	t.Parallel()
	sc := testkit.SecureKafka(t)
	opts := sc.ClientOpts(t, "SCRAM-SHA-512")
	e := newGroupEnvOn(t, sc.Brokers, 3, opts[1:]...) // the seeds are e.brokers
	var recs []*kgo.Record
	failing := ""
	for i := range 40 {
		r, id := e.event(t, "k"+string(rune('a'+i%8)))
		if i == 7 {
			failing = id.String()
		}
		recs = append(recs, r)
	}
	e.produce(t, recs...)
	group := testkit.UniqueName(t, "g")
	g, _ := e.run(t, consumers.Config{Group: group, RetryDelays: fastDelays, Handler: recordingHandler(group, func(ev *consumers.Event) error {
		if ev.ID.String() == failing && ev.Attempt == 0 {
			return errFlaky
		}
		return nil
	})})
	testkit.WaitFor(t, 60*time.Second, "every record applied", func() bool { return e.count(t, `SELECT count(*) FROM applied`) == 40 })
	if n := e.count(t, `SELECT count(*) FROM applied WHERE n <> 1`); n != 0 {
		t.Errorf("%d events applied more than once", n)
	}
	if a := e.count(t, `SELECT attempt FROM applied WHERE event_id = $1`, failing); a != 1 {
		t.Errorf("the failing event applied at attempt %d, want 1 (from the retry topic)", a)
	}
	waitStats(t, g, "1 retried", func(st consumers.Stats) bool { return st.Retried == 1 })

	up := sc.Users["SCRAM-SHA-512"]
	wrongPassword := append(opts[1:2:2], kgo.SASL(scram.Auth{User: up[0], Pass: "not-the-password"}.AsSha512Mechanism()))
	otherCA := sc
	otherCA.CAFile = sc.OtherCAFile
	untrusted := otherCA.ClientOpts(t, "SCRAM-SHA-512")[1:]
	for name, tc := range map[string]struct {
		opts []kgo.Opt
		want string
	}{
		"wrong password": {wrongPassword, "SASL_AUTHENTICATION_FAILED"},
		"untrusted CA":   {untrusted, "certificate signed by unknown authority"},
	} {
		g, err := consumers.New(consumers.Config{Group: testkit.UniqueName(t, "g"), Topics: []string{e.topic}, Brokers: e.brokers, DB: e.db, Serde: e.serde,
			KafkaOpts: tc.opts, CreateTopics: true, Logger: testkit.Logger(t), Handler: recordingHandler("x", nil)})
		if err != nil {
			t.Fatal(err)
		}
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		start := time.Now()
		err = g.Run(ctx)
		cancel()
		took := time.Since(start)
		if err == nil || !strings.Contains(err.Error(), tc.want) || took > 15*time.Second {
			t.Errorf("%s: Run returned %v after %v, want an error naming %q within 15 s", name, err, took, tc.want)
		} else {
			t.Logf("%s: Run returned after %v: %v", name, took.Round(time.Millisecond), err)
		}
	}
}
