package migrate_test

import (
	"strings"
	"testing"

	"github.com/eventline/eventline/migrate"
	"github.com/eventline/eventline/producer"
	"github.com/eventline/eventline/relay"
)

// One vocabulary: the words flags and EVENTLINE_MODE take are the values
// producer and relay configs take, of one type, so a service reading
// EVENTLINE_MODE hands the same value to both.
func TestOneModeVocabulary(t *testing.T) {
	for in, want := range map[string]migrate.Mode{"": migrate.ModePoll, "poll": migrate.ModePoll, " Logical ": migrate.ModeLogical, "LOGICAL": migrate.ModeLogical} {
		got, err := migrate.ParseMode(in)
		if err != nil || got != want {
			t.Errorf("ParseMode(%q) = %q, %v; want %q", in, got, err, want)
		}
	}
	for _, in := range []string{"table", "message", "logic", "true"} {
		if _, err := migrate.ParseMode(in); err == nil || !strings.Contains(err.Error(), `"poll" or "logical"`) {
			t.Errorf("ParseMode(%q): %v; want an error naming poll and logical", in, err)
		}
	}
	mode, _ := migrate.ParseMode("logical")
	// The same value, no conversion: these lines compile only while the
	// three are one type.
	var p producer.Mode = mode
	var r relay.Mode = p
	if p != producer.ModeLogical || r != relay.ModeLogical || producer.ModePoll != relay.ModePoll {
		t.Fatalf("producer %q, relay %q", p, r)
	}
}
