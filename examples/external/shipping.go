// Package shipping is a service of another team, in its own Go module,
// that embeds eventline: its own schemas (schemas/*.avsc), its own
// generated types (events_gen.go), its own pipeline file (eventline.yaml).
// It imports eventline's public packages only, as any team's module must.
//
// The service records dispatched shipments and appends a
// ShipmentDispatched event in the same transaction; its tracking
// projection consumes shipping.shipments, including ShipmentDelivered
// events that the carrier integration (another team's plain Kafka
// producer, no eventline headers) writes to the same topic.
package shipping

import (
	"context"
	"embed"
	"errors"
	"fmt"
	"time"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/twmb/franz-go/pkg/sr"

	"github.com/eventline/eventline/consumers"
	"github.com/eventline/eventline/migrate"
	"github.com/eventline/eventline/pipeline"
	"github.com/eventline/eventline/producer"
	"github.com/eventline/eventline/schemas"
)

// README:begin embed

// The generated file's first line is followed by a blank line so that its
// "Code generated" comment is not taken for the package's doc.
//go:generate sh -c "go tool avrogen -pkg shipping -o events_gen.go -tags json:snake -encoders -fullschema -strict-types -enums schemas/*.avsc && sed -i '1s/$/\\n/' events_gen.go"

// The pipeline file and the schema files, embedded from this package's
// directory (go:embed reaches no parent directory).
//
//go:embed schemas/*.avsc eventline.yaml
var files embed.FS

const (
	// Schema is the PostgreSQL schema of the service's tables and its outbox.
	Schema = "shipping"
	// Topic carries the shipments' events (eventline.yaml).
	Topic = "shipping.shipments"
	// Group is the tracking projection's consumer group.
	Group = "shipping-tracking"
)

// Pipeline parses the embedded eventline.yaml.
func Pipeline() (*pipeline.Pipeline, error) { return pipeline.LoadFS(files, "eventline.yaml") }

// Catalog loads the embedded schema files, from the directories
// eventline.yaml names (schemas.dir, and schemas.shared when set).
func Catalog() (*schemas.Catalog, error) {
	pipe, err := Pipeline()
	if err != nil {
		return nil, err
	}
	return schemas.LoadCatalog(files, pipe.SchemaDirs()...)
}

// README:end embed

// README:begin setup

// Migrate creates eventline's tables (outbox, dedupe) and the service's own
// in Schema.
func Migrate(ctx context.Context, db *pgxpool.Pool) error {
	if _, err := migrate.Migrate(ctx, db, migrate.Options{Schema: Schema}); err != nil {
		return err
	}
	_, err := db.Exec(ctx, `
		CREATE TABLE IF NOT EXISTS shipping.shipments (id uuid PRIMARY KEY, order_ref text NOT NULL, parcels int NOT NULL, carrier text NOT NULL);
		CREATE TABLE IF NOT EXISTS shipping.tracking (shipment_id uuid PRIMARY KEY, status text NOT NULL, parcels int,
			carrier text, signed_by text, applications int NOT NULL DEFAULT 1)`)
	return err
}

// NewProducer builds the service's producer, in the outbox's mode (the
// relay's). autoRegister is for development; in production CI registers
// the schemas (`eventline schemas register`) and services only look them up.
func NewProducer(ctx context.Context, db *pgxpool.Pool, reg *sr.Client, mode producer.Mode, autoRegister bool) (*producer.Producer, error) {
	pipe, err := Pipeline()
	if err != nil {
		return nil, err
	}
	cat, err := Catalog()
	if err != nil {
		return nil, err
	}
	return producer.New(ctx, producer.Config{DB: db, Pipeline: pipe, Registry: reg, Catalog: cat, Schema: Schema,
		Mode: mode, Events: []schemas.Event{&ShipmentDispatched{}}, AutoRegister: autoRegister})
}

// README:end setup

// README:begin dispatch

// Service is the shipping service's write side.
type Service struct {
	DB       *pgxpool.Pool
	Producer *producer.Producer
}

// Dispatch records a shipment and its event in one transaction.
func (s *Service) Dispatch(ctx context.Context, orderRef string, parcels int32, carrier Carrier) (uuid.UUID, error) {
	id := uuid.New()
	err := pgx.BeginFunc(ctx, s.DB, func(tx pgx.Tx) error {
		if _, err := tx.Exec(ctx, `INSERT INTO shipping.shipments (id, order_ref, parcels, carrier) VALUES ($1, $2, $3, $4)`, id, orderRef, parcels, string(carrier)); err != nil {
			return err
		}
		return s.Producer.Append(ctx, tx, producer.Message{AggregateType: "shipment", AggregateID: id.String(), AggregateVersion: 1,
			Event: &ShipmentDispatched{ShipmentID: id.String(), OrderRef: orderRef, Parcels: parcels, Carrier: carrier, DispatchedAt: time.Now().UTC().Truncate(time.Millisecond)}})
	})
	if err != nil {
		return uuid.Nil, fmt.Errorf("shipping: dispatch: %w", err)
	}
	return id, nil
}

// README:end dispatch

// README:begin tracking

// Tracking is the projection's handlers: typed, one per event type.
func Tracking() *consumers.Mux {
	mux := consumers.NewMux()
	consumers.Handle(mux, func(ctx context.Context, tx pgx.Tx, _ *consumers.Event, e *ShipmentDispatched) error {
		_, err := tx.Exec(ctx, `INSERT INTO shipping.tracking (shipment_id, status, parcels, carrier) VALUES ($1, 'in_transit', $2, $3)
			ON CONFLICT (shipment_id) DO UPDATE SET parcels = EXCLUDED.parcels, carrier = EXCLUDED.carrier, applications = tracking.applications + 1`,
			e.ShipmentID, e.Parcels, string(e.Carrier))
		return err
	})
	consumers.Handle(mux, func(ctx context.Context, tx pgx.Tx, _ *consumers.Event, e *ShipmentDelivered) error {
		if e.ShipmentID == "" {
			return consumers.Permanent(errors.New("delivery without a shipment id"))
		}
		_, err := tx.Exec(ctx, `INSERT INTO shipping.tracking (shipment_id, status, signed_by) VALUES ($1, 'delivered', $2)
			ON CONFLICT (shipment_id) DO UPDATE SET status = 'delivered', signed_by = EXCLUDED.signed_by, applications = tracking.applications + 1`,
			e.ShipmentID, e.SignedBy)
		return err
	})
	return mux
}

// README:end tracking
