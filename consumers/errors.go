package consumers

import (
	"errors"

	"github.com/eventline/eventline/migrate"
	"github.com/eventline/eventline/schemas"
)

// permanentError marks a handler failure that retrying cannot fix.
type permanentError struct{ err error }

func (e *permanentError) Error() string { return "permanent: " + e.err.Error() }
func (e *permanentError) Unwrap() error { return e.err }

// Permanent wraps err so the runtime sends the event straight to the
// dead-letter topic instead of the retry chain. Permanent(nil) is nil.
func Permanent(err error) error {
	if err == nil {
		return nil
	}
	return &permanentError{err: err}
}

// IsPermanent reports whether err is a handler's Permanent error or an
// undecodable record (schemas.IsDecodeError).
func IsPermanent(err error) bool {
	var pe *permanentError
	return errors.As(err, &pe) || schemas.IsDecodeError(err)
}

// ErrNoEventID: the record's dedupe key cannot be had: its
// eventline-event-id header is not a UUID, or Config.EventID failed. A
// record without the header gets DefaultEventID. Permanent.
var ErrNoEventID = errors.New("record has no usable event id")

// ErrNotMigrated is returned by Group.Run at start when eventline's consumer
// tables are not in the group's database and Config.Schema (the migrations
// have not run there). It is migrate.ErrNotMigrated.
var ErrNotMigrated = migrate.ErrNotMigrated

// ErrAlreadyRunning is returned by Group.Run when Run was called before on
// the same Group, whether that call still runs or has returned: a Group runs
// once (create another with New).
var ErrAlreadyRunning = errors.New("consumers: Run was already called on this Group")
