package chartcheck

import (
	"strings"
	"testing"

	"helm.sh/helm/v4/pkg/chart/common"
	"helm.sh/helm/v4/pkg/chart/v2/lint"
	"helm.sh/helm/v4/pkg/chart/v2/lint/support"
	releaseutil "helm.sh/helm/v4/pkg/release/v1/util"
)

// TestValuesSets renders every ci/ values set, decodes every object
// strictly and checks the release's properties (properties_test.go).
func TestValuesSets(t *testing.T) {
	for _, set := range valuesSets {
		t.Run(set, func(t *testing.T) {
			vals := values(t, set)
			checkRelease(t, vals, mustRender(t, vals))
		})
	}
}

// TestValuesSetsCoverTheChart: between them the sets render every kind and
// both triggers, so the properties above are checked on each.
func TestValuesSetsCoverTheChart(t *testing.T) {
	kinds := map[string]int{}
	triggers := map[string]int{}
	for _, set := range valuesSets {
		o := mustRender(t, values(t, set))
		kinds["Deployment"] += len(o.deployments)
		kinds["Service"] += len(o.services)
		kinds["ConfigMap"] += len(o.configMaps)
		kinds["PodDisruptionBudget"] += len(o.pdbs)
		kinds["ScaledObject"] += len(o.scaled)
		kinds["TriggerAuthentication"] += len(o.triggerAuth)
		for _, so := range o.scaled {
			for _, tr := range so.Spec.Triggers {
				triggers[tr.Type]++
			}
		}
	}
	for _, k := range []string{"Deployment", "Service", "ConfigMap", "PodDisruptionBudget", "ScaledObject", "TriggerAuthentication"} {
		if kinds[k] == 0 {
			t.Errorf("no values set renders a %s", k)
		}
	}
	if triggers["prometheus"] == 0 || triggers["kafka"] == 0 {
		t.Errorf("triggers rendered: %v, want both", triggers)
	}
	o := mustRender(t, values(t, "two-consumers"))
	a, b := o.deployment(releaseName+"-eventline-inventory"), o.deployment(releaseName+"-eventline-analytics")
	if a == nil || b == nil || a.Spec.Template.Spec.Containers[0].Image == b.Spec.Template.Spec.Containers[0].Image {
		t.Fatal("two-consumers: want two Deployments of different images")
	}
	if got := b.Spec.Template.Spec.Volumes[0].Secret.SecretName; got != "analytics-secrets" {
		t.Errorf("analytics reads Secret %q, want its own analytics-secrets", got)
	}
}

// TestLint runs Helm's linter (chart file, values against the schema,
// templates, dependencies) with every values set; warnings fail too.
func TestLint(t *testing.T) {
	kube := &common.KubeVersion{Version: "v1.31.0", Major: "1", Minor: "31"}
	for _, set := range valuesSets {
		res := lint.RunAll(chartDir, values(t, set), namespace, lint.WithKubeVersion(kube))
		for _, m := range res.Messages {
			if m.Severity >= support.WarningSev {
				t.Errorf("%s: %s", set, m.Error())
			}
		}
	}
}

// TestDecoderRefusesMisspeltFields proves the strict decoding above: a
// rendered object decodes, and the same object with one field misspelt,
// in the wrong case, duplicated or of an unknown kind does not.
func TestDecoderRefusesMisspeltFields(t *testing.T) {
	manifests := map[string]string{}
	for _, set := range []string{"default", "keda-kafka", "keda-prometheus"} {
		m, err := render(values(t, set))
		if err != nil {
			t.Fatal(err)
		}
		for _, doc := range releaseutil.SplitManifests(m) {
			kind := ""
			for _, line := range strings.Split(doc, "\n") {
				if k, ok := strings.CutPrefix(line, "kind: "); ok {
					kind = k
				}
			}
			if _, seen := manifests[kind]; !seen && strings.Contains(doc, "name: shop-eventline-") {
				manifests[kind] = doc
			}
		}
	}
	cases := []struct {
		kind, from, to, want string
	}{
		{"Deployment", "terminationGracePeriodSeconds:", "terminationGracePeriodSecond:", `unknown field "spec.template.spec.terminationGracePeriodSecond"`},
		{"Deployment", "readinessProbe:", "readynessProbe:", `unknown field "spec.template.spec.containers[0].readynessProbe"`},
		// encoding/json would take this one; Kubernetes' decoder does not.
		{"Deployment", "\n  replicas:", "\n  Replicas:", `unknown field "spec.Replicas"`},
		{"Deployment", "\n  replicas: 2", "\n  replicas: 2\n  replicas: 3", `key "replicas" already set in map`},
		{"Deployment", "kind: Deployment", "kind: Deploymnet", `no kind "Deploymnet"`},
		{"Service", "targetPort:", "targetport:", `unknown field "spec.ports[0].targetport"`},
		{"PodDisruptionBudget", "unhealthyPodEvictionPolicy:", "unhealthyPodEvictionPolicies:", `unknown field "spec.unhealthyPodEvictionPolicies"`},
		{"ConfigMap", "\ndata:", "\ndatas:", `unknown field "datas"`},
		{"ScaledObject", "maxReplicaCount:", "maxReplicas:", `unknown field "spec.maxReplicas"`},
		{"ScaledObject", "scaleTargetRef:", "scaleTargetReference:", `unknown field "spec.scaleTargetReference"`},
		{"TriggerAuthentication", "secretTargetRef:", "secretTargetRefs:", `unknown field "spec.secretTargetRefs"`},
		// A number where the type wants a string (KEDA's metadata values).
		{"ScaledObject", `lagThreshold: "2000"`, `lagThreshold: 2000`, `cannot unmarshal number`},
	}
	for _, c := range cases {
		doc, ok := manifests[c.kind]
		if !ok {
			t.Fatalf("no rendered %s", c.kind)
		}
		if _, err := decode(doc); err != nil {
			t.Fatalf("the rendered %s does not decode: %v", c.kind, err)
		}
		if !strings.Contains(doc, c.from) {
			t.Fatalf("the rendered %s has no %q to misspell", c.kind, c.from)
		}
		_, err := decode(strings.Replace(doc, c.from, c.to, 1))
		if err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("%s with %q → %q: error %v, want %q", c.kind, c.from, c.to, err, c.want)
		}
	}
}

