package registry

import (
	"errors"
	"fmt"
	"net/http"

	"github.com/twmb/franz-go/pkg/sr"
)

// Error codes of Confluent's API (the error_code of an error body). The HTTP
// status is the code's first three digits, except for codeIncompatible.
const (
	codeBadRequest            = 400
	codeNotFound              = 404
	codeMethodNotAllowed      = 405
	codeIncompatible          = 409 // the classic registry's; newer ones send 40901
	codeUnsupportedMediaType  = 415
	codeSubjectNotFound       = 40401
	codeVersionNotFound       = 40402
	codeSchemaNotFound        = 40403
	codeSubjectSoftDeleted    = 40404
	codeSubjectNotSoftDeleted = 40405
	codeVersionSoftDeleted    = 40406
	codeVersionNotSoftDeleted = 40407
	codeSubjectLevelNotSet    = 40408
	codeSubjectModeNotSet     = 40409
	codeInvalidSchema         = 42201
	codeInvalidVersion        = 42202
	codeInvalidLevel          = 42203
	codeInvalidMode           = 42204
	codeNotPermitted          = 42205
	codeReferenceExists       = 42206
	codeStore                 = 50001
)

// apiError is an error the API reports to its client as
// {"error_code": code, "message": msg}.
type apiError struct {
	status int
	code   int
	msg    string
}

func (e *apiError) Error() string { return fmt.Sprintf("%s (error code %d)", e.msg, e.code) }

// newError returns an apiError whose HTTP status is derived from its code.
func newError(code int, format string, args ...any) *apiError {
	status := code
	for status >= 1000 {
		status /= 10
	}
	return &apiError{status: status, code: code, msg: fmt.Sprintf(format, args...)}
}

func errSubjectNotFound(subject string) *apiError {
	return newError(codeSubjectNotFound, "Subject '%s' not found.", subject)
}

func errVersionNotFound(version int) *apiError {
	return newError(codeVersionNotFound, "Version %d not found.", version)
}

func errSchemaNotFound() *apiError { return newError(codeSchemaNotFound, "Schema not found") }

func errSchemaIDNotFound(id int) *apiError {
	return newError(codeSchemaNotFound, "Schema %d not found", id)
}

func errInvalidSchema(format string, args ...any) *apiError {
	return newError(codeInvalidSchema, "Invalid schema: "+format, args...)
}

func errInvalidVersion(v string) *apiError {
	return newError(codeInvalidVersion, "The specified version '%s' is not a valid version id. "+
		"Allowed values are between [1, 2^31-1] and the string \"latest\"", v)
}

func errReadOnly(subject string) *apiError {
	return newError(codeNotPermitted, "Subject %s is in read-only mode", subject)
}

// errStore reports a failed write to (or reload from) the log.
func errStore(what string, err error) *apiError {
	return newError(codeStore, "%s failed while writing to the Kafka store: %v", what, err)
}

func errInternal(format string, args ...any) *apiError {
	return newError(codeStore, format, args...)
}

// ErrClosed is returned by writes to a Registry after Close (as error code
// 50001 to HTTP clients).
var ErrClosed = errors.New("registry: closed")

// IsIncompatible reports whether err, from a franz-go sr client, is a
// registry refusing a schema as incompatible with the subject's versions.
// Registries disagree on the body: this one and Confluent's classic releases
// answer HTTP 409 with error code 409, newer Confluent releases error code
// 40901; both are recognised.
func IsIncompatible(err error) bool {
	var re *sr.ResponseError
	if !errors.As(err, &re) {
		return false
	}
	return re.StatusCode == http.StatusConflict || re.ErrorCode == codeIncompatible || re.ErrorCode == 40901
}
