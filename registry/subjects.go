package registry

import (
	"context"
	"encoding/json"
	"net/http"
	"sort"
	"strconv"

	"github.com/hamba/avro/v2"

	"github.com/eventline/eventline/schemas/compat"
)

func showDeleted(req *http.Request) bool { return req.URL.Query().Get("deleted") == "true" }

func (r *Registry) listSubjects(_ http.ResponseWriter, req *http.Request) (any, error) {
	r.mu.RLock()
	defer r.mu.RUnlock()
	out := []string{}
	for name, ss := range r.st.subjects {
		if showDeleted(req) || len(ss.live()) > 0 {
			out = append(out, name)
		}
	}
	sort.Strings(out)
	return out, nil
}

// subject returns the subject's state, or 40401 when it has no version to
// show (all soft-deleted counts as missing unless deleted=true).
func (r *Registry) subject(name string, withDeleted bool) (*subjectState, error) {
	ss := r.st.subjects[name]
	if ss == nil || (!withDeleted && len(ss.live()) == 0) {
		return nil, errSubjectNotFound(name)
	}
	return ss, nil
}

func (r *Registry) listVersions(_ http.ResponseWriter, req *http.Request) (any, error) {
	r.mu.RLock()
	defer r.mu.RUnlock()
	ss, err := r.subject(req.PathValue("subject"), showDeleted(req))
	if err != nil {
		return nil, err
	}
	out := []int{}
	for _, v := range ss.versions {
		if showDeleted(req) || !v.Deleted {
			out = append(out, v.Version)
		}
	}
	return out, nil
}

// version resolves a {version} path segment: a positive number, or
// "latest"/-1 for the newest live version.
func (r *Registry) version(ss *subjectState, raw string, withDeleted bool) (*version, error) {
	if raw == "latest" || raw == "-1" {
		live := ss.live()
		if len(live) == 0 {
			return nil, errVersionNotFound(raw)
		}
		return live[len(live)-1], nil
	}
	n, err := strconv.Atoi(raw)
	if err != nil || n < 1 || n > 1<<31-1 {
		return nil, errf(422, 42202, "The specified version '%s' is not a valid version id. Allowed values are between [1, 2^31-1] and the string \"latest\"", raw)
	}
	v := ss.find(n)
	if v == nil || (v.Deleted && !withDeleted) {
		return nil, errVersionNotFound(raw)
	}
	return v, nil
}

type subjectVersion struct {
	Subject    string      `json:"subject"`
	Version    int         `json:"version"`
	ID         int         `json:"id"`
	Schema     string      `json:"schema"`
	References []reference `json:"references,omitempty"`
}

func (r *Registry) getVersion(_ http.ResponseWriter, req *http.Request) (any, error) {
	r.mu.RLock()
	defer r.mu.RUnlock()
	name := req.PathValue("subject")
	ss, err := r.subject(name, showDeleted(req))
	if err != nil {
		return nil, err
	}
	v, err := r.version(ss, req.PathValue("version"), showDeleted(req))
	if err != nil {
		return nil, err
	}
	s := r.st.schemas[v.ID]
	return subjectVersion{Subject: name, Version: v.Version, ID: v.ID, Schema: s.Text, References: s.References}, nil
}

func (r *Registry) getVersionSchema(w http.ResponseWriter, req *http.Request) (any, error) {
	out, err := r.getVersion(w, req)
	if err != nil {
		return nil, err
	}
	return rawSchema(out.(subjectVersion).Schema), nil
}

func (r *Registry) referencedBy(_ http.ResponseWriter, req *http.Request) (any, error) {
	r.mu.RLock()
	defer r.mu.RUnlock()
	name := req.PathValue("subject")
	ss, err := r.subject(name, false)
	if err != nil {
		return nil, err
	}
	v, err := r.version(ss, req.PathValue("version"), false)
	if err != nil {
		return nil, err
	}
	return r.referrers(name, v.Version), nil
}

// referrers lists the ids of live schemas that reference subject/version.
func (r *Registry) referrers(subject string, ver int) []int {
	seen := map[int]bool{}
	out := []int{}
	for _, ss := range r.st.subjects {
		for _, v := range ss.live() {
			s := r.st.schemas[v.ID]
			for _, ref := range s.References {
				if ref.Subject == subject && ref.Version == ver && !seen[v.ID] {
					seen[v.ID] = true
					out = append(out, v.ID)
				}
			}
		}
	}
	sort.Ints(out)
	return out
}

