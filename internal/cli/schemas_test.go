package cli_test

import (
	"context"
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/twmb/franz-go/pkg/sr"

	"github.com/eventline/eventline/internal/testkit"
)

// gitRepo is a throwaway repository for the schema-evolution checks.
type gitRepo struct {
	t   *testing.T
	dir string
}

func newRepo(t *testing.T) *gitRepo {
	r := &gitRepo{t: t, dir: t.TempDir()}
	r.git("init", "-q", "-b", "main")
	return r
}

func (r *gitRepo) git(args ...string) string {
	r.t.Helper()
	cmd := exec.Command("git", append([]string{"-c", "user.name=test", "-c", "user.email=test@example.com", "-c", "commit.gpgsign=false"}, args...)...)
	cmd.Dir = r.dir
	out, err := cmd.CombinedOutput()
	if err != nil {
		r.t.Fatalf("git %v: %v\n%s", args, err, out)
	}
	return strings.TrimSpace(string(out))
}

func (r *gitRepo) write(path, content string) {
	r.t.Helper()
	p := filepath.Join(r.dir, path)
	if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
		r.t.Fatal(err)
	}
	if err := os.WriteFile(p, []byte(content), 0o644); err != nil {
		r.t.Fatal(err)
	}
}

func (r *gitRepo) commit(msg string) string {
	r.git("add", "-A")
	r.git("commit", "-q", "-m", msg)
	return r.git("rev-parse", "HEAD")
}

const pipelineYAML = `schemas:
  dir: schemas/avro
  compatibility: %s
topics:
  - name: orders
    events: [shop.Order, shop.Refund]
`

func pipeline(level string) string { return strings.Replace(pipelineYAML, "%s", level, 1) }

const (
	orderV1 = `{"type":"record","name":"Order","namespace":"shop","fields":[{"name":"id","type":"string"}]}`
	orderV2 = `{"type":"record","name":"Order","namespace":"shop","fields":[{"name":"id","type":"string"},{"name":"note","type":"string","default":""}]}`
	// v3 drops note's default: it still reads v2 data (which has note) but
	// no longer v1 data (which lacks it): only a transitive check sees it.
	orderV3 = `{"type":"record","name":"Order","namespace":"shop","fields":[{"name":"id","type":"string"},{"name":"note","type":"string"}]}`
	refund  = `{"type":"record","name":"Refund","namespace":"shop","fields":[{"name":"id","type":"string"}]}`
)

// The scenario of the issue: a breaking change against a version two commits
// back (the file renamed in between) is caught under BACKWARD_TRANSITIVE,
// naming file, subject, level, version and path; BACKWARD alone passes it.
func TestSchemasCheckGitTransitive(t *testing.T) {
	t.Parallel()
	r := newRepo(t)
	r.write("eventline.yaml", pipeline("BACKWARD_TRANSITIVE"))
	r.write("schemas/avro/order.avsc", orderV1)
	v1 := r.commit("v1")
	r.git("mv", "schemas/avro/order.avsc", "schemas/avro/Order.avsc")
	r.write("schemas/avro/Order.avsc", orderV2)
	r.commit("v2, renamed")
	r.write("README", "unrelated\n")
	r.commit("unrelated")
	r.write("schemas/avro/Order.avsc", orderV3) // the change under review

	cfg := filepath.Join(r.dir, "eventline.yaml")
	code, out, errOut := run(t, nil, "schemas", "check", "--against", "git:HEAD", "--config", cfg)
	if code != 1 {
		t.Fatalf("exit %d, want 1\nstdout:\n%s\nstderr:\n%s", code, out, errOut)
	}
	for _, want := range []string{
		"schemas/avro/Order.avsc",
		"subject orders-shop.Order",
		"(BACKWARD_TRANSITIVE)",
		"version 1 (commit " + v1[:12] + ")",
		"/fields/note",
		"hint:",
	} {
		if !strings.Contains(out, want) {
			t.Errorf("output lacks %q:\n%s", want, out)
		}
	}
	if strings.Contains(out, "version 2") {
		t.Errorf("version 2 is compatible but was reported:\n%s", out)
	}

	// JSON carries the same facts.
	code, out, _ = run(t, nil, "schemas", "check", "--against", "git:HEAD", "--config", cfg, "--format", "json")
	var rep struct {
		OK       bool
		Findings []struct {
			Kind, File, Subject, Level, Commit, Location string
			Version                                      int
		}
	}
	if err := json.Unmarshal([]byte(out), &rep); err != nil || code != 1 || rep.OK || len(rep.Findings) == 0 {
		t.Fatalf("json: exit %d, %v\n%s", code, err, out)
	}
	f := rep.Findings[0]
	if f.Kind != "incompatible" || f.File != "schemas/avro/Order.avsc" || f.Version != 1 || f.Commit != v1 || !strings.Contains(f.Location, "note") {
		t.Errorf("json finding: %+v", f)
	}

	// GitHub annotations point at the file.
	_, out, _ = run(t, nil, "schemas", "check", "--against", "git:HEAD", "--config", cfg, "--format", "github")
	if !strings.Contains(out, "::error file=schemas/avro/Order.avsc,title=Incompatible schema change::") {
		t.Errorf("github format:\n%s", out)
	}

	// Non-transitive BACKWARD compares with the latest version only: passes.
	r.write("eventline.yaml", pipeline("BACKWARD"))
	if code, out, errOut := run(t, nil, "schemas", "check", "--against", "git:HEAD", "--config", cfg); code != 0 {
		t.Fatalf("BACKWARD: exit %d\n%s%s", code, out, errOut)
	}
}

