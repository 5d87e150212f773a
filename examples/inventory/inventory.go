// Package inventory is the demo's inventory service: it owns the stock and
// the reservations (its own PostgreSQL schema and outbox), reserves stock
// for new orders and confirms or releases reservations as orders settle.
package inventory

import (
	"github.com/eventline/eventline/examples/events"

	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"slices"
	"strings"
	"time"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/eventline/eventline/consumers"
	"github.com/eventline/eventline/migrate"
	"github.com/eventline/eventline/producer"
)

// Schema is the service's PostgreSQL schema (tables and outbox).
const Schema = "inventory"

// Group is the service's consumer group.
const Group = "inventory"

// Service holds the stock.
type Service struct {
	DB       *pgxpool.Pool
	Producer *producer.Producer
	// Fault, when set, is asked before each event is applied; an error
	// return fails that attempt (the demo uses it to send a share of the
	// events through the retry chain).
	Fault func(ev *consumers.Event) error
}

// Migrate creates the outbox, the consumer tables, stock and reservations.
// Stock can never go negative: the CHECK constraints refuse it.
func Migrate(ctx context.Context, db *pgxpool.Pool) error {
	if _, err := migrate.Migrate(ctx, db, migrate.Options{Schema: Schema}); err != nil {
		return err
	}
	_, err := db.Exec(ctx, `
		CREATE TABLE IF NOT EXISTS inventory.stock (
			product_id text PRIMARY KEY,
			available  int NOT NULL CHECK (available >= 0),
			reserved   int NOT NULL DEFAULT 0 CHECK (reserved >= 0),
			sold       int NOT NULL DEFAULT 0 CHECK (sold >= 0),
			added      int NOT NULL DEFAULT 0
		);
		CREATE TABLE IF NOT EXISTS inventory.reservations (
			order_id   uuid PRIMARY KEY,
			id         uuid NOT NULL UNIQUE,
			lines      jsonb NOT NULL,
			status     text NOT NULL CHECK (status IN ('reserved', 'rejected', 'confirmed', 'released')),
			created_at timestamptz NOT NULL,
			settled_at timestamptz
		);
		CREATE TABLE IF NOT EXISTS inventory.applications (
			event_id uuid PRIMARY KEY,
			n        int NOT NULL DEFAULT 1
		);`)
	return err
}

// AddStock adds quantity of a product and announces it.
func (s *Service) AddStock(ctx context.Context, productID string, quantity int32) (available int32, err error) {
	if productID == "" || quantity <= 0 {
		return 0, errors.New("product_id and a positive quantity are required")
	}
	err = pgx.BeginFunc(ctx, s.DB, func(tx pgx.Tx) error {
		if err := tx.QueryRow(ctx, `INSERT INTO inventory.stock (product_id, available, added) VALUES ($1, $2, $2)
			ON CONFLICT (product_id) DO UPDATE SET available = stock.available + $2, added = stock.added + $2 RETURNING available`,
			productID, quantity).Scan(&available); err != nil {
			return err
		}
		return s.Producer.Append(ctx, tx, producer.Message{AggregateType: "product", AggregateID: productID,
			Event: &events.StockReplenished{ProductID: productID, QuantityAdded: quantity, Available: available, OccurredAt: now()}})
	})
	return available, err
}

func now() time.Time { return time.Now().UTC().Truncate(time.Millisecond) }

// Handle applies orders.events.
func (s *Service) Handle(ctx context.Context, tx pgx.Tx, ev *consumers.Event) error {
	if s.Fault != nil {
		if err := s.Fault(ev); err != nil {
			return err
		}
	}
	// The consumer group applies several partitions' batches at once, and
	// one batch touches the stock rows of many orders: without an order
	// between batches they deadlock. The stock is one hot resource, so
	// batches take it whole first (re-entrant within the transaction).
	if _, err := tx.Exec(ctx, `SELECT pg_advisory_xact_lock(hashtext('eventline-demo-inventory-stock'))`); err != nil {
		return err
	}
	if _, err := tx.Exec(ctx, `INSERT INTO inventory.applications (event_id) VALUES ($1) ON CONFLICT (event_id) DO UPDATE SET n = inventory.applications.n + 1`, ev.ID); err != nil {
		return err
	}
	switch e := ev.Payload.(type) {
	case *events.OrderCreated:
		return s.reserve(ctx, tx, e)
	case *events.OrderConfirmed:
		return s.settle(ctx, tx, e.OrderID, "confirmed")
	case *events.OrderCancelled:
		return s.settle(ctx, tx, e.OrderID, "released")
	}
	return nil
}

