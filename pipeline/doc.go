// Package pipeline reads eventline.yaml, the pipeline file a team keeps next
// to its schemas and shares between its producers, relays, consumer groups
// and CI checks: which topics exist (partitions, replication, configs),
// which events each topic carries, whether the relay also writes a topic's
// events as CloudEvents (binary content mode, see CloudEvents), how
// registry subjects are named, each subject's compatibility level, and the
// consumers' retry delays.
//
//	pipe, err := pipeline.Load("eventline.yaml")
//	...
//	prod, err := producer.New(ctx, producer.Config{DB: db, Pipeline: pipe, ...})
//
// Load and Parse apply the defaults and validate; a Pipeline built in code
// calls ApplyDefaults and Validate itself. Unknown keys are errors.
package pipeline
