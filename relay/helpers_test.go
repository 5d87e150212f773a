package relay_test

import (
	"github.com/eventline/eventline/internal/testkit"
	"log/slog"
	"testing"
	"time"
)

// waitFor polls cond (bounded): the relay's progress is observable only
// through its stats and the database.
func waitFor(t *testing.T, cond func() bool) {
	t.Helper()
	testkit.WaitFor(t, 60*time.Second, "relay progress", cond)
}

func newLogger(w *testkit.SyncBuffer) *slog.Logger { return slog.New(slog.NewTextHandler(w, nil)) }
