// Package registry is a Confluent-compatible schema registry for Avro that
// enforces compatibility: the registry `eventline dev` serves, and one you
// can embed in your own process or tests.
//
// A Registry is an http.Handler (see Registry.Handler) speaking the
// Confluent Schema Registry REST API, the part that franz-go's sr client and
// Confluent's own serializers use, with Confluent's content type
// (application/vnd.schemaregistry.v1+json) and error bodies
// ({"error_code", "message"}):
//
//	GET    /subjects                                        subjects (?deleted=true)
//	GET    /subjects/{subject}/versions                     versions of a subject
//	POST   /subjects/{subject}/versions                     register: the schema's global id
//	GET    /subjects/{subject}/versions/{version}           a version ("latest" or -1: the newest)
//	GET    /subjects/{subject}/versions/{version}/schema    its schema text alone
//	GET    /subjects/{subject}/versions/{version}/referencedby
//	DELETE /subjects/{subject}/versions/{version}           soft delete (?permanent=true: hard)
//	POST   /subjects/{subject}                              look a schema up in a subject
//	DELETE /subjects/{subject}                              soft delete (?permanent=true: hard)
//	GET    /schemas/ids/{id}                                a schema by global id (also /schema,
//	                                                        /subjects, /versions)
//	GET    /schemas/types                                   ["AVRO"]
//	POST   /compatibility/subjects/{subject}/versions[/{version}]   check (?verbose=true)
//	GET    PUT DELETE /config[/{subject}]                   compatibility level
//	GET    PUT DELETE /mode[/{subject}]                     mode: READONLY refuses writes
//
// Registering a schema is idempotent (the same text, whitespace and key
// order aside, gets the same id and version again), ids are global and never
// reused, and schema references are resolved.
//
// Unlike franz-go's srfake, which answers every check "compatible", the
// registry enforces the subject's compatibility level (DefaultCompatibility
// unless PUT /config sets another) on register and on the compatibility
// endpoints, with the seven Confluent levels NONE, BACKWARD,
// BACKWARD_TRANSITIVE, FORWARD, FORWARD_TRANSITIVE, FULL and FULL_TRANSITIVE,
// as implemented by package schemas/compat (Avro Java's rules). An
// incompatible schema is refused with HTTP 409 and error_code 409, with one
// message per problem; IsIncompatible recognises that answer (and
// Confluent's newer 40901) on the client side.
//
// The state (schemas, versions, levels, modes) is a log of keyed records in
// a Store: in a compacted Kafka topic with KafkaStore, as Confluent's
// registry keeps _schemas, so a restarted registry finds every id again; or
// in memory with MemoryStore, for tests. Writes are serialised: run one
// registry per store. Only what the API would accept is served: a stored
// record the registry cannot read, such as schema text that does not parse
// as Avro (anyone allowed to write to _schemas could put it there), is
// skipped with a warning on load, with the versions naming it. Only Avro is served (a schemaType of PROTOBUF or JSON
// is refused with 42201).
//
// With Config.BasicAuth set, every endpoint requires HTTP Basic
// authentication; a request without valid credentials gets 401 with
// WWW-Authenticate: Basic realm="eventline" and {"error_code":401,
// "message":"Unauthorized"}, as Confluent's registry answers it.
//
// For tests, package eventlinetest starts one on a loopback server:
// eventlinetest.StartRegistry(t).
package registry
