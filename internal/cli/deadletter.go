package cli

import (
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"sort"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/eventline/eventline/consumers"
	"github.com/eventline/eventline/deadletter"
	"github.com/eventline/eventline/schemas"
)

const dltUsage = "usage: eventline dlt list [flags] | show TOPIC/PARTITION/OFFSET [flags] | replay --group G (--offsets … | --class C | --topic T | --since … | --all) [flags]"

// runDLT inspects and replays dead letters (package deadletter).
func runDLT(ctx context.Context, env *Env, args []string) int {
	if len(args) == 0 || (args[0] != "list" && args[0] != "show" && args[0] != "replay") {
		fmt.Fprintln(env.Stderr, dltUsage)
		return ExitUsage
	}
	sub, args := args[0], args[1:]
	fs := newFlagSet(env, "dlt "+sub, "[flags]")
	brokers := fs.String("brokers", env.Getenv("KAFKA_BROKERS"), "Kafka seed brokers, comma-separated (env KAFKA_BROKERS)")
	registry := fs.String("registry", env.Getenv("SCHEMA_REGISTRY_URL"), "schema registry for decoding values (env SCHEMA_REGISTRY_URL); empty: values stay encoded")
	group := fs.String("group", "", "consumer group whose DLT to read")
	topic := fs.String("topic", "", "source topic")
	class := fs.String("class", "", "error class: decode, no-event-id, permanent, handler, key-order")
	since := fs.String("since", "", "only records dead-lettered after this: a duration ago (1h) or an RFC 3339 time")
	until := fs.String("until", "", "only records dead-lettered before this: a duration ago or an RFC 3339 time")
	limit := fs.Int("limit", 0, "at most this many records (0: all)")
	asJSON := fs.Bool("json", false, "print JSON")
	timeout := fs.Duration("timeout", 30*time.Second, "give up reading after this long")
	var offsets *string
	var rate *float64
	var maxReplays *int
	var dryRun, all *bool
	if sub == "replay" {
		offsets = fs.String("offsets", "", "replay these DLT records: TOPIC/PARTITION/OFFSET, comma-separated")
		rate = fs.Float64("rate", 100, "records replayed per second at most")
		maxReplays = fs.Int("max-replays", 3, "refuse records already replayed this often")
		dryRun = fs.Bool("dry-run", false, "show what would be replayed, produce nothing")
		all = fs.Bool("all", false, "replay every dead letter of the group that the other filters select")
	}
	var position string
	if sub == "show" {
		if len(args) == 0 || strings.HasPrefix(args[0], "-") {
			fmt.Fprintln(env.Stderr, "eventline dlt show: needs TOPIC/PARTITION/OFFSET (from `eventline dlt list`)")
			return ExitUsage
		}
		position, args = args[0], args[1:]
	}
	if code := parse(fs, args); code >= 0 {
		return code
	}
	if *brokers == "" {
		fmt.Fprintln(env.Stderr, "eventline dlt: needs --brokers (KAFKA_BROKERS)")
		return ExitUsage
	}
	f := deadletter.Filter{Group: *group, Topic: *topic, Class: *class, Limit: *limit}
	var err error
	if f.Since, err = parseWhen(*since); err != nil {
		return usageErr(env, fs, "--since", err)
	}
	if f.Until, err = parseWhen(*until); err != nil {
		return usageErr(env, fs, "--until", err)
	}
	if position != "" {
		p, err := deadletter.ParsePosition(position)
		if err != nil {
			return usageErr(env, fs, "position", err)
		}
		f.Positions = []deadletter.Position{p}
	}
	if sub == "replay" {
		if *group == "" {
			fmt.Fprintln(env.Stderr, "eventline dlt replay: needs --group: a replay goes to that group's retry chain only")
			return ExitUsage
		}
		if *offsets != "" {
			for _, s := range splitList(*offsets) {
				p, err := deadletter.ParsePosition(s)
				if err != nil {
					return usageErr(env, fs, "--offsets", err)
				}
				f.Positions = append(f.Positions, p)
			}
		}
		if len(f.Positions) == 0 && *class == "" && *topic == "" && *since == "" && !*all {
			fmt.Fprintln(env.Stderr, "eventline dlt replay: select records with --offsets, --class, --topic or --since, or say --all")
			return ExitUsage
		}
		if *rate <= 0 || *maxReplays < 1 {
			fmt.Fprintln(env.Stderr, "eventline dlt replay: --rate must be positive and --max-replays at least 1")
			return ExitUsage
		}
	}

	ctx, cancel := context.WithTimeout(ctx, *timeout)
	defer cancel()
	conn, err := connections(env)
	if err != nil {
		fmt.Fprintf(env.Stderr, "eventline dlt %s: connection settings: %v\n", sub, err)
		return ExitUsage
	}
	var serde *schemas.Serde
	if *registry != "" {
		cl, err := conn.RegistryClient(*registry)
		if err != nil {
			return usageErr(env, fs, "--registry", err)
		}
		serde = schemas.NewSerde(cl)
	}
	if sub == "replay" || sub == "list" && !*asJSON {
		// Values are decoded only where they are printed (show, list
		// --json), within the Serde's decode budget.
		serde = nil
	}
	if sub == "list" {
		// Streamed: a DLT of any size lists in bounded memory.
		out := newDeadLetterWriter(env.Stdout, *asJSON)
		err := deadletter.Scan(ctx, splitList(*brokers), serde, f, out.write, conn.Kafka...)
		if err == nil {
			// Only a complete listing is closed: after a failure the
			// output stays visibly cut (no "]", no count), so a pipe does
			// not read a truncated or empty DLT as the whole of it.
			err = out.close()
		}
		if err != nil {
			fmt.Fprintf(env.Stderr, "eventline dlt list: reading dead letters from %s: %v\n", *brokers, kafkaErr(env, err))
			return ExitFail
		}
		return ExitOK
	}
	dls, err := deadletter.List(ctx, splitList(*brokers), serde, f, conn.Kafka...)
	if err != nil {
		fmt.Fprintf(env.Stderr, "eventline dlt %s: reading dead letters from %s: %v\n", sub, *brokers, kafkaErr(env, err))
		return ExitFail
	}
	switch sub {
	case "show":
		if len(dls) == 0 {
			fmt.Fprintf(env.Stderr, "eventline dlt show: no dead letter at %s\n", position)
			return ExitFail
		}
		if *asJSON {
			return writeJSON(env.Stdout, dls[0])
		}
		printDeadLetter(env.Stdout, dls[0])
	case "replay":
		rep, err := deadletter.Replay(ctx, splitList(*brokers), dls, deadletter.ReplayOptions{Rate: *rate, MaxReplays: *maxReplays, DryRun: *dryRun}, conn.Kafka...)
		if *asJSON {
			if code := writeJSON(env.Stdout, rep); code != ExitOK {
				return code
			}
		} else {
			verb := "replayed"
			if *dryRun {
				verb = "would replay"
			}
			for _, p := range rep.Replayed {
				fmt.Fprintf(env.Stdout, "%s %s → %s\n", verb, printable(p.String()), printable(consumers.RetryTopic(topicOf(dls, p), *group, 1)))
			}
			for _, r := range rep.Refused {
				fmt.Fprintf(env.Stdout, "refused %s: %s\n", printable(r.Position.String()), printable(r.Reason))
			}
			fmt.Fprintf(env.Stdout, "%d %s, %d refused\n", len(rep.Replayed), verb, len(rep.Refused))
		}
		if err != nil {
			fmt.Fprintln(env.Stderr, "eventline dlt replay:", err)
			return ExitFail
		}
		if len(rep.Refused) > 0 {
			return ExitFail
		}
	}
	return ExitOK
}

