package connection_test

import (
	"log"
	"os"

	"github.com/eventline/eventline/connection"
	"github.com/eventline/eventline/consumers"
	"github.com/eventline/eventline/relay"
	"github.com/eventline/eventline/schemas"
)

// A service reads the same variables as the eventline CLI and hands the
// options to the libraries.
func Example() {
	s, err := connection.FromEnv(os.Getenv)
	if err != nil {
		log.Fatal(err) // names the variable, never a secret
	}
	reg, err := s.RegistryClient(os.Getenv("SCHEMA_REGISTRY_URL"))
	if err != nil {
		log.Fatal(err)
	}
	_ = relay.Config{KafkaOpts: s.Kafka}
	_ = consumers.Config{KafkaOpts: s.Kafka, Serde: schemas.NewSerde(reg)}
}
