package registry_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/sr"

	"github.com/eventline/eventline/internal/testkit"
	"github.com/eventline/eventline/registry"
)

func TestMain(m *testing.M) { testkit.Main(m) }

type fixture struct {
	t   *testing.T
	reg *registry.Registry
	srv *httptest.Server
	cl  *sr.Client
}

func newFixture(t *testing.T, store registry.Store) *fixture {
	t.Helper()
	if store == nil {
		store = &registry.MemoryStore{}
	}
	reg, err := registry.New(context.Background(), registry.Config{Store: store, Logger: testkit.Logger(t)})
	if err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewServer(reg.Handler())
	t.Cleanup(srv.Close)
	cl, err := sr.NewClient(sr.URLs(srv.URL))
	if err != nil {
		t.Fatal(err)
	}
	return &fixture{t: t, reg: reg, srv: srv, cl: cl}
}

// call does a raw request and returns status, decoded body.
func (f *fixture) call(method, path, body string) (int, map[string]any, string) {
	f.t.Helper()
	req, _ := http.NewRequest(method, f.srv.URL+path, strings.NewReader(body))
	req.Header.Set("Content-Type", "application/vnd.schemaregistry.v1+json")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		f.t.Fatal(err)
	}
	defer resp.Body.Close()
	raw, _ := io.ReadAll(resp.Body)
	if ct := resp.Header.Get("Content-Type"); ct != "application/vnd.schemaregistry.v1+json" {
		f.t.Errorf("%s %s: content type %q", method, path, ct)
	}
	var m map[string]any
	_ = json.Unmarshal(raw, &m)
	return resp.StatusCode, m, string(raw)
}

func body(schema string) string {
	b, _ := json.Marshal(map[string]any{"schema": schema})
	return string(b)
}

const (
	v1 = `{"type":"record","name":"Order","namespace":"shop","fields":[{"name":"id","type":"string"}]}`
	// v1 with whitespace and key order changed: the same schema.
	v1b = `{ "namespace" : "shop", "name":"Order", "type":"record", "fields":[ {"type":"string","name":"id"} ] }`
	v2  = `{"type":"record","name":"Order","namespace":"shop","fields":[{"name":"id","type":"string"},{"name":"note","type":"string","default":""}]}`
	// Adds a field without a default: not BACKWARD compatible.
	bad = `{"type":"record","name":"Order","namespace":"shop","fields":[{"name":"id","type":"string"},{"name":"qty","type":"int"}]}`
)

func wantCode(t *testing.T, err error, code int) {
	t.Helper()
	var re *sr.ResponseError
	if !errors.As(err, &re) || re.ErrorCode != code {
		t.Fatalf("got %v, want error code %d", err, code)
	}
}

