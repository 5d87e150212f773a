package outboxmsg

import (
	"encoding/binary"
	"errors"
	"runtime"
	"testing"
)

// A message whose header array claims 60 million entries (a few bytes
// anybody with pg_logical_emit_message can write) is refused before
// hamba/avro allocates for it; a real message still round-trips.
func TestDecodeWithinBudget(t *testing.T) {
	v := int64(3)
	in := &Event{Topic: "orders", Key: []byte("k"), Value: []byte{0, 1}, EventType: "t", AggregateType: "a", AggregateID: "1",
		AggregateVersion: &v, Headers: []Header{{"traceparent", "00-x"}, {"k", "v"}}}
	b, err := Encode(in)
	if err != nil {
		t.Fatal(err)
	}
	out, err := Decode(b)
	if err != nil || out.Topic != "orders" || len(out.Headers) != 2 || *out.AggregateVersion != 3 {
		t.Fatalf("round trip: %+v, %v", out, err)
	}
	// Everything up to the headers, then a block of 60M empty headers.
	hostile := []byte{Version}
	for _, s := range []string{"orders", "k", "v"} {
		hostile = binary.AppendVarint(hostile, int64(len(s)))
		hostile = append(hostile, s...)
	}
	hostile = append(hostile, make([]byte, 16)...) // event id
	hostile = append(hostile, 0, 0, 0, 0)          // three empty strings, a null version
	hostile = binary.AppendVarint(hostile, 60_000_000)
	var before, after runtime.MemStats
	runtime.ReadMemStats(&before)
	_, err = Decode(hostile)
	runtime.ReadMemStats(&after)
	if !errors.Is(err, ErrMalformed) {
		t.Errorf("60M headers: got %v, want ErrMalformed", err)
	}
	if grew := after.TotalAlloc - before.TotalAlloc; grew > 1<<20 {
		t.Errorf("refusing 60M headers allocated %d bytes", grew)
	}
}
