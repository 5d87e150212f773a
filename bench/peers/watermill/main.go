// Command watermill-forwarder is the Watermill peer of eventline's
// head-to-head benchmark (docs/benchmarks/head-to-head.md): Watermill's
// forwarder component reading its PostgreSQL table (watermill-sql's
// subscriber) and publishing to Kafka (watermill-kafka's publisher), as
// Watermill documents its outbox.
//
//	watermill-forwarder init   # create the forwarder topic's tables, exit
//	watermill-forwarder run    # forward until SIGTERM or SIGINT
//
// It lives in a module of its own so that Watermill, Sarama and their
// dependencies stay out of eventline's go.mod.
//
// Environment: DATABASE_URL (it carries a password: never a flag, which ps
// shows to every user), KAFKA_BROKERS (comma-separated),
// WATERMILL_LOG_LEVEL (debug, info, warn: the default, error).
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"log/slog"
	"os"
	"os/signal"
	"strings"
	"syscall"
	"time"

	"github.com/IBM/sarama"
	"github.com/ThreeDotsLabs/watermill"
	"github.com/ThreeDotsLabs/watermill-kafka/v3/pkg/kafka"
	wsql "github.com/ThreeDotsLabs/watermill-sql/v4/pkg/sql"
	"github.com/ThreeDotsLabs/watermill/components/forwarder"
	"github.com/ThreeDotsLabs/watermill/message"
	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
)

// KeyMetadata is the metadata entry the writers set to the event's
// aggregate id: the Kafka record key, so one aggregate's events keep their
// order in one partition.
const KeyMetadata = "aggregate_id"

type options struct {
	schema       string
	topic        string
	group        string
	batchSize    int
	pollInterval time.Duration
}

func main() {
	if len(os.Args) < 2 || (os.Args[1] != "init" && os.Args[1] != "run") {
		fmt.Fprintln(os.Stderr, "usage: watermill-forwarder init|run [--schema S] [--topic T] [--batch-size N] [--poll-interval D]")
		os.Exit(2)
	}
	fs := flag.NewFlagSet("watermill-forwarder "+os.Args[1], flag.ExitOnError)
	var o options
	fs.StringVar(&o.schema, "schema", "public", "PostgreSQL schema of the forwarder's tables")
	fs.StringVar(&o.topic, "topic", "forwarder_topic", "the forwarder topic: its messages table is watermill_<topic>")
	fs.StringVar(&o.group, "consumer-group", "forwarder", "the subscriber's consumer group (its row in the offsets table)")
	fs.IntVar(&o.batchSize, "batch-size", 100, "rows the subscriber selects per query (DefaultPostgreSQLSchema.SubscribeBatchSize)")
	fs.DurationVar(&o.pollInterval, "poll-interval", time.Second, "wait after a query that found nothing (SubscriberConfig.PollInterval)")
	_ = fs.Parse(os.Args[2:])

	logger := slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: logLevel(os.Getenv("WATERMILL_LOG_LEVEL"))}))
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, syscall.SIGINT)
	defer stop()
	var err error
	if os.Args[1] == "init" {
		err = initTables(ctx, o, logger)
	} else {
		err = run(ctx, o, logger)
	}
	if err != nil {
		logger.Error("watermill-forwarder failed", "err", err)
		os.Exit(1)
	}
}

func logLevel(s string) slog.Level {
	switch strings.ToLower(s) {
	case "debug":
		return slog.LevelDebug
	case "info":
		return slog.LevelInfo
	case "error":
		return slog.LevelError
	}
	return slog.LevelWarn
}

func pool(ctx context.Context) (*pgxpool.Pool, error) {
	url := os.Getenv("DATABASE_URL")
	if url == "" {
		return nil, errors.New("DATABASE_URL is not set")
	}
	return pgxpool.New(ctx, url)
}

// subscriber is watermill-sql's PostgreSQL subscriber with its default
// schema and offsets adapters, their tables in o.schema.
func subscriber(db *pgxpool.Pool, o options, logger watermill.LoggerAdapter) (*wsql.Subscriber, error) {
	return wsql.NewSubscriber(wsql.BeginnerFromPgx(db), wsql.SubscriberConfig{
		ConsumerGroup: o.group,
		PollInterval:  o.pollInterval,
		SchemaAdapter: wsql.DefaultPostgreSQLSchema{
			GenerateMessagesTableName: func(topic string) string { return pgx.Identifier{o.schema, "watermill_" + topic}.Sanitize() },
			SubscribeBatchSize:        o.batchSize,
		},
		OffsetsAdapter: wsql.DefaultPostgreSQLOffsetsAdapter{
			GenerateMessagesOffsetsTableName: func(topic string) string {
				return pgx.Identifier{o.schema, "watermill_offsets_" + topic}.Sanitize()
			},
		},
	}, logger)
}

// initTables creates the forwarder topic's tables with watermill-sql's own
// statements, so the benchmark can fill them before the forwarder starts.
func initTables(ctx context.Context, o options, logger *slog.Logger) error {
	db, err := pool(ctx)
	if err != nil {
		return err
	}
	defer db.Close()
	sub, err := subscriber(db, o, watermill.NewSlogLogger(logger))
	if err != nil {
		return err
	}
	defer sub.Close()
	return sub.SubscribeInitialize(o.topic)
}

func run(ctx context.Context, o options, logger *slog.Logger) error {
	brokers := os.Getenv("KAFKA_BROKERS")
	if brokers == "" {
		return errors.New("KAFKA_BROKERS is not set")
	}
	db, err := pool(ctx)
	if err != nil {
		return err
	}
	defer db.Close()
	wlog := watermill.NewSlogLogger(logger)
	sub, err := subscriber(db, o, wlog)
	if err != nil {
		return err
	}
	defer sub.Close()

	// Sarama's defaults as watermill-kafka sets them, and what a
	// deployment on Kafka 4 must change: the protocol version (Kafka 4
	// refuses the requests of watermill's default, 1.0) and acks=all, the
	// durability the other peers run with.
	cfg := kafka.DefaultSaramaSyncPublisherConfig()
	cfg.Version = sarama.V4_0_0_0
	cfg.Producer.RequiredAcks = sarama.WaitForAll
	pub, err := kafka.NewPublisher(kafka.PublisherConfig{
		Brokers: strings.Split(brokers, ","),
		Marshaler: kafka.NewWithPartitioningMarshaler(func(_ string, m *message.Message) (string, error) {
			return m.Metadata.Get(KeyMetadata), nil
		}),
		OverwriteSaramaConfig: cfg,
	}, wlog)
	if err != nil {
		return err
	}
	defer pub.Close()

	fwd, err := forwarder.NewForwarder(sub, pub, wlog, forwarder.Config{ForwarderTopic: o.topic})
	if err != nil {
		return err
	}
	done := make(chan error, 1)
	go func() { done <- fwd.Run(context.Background()) }()
	select {
	case err := <-done:
		return fmt.Errorf("forwarder stopped: %v", err)
	case <-ctx.Done():
	}
	if err := fwd.Close(); err != nil {
		return err
	}
	return <-done
}