func TestRegisterIdempotentGlobalIDs(t *testing.T) {
	t.Parallel()
	f := newFixture(t, nil)
	ctx := context.Background()
	a, err := f.cl.CreateSchema(ctx, "orders-shop.Order", sr.Schema{Schema: v1})
	if err != nil {
		t.Fatal(err)
	}
	again, err := f.cl.CreateSchema(ctx, "orders-shop.Order", sr.Schema{Schema: v1b})
	if err != nil || again.ID != a.ID || again.Version != 1 {
		t.Fatalf("re-register: %+v, %v; want id %d version 1", again, err, a.ID)
	}
	other, err := f.cl.CreateSchema(ctx, "audit-shop.Order", sr.Schema{Schema: v1})
	if err != nil || other.ID != a.ID {
		t.Fatalf("same schema in another subject: %+v, %v; want id %d", other, err, a.ID)
	}
	b, err := f.cl.CreateSchema(ctx, "orders-shop.Order", sr.Schema{Schema: v2})
	if err != nil || b.ID == a.ID || b.Version != 2 {
		t.Fatalf("v2: %+v, %v", b, err)
	}
	latest, err := f.cl.SchemaByVersion(ctx, "orders-shop.Order", -1)
	if err != nil || latest.Version != 2 || latest.Schema.Schema != v2 {
		t.Fatalf("latest: %+v, %v", latest, err)
	}
	byID, err := f.cl.SchemaByID(ctx, a.ID)
	if err != nil || byID.Schema != v1 {
		t.Fatalf("by id: %+v, %v", byID, err)
	}
	subs, err := f.cl.SubjectsByID(ctx, a.ID)
	if err != nil || strings.Join(subs, ",") != "audit-shop.Order,orders-shop.Order" {
		t.Fatalf("subjects by id: %v, %v", subs, err)
	}
	found, err := f.cl.LookupSchema(ctx, "orders-shop.Order", sr.Schema{Schema: v1b})
	if err != nil || found.Version != 1 || found.ID != a.ID {
		t.Fatalf("lookup: %+v, %v", found, err)
	}
	_, err = f.cl.LookupSchema(ctx, "orders-shop.Order", sr.Schema{Schema: bad})
	wantCode(t, err, 40403)
	_, err = f.cl.LookupSchema(ctx, "nope", sr.Schema{Schema: v1})
	wantCode(t, err, 40401)
	_, err = f.cl.SchemaByVersion(ctx, "orders-shop.Order", 9)
	wantCode(t, err, 40402)
	_, err = f.cl.SchemaByID(ctx, 999)
	wantCode(t, err, 40403)
	code, m, _ := f.call("GET", "/subjects/orders-shop.Order/versions/zero", "")
	if code != 422 || m["error_code"] != float64(42202) {
		t.Fatalf("bad version: %d %v", code, m)
	}
	code, _, raw := f.call("GET", "/subjects/orders-shop.Order/versions/1/schema", "")
	if code != 200 || raw != v1 {
		t.Fatalf("raw schema: %d %s", code, raw)
	}
	code, _, raw = f.call("GET", "/schemas/types", "")
	if code != 200 || !strings.Contains(raw, "AVRO") {
		t.Fatalf("types: %d %s", code, raw)
	}
}

func TestCompatibilityEnforced(t *testing.T) {
	t.Parallel()
	f := newFixture(t, nil)
	ctx := context.Background()
	if _, err := f.cl.CreateSchema(ctx, "s", sr.Schema{Schema: v1}); err != nil {
		t.Fatal(err)
	}
	// The default level is BACKWARD: a new field without a default is
	// refused with HTTP 409.
	code, m, _ := f.call("POST", "/subjects/s/versions", body(bad))
	if code != http.StatusConflict || m["error_code"] != float64(409) || !strings.Contains(m["message"].(string), "qty") {
		t.Fatalf("incompatible register: %d %v", code, m)
	}
	res, err := f.cl.CheckCompatibility(sr.WithParams(ctx, sr.Verbose), "s", -1, sr.Schema{Schema: bad})
	if err != nil || res.Is || len(res.Messages) == 0 || !strings.Contains(strings.Join(res.Messages, " "), "qty") {
		t.Fatalf("verbose check: %+v, %v", res, err)
	}
	res, err = f.cl.CheckCompatibility(ctx, "s", -2, sr.Schema{Schema: v2})
	if err != nil || !res.Is {
		t.Fatalf("compatible check: %+v, %v", res, err)
	}
	// NONE lets it through.
	if r := f.cl.SetCompatibility(ctx, sr.SetCompatibility{Level: sr.CompatNone}, "s"); r[0].Err != nil {
		t.Fatal(r[0].Err)
	}
	if _, err := f.cl.CreateSchema(ctx, "s", sr.Schema{Schema: bad}); err != nil {
		t.Fatalf("under NONE: %v", err)
	}
	code, m, _ = f.call("PUT", "/config/s", `{"compatibility":"SIDEWAYS"}`)
	if code != 422 || m["error_code"] != float64(42203) {
		t.Fatalf("bad level: %d %v", code, m)
	}
	code, m, _ = f.call("GET", "/config/other", "")
	if code != 404 || m["error_code"] != float64(40408) {
		t.Fatalf("subject without level: %d %v", code, m)
	}
	code, m, _ = f.call("GET", "/config/other?defaultToGlobal=true", "")
	if code != 200 || m["compatibilityLevel"] != "BACKWARD" {
		t.Fatalf("default to global: %d %v", code, m)
	}
	// Transitive levels check every version.
	f.call("PUT", "/config", `{"compatibility":"FORWARD_TRANSITIVE"}`)
	code, m, _ = f.call("GET", "/config", "")
	if m["compatibilityLevel"] != "FORWARD_TRANSITIVE" {
		t.Fatalf("global level: %d %v", code, m)
	}
}

