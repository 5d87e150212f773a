package relay

import (
	"errors"

	"github.com/twmb/franz-go/pkg/kerr"
)

// ErrNotLeader is returned by operations that need leadership after it was
// lost (the lock connection died).
var ErrNotLeader = errors.New("relay lost leadership")

// permanent reports whether a produce error can never succeed for this
// record, so retrying would stall the outbox behind it forever.
func permanent(err error) bool {
	for _, e := range []error{
		kerr.MessageTooLarge,
		kerr.RecordListTooLarge,
		kerr.InvalidTopicException,
		kerr.TopicAuthorizationFailed,
		kerr.InvalidRecord,
		kerr.CorruptMessage,
		kerr.PolicyViolation,
	} {
		if errors.Is(err, e) {
			return true
		}
	}
	return false
}
