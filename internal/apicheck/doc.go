// Package apicheck holds the test that keeps eventline embeddable: no
// exported identifier of a public package may mention a type from an
// internal/ package (another module could not name it), and the framework
// packages name no type of the demo's domain.
package apicheck
