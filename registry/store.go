package registry

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kgo"
)

// Store persists the registry's state as a log of keyed records: a later
// record with the same key supersedes an earlier one, and a nil value deletes
// the key, which is what a compacted Kafka topic keeps. KafkaStore and
// MemoryStore implement it; another implementation must keep the order of
// Appends.
type Store interface {
	// Load replays every record, oldest first. New calls it once, before
	// any Append.
	Load(ctx context.Context, apply func(key string, value []byte) error) error
	// Append writes one record durably before returning. The registry
	// calls it with its write lock held and answers HTTP 500 when it fails.
	Append(ctx context.Context, key string, value []byte) error
	// Close releases the store's resources.
	Close()
}

// MemoryStore is a Store in memory, for tests: the state lasts as long as
// the value, so a second Registry on the same MemoryStore finds it again.
// The zero value is ready to use.
type MemoryStore struct {
	mu   sync.Mutex
	recs [][2][]byte
}

var (
	_ Store = (*MemoryStore)(nil)
	_ Store = (*KafkaStore)(nil)
)

// Load replays the records appended so far.
func (m *MemoryStore) Load(_ context.Context, apply func(string, []byte) error) error {
	m.mu.Lock()
	recs := append([][2][]byte(nil), m.recs...)
	m.mu.Unlock()
	for _, r := range recs {
		if err := apply(string(r[0]), r[1]); err != nil {
			return err
		}
	}
	return nil
}

// Append keeps the record.
func (m *MemoryStore) Append(_ context.Context, key string, value []byte) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.recs = append(m.recs, [2][]byte{[]byte(key), value})
	return nil
}

// Close does nothing: the records stay for the next Registry.
func (m *MemoryStore) Close() {}

// KafkaStore keeps the log in a compacted single-partition topic, as
// Confluent's registry does with _schemas. Create it with NewKafkaStore.
type KafkaStore struct {
	cl    *kgo.Client
	topic string
}

// NewKafkaStore connects to brokers and creates topic (one partition,
// cleanup.policy=compact) when it does not exist. It fails when the brokers
// cannot be reached within ctx.
func NewKafkaStore(ctx context.Context, brokers []string, topic string) (*KafkaStore, error) {
	cl, err := kgo.NewClient(
		kgo.SeedBrokers(brokers...),
		kgo.RequiredAcks(kgo.AllISRAcks()),
		kgo.ProducerLinger(0),
		kgo.RecordPartitioner(kgo.ManualPartitioner()),
		// kadm answers from kgo's metadata cache, which keeps even a
		// "topic not there yet" answer for MetadataMinAge (5 s by
		// default); Load retries such answers right after creating the
		// topic, so they may only be kept briefly.
		kgo.MetadataMinAge(200*time.Millisecond),
	)
	if err != nil {
		return nil, fmt.Errorf("error creating kafka client: %w", err)
	}
	adm := kadm.NewClient(cl)
	cctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	resp, err := adm.CreateTopic(cctx, 1, -1, map[string]*string{"cleanup.policy": ptr("compact")}, topic)
	if err == nil {
		err = resp.Err
	}
	if err != nil && !errors.Is(err, kerr.TopicAlreadyExists) {
		cl.Close()
		return nil, fmt.Errorf("error creating the registry topic %s on %v: %w", topic, brokers, err)
	}
	return &KafkaStore{cl: cl, topic: topic}, nil
}

func ptr[T any](v T) *T { return &v }

// Load reads the topic from its start to the end offset it had when Load
// began.
func (s *KafkaStore) Load(ctx context.Context, apply func(string, []byte) error) error {
	end, err := s.endOffset(ctx)
	if err != nil {
		return err
	}
	if end.Offset == 0 {
		return nil
	}
	rd, err := kgo.NewClient(
		kgo.SeedBrokers(s.cl.OptValue(kgo.SeedBrokers).([]string)...),
		kgo.ConsumePartitions(map[string]map[int32]kgo.Offset{s.topic: {0: kgo.NewOffset().AtStart()}}),
	)
	if err != nil {
		return fmt.Errorf("error creating a kafka client to replay %s: %w", s.topic, err)
	}
	defer rd.Close()
	for {
		fs := rd.PollFetches(ctx)
		if err := ctx.Err(); err != nil {
			return fmt.Errorf("error replaying %s: %w", s.topic, err)
		}
		var ferr error
		fs.EachError(func(_ string, _ int32, err error) { ferr = err })
		if ferr != nil {
			return fmt.Errorf("error replaying %s: %w", s.topic, ferr)
		}
		done := false
		var aerr error
		fs.EachRecord(func(r *kgo.Record) {
			if done || aerr != nil {
				return
			}
			if r.Offset >= end.Offset {
				done = true
				return
			}
			aerr = apply(string(r.Key), r.Value)
			if r.Offset == end.Offset-1 {
				done = true
			}
		})
		if aerr != nil {
			return fmt.Errorf("error replaying %s: %w", s.topic, aerr)
		}
		if done {
			return nil
		}
	}
}

// errNoPartition: the answer did not carry partition 0.
var errNoPartition = errors.New("no partition 0 in the answer")

// endOffset reads partition 0's end offset. A broker answers a topic
// created moments ago without its partition (or with a retriable error)
// until the controller's metadata reaches it, so those answers are retried
// for up to 30 seconds; any other error is returned at once.
func (s *KafkaStore) endOffset(ctx context.Context) (kadm.ListedOffset, error) {
	ctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	adm := kadm.NewClient(s.cl)
	wait := 20 * time.Millisecond
	for {
		var cause error
		ends, err := adm.ListEndOffsets(ctx, s.topic)
		switch end, ok := ends.Lookup(s.topic, 0); {
		case err != nil:
			cause = err
		case !ok:
			// kadm files a topic-level error under partition -1.
			if cause = ends[s.topic][-1].Err; cause == nil {
				cause = errNoPartition
			}
		case end.Err != nil:
			cause = end.Err
		default:
			return end, nil
		}
		if cause != errNoPartition && !kerr.IsRetriable(cause) {
			return kadm.ListedOffset{}, fmt.Errorf("error reading the end of %s: %w", s.topic, cause)
		}
		t := time.NewTimer(wait)
		select {
		case <-ctx.Done():
			t.Stop()
			return kadm.ListedOffset{}, fmt.Errorf("error reading the end of %s: %w (still after waiting: %w)", s.topic, cause, ctx.Err())
		case <-t.C:
		}
		wait = min(2*wait, time.Second)
	}
}

// Append produces the record with acks from all in-sync replicas, waiting
// at most 30 seconds.
func (s *KafkaStore) Append(ctx context.Context, key string, value []byte) error {
	// The registry holds its write lock meanwhile: bound the wait so a
	// broker outage fails writes (HTTP 500) instead of blocking reads.
	ctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	if err := s.cl.ProduceSync(ctx, &kgo.Record{Topic: s.topic, Partition: 0, Key: []byte(key), Value: value}).FirstErr(); err != nil {
		return fmt.Errorf("error writing %s to %s: %w", key, s.topic, err)
	}
	return nil
}

// Close closes the Kafka client.
func (s *KafkaStore) Close() { s.cl.Close() }
