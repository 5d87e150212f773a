package relay

import (
	"context"

	"github.com/eventline/eventline/internal/hook"
)

// What the benchmark needs of the relay without it being public API: its
// ceilings, the same statements or stream without Kafka.
func init() {
	hook.RelayDrain = func(ctx context.Context, r any) (int, error) { return r.(*Relay).drainWithoutKafka(ctx) }
	hook.RelayDecode = func(ctx context.Context, r any, slot string, want int) (int, error) {
		return r.(*Relay).decodeWithoutKafka(ctx, slot, want)
	}
}
