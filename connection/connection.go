// Package connection reads the settings that reach a secured Kafka
// cluster and schema registry (TLS, SASL, registry authentication) from the
// environment, under the names the eventline CLI uses, and turns them into
// franz-go and sr options: one vocabulary for the CLI and for the services
// that embed eventline's libraries.
//
//	s, err := connection.FromEnv(os.Getenv)
//	reg, err := s.RegistryClient(os.Getenv("SCHEMA_REGISTRY_URL")) // producer.Config.Registry, schemas.NewSerde
//	relay.Config{KafkaOpts: s.Kafka, ...}; consumers.Config{KafkaOpts: s.Kafka, ...}
//
// Settings come from the environment only: secrets never go on a command
// line (where ps shows them), and each secret can come from a file instead
// (VAR_FILE, at most 64 KiB), as container platforms mount them. The TLS
// and SASL machinery is franz-go's (kgo.DialTLSConfig, pkg/sasl/*) and sr's
// (DialTLSConfig, BasicAuth, BearerToken); this package only maps variables
// onto it.
//
//	KAFKA_TLS                       boolean: TLS with the system's roots (implied by the other KAFKA_TLS_* settings)
//	KAFKA_TLS_CA_FILE               PEM roots to trust instead of the system's
//	KAFKA_TLS_CERT_FILE, _KEY_FILE  client certificate and key (mTLS)
//	KAFKA_TLS_SERVER_NAME           name to verify when it differs from the broker address
//	KAFKA_TLS_INSECURE_SKIP_VERIFY  boolean: do not verify the brokers' certificates (tests only)
//	KAFKA_SASL_MECHANISM            PLAIN, SCRAM-SHA-256, SCRAM-SHA-512, OAUTHBEARER or AWS_MSK_IAM
//	KAFKA_SASL_USERNAME             PLAIN and SCRAM
//	KAFKA_SASL_PASSWORD[_FILE]      PLAIN and SCRAM
//	KAFKA_SASL_OAUTH_TOKEN[_FILE]   OAUTHBEARER; the file is read again at every authentication
//	KAFKA_SASL_ALLOW_PLAINTEXT      boolean: allow PLAIN or OAUTHBEARER without TLS
//	AWS_ACCESS_KEY_ID, AWS_SECRET_ACCESS_KEY, AWS_SESSION_TOKEN   AWS_MSK_IAM
//	SCHEMA_REGISTRY_BASIC_AUTH_USER_INFO[_FILE]   "user:password" (Confluent's name for it)
//	SCHEMA_REGISTRY_BEARER_TOKEN[_FILE]
//	SCHEMA_REGISTRY_CA_FILE, _CERT_FILE, _KEY_FILE                TLS roots and client certificate
//	SCHEMA_REGISTRY_ALLOW_PLAINTEXT boolean: allow credentials over http:// to a host that is not loopback
//
// A boolean is true, yes, on, enabled or 1, or false, no, off, disabled or
// 0, in any case; empty is unset. Any other value is an error naming the
// variable (see Bool): KAFKA_TLS=enable must not quietly mean plaintext.
//
// # Plaintext
//
// The settings cannot fail open. FromEnv and RegistryClient refuse, with an
// error wrapping ErrPlaintext:
//   - a TLS setting on a plaintext connection: KAFKA_TLS=false beside
//     another KAFKA_TLS_* setting; a SCHEMA_REGISTRY_CA_FILE, _CERT_FILE or
//     _KEY_FILE with an http:// registry URL. No opt-out: the setting shows
//     TLS was meant.
//   - SASL PLAIN or OAUTHBEARER without TLS: the password or a replayable
//     token would cross the network readable. KAFKA_SASL_ALLOW_PLAINTEXT=true
//     allows it on a network you trust. SCRAM and AWS_MSK_IAM send neither
//     and are allowed (the records still travel in clear).
//   - registry credentials (Basic or bearer) over http:// to a host other
//     than localhost or a loopback address, which is how `eventline dev`
//     serves it. SCHEMA_REGISTRY_ALLOW_PLAINTEXT=true allows it.
//
// PostgreSQL's TLS goes in its DSN (sslmode=verify-full&sslrootcert=...),
// which pgx reads itself.
package connection

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"net"
	"net/url"
	"strings"

	"github.com/twmb/franz-go/pkg/kgo"
	"github.com/twmb/franz-go/pkg/sasl"
	"github.com/twmb/franz-go/pkg/sasl/aws"
	"github.com/twmb/franz-go/pkg/sasl/oauth"
	"github.com/twmb/franz-go/pkg/sasl/plain"
	"github.com/twmb/franz-go/pkg/sasl/scram"
	"github.com/twmb/franz-go/pkg/sr"
)

