package registry

import (
	"net/http"
	"sort"
	"strconv"
)

func (r *Registry) schemaFor(req *http.Request) (*storedSchema, error) {
	id, err := strconv.Atoi(req.PathValue("id"))
	if err != nil {
		return nil, errSchemaNotFound()
	}
	s := r.st.schemas[id]
	if s == nil {
		return nil, errf(404, 40403, "Schema %d not found", id)
	}
	return s, nil
}

// bySchemaID makes a handler of /schemas/ids/{id}/...: show answers for
// the id's schema, looked up under the read lock (40403 when unknown).
func (r *Registry) bySchemaID(show func(req *http.Request, s *storedSchema) any) handlerFunc {
	return func(_ http.ResponseWriter, req *http.Request) (any, error) {
		r.mu.RLock()
		defer r.mu.RUnlock()
		s, err := r.schemaFor(req)
		if err != nil {
			return nil, err
		}
		return show(req, s), nil
	}
}

func (r *Registry) schemaByID(_ *http.Request, s *storedSchema) any {
	return struct {
		Schema     string      `json:"schema"`
		References []reference `json:"references,omitempty"`
	}{s.Text, s.References}
}

func (r *Registry) rawSchemaByID(_ *http.Request, s *storedSchema) any {
	return rawSchema(s.Text)
}

func (r *Registry) usesOf(id int, withDeleted bool) []subjectVersion {
	var out []subjectVersion
	for name, ss := range r.st.subjects {
		for _, v := range ss.versions {
			if v.ID == id && (withDeleted || !v.Deleted) {
				out = append(out, subjectVersion{Subject: name, Version: v.Version})
			}
		}
	}
	sort.Slice(out, func(i, j int) bool {
		if out[i].Subject != out[j].Subject {
			return out[i].Subject < out[j].Subject
		}
		return out[i].Version < out[j].Version
	})
	return out
}

func (r *Registry) subjectsByID(req *http.Request, s *storedSchema) any {
	out := []string{}
	for _, u := range r.usesOf(s.ID, showDeleted(req)) {
		if len(out) == 0 || out[len(out)-1] != u.Subject {
			out = append(out, u.Subject)
		}
	}
	return out
}

func (r *Registry) versionsByID(req *http.Request, s *storedSchema) any {
	type sv struct {
		Subject string `json:"subject"`
		Version int    `json:"version"`
	}
	out := []sv{}
	for _, u := range r.usesOf(s.ID, showDeleted(req)) {
		out = append(out, sv{u.Subject, u.Version})
	}
	return out
}