func TestSchemasCheckGitNewDeletedInvalid(t *testing.T) {
	t.Parallel()
	r := newRepo(t)
	r.write("eventline.yaml", pipeline("FULL_TRANSITIVE"))
	r.write("schemas/avro/Order.avsc", orderV1)
	r.commit("v1")
	cfg := filepath.Join(r.dir, "eventline.yaml")

	// Unchanged tree plus a brand-new subject: passes.
	r.write("schemas/avro/Refund.avsc", refund)
	code, out, errOut := run(t, nil, "schemas", "check", "--against", "git:HEAD", "--config", cfg)
	if code != 0 || !strings.Contains(out, "2 subject(s) checked (1 new): OK") {
		t.Fatalf("new subject: exit %d\n%s%s", code, out, errOut)
	}

	// A deleted schema is reported.
	if err := os.Remove(filepath.Join(r.dir, "schemas/avro/Order.avsc")); err != nil {
		t.Fatal(err)
	}
	code, out, _ = run(t, nil, "schemas", "check", "--against", "git:HEAD", "--config", cfg)
	if code != 1 || !strings.Contains(out, "schemas/avro/Order.avsc: subject orders-shop.Order (FULL_TRANSITIVE): deleted") {
		t.Fatalf("deleted schema: exit %d\n%s", code, out)
	}

	// An unparsable schema is invalid input: exit 2 with the parse error.
	r.write("schemas/avro/Order.avsc", `{"type":"record","name":"Order","fields":[{"name":"id","type":"strin"}]}`)
	code, out, _ = run(t, nil, "schemas", "check", "--against", "git:HEAD", "--config", cfg)
	if code != 2 || !strings.Contains(out, "invalid") || !strings.Contains(out, "strin") {
		t.Fatalf("invalid schema: exit %d\n%s", code, out)
	}

	// A ref that does not exist is invalid input too.
	code, _, errOut = run(t, nil, "schemas", "check", "--against", "git:no-such-ref", "--config", cfg)
	if code != 2 || !strings.Contains(errOut, "no-such-ref") {
		t.Fatalf("bad ref: exit %d\n%s", code, errOut)
	}
}

func TestSchemasCompatCLI(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	write := func(name, content string) string {
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, []byte(content), 0o644); err != nil {
			t.Fatal(err)
		}
		return p
	}
	v1, v2, v3 := write("v1.avsc", orderV1), write("v2.avsc", orderV2), write("v3.avsc", orderV3)
	bad := write("bad.avsc", `{"type":`)

	for _, tc := range []struct {
		args []string
		code int
		want string
	}{
		{[]string{"--level", "BACKWARD", v2, v1}, 0, "compatible"},
		{[]string{"--level", "BACKWARD", v3, v1, v2}, 0, "compatible"},
		{[]string{"--level", "BACKWARD_TRANSITIVE", v3, v1, v2}, 1, "note"},
		{[]string{"--level", "full_transitive", v3, v1, v2}, 1, "incompatible"},
		{[]string{"--level", "NONE", v3, v1}, 0, "compatible"},
		{[]string{"--level", "SIDEWAYS", v2, v1}, 2, "SIDEWAYS"},
		{[]string{"--level", "BACKWARD", bad, v1}, 2, "bad.avsc"},
		{[]string{"--level", "BACKWARD", filepath.Join(dir, "missing.avsc")}, 2, "missing.avsc"},
		{[]string{"--level", "BACKWARD"}, 2, "name the new schema"},
	} {
		code, out, errOut := run(t, nil, append([]string{"schemas", "compat"}, tc.args...)...)
		if code != tc.code || !strings.Contains(out+errOut, tc.want) {
			t.Errorf("compat %v: exit %d (want %d), output lacks %q?\n%s%s", tc.args, code, tc.code, tc.want, out, errOut)
		}
	}
}

