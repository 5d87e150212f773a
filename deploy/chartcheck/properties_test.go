package chartcheck

import (
	"fmt"
	"go/ast"
	"go/parser"
	"go/token"
	"maps"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"

	kedav1alpha1 "github.com/kedacore/keda/v2/apis/keda/v1alpha1"
	"helm.sh/helm/v4/pkg/chart/common/util"
	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/apimachinery/pkg/util/intstr"
	"sigs.k8s.io/yaml"
)

const (
	metricsPort = 9464
	relayName   = releaseName + "-eventline-relay"
	// The relay's ShutdownTimeout (relay.Config's default): its grace
	// period must outlast it.
	relayShutdownSeconds = 30
)

// The secrets' values keys (secret.keys.*) and the variable each one's
// file goes to; postgresCA has none (the connection string names the file).
var secretVar = map[string]string{
	"databaseURL":                     "DATABASE_URL_FILE",
	"kafkaSaslPassword":               "KAFKA_SASL_PASSWORD_FILE",
	"kafkaSaslOAuthToken":             "KAFKA_SASL_OAUTH_TOKEN_FILE",
	"kafkaTLSCA":                      "KAFKA_TLS_CA_FILE",
	"kafkaTLSCert":                    "KAFKA_TLS_CERT_FILE",
	"kafkaTLSKey":                     "KAFKA_TLS_KEY_FILE",
	"schemaRegistryBasicAuthUserInfo": "SCHEMA_REGISTRY_BASIC_AUTH_USER_INFO_FILE",
	"schemaRegistryBearerToken":       "SCHEMA_REGISTRY_BEARER_TOKEN_FILE",
	"schemaRegistryCA":                "SCHEMA_REGISTRY_CA_FILE",
	"schemaRegistryCert":              "SCHEMA_REGISTRY_CERT_FILE",
	"schemaRegistryKey":               "SCHEMA_REGISTRY_KEY_FILE",
	"postgresCA":                      "",
}

// Variables that hold a secret's value: none may be set in a pod.
var secretValueVars = []string{
	"DATABASE_URL", "KAFKA_SASL_PASSWORD", "KAFKA_SASL_OAUTH_TOKEN", "SCHEMA_REGISTRY_BASIC_AUTH_USER_INFO",
	"SCHEMA_REGISTRY_BEARER_TOKEN", "PGPASSWORD", "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN", "EVENTLINE_DEV_REGISTRY_USER_INFO",
}

// The trigger metadata keys KEDA v2.20 reads (the keda:"name=…,
// order=triggerMetadata" tags of pkg/scalers/prometheus_scaler.go and
// kafka_scaler.go). Trigger metadata is a map in KEDA's types, so strict
// decoding cannot catch a misspelt key there; this list does.
var kedaMetadataKeys = map[string][]string{
	"prometheus": {"serverAddress", "query", "queryParameters", "threshold", "activationThreshold", "namespace",
		"customHeaders", "ignoreNullValues", "unsafeSsl", "awsRegion", "timeout", "identityOwner"},
	"kafka": {"bootstrapServers", "consumerGroup", "topic", "partitionLimitation", "lagThreshold", "activationLagThreshold",
		"offsetResetPolicy", "allowIdleConsumers", "excludePersistentLag", "scaleToZeroOnInvalidOffset",
		"limitToPartitionsWithLag", "ensureEvenDistributionOfPartitions", "version", "tls", "unsafeSsl", "sasl",
		"saslTokenProvider", "awsRegion"},
}

// The authentication parameters KEDA's Kafka scaler reads (order=authParams).
var kedaKafkaAuthParams = []string{"sasl", "tls", "username", "password", "ca", "cert", "key", "keyPassword"}

// coalesced is what the templates see: the chart's values.yaml under vals
// (Helm's own coalescing).
func coalesced(t *testing.T, vals map[string]any) map[string]any {
	t.Helper()
	ch, err := loadChart()
	if err != nil {
		t.Fatal(err)
	}
	v, err := util.CoalesceValues(ch, vals)
	if err != nil {
		t.Fatal(err)
	}
	return v
}

// lookup walks a values map: lookup(v, "relay", "mode").
func lookup(v map[string]any, path ...string) any {
	var cur any = v
	for _, p := range path {
		m, ok := cur.(map[string]any)
		if !ok {
			return nil
		}
		cur = m[p]
	}
	return cur
}

func str(v any) string {
	if v == nil {
		return ""
	}
	return fmt.Sprint(v)
}

func boolean(v any) bool { b, _ := v.(bool); return b }

func number(v any) int {
	switch n := v.(type) {
	case float64:
		return int(n)
	case int64:
		return int(n)
	case int:
		return n
	case string:
		i, _ := strconv.Atoi(n)
		return i
	}
	return 0
}

