package registry_test

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strconv"
	"strings"
	"sync"
	"testing"

	"github.com/eventline/eventline/registry"
)

// Fuzz targets of the registry's HTTP API: every handler that takes a body
// or a path segment from a client. Each iteration runs against a fresh
// registry replaying the same small history (fuzzHistory), in process
// (no listener), and checks what a client relies on whatever it sends:
//
//   - no panic and no 5xx: with an in-memory store nothing but a bug can
//     make the registry fail;
//   - every answer has the registry's content type, and an error answer
//     Confluent's body {"error_code", "message"} whose code starts with the
//     HTTP status (40401 for a 404, 42201 for a 422);
//   - a success answer is JSON;
//   - the answer is bounded by the input (no amplification).
//
// Interesting inputs are kept in testdata/fuzz/<target>/.

// fuzzSchema is the body of a schema request.
func fuzzSchema(schema string, refs ...string) []byte {
	m := map[string]any{"schema": schema}
	if len(refs) > 0 {
		var rs []map[string]any
		for _, r := range refs {
			name, rest, _ := strings.Cut(r, "@")
			subj, ver, _ := strings.Cut(rest, "#")
			n, _ := strconv.Atoi(ver)
			rs = append(rs, map[string]any{"name": name, "subject": subj, "version": n})
		}
		m["references"] = rs
	}
	b, _ := json.Marshal(m)
	return b
}

const fuzzMoney = `{"type":"record","name":"Money","namespace":"shop","fields":[{"name":"minor","type":"long"},{"name":"currency","type":"string"}]}`

// fuzzHistory is the store every fuzz iteration starts from: subject "s"
// with two versions (level FULL), "shop.Money" referenced by
// "orders-shop.Priced", "ro" in READONLY mode, and "gone", soft-deleted.
var fuzzHistory = sync.OnceValues(func() ([][2][]byte, error) {
	st := &sliceStore{}
	reg, err := registry.New(context.Background(), registry.Config{Store: st, Logger: slog.New(slog.DiscardHandler)})
	if err != nil {
		return nil, err
	}
	h := reg.Handler()
	for _, c := range []struct {
		method, path string
		body         []byte
	}{
		{"POST", "/subjects/s/versions", fuzzSchema(v1)},
		{"POST", "/subjects/s/versions", fuzzSchema(v2)},
		{"PUT", "/config/s", []byte(`{"compatibility":"FULL"}`)},
		{"POST", "/subjects/shop.Money/versions", fuzzSchema(fuzzMoney)},
		{"POST", "/subjects/orders-shop.Priced/versions", fuzzSchema(`{"type":"record","name":"Priced","namespace":"shop","fields":[{"name":"total","type":"shop.Money"}]}`, "shop.Money@shop.Money#1")},
		{"POST", "/subjects/ro/versions", fuzzSchema(`"string"`)},
		{"PUT", "/mode/ro", []byte(`{"mode":"READONLY"}`)},
		{"POST", "/subjects/gone/versions", fuzzSchema(`"int"`)},
		{"DELETE", "/subjects/gone", nil},
	} {
		rec := httptest.NewRecorder()
		h.ServeHTTP(rec, httptest.NewRequest(c.method, c.path, bytes.NewReader(c.body)))
		if rec.Code != 200 {
			return nil, fmt.Errorf("%s %s: %d %s", c.method, c.path, rec.Code, rec.Body)
		}
	}
	return st.recs, nil
})

// sliceStore is a Store over a slice, so that each fuzz iteration can start
// from a copy of the same history.
type sliceStore struct{ recs [][2][]byte }

func (s *sliceStore) Load(_ context.Context, apply func(string, []byte) error) error {
	for _, r := range s.recs {
		if err := apply(string(r[0]), r[1]); err != nil {
			return err
		}
	}
	return nil
}

func (s *sliceStore) Append(_ context.Context, key string, value []byte) error {
	s.recs = append(s.recs, [2][]byte{[]byte(key), value})
	return nil
}

func (s *sliceStore) Close() {}

