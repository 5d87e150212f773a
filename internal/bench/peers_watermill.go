package bench

import (
	"context"
	"encoding/json"
	"fmt"
	"math/rand/v2"
	"os"
	"os/exec"
	"strconv"
	"time"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"
)

// watermillTopic is the forwarder topic: its messages table is
// watermill_<topic> in the round's schema.
const watermillTopic = "h2h"

// watermillUUIDHeader is where watermill-kafka's marshaler puts the
// message's UUID (the event id here).
const watermillUUIDHeader = "_watermill_message_uuid"

// watermillPeer is Watermill's forwarder (bench/peers/watermill): its SQL
// subscriber reads the forwarder topic's table, its Kafka publisher sends
// each message on.
type watermillPeer struct {
	command string
	batch   int
	poll    time.Duration
	proc    *childProcess
}

func (p *watermillPeer) name() string     { return PeerWatermill }
func (p *watermillPeer) note() string     { return "" }
func (p *watermillPeer) idHeader() string { return watermillUUIDHeader }

func (p *watermillPeer) table(r *round) string {
	return pgx.Identifier{r.s.schema, "watermill_" + watermillTopic}.Sanitize()
}

func (p *watermillPeer) args(cmd string, r *round) []string {
	return []string{cmd, "--schema", r.s.schema, "--topic", watermillTopic,
		"--batch-size", strconv.Itoa(p.batch), "--poll-interval", p.poll.String()}
}

// envelope is what Watermill's forwarder publisher writes for a message
// (components/forwarder's messageEnvelope): the destination topic, and the
// message, its payload base64 in JSON.
type envelope struct {
	DestinationTopic string            `json:"destination_topic"`
	UUID             string            `json:"uuid"`
	Payload          []byte            `json:"payload"`
	Metadata         map[string]string `json:"metadata"`
}

// watermillKeyMetadata is the metadata the forwarder keys records by
// (bench/peers/watermill.KeyMetadata).
const watermillKeyMetadata = "aggregate_id"

func (p *watermillPeer) envelope(r *round, id, agg string, value []byte) ([]byte, error) {
	return json.Marshal(envelope{DestinationTopic: r.s.topic, UUID: id, Payload: value,
		Metadata: map[string]string{watermillKeyMetadata: agg, "event_type": "eventline.orders.OrderCreated"}})
}

// prepare has the forwarder create its tables (watermill-sql's own
// statements), then writes the backlog as Watermill's publisher would,
// EventsPerTx messages per transaction.
func (p *watermillPeer) prepare(ctx context.Context, r *round, n int) error {
	cmd := exec.CommandContext(ctx, p.command, p.args("init", r)...)
	cmd.Env = append(os.Environ(), "DATABASE_URL="+r.env.DatabaseURL)
	if out, err := cmd.CombinedOutput(); err != nil {
		return fmt.Errorf("watermill-forwarder init: %v: %s", err, out)
	}
	_, aggs, values, err := sampleAggregates(r.o.Aggregates, r.schemaID)
	if err != nil {
		return err
	}
	var ferr error
	err = fillBatched(ctx, r, n, `INSERT INTO `+p.table(r)+` (uuid, payload, metadata, transaction_id)
		SELECT u, p::json, '{}'::json, pg_current_xact_id() FROM unnest($1::text[], $2::text[]) AS m(u, p)`,
		func(rows, at int) []any {
			ids, payloads := make([]string, rows), make([]string, rows)
			for j := range rows {
				a := (at + j) % r.o.Aggregates
				ids[j] = uuid.NewString()
				b, err := p.envelope(r, ids[j], aggs[a], values[a])
				if err != nil {
					ferr = err
				}
				payloads[j] = string(b)
			}
			return []any{ids, payloads}
		})
	if ferr != nil {
		return ferr
	}
	return err
}

func (p *watermillPeer) start(ctx context.Context, r *round) (int, time.Duration, error) {
	var err error
	p.proc, err = startChild(p.command, p.args("run", r), []string{"DATABASE_URL=" + r.env.DatabaseURL, "KAFKA_BROKERS=" + joinComma(r.env.Brokers)}, os.Stderr)
	if err != nil {
		return 0, 0, err
	}
	return p.proc.cmd.Process.Pid, 0, nil
}

func (p *watermillPeer) exited() <-chan error {
	if p.proc == nil {
		return nil
	}
	return p.proc.done
}

// write appends one message as watermill-sql's publisher does inside the
// application's transaction.
func (p *watermillPeer) write(ctx context.Context, r *round, tx pgx.Tx, id uuid.UUID, agg string, rng *rand.Rand) error {
	v, err := encodeOrder(r, agg, rng)
	if err != nil {
		return err
	}
	env, err := p.envelope(r, id.String(), agg, v)
	if err != nil {
		return err
	}
	_, err = tx.Exec(ctx, `INSERT INTO `+p.table(r)+` (uuid, payload, metadata, transaction_id) VALUES ($1, $2, '{}', pg_current_xact_id())`, id.String(), string(env))
	return err
}

func (p *watermillPeer) stop(context.Context) {
	if p.proc != nil {
		p.proc.stop()
		p.proc = nil
	}
}
