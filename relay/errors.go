package relay

import (
	"errors"

	"github.com/twmb/franz-go/pkg/kerr"
)

// ErrNotLeader is returned by operations that need leadership after it was
// lost (the lock connection died).
var ErrNotLeader = errors.New("relay lost leadership")

// permanent reports whether a produce error can never succeed for this
// record, so retrying would stall the outbox behind it forever. An
// authorization failure is not one of them: an operator fixes the ACL and the
// backlog flows, instead of every row of the topic being parked.
func permanent(err error) bool {
	for _, e := range []error{
		kerr.MessageTooLarge,
		kerr.RecordListTooLarge,
		kerr.InvalidTopicException,
		kerr.InvalidRecord,
		kerr.PolicyViolation,
	} {
		if errors.Is(err, e) {
			return true
		}
	}
	return false
}