// register sets each subject's level first, is idempotent, and
// check --against registry then judges changes by the registry's verdict.
func TestSchemasRegisterAndCheckAgainstRegistry(t *testing.T) {
	t.Parallel()
	r := newRepo(t)
	r.write("eventline.yaml", pipeline("FULL_TRANSITIVE"))
	r.write("schemas/avro/Order.avsc", orderV1)
	r.write("schemas/avro/Refund.avsc", refund)
	r.commit("schemas")
	cfg := filepath.Join(r.dir, "eventline.yaml")
	url := testkit.Registry(t) // enforcing, as the dev stack's
	env := map[string]string{"SCHEMA_REGISTRY_URL": url}

	code, out, errOut := run(t, env, "schemas", "register", "--config", cfg)
	if code != 0 {
		t.Fatalf("register: exit %d\n%s%s", code, out, errOut)
	}
	want := "orders-shop.Order\tversion 1\tid 1\tFULL_TRANSITIVE\norders-shop.Refund\tversion 1\tid 2\tFULL_TRANSITIVE\n"
	if out != want {
		t.Fatalf("register printed:\n%s\nwant:\n%s", out, want)
	}
	if code, again, _ := run(t, env, "schemas", "register", "--config", cfg); code != 0 || again != want {
		t.Fatalf("second register (idempotent): exit %d\n%s", code, again)
	}
	cl, _ := sr.NewClient(sr.URLs(url))
	lv := cl.Compatibility(context.Background(), "orders-shop.Order")
	if lv[0].Err != nil || lv[0].Level != sr.CompatFullTransitive {
		t.Fatalf("subject level: %+v", lv[0])
	}

	if code, out, errOut := run(t, env, "schemas", "check", "--against", "registry", "--config", cfg); code != 0 || !strings.Contains(out, "OK") {
		t.Fatalf("check unchanged: exit %d\n%s%s", code, out, errOut)
	}
	// v2 adds a field with a default: FULL compatible.
	r.write("schemas/avro/Order.avsc", orderV2)
	if code, out, errOut := run(t, env, "schemas", "check", "--against", "registry", "--config", cfg); code != 0 {
		t.Fatalf("check compatible change: exit %d\n%s%s", code, out, errOut)
	}
	// v3 without the default is not FULL compatible with v1 (once v2 is
	// registered too, transitively).
	if code, out, errOut := run(t, env, "schemas", "register", "--config", cfg); code != 0 {
		t.Fatalf("register v2: exit %d\n%s%s", code, out, errOut)
	}
	r.write("schemas/avro/Order.avsc", orderV3)
	code, out, _ = run(t, env, "schemas", "check", "--against", "registry", "--config", cfg, "--format", "json")
	if code != 1 || !strings.Contains(out, `"subject": "orders-shop.Order"`) || !strings.Contains(out, "note") {
		t.Fatalf("check breaking change: exit %d\n%s", code, out)
	}
	// And register refuses it: the registry answers 409.
	code, _, errOut = run(t, env, "schemas", "register", "--config", cfg)
	if code != 1 || !strings.Contains(errOut, "is incompatible with subject orders-shop.Order at its level FULL_TRANSITIVE") {
		t.Fatalf("register breaking change: exit %d\n%s", code, errOut)
	}
	// A registered subject with no schema file any more is reported.
	r.write("schemas/avro/Order.avsc", orderV2)
	if err := os.Remove(filepath.Join(r.dir, "schemas/avro/Refund.avsc")); err != nil {
		t.Fatal(err)
	}
	code, out, _ = run(t, env, "schemas", "check", "--against", "registry", "--config", cfg)
	if code != 1 || !strings.Contains(out, "subject orders-shop.Refund (FULL_TRANSITIVE): deleted") {
		t.Fatalf("deleted against registry: exit %d\n%s", code, out)
	}
	if code, _, errOut := run(t, nil, "schemas", "check", "--against", "registry", "--config", cfg); code != 2 || !strings.Contains(errOut, "SCHEMA_REGISTRY_URL") {
		t.Fatalf("no registry: exit %d\n%s", code, errOut)
	}
}