// fuzzRegistry is a fresh registry over fuzzHistory plus extra records.
func fuzzRegistry(t testing.TB, extra ...[2][]byte) http.Handler {
	t.Helper()
	base, err := fuzzHistory()
	if err != nil {
		t.Fatalf("building the fuzz history: %v", err)
	}
	recs := append(append([][2][]byte(nil), base...), extra...)
	reg, err := registry.New(context.Background(), registry.Config{Store: &sliceStore{recs: recs}, Logger: slog.New(slog.DiscardHandler)})
	if err != nil {
		t.Fatalf("replaying the fuzz history: %v", err)
	}
	return reg.Handler()
}

// serve sends one request to h. The path is given escaped, as on the wire,
// with its query.
func serve(h http.Handler, method, path string, body []byte) *httptest.ResponseRecorder {
	var r io.Reader
	if body != nil {
		r = bytes.NewReader(body)
	}
	req := httptest.NewRequest(method, "http://registry"+path, r)
	req.Header.Set("Content-Type", "application/vnd.schemaregistry.v1+json")
	rec := httptest.NewRecorder()
	h.ServeHTTP(rec, req)
	return rec
}

// seg escapes a fuzzed path segment as a client library does.
func seg(s string) string { return url.PathEscape(s) }

// checkAnswer asserts the invariants every answer keeps; inputLen bounds
// the answer's size (a schema echoed back may grow by JSON escaping).
func checkAnswer(t *testing.T, what string, rec *httptest.ResponseRecorder, inputLen int) {
	t.Helper()
	body := rec.Body.Bytes()
	if rec.Code >= 500 {
		t.Fatalf("%s: HTTP %d %s", what, rec.Code, abbreviate(string(body)))
	}
	if limit := 16<<10 + 6*inputLen; len(body) > limit {
		t.Fatalf("%s: %d-byte answer to %d bytes of input (limit %d)", what, len(body), inputLen, limit)
	}
	if rec.Code >= 300 && rec.Code < 400 {
		// ServeMux's redirect of a path that is not clean ("/subjects/./versions").
		if rec.Header().Get("Location") == "" {
			t.Fatalf("%s: HTTP %d without a Location", what, rec.Code)
		}
		return
	}
	if ct := rec.Header().Get("Content-Type"); ct != "application/vnd.schemaregistry.v1+json" {
		t.Fatalf("%s: HTTP %d with content type %q: %s", what, rec.Code, ct, abbreviate(string(body)))
	}
	if rec.Code >= 400 {
		var e struct {
			Code    int     `json:"error_code"`
			Message *string `json:"message"`
		}
		if err := json.Unmarshal(body, &e); err != nil || e.Message == nil || *e.Message == "" ||
			!strings.HasPrefix(strconv.Itoa(e.Code), strconv.Itoa(rec.Code)) {
			t.Fatalf("%s: HTTP %d with a body not in Confluent's error shape: %s", what, rec.Code, abbreviate(string(body)))
		}
		return
	}
	// A /schema answer is the stored text as it is: JSON when the registry
	// stored it, whatever a foreign log held otherwise.
	if !json.Valid(body) && !strings.HasSuffix(what, "/schema") {
		t.Fatalf("%s: HTTP %d with a body that is not JSON: %s", what, rec.Code, abbreviate(string(body)))
	}
}

// Seeds shared by the targets that take a schema request.
var schemaBodies = [][]byte{
	fuzzSchema(v1),
	fuzzSchema(v1b),
	fuzzSchema(v2),
	fuzzSchema(bad),
	fuzzSchema(`"string"`),
	fuzzSchema(`{"type":"record","name":"Priced","namespace":"shop","fields":[{"name":"total","type":"shop.Money"}]}`, "shop.Money@shop.Money#1"),
	fuzzSchema(`{"type":"record","name":"P","fields":[{"name":"t","type":"shop.Money"}]}`, "shop.Money@shop.Money#-1", "x@nope#2"),
	fuzzSchema(`{"type":"enum","name":"E","symbols":["A","A"]}`),
	fuzzSchema(`{"type":"fixed","name":"F","size":-1}`),
	fuzzSchema(`{"type":"array","items":{"type":"map","values":["null","long","null"]}}`),
	fuzzSchema(`{"type":"record","name":"R","fields":[{"name":"a","type":"int","default":"x"}]}`),
	fuzzSchema(`{"type":"record","name":"R","fields":[{"name":"r","type":["null","R"]}]}`),
	[]byte(`{"schema":"\"int\"","schemaType":"PROTOBUF"}`),
	[]byte(`{"schema":"\"int\"","references":[{"name":"a","subject":"s","version":99999999999999999999}]}`),
	[]byte(`{"schema":""}`),
	[]byte(`{"schema":"\"int\""} trailing`),
	[]byte(`{"schema":`),
	[]byte(`[]`),
	[]byte(`null`),
	nil,
}

