package deadletter

import "errors"

// ErrReplayedTooOften is the reason of a Refusal for the replay limit
// (ReplayOptions.MaxReplays): the Reason text starts with it.
var ErrReplayedTooOften = errors.New("replayed too often")
