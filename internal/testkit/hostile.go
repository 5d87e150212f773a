package testkit

import (
	"encoding/binary"
	"fmt"
	"strings"
)

// HostileValue is an Avro body that is small on the wire and huge decoded:
// nested blocks of zero-byte items, as issue 18 found them (a 167-byte
// array<array<null>> allocated 768 MB without a decode budget; a 10 KB one
// killed a consumer group under a 3 GB limit).
type HostileValue struct {
	Name   string
	Schema string // writer schema, to register
	Body   []byte // Avro body, without the Confluent header
}

// HostileValues are the nested shapes: array<array<null>>, map<array<null>>
// (167 bytes framed, and about 10 KB), and arrays of wide records (500
// null fields; 126 bytes, and about 10 KB). Name says the framed size.
func HostileValues() []HostileValue {
	const arrayOfArrays = `{"type":"array","items":{"type":"array","items":"null"}}`
	const mapOfArrays = `{"type":"map","values":{"type":"array","items":"null"}}`
	fields := make([]string, 500)
	for i := range fields {
		fields[i] = fmt.Sprintf(`{"name":"f%d","type":"null"}`, i)
	}
	wide := `{"type":"record","name":"Wide","fields":[` + strings.Join(fields, ",") + `]}`
	arrayOfWide := `{"type":"array","items":` + wide + `}`
	arrayOfArraysOfWide := `{"type":"array","items":{"type":"array","items":` + wide + `}}`

	// inner: an array of n zero-byte items (hamba/avro's per-array cap is
	// 1 Mi), 4 bytes; entry: a map entry (empty key) holding one, 5 bytes.
	const n = 1<<20 - 1
	inner := binary.AppendVarint(nil, n)
	inner = append(inner, 0)
	entry := append([]byte{0}, inner...)
	outer := func(count int, item []byte) []byte {
		b := binary.AppendVarint(nil, int64(count))
		for range count {
			b = append(b, item...)
		}
		return append(b, 0)
	}
	// 40 blocks of 26,000 wide records: 1,040,000 records of 500 fields.
	wideBlocks := func(blocks int) []byte {
		var b []byte
		for range blocks {
			b = binary.AppendVarint(b, 26_000)
		}
		return append(b, 0)
	}
	vs := []HostileValue{
		{"array<array<null>>", arrayOfArrays, outer(40, inner)}, // 167 bytes framed
		{"array<array<null>>", arrayOfArrays, outer(2500, inner)},
		{"map<array<null>>", mapOfArrays, outer(32, entry)}, // 167 bytes framed
		{"map<array<null>>", mapOfArrays, outer(2000, entry)},
		{"array<wide record>", arrayOfWide, wideBlocks(40)},
		{"array<array<wide record>>", arrayOfArraysOfWide, outer(2500, append(binary.AppendVarint(nil, 26_000), 0))},
	}
	for i := range vs {
		vs[i].Name = fmt.Sprintf("%s, %d B", vs[i].Name, len(vs[i].Body)+5)
	}
	return vs
}
