package interop_test

import (
	"bytes"
	"context"
	"encoding/hex"
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/sr"

	"github.com/eventline/eventline/internal/testevents"
	"github.com/eventline/eventline/internal/testkit"
	"github.com/eventline/eventline/schemas"
)

func TestMain(m *testing.M) { testkit.Main(m) }

var (
	pyOnce sync.Once
	pyPath string
	pyErr  error
)

// python returns the interpreter of the interop virtualenv, creating it on
// first use (pip installs from PyPI; later runs reuse the cache).
func python(t *testing.T) string {
	t.Helper()
	pyOnce.Do(func() {
		cmd := exec.Command("bash", filepath.Join("..", "..", "scripts", "interop", "venv.sh"))
		var stderr bytes.Buffer
		cmd.Stderr = &stderr
		out, err := cmd.Output()
		if err != nil {
			pyErr = err
			pyPath = stderr.String()
			return
		}
		pyPath = strings.TrimSpace(string(out))
	})
	if pyErr != nil {
		t.Fatalf("creating the interop virtualenv: %v\n%s", pyErr, pyPath)
	}
	return pyPath
}

// confluent runs one command of scripts/interop/confluent_interop.py.
func confluent(t *testing.T, cmd map[string]any, out any) {
	t.Helper()
	confluentAs(t, "", cmd, out)
}

// confluentAs is confluent with the registry client's basic.auth.user.info
// ("user:password"; none when empty), passed in the environment: argv is
// visible to every user of the machine.
func confluentAs(t *testing.T, userInfo string, cmd map[string]any, out any) {
	t.Helper()
	arg, err := json.Marshal(cmd)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	c := exec.CommandContext(ctx, python(t), filepath.Join("..", "..", "scripts", "interop", "confluent_interop.py"), string(arg))
	c.Env = testkit.WithoutEnv(os.Environ(), "SCHEMA_REGISTRY_BASIC_AUTH_USER_INFO")
	if userInfo != "" {
		c.Env = append(c.Env, "SCHEMA_REGISTRY_BASIC_AUTH_USER_INFO="+userInfo)
	}
	var stderr bytes.Buffer
	c.Stderr = &stderr
	b, err := c.Output()
	if err != nil {
		t.Fatalf("confluent %s: %v\n%s", cmd["mode"], err, stderr.String())
	}
	if err := json.Unmarshal(b, out); err != nil {
		t.Fatalf("confluent %s printed %q: %v", cmd["mode"], b, err)
	}
}

