package registry

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"strings"
	"sync"

	"github.com/hamba/avro/v2"

	"github.com/eventline/eventline/schemas/compat"
)

// Defaults, as Confluent's registry has them.
const (
	// DefaultCompatibility is the level of a subject when neither it nor
	// the global configuration (PUT /config) sets one.
	DefaultCompatibility = "BACKWARD"
	// DefaultTopic is the topic Confluent's registry keeps its state in;
	// pass it to NewKafkaStore unless several registries share a cluster.
	DefaultTopic = "_schemas"

	defaultMode = "READWRITE"
	contentType = "application/vnd.schemaregistry.v1+json"
)

// Config of a Registry.
type Config struct {
	// Store keeps the registry's state. Required: a KafkaStore
	// (NewKafkaStore) to survive restarts, or a MemoryStore for tests. There
	// is no default because a registry that forgets its schemas on restart
	// hands out their ids again, and consumers would decode old records
	// with the wrong schema.
	Store Store
	// Logger receives a line per registered schema and per internal error.
	// Default slog.Default().
	Logger *slog.Logger
	// BasicAuth, when not empty, makes every endpoint require HTTP Basic
	// authentication as one of these users (user name → password): a
	// request without valid credentials is answered 401 with
	// WWW-Authenticate: Basic realm="eventline" and Confluent's error body,
	// before its body is read. Confluent's clients send it from
	// basic.auth.user.info, franz-go's sr from sr.BasicAuth. Default nil:
	// no authentication. Plain HTTP carries the credentials readable, so
	// off loopback serve the Handler over TLS. Passwords are never logged.
	BasicAuth map[string]string
}

// Registry is the registry's state and HTTP API. Safe for concurrent use;
// writes are serialized (the registry is single-node).
type Registry struct {
	store Store
	log   *slog.Logger
	mu    sync.RWMutex
	st    *state
	mux   *http.ServeMux
	// handler is mux, behind the authentication check when configured.
	handler http.Handler
}

