package registry_test

import (
	"context"
	"errors"
	"net/http"
	"net/http/httptest"
	"testing"

	"github.com/twmb/franz-go/pkg/sr"

	"github.com/eventline/eventline/registry"
)

func TestIsIncompatibleAcceptsBothCodes(t *testing.T) {
	t.Parallel()
	for _, body := range []string{
		`{"error_code":409,"message":"Schema being registered is incompatible"}`,
		`{"error_code":40901,"message":"Schema being registered is incompatible"}`,
	} {
		srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
			w.Header().Set("Content-Type", "application/vnd.schemaregistry.v1+json")
			w.WriteHeader(http.StatusConflict)
			_, _ = w.Write([]byte(body))
		}))
		cl, _ := sr.NewClient(sr.URLs(srv.URL))
		_, err := cl.CreateSchema(context.Background(), "s", sr.Schema{Schema: `"string"`})
		srv.Close()
		if !registry.IsIncompatible(err) {
			t.Errorf("%s: IsIncompatible(%v) = false", body, err)
		}
	}
	if registry.IsIncompatible(errors.New("connection refused")) {
		t.Error("a network error counted as incompatible")
	}
}
