// Command shipping is the shipping service as it is deployed: it reads its
// settings from the environment, migrates its database, and runs its write
// side (a small HTTP API whose dispatches append events), its relay and its
// tracking projection's consumer group in one process, until SIGINT or
// SIGTERM.
//
//	DATABASE_URL             PostgreSQL (its TLS in the URL: sslmode=verify-full&sslrootcert=…)
//	KAFKA_BROKERS            seed brokers, comma-separated
//	SCHEMA_REGISTRY_URL      the schema registry, where CI registered the schemas
//	EVENTLINE_MODE           the outbox's mode: poll (default) or logical
//	EVENTLINE_EMITTER_ROLES  logical mode: the roles that may write events (this
//	                         service's and the relay's), comma-separated; granting
//	                         needs a superuser, so where the service has none, leave
//	                         it empty and have one run `eventline migrate --mode
//	                         logical --emitter-role ROLE` once
//	SHIPPING_ADDR            the HTTP API's address (default :8080)
//	KAFKA_TLS…, KAFKA_SASL_…, SCHEMA_REGISTRY_BASIC_AUTH_USER_INFO…
//	                         TLS and credentials, as package connection reads them
//
// The API: POST /shipments {"order_ref": "o-1", "parcels": 2, "carrier": "DHL"}
// records a shipment and its ShipmentDispatched event, and answers 201
// {"id": "<shipment id>"}.
package main

import (
	"cmp"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"os"
	"os/signal"
	"slices"
	"strings"
	"syscall"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"
	"golang.org/x/sync/errgroup"

	"github.com/eventline/eventline/connection"
	"github.com/eventline/eventline/consumers"
	"github.com/eventline/eventline/health"
	"github.com/eventline/eventline/migrate"
	"github.com/eventline/eventline/relay"
	"github.com/eventline/eventline/schemas"

	"example.com/shipping"
)

// README:begin main

func main() {
	log := slog.New(slog.NewTextHandler(os.Stderr, nil))
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	err := run(ctx, os.Getenv, log)
	stop()
	if err != nil {
		log.Error("shipping: stopped", "err", err)
		os.Exit(1)
	}
	log.Info("shipping: stopped")
}

// README:end main

// shutdownTimeout bounds the relay's and the group's wait for their
// in-flight batches once a signal came, and the HTTP API's for its requests.
const shutdownTimeout = 10 * time.Second