func TestInvalidSchemas(t *testing.T) {
	t.Parallel()
	f := newFixture(t, nil)
	for _, b := range []string{
		body(`{"type":"record","name":"X","fields":[{"name":"a","type":"nope"}]}`),
		body(`not json`),
		`{"schema": "{\"type\":\"string\"}", "schemaType": "PROTOBUF"}`,
	} {
		code, m, _ := f.call("POST", "/subjects/x/versions", b)
		if code != 422 || m["error_code"] != float64(42201) {
			t.Errorf("%s: %d %v", b, code, m)
		}
	}
}

func TestDeletes(t *testing.T) {
	t.Parallel()
	f := newFixture(t, nil)
	ctx := context.Background()
	f.cl.CreateSchema(ctx, "d", sr.Schema{Schema: v1})
	f.cl.CreateSchema(ctx, "d", sr.Schema{Schema: v2})

	code, m, _ := f.call("DELETE", "/subjects/d/versions/1?permanent=true", "")
	if code != 404 || m["error_code"] != float64(40407) {
		t.Fatalf("hard delete before soft: %d %v", code, m)
	}
	if code, _, raw := f.call("DELETE", "/subjects/d/versions/1", ""); code != 200 || raw != "1\n" {
		t.Fatalf("soft delete version: %d %s", code, raw)
	}
	code, m, _ = f.call("DELETE", "/subjects/d/versions/1", "")
	if code != 404 || m["error_code"] != float64(40406) {
		t.Fatalf("soft delete twice: %d %v", code, m)
	}
	vs, _ := f.cl.SubjectVersions(ctx, "d")
	if len(vs) != 1 || vs[0] != 2 {
		t.Fatalf("versions after soft delete: %v", vs)
	}
	code, _, raw := f.call("GET", "/subjects/d/versions?deleted=true", "")
	if code != 200 || raw != "[1,2]\n" {
		t.Fatalf("versions with deleted: %s", raw)
	}
	code, m, _ = f.call("DELETE", "/subjects/d?permanent=true", "")
	if code != 404 || m["error_code"] != float64(40405) {
		t.Fatalf("hard delete subject before soft: %d %v", code, m)
	}
	if code, _, raw := f.call("DELETE", "/subjects/d", ""); code != 200 || raw != "[2]\n" {
		t.Fatalf("soft delete subject: %d %s", code, raw)
	}
	code, m, _ = f.call("DELETE", "/subjects/d", "")
	if code != 404 || m["error_code"] != float64(40404) {
		t.Fatalf("soft delete subject twice: %d %v", code, m)
	}
	_, err := f.cl.SubjectVersions(ctx, "d")
	wantCode(t, err, 40401)
	if code, _, raw := f.call("DELETE", "/subjects/d?permanent=true", ""); code != 200 || raw != "[1,2]\n" {
		t.Fatalf("hard delete subject: %d %s", code, raw)
	}
	if code, _, raw := f.call("GET", "/subjects?deleted=true", ""); code != 200 || raw != "[]\n" {
		t.Fatalf("subjects after hard delete: %s", raw)
	}
	// Re-registering after a hard delete keeps the global id of that
	// schema text and starts the subject again.
	again, err := f.cl.CreateSchema(ctx, "d", sr.Schema{Schema: v1})
	if err != nil || again.ID != 1 {
		t.Fatalf("re-register after delete: %+v, %v", again, err)
	}
}

