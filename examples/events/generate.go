package events

// The Go types in events_gen.go are generated from avro/*.avsc by hamba's
// avrogen (pinned as a tool in go.mod). `make generate` runs this;
// `make check-generate` (part of CI) fails when the checked-in file is stale.
//go:generate sh -c "go tool avrogen -pkg events -o events_gen.go -tags json:snake -encoders -fullschema -strict-types -enums avro/*.avsc && sed -i '1s/$/\\n/' events_gen.go"