// TestRefusedValues: a missing or contradictory value fails the install
// with a message naming it, before anything reaches a cluster.
func TestRefusedValues(t *testing.T) {
	cases := []struct {
		set       string
		overrides []string
		want      string
	}{
		{"default", []string{"secret.existingSecret="}, "secret.existingSecret is required"},
		{"default", []string{"secret.keys.databaseURL="}, "secret.keys.databaseURL is required"},
		{"default", []string{"secret.create=true"}, "secret.create and secret.existingSecret exclude each other"},
		{"default", []string{"secret.existingSecret=", "secret.create=true"}, "secret.create needs secret.data"},
		{"default", []string{"kafka.brokers="}, "kafka.brokers is required"},
		{"default", []string{"schemaRegistry.url="}, "schemaRegistry.url is required"},
		{"default", []string{"relay.image.tag="}, "relay.image.tag is required"},
		{"default", []string{"relay.pipeline.content="}, "relay.pipeline.content or relay.pipeline.existingConfigMap is required"},
		{"default", []string{"relay.mode=table"}, "poll"},
		{"default", []string{"relay.replicas=1"}, "blocks every node drain"},
		{"default", []string{"relay.slot=s1"}, "relay.slot and relay.allowPublicEmit are for relay.mode logical"},
		{"default", []string{"relay.extraArgs[0]=--database-url=postgres://u:p@h/db"}, "--database-url would show the connection string"},
		{"logical", []string{"relay.extraArgs[0]=--recreate-slot"}, "--recreate-slot skips the events"},
		{"default", []string{"relay.extraEnv[0].name=PGPASSWORD", "relay.extraEnv[0].value=x"}, "PGPASSWORD holds a secret"},
		{"default", []string{"relay.extraEnv[0].name=DB", "relay.extraEnv[0].valueFrom.secretKeyRef.name=s", "relay.extraEnv[0].valueFrom.secretKeyRef.key=k"}, "secretKeyRef puts a secret in a variable"},
		{"default", []string{"relay.extraEnv[0].name=KAFKA_BROKERS", "relay.extraEnv[0].value=x:9092"}, "KAFKA_BROKERS is set twice"},
		// The values schema: a misspelt key is refused, not ignored.
		{"default", []string{"relay.replica=3"}, "'replica' not allowed"},
		{"default", []string{"consumers[0].autoscale.enabled=true"}, "'autoscale' not allowed"},
		{"default", []string{"kafka.sasl.mechanism=PLAIN", "kafka.sasl.username=u"}, "needs kafka.sasl.username and secret.keys.kafkaSaslPassword"},
		{"default", []string{"kafka.sasl.mechanism=OAUTHBEARER"}, "needs secret.keys.kafkaSaslOAuthToken"},
		{"default", []string{"kafka.sasl.mechanism=AWS_MSK_IAM"}, "AWS_MSK_IAM"},
		{"default", []string{"secret.keys.kafkaTLSCert=c.pem"}, "kafkaTLSCert and kafkaTLSKey go together"},
		{"default", []string{"secret.keys.schemaRegistryCA=ca.pem"}, "use https://"},
		{"default", []string{"consumers[0].group="}, "group is required"},
		{"default", []string{"consumers[0].image.tag="}, "image.repository and .image.tag are required"},
		{"default", []string{"consumers[0].name=Billing"}, "must be a DNS label"},
		{"default", []string{"consumers[0].name=relay"}, "taken by the chart's own objects"},
		{"two-consumers", []string{"consumers[1].name=inventory"}, "name is used twice"},
		{"default", []string{"consumers[0].terminationGracePeriodSeconds=20"}, "must be at least 30"},
		{"default", []string{"consumers[0].env[0].name=DATABASE_URL", "consumers[0].env[0].value=postgres://x"}, "DATABASE_URL holds a secret"},
		{"keda-kafka", []string{"consumers[0].autoscaling.maxReplicaCount=13"}, "maxReplicaCount (13) exceeds the source partitions (12)"},
		// The partitions from the relay's pipeline file (6).
		{"keda-prometheus", []string{"consumers[0].autoscaling.maxReplicaCount=7"}, "maxReplicaCount (7) exceeds the source partitions (6)"},
		{"keda-prometheus", []string{"consumers[0].autoscaling.minReplicaCount=0"}, "minReplicaCount must be at least 1"},
		{"keda-prometheus", []string{"consumerDefaults.autoscaling.prometheus.serverAddress="}, "prometheus.serverAddress is required"},
		{"keda-kafka", []string{"kafka.sasl.mechanism=OAUTHBEARER", "secret.keys.kafkaSaslOAuthToken=token"}, "takes no static OAUTHBEARER token"},
		{"keda-kafka", []string{"consumers[0].autoscaling.trigger=cpu"}, "prometheus"},
	}
	for _, c := range cases {
		_, err := render(values(t, c.set, c.overrides...))
		if err == nil {
			t.Errorf("%s %v: rendered, want an error containing %q", c.set, c.overrides, c.want)
			continue
		}
		if !strings.Contains(err.Error(), c.want) {
			t.Errorf("%s %v: %v\nwant it to contain %q", c.set, c.overrides, err, c.want)
		}
	}
}