func TestReadOnlyMode(t *testing.T) {
	t.Parallel()
	f := newFixture(t, nil)
	code, m, _ := f.call("PUT", "/mode", `{"mode":"READONLY"}`)
	if code != 200 || m["mode"] != "READONLY" {
		t.Fatalf("set mode: %d %v", code, m)
	}
	code, m, _ = f.call("POST", "/subjects/x/versions", body(v1))
	if code != 422 || m["error_code"] != float64(42205) {
		t.Fatalf("register in READONLY: %d %v", code, m)
	}
	f.call("PUT", "/mode/x", `{"mode":"READWRITE"}`)
	if code, _, raw := f.call("POST", "/subjects/x/versions", body(v1)); code != 200 {
		t.Fatalf("subject READWRITE overrides global: %d %s", code, raw)
	}
	code, m, _ = f.call("PUT", "/mode", `{"mode":"SLEEPY"}`)
	if code != 422 || m["error_code"] != float64(42204) {
		t.Fatalf("bad mode: %d %v", code, m)
	}
}

func TestReferences(t *testing.T) {
	t.Parallel()
	f := newFixture(t, nil)
	ctx := context.Background()
	money := `{"type":"record","name":"Money","namespace":"shop","fields":[{"name":"minor","type":"long"},{"name":"currency","type":"string"}]}`
	if _, err := f.cl.CreateSchema(ctx, "shop.Money", sr.Schema{Schema: money}); err != nil {
		t.Fatal(err)
	}
	order := `{"type":"record","name":"Priced","namespace":"shop","fields":[{"name":"total","type":"shop.Money"}]}`
	ss, err := f.cl.CreateSchema(ctx, "orders-shop.Priced", sr.Schema{Schema: order, References: []sr.SchemaReference{{Name: "shop.Money", Subject: "shop.Money", Version: 1}}})
	if err != nil {
		t.Fatalf("register with reference: %v", err)
	}
	code, _, raw := f.call("GET", "/subjects/shop.Money/versions/1/referencedby", "")
	if code != 200 || strings.TrimSpace(raw) != "["+itoa(ss.ID)+"]" {
		t.Fatalf("referencedby: %d %s", code, raw)
	}
	got, err := f.cl.SchemaByID(ctx, ss.ID)
	if err != nil || len(got.References) != 1 || got.References[0].Subject != "shop.Money" {
		t.Fatalf("references by id: %+v, %v", got, err)
	}
	code, m, _ := f.call("DELETE", "/subjects/shop.Money/versions/1", "")
	if code != 422 || m["error_code"] != float64(42206) {
		t.Fatalf("delete of a referenced version: %d %v", code, m)
	}
	_, err = f.cl.CreateSchema(ctx, "x", sr.Schema{Schema: order, References: []sr.SchemaReference{{Name: "shop.Money", Subject: "nope", Version: 1}}})
	wantCode(t, err, 42201)
}

func itoa(n int) string { b, _ := json.Marshal(n); return string(b) }

// State lives in the _schemas topic: a new registry on the same broker finds
// every subject, version, id and level again, and new ids continue after
// the highest.
func TestRestartFromKafka(t *testing.T) {
	t.Parallel()
	brokers := testkit.Kafka(t)
	topic := testkit.UniqueName(t, "_schemas")
	ctx := context.Background()
	open := func() *fixture {
		store, err := registry.NewKafkaStore(ctx, brokers, topic)
		if err != nil {
			t.Fatal(err)
		}
		f := newFixture(t, store)
		t.Cleanup(f.reg.Close)
		return f
	}
	f := open()
	a, _ := f.cl.CreateSchema(ctx, "a", sr.Schema{Schema: v1})
	b, _ := f.cl.CreateSchema(ctx, "a", sr.Schema{Schema: v2})
	f.call("PUT", "/config/a", `{"compatibility":"FULL"}`)
	f.call("DELETE", "/subjects/a/versions/1", "")
	f.srv.Close()
	f.reg.Close()

	g := open()
	vs, err := g.cl.SubjectVersions(ctx, "a")
	if err != nil || len(vs) != 1 || vs[0] != 2 {
		t.Fatalf("versions after restart: %v, %v", vs, err)
	}
	got, err := g.cl.SchemaByVersion(ctx, "a", 2)
	if err != nil || got.ID != b.ID {
		t.Fatalf("version 2 after restart: %+v, %v", got, err)
	}
	if byID, err := g.cl.SchemaByID(ctx, a.ID); err != nil || byID.Schema != v1 {
		t.Fatalf("id %d after restart: %v", a.ID, err)
	}
	_, m, _ := g.call("GET", "/config/a", "")
	if m["compatibilityLevel"] != "FULL" {
		t.Fatalf("level after restart: %v", m)
	}
	c, err := g.cl.CreateSchema(ctx, "c", sr.Schema{Schema: `{"type":"record","name":"C","fields":[]}`})
	if err != nil || c.ID <= b.ID {
		t.Fatalf("new id %d after restart, want > %d (%v)", c.ID, b.ID, err)
	}
}