// Against a registry that requires Basic auth, register and check work
// with SCHEMA_REGISTRY_BASIC_AUTH_USER_INFO (or its _FILE form) and fail
// with a clear 401 error without it or with a wrong password; the password
// is in no output.
func TestSchemasAgainstAuthRegistry(t *testing.T) {
	t.Parallel()
	const pass = "pw-xyzzy:42"
	r := newRepo(t)
	r.write("eventline.yaml", pipeline("BACKWARD"))
	r.write("schemas/avro/Order.avsc", orderV1)
	r.commit("schemas")
	cfg := filepath.Join(r.dir, "eventline.yaml")
	url := testkit.RegistryWithAuth(t, "ci", pass)
	infoFile := filepath.Join(t.TempDir(), "user-info")
	if err := os.WriteFile(infoFile, []byte("ci:"+pass+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	noPassword := func(what, out string) {
		t.Helper()
		if strings.Contains(out, "xyzzy") {
			t.Errorf("%s: the password is in the output:\n%s", what, out)
		}
	}

	for name, tc := range map[string]struct {
		env        map[string]string
		code       int
		want, fail string
	}{
		"no credentials": {map[string]string{}, 1, "HTTP 401", "set SCHEMA_REGISTRY_BASIC_AUTH_USER_INFO"},
		"wrong password": {map[string]string{"SCHEMA_REGISTRY_BASIC_AUTH_USER_INFO": "ci:not-xyzzy"}, 1, "HTTP 401", "refused the credentials"},
		"no colon":       {map[string]string{"SCHEMA_REGISTRY_BASIC_AUTH_USER_INFO": "ci-xyzzy"}, 2, "SCHEMA_REGISTRY_BASIC_AUTH_USER_INFO", `want "user:password"`},
	} {
		tc.env["SCHEMA_REGISTRY_URL"] = url
		code, out, errOut := run(t, tc.env, "schemas", "register", "--config", cfg)
		if code != tc.code || !strings.Contains(errOut, tc.want) || !strings.Contains(errOut, tc.fail) {
			t.Errorf("register, %s: exit %d (want %d), stderr %q: want %q and %q", name, code, tc.code, errOut, tc.want, tc.fail)
		}
		noPassword("register, "+name, out+errOut)
	}

	for name, env := range map[string]map[string]string{
		"from the variable": {"SCHEMA_REGISTRY_URL": url, "SCHEMA_REGISTRY_BASIC_AUTH_USER_INFO": "ci:" + pass},
		"from a file":       {"SCHEMA_REGISTRY_URL": url, "SCHEMA_REGISTRY_BASIC_AUTH_USER_INFO_FILE": infoFile},
	} {
		code, out, errOut := run(t, env, "schemas", "register", "--config", cfg)
		if want := "orders-shop.Order\tversion 1\tid 1\tBACKWARD\n"; code != 0 || out != want {
			t.Errorf("register, credentials %s: exit %d\n%s%s", name, code, out, errOut)
		}
		noPassword("register, credentials "+name, out+errOut)
		code, out, errOut = run(t, env, "schemas", "check", "--against", "registry", "--config", cfg)
		if code != 0 || !strings.Contains(out, "OK") {
			t.Errorf("check, credentials %s: exit %d\n%s%s", name, code, out, errOut)
		}
		noPassword("check, credentials "+name, out+errOut)
	}
	code, out, errOut := run(t, map[string]string{"SCHEMA_REGISTRY_URL": url}, "schemas", "check", "--against", "registry", "--config", cfg)
	if code != 1 || !strings.Contains(errOut, "HTTP 401") {
		t.Errorf("check without credentials: exit %d, want 1 with HTTP 401\n%s%s", code, out, errOut)
	}
}
