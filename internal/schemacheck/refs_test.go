package schemacheck_test

import (
	"context"
	"encoding/json"
	"maps"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/twmb/franz-go/pkg/sr"

	"github.com/eventline/eventline/eventlinetest"
	"github.com/eventline/eventline/internal/schemacheck"
	"github.com/eventline/eventline/pipeline"
)

// A catalogue whose events use a shared type, Money, from eventline.yaml's
// shared directory: Paid in a field, Refunded in an array and in a union.
const refsPipeline = `schemas: {dir: avro, shared: shared, compatibility: BACKWARD}
topics: [{name: pay, events: [acme.Paid, acme.Refunded]}]
`

const (
	moneyV1 = `{"type": "record", "name": "Money", "namespace": "acme.shared", "fields": [{"name": "units", "type": "long"}, {"name": "currency", "type": "string"}]}`
	// v2 adds a field with a default: compatible.
	moneyV2 = `{"type": "record", "name": "Money", "namespace": "acme.shared", "fields": [{"name": "units", "type": "long"}, {"name": "currency", "type": "string"}, {"name": "scale", "type": "int", "default": 2}]}`
	// v3 adds one without: new readers cannot read v2's data.
	moneyV3 = `{"type": "record", "name": "Money", "namespace": "acme.shared", "fields": [{"name": "units", "type": "long"}, {"name": "currency", "type": "string"}, {"name": "scale", "type": "int", "default": 2}, {"name": "note", "type": "string"}]}`

	paidRef     = `{"type": "record", "name": "Paid", "namespace": "acme", "fields": [{"name": "id", "type": "string"}, {"name": "amount", "type": "acme.shared.Money"}]}`
	refundedRef = `{"type": "record", "name": "Refunded", "namespace": "acme", "fields": [{"name": "id", "type": "string"}, {"name": "parts", "type": {"type": "array", "items": "acme.shared.Money"}}, {"name": "fee", "type": ["null", "acme.shared.Money"], "default": null}]}`
)

func newRefsRepo(t *testing.T) *repo {
	t.Helper()
	r := newRepo(t)
	r.write("eventline.yaml", refsPipeline)
	r.write("shared/Money.avsc", moneyV1)
	r.write("avro/Paid.avsc", paidRef)
	r.write("avro/Refunded.avsc", refundedRef)
	r.commit("events using Money")
	return r
}

// A shared type's history: each event that uses it is compared with every
// state of it (a compatible change passes), and a breaking change is
// reported for each subject it breaks, the shared type's own included,
// with the path through the reference.
func TestAgainstGitSharedTypes(t *testing.T) {
	r := newRefsRepo(t)
	rep, err := r.check("HEAD")
	if err != nil || !rep.OK() {
		t.Fatalf("unchanged: %+v, %v", rep, err)
	}
	subjects := map[string]int{}
	for _, s := range rep.Subjects {
		subjects[s.Subject] = s.Versions
	}
	for _, want := range []string{"pay-acme.Paid", "pay-acme.Refunded", "acme.shared.Money"} {
		if subjects[want] != 1 {
			t.Errorf("subject %s: %d version(s), want 1 (subjects %v)", want, subjects[want], subjects)
		}
	}

	r.write("shared/Money.avsc", moneyV2)
	if rep, err := r.check("HEAD"); err != nil || !rep.OK() {
		t.Fatalf("compatible change of Money: %+v, %v", rep, err)
	}
	r.commit("Money v2")
	// Paid's file did not change, but Money did: Paid has two versions.
	rep, err = r.check("HEAD")
	if err != nil || !rep.OK() {
		t.Fatalf("after Money v2: %+v, %v", rep, err)
	}
	for _, s := range rep.Subjects {
		if s.Versions != 2 {
			t.Errorf("subject %s: %d version(s), want 2", s.Subject, s.Versions)
		}
	}

	r.write("shared/Money.avsc", moneyV3)
	rep, err = r.check("HEAD")
	if err != nil || rep.OK() || rep.Invalid() {
		t.Fatalf("breaking change of Money: %+v, %v", rep, err)
	}
	got := map[string]schemacheck.Finding{}
	for _, f := range rep.Findings {
		if f.Kind != schemacheck.KindIncompatible || f.Version != 2 || f.Direction != "backward" {
			t.Errorf("finding %+v: want incompatible with version 2, backward", f)
		}
		got[f.Subject+" "+f.Location] = f
	}
	want := map[string]string{ // subject and location -> ref path
		"acme.shared.Money /fields/note":                         "",
		"pay-acme.Paid /fields/amount/type/fields/note":          "/fields/amount/type -> acme.shared.Money /fields/note",
		"pay-acme.Refunded /fields/parts/type/items/fields/note": "/fields/parts/type/items -> acme.shared.Money /fields/note",
		"pay-acme.Refunded /fields/fee/type/acme.shared.Money":   "/fields/fee/type -> acme.shared.Money",
	}
	for key, refPath := range want {
		f, ok := got[key]
		if !ok {
			t.Errorf("no finding %s; got %v", key, keys(got))
			continue
		}
		if f.RefPath != refPath {
			t.Errorf("%s: ref path %q, want %q", key, f.RefPath, refPath)
		}
		if wantVia := refPath != ""; wantVia != (len(f.Via) == 1 && f.Via[0] == "acme.shared.Money") {
			t.Errorf("%s: via %v", key, f.Via)
		}
	}
	if len(rep.Findings) != len(want) {
		t.Errorf("%d findings, want %d: %v", len(rep.Findings), len(want), keys(got))
	}
	// The text and JSON outputs carry the path.
	var text, js strings.Builder
	if err := rep.Write(&text, "text"); err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(text.String(), "pay-acme.Paid (BACKWARD): incompatible with version 2") ||
		!strings.Contains(text.String(), "at /fields/amount/type -> acme.shared.Money /fields/note") {
		t.Errorf("text output:\n%s", text.String())
	}
	if err := rep.Write(&js, "json"); err != nil {
		t.Fatal(err)
	}
	var decoded struct {
		Findings []map[string]any `json:"findings"`
	}
	if err := json.Unmarshal([]byte(js.String()), &decoded); err != nil {
		t.Fatal(err)
	}
	var withVia int
	for _, f := range decoded.Findings {
		if f["via"] != nil && f["ref_path"] != nil && f["location"] != nil {
			withVia++
		}
	}
	if withVia != 3 {
		t.Errorf("JSON: %d findings with via and ref_path, want 3:\n%s", withVia, js.String())
	}
}

