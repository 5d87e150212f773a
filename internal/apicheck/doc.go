// Package apicheck holds the tests that keep eventline's public API what
// another team needs: no exported identifier of a public package may
// mention a type from an internal/ package (another module could not name
// it), the framework packages name no type of the demo's domain, and no
// exported name exists only for the project's own tools (the benchmark,
// the test kit, cmd/): what those need of the runtime goes through
// internal/hook.
package apicheck