// overlay lays src over dst, map by map (what the chart's eventline.overlay does).
func overlay(dst, src map[string]any) map[string]any {
	out := maps.Clone(dst)
	for k, v := range src {
		if sm, ok := v.(map[string]any); ok {
			if dm, ok := out[k].(map[string]any); ok {
				out[k] = overlay(dm, sm)
				continue
			}
		}
		out[k] = v
	}
	return out
}

// consumer is one entry of `consumers`, laid over consumerDefaults.
type consumer struct {
	raw         map[string]any
	name, group string
	topics      []string
	partitions  int
	secretName  string
	secretKeys  map[string]string // values key -> the Secret's key
	autoscaling map[string]any
	env         []string // the names the values set
}

func consumersOf(t *testing.T, v map[string]any) []consumer {
	t.Helper()
	var out []consumer
	list, _ := v["consumers"].([]any)
	defaults, _ := v["consumerDefaults"].(map[string]any)
	for _, e := range list {
		raw := overlay(defaults, e.(map[string]any))
		c := consumer{raw: raw, name: str(raw["name"]), group: str(raw["group"]), partitions: number(raw["sourcePartitions"])}
		for _, tp := range raw["sourceTopics"].([]any) {
			c.topics = append(c.topics, str(tp))
		}
		c.secretName, c.secretKeys = secretOf(v, lookup(raw, "secret"))
		c.autoscaling, _ = raw["autoscaling"].(map[string]any)
		for _, ev := range asList(raw["env"]) {
			c.env = append(c.env, str(ev.(map[string]any)["name"]))
		}
		out = append(out, c)
	}
	return out
}

func asList(v any) []any { l, _ := v.([]any); return l }

// secretOf is the Secret a pod reads and its keys in use, from secret and a
// consumer's override.
func secretOf(v map[string]any, override any) (string, map[string]string) {
	ov, _ := override.(map[string]any)
	keys := map[string]any{}
	if k, ok := lookup(v, "secret", "keys").(map[string]any); ok {
		keys = k
	}
	if k, ok := ov["keys"].(map[string]any); ok {
		keys = overlay(keys, k)
	}
	name := str(lookup(v, "secret", "existingSecret"))
	if boolean(lookup(v, "secret", "create")) {
		name = releaseName + "-eventline-secrets"
	}
	if s := str(ov["existingSecret"]); s != "" {
		name = s
	}
	used := map[string]string{}
	for k, key := range keys {
		if s := str(key); s != "" {
			used[k] = s
		}
	}
	return name, used
}

// checkRelease asserts the properties every rendered release has; the
// values are the ones it was rendered with.
func checkRelease(t *testing.T, vals map[string]any, o *objects) {
	t.Helper()
	v := coalesced(t, vals)
	consumers := consumersOf(t, v)
	relayOn := boolean(lookup(v, "relay", "enabled"))

	want := len(consumers)
	if relayOn {
		want++
	}
	if len(o.deployments) != want {
		t.Fatalf("%d Deployments, want %d", len(o.deployments), want)
	}
	for _, d := range o.deployments {
		checkPod(t, v, d)
	}
	checkPDBs(t, v, o)
	checkServices(t, v, o, consumers, relayOn)
	if relayOn {
		checkRelay(t, v, o)
	}
	for _, c := range consumers {
		checkConsumer(t, o, c)
	}
	checkScaling(t, v, o, consumers)
}

