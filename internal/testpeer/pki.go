package testpeer

import (
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"fmt"
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
func rsaKey() (*rsa.PrivateKey, error) { return rsa.GenerateKey(rand.Reader, 2048) }

// NewCAT makes a CA as NewCA does, failing tb on an error.
func NewCAT(tb testing.TB, dir, name string) *CA {
	tb.Helper()
	ca, err := NewCA(dir, name)
	check(tb, err)
	return ca
}

// IssueT issues a certificate as Issue does, failing tb on an error.
func (ca *CA) IssueT(tb testing.TB, dir, cn string) Issued {
	tb.Helper()
	out, err := ca.Issue(dir, cn)
	check(tb, err)
	return out
}

// NewCA makes a CA named name, valid for a day, and writes its
// certificate to dir/name.crt.
func NewCA(dir, name string) (*CA, error) {
	key, err := rsaKey()
	if err != nil {
		return nil, err
	}
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
		return nil, fmt.Errorf("testpeer: %w", err)
	}
	cert, _ := x509.ParseCertificate(der)
	file := filepath.Join(dir, name+".crt")
	if err := writePEM(file, "CERTIFICATE", der); err != nil {
		return nil, err
	}
	ca := &CA{Cert: cert, File: file, key: key}
	ca.serial.Store(1)
	return ca, nil
}

// Issue makes a certificate for the common name cn, usable by servers and
// clients alike (serverAuth and clientAuth), valid for a day for cn,
// localhost and 127.0.0.1, and writes it and its key to dir/cn.crt and
// dir/cn.key.
func (ca *CA) Issue(dir, cn string) (Issued, error) {
	key, err := rsaKey()
	if err != nil {
		return Issued{}, err
	}
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
		return Issued{}, fmt.Errorf("testpeer: %w", err)
	}
	cert, _ := x509.ParseCertificate(der)
	out := Issued{
		CertFile: filepath.Join(dir, cn+".crt"),
		KeyFile:  filepath.Join(dir, cn+".key"),
		Cert:     cert,
	}
	if err := writePEM(out.CertFile, "CERTIFICATE", der); err != nil {
		return Issued{}, err
	}
	return out, writePEM(out.KeyFile, "RSA PRIVATE KEY", x509.MarshalPKCS1PrivateKey(key))
}

func writePEM(file, typ string, der []byte) error {
	if err := os.WriteFile(file, pem.EncodeToMemory(&pem.Block{Type: typ, Bytes: der}), 0o600); err != nil {
		return fmt.Errorf("testpeer: %w", err)
	}
	return nil
}