func TestBrokerDown(t *testing.T) {
	t.Parallel()
	ctx, cancel := context.WithTimeout(context.Background(), 5e9)
	defer cancel()
	_, err := registry.NewKafkaStore(ctx, []string{"127.0.0.1:1"}, "_schemas")
	if err == nil || !strings.Contains(err.Error(), "127.0.0.1:1") {
		t.Fatalf("broker down: %v", err)
	}
}

// failingStore is a store whose writes fail.
type failingStore struct{ registry.MemoryStore }

func (*failingStore) Append(context.Context, string, []byte) error { return errors.New("disk on fire") }

func TestStoreFailureIs500(t *testing.T) {
	t.Parallel()
	f := newFixture(t, &failingStore{})
	code, m, _ := f.call("POST", "/subjects/x/versions", body(v1))
	if code != 500 || m["error_code"] != float64(50001) {
		t.Fatalf("store failure: %d %v", code, m)
	}
	if _, err := f.cl.SubjectVersions(context.Background(), "x"); err == nil {
		t.Fatal("a failed write changed the state")
	}
}

// Hostile request bodies get Confluent's answers without being read whole:
// too large 413, not JSON 400, JSON of the wrong shape 422 with the
// endpoint's code; the largest version number is a valid (absent) version.
func TestHostileBodies(t *testing.T) {
	f := newFixture(t, nil)
	huge := `{"compatibility": "` + strings.Repeat("A", 8<<10) + `"}`
	cases := []struct {
		method, path, body string
		status, code       int
	}{
		{"PUT", "/config", huge, 413, 413},
		{"PUT", "/mode", `{"mode": "` + strings.Repeat("R", 8<<10) + `"}`, 413, 413},
		{"PUT", "/config/s", `{"compatibility": `, 400, 400},
		{"PUT", "/config", `not json`, 400, 400},
		{"PUT", "/config", `{"compatibility": 5}`, 422, 42203},
		{"PUT", "/mode", `["READONLY"]`, 422, 42204},
		{"POST", "/subjects/s/versions", `{"schema": "` + strings.Repeat("x", 17<<20) + `"}`, 413, 413},
		{"POST", "/subjects/s/versions", `{"schema": {}}`, 422, 42201},
		{"POST", "/subjects/s", `{`, 400, 400},
		{"GET", "/subjects/s/versions/2147483647", "", 404, 40401},
	}
	for _, c := range cases {
		status, m, raw := f.call(c.method, c.path, c.body)
		code, _ := m["error_code"].(float64)
		if status != c.status || int(code) != c.code {
			t.Errorf("%s %s (%d-byte body): %d %s, want %d with error_code %d", c.method, c.path, len(c.body), status, abbreviate(raw), c.status, c.code)
		}
	}
	// The registry still works.
	if status, _, raw := f.call("POST", "/subjects/s/versions", body(`"string"`)); status != 200 {
		t.Fatalf("register after hostile bodies: %d %s", status, raw)
	}
	if status, m, _ := f.call("GET", "/subjects/s/versions/2147483647", ""); status != 404 || m["error_code"].(float64) != 40402 {
		t.Errorf("version 2^31-1 of an existing subject: %d %v, want 404 40402", status, m)
	}
	if status, m, _ := f.call("GET", "/subjects/s/versions/2147483648", ""); status != 422 || m["error_code"].(float64) != 42202 {
		t.Errorf("version 2^31 of an existing subject: %d %v, want 422 42202", status, m)
	}
}