// run is the service until ctx ends (nil) or a part of it fails (the
// error, after the other parts stopped).
func run(ctx context.Context, getenv func(string) string, log *slog.Logger) error {
	// README:begin settings
	for _, name := range []string{"KAFKA_BROKERS", "SCHEMA_REGISTRY_URL"} {
		if getenv(name) == "" {
			return fmt.Errorf("%s is not set", name)
		}
	}
	// The database URL holds a password: DATABASE_URL_FILE (a mounted
	// secret, as the eventline chart wires it) or DATABASE_URL.
	dbURL, err := connection.Secret(getenv, "DATABASE_URL")
	if err != nil || dbURL == "" {
		return fmt.Errorf("DATABASE_URL (or DATABASE_URL_FILE) is not set or unreadable: %v", err)
	}
	brokers := strings.Split(getenv("KAFKA_BROKERS"), ",")
	// One mode for the producer and the relay, in the CLI's words.
	mode, err := migrate.ParseMode(getenv("EVENTLINE_MODE"))
	if err != nil {
		return fmt.Errorf("EVENTLINE_MODE: %w", err)
	}
	// How the group's members share partitions (classic, consumer or
	// auto); static membership only under stable pod names (StatefulSet).
	protocol, err := consumers.ParseProtocol(getenv("EVENTLINE_GROUP_PROTOCOL"))
	if err != nil {
		return fmt.Errorf("EVENTLINE_GROUP_PROTOCOL: %w", err)
	}
	// TLS, SASL and the registry's credentials, under the variables the
	// eventline CLI reads (secrets from the environment or files, never
	// from flags).
	conn, err := connection.FromEnv(getenv)
	if err != nil {
		return err
	}
	reg, err := conn.RegistryClient(getenv("SCHEMA_REGISTRY_URL"))
	if err != nil {
		return err
	}
	db, err := pgxpool.New(ctx, dbURL)
	if err != nil {
		return err
	}
	defer db.Close()
	// README:end settings

	// README:begin migrate
	// The service's tables and eventline's (outbox, dedupe) in its schema;
	// re-running is a no-op.
	if err := shipping.Migrate(ctx, db); err != nil {
		return fmt.Errorf("migrations: %w", err)
	}
	if mode == migrate.ModeLogical {
		// The replication slot, before the first event is appended
		// (PostgreSQL decodes nothing written before it), and who may
		// write events: the relay refuses a database where every role may.
		var emitters []string
		if roles := getenv("EVENTLINE_EMITTER_ROLES"); roles != "" {
			emitters = strings.Split(roles, ",")
		}
		if _, err := migrate.SetupLogical(ctx, db, migrate.LogicalOptions{Schema: shipping.Schema, Emitters: emitters}); err != nil {
			return fmt.Errorf("logical mode: %w", err)
		}
	}
	// README:end migrate

	// README:begin parts
	pipe, err := shipping.Pipeline()
	if err != nil {
		return err
	}
	// Lookup-only: CI registered the schemas (`eventline schemas register`).
	prod, err := shipping.NewProducer(ctx, db, reg, mode, false)
	if err != nil {
		return err
	}
	svc := &shipping.Service{DB: db, Producer: prod}

	// The relay: one leads per outbox (the others stand by); it creates
	// the pipeline's topics.
	rl, err := relay.New(relay.Config{Mode: mode, DatabaseURL: dbURL, Brokers: brokers, KafkaOpts: conn.Kafka,
		Schema: shipping.Schema, Pipeline: pipe, ShutdownTimeout: shutdownTimeout, Logger: log})
	if err != nil {
		return err
	}
	defer rl.Close() // after Run returned

	// The tracking projection: typed handlers, applied exactly once.
	group, err := consumers.New(consumers.Config{Group: shipping.Group, Topics: []string{shipping.Topic}, Brokers: brokers,
		KafkaOpts: conn.Kafka, DB: db, Schema: shipping.Schema, Serde: schemas.NewSerde(reg), Mux: shipping.Tracking(),
		Pipeline: pipe, CreateTopics: true, ShutdownTimeout: shutdownTimeout, Logger: log,
		Protocol: protocol, InstanceID: getenv("EVENTLINE_INSTANCE_ID")})
	if err != nil {
		return err
	}
	// README:end parts

	// README:begin run
	ln, err := net.Listen("tcp", cmp.Or(getenv("SHIPPING_ADDR"), ":8080"))
	if err != nil {
		return err
	}
	srv := &http.Server{Handler: api(svc, log), ReadHeaderTimeout: 5 * time.Second}
	// Kubernetes' probes on their own port (EVENTLINE_METRICS_ADDR, as the
	// eventline chart sets it): /healthz (live) and /readyz (ready) from
	// the relay's and the group's own answers.
	var probes health.Probes
	probes.Add("relay", rl)
	probes.Add("tracking", group)
	probeLn, err := net.Listen("tcp", cmp.Or(getenv("EVENTLINE_METRICS_ADDR"), ":9464"))
	if err != nil {
		ln.Close()
		return err
	}
	probeSrv := &http.Server{Handler: probes.Handler(), ReadHeaderTimeout: 5 * time.Second}
	log.Info("shipping: serving", "addr", ln.Addr().String(), "probes", probeLn.Addr().String(), "mode", mode)

	// Side by side until a signal ends ctx, or one part fails: then the
	// others are stopped and its error is returned. The relay and the group
	// return once their in-flight batches are done (ShutdownTimeout).
	parts, ctx := errgroup.WithContext(ctx)
	parts.Go(func() error { return stopped("relay", rl.Run(ctx)) })
	parts.Go(func() error { return stopped("consumer group", group.Run(ctx)) })
	for _, s := range []struct {
		srv *http.Server
		ln  net.Listener
	}{{srv, ln}, {probeSrv, probeLn}} {
		parts.Go(func() error {
			if err := s.srv.Serve(s.ln); !errors.Is(err, http.ErrServerClosed) {
				return stopped("http", err)
			}
			return nil
		})
		parts.Go(func() error {
			<-ctx.Done()
			stop, cancel := context.WithTimeout(context.WithoutCancel(ctx), shutdownTimeout)
			defer cancel()
			return s.srv.Shutdown(stop)
		})
	}
	return parts.Wait()
	// README:end run
}

// stopped names the part whose Run failed.
func stopped(part string, err error) error {
	if err != nil {
		return fmt.Errorf("%s: %w", part, err)
	}
	return nil
}

// api serves POST /shipments.
func api(svc *shipping.Service, log *slog.Logger) http.Handler {
	carriers := []shipping.Carrier{shipping.CarrierDhl, shipping.CarrierUps, shipping.CarrierPostnl, shipping.CarrierOther}
	mux := http.NewServeMux()
	mux.HandleFunc("POST /shipments", func(w http.ResponseWriter, r *http.Request) {
		var req struct {
			OrderRef string           `json:"order_ref"`
			Parcels  int32            `json:"parcels"`
			Carrier  shipping.Carrier `json:"carrier"`
		}
		if err := json.NewDecoder(http.MaxBytesReader(w, r.Body, 1<<16)).Decode(&req); err != nil ||
			req.OrderRef == "" || req.Parcels < 1 || !slices.Contains(carriers, req.Carrier) {
			http.Error(w, `want {"order_ref": "…", "parcels": n > 0, "carrier": "DHL", "UPS", "POSTNL" or "OTHER"}`, http.StatusBadRequest)
			return
		}
		id, err := svc.Dispatch(r.Context(), req.OrderRef, req.Parcels, req.Carrier)
		if err != nil {
			log.Error("shipping: dispatch failed", "err", err)
			http.Error(w, "dispatch failed", http.StatusInternalServerError)
			return
		}
		w.Header().Set("Content-Type", "application/json")
		w.WriteHeader(http.StatusCreated)
		_ = json.NewEncoder(w).Encode(map[string]string{"id": id.String()})
	})
	return mux
}
