package consumers

import (
	"errors"
	"strconv"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/eventline/eventline/internal/hook"
)

// What the module's own tools need of the runtime without it being public
// API (package deadletter's replay, the benchmark).
func init() {
	hook.ReplayCopy = func(rec *kgo.Record, topic, group, class, message string, replays int, due time.Time) *kgo.Record {
		o, _ := originOf(rec, group)
		cp := forwardCopy(rec, o, topic, group, 1, due, class, errors.New(message), due)
		setHeader(cp, HeaderReplayCount, strconv.Itoa(replays))
		return cp
	}
}
