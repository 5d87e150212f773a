package interop_test

import (
	"context"
	"net/http/httptest"
	"testing"

	"github.com/eventline/eventline/internal/testkit"
	"github.com/eventline/eventline/registry"
)

// registryURL starts eventline's embedded registry, persisted in a topic of
// the test broker (kfake, or real Kafka under make test-kafka), requiring
// Basic auth as one of users when not empty.
func registryURL(t *testing.T, users map[string]string) string {
	t.Helper()
	store, err := registry.NewKafkaStore(context.Background(), testkit.Kafka(t), testkit.UniqueName(t, "_schemas"))
	if err != nil {
		t.Fatal(err)
	}
	reg, err := registry.New(context.Background(), registry.Config{Store: store, Logger: testkit.Logger(t), BasicAuth: users})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(reg.Close)
	srv := httptest.NewServer(reg.Handler())
	t.Cleanup(srv.Close)
	return srv.URL
}

// incompatibleCheck registers, through Confluent's client, a version of the
// subject that adds a field without a default (not BACKWARD compatible):
// the registry must refuse it with HTTP 409, which Confluent's client
// surfaces as SchemaRegistryError.
func incompatibleCheck(t *testing.T, url, subject string) {
	t.Helper()
	breaking := `{"type":"record","name":"TicketOpened","namespace":"helpdesk.tickets","fields":[
		{"name":"ticket_id","type":{"type":"string","logicalType":"uuid"}},
		{"name":"severity","type":"string"}]}`
	var out struct {
		ID    int
		Error *struct {
			HTTP    int
			Code    int
			Message string
		}
	}
	confluent(t, map[string]any{"mode": "register", "registry": url, "subject": subject, "schema": breaking}, &out)
	if out.Error == nil {
		t.Fatalf("Confluent's client registered an incompatible schema as id %d", out.ID)
	}
	if out.Error.HTTP != 409 {
		t.Fatalf("incompatible registration answered HTTP %d (code %d: %s), want 409", out.Error.HTTP, out.Error.Code, out.Error.Message)
	}
}
