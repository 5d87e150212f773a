package deadletter

import (
	"context"
	"encoding/json"
	"fmt"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/eventline/eventline/consumers"
	"github.com/eventline/eventline/headers"
	"github.com/eventline/eventline/schemas"
)

// Record is one record of a dead-letter topic, with its bookkeeping
// headers parsed and its value decoded when it can be.
type Record struct {
	Position          Position          `json:"position"`
	Timestamp         time.Time         `json:"timestamp"`
	Group             string            `json:"group"`
	OriginalTopic     string            `json:"original_topic"`
	OriginalPartition int32             `json:"original_partition"`
	OriginalOffset    int64             `json:"original_offset"`
	EventID           string            `json:"event_id,omitempty"`
	EventType         string            `json:"event_type,omitempty"`
	ErrorClass        string            `json:"error_class"`
	ErrorMessage      string            `json:"error_message"`
	Attempt           int               `json:"attempt"`
	ReplayCount       int               `json:"replay_count"`
	FirstFailureAt    time.Time         `json:"first_failure_at"`
	Key               string            `json:"key"`
	Value             any               `json:"value,omitempty"`        // decoded (generic form)
	DecodeError       string            `json:"decode_error,omitempty"` // why Value is absent
	Headers           map[string]string `json:"headers"`
	// Untrusted says why the record's bookkeeping headers were not written
	// by the group (they disagree with the DLT topic and partition it was
	// read from, or the replay count is not one): Replay refuses it.
	Untrusted string `json:"untrusted,omitempty"`
	// Notes say what of the record could not be shown as it is: a time
	// outside the years 0 to 9999 (left zero; the raw header is in
	// Headers), a decoded value JSON cannot hold.
	Notes []string `json:"notes,omitempty"`

	record *kgo.Record
}

// Position names a record: topic/partition/offset.
type Position struct {
	Topic     string `json:"topic"`
	Partition int32  `json:"partition"`
	Offset    int64  `json:"offset"`
}

func (p Position) String() string { return fmt.Sprintf("%s/%d/%d", p.Topic, p.Partition, p.Offset) }

// ParsePosition parses TOPIC/PARTITION/OFFSET (topic names may hold '/'
// only before the last two fields).
func ParsePosition(s string) (Position, error) {
	i := strings.LastIndex(s, "/")
	j := -1
	if i > 0 {
		j = strings.LastIndex(s[:i], "/")
	}
	if j <= 0 {
		return Position{}, fmt.Errorf("position %q: want TOPIC/PARTITION/OFFSET", s)
	}
	p, err1 := strconv.ParseInt(s[j+1:i], 10, 32)
	o, err2 := strconv.ParseInt(s[i+1:], 10, 64)
	if err1 != nil || err2 != nil || p < 0 || o < 0 {
		return Position{}, fmt.Errorf("position %q: partition and offset must be non-negative numbers", s)
	}
	return Position{Topic: s[:j], Partition: int32(p), Offset: o}, nil
}

// Filter selects dead letters. Zero fields match everything.
type Filter struct {
	Group, Topic, Class string
	Since, Until        time.Time // on the DLT record's timestamp
	Positions           []Position
	Limit               int
}

func (f Filter) match(d *Record) bool {
	if f.Group != "" && d.Group != f.Group {
		return false
	}
	if f.Topic != "" && d.OriginalTopic != f.Topic {
		return false
	}
	if f.Class != "" && d.ErrorClass != f.Class {
		return false
	}
	if !f.Since.IsZero() && d.Timestamp.Before(f.Since) {
		return false
	}
	if !f.Until.IsZero() && d.Timestamp.After(f.Until) {
		return false
	}
	if len(f.Positions) > 0 {
		for _, p := range f.Positions {
			if p == d.Position {
				return true
			}
		}
		return false
	}
	return true
}

// parse reads r's headers; its value is decoded only once the record
// matched (decodeValue).
func parse(r *kgo.Record) Record {
	h := make(map[string]string, len(r.Headers))
	for _, kv := range r.Headers {
		h[kv.Key] = string(kv.Value)
	}
	num := func(k string) int64 { n, _ := strconv.ParseInt(h[k], 10, 64); return n }
	var notes []string
	// encoding/json refuses a time.Time outside the years 0 to 9999: one
	// such header would stop a whole listing.
	representable := func(t time.Time, what string) time.Time {
		if y := t.Year(); y < 0 || y > 9999 {
			notes = append(notes, fmt.Sprintf("%s is in the year %d, outside 0 to 9999: left zero", what, y))
			return time.Time{}
		}
		return t
	}
	ms := func(k string) time.Time {
		if n := num(k); n > 0 {
			return representable(time.UnixMilli(n).UTC(), "the "+k+" header")
		}
		return time.Time{}
	}
	d := Record{
		Position: Position{r.Topic, r.Partition, r.Offset}, Timestamp: representable(r.Timestamp.UTC(), "the record's timestamp"),
		Group: h[headers.Group], OriginalTopic: h[headers.OriginalTopic], OriginalPartition: int32(num(headers.OriginalPartition)),
		OriginalOffset: num(headers.OriginalOffset), EventID: h[headers.EventID], EventType: h[headers.EventType],
		ErrorClass: h[headers.ErrorClass], ErrorMessage: h[headers.ErrorMessage], Attempt: int(num(headers.Attempt)),
		ReplayCount: int(num(headers.ReplayCount)), FirstFailureAt: ms(headers.FirstFailureAt),
		Key: string(r.Key), Headers: h, record: r, Notes: notes,
	}
	// Only the group writes its DLT, and a copy keeps its source
	// partition: headers that disagree with the topic the record was read
	// from were not written by the group, and the record is not replayed.
	if src, ok := consumers.ParseDLTTopic(r.Topic, d.Group); !ok || src != d.OriginalTopic || d.OriginalPartition != r.Partition {
		d.Untrusted = fmt.Sprintf("its eventline-group/eventline-original-* headers (group %q, topic %q, partition %d) do not match the DLT it was read from (%s, partition %d)",
			d.Group, d.OriginalTopic, d.OriginalPartition, r.Topic, r.Partition)
	}
	if v, ok := h[headers.ReplayCount]; ok {
		if n, err := strconv.Atoi(v); err != nil || n < 0 {
			d.Untrusted = fmt.Sprintf("its %s header %.40q is not a replay count", headers.ReplayCount, v)
		}
	}
	return d
}

// decodeValue decodes d's value with serde (within its decode budget).
func (d *Record) decodeValue(ctx context.Context, serde *schemas.Serde) {
	v, _, err := serde.DecodeGeneric(ctx, d.record.Value)
	if err != nil {
		d.DecodeError = err.Error()
	} else {
		d.Value = v
	}
}

// MarshalJSON encodes d; a decoded value JSON cannot hold (a time outside
// the years 0 to 9999, a NaN) is left out with a note, so that a listing
// never stops at one record.
func (d Record) MarshalJSON() ([]byte, error) {
	type plain Record
	b, err := json.Marshal(plain(d))
	if err == nil || d.Value == nil {
		return b, err
	}
	d.Value = nil
	d.Notes = append(slices.Clip(d.Notes), "value left out: JSON cannot hold it: "+err.Error())
	return json.Marshal(plain(d))
}