func (r *Registry) effective(m map[string]string, subject, def string) string {
	if l, ok := m[subject]; ok && l != "" {
		return l
	}
	if l, ok := m[""]; ok && l != "" {
		return l
	}
	return def
}

func (r *Registry) writable(subject string) error {
	if mode := r.effective(r.st.mode, subject, defaultMode); mode == "READONLY" || mode == "READONLY_OVERRIDE" {
		return errf(422, 42205, "Subject %s is in read-only mode", subject)
	}
	return nil
}

func (r *Registry) register(_ http.ResponseWriter, req *http.Request) (any, error) {
	body, err := decodeSchemaRequest(req)
	if err != nil {
		return nil, err
	}
	name := req.PathValue("subject")
	r.mu.Lock()
	defer r.mu.Unlock()
	if err := r.writable(name); err != nil {
		return nil, err
	}
	parsed, err := r.parse(body.Schema, body.References)
	if err != nil {
		return nil, err
	}
	key := identity(body.Schema, body.References)
	ss := r.st.subjects[name]
	if ss != nil {
		for _, v := range ss.live() {
			if r.st.schemas[v.ID].key == key {
				return map[string]int{"id": v.ID}, nil // already registered: idempotent
			}
		}
	}
	if res, err := r.check(name, parsed, nil, false); err != nil {
		return nil, err
	} else if !res.Compatible {
		return nil, &apiError{status: http.StatusConflict, Code: 409, Msg: "Schema being registered is incompatible with an earlier schema for subject \"" + name + "\", details: " + joinMessages(res)}
	}
	ctx := req.Context()
	id, known := r.st.byKey[key]
	if !known {
		id = r.st.maxID + 1
		rec, _ := json.Marshal(schemaRecord{ID: id, Schema: body.Schema, References: body.References})
		if err := r.store.Append(ctx, "schema/"+strconv.Itoa(id), rec); err != nil {
			return nil, err
		}
		r.st.putSchema(&storedSchema{ID: id, Text: body.Schema, References: body.References, key: key})
	}
	ver := r.st.maxVer[name] + 1
	if err := r.putVersion(ctx, name, &version{Version: ver, ID: id}); err != nil {
		return nil, err
	}
	r.log.Info("schema registered", "subject", name, "version", ver, "id", id)
	return map[string]int{"id": id}, nil
}

// versionKey is the log key of subject's version ver.
func versionKey(subject string, ver int) string {
	return "version/" + subject + "/" + strconv.Itoa(ver)
}

func (r *Registry) putVersion(ctx context.Context, subject string, v *version) error {
	rec, _ := json.Marshal(versionRecord{ID: v.ID, Deleted: v.Deleted})
	if err := r.store.Append(ctx, versionKey(subject, v.Version), rec); err != nil {
		return err
	}
	r.st.putVersion(subject, v)
	return nil
}

// check runs the subject's compatibility level for parsed against the live
// versions (all of them, or only against, when given). Called with r.mu
// held.
func (r *Registry) check(subject string, parsed avro.Schema, against *version, _ bool) (compat.Result, error) {
	level, err := compat.ParseLevel(r.effective(r.st.compat, subject, DefaultCompatibility))
	if err != nil {
		return compat.Result{}, err
	}
	var versions []*version
	if ss := r.st.subjects[subject]; ss != nil {
		versions = ss.live()
	}
	if against != nil {
		versions = []*version{against}
	}
	existing := make([]avro.Schema, 0, len(versions))
	for _, v := range versions {
		s := r.st.schemas[v.ID]
		p, err := r.parse(s.Text, s.References)
		if err != nil {
			return compat.Result{}, err
		}
		existing = append(existing, p)
	}
	return compat.Check(level, parsed, existing), nil
}

func joinMessages(res compat.Result) string {
	b, _ := json.Marshal(res.Messages())
	return string(b)
}