// selfContained is info's schema with the shared types it uses written
// inline (hamba's full JSON form of the resolved schema): what a producer
// without references registers. TicketOpened's file uses the shared
// Attachment by reference; references_test.go covers that form.
func selfContained(t *testing.T, info schemas.Info) string {
	t.Helper()
	b, err := json.Marshal(info.Schema)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

func sampleTicket() *testevents.TicketOpened {
	return &testevents.TicketOpened{
		TicketID:    "6f1c3a52-8a8e-4a57-9d8e-0c7b2f1a9e01",
		RequesterID: "0b9d2c1e-3f4a-4b5c-8d6e-7f8a9b0c1d2e",
		Attachments: []testevents.Attachment{
			{BlobID: "a4d3c2b1-0f9e-4d8c-b7a6-958473625140", Pages: 2, SizeBytes: 1999},
		},
		EstimateMinutes: 3998,
		Channel:         "MAIL",
		OpenedAt:        time.UnixMilli(1_790_000_000_123).UTC(),
	}
}

// Confluent's serializer registers through eventline's registry and frames
// the value; eventline's serde decodes those bytes into the generated type.
// Then the other way round: eventline encodes, Confluent's deserializer
// (fetching the writer schema by id from eventline's registry) reads it.
// Finally an incompatible registration through Confluent's client is refused
// with HTTP 409.
func TestConfluentPythonInterop(t *testing.T) {
	url := registryURL(t, nil)
	info, ok := testevents.Catalog().Lookup("helpdesk.tickets.TicketOpened")
	if !ok {
		t.Fatal("TicketOpened missing from the catalogue")
	}
	topic := "tickets.events"
	ticket := sampleTicket()
	record := map[string]any{
		"ticket_id": ticket.TicketID, "requester_id": ticket.RequesterID,
		"attachments":      []map[string]any{{"blob_id": ticket.Attachments[0].BlobID, "pages": 2, "size_bytes": 1999}},
		"estimate_minutes": 3998, "channel": "MAIL", "opened_at": ticket.OpenedAt.UnixMilli(),
	}

	var ser struct {
		Hex      string
		SchemaID int `json:"schema_id"`
	}
	confluent(t, map[string]any{"mode": "serialize", "registry": url, "topic": topic, "schema": selfContained(t, info), "record": record}, &ser)
	b, err := hex.DecodeString(ser.Hex)
	if err != nil {
		t.Fatal(err)
	}
	cl, err := sr.NewClient(sr.URLs(url))
	if err != nil {
		t.Fatal(err)
	}
	ss, err := cl.SchemaByVersion(context.Background(), topic+"-"+info.Name, -1)
	if err != nil {
		t.Fatalf("Confluent's serializer did not register %s-%s: %v", topic, info.Name, err)
	}
	if ss.ID != ser.SchemaID {
		t.Fatalf("bytes carry id %d, subject has id %d", ser.SchemaID, ss.ID)
	}
	serde := schemas.NewSerde(cl)
	var got testevents.TicketOpened
	if err := serde.Decode(context.Background(), b, &got); err != nil {
		t.Fatalf("eventline cannot decode Confluent's bytes: %v", err)
	}
	if got.TicketID != ticket.TicketID || got.EstimateMinutes != 3998 || !got.OpenedAt.Equal(ticket.OpenedAt) || len(got.Attachments) != 1 || got.Attachments[0].Pages != 2 {
		t.Fatalf("decoded %+v", got)
	}

	// eventline encodes under the same id; Confluent decodes.
	mine, err := schemas.Encode(ss.ID, info.Schema, ticket)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(mine, b) {
		t.Errorf("eventline's encoding differs from Confluent's:\n% x\n% x", mine, b)
	}
	var de struct{ Record map[string]any }
	confluent(t, map[string]any{"mode": "deserialize", "registry": url, "topic": topic, "hex": hex.EncodeToString(mine)}, &de)
	if de.Record["ticket_id"] != ticket.TicketID || de.Record["channel"] != "MAIL" || de.Record["opened_at"].(float64) != float64(ticket.OpenedAt.UnixMilli()) {
		t.Fatalf("Confluent decoded %v", de.Record)
	}

	incompatibleCheck(t, url, topic+"-"+info.Name)
}

// With Basic auth on, Confluent's serializer registers and frames through
// eventline's registry with basic.auth.user.info, and its deserializer
// reads the bytes back; without the credentials, or with a wrong password,
// every call fails with the registry's 401, which the client reports as
// SchemaRegistryError (HTTP 401, "Unauthorized").
func TestConfluentPythonBasicAuth(t *testing.T) {
	const user, pass = "interop", "py-pw-xyzzy"
	url := registryURL(t, map[string]string{user: pass})
	info, ok := testevents.Catalog().Lookup("helpdesk.tickets.TicketOpened")
	if !ok {
		t.Fatal("TicketOpened missing from the catalogue")
	}
	topic := "tickets.auth"
	ticket := sampleTicket()
	record := map[string]any{
		"ticket_id": ticket.TicketID, "requester_id": ticket.RequesterID,
		"attachments":      []map[string]any{{"blob_id": ticket.Attachments[0].BlobID, "pages": 2, "size_bytes": 1999}},
		"estimate_minutes": 3998, "channel": "MAIL", "opened_at": ticket.OpenedAt.UnixMilli(),
	}
	serialize := map[string]any{"mode": "serialize", "registry": url, "topic": topic, "schema": selfContained(t, info), "record": record}
	type pyError struct {
		HTTP    int
		Code    int
		Message string
	}

	for name, userInfo := range map[string]string{"no credentials": "", "wrong password": user + ":not-the-xyzzy"} {
		var out struct {
			Hex   string
			Error *pyError
		}
		confluentAs(t, userInfo, serialize, &out)
		if out.Error == nil || out.Error.HTTP != 401 || out.Error.Code != 401 || !strings.Contains(out.Error.Message, "Unauthorized") {
			t.Errorf("serialize, %s: %+v (error %+v), want HTTP 401 Unauthorized", name, out, out.Error)
		}
		var reg struct {
			ID    int
			Error *pyError
		}
		confluentAs(t, userInfo, map[string]any{"mode": "register", "registry": url, "subject": "s", "schema": selfContained(t, info)}, &reg)
		if reg.Error == nil || reg.Error.HTTP != 401 {
			t.Errorf("register, %s: %+v (error %+v), want HTTP 401", name, reg, reg.Error)
		}
	}

	var ser struct {
		Hex      string
		SchemaID int `json:"schema_id"`
		Error    *pyError
	}
	confluentAs(t, user+":"+pass, serialize, &ser)
	if ser.Error != nil || ser.Hex == "" {
		t.Fatalf("serialize with credentials: %+v (error %+v)", ser, ser.Error)
	}
	cl, err := sr.NewClient(sr.URLs(url), sr.BasicAuth(user, pass))
	if err != nil {
		t.Fatal(err)
	}
	ss, err := cl.SchemaByVersion(context.Background(), topic+"-"+info.Name, -1)
	if err != nil || ss.ID != ser.SchemaID {
		t.Fatalf("the registered subject: %+v, %v; Confluent's bytes carry id %d", ss, err, ser.SchemaID)
	}
	var de struct {
		Record map[string]any
		Error  *pyError
	}
	confluentAs(t, user+":"+pass, map[string]any{"mode": "deserialize", "registry": url, "topic": topic, "hex": ser.Hex}, &de)
	if de.Error != nil || de.Record["ticket_id"] != ticket.TicketID {
		t.Fatalf("deserialize with credentials: %+v (error %+v)", de.Record, de.Error)
	}
	// A reader without the credentials cannot fetch the writer schema.
	var anon struct {
		Record map[string]any
		Error  *pyError
	}
	confluentAs(t, "", map[string]any{"mode": "deserialize", "registry": url, "topic": topic, "hex": ser.Hex}, &anon)
	if anon.Error == nil || anon.Error.HTTP != 401 {
		t.Errorf("deserialize without credentials: %+v (error %+v), want HTTP 401", anon.Record, anon.Error)
	}
}
