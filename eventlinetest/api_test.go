package eventlinetest_test

import (
	"testing"

	"github.com/eventline/eventline/internal/testkit"
)

// Other modules import this package: its exported API must not mention an
// internal/ type.
func TestPublicAPI(t *testing.T) {
	t.Parallel()
	testkit.RequirePublicAPI(t, ".")
}
