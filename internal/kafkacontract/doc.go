// Package kafkacontract holds tests of the broker behaviour eventline relies
// on, run against both brokers the suite knows: franz-go's in-process kfake
// (the default) and Apache Kafka (EVENTLINE_TEST_KAFKA, make test-kafka).
// It tests no eventline code: it pins what the relay's transactional mode
// (relay/txn.go, relay/logical_txn.go) assumes of a broker, so that a kfake
// or Kafka upgrade that changes it fails here, by name, rather than as a
// flaky relay test. Where the two brokers legitimately answer differently,
// the test accepts both and logs which broker gave which answer (go test -v);
// docs/upstream/kfake-transactions.md describes every difference found.
package kafkacontract