func abbreviate(s string) string {
	if len(s) > 200 {
		return s[:200] + "…"
	}
	return s
}

// References that share schemas (two per level, each referencing both of
// the level below) cost one parse per schema, not one per path: 24 levels
// register at once (the paths double per level: at 17 levels the old
// resolution took 11 s, holding the write lock).
func TestSharedReferencesParsedOnce(t *testing.T) {
	t.Parallel()
	f := newFixture(t, nil)
	ctx := context.Background()
	rec := func(name string, fields ...string) string {
		fs := make([]string, 0, len(fields))
		for i, typ := range fields {
			fs = append(fs, fmt.Sprintf(`{"name":"f%d","type":%s}`, i, typ))
		}
		return fmt.Sprintf(`{"type":"record","name":"%s","fields":[%s]}`, name, strings.Join(fs, ","))
	}
	for _, n := range []string{"A0", "B0"} {
		if _, err := f.cl.CreateSchema(ctx, n, sr.Schema{Schema: rec(n, `"long"`)}); err != nil {
			t.Fatal(err)
		}
	}
	start := time.Now()
	for k := 1; k <= 24; k++ {
		a, b := fmt.Sprintf("A%d", k-1), fmt.Sprintf("B%d", k-1)
		refs := []sr.SchemaReference{{Name: a, Subject: a, Version: 1}, {Name: b, Subject: b, Version: 1}}
		for _, n := range []string{fmt.Sprintf("A%d", k), fmt.Sprintf("B%d", k)} {
			if _, err := f.cl.CreateSchema(ctx, n, sr.Schema{Schema: rec(n, `"`+a+`"`, `"`+b+`"`), References: refs}); err != nil {
				t.Fatalf("level %d: %v", k, err)
			}
		}
	}
	if took := time.Since(start); took > 20*time.Second {
		t.Errorf("24 levels of shared references took %v", took)
	}
}

// A store holding records this registry cannot read (another registry's
// kind, a malformed key, a value that is not JSON) still loads: those are
// skipped with a warning, everything else is served.
func TestUnreadableStoredRecordsSkipped(t *testing.T) {
	t.Parallel()
	store := &registry.MemoryStore{}
	ctx := context.Background()
	first := newFixture(t, store)
	if _, err := first.cl.CreateSchema(ctx, "kept", sr.Schema{Schema: `"string"`}); err != nil {
		t.Fatal(err)
	}
	for _, kv := range [][2]string{
		{"frobnicate/1", `{}`},
		{"version/no-number", `{"id":1}`},
		{"schema/9", `not json`},
		{`{"keytype":"SCHEMA","subject":"confluent","version":1,"magic":1}`, `{"schema":"\"int\""}`},
		// Found by FuzzStoreRecords: a version of a schema the log does not
		// hold made every read of it panic, and a level or mode the
		// registry does not know made every registration answer 500.
		{"version/dangling/1", `{"id":42}`},
		{"version/kept/0", `{"id":1}`},
		{"config/kept", `{"compatibility":"SIDEWAYS"}`},
		{"mode/kept", `{"mode":"WRITEONLY"}`},
	} {
		if err := store.Append(ctx, kv[0], []byte(kv[1])); err != nil {
			t.Fatal(err)
		}
	}
	second := newFixture(t, store)
	if code, m, raw := second.call("GET", "/subjects/kept/versions/1", ""); code != 200 || m["schema"] != `"string"` {
		t.Fatalf("after unreadable records: %d %s", code, raw)
	}
	for _, c := range []struct {
		method, path, body string
		status             int
	}{
		{"GET", "/subjects/dangling/versions/1", "", 404},
		{"GET", "/subjects/kept/versions", "", 200},
		{"POST", "/subjects/kept/versions", body(`"string"`), 200},
		{"GET", "/config/kept", "", 404},
		{"GET", "/mode/kept", "", 404},
	} {
		if code, _, raw := second.call(c.method, c.path, c.body); code != c.status {
			t.Errorf("%s %s after foreign records: %d %s, want %d", c.method, c.path, code, raw, c.status)
		}
	}
}

