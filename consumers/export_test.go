package consumers

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