// Settings are the options that reach the cluster and the registry.
type Settings struct {
	// Kafka goes to every franz-go client: relay.Config.KafkaOpts,
	// consumers.Config.KafkaOpts, kgo.NewClient.
	Kafka []kgo.Opt
	// Registry goes to sr.NewClient. Prefer RegistryClient, which adds the
	// URL and refuses the URLs these options must not meet (credentials in
	// the URL, TLS files or credentials over plain http://); passing
	// Registry to sr.NewClient yourself skips those checks.
	Registry []sr.ClientOpt

	// What RegistryClient checks the URL against: the variable that set a
	// registry TLS file and the one that set credentials ("" when none),
	// and the SCHEMA_REGISTRY_ALLOW_PLAINTEXT opt-out.
	registryTLSVar, registryAuthVar string
	registryAllowPlaintext          bool
}

// FromEnv reads the settings through getenv (os.Getenv in a service; a
// map's lookup in a test). A setting that cannot be used (a file that does
// not read, an unknown mechanism, a half-given pair, a boolean that is not
// one, a TLS setting or a password meeting a plaintext connection) is an
// error naming the variable, never its value; all such errors come
// together.
func FromEnv(getenv func(string) string) (Settings, error) {
	var c Settings
	var errs []error
	secret := func(name string) string {
		v, err := Secret(getenv, name)
		if err != nil {
			errs = append(errs, err)
		}
		return v
	}
	flag := func(name string) bool {
		v, err := Bool(getenv, name, false)
		if err != nil {
			errs = append(errs, err)
		}
		return v
	}

	// Any other KAFKA_TLS_* setting means TLS: a server name or skip-verify
	// without it must not quietly leave SASL credentials in plaintext. An
	// explicit KAFKA_TLS=false beside one of them is a contradiction, not
	// a choice between them.
	skipVerify := flag("KAFKA_TLS_INSECURE_SKIP_VERIFY")
	implied := setVars(getenv, "KAFKA_TLS_CA_FILE", "KAFKA_TLS_CERT_FILE", "KAFKA_TLS_KEY_FILE", "KAFKA_TLS_SERVER_NAME")
	if skipVerify {
		implied = append(implied, "KAFKA_TLS_INSECURE_SKIP_VERIFY")
	}
	kafkaTLS, err := Bool(getenv, "KAFKA_TLS", len(implied) > 0)
	switch {
	case err != nil:
		errs = append(errs, err)
	case !kafkaTLS && len(implied) > 0:
		errs = append(errs, fmt.Errorf("KAFKA_TLS: %w: it is false, but %s is set; unset one of them", ErrPlaintext, implied[0]))
	case kafkaTLS:
		kt, err := tlsConfig(getenv, "KAFKA_TLS")
		if err != nil {
			errs = append(errs, err)
			break
		}
		kt.InsecureSkipVerify = skipVerify
		kt.ServerName = getenv("KAFKA_TLS_SERVER_NAME")
		c.Kafka = append(c.Kafka, kgo.DialTLSConfig(kt))
	}

	mech := strings.ToUpper(strings.TrimSpace(getenv("KAFKA_SASL_MECHANISM")))
	// PLAIN sends the password itself, OAUTHBEARER a token anyone who
	// reads it can replay; SCRAM and AWS_MSK_IAM send neither.
	if allow := flag("KAFKA_SASL_ALLOW_PLAINTEXT"); (mech == "PLAIN" || mech == "OAUTHBEARER") && !kafkaTLS && !allow {
		errs = append(errs, fmt.Errorf("KAFKA_SASL_MECHANISM=%s: %w: without TLS the credentials cross the network readable; set KAFKA_TLS=true, or KAFKA_SASL_ALLOW_PLAINTEXT=true on a network you trust", mech, ErrPlaintext))
	}
	switch mech {
	case "":
	case "PLAIN", "SCRAM-SHA-256", "SCRAM-SHA-512":
		user, pass := getenv("KAFKA_SASL_USERNAME"), secret("KAFKA_SASL_PASSWORD")
		if user == "" || pass == "" {
			errs = append(errs, fmt.Errorf("KAFKA_SASL_MECHANISM=%s needs KAFKA_SASL_USERNAME and KAFKA_SASL_PASSWORD (or KAFKA_SASL_PASSWORD_FILE)", mech))
			break
		}
		var m sasl.Mechanism
		switch mech {
		case "PLAIN":
			m = plain.Auth{User: user, Pass: pass}.AsMechanism()
		case "SCRAM-SHA-256":
			m = scram.Auth{User: user, Pass: pass}.AsSha256Mechanism()
		default:
			m = scram.Auth{User: user, Pass: pass}.AsSha512Mechanism()
		}
		c.Kafka = append(c.Kafka, kgo.SASL(m))
	case "OAUTHBEARER":
		file := getenv("KAFKA_SASL_OAUTH_TOKEN_FILE")
		token := getenv("KAFKA_SASL_OAUTH_TOKEN")
		if file == "" && token == "" {
			errs = append(errs, errors.New("KAFKA_SASL_MECHANISM=OAUTHBEARER needs KAFKA_SASL_OAUTH_TOKEN or KAFKA_SASL_OAUTH_TOKEN_FILE"))
			break
		}
		c.Kafka = append(c.Kafka, kgo.SASL(oauth.Oauth(func(context.Context) (oauth.Auth, error) {
			if file == "" {
				return oauth.Auth{Token: token}, nil
			}
			// Refreshed tokens are picked up at the next authentication.
			b, err := readFile("KAFKA_SASL_OAUTH_TOKEN_FILE", file, maxSecretFile)
			if err != nil {
				return oauth.Auth{}, err
			}
			return oauth.Auth{Token: strings.TrimSpace(string(b))}, nil
		})))
	case "AWS_MSK_IAM":
		c.Kafka = append(c.Kafka, kgo.SASL(aws.ManagedStreamingIAM(func(context.Context) (aws.Auth, error) {
			a := aws.Auth{AccessKey: getenv("AWS_ACCESS_KEY_ID"), SecretKey: getenv("AWS_SECRET_ACCESS_KEY"), SessionToken: getenv("AWS_SESSION_TOKEN")}
			if a.AccessKey == "" || a.SecretKey == "" {
				return a, errors.New("AWS_MSK_IAM needs AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY")
			}
			return a, nil
		})))
	default:
		errs = append(errs, fmt.Errorf("KAFKA_SASL_MECHANISM %q: want PLAIN, SCRAM-SHA-256, SCRAM-SHA-512, OAUTHBEARER or AWS_MSK_IAM", mech))
	}

	// The registry's URL is not known here (a flag may give it):
	// RegistryClient checks it against what is set.
	if rtVars := setVars(getenv, "SCHEMA_REGISTRY_CA_FILE", "SCHEMA_REGISTRY_CERT_FILE", "SCHEMA_REGISTRY_KEY_FILE"); len(rtVars) > 0 {
		c.registryTLSVar = rtVars[0]
		rt, err := tlsConfig(getenv, "SCHEMA_REGISTRY")
		if err != nil {
			errs = append(errs, err)
		} else {
			c.Registry = append(c.Registry, sr.DialTLSConfig(rt))
		}
	}
	c.registryAllowPlaintext = flag("SCHEMA_REGISTRY_ALLOW_PLAINTEXT")
	userInfo, token := secret("SCHEMA_REGISTRY_BASIC_AUTH_USER_INFO"), secret("SCHEMA_REGISTRY_BEARER_TOKEN")
	switch {
	case userInfo != "" && token != "":
		errs = append(errs, errors.New("set SCHEMA_REGISTRY_BASIC_AUTH_USER_INFO or SCHEMA_REGISTRY_BEARER_TOKEN, not both"))
	case userInfo != "":
		user, pass, err := ParseUserInfo("SCHEMA_REGISTRY_BASIC_AUTH_USER_INFO", userInfo)
		if err != nil {
			errs = append(errs, err)
			break
		}
		c.registryAuthVar = "SCHEMA_REGISTRY_BASIC_AUTH_USER_INFO"
		c.Registry = append(c.Registry, sr.BasicAuth(user, pass))
	case token != "":
		c.registryAuthVar = "SCHEMA_REGISTRY_BEARER_TOKEN"
		c.Registry = append(c.Registry, sr.BearerToken(token))
	}
	return c, errors.Join(errs...)
}

