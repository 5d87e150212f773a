package pipeline_test

import (
	"testing"

	"github.com/eventline/eventline/pipeline"
)

// FuzzParse: any file either parses into a pipeline that validates again,
// whose every topic name Kafka accepts and whose lookups work, or is an
// error; never a panic. (A pipeline file comes from a team's repository,
// and `eventline schemas check` runs it in CI.)
func FuzzParse(f *testing.F) {
	for _, seed := range []string{
		"",
		"topics:\n  - name: orders.events\n    partitions: 3\n    events: [a.B, a.C]\n",
		"schemas:\n  subject_strategy: topic\n  compatibility: full\nsubjects:\n  x-value: {compatibility: none}\n",
		"consumers:\n  retry_delays: [1s, 10s, 1m]\n",
		"topics: [{name: 'bad name'}]\n",
		"a: &a [*a, *a]\n",
		"topics:\n  - name: t\n    replication_factor: 0\n",
		"unknown_key: 1\n",
	} {
		f.Add([]byte(seed))
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		p, err := pipeline.Parse(b)
		if err != nil {
			return
		}
		if err := p.Validate(); err != nil {
			t.Fatalf("parsed but does not validate again: %v", err)
		}
		for _, tp := range p.Topics {
			if tp.Name == "" || len(tp.Name) > 249 || tp.Partitions < 1 {
				t.Fatalf("accepted topic %+v", tp)
			}
			for _, ev := range tp.Events {
				_ = p.SubjectFor(tp.Name, ev)
				if _, ok := p.TopicFor(ev); !ok {
					t.Fatalf("event %q of topic %q not found by TopicFor", ev, tp.Name)
				}
			}
		}
		for _, d := range p.Consumers.RetryDelays {
			if d <= 0 {
				t.Fatalf("accepted retry delay %v", d)
			}
		}
	})
}
