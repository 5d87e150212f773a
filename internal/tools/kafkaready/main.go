// Command kafkaready waits until a Kafka cluster answers: it polls with a short
// backoff until the brokers' metadata lists at least one broker (and a
// controller) and topics can be listed, then exits 0. With -min-brokers N it
// also waits until the metadata lists N brokers: a broker of a cluster answers
// once it has caught up with the metadata log, before the other nodes have
// registered, and a topic with three replicas cannot be created until they
// have. If that has not happened
// when -timeout runs out it prints the last error and exits 1.
//
// scripts/kafka.sh uses it to wait for the test broker it starts:
//
//	go run ./internal/tools/kafkaready -brokers 127.0.0.1:29092 -timeout 90s
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"os"
	"strings"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kgo"
)

func main() {
	brokers := flag.String("brokers", "127.0.0.1:29092", "comma-separated seed brokers (host:port)")
	timeout := flag.Duration("timeout", 90*time.Second, "give up after this long")
	attempt := flag.Duration("attempt", 3*time.Second, "time limit of one probe")
	quiet := flag.Bool("q", false, "print nothing on success")
	minBrokers := flag.Int("min-brokers", 1, "wait until the metadata lists at least this many brokers")
	flag.Parse()

	ctx, cancel := context.WithTimeout(context.Background(), *timeout)
	defer cancel()

	start := time.Now()
	err := wait(ctx, strings.Split(*brokers, ","), *attempt, *minBrokers)
	if err != nil {
		fmt.Fprintf(os.Stderr, "kafkaready: %s not ready after %s: %v\n", *brokers, time.Since(start).Round(time.Millisecond), err)
		os.Exit(1)
	}
	if !*quiet {
		fmt.Fprintf(os.Stderr, "kafkaready: %s ready after %s\n", *brokers, time.Since(start).Round(time.Millisecond))
	}
}

// wait probes until one probe succeeds or ctx ends; it returns the last
// probe's error in the latter case.
func wait(ctx context.Context, seeds []string, attempt time.Duration, minBrokers int) error {
	backoff := 100 * time.Millisecond
	var last error
	for {
		if last = probe(ctx, seeds, attempt, minBrokers); last == nil {
			return nil
		}
		if errors.Is(last, errOptions) {
			return last
		}
		select {
		case <-ctx.Done():
			return last
		case <-time.After(backoff):
		}
		backoff = min(2*backoff, time.Second)
	}
}

var errOptions = errors.New("bad client options")

// probe makes one check, bounded by its own deadline inside ctx's, with a
// client of its own: kadm's broker metadata comes from the client's cached
// broker list, refreshed every 5 minutes, so a long-lived client would not
// see a cluster's last node register.
func probe(ctx context.Context, seeds []string, limit time.Duration, minBrokers int) error {
	ctx, cancel := context.WithTimeout(ctx, limit)
	defer cancel()
	cl, err := kgo.NewClient(
		kgo.SeedBrokers(seeds...),
		kgo.DialTimeout(time.Second),
	)
	if err != nil {
		return fmt.Errorf("%w: %w", errOptions, err) // e.g. an empty broker list, not a cluster state
	}
	defer cl.Close()
	adm := kadm.NewClient(cl)

	// A KRaft broker only accepts connections once it has caught up with the
	// metadata log and been unfenced, and it names a live broker as the
	// "controller" only when it knows of one.
	m, err := adm.BrokerMetadata(ctx)
	if err != nil {
		return fmt.Errorf("metadata: %w", err)
	}
	if len(m.Brokers) == 0 {
		return errors.New("metadata lists no brokers")
	}
	if len(m.Brokers) < minBrokers {
		return fmt.Errorf("metadata lists %d of %d brokers", len(m.Brokers), minBrokers)
	}
	if m.Controller < 0 {
		return errors.New("metadata names no controller")
	}
	// Listing topics goes through the same metadata path but for all topics;
	// it fails while the broker's metadata image is not yet usable.
	if _, err := adm.ListTopics(ctx); err != nil {
		return fmt.Errorf("list topics: %w", err)
	}
	return nil
}