// checkPod: security, probes, grace, and secrets reaching the container
// only as mounted files.
func checkPod(t *testing.T, v map[string]any, d *appsv1.Deployment) {
	t.Helper()
	pod := d.Spec.Template.Spec
	at := "Deployment " + d.Name

	sel, err := metav1.LabelSelectorAsSelector(d.Spec.Selector)
	if err != nil || !sel.Matches(labels.Set(d.Spec.Template.Labels)) {
		t.Errorf("%s: selector %v does not match its pod labels %v (%v)", at, d.Spec.Selector, d.Spec.Template.Labels, err)
	}

	// Security: non-root, no privilege escalation, read-only root, no
	// capabilities, RuntimeDefault seccomp, no service account token.
	psc := pod.SecurityContext
	if psc == nil || psc.RunAsNonRoot == nil || !*psc.RunAsNonRoot || psc.RunAsUser == nil || *psc.RunAsUser == 0 {
		t.Errorf("%s: the pod may run as root: %+v", at, psc)
	}
	if psc == nil || psc.SeccompProfile == nil || psc.SeccompProfile.Type != corev1.SeccompProfileTypeRuntimeDefault {
		t.Errorf("%s: no RuntimeDefault seccomp profile", at)
	}
	if pod.HostNetwork || pod.HostPID || pod.HostIPC {
		t.Errorf("%s: shares a host namespace", at)
	}
	if pod.AutomountServiceAccountToken == nil || *pod.AutomountServiceAccountToken {
		t.Errorf("%s: mounts a service account token it does not use", at)
	}
	if pod.TerminationGracePeriodSeconds == nil || *pod.TerminationGracePeriodSeconds < 30 {
		t.Errorf("%s: terminationGracePeriodSeconds %v, want at least 30", at, pod.TerminationGracePeriodSeconds)
	}
	if len(pod.Containers) != 1 || len(pod.InitContainers) != 0 {
		t.Fatalf("%s: %d containers, %d init containers; want one container", at, len(pod.Containers), len(pod.InitContainers))
	}
	c := pod.Containers[0]
	sc := c.SecurityContext
	if sc == nil || sc.AllowPrivilegeEscalation == nil || *sc.AllowPrivilegeEscalation ||
		sc.ReadOnlyRootFilesystem == nil || !*sc.ReadOnlyRootFilesystem || (sc.Privileged != nil && *sc.Privileged) ||
		sc.Capabilities == nil || !slices.Contains(sc.Capabilities.Drop, "ALL") || len(sc.Capabilities.Add) > 0 ||
		(sc.RunAsUser != nil && *sc.RunAsUser == 0) {
		t.Errorf("%s: container security context %+v: want no privilege escalation, a read-only root, ALL capabilities dropped", at, sc)
	}
	if c.Resources.Requests.Memory().IsZero() || c.Resources.Limits.Memory().IsZero() {
		t.Errorf("%s: no memory request or limit", at)
	}

	// The metrics port, its variable and the probes on it.
	var port *corev1.ContainerPort
	for i := range c.Ports {
		if c.Ports[i].Name == "metrics" {
			port = &c.Ports[i]
		}
	}
	if port == nil || port.ContainerPort != metricsPort {
		t.Errorf("%s: no container port metrics=%d: %+v", at, metricsPort, c.Ports)
	}
	env := envOf(t, at, c)
	if env["EVENTLINE_METRICS_ADDR"].Value != fmt.Sprintf(":%d", metricsPort) {
		t.Errorf("%s: EVENTLINE_METRICS_ADDR=%q, want :%d", at, env["EVENTLINE_METRICS_ADDR"].Value, metricsPort)
	}
	for _, p := range []struct {
		name  string
		probe *corev1.Probe
		path  string
	}{{"liveness", c.LivenessProbe, "/healthz"}, {"readiness", c.ReadinessProbe, "/readyz"}} {
		if p.probe == nil || p.probe.HTTPGet == nil {
			t.Errorf("%s: no HTTP %s probe", at, p.name)
			continue
		}
		if p.probe.HTTPGet.Path != p.path || containerPort(c, p.probe.HTTPGet.Port) != metricsPort {
			t.Errorf("%s: %s probe GET %s on port %s, want %s on %d", at, p.name, p.probe.HTTPGet.Path, p.probe.HTTPGet.Port.String(), p.path, metricsPort)
		}
	}
	if d.Spec.Template.Annotations["prometheus.io/scrape"] != "true" || d.Spec.Template.Annotations["prometheus.io/port"] != strconv.Itoa(metricsPort) {
		t.Errorf("%s: no Prometheus scrape annotations: %v", at, d.Spec.Template.Annotations)
	}

	checkSecretFiles(t, v, d, c, env)
}

// containerPort resolves a probe's or a Service's target port in c (0: none).
func containerPort(c corev1.Container, p intstr.IntOrString) int32 {
	if p.Type == intstr.Int {
		for _, cp := range c.Ports {
			if cp.ContainerPort == p.IntVal {
				return cp.ContainerPort
			}
		}
		return 0
	}
	for _, cp := range c.Ports {
		if cp.Name == p.StrVal {
			return cp.ContainerPort
		}
	}
	return 0
}

// envOf indexes the container's variables, refusing duplicates.
func envOf(t *testing.T, at string, c corev1.Container) map[string]corev1.EnvVar {
	t.Helper()
	env := map[string]corev1.EnvVar{}
	for _, e := range c.Env {
		if _, dup := env[e.Name]; dup {
			t.Errorf("%s: %s set twice", at, e.Name)
		}
		env[e.Name] = e
	}
	return env
}