// tlsConfig builds the TLS settings under prefix (PREFIX_CA_FILE,
// PREFIX_CERT_FILE, PREFIX_KEY_FILE).
func tlsConfig(getenv func(string) string, prefix string) (*tls.Config, error) {
	ca, cert, key := getenv(prefix+"_CA_FILE"), getenv(prefix+"_CERT_FILE"), getenv(prefix+"_KEY_FILE")
	cfg := &tls.Config{MinVersion: tls.VersionTLS12}
	if ca != "" {
		pem, err := readFile(prefix+"_CA_FILE", ca, maxPEMFile)
		if err != nil {
			return nil, err
		}
		pool := x509.NewCertPool()
		if !pool.AppendCertsFromPEM(pem) {
			return nil, fmt.Errorf("%s_CA_FILE %s holds no PEM certificate", prefix, ca)
		}
		cfg.RootCAs = pool
	}
	if (cert == "") != (key == "") {
		return nil, fmt.Errorf("%s_CERT_FILE and %s_KEY_FILE go together", prefix, prefix)
	}
	if cert != "" {
		certPEM, err := readFile(prefix+"_CERT_FILE", cert, maxPEMFile)
		if err != nil {
			return nil, err
		}
		keyPEM, err := readFile(prefix+"_KEY_FILE", key, maxPEMFile)
		if err != nil {
			return nil, err
		}
		pair, err := tls.X509KeyPair(certPEM, keyPEM)
		if err != nil {
			return nil, fmt.Errorf("%s client certificate: %w", prefix, err)
		}
		cfg.Certificates = []tls.Certificate{pair}
	}
	return cfg, nil
}