// New replays cfg.Store and returns a registry ready to serve (see Handler).
// It fails when the store cannot be read. A record it does not understand
// (another registry's kind, a malformed key or value, a schema that does
// not parse as Avro, with its references) is skipped with a warning, as
// Confluent's registry does, rather than keeping the registry from
// starting; the versions naming a skipped schema are skipped too, so no
// id is served that the API would have refused to register.
func New(ctx context.Context, cfg Config) (*Registry, error) {
	if cfg.Store == nil {
		return nil, errors.New("registry: a Store is required")
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	var auth *basicAuth
	if len(cfg.BasicAuth) > 0 {
		var err error
		if auth, err = newBasicAuth(cfg.BasicAuth); err != nil {
			return nil, err
		}
	}
	r := &Registry{store: cfg.Store, log: cfg.Logger, st: newState()}
	skip := func(key string, value []byte) error {
		if err := r.st.apply(key, value); err != nil {
			r.log.Warn("registry: skipping a stored record it cannot read", "key", abbreviate(key), "err", err)
		}
		return nil
	}
	if err := cfg.Store.Load(ctx, skip); err != nil {
		return nil, fmt.Errorf("registry: error loading state: %w", err)
	}
	for _, d := range r.st.dropDangling() {
		r.log.Warn("registry: skipping a stored version without a schema", "version", d)
	}
	r.dropUnparsable()
	r.routes()
	r.handler = r.mux
	if auth != nil {
		r.handler = auth.wrap(r.mux)
	}
	return r, nil
}

// Handler serves the REST API at the root of its path space; mount it on
// an http.Server or an httptest.Server.
func (r *Registry) Handler() http.Handler { return r.handler }

// Close closes the store. Stop serving Handler first: on a KafkaStore, a
// write after Close fails with HTTP 500.
func (r *Registry) Close() { r.store.Close() }

// apiError is Confluent's error body.
type apiError struct {
	status int
	Code   int    `json:"error_code"`
	Msg    string `json:"message"`
}

func (e *apiError) Error() string { return fmt.Sprintf("%d: %s", e.Code, e.Msg) }

func errf(status, code int, format string, args ...any) *apiError {
	return &apiError{status: status, Code: code, Msg: fmt.Sprintf(format, args...)}
}

var (
	errSubjectNotFound = func(s string) *apiError { return errf(404, 40401, "Subject '%s' not found.", s) }
	errVersionNotFound = func(v string) *apiError { return errf(404, 40402, "Version %s not found.", v) }
	errSchemaNotFound  = func() *apiError { return errf(404, 40403, "Schema not found") }
)

type handlerFunc func(w http.ResponseWriter, req *http.Request) (any, error)

func (r *Registry) handle(pattern string, h handlerFunc) {
	r.mux.HandleFunc(pattern, func(w http.ResponseWriter, req *http.Request) {
		out, err := h(w, req)
		w.Header().Set("Content-Type", contentType)
		if err != nil {
			var ae *apiError
			if !errors.As(err, &ae) {
				r.log.Error("schema registry: internal error", "path", req.URL.Path, "err", err)
				ae = errf(500, 50001, "Error in the backend data store: %v", err)
			}
			w.WriteHeader(ae.status)
			_ = json.NewEncoder(w).Encode(ae)
			return
		}
		if raw, ok := out.(rawSchema); ok {
			_, _ = w.Write([]byte(raw))
			return
		}
		_ = json.NewEncoder(w).Encode(out)
	})
}

type rawSchema string

func (r *Registry) routes() {
	r.mux = http.NewServeMux()
	r.handle("GET /{$}", func(http.ResponseWriter, *http.Request) (any, error) { return map[string]any{}, nil })
	r.handle("GET /schemas/types", func(http.ResponseWriter, *http.Request) (any, error) { return []string{"AVRO"}, nil })
	r.handle("GET /subjects", r.listSubjects)
	r.handle("GET /subjects/{subject}/versions", r.listVersions)
	r.handle("POST /subjects/{subject}/versions", r.register)
	r.handle("GET /subjects/{subject}/versions/{version}", r.getVersion)
	r.handle("GET /subjects/{subject}/versions/{version}/schema", r.getVersionSchema)
	r.handle("GET /subjects/{subject}/versions/{version}/referencedby", r.referencedBy)
	r.handle("DELETE /subjects/{subject}/versions/{version}", r.deleteVersion)
	r.handle("POST /subjects/{subject}", r.lookup)
	r.handle("DELETE /subjects/{subject}", r.deleteSubject)
	r.handle("GET /schemas/ids/{id}", r.bySchemaID(r.schemaByID))
	r.handle("GET /schemas/ids/{id}/schema", r.bySchemaID(r.rawSchemaByID))
	r.handle("GET /schemas/ids/{id}/subjects", r.bySchemaID(r.subjectsByID))
	r.handle("GET /schemas/ids/{id}/versions", r.bySchemaID(r.versionsByID))
	r.handle("POST /compatibility/subjects/{subject}/versions/{version}", r.checkCompatibility)
	r.handle("POST /compatibility/subjects/{subject}/versions", r.checkCompatibility)
	r.handle("GET /config", r.getConfig)
	r.handle("PUT /config", r.putConfig)
	r.handle("DELETE /config", r.deleteConfig)
	r.handle("GET /config/{subject}", r.getConfig)
	r.handle("PUT /config/{subject}", r.putConfig)
	r.handle("DELETE /config/{subject}", r.deleteConfig)
	r.handle("GET /mode", r.getMode)
	r.handle("PUT /mode", r.putMode)
	r.handle("DELETE /mode", r.deleteMode)
	r.handle("GET /mode/{subject}", r.getMode)
	r.handle("PUT /mode/{subject}", r.putMode)
	r.handle("DELETE /mode/{subject}", r.deleteMode)
	// Whatever no route above matches gets Confluent's error body too
	// instead of ServeMux's text/plain one, which clients cannot parse.
	r.handle("/", r.noRoute)
}

// noRoute answers a request no route matches: 405 when the path has a
// route for another method, else 404, as Confluent's registry does.
func (r *Registry) noRoute(_ http.ResponseWriter, req *http.Request) (any, error) {
	for _, m := range []string{http.MethodGet, http.MethodPost, http.MethodPut, http.MethodDelete} {
		probe := req.Clone(req.Context())
		probe.Method = m
		if _, pattern := r.mux.Handler(probe); pattern != "/" && pattern != "" {
			return nil, errf(http.StatusMethodNotAllowed, http.StatusMethodNotAllowed, "HTTP 405 Method Not Allowed")
		}
	}
	return nil, errf(http.StatusNotFound, http.StatusNotFound, "HTTP 404 Not Found")
}

// schemaRequest is the body of register, lookup and compatibility calls.
type schemaRequest struct {
	Schema     string      `json:"schema"`
	SchemaType string      `json:"schemaType"`
	References []reference `json:"references"`
}

// Request body limits: a schema request carries a schema (Confluent's
// default limit on a schema is in the megabytes); config and mode bodies
// carry one word.
const (
	maxSchemaBody = 16 << 20
	maxSmallBody  = 4 << 10
)

// decodeBody reads one JSON value of at most limit bytes into v: too large
// is 413, not JSON 400, JSON of the wrong shape 422 with code (as
// Confluent's registry answers).
func decodeBody(req *http.Request, limit int64, v any, code int, what string) error {
	err := json.NewDecoder(http.MaxBytesReader(nil, req.Body, limit)).Decode(v)
	var tooLarge *http.MaxBytesError
	var syntax *json.SyntaxError
	switch {
	case err == nil:
		return nil
	case errors.As(err, &tooLarge):
		return errf(413, 413, "Request body larger than %d bytes", limit)
	case errors.As(err, &syntax), errors.Is(err, io.ErrUnexpectedEOF), errors.Is(err, io.EOF):
		return errf(400, 400, "Unparseable request body: %v", err)
	default:
		return errf(422, code, "%s: %v", what, err)
	}
}

func decodeSchemaRequest(req *http.Request) (schemaRequest, error) {
	var body schemaRequest
	if err := decodeBody(req, maxSchemaBody, &body, 42201, "Invalid schema: request body is not a schema request"); err != nil {
		return body, err
	}
	if body.SchemaType != "" && !strings.EqualFold(body.SchemaType, "AVRO") {
		return body, errf(422, 42201, "Invalid schema: this registry serves Avro schemas only, not %s", body.SchemaType)
	}
	if strings.TrimSpace(body.Schema) == "" {
		return body, errf(422, 42201, "Invalid schema: empty schema")
	}
	return body, nil
}

// parse compiles text with its references resolved (the referenced named
// types are parsed first into the same cache). Called with r.mu held.
func (r *Registry) parse(text string, refs []reference) (avro.Schema, error) {
	if len(refs) == 0 {
		s, err := compat.Parse(text)
		if err != nil {
			return nil, errf(422, 42201, "Invalid schema %s: %v", abbreviate(text), err)
		}
		return s, nil
	}
	cache := &avro.SchemaCache{}
	if err := r.loadRefs(cache, refs, 0, map[int]bool{}); err != nil {
		return nil, err
	}
	s, err := avro.ParseWithCache(text, "", cache)
	if err != nil {
		return nil, errf(422, 42201, "Invalid schema %s: %v", abbreviate(text), err)
	}
	return s, nil
}

// maxReferenced bounds the distinct schemas one schema's references pull
// in, transitively.
const maxReferenced = 1000

// loadRefs parses the schemas refs name, and theirs first, into cache.
// Each schema is parsed once however many paths lead to it (seen): two
// schemas per level each referencing both of the level below made the
// work double per level, 11 s at depth 17, under the write lock.
func (r *Registry) loadRefs(cache *avro.SchemaCache, refs []reference, depth int, seen map[int]bool) error {
	if depth > 32 {
		return errf(422, 42201, "Invalid schema: references nest too deeply")
	}
	for _, ref := range refs {
		ss := r.st.subjects[ref.Subject]
		var v *version
		if ss != nil {
			if ref.Version == -1 {
				if live := ss.live(); len(live) > 0 {
					v = live[len(live)-1]
				}
			} else if v = ss.find(ref.Version); v != nil && v.Deleted {
				v = nil
			}
		}
		if v == nil {
			return errf(422, 42201, "Invalid schema: reference %q to subject %s version %d not found", ref.Name, ref.Subject, ref.Version)
		}
		if seen[v.ID] {
			continue
		}
		seen[v.ID] = true
		if len(seen) > maxReferenced {
			return errf(422, 42201, "Invalid schema: references pull in more than %d schemas", maxReferenced)
		}
		s := r.st.schemas[v.ID]
		if err := r.loadRefs(cache, s.References, depth+1, seen); err != nil {
			return err
		}
		if _, err := avro.ParseWithCache(s.Text, "", cache); err != nil {
			return errf(422, 42201, "Invalid schema: referenced subject %s version %d does not parse: %v", ref.Subject, v.Version, err)
		}
	}
	return nil
}

func abbreviate(s string) string {
	s = strings.Join(strings.Fields(s), " ")
	if len(s) > 120 {
		return s[:117] + "..."
	}
	return s
}
