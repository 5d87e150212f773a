package registry

import (
	"errors"
	"net/http"

	"github.com/twmb/franz-go/pkg/sr"
)

// IsIncompatible reports whether err is a registry's refusal of a schema as
// incompatible. Registries disagree on the body: Confluent's classic
// registry (and this one) answer HTTP 409 with error_code 409, newer
// Confluent releases error_code 40901; both are accepted.
func IsIncompatible(err error) bool {
	var re *sr.ResponseError
	if !errors.As(err, &re) {
		return false
	}
	return re.StatusCode == http.StatusConflict || re.ErrorCode == 409 || re.ErrorCode == 40901
}