var fuzzSubjects = []string{"s", "new", "shop.Money", "orders-shop.Priced", "ro", "gone", "", ".", "..", "a/b", "%2F", "ü", "\x00", strings.Repeat("x", 300)}

// POST /subjects/{subject}/versions: registering. A registration that
// succeeds is found again as the subject's latest version under the same
// id, and registering it again is idempotent.
func FuzzRegister(f *testing.F) {
	for i, b := range schemaBodies {
		f.Add(fuzzSubjects[i%len(fuzzSubjects)], b)
	}
	f.Fuzz(func(t *testing.T, subject string, body []byte) {
		h := fuzzRegistry(t)
		path := "/subjects/" + seg(subject) + "/versions"
		rec := serve(h, "POST", path, body)
		checkAnswer(t, "register", rec, len(body)+len(subject))
		if rec.Code != 200 {
			return
		}
		var got struct{ ID int }
		if err := json.Unmarshal(rec.Body.Bytes(), &got); err != nil || got.ID < 1 {
			t.Fatalf("register answered %s", rec.Body)
		}
		found := serve(h, "POST", "/subjects/"+seg(subject), body)
		checkAnswer(t, "lookup after register", found, len(body)+len(subject))
		var v struct{ ID, Version int }
		if err := json.Unmarshal(found.Body.Bytes(), &v); found.Code != 200 || err != nil || v.ID != got.ID {
			t.Fatalf("registered as id %d, looking it up answers %d %s", got.ID, found.Code, abbreviate(found.Body.String()))
		}
		again := serve(h, "POST", path, body)
		if again.Code != 200 || strings.TrimSpace(again.Body.String()) != strings.TrimSpace(rec.Body.String()) {
			t.Fatalf("registering again: %d %s, first %s", again.Code, again.Body, rec.Body)
		}
	})
}

// POST /subjects/{subject}: looking a schema up. A schema found is one of
// the subject's versions, under the subject asked for.
func FuzzLookup(f *testing.F) {
	for i, b := range schemaBodies {
		f.Add(fuzzSubjects[i%len(fuzzSubjects)], b, i%2 == 0)
	}
	f.Fuzz(func(t *testing.T, subject string, body []byte, deleted bool) {
		h := fuzzRegistry(t)
		path := "/subjects/" + seg(subject)
		if deleted {
			path += "?deleted=true"
		}
		rec := serve(h, "POST", path, body)
		checkAnswer(t, "lookup", rec, len(body)+len(subject))
		if rec.Code != 200 {
			return
		}
		var got struct {
			Subject     string
			ID, Version int
		}
		if err := json.Unmarshal(rec.Body.Bytes(), &got); err != nil || got.Subject != subject || got.ID < 1 || got.Version < 1 {
			t.Fatalf("lookup of %q answered %s", subject, abbreviate(rec.Body.String()))
		}
	})
}

// POST /compatibility/subjects/{subject}/versions[/{version}]: an answer
// that is not an error says whether the schema is compatible, with
// messages only when verbose.
func FuzzCompatibility(f *testing.F) {
	versions := []string{"", "1", "2", "latest", "-1", "0", "3", "2147483648", "1e3", " 1", "+1", "０"}
	for i, b := range schemaBodies {
		f.Add(fuzzSubjects[i%len(fuzzSubjects)], versions[i%len(versions)], b, i%2 == 0)
	}
	f.Fuzz(func(t *testing.T, subject, version string, body []byte, verbose bool) {
		h := fuzzRegistry(t)
		path := "/compatibility/subjects/" + seg(subject) + "/versions"
		if version != "" {
			path += "/" + seg(version)
		}
		if verbose {
			path += "?verbose=true"
		}
		rec := serve(h, "POST", path, body)
		checkAnswer(t, "compatibility", rec, len(body)+len(subject)+len(version))
		if rec.Code != 200 {
			return
		}
		var got struct {
			Is       *bool    `json:"is_compatible"`
			Messages []string `json:"messages"`
		}
		if err := json.Unmarshal(rec.Body.Bytes(), &got); err != nil || got.Is == nil || (!verbose && got.Messages != nil) {
			t.Fatalf("compatibility answered %s", abbreviate(rec.Body.String()))
		}
	})
}

