package consumers_test

import (
	"context"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/eventline/eventline/consumers"
	"github.com/eventline/eventline/internal/testkit"
)

// A group started where the migrations have not run (or with the wrong
// Schema) ends Run at once with an error naming the schema and the
// command, instead of retrying every apply for ever while looking healthy.
func TestRunRefusesAnUnmigratedSchema(t *testing.T) {
	t.Parallel()
	e := newGroupEnv(t, 1)
	group := testkit.UniqueName(t, "g")
	g, err := consumers.New(consumers.Config{Group: group, Topics: []string{e.topic}, Brokers: e.brokers, DB: e.db, Serde: e.serde,
		Schema: "not_migrated", Handler: recordingHandler(group, nil), CreateTopics: true, Logger: testkit.Logger(t)})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	start := time.Now()
	err = g.Run(ctx)
	if !errors.Is(err, consumers.ErrNotMigrated) || !strings.Contains(err.Error(), `"not_migrated"`) || !strings.Contains(err.Error(), "eventline migrate --schema not_migrated") {
		t.Fatalf("Run on an unmigrated schema: %v", err)
	}
	if took := time.Since(start); took > 10*time.Second || ctx.Err() != nil {
		t.Fatalf("Run took %v to refuse", took)
	}
}
