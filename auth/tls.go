package auth

import (
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"net"
	"os"
	"sync"
	"time"
)

// CipherSuites are the TLS 1.2 cipher suites of the BCP 195 RFC 8996,
// 9325 TLS Secure Transport Connection Profile (PS3.15 Annex B.12), as
// RFC 9325 §4.2 recommends them: ECDHE with AES-GCM. The DHE suites it
// also lists are not offered by crypto/tls. TLS 1.3 suites are not
// configurable in crypto/tls; all of its suites are AEAD ones the profile
// allows.
var CipherSuites = []uint16{
	tls.TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256,
	tls.TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256,
	tls.TLS_ECDHE_ECDSA_WITH_AES_256_GCM_SHA384,
	tls.TLS_ECDHE_RSA_WITH_AES_256_GCM_SHA384,
}

// curves are the key exchange groups: ECDHE of at least 256 bits, as the
// profile requires.
var curves = []tls.CurveID{tls.X25519, tls.CurveP256, tls.CurveP384}

// KeyPair is a certificate and its private key read from PEM files. Reload
// reads them again, so that a renewed certificate takes effect on SIGHUP:
// new handshakes use it, established connections keep theirs. It is safe
// for concurrent use.
type KeyPair struct {
	certFile, keyFile string

	mu   sync.RWMutex
	cert *tls.Certificate
}

// LoadKeyPair reads the PEM certificate (with its chain) and key.
func LoadKeyPair(certFile, keyFile string) (*KeyPair, error) {
	k := &KeyPair{certFile: certFile, keyFile: keyFile}
	if err := k.Reload(); err != nil {
		return nil, err
	}
	return k, nil
}

// Reload reads the files again. On error the previous certificate stays
// in use.
func (k *KeyPair) Reload() error {
	c, err := tls.LoadX509KeyPair(k.certFile, k.keyFile)
	if err != nil {
		// The error of crypto/tls names the files, never the key.
		return fmt.Errorf("auth: TLS key pair: %w", err)
	}
	if time.Now().After(c.Leaf.NotAfter) {
		return fmt.Errorf("auth: TLS certificate %s expired on %s", k.certFile, c.Leaf.NotAfter.UTC().Format(time.DateOnly))
	}
	k.mu.Lock()
	k.cert = &c
	k.mu.Unlock()
	return nil
}

// Certificate returns the current certificate.
func (k *KeyPair) Certificate() *tls.Certificate {
	k.mu.RLock()
	defer k.mu.RUnlock()
	return k.cert
}

// GetCertificate is a tls.Config.GetCertificate.
func (k *KeyPair) GetCertificate(*tls.ClientHelloInfo) (*tls.Certificate, error) {
	return k.Certificate(), nil
}

// GetClientCertificate is a tls.Config.GetClientCertificate.
func (k *KeyPair) GetClientCertificate(*tls.CertificateRequestInfo) (*tls.Certificate, error) {
	return k.Certificate(), nil
}

// LoadCertPool reads PEM CA certificates.
func LoadCertPool(file string) (*x509.CertPool, error) {
	b, err := os.ReadFile(file)
	if err != nil {
		return nil, fmt.Errorf("auth: CA file: %w", err)
	}
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM(b) {
		return nil, fmt.Errorf("auth: CA file %s holds no PEM certificate", file)
	}
	return pool, nil
}

// ClientAuth says what a TLS server asks of its clients.
type ClientAuth int

const (
	// NoClientCert asks for no certificate.
	NoClientCert ClientAuth = iota
	// RequestClientCert asks for a certificate without requiring one or
	// verifying it against a CA: an AE pinned by SHA256 is checked by
	// the allow-list.
	RequestClientCert
	// RequireClientCert requires a certificate verified against the
	// client CA (--tls-client-ca).
	RequireClientCert
)

// ServerTLSConfig returns the configuration of a TLS listener (DICOM TLS
// or HTTPS): TLS 1.2 and 1.3 only, the profile's cipher suites, the
// certificate of kp (reloadable), and client certificates as auth says;
// clientCAs is required with RequireClientCert.
func ServerTLSConfig(kp *KeyPair, auth ClientAuth, clientCAs *x509.CertPool) (*tls.Config, error) {
	if kp == nil {
		return nil, errors.New("auth: a TLS server needs a certificate and key (--tls-cert, --tls-key)")
	}
	cfg := &tls.Config{
		MinVersion:       tls.VersionTLS12,
		MaxVersion:       tls.VersionTLS13,
		CipherSuites:     CipherSuites,
		CurvePreferences: curves,
		GetCertificate:   kp.GetCertificate,
	}
	switch auth {
	case RequireClientCert:
		if clientCAs == nil {
			return nil, errors.New("auth: requiring client certificates needs a client CA (--tls-client-ca)")
		}
		cfg.ClientAuth, cfg.ClientCAs = tls.RequireAndVerifyClientCert, clientCAs
	case RequestClientCert:
		cfg.ClientAuth = tls.RequestClientCert
	}
	return cfg, nil
}

// ClientTLSConfig returns the configuration of outgoing TLS associations
// (C-MOVE destinations, routes, commitment reports): the same versions
// and suites, the certificate of kp presented as client certificate if kp
// is not nil (it then needs the clientAuth extended key usage as well as
// serverAuth), and the peer verified against roots (nil: the system's).
// Set ServerName on a copy per peer, or leave it to the dialer.
func ClientTLSConfig(kp *KeyPair, roots *x509.CertPool) *tls.Config {
	cfg := &tls.Config{
		MinVersion:       tls.VersionTLS12,
		MaxVersion:       tls.VersionTLS13,
		CipherSuites:     CipherSuites,
		CurvePreferences: curves,
		RootCAs:          roots,
	}
	if kp != nil {
		cfg.GetClientCertificate = kp.GetClientCertificate
	}
	return cfg
}

// NewListener returns a listener that wraps each connection accepted on l
// in a TLS server connection. The handshake happens on the connection's
// first read, in the goroutine that serves it, so a slow client holds up
// no one else. Each connection's RemoteAddr is a *PeerAddr, through which
// AllowList.Authorize sees the client certificate.
func NewListener(l net.Listener, cfg *tls.Config) net.Listener {
	return &listener{Listener: l, cfg: cfg}
}

type listener struct {
	net.Listener
	cfg *tls.Config
}

func (l *listener) Accept() (net.Conn, error) {
	c, err := l.Listener.Accept()
	if err != nil {
		return nil, err
	}
	tc := tls.Server(c, l.cfg)
	return &conn{Conn: tc, addr: &PeerAddr{Addr: c.RemoteAddr(), conn: tc}}, nil
}

// conn is a TLS connection whose RemoteAddr carries its TLS state.
type conn struct {
	*tls.Conn
	addr *PeerAddr
}

func (c *conn) RemoteAddr() net.Addr { return c.addr }

// PeerAddr is the address of a peer connected over TLS.
type PeerAddr struct {
	net.Addr
	conn *tls.Conn
}

// ConnectionState returns the connection's TLS state; it is empty until
// the handshake has completed.
func (a *PeerAddr) ConnectionState() tls.ConnectionState { return a.conn.ConnectionState() }