// checkSecretFiles: every secret reaches the container as a file of the
// read-only Secret volume, named by its <VAR>_FILE variable; no variable
// holds a secret, none is read from a Secret, no argument carries one.
func checkSecretFiles(t *testing.T, v map[string]any, d *appsv1.Deployment, c corev1.Container, env map[string]corev1.EnvVar) {
	t.Helper()
	at := "Deployment " + d.Name
	mountPath := str(lookup(v, "secret", "mountPath"))
	wantSecret, wantKeys := secretOf(v, nil)
	for _, cons := range consumersOf(t, v) {
		if d.Name == releaseName+"-eventline-"+cons.name {
			wantSecret, wantKeys = cons.secretName, cons.secretKeys
		}
	}

	for _, e := range c.Env {
		if e.ValueFrom != nil && e.ValueFrom.SecretKeyRef != nil {
			t.Errorf("%s: %s comes from a secretKeyRef: a secret in a variable", at, e.Name)
		}
		if slices.Contains(secretValueVars, e.Name) {
			t.Errorf("%s: %s is set: a secret's value in a variable", at, e.Name)
		}
	}
	for _, ef := range c.EnvFrom {
		t.Errorf("%s: envFrom %+v: variables from a Secret or ConfigMap wholesale", at, ef)
	}
	for _, a := range append(slices.Clone(c.Command), c.Args...) {
		if strings.Contains(a, "--database-url") || strings.Contains(strings.ToLower(a), "password") {
			t.Errorf("%s: argument %q may carry a secret", at, a)
		}
	}

	// The Secret volume: exactly the keys in use, read-only.
	var items map[string]string
	for _, vol := range d.Spec.Template.Spec.Volumes {
		if vol.Projected != nil {
			t.Errorf("%s: projected volume %s (secrets come from the one Secret volume)", at, vol.Name)
		}
		if vol.Secret == nil {
			continue
		}
		if items != nil {
			t.Errorf("%s: more than one Secret volume", at)
		}
		if vol.Secret.SecretName != wantSecret {
			t.Errorf("%s: Secret volume reads %q, want %q", at, vol.Secret.SecretName, wantSecret)
		}
		if vol.Secret.DefaultMode == nil || *vol.Secret.DefaultMode&0o007 != 0 {
			t.Errorf("%s: secret files readable by others: mode %v", at, vol.Secret.DefaultMode)
		}
		items = map[string]string{}
		for _, it := range vol.Secret.Items {
			items[it.Key] = it.Path
		}
		mounted := false
		for _, m := range c.VolumeMounts {
			if m.Name == vol.Name {
				mounted = m.MountPath == mountPath && m.ReadOnly
			}
		}
		if !mounted {
			t.Errorf("%s: the Secret volume is not mounted read-only at %s", at, mountPath)
		}
	}
	if len(items) != len(wantKeys) {
		t.Errorf("%s: Secret volume items %v, want the keys in use %v", at, items, wantKeys)
	}
	for name, key := range wantKeys {
		path, ok := items[key]
		if !ok {
			t.Errorf("%s: secret.keys.%s (%s) is not in the Secret volume", at, name, key)
			continue
		}
		if vr := secretVar[name]; vr != "" {
			if got := env[vr].Value; got != mountPath+"/"+path {
				t.Errorf("%s: %s=%q, want the mounted file %s/%s", at, vr, got, mountPath, path)
			}
		}
	}
	// And no *_FILE variable points anywhere but at a mounted secret file
	// (or the pipeline file for the relay).
	for _, e := range c.Env {
		if !strings.HasSuffix(e.Name, "_FILE") {
			continue
		}
		rel, ok := strings.CutPrefix(e.Value, mountPath+"/")
		if !ok || !slices.Contains(slices.Collect(maps.Values(items)), rel) {
			t.Errorf("%s: %s=%q is not a file of the Secret volume", at, e.Name, e.Value)
		}
	}
}

// checkPDBs: every Deployment has one budget whose selector matches its
// pods and no other Deployment's.
func checkPDBs(t *testing.T, v map[string]any, o *objects) {
	t.Helper()
	guarded := map[string]int{}
	for _, p := range o.pdbs {
		sel, err := metav1.LabelSelectorAsSelector(p.Spec.Selector)
		if err != nil || sel.Empty() {
			t.Errorf("PodDisruptionBudget %s: selector %v (%v)", p.Name, p.Spec.Selector, err)
			continue
		}
		var matched []string
		for _, d := range o.deployments {
			if sel.Matches(labels.Set(d.Spec.Template.Labels)) {
				matched = append(matched, d.Name)
			}
		}
		if len(matched) != 1 || matched[0] != p.Name {
			t.Errorf("PodDisruptionBudget %s selects the pods of %v, want exactly Deployment %s", p.Name, matched, p.Name)
			continue
		}
		guarded[p.Name]++
		if p.Name == relayName {
			if p.Spec.MinAvailable == nil || p.Spec.MinAvailable.IntValue() != 1 || p.Spec.MaxUnavailable != nil {
				t.Errorf("relay budget: minAvailable %v maxUnavailable %v, want minAvailable 1", p.Spec.MinAvailable, p.Spec.MaxUnavailable)
			}
		} else if p.Spec.MaxUnavailable == nil || p.Spec.MaxUnavailable.IntValue() != 1 || p.Spec.MinAvailable != nil {
			t.Errorf("consumer budget %s: maxUnavailable %v minAvailable %v, want maxUnavailable 1", p.Name, p.Spec.MaxUnavailable, p.Spec.MinAvailable)
		}
	}
	relayPDB := boolean(lookup(v, "relay", "podDisruptionBudget", "enabled"))
	for _, d := range o.deployments {
		want := relayPDB
		if d.Name != relayName {
			for _, c := range consumersOf(t, v) {
				if d.Name == releaseName+"-eventline-"+c.name {
					want = boolean(lookup(c.raw, "podDisruptionBudget", "enabled"))
				}
			}
		}
		if got := guarded[d.Name]; (want && got != 1) || (!want && got != 0) {
			t.Errorf("Deployment %s: %d disruption budgets, want %v", d.Name, got, want)
		}
	}
}