func topicOf(dls []deadletter.Record, p deadletter.Position) string {
	for _, d := range dls {
		if d.Position == p {
			return d.OriginalTopic
		}
	}
	return ""
}

func usageErr(env *Env, fs *flag.FlagSet, what string, err error) int {
	fmt.Fprintf(env.Stderr, "%s: %s: %v\n", fs.Name(), what, err)
	return ExitUsage
}

// parseWhen reads "1h" (that long ago) or an RFC 3339 time.
func parseWhen(s string) (time.Time, error) {
	if s == "" {
		return time.Time{}, nil
	}
	if d, err := time.ParseDuration(s); err == nil {
		return time.Now().Add(-d), nil
	}
	t, err := time.Parse(time.RFC3339, s)
	if err != nil {
		return time.Time{}, fmt.Errorf("%q is neither a duration (1h30m) nor an RFC 3339 time", s)
	}
	return t, nil
}

func writeJSON(w io.Writer, v any) int {
	b, err := json.MarshalIndent(v, "", "  ")
	if err != nil {
		return ExitFail
	}
	if _, err := fmt.Fprintf(w, "%s\n", safeJSON(b)); err != nil {
		return ExitFail
	}
	return ExitOK
}

// deadLetterWriter prints dead letters as they are read: a JSON array, or
// a table flushed every tableBlock rows (its columns are aligned within a
// block), then a count.
type deadLetterWriter struct {
	w    io.Writer
	json bool
	tw   *tabwriter.Writer
	n    int
}

