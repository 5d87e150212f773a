package consumers

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/eventline/eventline/schemas"
)

// DeadLetter is one record of a dead-letter topic, with its bookkeeping
// headers parsed and its value decoded when it can be.
type DeadLetter struct {
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
	// read from, or the replay count is not one): ReplayDLT refuses it.
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

// DLTFilter selects dead letters. Zero fields match everything.
type DLTFilter struct {
	Group, Topic, Class string
	Since, Until        time.Time // on the DLT record's timestamp
	Positions           []Position
	Limit               int
}

func (f DLTFilter) match(d *DeadLetter) bool {
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

// dltTopics lists the DLT topics the filter can match: "<topic>.<group>.dlt",
// or those of f.Positions.
func dltTopics(ctx context.Context, adm *kadm.Client, f DLTFilter) ([]string, error) {
	var named []string
	for _, p := range f.Positions {
		if !strings.HasSuffix(p.Topic, ".dlt") {
			return nil, fmt.Errorf("%s is not a dead-letter topic (<topic>.<group>.dlt)", p.Topic)
		}
		named = append(named, p.Topic)
	}
	if len(named) == 0 && f.Group != "" && f.Topic != "" {
		return []string{DLTTopic(f.Topic, f.Group)}, nil
	}
	td, err := adm.ListTopics(ctx, named...)
	if err != nil {
		return nil, fmt.Errorf("listing topics: %w", err)
	}
	var out []string
	for name, d := range td {
		switch {
		case d.Err != nil:
		case !strings.HasSuffix(name, ".dlt"):
		case f.Group != "" && !strings.HasSuffix(name, "."+f.Group+".dlt"):
		case f.Topic != "" && !strings.HasPrefix(name, f.Topic+"."):
		default:
			out = append(out, name)
		}
	}
	sort.Strings(out)
	return out, nil
}

// ListDLT returns the dead letters ScanDLT finds, sorted by position. It
// holds them all: for a DLT of unknown size, ScanDLT (or a Limit) keeps
// memory bounded.
func ListDLT(ctx context.Context, brokers []string, serde *schemas.Serde, f DLTFilter, opts ...kgo.Opt) ([]DeadLetter, error) {
	var out []DeadLetter
	err := ScanDLT(ctx, brokers, serde, f, func(d DeadLetter) error {
		out = append(out, d)
		return nil
	}, opts...)
	sort.Slice(out, func(i, j int) bool {
		a, b := out[i].Position, out[j].Position
		if a.Topic != b.Topic {
			return a.Topic < b.Topic
		}
		if a.Partition != b.Partition {
			return a.Partition < b.Partition
		}
		return a.Offset < b.Offset
	})
	return out, err
}

// scanFetchBytes bounds ScanDLT's fetches (a larger record still comes,
// alone).
const scanFetchBytes = 4 << 20

// ScanDLT reads the dead-letter topics matching f from their start to
// their end as of the call (it does not wait for new records; DLT topics
// are written without transactions, so each partition's last offset is a
// record), decodes each value with serde (nil: values stay undecoded) and
// calls fn with every match, one at a time, offsets ascending within each
// partition: memory stays bounded by a fetch, whatever the DLT's size.
// Records that no decoder accepts are passed with DecodeError. It stops
// after f.Limit matches, or at fn's first error, which it returns.
func ScanDLT(ctx context.Context, brokers []string, serde *schemas.Serde, f DLTFilter, fn func(DeadLetter) error, opts ...kgo.Opt) error {
	admCl, err := kgo.NewClient(append([]kgo.Opt{kgo.SeedBrokers(brokers...)}, opts...)...)
	if err != nil {
		return err
	}
	defer admCl.Close()
	adm := kadm.NewClient(admCl)
	topics, err := dltTopics(ctx, adm, f)
	if err != nil {
		return err
	}
	if len(topics) == 0 {
		return nil
	}
	starts, err := adm.ListStartOffsets(ctx, topics...)
	if err == nil {
		err = starts.Error()
	}
	if err != nil {
		return fmt.Errorf("reading the start offsets of %v: %w", topics, err)
	}
	ends, err := adm.ListEndOffsets(ctx, topics...)
	if err == nil {
		err = ends.Error()
	}
	if err != nil {
		return fmt.Errorf("reading the end offsets of %v: %w", topics, err)
	}
	type tp struct {
		topic     string
		partition int32
	}
	// Positions: only their partitions, from the first to the last named
	// offset (`dlt show` reads the one record it shows).
	only := map[tp][2]int64{}
	for _, p := range f.Positions {
		k := tp{p.Topic, p.Partition}
		r, ok := only[k]
		if !ok {
			r = [2]int64{p.Offset, p.Offset}
		}
		only[k] = [2]int64{min(r[0], p.Offset), max(r[1], p.Offset)}
	}
	want := map[string]map[int32]kgo.Offset{}
	end := map[tp]int64{} // partitions not yet read to their end
	ends.Each(func(o kadm.ListedOffset) {
		start, _ := starts.Lookup(o.Topic, o.Partition)
		from, to := start.Offset, o.Offset
		if len(only) > 0 {
			r, ok := only[tp{o.Topic, o.Partition}]
			if !ok {
				return
			}
			from, to = max(from, r[0]), min(to, r[1]+1)
		}
		if to <= from {
			return // empty
		}
		if want[o.Topic] == nil {
			want[o.Topic] = map[int32]kgo.Offset{}
		}
		want[o.Topic][o.Partition] = kgo.NewOffset().At(from)
		end[tp{o.Topic, o.Partition}] = to
	})
	if len(want) == 0 {
		return nil
	}
	// Small fetches: the client holds a fetch until it is drained and
	// buffers the next one, which franz-go's defaults size at 50 MiB.
	cl, err := kgo.NewClient(append([]kgo.Opt{kgo.SeedBrokers(brokers...), kgo.ConsumePartitions(want),
		kgo.FetchMaxBytes(scanFetchBytes), kgo.FetchMaxPartitionBytes(scanFetchBytes)}, opts...)...)
	if err != nil {
		return err
	}
	defer cl.Close()
	matched := 0
	for len(end) > 0 {
		fetches := cl.PollFetches(ctx)
		if err := ctx.Err(); err != nil {
			return fmt.Errorf("reading dead letters: %w", err)
		}
		var ferr error
		fetches.EachError(func(t string, p int32, err error) { ferr = fmt.Errorf("fetching %s/%d: %w", t, p, err) })
		if ferr != nil {
			return ferr
		}
		for it := fetches.RecordIter(); !it.Done(); {
			r := it.Next()
			k := tp{r.Topic, r.Partition}
			last, ok := end[k]
			if !ok || r.Offset >= last {
				continue
			}
			if r.Offset == last-1 {
				delete(end, k)
			}
			d := deadLetter(r)
			if !f.match(&d) {
				continue
			}
			if serde != nil {
				d.decodeValue(ctx, serde)
			}
			if err := fn(d); err != nil {
				return err
			}
			if matched++; f.Limit > 0 && matched >= f.Limit {
				return nil
			}
		}
	}
	return nil
}

// deadLetter reads r's headers; its value is decoded only once the record
// matched (decodeValue).
func deadLetter(r *kgo.Record) DeadLetter {
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
	d := DeadLetter{
		Position: Position{r.Topic, r.Partition, r.Offset}, Timestamp: representable(r.Timestamp.UTC(), "the record's timestamp"),
		Group: h[HeaderGroup], OriginalTopic: h[HeaderOriginalTopic], OriginalPartition: int32(num(HeaderOriginalPartition)),
		OriginalOffset: num(HeaderOriginalOffset), EventID: h[HeaderEventID], EventType: h[HeaderEventType],
		ErrorClass: h[HeaderErrorClass], ErrorMessage: h[HeaderErrorMessage], Attempt: int(num(HeaderAttempt)),
		ReplayCount: int(num(HeaderReplayCount)), FirstFailureAt: ms(HeaderFirstFailureAt),
		Key: string(r.Key), Headers: h, record: r, Notes: notes,
	}
	// Only the group writes its DLT, and a copy keeps its source
	// partition: headers that disagree with the topic the record was read
	// from were not written by the group, and the record is not replayed.
	if src, ok := ParseDLTTopic(r.Topic, d.Group); !ok || src != d.OriginalTopic || d.OriginalPartition != r.Partition {
		d.Untrusted = fmt.Sprintf("its eventline-group/eventline-original-* headers (group %q, topic %q, partition %d) do not match the DLT it was read from (%s, partition %d)",
			d.Group, d.OriginalTopic, d.OriginalPartition, r.Topic, r.Partition)
	}
	if v, ok := h[HeaderReplayCount]; ok {
		if n, err := strconv.Atoi(v); err != nil || n < 0 {
			d.Untrusted = fmt.Sprintf("its %s header %q is not a replay count", HeaderReplayCount, truncate(v, 40))
		}
	}
	return d
}

// decodeValue decodes d's value with serde (within its decode budget).
func (d *DeadLetter) decodeValue(ctx context.Context, serde *schemas.Serde) {
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
func (d DeadLetter) MarshalJSON() ([]byte, error) {
	type plain DeadLetter
	b, err := json.Marshal(plain(d))
	if err == nil || d.Value == nil {
		return b, err
	}
	d.Value = nil
	d.Notes = append(slices.Clip(d.Notes), "value left out: JSON cannot hold it: "+err.Error())
	return json.Marshal(plain(d))
}

// ReplayOptions tune ReplayDLT.
type ReplayOptions struct {
	// Rate is the most records replayed per second (0: no limit).
	Rate float64
	// MaxReplays refuses a record already replayed this often. Default 3.
	MaxReplays int
	// DryRun reports what would be replayed, producing nothing.
	DryRun bool
}

// ReplayReport says what ReplayDLT did.
type ReplayReport struct {
	Replayed []Position `json:"replayed"`
	Refused  []Refusal  `json:"refused"`
}

// Refusal is a record ReplayDLT did not replay, and why.
type Refusal struct {
	Position Position `json:"position"`
	Reason   string   `json:"reason"`
}

// ErrReplayedTooOften is the reason of a refusal for the replay limit.
var ErrReplayedTooOften = errors.New("replayed too often")

// ReplayDLT sends dead letters back to the first retry topic of the group
// that dead-lettered them, and only there: other groups never see them
// again. Each copy keeps key, value and event headers, lands in its
// original partition, is due at once and carries the replay count + 1.
func ReplayDLT(ctx context.Context, brokers []string, dls []DeadLetter, o ReplayOptions, opts ...kgo.Opt) (ReplayReport, error) {
	if o.MaxReplays == 0 {
		o.MaxReplays = 3
	}
	var rep ReplayReport
	var todo []*kgo.Record
	var pos []Position
	now := time.Now()
	for _, d := range dls {
		switch {
		case d.record == nil:
			rep.Refused = append(rep.Refused, Refusal{d.Position, "not read by ListDLT"})
		case d.Group == "" || d.OriginalTopic == "":
			rep.Refused = append(rep.Refused, Refusal{d.Position, "no eventline-group / eventline-original-topic header: not a dead letter of an eventline group"})
		case d.Untrusted != "":
			rep.Refused = append(rep.Refused, Refusal{d.Position, "not written by the group: " + d.Untrusted})
		case d.ReplayCount >= o.MaxReplays:
			rep.Refused = append(rep.Refused, Refusal{d.Position, fmt.Sprintf("%v: %d replays already (limit %d); fix the cause, then raise the limit deliberately",
				ErrReplayedTooOften, d.ReplayCount, o.MaxReplays)})
		default:
			o, _ := originOf(d.record, d.Group)
			cp := forwardCopy(d.record, o, RetryTopic(d.OriginalTopic, d.Group, 1), d.Group, 1, now, d.ErrorClass, errors.New(d.ErrorMessage), now)
			setHeader(cp, HeaderReplayCount, strconv.Itoa(d.ReplayCount+1))
			todo = append(todo, cp)
			pos = append(pos, d.Position)
		}
	}
	if o.DryRun || len(todo) == 0 {
		if o.DryRun {
			rep.Replayed = pos
		}
		return rep, nil
	}
	cl, err := kgo.NewClient(append([]kgo.Opt{kgo.SeedBrokers(brokers...), kgo.RecordPartitioner(kgo.ManualPartitioner())}, opts...)...)
	if err != nil {
		return rep, err
	}
	defer cl.Close()
	targets := map[string]bool{}
	for _, r := range todo {
		targets[r.Topic] = true
	}
	names := make([]string, 0, len(targets))
	for t := range targets {
		names = append(names, t)
	}
	td, err := kadm.NewClient(cl).ListTopics(ctx, names...)
	if err != nil {
		return rep, fmt.Errorf("checking the retry topics: %w", err)
	}
	for _, t := range names {
		if d, ok := td[t]; !ok || d.Err != nil {
			return rep, fmt.Errorf("retry topic %s does not exist: start the group once (it creates or checks its topics) before replaying", t)
		}
	}
	var tick <-chan time.Time
	if o.Rate > 0 {
		t := time.NewTicker(time.Duration(float64(time.Second) / o.Rate))
		defer t.Stop()
		tick = t.C
	}
	for i, r := range todo {
		if tick != nil && i > 0 {
			select {
			case <-ctx.Done():
				return rep, ctx.Err()
			case <-tick:
			}
		}
		// Refreshed per record: a rate-limited replay is due when sent.
		setHeader(r, HeaderDueAt, strconv.FormatInt(time.Now().UnixMilli(), 10))
		if err := cl.ProduceSync(ctx, r).FirstErr(); err != nil {
			return rep, fmt.Errorf("replaying %s to %s: %w", pos[i], r.Topic, err)
		}
		rep.Replayed = append(rep.Replayed, pos[i])
	}
	return rep, nil
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
