// Package compose_test checks the Docker stack against the code, since no
// Docker engine runs in CI: the eventline services are configured only
// through variables the CLI reads, the image builds the binary the way the
// Makefile does, the topics are replicated three times, and the Grafana
// dashboard only queries metrics eventline exports.
package compose_test

import (
	"encoding/json"
	"go/ast"
	"go/parser"
	"go/token"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"testing"

	"go.yaml.in/yaml/v3"
)

type composeFile struct {
	Services map[string]struct {
		Image       string            `yaml:"image"`
		Build       any               `yaml:"build"`
		Command     any               `yaml:"command"`
		Environment map[string]string `yaml:"environment"`
	} `yaml:"services"`
}

func load(t *testing.T) composeFile {
	t.Helper()
	b, err := os.ReadFile("docker-compose.yml")
	if err != nil {
		t.Fatal(err)
	}
	var c composeFile
	if err := yaml.Unmarshal(b, &c); err != nil {
		t.Fatalf("docker-compose.yml: %v", err)
	}
	return c
}

// cliVariables are the environment variables the CLI reads: string
// literals passed to Getenv/getenv/envOr in internal/cli and
// internal/telemetry (the OTLP exporters read the standard OTEL_EXPORTER_*
// variables themselves).
func cliVariables(t *testing.T) map[string]bool {
	t.Helper()
	vars := map[string]bool{}
	for _, dir := range []string{"../internal/cli", "../internal/telemetry"} {
		files, _ := filepath.Glob(filepath.Join(dir, "*.go"))
		for _, f := range files {
			if strings.HasSuffix(f, "_test.go") {
				continue
			}
			file, err := parser.ParseFile(token.NewFileSet(), f, nil, 0)
			if err != nil {
				t.Fatal(err)
			}
			ast.Inspect(file, func(n ast.Node) bool {
				call, ok := n.(*ast.CallExpr)
				if !ok {
					return true
				}
				var name string
				switch fn := call.Fun.(type) {
				case *ast.SelectorExpr:
					name = fn.Sel.Name
				case *ast.Ident:
					name = fn.Name
				}
				if name != "Getenv" && name != "getenv" && name != "envOr" {
					return true
				}
				for _, a := range call.Args {
					if lit, ok := a.(*ast.BasicLit); ok && lit.Kind == token.STRING {
						if v, err := strconv.Unquote(lit.Value); err == nil {
							vars[v] = true
						}
					}
				}
				return true
			})
		}
	}
	if len(vars) < 5 {
		t.Fatalf("found only %v: the scanner is broken", vars)
	}
	return vars
}

func TestEventlineServicesUseCLIVariablesOnly(t *testing.T) {
	c := load(t)
	vars := cliVariables(t)
	n := 0
	for name, svc := range c.Services {
		if svc.Image != "eventline:local" {
			continue
		}
		n++
		if svc.Build == nil {
			t.Errorf("service %s is not built from the Dockerfile", name)
		}
		for k := range svc.Environment {
			if !vars[k] && !strings.HasPrefix(k, "OTEL_EXPORTER_OTLP_") {
				t.Errorf("service %s sets %s, which the CLI does not read", name, k)
			}
		}
	}
	for _, want := range []string{"relay", "demo", "migrate"} {
		if c.Services[want].Image != "eventline:local" {
			t.Errorf("no eventline service %q", want)
		}
	}
	if n < 3 {
		t.Errorf("%d eventline services", n)
	}
}

func TestDockerfileBuildsLikeTheMakefile(t *testing.T) {
	mk, err := os.ReadFile("../Makefile")
	if err != nil {
		t.Fatal(err)
	}
	m := regexp.MustCompile(`(?m)^BUILD_CMD\s*:=\s*(.+)$`).FindSubmatch(mk)
	if m == nil {
		t.Fatal("Makefile has no BUILD_CMD")
	}
	if !strings.Contains(string(mk), "\t$(BUILD_CMD)") {
		t.Error("the Makefile's build target does not run $(BUILD_CMD)")
	}
	df, err := os.ReadFile("../Dockerfile")
	if err != nil {
		t.Fatal(err)
	}
	var runs []string
	for _, line := range strings.Split(string(df), "\n") {
		if strings.HasPrefix(line, "RUN ") && strings.Contains(line, "go build") {
			runs = append(runs, strings.TrimSpace(strings.TrimPrefix(line, "RUN ")))
		}
	}
	if len(runs) != 1 || runs[0] != strings.TrimSpace(string(m[1])) {
		t.Errorf("Dockerfile builds with %q, the Makefile with %q", runs, m[1])
	}
}

