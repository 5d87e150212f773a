package testkit

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
)

// recorder is a testing.TB that keeps Errorf's messages.
type recorder struct {
	testing.TB
	mu   sync.Mutex
	errs []string
}

func (r *recorder) Helper() {}

func (r *recorder) Errorf(format string, args ...any) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.errs = append(r.errs, fmt.Sprintf(format, args...))
}

func TestRequirePublicAPI(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	src := `package p

import (
	cfg "example.com/m/internal/config"
	"example.com/m/internal/store"
	"example.com/m/public"
)

type Config struct {
	Pipeline *cfg.Pipeline // flagged
	Public   public.Thing
	hidden   store.Store // unexported field: fine
}

type Alias = store.Store // flagged

func New(c Config) (*store.Handle, error) { return nil, nil } // flagged

func (c *Config) Open(s store.Store) {} // flagged

func (c *Config) close(s store.Store) {} // unexported: fine

type impl struct{}

func (impl) Open(s store.Store) {} // unexported receiver: fine

var Default = store.New() // flagged

var internalOnly = store.New() // fine

func Fine(p public.Thing) error { return nil }
`
	if err := os.WriteFile(filepath.Join(dir, "p.go"), []byte(src), 0o644); err != nil {
		t.Fatal(err)
	}
	// Test files may use internal packages freely.
	if err := os.WriteFile(filepath.Join(dir, "p_test.go"), []byte("package p\nimport \"example.com/m/internal/store\"\nfunc Helper(store.Store) {}\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	rec := &recorder{TB: t}
	RequirePublicAPI(rec, dir)
	want := []string{"exported Config mentions cfg.Pipeline", "exported Alias", "exported New", "exported Open", "exported Default"}
	if len(rec.errs) != len(want) {
		t.Fatalf("got %d errors, want %d:\n%s", len(rec.errs), len(want), strings.Join(rec.errs, "\n"))
	}
	for i, w := range want {
		if !strings.Contains(rec.errs[i], w) || !strings.Contains(rec.errs[i], "internal/") {
			t.Errorf("error %d = %q, want it to name %q", i, rec.errs[i], w)
		}
	}
}
