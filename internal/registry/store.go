package registry

import (
	"bytes"
	"context"
	"slices"
	"sync"
)

// Record is one entry of the registry's log. A nil Value is a tombstone: it
// deletes Key.
type Record struct {
	Key   []byte
	Value []byte
}

// Store keeps the registry's log: keyed records where a later record
// supersedes an earlier one with the same key and a tombstone deletes the
// key, as a compacted Kafka topic does. The Registry serialises its calls to
// Append; Load may run concurrently with nothing else.
type Store interface {
	// Load calls apply with every record in the log, oldest first, up to the
	// end of the log when Load was called, and stops at apply's first error.
	Load(ctx context.Context, apply func(Record) error) error
	// Append writes recs in order and returns once all are durable. On
	// error, a prefix of recs may have been written: the Registry then
	// reloads its state from the log before its next write.
	Append(ctx context.Context, recs ...Record) error
	// Close releases the store's resources.
	Close() error
}

// MemoryStore is a Store in memory, for tests: its log lives as long as the
// value, so a Registry created again on the same MemoryStore sees the state
// of the previous one. The zero value is ready to use.
type MemoryStore struct {
	mu  sync.Mutex
	log []Record
}

var _ Store = (*MemoryStore)(nil)

// NewMemoryStore returns an empty MemoryStore.
func NewMemoryStore() *MemoryStore { return &MemoryStore{} }

// Load implements Store.
func (m *MemoryStore) Load(ctx context.Context, apply func(Record) error) error {
	m.mu.Lock()
	log := slices.Clone(m.log)
	m.mu.Unlock()
	for _, r := range log {
		if err := ctx.Err(); err != nil {
			return err
		}
		if err := apply(r); err != nil {
			return err
		}
	}
	return nil
}

// Append implements Store.
func (m *MemoryStore) Append(ctx context.Context, recs ...Record) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	for _, r := range recs {
		m.log = append(m.log, Record{Key: bytes.Clone(r.Key), Value: bytes.Clone(r.Value)})
	}
	return nil
}

// Compact does what Kafka's log compaction eventually does: it keeps only the
// last record of each key, at that record's position, and drops tombstones.
// Tests use it to check that the state does not depend on the records that
// compaction removes.
func (m *MemoryStore) Compact() {
	m.mu.Lock()
	defer m.mu.Unlock()
	last := make(map[string]int, len(m.log))
	for i, r := range m.log {
		last[string(r.Key)] = i
	}
	kept := m.log[:0:0]
	for i, r := range m.log {
		if last[string(r.Key)] == i && r.Value != nil {
			kept = append(kept, r)
		}
	}
	m.log = kept
}

// Len returns the number of records in the log.
func (m *MemoryStore) Len() int {
	m.mu.Lock()
	defer m.mu.Unlock()
	return len(m.log)
}

// Close implements Store; the log stays readable.
func (m *MemoryStore) Close() error { return nil }
