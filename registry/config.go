package registry

import (
	"encoding/json"
	"net/http"
	"strings"

	"github.com/eventline/eventline/schemas/compat"
)

func (r *Registry) checkCompatibility(_ http.ResponseWriter, req *http.Request) (any, error) {
	body, err := decodeSchemaRequest(req)
	if err != nil {
		return nil, err
	}
	name := req.PathValue("subject")
	verbose := req.URL.Query().Get("verbose") == "true"
	r.mu.RLock()
	defer r.mu.RUnlock()
	parsed, err := r.parse(body.Schema, body.References)
	if err != nil {
		return nil, err
	}
	var against *version
	if raw := req.PathValue("version"); raw != "" {
		ss, err := r.subject(name, false)
		if err != nil {
			return nil, err
		}
		if against, err = r.version(ss, raw, false); err != nil {
			return nil, err
		}
	}
	res, err := r.check(name, parsed, against, verbose)
	if err != nil {
		return nil, err
	}
	out := struct {
		Is       bool     `json:"is_compatible"`
		Messages []string `json:"messages,omitempty"`
	}{Is: res.Compatible}
	if verbose {
		out.Messages = res.Messages()
		if out.Messages == nil {
			out.Messages = []string{}
		}
	}
	return out, nil
}

func (r *Registry) getConfig(_ http.ResponseWriter, req *http.Request) (any, error) {
	r.mu.RLock()
	defer r.mu.RUnlock()
	level, err := r.subjectSetting(req, r.st.compat, DefaultCompatibility, 40408, "compatibility")
	if err != nil {
		return nil, err
	}
	return map[string]string{"compatibilityLevel": level}, nil
}

// subjectSetting reads a per-subject setting (m: the compatibility levels
// or the modes) for the request's subject: its own value; else, for the
// global "" subject or with defaultToGlobal=true, the global one or def;
// else a 404 with code saying the subject has no subject-level what. The
// caller holds r.mu.
func (r *Registry) subjectSetting(req *http.Request, m map[string]string, def string, code int, what string) (string, error) {
	subject := req.PathValue("subject")
	if v := m[subject]; v != "" {
		return v, nil
	}
	if subject != "" && req.URL.Query().Get("defaultToGlobal") != "true" {
		return "", errf(404, code, "Subject '%s' does not have subject-level %s configured", subject, what)
	}
	return r.effective(m, "", def), nil
}

func (r *Registry) putConfig(_ http.ResponseWriter, req *http.Request) (any, error) {
	var body struct {
		Compatibility string `json:"compatibility"`
	}
	if err := decodeBody(req, maxSmallBody, &body, 42203, "Invalid compatibility level"); err != nil {
		return nil, err
	}
	level, err := compat.ParseLevel(body.Compatibility)
	if err != nil {
		return nil, errf(422, 42203, "Invalid compatibility level. Valid values are none, backward, forward, full, backward_transitive, forward_transitive, and full_transitive")
	}
	subject := req.PathValue("subject")
	r.mu.Lock()
	defer r.mu.Unlock()
	if subject != "" {
		if err := r.writable(subject); err != nil {
			return nil, err
		}
	}
	rec, _ := json.Marshal(configRecord{Compatibility: string(level)})
	if err := r.store.Append(req.Context(), "config/"+subject, rec); err != nil {
		return nil, err
	}
	r.st.compat[subject] = string(level)
	return map[string]string{"compatibility": string(level)}, nil
}

func (r *Registry) deleteConfig(_ http.ResponseWriter, req *http.Request) (any, error) {
	subject := req.PathValue("subject")
	r.mu.Lock()
	defer r.mu.Unlock()
	prev := r.effective(r.st.compat, subject, DefaultCompatibility)
	if subject != "" {
		if _, ok := r.st.compat[subject]; !ok {
			return nil, errSubjectNotFound(subject)
		}
	}
	if err := r.store.Append(req.Context(), "config/"+subject, nil); err != nil {
		return nil, err
	}
	delete(r.st.compat, subject)
	return map[string]string{"compatibilityLevel": prev}, nil
}

var modes = []string{"READWRITE", "READONLY", "READONLY_OVERRIDE", "IMPORT"}

func (r *Registry) getMode(_ http.ResponseWriter, req *http.Request) (any, error) {
	r.mu.RLock()
	defer r.mu.RUnlock()
	mode, err := r.subjectSetting(req, r.st.mode, defaultMode, 40409, "mode")
	if err != nil {
		return nil, err
	}
	return map[string]string{"mode": mode}, nil
}

func (r *Registry) putMode(_ http.ResponseWriter, req *http.Request) (any, error) {
	var body struct {
		Mode string `json:"mode"`
	}
	if err := decodeBody(req, maxSmallBody, &body, 42204, "Invalid mode"); err != nil {
		return nil, err
	}
	mode := strings.ToUpper(body.Mode)
	valid := false
	for _, m := range modes {
		valid = valid || m == mode
	}
	if !valid {
		return nil, errf(422, 42204, "Invalid mode. Valid values are READWRITE, READONLY, READONLY_OVERRIDE and IMPORT")
	}
	subject := req.PathValue("subject")
	r.mu.Lock()
	defer r.mu.Unlock()
	rec, _ := json.Marshal(modeRecord{Mode: mode})
	if err := r.store.Append(req.Context(), "mode/"+subject, rec); err != nil {
		return nil, err
	}
	r.st.mode[subject] = mode
	return map[string]string{"mode": mode}, nil
}

func (r *Registry) deleteMode(_ http.ResponseWriter, req *http.Request) (any, error) {
	subject := req.PathValue("subject")
	r.mu.Lock()
	defer r.mu.Unlock()
	prev := r.effective(r.st.mode, subject, defaultMode)
	if err := r.store.Append(req.Context(), "mode/"+subject, nil); err != nil {
		return nil, err
	}
	delete(r.st.mode, subject)
	return map[string]string{"mode": prev}, nil
}