// TestSecretValuesStayInTheSecret: with secret.create, the values appear in
// the Secret and in no other object (no variable, argument, ConfigMap or
// annotation).
func TestSecretValuesStayInTheSecret(t *testing.T) {
	vals := values(t, "logical",
		"secret.existingSecret=", "secret.create=true",
		"secret.data.database-url=postgres://relay:sentinel-db-7f3a@db:5432/orders?sslmode=verify-full",
		"secret.data.kafka-password=sentinel-kafka-91c2",
		"secret.data.kafka-ca\\.pem=sentinel-ca-0d4e",
		"secret.data.registry-user-info=user:sentinel-registry-5b8d",
		"secret.data.postgres-ca\\.pem=sentinel-pgca-22e1",
	)
	m, err := render(vals)
	if err != nil {
		t.Fatal(err)
	}
	o, err := split(m)
	if err != nil {
		t.Fatal(err)
	}
	checkRelease(t, vals, o)
	if len(o.secrets) != 1 || o.secrets[0].Name != releaseName+"-eventline-secrets" || len(o.secrets[0].StringData) != 5 {
		t.Fatalf("Secrets %+v, want one with the five keys", o.secrets)
	}
	for _, doc := range releaseutil.SplitManifests(m) {
		if strings.Contains(doc, "sentinel-") && !strings.Contains(doc, "\nkind: Secret\n") {
			t.Errorf("a secret value outside the Secret:\n%s", doc)
		}
	}
	// A key the Secret lacks is refused.
	if _, err := render(values(t, "logical", "secret.existingSecret=", "secret.create=true", "secret.data.database-url=x")); err == nil ||
		!strings.Contains(err.Error(), `secret.data has no key "kafka-password"`) {
		t.Errorf("a missing key: %v", err)
	}
}

// TestNoStaticMembership: the chart never gives a consumer an instance id
// (its Deployments' pod names change at every restart), and a values file
// asking for one is refused by the schema.
func TestNoStaticMembership(t *testing.T) {
	vals := values(t, "default")
	o := mustRender(t, vals)
	checkRelease(t, vals, o)
	for _, e := range o.deployment(releaseName + "-eventline-billing").Spec.Template.Spec.Containers[0].Env {
		if e.Name == "EVENTLINE_INSTANCE_ID" {
			t.Errorf("EVENTLINE_INSTANCE_ID=%q rendered", e.Value)
		}
	}
	if _, err := render(values(t, "default", "consumers[0].staticMembership=true")); err == nil {
		t.Error("staticMembership accepted")
	}
}

// TestConsumerValuesOverDefaults: a consumer's false or 0 wins over a
// default of true (Sprig's merge would lose it), and a consumer's map is
// merged key by key.
func TestConsumerValuesOverDefaults(t *testing.T) {
	vals := values(t, "two-consumers", "consumers[1].podDisruptionBudget.enabled=false",
		"consumerDefaults.autoscaling.kafka.limitToPartitionsWithLag=true")
	o := mustRender(t, vals)
	checkRelease(t, vals, o)
	if len(o.pdbs) != 2 { // the relay's and inventory's
		t.Errorf("%d disruption budgets, want 2", len(o.pdbs))
	}
	vals = values(t, "keda-kafka", "consumers[0].autoscaling.kafka.limitToPartitionsWithLag=false")
	o = mustRender(t, vals)
	checkRelease(t, vals, o)
	for _, tr := range o.scaled[0].Spec.Triggers {
		if tr.Metadata["limitToPartitionsWithLag"] != "false" || tr.Metadata["lagThreshold"] != "2000" {
			t.Errorf("trigger %v: want limitToPartitionsWithLag false and the consumer's lagThreshold 2000", tr.Metadata)
		}
	}
}
