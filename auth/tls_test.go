package auth

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"log/slog"
	"net"
	"os"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/pacsd/pacsd/dicom/uid"
	"github.com/pacsd/pacsd/dimse"
	"github.com/pacsd/pacsd/internal/testpeer"
)

// echoer answers C-ECHO and remembers who called.
type echoer struct {
	mu      sync.Mutex
	callers []string
}

func (e *echoer) Echo(_ context.Context, a *dimse.Association) error {
	e.mu.Lock()
	defer e.mu.Unlock()
	e.callers = append(e.callers, a.CallingAE())
	return nil
}

// tlsServer is a dimse.Server behind NewListener.
type tlsServer struct {
	addr string
	kp   *KeyPair
	echo *echoer
}

func startTLSServer(t *testing.T, kp *KeyPair, auth ClientAuth, clientCAs *x509.CertPool, allow *AllowList) *tlsServer {
	t.Helper()
	cfg, err := ServerTLSConfig(kp, auth, clientCAs)
	if err != nil {
		t.Fatal(err)
	}
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	e := &echoer{}
	srv := &dimse.Server{AETitle: "PACSD", AllowCaller: allow.AllowCaller, Echo: e, Logger: slog.New(slog.NewTextHandler(t.Output(), nil))}
	done := make(chan error, 1)
	go func() { done <- srv.Serve(NewListener(l, cfg)) }()
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		if err := srv.Shutdown(ctx); err != nil {
			t.Error(err)
		}
		if err := <-done; !errors.Is(err, dimse.ErrServerClosed) {
			t.Error(err)
		}
	})
	return &tlsServer{addr: l.Addr().String(), kp: kp, echo: e}
}

func (s *tlsServer) port() string { _, p, _ := net.SplitHostPort(s.addr); return p }

// echoscu runs dcmtk's echoscu over TLS; tlsArgs are its TLS options.
func echoscu(t *testing.T, s *tlsServer, callingAE string, tlsArgs ...string) error {
	t.Helper()
	ctx, cancel := context.WithTimeout(t.Context(), 30*time.Second)
	defer cancel()
	args := append(append([]string{"-aet", callingAE, "-aec", "PACSD"}, tlsArgs...), "127.0.0.1", s.port())
	_, stderr, err := testpeer.Run(ctx, "echoscu", args...)
	if err != nil {
		return errors.New(strings.TrimSpace(stderr))
	}
	return nil
}

func TestDICOMTLSWithDcmtk(t *testing.T) {
	testpeer.Need(t, "echoscu")
	dir := t.TempDir()
	ca := newTestCA(t, dir, "ca")
	rogue := newTestCA(t, dir, "rogue-ca")
	server := ca.IssueT(t, dir, "pacsd.test")
	ct01 := ca.IssueT(t, dir, "ct01.rxh.nhs.uk")
	ct02 := ca.IssueT(t, dir, "ct02.rgt.nhs.uk")
	forged := rogue.IssueT(t, t.TempDir(), "ct01.rxh.nhs.uk")

	kp, err := LoadKeyPair(server.CertFile, server.KeyFile)
	if err != nil {
		t.Fatal(err)
	}
	pool, err := LoadCertPool(ca.File)
	if err != nil {
		t.Fatal(err)
	}
	allow, err := ParseAllowList([]string{"CT01@cert:CN=ct01.rxh.nhs.uk#RXH", "OPEN@127.0.0.0/8"})
	if err != nil {
		t.Fatal(err)
	}
	s := startTLSServer(t, kp, RequireClientCert, pool, allow)

	withCert := func(c issued) []string { return []string{"+tls", c.KeyFile, c.CertFile, "+cf", ca.File} }
	for _, tc := range []struct {
		name    string
		ae      string
		args    []string
		wantErr string
	}{
		{"bound AE with its certificate", "CT01", withCert(ct01), ""},
		{"unbound AE with any CA certificate", "OPEN", withCert(ct02), ""},
		{"bound AE with another AE's certificate", "CT01", withCert(ct02), "Calling AE Title Not Recognized"},
		{"certificate from another CA", "CT01", []string{"+tls", forged.KeyFile, forged.CertFile, "+cf", ca.File}, "Association Request Failed"},
		{"no client certificate", "OPEN", []string{"+tla", "+cf", ca.File}, "Association Request Failed"},
		{"server not trusted by the client", "OPEN", []string{"+tls", ct02.KeyFile, ct02.CertFile, "+cf", rogue.File}, "certificate verify failed"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			err := echoscu(t, s, tc.ae, tc.args...)
			if tc.wantErr == "" {
				if err != nil {
					t.Fatalf("echoscu failed: %v", err)
				}
				return
			}
			if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
				t.Fatalf("echoscu error %v, want one mentioning %q", err, tc.wantErr)
			}
		})
	}
	s.echo.mu.Lock()
	defer s.echo.mu.Unlock()
	if strings.Join(s.echo.callers, ",") != "CT01,OPEN" {
		t.Errorf("echoes from %v", s.echo.callers)
	}
}

