// Package orders is the demo's orders service: it owns the orders (its own
// PostgreSQL schema and outbox), takes orders over HTTP and reacts to the
// inventory's answers. It uses eventline exactly as a service would: the
// producer in its business transactions, a consumer group for
// inventory.events, and (run by the demo) a relay for its outbox.
package orders

import (
	"github.com/eventline/eventline/examples/events"

	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"time"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/eventline/eventline/consumers"
	"github.com/eventline/eventline/migrate"
	"github.com/eventline/eventline/producer"
)

// Schema is the service's PostgreSQL schema (tables and outbox).
const Schema = "orders"

// Group is the service's consumer group.
const Group = "orders"

// Service holds the orders.
type Service struct {
	DB       *pgxpool.Pool
	Producer *producer.Producer
	// DeclinePayment, when set, is the payment check run once stock is
	// reserved: true cancels the order (PAYMENT_FAILED) and the
	// inventory releases its reservation.
	DeclinePayment func(orderID string) bool
}

// Migrate creates the outbox, the consumer tables and the orders table.
func Migrate(ctx context.Context, db *pgxpool.Pool) error {
	if _, err := migrate.Migrate(ctx, db, migrate.Options{Schema: Schema}); err != nil {
		return err
	}
	_, err := db.Exec(ctx, `
		CREATE TABLE IF NOT EXISTS orders.orders (
			id          uuid PRIMARY KEY,
			customer_id text NOT NULL,
			lines       jsonb NOT NULL,
			total_minor bigint NOT NULL,
			currency    text NOT NULL,
			status      text NOT NULL CHECK (status IN ('pending', 'confirmed', 'cancelled')),
			reason      text,
			created_at  timestamptz NOT NULL,
			terminal_at timestamptz
		);
		-- One row per event this service applied; the demo checks n = 1.
		CREATE TABLE IF NOT EXISTS orders.applications (
			event_id uuid PRIMARY KEY,
			n        int NOT NULL DEFAULT 1
		);`)
	return err
}

// Line is one product of an order.
type Line struct {
	ProductID      string `json:"product_id"`
	Quantity       int32  `json:"quantity"`
	UnitPriceMinor int64  `json:"unit_price_minor"`
}

// CreateRequest is the body of POST /orders.
type CreateRequest struct {
	CustomerID string `json:"customer_id"`
	Lines      []Line `json:"lines"`
	Currency   string `json:"currency"`
}

// Order is what GET /orders/{id} returns.
type Order struct {
	ID         string     `json:"id"`
	CustomerID string     `json:"customer_id"`
	Lines      []Line     `json:"lines"`
	TotalMinor int64      `json:"total_minor"`
	Currency   string     `json:"currency"`
	Status     string     `json:"status"`
	Reason     *string    `json:"reason,omitempty"`
	CreatedAt  time.Time  `json:"created_at"`
	TerminalAt *time.Time `json:"terminal_at,omitempty"`
}

// ErrInvalid is a request the service refuses (HTTP 400).
var ErrInvalid = errors.New("invalid order")

// Create stores a pending order and its OrderCreated event in one
// transaction.
func (s *Service) Create(ctx context.Context, req CreateRequest) (uuid.UUID, error) {
	if req.CustomerID == "" || len(req.Lines) == 0 {
		return uuid.Nil, fmt.Errorf("%w: customer_id and at least one line are required", ErrInvalid)
	}
	if req.Currency == "" {
		req.Currency = "EUR"
	}
	var total int64
	lines := make([]events.OrderLine, len(req.Lines))
	for i, l := range req.Lines {
		if l.ProductID == "" || l.Quantity <= 0 || l.UnitPriceMinor < 0 {
			return uuid.Nil, fmt.Errorf("%w: line %d needs a product_id, a positive quantity and a price", ErrInvalid, i+1)
		}
		total += int64(l.Quantity) * l.UnitPriceMinor
		lines[i] = events.OrderLine{ProductID: l.ProductID, Quantity: l.Quantity, UnitPriceMinor: l.UnitPriceMinor}
	}
	id := uuid.New()
	now := time.Now().UTC().Truncate(time.Millisecond)
	linesJSON, _ := json.Marshal(req.Lines)
	err := pgx.BeginFunc(ctx, s.DB, func(tx pgx.Tx) error {
		if _, err := tx.Exec(ctx, `INSERT INTO orders.orders (id, customer_id, lines, total_minor, currency, status, created_at)
			VALUES ($1, $2, $3, $4, $5, 'pending', $6)`, id, req.CustomerID, linesJSON, total, req.Currency, now); err != nil {
			return err
		}
		return s.Producer.Append(ctx, tx, producer.Message{AggregateType: "order", AggregateID: id.String(), AggregateVersion: 1,
			Event: &events.OrderCreated{OrderID: id.String(), CustomerID: req.CustomerID, Lines: lines, TotalMinor: total, Currency: req.Currency, CreatedAt: now}})
	})
	if err != nil {
		return uuid.Nil, fmt.Errorf("creating order: %w", err)
	}
	return id, nil
}

