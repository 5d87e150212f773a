// Package interop holds eventline's tests against peers nobody here wrote:
// Confluent's Python client (confluent-kafka with fastavro) talking to
// eventline's embedded schema registry and reading/writing the bytes
// eventline's serde reads/writes, and the CloudEvents Python SDK reading a
// topic the relay writes in CloudEvents binary mode. The peers run in a virtualenv that
// scripts/interop/venv.sh creates in the cache.
package interop