// RegistryClient connects to the registry at rawURL with the settings'
// TLS and credentials. Refused, with an error naming the variables: a URL
// carrying credentials (URLs end up in logs and reports; they go in
// SCHEMA_REGISTRY_BASIC_AUTH_USER_INFO); an http:// URL with a registry CA
// or client certificate set (ErrPlaintext: TLS was meant); an http:// URL
// to a host other than localhost or a loopback address with credentials
// set, unless SCHEMA_REGISTRY_ALLOW_PLAINTEXT is true (ErrPlaintext).
func (c Settings) RegistryClient(rawURL string) (*sr.Client, error) {
	u, err := url.Parse(rawURL)
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		// Not shown: a malformed URL may still hold credentials.
		return nil, errors.New("the schema registry URL must be http:// or https:// with a host")
	}
	if u.User != nil {
		return nil, errors.New("the schema registry URL carries credentials: put them in SCHEMA_REGISTRY_BASIC_AUTH_USER_INFO (or _FILE) instead, URLs end up in logs")
	}
	if u.Scheme == "http" {
		if c.registryTLSVar != "" {
			return nil, fmt.Errorf("%s: %w: it is set but the schema registry URL is http://; use https:// (a CA or client certificate does nothing over plain HTTP)", c.registryTLSVar, ErrPlaintext)
		}
		if c.registryAuthVar != "" && !c.registryAllowPlaintext && !loopback(u.Hostname()) {
			return nil, fmt.Errorf("%s: %w: the schema registry URL is http:// to a host that is not loopback, so the credentials would cross the network readable; use https://, or set SCHEMA_REGISTRY_ALLOW_PLAINTEXT=true on a network you trust", c.registryAuthVar, ErrPlaintext)
		}
	}
	return sr.NewClient(append([]sr.ClientOpt{sr.URLs(rawURL)}, c.Registry...)...)
}

// loopback reports whether host (a URL's Hostname) never leaves the
// machine: localhost or a loopback address.
func loopback(host string) bool {
	if strings.EqualFold(host, "localhost") {
		return true
	}
	ip := net.ParseIP(host)
	return ip != nil && ip.IsLoopback()
}
