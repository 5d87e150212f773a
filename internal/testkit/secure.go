package testkit

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"fmt"
	"math/big"
	"net"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kfake"
	"github.com/twmb/franz-go/pkg/kgo"
	"github.com/twmb/franz-go/pkg/sasl"
	"github.com/twmb/franz-go/pkg/sasl/plain"
	"github.com/twmb/franz-go/pkg/sasl/scram"

	"github.com/eventline/eventline/internal/devbroker"
)

// SecureCluster is an embedded broker that serves only TLS and SASL, as a
// production cluster does.
type SecureCluster struct {
	Brokers []string
	// CAFile is the PEM of the test CA that signed the broker's
	// certificate (for 127.0.0.1); OtherCAFile one that did not.
	CAFile, OtherCAFile string
	// Users maps each SASL mechanism to the user and password it accepts.
	Users map[string][2]string
}

// SecureKafka starts a broker of t's own that serves clients only over
// TLS (a fresh test CA) with SASL: PLAIN, SCRAM-SHA-256 and SCRAM-SHA-512
// users. It is an embedded kfake broker, or, when EVENTLINE_TEST_KAFKA is
// set, an Apache Kafka node with a SASL_SSL listener (secureApacheKafka).
func SecureKafka(t testing.TB) SecureCluster {
	t.Helper()
	dir := t.TempDir()
	ca, caKey, caFile := newCA(t, dir, "ca")
	_, _, otherCA := newCA(t, dir, "other-ca")
	serverCert := issue(t, ca, caKey)
	sc := SecureCluster{CAFile: caFile, OtherCAFile: otherCA, Users: map[string][2]string{
		"PLAIN":         {"plain-user", "plain-secret"},
		"SCRAM-SHA-256": {"scram256-user", "scram256-secret"},
		"SCRAM-SHA-512": {"scram512-user", "scram512-secret"},
	}}
	if RealKafka() {
		sc.Brokers = secureApacheKafka(t, dir, serverCert, sc.Users)
		return sc
	}
	roots := x509.NewCertPool()
	roots.AddCert(ca)
	clientTLS := &tls.Config{RootCAs: roots, MinVersion: tls.VersionTLS12}
	admin := scram.Auth{User: "admin", Pass: "admin-secret"}.AsSha256Mechanism()
	opts := []kfake.Opt{kfake.NumBrokers(1), kfake.AllowAutoTopicCreation(), kfake.DefaultNumPartitions(3),
		kfake.EnableSASL(), kfake.Superuser("SCRAM-SHA-256", "admin", "admin-secret")}
	for mech, up := range sc.Users {
		opts = append(opts, kfake.User(mech, up[0], up[1]))
	}
	b, err := devbroker.New(devbroker.Options{
		TLS:        &tls.Config{Certificates: []tls.Certificate{serverCert}, MinVersion: tls.VersionTLS12},
		ClientOpts: []kgo.Opt{kgo.DialTLSConfig(clientTLS), kgo.SASL(admin)},
	}, opts...)
	if err != nil {
		t.Fatalf("starting a TLS+SASL kfake: %v", err)
	}
	t.Cleanup(b.Close)
	sc.Brokers = b.ListenAddrs()
	return sc
}

// ClientOpts are the franz-go options of a client of the cluster
// authenticating with mech (a key of Users): its seed brokers, TLS
// trusting the test CA, and SASL.
func (sc SecureCluster) ClientOpts(t testing.TB, mech string) []kgo.Opt {
	t.Helper()
	b, err := os.ReadFile(sc.CAFile)
	if err != nil {
		t.Fatal(err)
	}
	roots := x509.NewCertPool()
	roots.AppendCertsFromPEM(b)
	up, ok := sc.Users[mech]
	if !ok {
		t.Fatalf("no %s user", mech)
	}
	var m sasl.Mechanism
	switch mech {
	case "PLAIN":
		m = plain.Auth{User: up[0], Pass: up[1]}.AsMechanism()
	case "SCRAM-SHA-256":
		m = scram.Auth{User: up[0], Pass: up[1]}.AsSha256Mechanism()
	default:
		m = scram.Auth{User: up[0], Pass: up[1]}.AsSha512Mechanism()
	}
	return []kgo.Opt{kgo.SeedBrokers(sc.Brokers...), kgo.DialTLSConfig(&tls.Config{RootCAs: roots, MinVersion: tls.VersionTLS12}), kgo.SASL(m)}
}