// Schema text in the store that does not parse (anyone who may write to
// _schemas can put `{not avro` there) is not served on restart: its id, the
// versions naming it and the schemas referencing it are skipped with a log
// line, the rest is served, the API refuses the same text, and the skipped
// ids are not handed out again.
func TestUnparsableStoredSchemaNotServed(t *testing.T) {
	t.Parallel()
	store := &registry.MemoryStore{}
	ctx := context.Background()
	first := newFixture(t, store)
	if _, err := first.cl.CreateSchema(ctx, "kept", sr.Schema{Schema: v1}); err != nil {
		t.Fatal(err)
	}
	for _, kv := range [][2]string{
		{"schema/2", `{"id":2,"schema":"{not avro"}`},
		{"version/bad/1", `{"id":2}`},
		{"schema/3", `{"id":3,"schema":"{\"type\":\"record\",\"name\":\"R\",\"fields\":[{\"name\":\"b\",\"type\":\"B\"}]}","references":[{"name":"B","subject":"bad","version":1}]}`},
		{"version/referrer/1", `{"id":3}`},
		{"version/kept/2", `{"id":2}`},
		// id 1 rewritten with other text: registering v1 again must not
		// answer id 1, which now names "long".
		{"schema/1", `{"id":1,"schema":"\"long\""}`},
	} {
		if err := store.Append(ctx, kv[0], []byte(kv[1])); err != nil {
			t.Fatal(err)
		}
	}
	log, logged := testkit.CapturingLogger(t)
	reg, err := registry.New(ctx, registry.Config{Store: store, Logger: log})
	if err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewServer(reg.Handler())
	t.Cleanup(srv.Close)
	second := &fixture{t: t, reg: reg, srv: srv}
	for _, c := range []struct {
		method, path, body string
		status             int
	}{
		{"GET", "/schemas/ids/2", "", 404},
		{"GET", "/schemas/ids/2/schema", "", 404},
		{"GET", "/subjects/bad/versions/1", "", 404},
		{"GET", "/schemas/ids/3", "", 404},
		{"GET", "/subjects/referrer/versions", "", 404},
		{"GET", "/subjects/kept/versions/2", "", 404},
		{"GET", "/schemas/ids/1", "", 200},
		{"GET", "/subjects/kept/versions/latest", "", 200},
		{"POST", "/subjects/bad/versions", body("{not avro"), 422},
	} {
		if code, _, raw := second.call(c.method, c.path, c.body); code != c.status {
			t.Errorf("%s %s: %d %s, want %d", c.method, c.path, code, raw, c.status)
		}
	}
	if !strings.Contains(logged.String(), "does not parse") || !strings.Contains(logged.String(), "id=2") || !strings.Contains(logged.String(), "id=3") {
		t.Errorf("no log line per skipped schema:\n%s", logged.String())
	}
	if code, m, raw := second.call("POST", "/subjects/fresh/versions", body(`"string"`)); code != 200 || m["id"].(float64) <= 3 {
		t.Errorf("a new schema after skipped ids: %d %s, want an id above 3", code, raw)
	}
	if code, m, raw := second.call("POST", "/subjects/again/versions", body(v1)); code != 200 || m["id"].(float64) <= 3 {
		t.Errorf("v1 after its id was rewritten: %d %s, want a new id", code, raw)
	}
}

// A path without a route, or a route without the method, is answered in
// Confluent's error shape (404 / 405), not ServeMux's plain text that
// clients cannot parse.
func TestUnknownRoutes(t *testing.T) {
	t.Parallel()
	f := newFixture(t, nil)
	for _, c := range []struct {
		method, path string
		status       int
	}{
		{"GET", "/nope", 404},
		{"GET", "/subjects/s/versions/1/nope", 404},
		{"DELETE", "/schemas/ids/1", 405},
		{"PATCH", "/subjects", 405},
		{"PUT", "/subjects/s/versions", 405},
	} {
		status, m, raw := f.call(c.method, c.path, "")
		if code, _ := m["error_code"].(float64); status != c.status || int(code) != c.status {
			t.Errorf("%s %s: %d %s, want %d with error_code %d", c.method, c.path, status, raw, c.status, c.status)
		}
	}
}
