package registry_test

import (
	"context"
	"encoding/json"
	"errors"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/twmb/franz-go/pkg/sr"

	"github.com/eventline/eventline/internal/testkit"
	"github.com/eventline/eventline/registry"
)

const authPassword = "s3cret-xyzzy:with-colon"

// With BasicAuth set, every endpoint (unknown paths too) answers a request
// without valid credentials 401 with the Basic challenge and Confluent's
// error body; a client with the credentials works as before; the password
// appears in no log line.
func TestBasicAuth(t *testing.T) {
	t.Parallel()
	var logs testkit.SyncBuffer
	reg, err := registry.New(context.Background(), registry.Config{
		Store:     &registry.MemoryStore{},
		Logger:    slog.New(slog.NewTextHandler(&logs, &slog.HandlerOptions{Level: slog.LevelDebug})),
		BasicAuth: map[string]string{"alice": authPassword, "bob": "other-password"},
	})
	if err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewServer(reg.Handler())
	t.Cleanup(srv.Close)

	do := func(method, path, body string, auth func(*http.Request)) (*http.Response, string) {
		t.Helper()
		req, _ := http.NewRequest(method, srv.URL+path, strings.NewReader(body))
		req.Header.Set("Content-Type", "application/vnd.schemaregistry.v1+json")
		if auth != nil {
			auth(req)
		}
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		raw, _ := io.ReadAll(resp.Body)
		return resp, string(raw)
	}
	creds := func(user, pass string) func(*http.Request) {
		return func(r *http.Request) { r.SetBasicAuth(user, pass) }
	}
	for name, auth := range map[string]func(*http.Request){
		"no credentials":   nil,
		"wrong password":   creds("alice", "s3cret-xyzzy"),
		"unknown user":     creds("mallory", authPassword),
		"other's password": creds("bob", authPassword),
		"bearer token":     func(r *http.Request) { r.Header.Set("Authorization", "Bearer "+authPassword) },
	} {
		for _, c := range []struct{ method, path, body string }{
			{"GET", "/subjects", ""},
			{"GET", "/", ""},
			{"POST", "/subjects/s/versions", body(v1)},
			{"PUT", "/config", `{"compatibility":"NONE"}`},
			{"GET", "/no/such/path", ""},
		} {
			resp, raw := do(c.method, c.path, c.body, auth)
			var e struct {
				Code    int    `json:"error_code"`
				Message string `json:"message"`
			}
			if resp.StatusCode != 401 || json.Unmarshal([]byte(raw), &e) != nil || e.Code != 401 || e.Message != "Unauthorized" {
				t.Errorf("%s: %s %s: %d %q, want 401 with Confluent's error body", name, c.method, c.path, resp.StatusCode, raw)
			}
			if got := resp.Header.Get("WWW-Authenticate"); got != `Basic realm="eventline"` {
				t.Errorf("%s: %s %s: WWW-Authenticate %q", name, c.method, c.path, got)
			}
			if ct := resp.Header.Get("Content-Type"); ct != "application/vnd.schemaregistry.v1+json" {
				t.Errorf("%s: content type %q", name, ct)
			}
		}
	}

	// franz-go's client with the credentials (the password holds a colon:
	// only the user part is cut at the first one).
	cl, err := sr.NewClient(sr.URLs(srv.URL), sr.BasicAuth("alice", authPassword))
	if err != nil {
		t.Fatal(err)
	}
	ss, err := cl.CreateSchema(context.Background(), "s", sr.Schema{Schema: v1})
	if err != nil || ss.ID != 1 {
		t.Fatalf("register with credentials: %+v, %v", ss, err)
	}
	if got, err := cl.SchemaByVersion(context.Background(), "s", -1); err != nil || got.ID != 1 {
		t.Fatalf("read with credentials: %+v, %v", got, err)
	}
	// Nothing was registered by the refused POSTs above.
	if resp, raw := do("GET", "/subjects/s/versions", "", creds("bob", "other-password")); resp.StatusCode != 200 || strings.TrimSpace(raw) != "[1]" {
		t.Errorf("versions as bob: %d %s, want [1]", resp.StatusCode, raw)
	}
	// Without credentials franz-go's client sees the 401 as a ResponseError.
	anon, _ := sr.NewClient(sr.URLs(srv.URL))
	_, err = anon.Subjects(context.Background())
	var re *sr.ResponseError
	if !errors.As(err, &re) || re.StatusCode != 401 || re.ErrorCode != 401 {
		t.Errorf("anonymous client: %v, want a 401 ResponseError", err)
	}
	if strings.Contains(logs.String(), "xyzzy") {
		t.Errorf("a password is in the registry's log:\n%s", logs.String())
	}
}

// A refused request's body is never read: an unauthenticated client cannot
// make the registry parse (or buffer) anything.
func TestBasicAuthDoesNotReadRefusedBodies(t *testing.T) {
	t.Parallel()
	reg, err := registry.New(context.Background(), registry.Config{Store: &registry.MemoryStore{}, Logger: testkit.Logger(t),
		BasicAuth: map[string]string{"alice": authPassword}})
	if err != nil {
		t.Fatal(err)
	}
	body := &countingReader{r: strings.NewReader(body(v1))}
	req := httptest.NewRequest("POST", "/subjects/s/versions", body)
	rec := httptest.NewRecorder()
	reg.Handler().ServeHTTP(rec, req)
	if rec.Code != 401 || body.n != 0 {
		t.Fatalf("status %d after reading %d body bytes, want 401 after none", rec.Code, body.n)
	}
}

type countingReader struct {
	r io.Reader
	n int
}

func (c *countingReader) Read(p []byte) (int, error) {
	n, err := c.r.Read(p)
	c.n += n
	return n, err
}

// Entries that Basic auth cannot express or that would let anybody in are
// refused by New, naming the user but not the password.
func TestBasicAuthConfigRefused(t *testing.T) {
	t.Parallel()
	for _, users := range []map[string]string{
		{"": authPassword},
		{"al:ice": authPassword},
		{"alice": ""},
	} {
		_, err := registry.New(context.Background(), registry.Config{Store: &registry.MemoryStore{}, BasicAuth: users})
		if err == nil || !strings.Contains(err.Error(), "BasicAuth") || strings.Contains(err.Error(), "xyzzy") {
			t.Errorf("BasicAuth with users %v: %v, want a refusal without the password", keys(users), err)
		}
	}
}

func keys(m map[string]string) []string {
	out := make([]string, 0, len(m))
	for k := range m {
		out = append(out, k)
	}
	return out
}