func newCA(t testing.TB, dir, name string) (*x509.Certificate, *ecdsa.PrivateKey, string) {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(time.Now().UnixNano()), Subject: pkix.Name{CommonName: "eventline test " + name},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(24 * time.Hour),
		IsCA: true, BasicConstraintsValid: true, KeyUsage: x509.KeyUsageCertSign | x509.KeyUsageDigitalSignature,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	cert, err := x509.ParseCertificate(der)
	if err != nil {
		t.Fatal(err)
	}
	file := filepath.Join(dir, name+".pem")
	if err := os.WriteFile(file, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), 0o600); err != nil {
		t.Fatal(err)
	}
	return cert, key, file
}

// issue signs a server certificate for 127.0.0.1 and localhost.
func issue(t testing.TB, ca *x509.Certificate, caKey *ecdsa.PrivateKey) tls.Certificate {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(time.Now().UnixNano() + 1), Subject: pkix.Name{CommonName: "127.0.0.1"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(24 * time.Hour),
		IPAddresses: []net.IP{net.ParseIP("127.0.0.1")}, DNSNames: []string{"localhost"},
		KeyUsage: x509.KeyUsageDigitalSignature, ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, ca, &key.PublicKey, caKey)
	if err != nil {
		t.Fatal(err)
	}
	return tls.Certificate{Certificate: [][]byte{der}, PrivateKey: key}
}

// secureApacheKafka starts an Apache Kafka node of t's own whose clients'
// listener is SASL_SSL, with the certificate in a PEM key store (Kafka
// reads PEM since 2.7: no keytool, no JKS password) and users: PLAIN's
// from the listener's JAAS line, SCRAM's added over the node's PLAINTEXT
// listener (kadm), which only the harness and the readiness probe use.
// It returns the SASL_SSL address.
func secureApacheKafka(t testing.TB, dir string, cert tls.Certificate, users map[string][2]string) []string {
	t.Helper()
	key, err := x509.MarshalPKCS8PrivateKey(cert.PrivateKey)
	if err != nil {
		t.Fatal(err)
	}
	store := filepath.Join(dir, "broker-keystore.pem")
	pemBytes := pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: key})
	pemBytes = append(pemBytes, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: cert.Certificate[0]})...)
	if err := os.WriteFile(store, pemBytes, 0o600); err != nil {
		t.Fatal(err)
	}
	plainUser := users["PLAIN"]
	var saslPort int
	plainAddr, _ := apacheNode(t, func(port, controller int) string {
		saslPort = StablePort(t)
		return fmt.Sprintf(`listeners=PLAINTEXT://127.0.0.1:%[1]d,CONTROLLER://127.0.0.1:%[2]d,SASL_SSL://127.0.0.1:%[3]d
advertised.listeners=PLAINTEXT://127.0.0.1:%[1]d,SASL_SSL://127.0.0.1:%[3]d
listener.security.protocol.map=CONTROLLER:PLAINTEXT,PLAINTEXT:PLAINTEXT,SASL_SSL:SASL_SSL
sasl.enabled.mechanisms=PLAIN,SCRAM-SHA-256,SCRAM-SHA-512
listener.name.sasl_ssl.ssl.keystore.type=PEM
listener.name.sasl_ssl.ssl.keystore.location=%[4]s
listener.name.sasl_ssl.plain.sasl.jaas.config=org.apache.kafka.common.security.plain.PlainLoginModule required user_%[5]s="%[6]s";
listener.name.sasl_ssl.scram-sha-256.sasl.jaas.config=org.apache.kafka.common.security.scram.ScramLoginModule required;
listener.name.sasl_ssl.scram-sha-512.sasl.jaas.config=org.apache.kafka.common.security.scram.ScramLoginModule required;
`, port, controller, saslPort, store, plainUser[0], plainUser[1])
	})
	adm := kadm.NewClient(Client(t, []string{plainAddr}))
	var upserts []kadm.UpsertSCRAM
	for mech, m := range map[string]kadm.ScramMechanism{"SCRAM-SHA-256": kadm.ScramSha256, "SCRAM-SHA-512": kadm.ScramSha512} {
		up := users[mech]
		upserts = append(upserts, kadm.UpsertSCRAM{User: up[0], Mechanism: m, Iterations: 4096, Password: up[1]})
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	res, err := adm.AlterUserSCRAMs(ctx, nil, upserts)
	if err == nil {
		err = res.Error()
	}
	if err != nil {
		t.Fatalf("adding the SCRAM users: %v", err)
	}
	// The controller commits them; the broker serves them once its
	// metadata image has them, which is what Describe reads.
	WaitFor(t, 20*time.Second, "the SCRAM users known to the broker", func() bool {
		d, err := adm.DescribeUserSCRAMs(ctx)
		return err == nil && d.Error() == nil && len(d) == len(upserts)
	})
	return []string{fmt.Sprintf("127.0.0.1:%d", saslPort)}
}
