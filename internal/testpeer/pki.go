package testpeer

import (
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"math/big"
	"net"
	"os"
	"path/filepath"
	"sync/atomic"
	"testing"
	"time"
)

// CA is a certificate authority made for one test, whose certificates
// dcmtk, OpenSSL and Go accept.
type CA struct {
	Cert *x509.Certificate
	File string // the CA certificate, PEM
	key  *rsa.PrivateKey
	// serial numbers the certificates it issues.
	serial atomic.Int64
}

// Issued is a certificate and its key issued by a CA, as PEM files.
type Issued struct {
	CertFile, KeyFile string
	Cert              *x509.Certificate
}

// rsaKey makes a 2048-bit RSA key: dcmtk's default TLS profile offers
// ECDHE_RSA suites.
func rsaKey(tb testing.TB) *rsa.PrivateKey {
	tb.Helper()
	k, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		tb.Fatal(err)
	}
	return k
}

// NewCA makes a CA named name, valid for a day, and writes its
// certificate to dir/name.crt.
func NewCA(tb testing.TB, dir, name string) *CA {
	tb.Helper()
	key := rsaKey(tb)
	tmpl := &x509.Certificate{
		SerialNumber:          big.NewInt(1),
		Subject:               pkix.Name{CommonName: name},
		NotBefore:             time.Now().Add(-time.Hour),
		NotAfter:              time.Now().Add(24 * time.Hour),
		IsCA:                  true,
		BasicConstraintsValid: true,
		KeyUsage:              x509.KeyUsageCertSign | x509.KeyUsageDigitalSignature,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		tb.Fatal(err)
	}
	cert, _ := x509.ParseCertificate(der)
	file := filepath.Join(dir, name+".crt")
	writePEM(tb, file, "CERTIFICATE", der)
	ca := &CA{Cert: cert, File: file, key: key}
	ca.serial.Store(1)
	return ca
}

// Issue makes a certificate for the common name cn, usable by servers and
// clients alike (serverAuth and clientAuth), valid for a day for cn,
// localhost and 127.0.0.1, and writes it and its key to dir/cn.crt and
// dir/cn.key.
func (ca *CA) Issue(tb testing.TB, dir, cn string) Issued {
	tb.Helper()
	key := rsaKey(tb)
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(ca.serial.Add(1)),
		Subject:      pkix.Name{CommonName: cn},
		DNSNames:     []string{"localhost", cn},
		IPAddresses:  []net.IP{net.IPv4(127, 0, 0, 1)},
		NotBefore:    time.Now().Add(-time.Hour),
		NotAfter:     time.Now().Add(24 * time.Hour),
		KeyUsage:     x509.KeyUsageDigitalSignature | x509.KeyUsageKeyEncipherment,
		ExtKeyUsage:  []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth, x509.ExtKeyUsageClientAuth},
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, ca.Cert, &key.PublicKey, ca.key)
	if err != nil {
		tb.Fatal(err)
	}
	cert, _ := x509.ParseCertificate(der)
	out := Issued{
		CertFile: filepath.Join(dir, cn+".crt"),
		KeyFile:  filepath.Join(dir, cn+".key"),
		Cert:     cert,
	}
	writePEM(tb, out.CertFile, "CERTIFICATE", der)
	writePEM(tb, out.KeyFile, "RSA PRIVATE KEY", x509.MarshalPKCS1PrivateKey(key))
	return out
}

func writePEM(tb testing.TB, file, typ string, der []byte) {
	tb.Helper()
	if err := os.WriteFile(file, pem.EncodeToMemory(&pem.Block{Type: typ, Bytes: der}), 0o600); err != nil {
		tb.Fatal(err)
	}
}
