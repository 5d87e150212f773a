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
// (VAR_FILE), as container platforms mount them. The TLS and SASL machinery
// is franz-go's (kgo.DialTLSConfig, pkg/sasl/*) and sr's (DialTLSConfig,
// BasicAuth, BearerToken); this package only maps variables onto it.
//
//	KAFKA_TLS                       "true": TLS with the system's roots (implied by the other KAFKA_TLS_* settings)
//	KAFKA_TLS_CA_FILE               PEM roots to trust instead of the system's
//	KAFKA_TLS_CERT_FILE, _KEY_FILE  client certificate and key (mTLS)
//	KAFKA_TLS_SERVER_NAME           name to verify when it differs from the broker address
//	KAFKA_TLS_INSECURE_SKIP_VERIFY  "true": do not verify the brokers' certificates (tests only)
//	KAFKA_SASL_MECHANISM            PLAIN, SCRAM-SHA-256, SCRAM-SHA-512, OAUTHBEARER or AWS_MSK_IAM
//	KAFKA_SASL_USERNAME             PLAIN and SCRAM
//	KAFKA_SASL_PASSWORD[_FILE]      PLAIN and SCRAM
//	KAFKA_SASL_OAUTH_TOKEN[_FILE]   OAUTHBEARER; the file is read again at every authentication
//	AWS_ACCESS_KEY_ID, AWS_SECRET_ACCESS_KEY, AWS_SESSION_TOKEN   AWS_MSK_IAM
//	SCHEMA_REGISTRY_BASIC_AUTH_USER_INFO[_FILE]   "user:password" (Confluent's name for it)
//	SCHEMA_REGISTRY_BEARER_TOKEN[_FILE]
//	SCHEMA_REGISTRY_CA_FILE, _CERT_FILE, _KEY_FILE                TLS roots and client certificate
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
	"net/url"
	"os"
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
	// Registry goes to sr.NewClient (RegistryClient adds the URL).
	Registry []sr.ClientOpt
}

// FromEnv reads the settings through getenv (os.Getenv in a service; a
// map's lookup in a test). A setting that cannot be used (a file that does
// not read, an unknown mechanism, a half-given pair) is an error naming the
// variable, never its value; all such errors come together.
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
	truthy := func(name string) bool {
		v := strings.ToLower(getenv(name))
		return v == "true" || v == "1" || v == "yes"
	}

	// Any KAFKA_TLS_* setting means TLS: a server name or skip-verify
	// without it must not quietly leave SASL credentials in plaintext.
	kt, err := tlsConfig(getenv, "KAFKA_TLS", truthy("KAFKA_TLS") || getenv("KAFKA_TLS_SERVER_NAME") != "" || truthy("KAFKA_TLS_INSECURE_SKIP_VERIFY"))
	if err != nil {
		errs = append(errs, err)
	} else if kt != nil {
		kt.InsecureSkipVerify = truthy("KAFKA_TLS_INSECURE_SKIP_VERIFY")
		kt.ServerName = getenv("KAFKA_TLS_SERVER_NAME")
		c.Kafka = append(c.Kafka, kgo.DialTLSConfig(kt))
	}
	switch mech := strings.ToUpper(getenv("KAFKA_SASL_MECHANISM")); mech {
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
			b, err := os.ReadFile(file) // refreshed tokens are picked up at the next authentication
			if err != nil {
				return oauth.Auth{}, fmt.Errorf("KAFKA_SASL_OAUTH_TOKEN_FILE: %w", err)
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

	rt, err := tlsConfig(getenv, "SCHEMA_REGISTRY", false)
	if err != nil {
		errs = append(errs, err)
	} else if rt != nil {
		c.Registry = append(c.Registry, sr.DialTLSConfig(rt))
	}
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
		c.Registry = append(c.Registry, sr.BasicAuth(user, pass))
	case token != "":
		c.Registry = append(c.Registry, sr.BearerToken(token))
	}
	return c, errors.Join(errs...)
}

// Secret returns the variable name's value, or, when name_FILE is set,
// the contents of that file without the trailing line break (the way
// container platforms mount secrets). The error names the variable and
// the file, never the contents.
func Secret(getenv func(string) string, name string) (string, error) {
	if f := getenv(name + "_FILE"); f != "" {
		b, err := os.ReadFile(f)
		if err != nil {
			return "", fmt.Errorf("%s_FILE: %w", name, err)
		}
		return strings.TrimRight(string(b), "\r\n"), nil
	}
	return getenv(name), nil
}

// ParseUserInfo splits Confluent's basic.auth.user.info format,
// "user:password", read from the variable name; the password may hold
// colons (the split is at the first). The error never shows the value.
func ParseUserInfo(name, userInfo string) (user, pass string, err error) {
	user, pass, ok := strings.Cut(userInfo, ":")
	if !ok {
		return "", "", fmt.Errorf(`%s: want "user:password"`, name)
	}
	return user, pass, nil
}

// tlsConfig builds the TLS settings under prefix (PREFIX_CA_FILE,
// PREFIX_CERT_FILE, PREFIX_KEY_FILE); nil when none is set and on is false.
func tlsConfig(getenv func(string) string, prefix string, on bool) (*tls.Config, error) {
	ca, cert, key := getenv(prefix+"_CA_FILE"), getenv(prefix+"_CERT_FILE"), getenv(prefix+"_KEY_FILE")
	if !on && ca == "" && cert == "" && key == "" {
		return nil, nil
	}
	cfg := &tls.Config{MinVersion: tls.VersionTLS12}
	if ca != "" {
		pem, err := os.ReadFile(ca)
		if err != nil {
			return nil, fmt.Errorf("%s_CA_FILE: %w", prefix, err)
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
		pair, err := tls.LoadX509KeyPair(cert, key)
		if err != nil {
			return nil, fmt.Errorf("%s client certificate: %w", prefix, err)
		}
		cfg.Certificates = []tls.Certificate{pair}
	}
	return cfg, nil
}

// RegistryClient connects to the registry at rawURL with the settings'
// TLS and credentials. Credentials inside the URL are refused: URLs end up
// in logs and reports.
func (c Settings) RegistryClient(rawURL string) (*sr.Client, error) {
	u, err := url.Parse(rawURL)
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		// Not shown: a malformed URL may still hold credentials.
		return nil, errors.New("the schema registry URL must be http:// or https:// with a host")
	}
	if u.User != nil {
		return nil, errors.New("the schema registry URL carries credentials: put them in SCHEMA_REGISTRY_BASIC_AUTH_USER_INFO (or _FILE) instead, URLs end up in logs")
	}
	return sr.NewClient(append([]sr.ClientOpt{sr.URLs(rawURL)}, c.Registry...)...)
}