// Moving a shared type between the schema directory and the shared one is
// no finding, in either direction, with or without a compatible change.
func TestAgainstGitSharedTypeMoved(t *testing.T) {
	r := newRefsRepo(t)
	r.git("mv", "shared/Money.avsc", "avro/Money.avsc")
	rep, err := r.check("HEAD")
	if err != nil || !rep.OK() {
		t.Fatalf("moved to the schema dir: %+v, %v", rep, err)
	}
	r.commit("Money next to the events")
	if err := os.Remove(filepath.Join(r.dir, "avro", "Money.avsc")); err != nil {
		t.Fatal(err)
	}
	r.write("shared/Money.avsc", moneyV2)
	rep, err = r.check("HEAD")
	if err != nil || !rep.OK() {
		t.Fatalf("moved back, changed compatibly: %+v, %v", rep, err)
	}
	r.commit("Money shared again, v2")
	r.write("shared/Money.avsc", moneyV3)
	rep, err = r.check("HEAD")
	if err != nil || rep.OK() {
		t.Fatalf("breaking change after the moves: %+v, %v", rep, err)
	}
	for _, f := range rep.Findings {
		if f.Kind != schemacheck.KindIncompatible {
			t.Errorf("finding %+v: only incompatibilities expected", f)
		}
	}
}

func keys(m map[string]schemacheck.Finding) []string {
	var out []string
	for k := range m {
		out = append(out, k)
	}
	return out
}

// `schemas register` on a catalogue with a shared type registers it under
// its full name first and the events with references to it; the check
// against that registry then reads the versions with their references and
// reports a breaking change of the shared type for each subject, with the
// path through the reference.
func TestRegisterAndCheckAgainstRegistrySharedTypes(t *testing.T) {
	ctx := context.Background()
	r := newRefsRepo(t)
	reg := eventlinetest.StartRegistry(t)
	cl := reg.Client()
	p, err := pipeline.Load(filepath.Join(r.dir, "eventline.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	opts := schemacheck.Options{Pipeline: p, Dir: r.dir}
	regs, err := schemacheck.Register(ctx, opts, cl)
	if err != nil {
		t.Fatal(err)
	}
	var order []string
	for _, g := range regs {
		order = append(order, g.Subject)
	}
	if want := []string{"acme.shared.Money", "pay-acme.Paid", "pay-acme.Refunded"}; !slices.Equal(order, want) {
		t.Fatalf("registered %v, want %v (the shared type first, once)", order, want)
	}
	for _, subj := range []string{"pay-acme.Paid", "pay-acme.Refunded"} {
		ss, err := cl.SchemaByVersion(ctx, subj, 1)
		if err != nil {
			t.Fatal(err)
		}
		if want := []sr.SchemaReference{{Name: "acme.shared.Money", Subject: "acme.shared.Money", Version: 1}}; !slices.Equal(ss.References, want) {
			t.Errorf("%s references %v, want %v", subj, ss.References, want)
		}
	}
	// Idempotent.
	if again, err := schemacheck.Register(ctx, opts, cl); err != nil || len(again) != 3 || again[1].Version != 1 {
		t.Fatalf("registering again: %+v, %v", again, err)
	}

	rep, err := schemacheck.AgainstRegistry(ctx, opts, cl, reg.URL())
	if err != nil || !rep.OK() || len(rep.Subjects) != 3 {
		t.Fatalf("unchanged: %+v, %v", rep, err)
	}
	r.write("shared/Money.avsc", moneyV2)
	if rep, err := schemacheck.AgainstRegistry(ctx, opts, cl, reg.URL()); err != nil || !rep.OK() {
		t.Fatalf("compatible change: %+v, %v", rep, err)
	}
	r.write("shared/Money.avsc", moneyV3)
	rep, err = schemacheck.AgainstRegistry(ctx, opts, cl, reg.URL())
	if err != nil || rep.OK() {
		t.Fatalf("breaking change: %+v, %v", rep, err)
	}
	got := map[string]string{}
	var money int
	for _, f := range rep.Findings {
		if f.Subject == "acme.shared.Money" {
			// Self-contained: judged by the registry's own endpoint, as
			// before references (its messages carry no location).
			money++
			continue
		}
		got[f.Subject+" "+f.Location] = f.RefPath
	}
	if money == 0 {
		t.Errorf("no finding for the shared type's own subject: %+v", rep.Findings)
	}
	want := map[string]string{
		"pay-acme.Paid /fields/amount/type/fields/note":          "/fields/amount/type -> acme.shared.Money /fields/note",
		"pay-acme.Refunded /fields/parts/type/items/fields/note": "/fields/parts/type/items -> acme.shared.Money /fields/note",
		"pay-acme.Refunded /fields/fee/type/acme.shared.Money":   "/fields/fee/type -> acme.shared.Money",
	}
	if !maps.Equal(got, want) {
		t.Errorf("findings %v, want %v", got, want)
	}
}
