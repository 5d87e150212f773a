package consumers

import (
	"strconv"
	"strings"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/eventline/eventline/headers"
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
	// ClassUndeliverable: the broker refused the copy for good (too large
	// for its retry topic, or for the DLT, where it then arrives without
	// its value; the original is at eventline-original-*).
	ClassUndeliverable = "undeliverable"
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

func originOf(rec *kgo.Record, group string) (o origin, isCopy bool) {
	o = origin{rec.Topic, rec.Partition, rec.Offset}
	src, ok := copyTopicSource(rec.Topic, group)
	if !ok {
		return o, false
	}
	// A copy keeps its source partition; its source offset is only in the
	// header.
	o.topic = src
	if off, ok := headerInt(rec, headers.OriginalOffset); ok && off >= 0 {
		o.offset = off
	}
	return o, true
}

// copyTopicSource: whether topic is one of group's own retry topics or its
// DLT, and the source topic it belongs to. The eventline-original-*,
// attempt and due-at headers are trusted only there, where the group alone
// writes: on any other topic they are a producer's, possibly forged (a
// source record claiming partition 7 of a 3-partition topic stalled its
// partition), and are ignored.
func copyTopicSource(topic, group string) (string, bool) {
	if group == "" {
		return "", false
	}
	if src, ok := ParseDLTTopic(topic, group); ok && src != "" {
		return src, true
	}
	mark := "." + group + ".retry."
	i := strings.LastIndex(topic, mark)
	if i <= 0 {
		return "", false
	}
	n := topic[i+len(mark):]
	if k, err := strconv.Atoi(n); err != nil || k < 1 || strconv.Itoa(k) != n {
		return "", false
	}
	return topic[:i], true
}

// dueAt is the time a retry copy may be processed (zero: now).
func dueAt(rec *kgo.Record) time.Time {
	if ms, ok := headerInt(rec, headers.DueAt); ok {
		return time.UnixMilli(ms)
	}
	return time.Time{}
}

// attemptOf is the number of failed attempts behind a record: 0 on the
// source topic.
func attemptOf(rec *kgo.Record) int {
	n, _ := headerInt(rec, headers.Attempt)
	return int(n)
}

// forwardCopy builds rec's copy for topic (a retry step or the DLT): the
// same key, value and event headers, the original-* headers kept from the
// first hop, bookkeeping headers replaced.
func forwardCopy(rec *kgo.Record, o origin, topic, group string, attempt int, due time.Time, class string, cause error, now time.Time) *kgo.Record {
	// A copy carries the first hop's bookkeeping; a source record's
	// headers of those names are a producer's and are replaced.
	isCopy := rec.Topic != o.topic
	first, hasFirst := header(rec, headers.FirstFailureAt)
	if !hasFirst || !isCopy {
		first = strconv.FormatInt(now.UnixMilli(), 10)
	}
	origTS, hasTS := header(rec, headers.OriginalTimestamp)
	if !hasTS || !isCopy {
		origTS = strconv.FormatInt(rec.Timestamp.UnixMilli(), 10)
	}
	replace := map[string]bool{
		headers.OriginalTopic: true, headers.OriginalPartition: true, headers.OriginalOffset: true, headers.OriginalTimestamp: true,
		headers.Attempt: true, headers.DueAt: true, headers.FirstFailureAt: true, headers.ErrorClass: true, headers.ErrorMessage: true, headers.Group: true,
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
		kgo.RecordHeader{Key: headers.OriginalTopic, Value: []byte(o.topic)},
		kgo.RecordHeader{Key: headers.OriginalPartition, Value: []byte(strconv.Itoa(int(o.partition)))},
		kgo.RecordHeader{Key: headers.OriginalOffset, Value: []byte(strconv.FormatInt(o.offset, 10))},
		kgo.RecordHeader{Key: headers.OriginalTimestamp, Value: []byte(origTS)},
		kgo.RecordHeader{Key: headers.Group, Value: []byte(group)},
		kgo.RecordHeader{Key: headers.Attempt, Value: []byte(strconv.Itoa(attempt))},
		kgo.RecordHeader{Key: headers.FirstFailureAt, Value: []byte(first)},
		kgo.RecordHeader{Key: headers.ErrorClass, Value: []byte(class)},
		kgo.RecordHeader{Key: headers.ErrorMessage, Value: []byte(msg)},
	)
	if !due.IsZero() {
		h = append(h, kgo.RecordHeader{Key: headers.DueAt, Value: []byte(strconv.FormatInt(due.UnixMilli(), 10))})
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

func setHeader(r *kgo.Record, k, v string) {
	for i := range r.Headers {
		if r.Headers[i].Key == k {
			r.Headers[i].Value = []byte(v)
			return
		}
	}
	r.Headers = append(r.Headers, kgo.RecordHeader{Key: k, Value: []byte(v)})
}