// checkServices: the metrics Services select the pods they name, on a port
// named metrics that every selected pod serves.
func checkServices(t *testing.T, v map[string]any, o *objects, consumers []consumer, relayOn bool) {
	t.Helper()
	want := map[string][]string{}
	if boolean(lookup(v, "metrics", "service", "enabled")) {
		if relayOn {
			want[relayName+"-metrics"] = []string{relayName}
		}
		if len(consumers) > 0 {
			var names []string
			for _, c := range consumers {
				names = append(names, releaseName+"-eventline-"+c.name)
			}
			want[releaseName+"-eventline-consumers-metrics"] = names
		}
	}
	if len(o.services) != len(want) {
		t.Errorf("%d Services, want %d (%v)", len(o.services), len(want), slices.Collect(maps.Keys(want)))
	}
	for _, s := range o.services {
		pods, ok := want[s.Name]
		if !ok {
			t.Errorf("unexpected Service %s", s.Name)
			continue
		}
		if len(s.Spec.Ports) != 1 || s.Spec.Ports[0].Name != "metrics" || s.Spec.Ports[0].Port != metricsPort {
			t.Errorf("Service %s: ports %+v, want metrics=%d", s.Name, s.Spec.Ports, metricsPort)
			continue
		}
		sel := labels.SelectorFromSet(s.Spec.Selector)
		var matched []string
		for _, d := range o.deployments {
			if len(s.Spec.Selector) > 0 && sel.Matches(labels.Set(d.Spec.Template.Labels)) {
				matched = append(matched, d.Name)
				if containerPort(d.Spec.Template.Spec.Containers[0], s.Spec.Ports[0].TargetPort) != metricsPort {
					t.Errorf("Service %s: target port %s is not %d in %s", s.Name, s.Spec.Ports[0].TargetPort.String(), metricsPort, d.Name)
				}
			}
		}
		slices.Sort(matched)
		slices.Sort(pods)
		if !slices.Equal(matched, pods) {
			t.Errorf("Service %s selects %v, want %v", s.Name, matched, pods)
		}
	}
}

func checkRelay(t *testing.T, v map[string]any, o *objects) {
	t.Helper()
	d := o.deployment(relayName)
	if d == nil {
		t.Fatalf("no Deployment %s", relayName)
	}
	if d.Spec.Replicas == nil || *d.Spec.Replicas != 2 {
		t.Errorf("relay replicas %v, want 2 (leader and hot standby)", d.Spec.Replicas)
	}
	checkSurge(t, d)
	pod := d.Spec.Template.Spec
	if *pod.TerminationGracePeriodSeconds <= relayShutdownSeconds {
		t.Errorf("relay grace %d s does not outlast its %d s ShutdownTimeout", *pod.TerminationGracePeriodSeconds, relayShutdownSeconds)
	}
	c := pod.Containers[0]
	if len(c.Args) == 0 || c.Args[0] != "relay" || len(c.Command) != 0 {
		t.Errorf("relay: command %v args %v, want the image's entrypoint with args [relay …]", c.Command, c.Args)
	}
	if want := fmt.Sprintf("%s:%s", lookup(v, "relay", "image", "repository"), lookup(v, "relay", "image", "tag")); c.Image != want {
		t.Errorf("relay image %q, want %q", c.Image, want)
	}
	env := envOf(t, "relay", c)
	mode := str(lookup(v, "relay", "mode"))
	if env["EVENTLINE_MODE"].Value != mode {
		t.Errorf("EVENTLINE_MODE=%q, want %q", env["EVENTLINE_MODE"].Value, mode)
	}
	if slot, ok := env["EVENTLINE_SLOT"]; (mode == "logical") != ok || (ok && slot.Value != str(lookup(v, "relay", "slot"))) {
		t.Errorf("EVENTLINE_SLOT=%q in %s mode, relay.slot %q", slot.Value, mode, lookup(v, "relay", "slot"))
	}
	if env["EVENTLINE_SCHEMA"].Value != str(lookup(v, "relay", "schema")) {
		t.Errorf("EVENTLINE_SCHEMA=%q", env["EVENTLINE_SCHEMA"].Value)
	}
	for _, name := range []string{"KAFKA_BROKERS", "SCHEMA_REGISTRY_URL", "DATABASE_URL_FILE"} {
		if env[name].Value == "" {
			t.Errorf("relay: %s not set", name)
		}
	}

	// EVENTLINE_CONFIG names a file of a mounted ConfigMap that holds the
	// pipeline.
	cfg := env["EVENTLINE_CONFIG"].Value
	found := false
	for _, m := range c.VolumeMounts {
		rel, ok := strings.CutPrefix(cfg, m.MountPath+"/")
		if !ok {
			continue
		}
		for _, vol := range pod.Volumes {
			if vol.Name != m.Name || vol.ConfigMap == nil {
				continue
			}
			for _, it := range vol.ConfigMap.Items {
				if it.Path == rel {
					found = true
					if cm := str(lookup(v, "relay", "pipeline", "existingConfigMap")); cm != "" {
						if vol.ConfigMap.Name != cm {
							t.Errorf("pipeline from ConfigMap %s, want %s", vol.ConfigMap.Name, cm)
						}
					} else if !configMapHas(o, vol.ConfigMap.Name, it.Key, str(lookup(v, "relay", "pipeline", "content"))) {
						t.Errorf("ConfigMap %s has no key %s holding relay.pipeline.content", vol.ConfigMap.Name, it.Key)
					}
				}
			}
		}
	}
	if !found {
		t.Errorf("EVENTLINE_CONFIG=%q is not a file of a mounted ConfigMap", cfg)
	}

	// The chart sets only variables the eventline binary reads.
	read := variablesRead()
	for _, e := range c.Env {
		if !slices.Contains(asStrings(lookup(v, "relay", "extraEnv"), "name"), e.Name) && !read(e.Name) {
			t.Errorf("relay: %s is not a variable eventline reads", e.Name)
		}
	}
}

