// Package registry is an embeddable schema registry serving the Confluent
// Schema Registry REST API (the part that franz-go's sr client and
// Confluent's Java and Python clients use) for Avro schemas. Unlike
// franz-go's srfake it enforces compatibility levels, through a Checker
// (CompatChecker, backed by schemas/compat, by default), and it keeps its
// state in a compacted Kafka topic so that it survives restarts.
//
// # Lifecycle
//
// New loads the state by reading the topic from its start to its end offset
// and returns a Registry whose Handler serves the API; Close releases the
// Kafka client. Every change (a version registered or deleted, a
// compatibility level or mode set or reset) is appended to the topic, and
// acknowledged by every in-sync replica, before the HTTP response is sent.
// Writes are serialised by one mutex: the registry is single-node, there is
// no leader election.
//
// # Ids and identity
//
// Schema ids are global: the same schema registered under two subjects gets
// one id, and registering a schema already live in a subject returns its id
// without adding a version. Two texts are the same schema when their parsed
// Avro forms serialise identically (whitespace, key order, `"type":"int"`
// versus `{"type":"int"}` and namespace spelling do not matter; defaults,
// aliases, doc and custom properties do) and their references are equal. The
// text returned by the API is the text first registered under the id. Ids
// are never reused, even after hard deletes: the highest id ever assigned is
// recorded before any hard delete (see ID_WATERMARK below).
//
// # The log
//
// One partition, cleanup.policy=compact. Keys and values are JSON; a later
// record with the same key bytes supersedes an earlier one and a null value
// (tombstone) deletes the key, which is what compaction keeps. The shapes
// follow Confluent's _schemas records, but the log is not meant to be read by
// Confluent's registry.
//
//	key   {"keytype":"SCHEMA","subject":"orders-value","version":2}
//	value {"subject":"orders-value","version":2,"id":7,"schema":"{...}",
//	       "references":[{"name":"shop.Money","subject":"money","version":1}],
//	       "deleted":false}
//	      One subject version. "deleted":true is a soft delete; a tombstone
//	      is a hard delete. "references" is omitted when empty; a
//	      "schemaType" other than AVRO is never written. Every record of an
//	      id carries the id's first-registered text.
//
//	key   {"keytype":"CONFIG"}                         (global)
//	key   {"keytype":"CONFIG","subject":"orders-value"}
//	value {"compatibilityLevel":"FULL"}
//	      A compatibility level; a tombstone resets it (the global level to
//	      BACKWARD, a subject's to the global one).
//
//	key   {"keytype":"MODE"}                           (global)
//	key   {"keytype":"MODE","subject":"orders-value"}
//	value {"mode":"READONLY"}
//	      READWRITE, READONLY or IMPORT; a tombstone resets it.
//
//	key   {"keytype":"ID_WATERMARK"}
//	value {"maxId":12}
//	      The highest id assigned so far, written before hard deletes so that
//	      compaction removing the tombstoned versions cannot lower the next id.
//
// Records with another keytype are skipped when loading, so that a later
// version may add some.
package registry