func (r *Registry) lookup(_ http.ResponseWriter, req *http.Request) (any, error) {
	body, err := decodeSchemaRequest(req)
	if err != nil {
		return nil, err
	}
	name := req.PathValue("subject")
	r.mu.RLock()
	defer r.mu.RUnlock()
	ss, err := r.subject(name, showDeleted(req))
	if err != nil {
		return nil, err
	}
	if _, err := r.parse(body.Schema, body.References); err != nil {
		return nil, err
	}
	key := identity(body.Schema, body.References)
	for _, v := range ss.versions {
		if v.Deleted && !showDeleted(req) {
			continue
		}
		if s := r.st.schemas[v.ID]; s.key == key {
			return subjectVersion{Subject: name, Version: v.Version, ID: v.ID, Schema: s.Text, References: s.References}, nil
		}
	}
	return nil, errSchemaNotFound()
}

func (r *Registry) deleteSubject(_ http.ResponseWriter, req *http.Request) (any, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	name, ss, permanent, err := r.deleteTarget(req)
	if err != nil {
		return nil, err
	}
	live := ss.live()
	out := []int{}
	ctx := req.Context()
	if !permanent {
		if len(live) == 0 {
			return nil, errf(404, 40404, "Subject '%s' was soft deleted.Set permanent=true to delete permanently", name)
		}
		for _, v := range live {
			if err := r.unreferenced(name, v); err != nil {
				return nil, err
			}
		}
		for _, v := range live {
			if err := r.softDelete(ctx, name, v); err != nil {
				return nil, err
			}
			out = append(out, v.Version)
		}
		return out, nil
	}
	if len(live) > 0 {
		return nil, errf(404, 40405, "Subject '%s' was not deleted first before being permanently deleted", name)
	}
	for _, v := range append([]*version(nil), ss.versions...) {
		if err := r.purge(ctx, name, v); err != nil {
			return nil, err
		}
		out = append(out, v.Version)
	}
	return out, nil
}

func (r *Registry) deleteVersion(_ http.ResponseWriter, req *http.Request) (any, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	name, ss, permanent, err := r.deleteTarget(req)
	if err != nil {
		return nil, err
	}
	v, err := r.version(ss, req.PathValue("version"), true)
	if err != nil {
		return nil, err
	}
	if err := r.unreferenced(name, v); err != nil {
		return nil, err
	}
	ctx := req.Context()
	if !permanent {
		if v.Deleted {
			return nil, errf(404, 40406, "Subject '%s' Version %d was soft deleted.Set permanent=true to delete permanently", name, v.Version)
		}
		if err := r.softDelete(ctx, name, v); err != nil {
			return nil, err
		}
		return v.Version, nil
	}
	if !v.Deleted {
		return nil, errf(404, 40407, "Subject '%s' Version %d was not deleted first before being permanently deleted", name, v.Version)
	}
	if err := r.purge(ctx, name, v); err != nil {
		return nil, err
	}
	return v.Version, nil
}

// deleteTarget is the subject a DELETE names, once it is known to exist and
// to be writable, and whether the request asks for a permanent delete.
// The caller holds r.mu.
func (r *Registry) deleteTarget(req *http.Request) (name string, ss *subjectState, permanent bool, err error) {
	name = req.PathValue("subject")
	if err := r.writable(name); err != nil {
		return name, nil, false, err
	}
	if ss = r.st.subjects[name]; ss == nil {
		return name, nil, false, errSubjectNotFound(name)
	}
	return name, ss, req.URL.Query().Get("permanent") == "true", nil
}

// unreferenced refuses (42206) to delete a version other live schemas
// reference.
func (r *Registry) unreferenced(subject string, v *version) error {
	if refs := r.referrers(subject, v.Version); len(refs) > 0 {
		return errf(422, 42206, "One or more references exist to the schema {subject=%s,version=%d}", subject, v.Version)
	}
	return nil
}

// softDelete marks v deleted: it stays in the log and in lookups that ask
// for deleted versions.
func (r *Registry) softDelete(ctx context.Context, subject string, v *version) error {
	return r.putVersion(ctx, subject, &version{Version: v.Version, ID: v.ID, Deleted: true})
}

// purge removes v for good: a tombstone in the log, and from the state.
func (r *Registry) purge(ctx context.Context, subject string, v *version) error {
	if err := r.store.Append(ctx, versionKey(subject, v.Version), nil); err != nil {
		return err
	}
	r.st.removeVersion(subject, v.Version)
	return nil
}