func asStrings(list any, key string) []string {
	var out []string
	for _, e := range asList(list) {
		if m, ok := e.(map[string]any); ok {
			out = append(out, str(m[key]))
		}
	}
	return out
}

func configMapHas(o *objects, name, key, content string) bool {
	for _, cm := range o.configMaps {
		if cm.Name == name {
			return strings.TrimSpace(cm.Data[key]) == strings.TrimSpace(content)
		}
	}
	return false
}

// checkSurge: RollingUpdate that adds a pod before taking one away.
func checkSurge(t *testing.T, d *appsv1.Deployment) {
	t.Helper()
	s := d.Spec.Strategy
	if s.Type != appsv1.RollingUpdateDeploymentStrategyType || s.RollingUpdate == nil ||
		s.RollingUpdate.MaxSurge == nil || s.RollingUpdate.MaxSurge.IntValue() != 1 ||
		s.RollingUpdate.MaxUnavailable == nil || s.RollingUpdate.MaxUnavailable.IntValue() != 0 {
		t.Errorf("Deployment %s: strategy %+v, want RollingUpdate maxSurge 1 maxUnavailable 0", d.Name, s)
	}
}

func checkConsumer(t *testing.T, o *objects, c consumer) {
	t.Helper()
	name := releaseName + "-eventline-" + c.name
	d := o.deployment(name)
	if d == nil {
		t.Errorf("no Deployment %s for consumer %s", name, c.name)
		return
	}
	checkSurge(t, d)
	ctr := d.Spec.Template.Spec.Containers[0]
	if want := fmt.Sprintf("%s:%s", lookup(c.raw, "image", "repository"), lookup(c.raw, "image", "tag")); ctr.Image != want {
		t.Errorf("%s: image %q, want the team's %q", name, ctr.Image, want)
	}
	if d.Annotations["eventline/group"] != c.group {
		t.Errorf("%s: group annotation %q, want %q", name, d.Annotations["eventline/group"], c.group)
	}
	env := envOf(t, name, ctr)
	if p := env["POD_NAME"]; p.ValueFrom == nil || p.ValueFrom.FieldRef == nil || p.ValueFrom.FieldRef.FieldPath != "metadata.name" {
		t.Errorf("%s: POD_NAME not from the downward API: %+v", name, p)
	}
	if id, static := env["EVENTLINE_INSTANCE_ID"]; static {
		t.Errorf("%s: EVENTLINE_INSTANCE_ID %+v: a Deployment's members must not be static", name, id)
	}
	read := variablesRead()
	for _, e := range ctr.Env {
		if !slices.Contains(c.env, e.Name) && e.Name != "POD_NAME" && e.Name != "EVENTLINE_INSTANCE_ID" && !read(e.Name) {
			t.Errorf("%s: %s is not a variable eventline's packages read", name, e.Name)
		}
	}
	if c.autoscaling != nil && boolean(c.autoscaling["enabled"]) {
		if d.Spec.Replicas != nil {
			t.Errorf("%s: replicas %d beside a ScaledObject: every upgrade would reset what KEDA chose", name, *d.Spec.Replicas)
		}
	} else if d.Spec.Replicas == nil || int(*d.Spec.Replicas) != number(c.raw["replicas"]) {
		t.Errorf("%s: replicas %v, want %v", name, d.Spec.Replicas, c.raw["replicas"])
	}
}

var retryTopic = regexp.MustCompile(`\.(retry\.\d+|dlt)$`)