func TestKafkaIsReplicated(t *testing.T) {
	c := load(t)
	brokers := 0
	for name, svc := range c.Services {
		if strings.HasPrefix(name, "kafka-") && strings.HasPrefix(svc.Image, "apache/kafka:4.") {
			brokers++
			if svc.Environment["KAFKA_PROCESS_ROLES"] == "" || svc.Environment["KAFKA_CONTROLLER_QUORUM_VOTERS"] != "1@kafka-1:9093,2@kafka-2:9093,3@kafka-3:9093" {
				t.Errorf("%s: not a KRaft node of the 3-voter quorum: %v", name, svc.Environment)
			}
			if svc.Environment["KAFKA_DEFAULT_REPLICATION_FACTOR"] != "3" || svc.Environment["KAFKA_MIN_INSYNC_REPLICAS"] != "2" {
				t.Errorf("%s: default replication %q, min ISR %q", name, svc.Environment["KAFKA_DEFAULT_REPLICATION_FACTOR"], svc.Environment["KAFKA_MIN_INSYNC_REPLICAS"])
			}
		}
	}
	if brokers != 3 {
		t.Errorf("%d Kafka brokers, want 3", brokers)
	}
	cmd, _ := yaml.Marshal(c.Services["topics"].Command)
	for _, want := range []string{"orders.events", "inventory.events", "--replication-factor 3", "min.insync.replicas=2"} {
		if !strings.Contains(string(cmd), want) {
			t.Errorf("topics service does not create with %q: %s", want, cmd)
		}
	}
}

// exported are the metrics eventline serves (internal/cli
// TestDemoMetricsAndHealth scrapes them from a running demo).
var exported = []string{
	"eventline_outbox_backlog", "eventline_outbox_oldest_age_seconds",
	"eventline_relay_published_total", "eventline_relay_parked_total", "eventline_relay_batches_total",
	"eventline_relay_last_batch_seconds", "eventline_relay_leader",
	"eventline_consumer_applied_total", "eventline_consumer_duplicates_total", "eventline_consumer_retried_total",
	"eventline_consumer_dead_lettered_total", "eventline_consumer_deferred_total", "eventline_consumer_apply_seconds",
	"eventline_consumer_retry_lateness_p99_seconds", "eventline_consumer_lag",
}

func TestDashboardQueriesExportedMetrics(t *testing.T) {
	b, err := os.ReadFile("grafana/dashboards/eventline.json")
	if err != nil {
		t.Fatal(err)
	}
	var d struct {
		Panels []struct {
			Title   string
			Targets []struct{ Expr string }
		}
	}
	if err := json.Unmarshal(b, &d); err != nil {
		t.Fatalf("dashboard JSON: %v", err)
	}
	metric := regexp.MustCompile(`eventline_[a-z0-9_]+`)
	seen := map[string]bool{}
	for _, p := range d.Panels {
		for _, tg := range p.Targets {
			for _, m := range metric.FindAllString(tg.Expr, -1) {
				base := m
				for _, suf := range []string{"_bucket", "_sum", "_count"} {
					if strings.HasSuffix(m, suf) && slices.Contains(exported, strings.TrimSuffix(m, suf)) {
						base = strings.TrimSuffix(m, suf)
					}
				}
				if !slices.Contains(exported, base) {
					t.Errorf("panel %q queries %s, which eventline does not export", p.Title, m)
				}
				seen[base] = true
			}
		}
	}
	for _, want := range []string{"eventline_outbox_backlog", "eventline_consumer_lag", "eventline_consumer_apply_seconds", "eventline_relay_published_total"} {
		if !seen[want] {
			t.Errorf("the dashboard does not show %s", want)
		}
	}
}
