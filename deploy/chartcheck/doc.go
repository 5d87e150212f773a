// Package chartcheck holds the tests of the Helm chart in deploy/helm/eventline.
//
// It is a module of its own so that Helm, the Kubernetes API types and KEDA
// stay out of the go.mod that teams importing eventline resolve. The tests
// render the chart with Helm's own libraries (a client-only dry-run install,
// as `helm install --dry-run=client` or `helm template`), lint it with Helm's
// lint package, decode every rendered object strictly into the official Go
// types (apps/v1, core/v1, policy/v1, KEDA's keda.sh/v1alpha1), and check the
// properties deploy/README.md promises. No cluster is involved: see the
// README's "What is not verified here".
package chartcheck