// checkScaling: one ScaledObject per autoscaled consumer, on its
// Deployment, with the trigger its values ask for.
func checkScaling(t *testing.T, v map[string]any, o *objects, consumers []consumer) {
	t.Helper()
	byName := map[string]*kedav1alpha1.ScaledObject{}
	for _, so := range o.scaled {
		byName[so.Name] = so
	}
	authUsed := map[string]bool{}
	n := 0
	for _, c := range consumers {
		name := releaseName + "-eventline-" + c.name
		so := byName[name]
		if !boolean(c.autoscaling["enabled"]) {
			if so != nil {
				t.Errorf("ScaledObject %s for a consumer without autoscaling", name)
			}
			continue
		}
		n++
		if so == nil {
			t.Errorf("no ScaledObject %s", name)
			continue
		}
		// KEDA's own admission checks that need no cluster.
		if err := kedav1alpha1.ValidateTriggers(so.Spec.Triggers); err != nil {
			t.Errorf("ScaledObject %s: %v", name, err)
		}
		if err := kedav1alpha1.CheckReplicaCountBoundsAreValid(so); err != nil {
			t.Errorf("ScaledObject %s: %v", name, err)
		}
		if err := kedav1alpha1.CheckFallbackValid(so); err != nil {
			t.Errorf("ScaledObject %s: %v", name, err)
		}
		ref := so.Spec.ScaleTargetRef
		d := o.deployment(ref.Name)
		if ref.Kind != "Deployment" || ref.APIVersion != "apps/v1" || ref.Name != name || d == nil {
			t.Errorf("ScaledObject %s scales %+v, want the Deployment %s", name, ref, name)
			continue
		}
		minR, maxR := so.Spec.MinReplicaCount, so.Spec.MaxReplicaCount
		if minR == nil || *minR < 1 || maxR == nil || *maxR < *minR {
			t.Errorf("ScaledObject %s: replicas %v..%v, want at least 1", name, minR, maxR)
			continue
		}
		if parts := partitionsOf(v, c); parts > 0 && int(*maxR) > parts {
			t.Errorf("ScaledObject %s: maxReplicaCount %d above the %d source partitions", name, *maxR, parts)
		}
		if so.Spec.CooldownPeriod == nil || so.Spec.Advanced == nil || so.Spec.Advanced.HorizontalPodAutoscalerConfig == nil ||
			so.Spec.Advanced.HorizontalPodAutoscalerConfig.Behavior == nil || so.Spec.Advanced.HorizontalPodAutoscalerConfig.Behavior.ScaleDown == nil {
			t.Errorf("ScaledObject %s: no cooldown or scale-down behaviour", name)
		}
		trigger := str(c.autoscaling["trigger"])
		for _, tr := range so.Spec.Triggers {
			if tr.Type != trigger {
				t.Errorf("ScaledObject %s: trigger %s, want %s", name, tr.Type, trigger)
				continue
			}
			for k := range tr.Metadata {
				if !slices.Contains(kedaMetadataKeys[tr.Type], k) {
					t.Errorf("ScaledObject %s: %s trigger metadata %q is not a key KEDA reads", name, tr.Type, k)
				}
			}
		}
		ctr := d.Spec.Template.Spec.Containers[0]
		switch trigger {
		case "prometheus":
			if len(so.Spec.Triggers) != 1 {
				t.Errorf("ScaledObject %s: %d triggers, want one", name, len(so.Spec.Triggers))
				continue
			}
			md := so.Spec.Triggers[0].Metadata
			q := md["query"]
			extra := str(lookup(c.autoscaling, "prometheus", "extraMatchers"))
			want := fmt.Sprintf(`max(eventline_consumer_scaling_lag{group=%q})`, c.group)
			if extra != "" {
				want = fmt.Sprintf(`max(eventline_consumer_scaling_lag{group=%q,%s})`, c.group, extra)
			}
			if q != want {
				t.Errorf("ScaledObject %s: query %q, want %q", name, q, want)
			}
			if th, err := strconv.ParseFloat(md["threshold"], 64); err != nil || th <= 0 {
				t.Errorf("ScaledObject %s: threshold %q", name, md["threshold"])
			}
			if md["serverAddress"] == "" {
				t.Errorf("ScaledObject %s: no serverAddress", name)
			}
		case "kafka":
			var topics []string
			for _, tr := range so.Spec.Triggers {
				md := tr.Metadata
				topics = append(topics, md["topic"])
				if retryTopic.MatchString(md["topic"]) {
					t.Errorf("ScaledObject %s: counts the retry or dead-letter topic %s", name, md["topic"])
				}
				if md["consumerGroup"] != c.group || md["offsetResetPolicy"] != "earliest" || md["allowIdleConsumers"] != "false" ||
					md["bootstrapServers"] != str(lookup(v, "kafka", "brokers")) {
					t.Errorf("ScaledObject %s: kafka trigger %v", name, md)
				}
				if lt, err := strconv.Atoi(md["lagThreshold"]); err != nil || lt <= 0 {
					t.Errorf("ScaledObject %s: lagThreshold %q", name, md["lagThreshold"])
				}
				if tr.AuthenticationRef != nil {
					authUsed[tr.AuthenticationRef.Name] = true
					checkTriggerAuth(t, o, tr.AuthenticationRef.Name, d, ctr)
				} else if md["sasl"] != "" {
					t.Errorf("ScaledObject %s: SASL without credentials", name)
				}
			}
			slices.Sort(topics)
			want := slices.Clone(c.topics)
			slices.Sort(want)
			if !slices.Equal(topics, want) {
				t.Errorf("ScaledObject %s: kafka triggers on %v, want one per source topic %v", name, topics, want)
			}
		}
	}
	if len(o.scaled) != n {
		t.Errorf("%d ScaledObjects, want %d", len(o.scaled), n)
	}
	for _, ta := range o.triggerAuth {
		if !authUsed[ta.Name] {
			t.Errorf("TriggerAuthentication %s is not used", ta.Name)
		}
	}
}

