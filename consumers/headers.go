package consumers

import (
	"strconv"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"
)

// Record headers (docs/architecture.md, "Headers"). The relay writes the
// event headers; the runtime adds the bookkeeping ones to retry and DLT
// copies.
const (
	HeaderEventID           = "eventline-event-id"
	HeaderEventType         = "eventline-event-type"
	HeaderAggregateType     = "eventline-aggregate-type"
	HeaderAggregateID       = "eventline-aggregate-id"
	HeaderAggregateVersion  = "eventline-aggregate-version"
	HeaderOriginalTopic     = "eventline-original-topic"
	HeaderOriginalPartition = "eventline-original-partition"
	HeaderOriginalOffset    = "eventline-original-offset"
	HeaderOriginalTimestamp = "eventline-original-timestamp"
	HeaderAttempt           = "eventline-attempt"
	HeaderDueAt             = "eventline-due-at"
	HeaderFirstFailureAt    = "eventline-first-failure-at"
	HeaderErrorClass        = "eventline-error-class"
	HeaderErrorMessage      = "eventline-error-message"
	HeaderGroup             = "eventline-group"
	HeaderReplayCount       = "eventline-replay-count"
)

// maxErrorMessage bounds eventline-error-message (bytes).
const maxErrorMessage = 1024

// Error classes in eventline-error-class.
const (
	ClassDecode    = "decode" // undecodable value: framing, body, unknown or unresolvable schema
	ClassNoEventID = "no-event-id"
	ClassPermanent = "permanent" // the handler returned Permanent(err) or panicked
	ClassHandler   = "handler"   // the handler failed on every attempt of the chain
	ClassKeyOrder  = "key-order" // followed its key's earlier event into the chain
)

func header(rec *kgo.Record, key string) (string, bool) {
	for i := len(rec.Headers) - 1; i >= 0; i-- {
		if rec.Headers[i].Key == key {
			return string(rec.Headers[i].Value), true
		}
	}
	return "", false
}

func headerInt(rec *kgo.Record, key string) (int64, bool) {
	s, ok := header(rec, key)
	if !ok {
		return 0, false
	}
	n, err := strconv.ParseInt(s, 10, 64)
	return n, err == nil
}

// origin is where an event first appeared: the source record itself, or
// for retry and DLT copies the original-* headers.
type origin struct {
	topic     string
	partition int32
	offset    int64
}

func originOf(rec *kgo.Record) origin {
	o := origin{rec.Topic, rec.Partition, rec.Offset}
	if t, ok := header(rec, HeaderOriginalTopic); ok {
		o.topic = t
		if p, ok := headerInt(rec, HeaderOriginalPartition); ok {
			o.partition = int32(p)
		}
		if off, ok := headerInt(rec, HeaderOriginalOffset); ok {
			o.offset = off
		}
	}
	return o
}

// dueAt is the time a retry copy may be processed (zero: now).
func dueAt(rec *kgo.Record) time.Time {
	if ms, ok := headerInt(rec, HeaderDueAt); ok {
		return time.UnixMilli(ms)
	}
	return time.Time{}
}

// attemptOf is the number of failed attempts behind a record: 0 on the
// source topic.
func attemptOf(rec *kgo.Record) int {
	n, _ := headerInt(rec, HeaderAttempt)
	return int(n)
}

// forwardCopy builds rec's copy for topic (a retry step or the DLT): the
// same key, value and event headers, the original-* headers kept from the
// first hop, bookkeeping headers replaced.
func forwardCopy(rec *kgo.Record, o origin, topic, group string, attempt int, due time.Time, class string, cause error, now time.Time) *kgo.Record {
	first, hasFirst := header(rec, HeaderFirstFailureAt)
	if !hasFirst {
		first = strconv.FormatInt(now.UnixMilli(), 10)
	}
	origTS, hasTS := header(rec, HeaderOriginalTimestamp)
	if !hasTS {
		origTS = strconv.FormatInt(rec.Timestamp.UnixMilli(), 10)
	}
	replace := map[string]bool{
		HeaderOriginalTopic: true, HeaderOriginalPartition: true, HeaderOriginalOffset: true, HeaderOriginalTimestamp: true,
		HeaderAttempt: true, HeaderDueAt: true, HeaderFirstFailureAt: true, HeaderErrorClass: true, HeaderErrorMessage: true, HeaderGroup: true,
	}
	h := make([]kgo.RecordHeader, 0, len(rec.Headers)+10)
	for _, kv := range rec.Headers {
		if !replace[kv.Key] {
			h = append(h, kv)
		}
	}
	msg := ""
	if cause != nil {
		msg = truncate(cause.Error(), maxErrorMessage)
	}
	h = append(h,
		kgo.RecordHeader{Key: HeaderOriginalTopic, Value: []byte(o.topic)},
		kgo.RecordHeader{Key: HeaderOriginalPartition, Value: []byte(strconv.Itoa(int(o.partition)))},
		kgo.RecordHeader{Key: HeaderOriginalOffset, Value: []byte(strconv.FormatInt(o.offset, 10))},
		kgo.RecordHeader{Key: HeaderOriginalTimestamp, Value: []byte(origTS)},
		kgo.RecordHeader{Key: HeaderGroup, Value: []byte(group)},
		kgo.RecordHeader{Key: HeaderAttempt, Value: []byte(strconv.Itoa(attempt))},
		kgo.RecordHeader{Key: HeaderFirstFailureAt, Value: []byte(first)},
		kgo.RecordHeader{Key: HeaderErrorClass, Value: []byte(class)},
		kgo.RecordHeader{Key: HeaderErrorMessage, Value: []byte(msg)},
	)
	if !due.IsZero() {
		h = append(h, kgo.RecordHeader{Key: HeaderDueAt, Value: []byte(strconv.FormatInt(due.UnixMilli(), 10))})
	}
	return &kgo.Record{Topic: topic, Partition: o.partition, Key: rec.Key, Value: rec.Value, Headers: h}
}

// truncate cuts s to at most n bytes on a UTF-8 boundary.
func truncate(s string, n int) string {
	if len(s) <= n {
		return s
	}
	for n > 0 && s[n]&0xC0 == 0x80 {
		n--
	}
	return s[:n]
}
