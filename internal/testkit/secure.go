package testkit

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"math/big"
	"net"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kfake"
	"github.com/twmb/franz-go/pkg/kgo"
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

// SecureKafka starts an embedded broker for t with TLS (a fresh test CA)
// and SASL: PLAIN, SCRAM-SHA-256 and SCRAM-SHA-512 users.
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