// Get returns one order (pgx.ErrNoRows when there is none).
func (s *Service) Get(ctx context.Context, id uuid.UUID) (Order, error) {
	var o Order
	var lines []byte
	err := s.DB.QueryRow(ctx, `SELECT id::text, customer_id, lines, total_minor, currency, status, reason, created_at, terminal_at
		FROM orders.orders WHERE id = $1`, id).Scan(&o.ID, &o.CustomerID, &lines, &o.TotalMinor, &o.Currency, &o.Status, &o.Reason, &o.CreatedAt, &o.TerminalAt)
	if err != nil {
		return o, err
	}
	err = json.Unmarshal(lines, &o.Lines)
	return o, err
}

// Handle applies inventory.events: a reservation confirms the order, a
// release for lack of stock cancels it. Each decision is one transition
// from pending, so a redelivered or reordered answer cannot flip a
// terminal order.
func (s *Service) Handle(ctx context.Context, tx pgx.Tx, ev *consumers.Event) error {
	if _, err := tx.Exec(ctx, `INSERT INTO orders.applications (event_id) VALUES ($1) ON CONFLICT (event_id) DO UPDATE SET n = orders.applications.n + 1`, ev.ID); err != nil {
		return err
	}
	now := time.Now().UTC().Truncate(time.Millisecond)
	switch e := ev.Payload.(type) {
	case *events.InventoryReserved:
		if s.DeclinePayment != nil && s.DeclinePayment(e.OrderID) {
			return s.cancel(ctx, tx, e.OrderID, events.CancelReasonPaymentFailed, now)
		}
		var total int64
		var currency string
		err := tx.QueryRow(ctx, `UPDATE orders.orders SET status = 'confirmed', terminal_at = $2 WHERE id = $1 AND status = 'pending'
			RETURNING total_minor, currency`, e.OrderID, now).Scan(&total, &currency)
		if errors.Is(err, pgx.ErrNoRows) {
			return nil // already terminal
		}
		if err != nil {
			return err
		}
		return s.Producer.Append(ctx, tx, producer.Message{AggregateType: "order", AggregateID: e.OrderID, AggregateVersion: 2,
			Event: &events.OrderConfirmed{OrderID: e.OrderID, ReservationID: e.ReservationID, TotalMinor: total, Currency: currency, ConfirmedAt: now}})
	case *events.InventoryReleased:
		if e.Reason != events.ReleaseReasonOutOfStock {
			return nil // a release after our own cancellation: nothing to decide
		}
		return s.cancel(ctx, tx, e.OrderID, events.CancelReasonOutOfStock, now)
	}
	return nil // other inventory notifications do not concern orders
}

// cancel moves a pending order to cancelled and announces it.
func (s *Service) cancel(ctx context.Context, tx pgx.Tx, orderID string, reason events.CancelReason, now time.Time) error {
	var customer string
	err := tx.QueryRow(ctx, `UPDATE orders.orders SET status = 'cancelled', reason = $3, terminal_at = $2 WHERE id = $1 AND status = 'pending'
		RETURNING customer_id`, orderID, now, string(reason)).Scan(&customer)
	if errors.Is(err, pgx.ErrNoRows) {
		return nil // already terminal
	}
	if err != nil {
		return err
	}
	return s.Producer.Append(ctx, tx, producer.Message{AggregateType: "order", AggregateID: orderID, AggregateVersion: 2,
		Event: &events.OrderCancelled{OrderID: orderID, CustomerID: customer, Reason: reason, CancelledAt: now}})
}

// HTTP returns the service's API: POST /orders, GET /orders/{id}.
func (s *Service) HTTP() http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("POST /orders", func(w http.ResponseWriter, r *http.Request) {
		var req CreateRequest
		if err := json.NewDecoder(http.MaxBytesReader(w, r.Body, 1<<20)).Decode(&req); err != nil {
			http.Error(w, "bad JSON: "+err.Error(), http.StatusBadRequest)
			return
		}
		id, err := s.Create(r.Context(), req)
		switch {
		case errors.Is(err, ErrInvalid) || errors.Is(err, producer.ErrInvalidEvent):
			http.Error(w, err.Error(), http.StatusBadRequest)
			return
		case err != nil:
			http.Error(w, "could not create the order: "+err.Error(), http.StatusServiceUnavailable)
			return
		}
		w.Header().Set("Content-Type", "application/json")
		w.Header().Set("Location", "/orders/"+id.String())
		w.WriteHeader(http.StatusCreated)
		_ = json.NewEncoder(w).Encode(map[string]string{"id": id.String()})
	})
	mux.HandleFunc("GET /orders/{id}", func(w http.ResponseWriter, r *http.Request) {
		id, err := uuid.Parse(r.PathValue("id"))
		if err != nil {
			http.Error(w, "order ids are UUIDs", http.StatusBadRequest)
			return
		}
		o, err := s.Get(r.Context(), id)
		switch {
		case errors.Is(err, pgx.ErrNoRows):
			http.Error(w, "no such order", http.StatusNotFound)
			return
		case err != nil:
			http.Error(w, "could not read the order", http.StatusServiceUnavailable)
			return
		}
		w.Header().Set("Content-Type", "application/json")
		_ = json.NewEncoder(w).Encode(o)
	})
	return mux
}
