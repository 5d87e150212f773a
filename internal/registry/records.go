package registry

import (
	"encoding/json"
	"fmt"
)

// Key types of the log's records (see the package documentation).
const (
	keySchema      = "SCHEMA"
	keyConfig      = "CONFIG"
	keyMode        = "MODE"
	keyIDWatermark = "ID_WATERMARK"
)

// recordKey is a record's key. Its JSON encoding must be the same bytes every
// time for one logical key, since compaction compares key bytes: the fields
// are encoded in declaration order and empty ones omitted.
type recordKey struct {
	KeyType string `json:"keytype"`
	Subject string `json:"subject,omitempty"`
	Version int    `json:"version,omitempty"`
}

// reference is a schema reference: the schema refers to the named type Name
// defined by version Version of subject Subject.
type reference struct {
	Name    string `json:"name"`
	Subject string `json:"subject"`
	Version int    `json:"version"`
}

type schemaValue struct {
	Subject    string      `json:"subject"`
	Version    int         `json:"version"`
	ID         int         `json:"id"`
	SchemaType string      `json:"schemaType,omitempty"`
	Schema     string      `json:"schema"`
	References []reference `json:"references,omitempty"`
	Deleted    bool        `json:"deleted"`
}

type configValue struct {
	CompatibilityLevel string `json:"compatibilityLevel"`
}

type modeValue struct {
	Mode string `json:"mode"`
}

type watermarkValue struct {
	MaxID int `json:"maxId"`
}

func mustJSON(v any) []byte {
	b, err := json.Marshal(v)
	if err != nil {
		// Only plain structs of strings, ints and bools are encoded here.
		panic(fmt.Sprintf("registry: encoding %T: %v", v, err))
	}
	return b
}

func versionRecord(v schemaValue) Record {
	return Record{
		Key:   mustJSON(recordKey{KeyType: keySchema, Subject: v.Subject, Version: v.Version}),
		Value: mustJSON(v),
	}
}

func versionTombstone(subject string, version int) Record {
	return Record{Key: mustJSON(recordKey{KeyType: keySchema, Subject: subject, Version: version})}
}

// configRecord sets subject's level (the global one for ""), or resets it
// when level is "".
func configRecord(subject, level string) Record {
	r := Record{Key: mustJSON(recordKey{KeyType: keyConfig, Subject: subject})}
	if level != "" {
		r.Value = mustJSON(configValue{CompatibilityLevel: level})
	}
	return r
}

// modeRecord sets subject's mode (the global one for ""), or resets it when
// mode is "".
func modeRecord(subject, mode string) Record {
	r := Record{Key: mustJSON(recordKey{KeyType: keyMode, Subject: subject})}
	if mode != "" {
		r.Value = mustJSON(modeValue{Mode: mode})
	}
	return r
}

func watermarkRecord(maxID int) Record {
	return Record{
		Key:   mustJSON(recordKey{KeyType: keyIDWatermark}),
		Value: mustJSON(watermarkValue{MaxID: maxID}),
	}
}