func TestTLSProfile(t *testing.T) {
	dir := t.TempDir()
	ca := newTestCA(t, dir, "ca")
	server := ca.IssueT(t, dir, "pacsd.test")
	kp, err := LoadKeyPair(server.CertFile, server.KeyFile)
	if err != nil {
		t.Fatal(err)
	}
	pool, _ := LoadCertPool(ca.File)
	allow, _ := ParseAllowList([]string{"ANY"})
	s := startTLSServer(t, kp, NoClientCert, nil, allow)

	dial := func(mut func(*tls.Config)) (tls.ConnectionState, error) {
		cfg := &tls.Config{RootCAs: pool, ServerName: "127.0.0.1"}
		mut(cfg)
		c, err := tls.Dial("tcp", s.addr, cfg)
		if err != nil {
			return tls.ConnectionState{}, err
		}
		defer c.Close()
		return c.ConnectionState(), nil
	}
	for _, tc := range []struct {
		name string
		mut  func(*tls.Config)
		ok   bool
	}{
		{"TLS 1.3", func(*tls.Config) {}, true},
		{"TLS 1.2 AES-GCM", func(c *tls.Config) {
			c.MaxVersion = tls.VersionTLS12
			c.CipherSuites = []uint16{tls.TLS_ECDHE_RSA_WITH_AES_256_GCM_SHA384}
		}, true},
		{"TLS 1.1", func(c *tls.Config) { c.MaxVersion = tls.VersionTLS11; c.MinVersion = tls.VersionTLS10 }, false},
		{"TLS 1.2 CBC", func(c *tls.Config) {
			c.MaxVersion = tls.VersionTLS12
			c.CipherSuites = []uint16{tls.TLS_ECDHE_RSA_WITH_AES_128_CBC_SHA256}
		}, false},
		{"TLS 1.2 ChaCha20", func(c *tls.Config) {
			c.MaxVersion = tls.VersionTLS12
			c.CipherSuites = []uint16{tls.TLS_ECDHE_RSA_WITH_CHACHA20_POLY1305_SHA256}
		}, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := dial(tc.mut)
			if (err == nil) != tc.ok {
				t.Fatalf("handshake error %v, want success %v", err, tc.ok)
			}
		})
	}
}

