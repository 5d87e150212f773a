// Package deadletter is the operator's side of a consumer group's
// dead-letter topics (<topic>.<group>.dlt): list and scan what is there,
// with the bookkeeping headers the group wrote parsed and the value
// decoded, and replay chosen records to the group that dead-lettered them.
// `eventline dlt` is built on it; so can a team's own tools.
//
//	err := deadletter.Scan(ctx, brokers, serde, deadletter.Filter{Group: "ledger", Class: consumers.ClassPermanent},
//		func(d deadletter.Record) error {
//			fmt.Println(d.Position, d.EventType, d.ErrorMessage)
//			return nil
//		})
//
// Scan streams: memory stays bounded by one fetch whatever the size of the
// topic, and a value is decoded (within the Serde's decode budget) only for
// a record that matched. List collects what Scan finds.
//
// Replay sends records back to their group's first retry topic, and only
// there, so other groups on the same source topic never see them again.
// It refuses a record whose headers disagree with the topic and partition
// it was read from (Record.Untrusted: only the group writes its DLT, so
// such a record was forged) and one replayed ReplayOptions.MaxReplays
// times already.
//
// The topic names, header names and error classes are package consumers'.
package deadletter
