package consumers

import "time"

// The apply path under the names the external tests use; it is not public
// API (test helpers reach it through internal/hook).
type (
	Applier = applier
	Outcome = outcome
)

var NewApplier = newApplier

const (
	Applied   = outApplied
	Duplicate = outDuplicate
	Failed    = outFailed
	Deferred  = outDeferred
)

// SetLivenessWindow shortens how long a loop may be stuck before Live says
// so; set it before the group runs, restore it after.
func SetLivenessWindow(d time.Duration) (restore func()) {
	old := livenessWindow.Swap(int64(d))
	return func() { livenessWindow.Store(old) }
}
