package cli

import (
	"errors"
	"fmt"
	"io"
	"net/http"
	"syscall"

	"github.com/twmb/franz-go/pkg/sr"

	"github.com/eventline/eventline/connection"
	"github.com/eventline/eventline/internal/dsn"
)

// The connection settings (TLS, SASL, registry auth) come from the
// environment through the public connection package, which services
// embedding the libraries use too.

// connections reads them from env.
func connections(env *Env) (connection.Settings, error) {
	return connection.FromEnv(env.Getenv)
}

// registryFromEnv is registryClient for a command that needs only the
// registry.
func registryFromEnv(env *Env, rawURL string) (*sr.Client, error) {
	c, err := connections(env)
	if err != nil {
		return nil, err
	}
	return c.RegistryClient(rawURL)
}

// registryErr adds what the registry's refusal of a request means under
// the environment's settings: sr reports a 401 as its body's message
// alone ("Unauthorized"), which names neither the status nor the fix.
func registryErr(env *Env, err error) error {
	var re *sr.ResponseError
	if !errors.As(err, &re) {
		return err
	}
	set := func(name string) bool { return env.Getenv(name) != "" || env.Getenv(name+"_FILE") != "" }
	switch {
	case re.StatusCode == http.StatusUnauthorized && !set("SCHEMA_REGISTRY_BASIC_AUTH_USER_INFO") && !set("SCHEMA_REGISTRY_BEARER_TOKEN"):
		return fmt.Errorf("%w (HTTP 401: the schema registry requires credentials; set SCHEMA_REGISTRY_BASIC_AUTH_USER_INFO or SCHEMA_REGISTRY_BEARER_TOKEN, or their _FILE forms)", err)
	case re.StatusCode == http.StatusUnauthorized:
		return fmt.Errorf("%w (HTTP 401: the schema registry refused the credentials from SCHEMA_REGISTRY_BASIC_AUTH_USER_INFO or SCHEMA_REGISTRY_BEARER_TOKEN)", err)
	case re.StatusCode == http.StatusForbidden:
		return fmt.Errorf("%w (HTTP 403: the schema registry does not allow these credentials this request)", err)
	}
	return err
}

// databaseURL is the PostgreSQL connection string: flagValue
// (--database-url) when given, else DATABASE_URL or the contents of the
// file DATABASE_URL_FILE names. A password in the flag is refused, without
// showing it: ps shows every process's arguments to every user of the
// machine, and a command line ends up in shell histories and CI logs.
func databaseURL(env *Env, flagValue string) (string, error) {
	if flagValue != "" {
		if dsn.HasPassword(flagValue) {
			return "", errors.New("--database-url carries a password, which ps shows to every user of the machine: give the connection string in DATABASE_URL or DATABASE_URL_FILE, or the password alone in PGPASSWORD or a PGPASSFILE")
		}
		return flagValue, nil
	}
	if env.Getenv("DATABASE_URL_FILE") == "" {
		return env.Getenv("DATABASE_URL"), nil
	}
	return connection.Secret(env.Getenv, "DATABASE_URL")
}

// databaseURLUsage is the help of --database-url.
const databaseURLUsage = "PostgreSQL connection string, without a password (default: env DATABASE_URL, or the file DATABASE_URL_FILE names; a password goes there or in PGPASSWORD/PGPASSFILE)"

// kafkaErr adds what a bare connection error most likely means under the
// environment's settings: a broker that refuses SASL credentials may just
// close the connection (kfake does), which franz-go reports as EOF.
func kafkaErr(env *Env, err error) error {
	if err == nil {
		return nil
	}
	if mech := env.Getenv("KAFKA_SASL_MECHANISM"); mech != "" && (errors.Is(err, io.EOF) || errors.Is(err, syscall.ECONNRESET)) {
		return fmt.Errorf("%w (the broker closed the connection: with SASL %s this usually means it refused the credentials; check KAFKA_SASL_USERNAME and KAFKA_SASL_PASSWORD)", err, mech)
	}
	return err
}