// partitionsOf is the source partition count the chart bounds
// maxReplicaCount with: given, or the largest of the source topics in the
// relay's pipeline file when it lists them all.
func partitionsOf(v map[string]any, c consumer) int {
	if c.partitions > 0 {
		return c.partitions
	}
	content := str(lookup(v, "relay", "pipeline", "content"))
	var pipe struct {
		Topics []struct {
			Name       string `json:"name"`
			Partitions int    `json:"partitions"`
		} `json:"topics"`
	}
	if err := yaml.Unmarshal([]byte(content), &pipe); err != nil {
		return 0
	}
	most, found := 0, 0
	for _, tp := range pipe.Topics {
		if slices.Contains(c.topics, tp.Name) && tp.Partitions > 0 {
			found++
			most = max(most, tp.Partitions)
		}
	}
	if found != len(c.topics) {
		return 0
	}
	return most
}

// checkTriggerAuth: KEDA reads the pods' own Secret (keys the pods mount)
// and variables of the scaled container.
func checkTriggerAuth(t *testing.T, o *objects, name string, d *appsv1.Deployment, ctr corev1.Container) {
	t.Helper()
	var ta *kedav1alpha1.TriggerAuthentication
	for _, a := range o.triggerAuth {
		if a.Name == name {
			ta = a
		}
	}
	if ta == nil {
		t.Errorf("no TriggerAuthentication %s", name)
		return
	}
	// KEDA's admission webhook for TriggerAuthentications (no cluster needed).
	if _, err := ta.ValidateCreate(nil); err != nil {
		t.Errorf("TriggerAuthentication %s: KEDA refuses it: %v", name, err)
	}
	var secretName string
	keys := map[string]bool{}
	for _, vol := range d.Spec.Template.Spec.Volumes {
		if vol.Secret != nil {
			secretName = vol.Secret.SecretName
			for _, it := range vol.Secret.Items {
				keys[it.Key] = true
			}
		}
	}
	for _, ref := range ta.Spec.SecretTargetRef {
		if ref.Name != secretName || !keys[ref.Key] || !slices.Contains(kedaKafkaAuthParams, ref.Parameter) {
			t.Errorf("TriggerAuthentication %s: %+v, want a key the pods mount from %s", name, ref, secretName)
		}
	}
	env := map[string]bool{}
	for _, e := range ctr.Env {
		env[e.Name] = e.Value != ""
	}
	for _, e := range ta.Spec.Env {
		if e.ContainerName != ctr.Name || !env[e.Name] || !slices.Contains(kedaKafkaAuthParams, e.Parameter) {
			t.Errorf("TriggerAuthentication %s: %+v, want a plain variable of container %s", name, e, ctr.Name)
		}
	}
}

// variablesRead reports whether eventline's code reads a variable: the
// upper-case string literals of the CLI (internal/cli), its telemetry and
// the connection package, a name NAME_FILE counting when NAME is one
// (connection.Secret's convention). OTEL_* are read by the OpenTelemetry
// SDK itself.
var variablesRead = sync.OnceValue(func() func(string) bool {
	lits := map[string]bool{}
	for _, dir := range []string{"../../internal/cli", "../../internal/telemetry", "../../connection"} {
		files, _ := filepath.Glob(filepath.Join(dir, "*.go"))
		for _, f := range files {
			if strings.HasSuffix(f, "_test.go") {
				continue
			}
			file, err := parser.ParseFile(token.NewFileSet(), f, nil, 0)
			if err != nil {
				panic(err)
			}
			ast.Inspect(file, func(n ast.Node) bool {
				if lit, ok := n.(*ast.BasicLit); ok && lit.Kind == token.STRING {
					if s, err := strconv.Unquote(lit.Value); err == nil && envName.MatchString(s) {
						lits[s] = true
					}
				}
				return true
			})
		}
	}
	if !lits["KAFKA_BROKERS"] || !lits["EVENTLINE_METRICS_ADDR"] || !lits["KAFKA_TLS_CA_FILE"] {
		panic(fmt.Sprintf("the variable scanner found only %d names: it is broken", len(lits)))
	}
	return func(name string) bool {
		return lits[name] || lits[strings.TrimSuffix(name, "_FILE")] || strings.HasPrefix(name, "OTEL_")
	}
})

var envName = regexp.MustCompile(`^[A-Z][A-Z0-9]*(_[A-Z0-9]+)+$`)