// TestCertificateReload checks that a renewed certificate is used by new
// handshakes while an association set up with the old one carries on.
func TestCertificateReload(t *testing.T) {
	dir := t.TempDir()
	ca := newTestCA(t, dir, "ca")
	first := ca.IssueT(t, dir, "pacsd.test")
	kp, err := LoadKeyPair(first.CertFile, first.KeyFile)
	if err != nil {
		t.Fatal(err)
	}
	pool, _ := LoadCertPool(ca.File)
	allow, _ := ParseAllowList([]string{"SCU"})
	s := startTLSServer(t, kp, NoClientCert, nil, allow)

	ctx := t.Context()
	open := func() (*dimse.Association, *x509.Certificate) {
		t.Helper()
		cfg := ClientTLSConfig(nil, pool)
		cfg.ServerName = "127.0.0.1"
		c, err := tls.Dial("tcp", s.addr, cfg)
		if err != nil {
			t.Fatal(err)
		}
		d := &dimse.Dialer{CallingAE: "SCU", CalledAE: "PACSD", Proposals: []dimse.Proposal{
			{AbstractSyntax: uid.Verification, TransferSyntaxes: []string{uid.ImplicitVRLittleEndian}},
		}}
		a, err := d.DialConn(ctx, c)
		if err != nil {
			t.Fatal(err)
		}
		return a, c.ConnectionState().PeerCertificates[0]
	}
	old, oldCert := open()
	if oldCert.SerialNumber.Cmp(first.Cert.SerialNumber) != 0 {
		t.Fatalf("serial %v", oldCert.SerialNumber)
	}

	// Renew: new files in place, then the reload SIGHUP triggers.
	renewed := ca.IssueT(t, t.TempDir(), "pacsd.test")
	for _, f := range [][2]string{{renewed.CertFile, first.CertFile}, {renewed.KeyFile, first.KeyFile}} {
		b, err := os.ReadFile(f[0])
		if err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(f[1], b, 0o600); err != nil {
			t.Fatal(err)
		}
	}
	if err := kp.Reload(); err != nil {
		t.Fatal(err)
	}
	fresh, freshCert := open()
	if freshCert.SerialNumber.Cmp(renewed.Cert.SerialNumber) != 0 {
		t.Errorf("after reload, serial %v", freshCert.SerialNumber)
	}
	for i, a := range []*dimse.Association{old, fresh} {
		if err := a.Echo(ctx); err != nil {
			t.Errorf("association %d: %v", i, err)
		}
		if err := a.Release(ctx); err != nil {
			t.Errorf("release %d: %v", i, err)
		}
	}

	// A broken file leaves the renewed certificate in force.
	if err := os.WriteFile(first.KeyFile, []byte("not a key"), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := kp.Reload(); err == nil {
		t.Error("Reload of a broken key succeeded")
	} else if strings.Contains(err.Error(), "not a key") {
		t.Error("the error shows the key file's content")
	}
	if kp.Certificate().Leaf.SerialNumber.Cmp(renewed.Cert.SerialNumber) != 0 {
		t.Error("a failed reload replaced the certificate")
	}
}

// TestClientTLSWithStorescp sends a C-ECHO to dcmtk's storescp over TLS,
// which requires and verifies our client certificate.
func TestClientTLSWithStorescp(t *testing.T) {
	testpeer.Need(t, "storescp")
	dir := t.TempDir()
	ca := newTestCA(t, dir, "ca")
	peer := ca.IssueT(t, dir, "storescp.test")
	us := ca.IssueT(t, dir, "pacsd.test")
	scp := testpeer.StartStoreSCPT(t, testpeer.StoreSCPOptions{
		Args: []string{"+tls", peer.KeyFile, peer.CertFile, "+cf", ca.File},
	})
	kp, err := LoadKeyPair(us.CertFile, us.KeyFile)
	if err != nil {
		t.Fatal(err)
	}
	pool, _ := LoadCertPool(ca.File)
	ctx := t.Context()
	echo := func(kp *KeyPair) error {
		cfg := ClientTLSConfig(kp, pool)
		cfg.ServerName = "127.0.0.1"
		c, err := tls.Dial("tcp", scp.Addr, cfg)
		if err != nil {
			return err
		}
		d := &dimse.Dialer{CallingAE: "PACSD", CalledAE: scp.AET, Proposals: []dimse.Proposal{
			{AbstractSyntax: uid.Verification, TransferSyntaxes: []string{uid.ImplicitVRLittleEndian}},
		}}
		a, err := d.DialConn(ctx, c)
		if err != nil {
			return err
		}
		if err := a.Echo(ctx); err != nil {
			return err
		}
		return a.Release(ctx)
	}
	if err := echo(kp); err != nil {
		t.Fatalf("with our certificate: %v", err)
	}
	if err := echo(nil); err == nil {
		t.Error("storescp accepted an association without a client certificate")
	}
}