const tableBlock = 100

func newDeadLetterWriter(w io.Writer, asJSON bool) *deadLetterWriter {
	return &deadLetterWriter{w: w, json: asJSON}
}

func (o *deadLetterWriter) write(d deadletter.Record) error {
	o.n++
	if o.json {
		b, err := json.MarshalIndent(d, "  ", "  ")
		if err != nil {
			return err
		}
		sep := ",\n  "
		if o.n == 1 {
			sep = "[\n  "
		}
		_, err = fmt.Fprintf(o.w, "%s%s", sep, safeJSON(b))
		return err
	}
	if o.tw == nil {
		o.tw = tabwriter.NewWriter(o.w, 0, 0, 2, ' ', 0)
		fmt.Fprintln(o.tw, "POSITION\tGROUP\tORIGINAL\tCLASS\tATTEMPT\tREPLAYS\tDEAD-LETTERED\tMESSAGE")
	}
	msg := printable(d.ErrorMessage)
	if r := []rune(msg); len(r) > 70 {
		msg = string(r[:67]) + "..."
	}
	fmt.Fprintf(o.tw, "%s\t%s\t%s/%d/%d\t%s\t%d\t%d\t%s\t%s\n", printable(d.Position.String()), printable(d.Group), printable(d.OriginalTopic),
		d.OriginalPartition, d.OriginalOffset, printable(d.ErrorClass), d.Attempt, d.ReplayCount, d.Timestamp.Format(time.RFC3339), msg)
	if o.n%tableBlock == 0 {
		return o.tw.Flush()
	}
	return nil
}

func (o *deadLetterWriter) close() error {
	if o.json {
		end := "\n]\n"
		if o.n == 0 {
			end = "[]\n"
		}
		_, err := io.WriteString(o.w, end)
		return err
	}
	if o.tw != nil {
		if err := o.tw.Flush(); err != nil {
			return err
		}
	}
	_, err := fmt.Fprintf(o.w, "%d dead letters\n", o.n)
	return err
}

// printDeadLetter prints d for a terminal: every string from the record
// through printable.
func printDeadLetter(w io.Writer, d deadletter.Record) {
	p := printable
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	fmt.Fprintf(tw, "position\t%s\n", p(d.Position.String()))
	fmt.Fprintf(tw, "group\t%s\n", p(d.Group))
	fmt.Fprintf(tw, "original\t%s/%d/%d\n", p(d.OriginalTopic), d.OriginalPartition, d.OriginalOffset)
	fmt.Fprintf(tw, "event\t%s %s\n", p(d.EventType), p(d.EventID))
	fmt.Fprintf(tw, "error\t%s: %s\n", p(d.ErrorClass), p(d.ErrorMessage))
	fmt.Fprintf(tw, "attempts\t%d (replays %d), first failure %s\n", d.Attempt, d.ReplayCount, d.FirstFailureAt.Format(time.RFC3339))
	fmt.Fprintf(tw, "key\t%s\n", p(d.Key))
	if d.Untrusted != "" {
		fmt.Fprintf(tw, "untrusted\t%s\n", p(d.Untrusted))
	}
	tw.Flush()
	if d.DecodeError != "" {
		fmt.Fprintf(w, "value: not decodable: %s\n", p(d.DecodeError))
	} else if d.Value != nil {
		if b, err := json.MarshalIndent(d.Value, "", "  "); err != nil {
			fmt.Fprintf(w, "value: not printable as JSON: %s\n", p(err.Error()))
		} else {
			fmt.Fprintf(w, "value:\n%s\n", safeJSON(b))
		}
	}
	for _, n := range d.Notes {
		fmt.Fprintf(w, "note: %s\n", p(n))
	}
	fmt.Fprintln(w, "headers:")
	keys := make([]string, 0, len(d.Headers))
	for k := range d.Headers {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	for _, k := range keys {
		fmt.Fprintf(w, "  %s: %s\n", p(k), p(d.Headers[k]))
	}
}