// PUT /config[/{subject}]: a level accepted is the level read back.
func FuzzPutConfig(f *testing.F) {
	for i, b := range [][]byte{
		[]byte(`{"compatibility":"NONE"}`), []byte(`{"compatibility":"full_transitive"}`), []byte(`{"compatibility":"SIDEWAYS"}`),
		[]byte(`{"compatibility":5}`), []byte(`{"compatibility":"BACKWARD","extra":[1,2]}`), []byte(`{`), []byte(`"NONE"`), nil,
	} {
		f.Add(fuzzSubjects[i%len(fuzzSubjects)], b)
	}
	f.Fuzz(func(t *testing.T, subject string, body []byte) {
		h := fuzzRegistry(t)
		path := "/config"
		if subject != "" {
			path += "/" + seg(subject)
		}
		rec := serve(h, "PUT", path, body)
		checkAnswer(t, "put config", rec, len(body)+len(subject))
		if rec.Code != 200 {
			return
		}
		var put struct{ Compatibility string }
		_ = json.Unmarshal(rec.Body.Bytes(), &put)
		get := serve(h, "GET", path, nil)
		var got struct{ CompatibilityLevel string }
		if err := json.Unmarshal(get.Body.Bytes(), &got); get.Code != 200 || err != nil || got.CompatibilityLevel != put.Compatibility || put.Compatibility == "" {
			t.Fatalf("PUT %s answered %s, GET answers %d %s", path, rec.Body, get.Code, get.Body)
		}
	})
}

// PUT /mode[/{subject}]: a mode accepted is the mode read back.
func FuzzPutMode(f *testing.F) {
	for i, b := range [][]byte{
		[]byte(`{"mode":"READONLY"}`), []byte(`{"mode":"readwrite"}`), []byte(`{"mode":"IMPORT"}`), []byte(`{"mode":"WRITEONLY"}`),
		[]byte(`{"mode":null}`), []byte(`{"mode":"ｒeadonly"}`), []byte(`{"mode":"\u0131mport"}`), []byte(`[`), nil,
	} {
		f.Add(fuzzSubjects[i%len(fuzzSubjects)], b)
	}
	f.Fuzz(func(t *testing.T, subject string, body []byte) {
		h := fuzzRegistry(t)
		path := "/mode"
		if subject != "" {
			path += "/" + seg(subject)
		}
		rec := serve(h, "PUT", path, body)
		checkAnswer(t, "put mode", rec, len(body)+len(subject))
		if rec.Code != 200 {
			return
		}
		var put struct{ Mode string }
		_ = json.Unmarshal(rec.Body.Bytes(), &put)
		get := serve(h, "GET", path, nil)
		var got struct{ Mode string }
		if err := json.Unmarshal(get.Body.Bytes(), &got); get.Code != 200 || err != nil || got.Mode != put.Mode || put.Mode == "" {
			t.Fatalf("PUT %s answered %s, GET answers %d %s", path, rec.Body, get.Code, get.Body)
		}
	})
}

