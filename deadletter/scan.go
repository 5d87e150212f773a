package deadletter

import (
	"context"
	"fmt"
	"sort"
	"strings"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/eventline/eventline/consumers"
	"github.com/eventline/eventline/schemas"
)

// dltTopics lists the DLT topics the filter can match: "<topic>.<group>.dlt",
// or those of f.Positions.
func dltTopics(ctx context.Context, adm *kadm.Client, f Filter) ([]string, error) {
	var named []string
	for _, p := range f.Positions {
		if !strings.HasSuffix(p.Topic, ".dlt") {
			return nil, fmt.Errorf("%s is not a dead-letter topic (<topic>.<group>.dlt)", p.Topic)
		}
		named = append(named, p.Topic)
	}
	if len(named) == 0 && f.Group != "" && f.Topic != "" {
		return []string{consumers.DLTTopic(f.Topic, f.Group)}, nil
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

// List returns the dead letters Scan finds, sorted by position. It
// holds them all: for a DLT of unknown size, Scan (or a Limit) keeps
// memory bounded.
func List(ctx context.Context, brokers []string, serde *schemas.Serde, f Filter, opts ...kgo.Opt) ([]Record, error) {
	var out []Record
	err := Scan(ctx, brokers, serde, f, func(d Record) error {
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

// scanFetchBytes bounds Scan's fetches (a larger record still comes,
// alone).
const scanFetchBytes = 4 << 20

// Scan reads the dead-letter topics matching f from their start to
// their end as of the call (it does not wait for new records; DLT topics
// are written without transactions, so each partition's last offset is a
// record), decodes each value with serde (nil: values stay undecoded) and
// calls fn with every match, one at a time, offsets ascending within each
// partition: memory stays bounded by a fetch, whatever the DLT's size.
// Records that no decoder accepts are passed with DecodeError. It stops
// after f.Limit matches, or at fn's first error, which it returns.
func Scan(ctx context.Context, brokers []string, serde *schemas.Serde, f Filter, fn func(Record) error, opts ...kgo.Opt) error {
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
			d := parse(r)
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
