package testevents_test

import (
	"path"
	"slices"
	"strings"
	"testing"

	"github.com/eventline/eventline/internal/testevents"
)

// Each schema file holds the record it is named after, New makes that
// record's generated type, and the type carries the file's schema (a stale
// testevents_gen.go fails here as well as in `make check-generate`).
func TestGeneratedTypes(t *testing.T) {
	infos := testevents.Catalog().All()
	if len(infos) != 6 {
		t.Fatalf("%d schemas in the catalogue, want 5 events and the shared Attachment", len(infos))
	}
	for _, info := range infos {
		if got := path.Base(info.File); got != path.Ext(info.Name)[1:]+".avsc" {
			t.Errorf("%s is in %s", info.Name, info.File)
		}
		if info.Name == "helpdesk.shared.Attachment" {
			if info.File != "shared/Attachment.avsc" || len(info.References) != 0 {
				t.Errorf("the shared type: %s, references %v", info.File, info.References)
			}
			continue
		}
		usesAttachment := info.Name == "helpdesk.tickets.TicketOpened" || info.Name == "helpdesk.worklog.WorkLogged"
		if got := strings.Join(info.References, ","); usesAttachment != (got == "helpdesk.shared.Attachment") || !usesAttachment && got != "" {
			t.Errorf("%s references %q", info.Name, got)
		}
		ev, ok := testevents.New(info.Name)
		if !ok {
			t.Errorf("%s: New knows no Go type for it", info.Name)
			continue
		}
		if ev.Schema().Fingerprint() != info.Schema.Fingerprint() {
			t.Errorf("%s: the Go type's schema is not %s's; run `make generate`", info.Name, info.File)
		}
	}
	if _, ok := testevents.New("helpdesk.tickets.TicketLost"); ok {
		t.Error("New made a type no schema declares")
	}
}

// The pipeline file routes exactly the catalogue's events, more than one
// per topic, and All returns one value of each.
func TestPipelineRoutesEveryEvent(t *testing.T) {
	var names []string
	for _, ev := range testevents.All() {
		info, err := testevents.Catalog().Of(ev)
		if err != nil {
			t.Fatal(err)
		}
		names = append(names, info.Name)
	}
	slices.Sort(names)
	if routed := testevents.Pipeline().Events(); !slices.Equal(routed, names) {
		t.Errorf("eventline.yaml routes %v; the catalogue has %v", routed, names)
	}
	for _, topic := range testevents.Pipeline().Topics {
		if len(topic.Events) < 2 {
			t.Errorf("topic %s routes %v, want several types", topic.Name, topic.Events)
		}
	}
}