// reserve takes every line's quantity or nothing. Stock rows are locked in
// product order, so concurrent reservations cannot deadlock.
func (s *Service) reserve(ctx context.Context, tx pgx.Tx, e *events.OrderCreated) error {
	lines := slices.Clone(e.Lines)
	slices.SortFunc(lines, func(a, b events.OrderLine) int { return strings.Compare(a.ProductID, b.ProductID) })
	ok := true
	for _, l := range lines {
		var available int32
		err := tx.QueryRow(ctx, `SELECT available FROM inventory.stock WHERE product_id = $1 FOR UPDATE`, l.ProductID).Scan(&available)
		if errors.Is(err, pgx.ErrNoRows) || (err == nil && available < l.Quantity) {
			ok = false
			continue
		}
		if err != nil {
			return err
		}
	}
	linesJSON, _ := json.Marshal(e.Lines)
	resID := uuid.New()
	if !ok {
		if _, err := tx.Exec(ctx, `INSERT INTO inventory.reservations (order_id, id, lines, status, created_at, settled_at)
			VALUES ($1, $2, $3, 'rejected', $4, $4)`, e.OrderID, resID, linesJSON, now()); err != nil {
			return err
		}
		return s.Producer.Append(ctx, tx, producer.Message{AggregateType: "reservation", AggregateID: e.OrderID,
			Event: &events.InventoryReleased{OrderID: e.OrderID, Lines: e.Lines, Reason: events.ReleaseReasonOutOfStock, ReleasedAt: now()}})
	}
	msgs := []producer.Message{{AggregateType: "reservation", AggregateID: e.OrderID,
		Event: &events.InventoryReserved{ReservationID: resID.String(), OrderID: e.OrderID, Lines: e.Lines, ReservedAt: now(), ExpiresAt: now().Add(15 * time.Minute)}}}
	for _, l := range lines {
		var left int32
		if err := tx.QueryRow(ctx, `UPDATE inventory.stock SET available = available - $2, reserved = reserved + $2 WHERE product_id = $1 RETURNING available`,
			l.ProductID, l.Quantity).Scan(&left); err != nil {
			return err
		}
		if left == 0 {
			msgs = append(msgs, producer.Message{AggregateType: "product", AggregateID: l.ProductID,
				Event: &events.StockDepleted{ProductID: l.ProductID, Available: 0, Threshold: 0, OccurredAt: now()}})
		}
	}
	if _, err := tx.Exec(ctx, `INSERT INTO inventory.reservations (order_id, id, lines, status, created_at) VALUES ($1, $2, $3, 'reserved', $4)`,
		e.OrderID, resID, linesJSON, now()); err != nil {
		return err
	}
	return s.Producer.Append(ctx, tx, msgs...)
}

// settle moves a reservation from reserved to confirmed (sold) or released
// (back to available) exactly once: the status guard makes a second
// attempt a no-op.
func (s *Service) settle(ctx context.Context, tx pgx.Tx, orderID, to string) error {
	var resID uuid.UUID
	var linesJSON []byte
	err := tx.QueryRow(ctx, `UPDATE inventory.reservations SET status = $2, settled_at = $3 WHERE order_id = $1 AND status = 'reserved'
		RETURNING id, lines`, orderID, to, now()).Scan(&resID, &linesJSON)
	if errors.Is(err, pgx.ErrNoRows) {
		return nil // rejected, or settled already
	}
	if err != nil {
		return err
	}
	var lines []events.OrderLine
	if err := json.Unmarshal(linesJSON, &lines); err != nil {
		return consumers.Permanent(fmt.Errorf("reservation %s has unreadable lines: %w", resID, err))
	}
	slices.SortFunc(lines, func(a, b events.OrderLine) int { return strings.Compare(a.ProductID, b.ProductID) })
	for _, l := range lines {
		q := `UPDATE inventory.stock SET reserved = reserved - $2, sold = sold + $2 WHERE product_id = $1`
		if to == "released" {
			q = `UPDATE inventory.stock SET reserved = reserved - $2, available = available + $2 WHERE product_id = $1`
		}
		if _, err := tx.Exec(ctx, q, l.ProductID, l.Quantity); err != nil {
			return err
		}
	}
	if to == "confirmed" {
		return s.Producer.Append(ctx, tx, producer.Message{AggregateType: "reservation", AggregateID: orderID,
			Event: &events.InventoryConfirmed{ReservationID: resID.String(), OrderID: orderID, Lines: lines, ConfirmedAt: now()}})
	}
	rid := resID.String()
	return s.Producer.Append(ctx, tx, producer.Message{AggregateType: "reservation", AggregateID: orderID,
		Event: &events.InventoryReleased{ReservationID: &rid, OrderID: orderID, Lines: lines, Reason: events.ReleaseReasonOrderCancelled, ReleasedAt: now()}})
}

// HTTP returns the service's API: POST /stock {product_id, quantity},
// GET /stock/{product_id}.
func (s *Service) HTTP() http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("POST /stock", func(w http.ResponseWriter, r *http.Request) {
		var req struct {
			ProductID string `json:"product_id"`
			Quantity  int32  `json:"quantity"`
		}
		if err := json.NewDecoder(http.MaxBytesReader(w, r.Body, 1<<16)).Decode(&req); err != nil {
			http.Error(w, "bad JSON: "+err.Error(), http.StatusBadRequest)
			return
		}
		if req.ProductID == "" || req.Quantity <= 0 {
			http.Error(w, "product_id and a positive quantity are required", http.StatusBadRequest)
			return
		}
		available, err := s.AddStock(r.Context(), req.ProductID, req.Quantity)
		if err != nil {
			http.Error(w, "could not add stock: "+err.Error(), http.StatusServiceUnavailable)
			return
		}
		w.Header().Set("Content-Type", "application/json")
		_ = json.NewEncoder(w).Encode(map[string]any{"product_id": req.ProductID, "available": available})
	})
	mux.HandleFunc("GET /stock/{product}", func(w http.ResponseWriter, r *http.Request) {
		var available, reserved, sold int32
		err := s.DB.QueryRow(r.Context(), `SELECT available, reserved, sold FROM inventory.stock WHERE product_id = $1`, r.PathValue("product")).
			Scan(&available, &reserved, &sold)
		if errors.Is(err, pgx.ErrNoRows) {
			http.Error(w, "no such product", http.StatusNotFound)
			return
		}
		if err != nil {
			http.Error(w, "could not read stock", http.StatusServiceUnavailable)
			return
		}
		w.Header().Set("Content-Type", "application/json")
		_ = json.NewEncoder(w).Encode(map[string]any{"product_id": r.PathValue("product"), "available": available, "reserved": reserved, "sold": sold})
	})
	return mux
}
