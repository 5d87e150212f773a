// Package hook holds the function variables through which the module's own
// packages reach what a public package does not export: the dead-letter
// tooling's replay copy, the benchmark's ceilings (the relay's queries and
// decoding without Kafka, a group's applied batches) and the consumers'
// apply path for tests. Each is set by the package that implements it, in
// its init, so it is non-nil in any program that imports that package; a
// receiver is passed as any because this package cannot import its owner.
package hook

import (
	"time"

	"github.com/twmb/franz-go/pkg/kgo"
)

// ReplayCopy, set by package consumers, builds the copy of rec (a record of
// group's dead-letter topic whose bookkeeping headers the group wrote) that
// goes to topic as attempt 1 with replay count replays, due at due,
// keeping its key, value, partition and event headers: the copy the
// runtime itself would send to a retry topic.
var ReplayCopy func(rec *kgo.Record, topic, group, class, message string, replays int, due time.Time) *kgo.Record