// Any method on any path: subject names, version strings and ids as a
// client may spell them, escaped or not.
func FuzzPath(f *testing.F) {
	for i, p := range []string{
		"/subjects", "/subjects?deleted=true", "/subjects/s/versions", "/subjects/s/versions/latest", "/subjects/s/versions/-1",
		"/subjects/s/versions/0", "/subjects/s/versions/2147483648", "/subjects/s/versions/1/schema", "/subjects/shop.Money/versions/1/referencedby",
		"/subjects/gone/versions?deleted=true", "/subjects/gone/versions/1?deleted=true", "/subjects/a%2Fb/versions", "/subjects/%zz/versions",
		"/schemas/ids/1", "/schemas/ids/0", "/schemas/ids/-1", "/schemas/ids/99999999999999999999", "/schemas/ids/1/schema",
		"/schemas/ids/2/subjects", "/schemas/ids/3/versions", "/schemas/types", "/config", "/config/s?defaultToGlobal=true", "/mode/ro",
		"/subjects/s/versions/2?permanent=true", "/subjects/gone?permanent=true", "/subjects/ro", "/", "//subjects", "/subjects/../config", "/nope",
	} {
		f.Add(byte(i), p)
	}
	methods := []string{"GET", "DELETE", "POST", "PUT", "HEAD", "PATCH"}
	f.Fuzz(func(t *testing.T, m byte, target string) {
		if !strings.HasPrefix(target, "/") {
			return // not a request target a server reads
		}
		u, err := url.ParseRequestURI(target)
		if err != nil {
			return // net/http answers 400 before any handler
		}
		h := fuzzRegistry(t)
		method := methods[int(m)%len(methods)]
		// The parsed URL as the server would hold it: printing it into a
		// request line for NewRequest to parse again breaks on a space,
		// which ParseRequestURI lets through (the fuzzer's first find).
		req := httptest.NewRequest(method, "http://registry/", nil)
		req.URL, req.RequestURI = u, target
		rec := httptest.NewRecorder()
		h.ServeHTTP(rec, req)
		checkAnswer(t, method+" "+target, rec, len(target))
	})
}

// Records in the store come from outside too: a compacted _schemas topic
// that another registry, an older release or a hand-made producer wrote.
// Whatever records follow the history, the registry starts and answers
// every read without a 5xx or a panic.
func FuzzStoreRecords(f *testing.F) {
	f.Add("schema/9", []byte(`{"id":9,"schema":"\"long\""}`), "version/s/3", []byte(`{"id":9}`))
	f.Add("version/s/7", []byte(`{"id":42}`), "mode/", []byte(`{"mode":"READONLY"}`))
	f.Add("schema/1", []byte(`{"id":1,"schema":"not avro"}`), "config/s", []byte(`{"compatibility":"SIDEWAYS"}`))
	f.Add("version/new/1", []byte(`{"id":0,"deleted":false}`), "version/new/-5", []byte(`{"id":1}`))
	f.Add("schema/2", []byte(`{"id":2,"schema":"{\"type\":\"record\",\"name\":\"P\",\"fields\":[]}","references":[{"name":"x","subject":"s","version":1}]}`), "version/s/1", []byte(nil))
	f.Add("noise", []byte("\x00\xff"), "version/s", []byte(`{}`))
	f.Fuzz(func(t *testing.T, k1 string, val1 []byte, k2 string, val2 []byte) {
		h := fuzzRegistry(t, [2][]byte{[]byte(k1), val1}, [2][]byte{[]byte(k2), val2})
		in := len(k1) + len(val1) + len(k2) + len(val2)
		get := func(path string) *httptest.ResponseRecorder {
			rec := serve(h, "GET", path, nil)
			checkAnswer(t, "GET "+path, rec, in)
			return rec
		}
		var subjects []string
		_ = json.Unmarshal(get("/subjects?deleted=true").Body.Bytes(), &subjects)
		for _, s := range subjects {
			var versions []int
			_ = json.Unmarshal(get("/subjects/"+seg(s)+"/versions?deleted=true").Body.Bytes(), &versions)
			for _, v := range append(versions, -1) {
				get("/subjects/" + seg(s) + "/versions/" + strconv.Itoa(v) + "?deleted=true")
				get("/subjects/" + seg(s) + "/versions/" + strconv.Itoa(v) + "/schema")
				get("/subjects/" + seg(s) + "/versions/" + strconv.Itoa(v) + "/referencedby")
			}
			for _, p := range []string{"/subjects/" + seg(s), "/compatibility/subjects/" + seg(s) + "/versions/latest", "/subjects/" + seg(s) + "/versions"} {
				rec := serve(h, "POST", p, fuzzSchema(v2))
				checkAnswer(t, "POST "+p, rec, in)
			}
		}
		for id := 0; id <= 10; id++ {
			for _, suffix := range []string{"", "/schema", "/subjects", "/versions"} {
				get("/schemas/ids/" + strconv.Itoa(id) + suffix)
			}
		}
		get("/config")
		get("/mode")
	})
}
