package chartcheck

import (
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"sync"
	"testing"

	kedav1alpha1 "github.com/kedacore/keda/v2/apis/keda/v1alpha1"
	"helm.sh/helm/v4/pkg/action"
	"helm.sh/helm/v4/pkg/chart/common"
	chartv2 "helm.sh/helm/v4/pkg/chart/v2"
	"helm.sh/helm/v4/pkg/chart/v2/loader"
	"helm.sh/helm/v4/pkg/release"
	releaseutil "helm.sh/helm/v4/pkg/release/v1/util"
	"helm.sh/helm/v4/pkg/strvals"
	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	policyv1 "k8s.io/api/policy/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/serializer"
	"sigs.k8s.io/yaml"
)

const (
	chartDir    = "../helm/eventline"
	releaseName = "shop"
	namespace   = "shipping"
)

// The values sets every property test renders: the chart's ci/ files.
var valuesSets = []string{"default", "logical", "keda-prometheus", "keda-kafka", "two-consumers"}

var loadChart = sync.OnceValues(func() (*chartv2.Chart, error) { return loader.Load(chartDir) })

// values reads ci/<set>-values.yaml and applies overrides in `helm --set`
// syntax ("relay.replicas=3", "consumers[0].autoscaling.enabled=true").
func values(t *testing.T, set string, overrides ...string) map[string]any {
	t.Helper()
	vals := map[string]any{}
	if set != "" {
		b, err := os.ReadFile(filepath.Join(chartDir, "ci", set+"-values.yaml"))
		if err != nil {
			t.Fatal(err)
		}
		if err := yaml.Unmarshal(b, &vals); err != nil {
			t.Fatalf("ci/%s-values.yaml: %v", set, err)
		}
	}
	for _, o := range overrides {
		if err := strvals.ParseInto(o, vals); err != nil {
			t.Fatalf("override %q: %v", o, err)
		}
	}
	return vals
}

// render installs the chart client-only, as `helm install --dry-run=client`
// does: the values schema, the templates (their fail calls included), the
// manifest sorting and NOTES.txt. It returns the manifest.
func render(vals map[string]any) (string, error) {
	ch, err := loadChart()
	if err != nil {
		return "", err
	}
	cfg := action.NewConfiguration(action.ConfigurationSetLogger(slog.NewTextHandler(io.Discard, nil)))
	install := action.NewInstall(cfg)
	install.DryRunStrategy = action.DryRunClient
	install.ReleaseName = releaseName
	install.Namespace = namespace
	// The oldest Kubernetes the chart is for (deploy/README.md).
	install.KubeVersion = &common.KubeVersion{Version: "v1.31.0", Major: "1", Minor: "31"}
	rel, err := install.Run(ch, vals)
	if err != nil {
		return "", err
	}
	acc, err := release.NewAccessor(rel)
	if err != nil {
		return "", err
	}
	return acc.Manifest(), nil
}

// decoder decodes strictly into the official types: an unknown or misspelt
// field, a field of the wrong case, a duplicate key or a value of the wrong
// type is an error. Only the kinds the chart may render are registered, so
// an unexpected kind fails too.
var decoder = sync.OnceValue(func() runtime.Decoder {
	scheme := runtime.NewScheme()
	for _, add := range []func(*runtime.Scheme) error{appsv1.AddToScheme, corev1.AddToScheme, policyv1.AddToScheme, kedav1alpha1.AddToScheme} {
		if err := add(scheme); err != nil {
			panic(err)
		}
	}
	return serializer.NewCodecFactory(scheme, serializer.EnableStrict).UniversalDeserializer()
})

// decode turns one manifest document into its typed object.
func decode(doc string) (runtime.Object, error) {
	obj, gvk, err := decoder().Decode([]byte(doc), nil, nil)
	if err != nil {
		return nil, err
	}
	switch obj.(type) {
	case *appsv1.Deployment, *corev1.Service, *corev1.ConfigMap, *corev1.Secret, *policyv1.PodDisruptionBudget,
		*kedav1alpha1.ScaledObject, *kedav1alpha1.TriggerAuthentication:
		return obj, nil
	}
	return nil, fmt.Errorf("%s: a kind the chart should not render", gvk)
}

// objects is a rendered release, by kind.
type objects struct {
	manifest    string
	deployments []*appsv1.Deployment
	services    []*corev1.Service
	configMaps  []*corev1.ConfigMap
	secrets     []*corev1.Secret
	pdbs        []*policyv1.PodDisruptionBudget
	scaled      []*kedav1alpha1.ScaledObject
	triggerAuth []*kedav1alpha1.TriggerAuthentication
}

// split cuts the manifest into documents (Helm's splitter) and decodes each.
func split(manifest string) (*objects, error) {
	docs := releaseutil.SplitManifests(manifest)
	keys := make([]string, 0, len(docs))
	for k := range docs {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	o := &objects{manifest: manifest}
	for _, k := range keys {
		doc := docs[k]
		if strings.TrimSpace(doc) == "" {
			continue
		}
		obj, err := decode(doc)
		if err != nil {
			return nil, fmt.Errorf("%s: %w\n%s", sourceOf(doc), err, doc)
		}
		switch v := obj.(type) {
		case *appsv1.Deployment:
			o.deployments = append(o.deployments, v)
		case *corev1.Service:
			o.services = append(o.services, v)
		case *corev1.ConfigMap:
			o.configMaps = append(o.configMaps, v)
		case *corev1.Secret:
			o.secrets = append(o.secrets, v)
		case *policyv1.PodDisruptionBudget:
			o.pdbs = append(o.pdbs, v)
		case *kedav1alpha1.ScaledObject:
			o.scaled = append(o.scaled, v)
		case *kedav1alpha1.TriggerAuthentication:
			o.triggerAuth = append(o.triggerAuth, v)
		}
	}
	return o, nil
}

// sourceOf is the "# Source: eventline/templates/x.yaml" line Helm puts
// before every document.
func sourceOf(doc string) string {
	for _, line := range strings.Split(doc, "\n") {
		if s, ok := strings.CutPrefix(line, "# Source: "); ok {
			return s
		}
	}
	return "(no source line)"
}

// mustRender renders and decodes, failing the test on any error.
func mustRender(t *testing.T, vals map[string]any) *objects {
	t.Helper()
	manifest, err := render(vals)
	if err != nil {
		t.Fatalf("render: %v", err)
	}
	o, err := split(manifest)
	if err != nil {
		t.Fatalf("decode: %v", err)
	}
	return o
}

func (o *objects) deployment(name string) *appsv1.Deployment {
	for _, d := range o.deployments {
		if d.Name == name {
			return d
		}
	}
	return nil
}
