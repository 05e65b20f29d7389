package audit

import (
	"bufio"
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"io"
	"math/big"
	"net"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"
)

// selfSigned makes a certificate for 127.0.0.1.
func selfSigned(t *testing.T, cn string) (tls.Certificate, *x509.Certificate) {
	t.Helper()
	key, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: cn},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour),
		IPAddresses: []net.IP{net.IPv4(127, 0, 0, 1)},
		ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth, x509.ExtKeyUsageClientAuth},
		KeyUsage:    x509.KeyUsageDigitalSignature, IsCA: true, BasicConstraintsValid: true,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	c, _ := x509.ParseCertificate(der)
	return tls.Certificate{Certificate: [][]byte{der}, PrivateKey: key, Leaf: c}, c
}

// collector is a syslog receiver over TLS (RFC 5425) on loopback.
type collector struct {
	l       net.Listener
	msgs    chan string
	clients chan string // the CN of each client certificate
	conns   chan net.Conn
}

func startCollector(t *testing.T, addr string, server tls.Certificate, clientCA *x509.Certificate) *collector {
	t.Helper()
	pool := x509.NewCertPool()
	pool.AddCert(clientCA)
	l, err := tls.Listen("tcp", addr, &tls.Config{Certificates: []tls.Certificate{server}, ClientAuth: tls.RequireAndVerifyClientCert, ClientCAs: pool})
	if err != nil {
		t.Fatal(err)
	}
	c := &collector{l: l, msgs: make(chan string, 100), clients: make(chan string, 10), conns: make(chan net.Conn, 10)}
	t.Cleanup(func() { l.Close() })
	go func() {
		for {
			conn, err := l.Accept()
			if err != nil {
				return
			}
			c.conns <- conn
			go c.read(conn.(*tls.Conn))
		}
	}()
	return c
}

func (c *collector) read(conn *tls.Conn) {
	defer conn.Close()
	if err := conn.Handshake(); err != nil {
		return
	}
	c.clients <- conn.ConnectionState().PeerCertificates[0].Subject.CommonName
	br := bufio.NewReader(conn)
	for {
		n, err := br.ReadString(' ')
		if err != nil {
			return
		}
		size, err := strconv.Atoi(strings.TrimSuffix(n, " "))
		if err != nil || size <= 0 || size > 1<<20 {
			c.msgs <- "bad frame length " + n
			return
		}
		b := make([]byte, size)
		if _, err := io.ReadFull(br, b); err != nil {
			return
		}
		c.msgs <- string(b)
	}
}

func (c *collector) next(t *testing.T) string {
	t.Helper()
	select {
	case m := <-c.msgs:
		return m
	case <-time.After(10 * time.Second):
		t.Fatal("no message reached the collector")
		return ""
	}
}

var header5424 = regexp.MustCompile(`^<(\d+)>1 (\S+) (\S+) pacsd (\d+) IHE\+RFC-3881 - \x{FEFF}<AuditMessage>`)

func TestSyslog(t *testing.T) {
	serverCert, serverX := selfSigned(t, "collector")
	clientCert, clientX := selfSigned(t, "pacsd-audit")
	roots := x509.NewCertPool()
	roots.AddCert(serverX)
	clientTLS := &tls.Config{RootCAs: roots, Certificates: []tls.Certificate{clientCert}, MinVersion: tls.VersionTLS12}

	// The collector is down when pacsd starts: messages wait.
	l, _ := net.Listen("tcp", "127.0.0.1:0")
	addr := l.Addr().String()
	l.Close()
	s, err := NewSyslog(SyslogConfig{URL: "tls://" + addr, TLS: clientTLS, Hostname: "pacsd.rxh.nhs.uk"})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close(t.Context()) })
	s.Send(examples()["store"])
	s.Send(examples()["login-failed"])
	time.Sleep(100 * time.Millisecond)
	c := startCollector(t, addr, serverCert, clientX)

	m := c.next(t)
	h := header5424.FindStringSubmatch(m)
	if h == nil {
		t.Fatalf("not an RFC 5424 audit message: %q", m[:min(len(m), 200)])
	}
	if h[1] != "85" || h[2] != "2026-03-01T09:30:00.123456Z" || h[3] != "pacsd.rxh.nhs.uk" || !strings.HasSuffix(m, "</AuditMessage>") {
		t.Errorf("header %q", h)
	}
	if cn := <-c.clients; cn != "pacsd-audit" {
		t.Errorf("client certificate %q", cn)
	}
	m = c.next(t)
	if h := header5424.FindStringSubmatch(m); h == nil || h[1] != "84" || !strings.Contains(m, `csd-code="110114"`) {
		t.Errorf("a failure is a warning (84): %q", m[:min(len(m), 120)])
	}

	// The collector drops the connection: pacsd reconnects. A message
	// written into the dead connection may be lost, as RFC 5425 has no
	// acknowledgement; later ones arrive.
	(<-c.conns).Close()
	deadline := time.Now().Add(15 * time.Second)
	got := false
	for i := 0; !got && time.Now().Before(deadline); i++ {
		msg := examples()["c-find"]
		msg.Description = "after reconnect " + strconv.Itoa(i)
		s.Send(msg)
		select {
		case m := <-c.msgs:
			got = strings.Contains(m, "after reconnect")
		case <-time.After(300 * time.Millisecond):
		}
	}
	if !got {
		t.Fatal("no message after the collector dropped the connection")
	}
}

func TestSyslogQueueDropsOldest(t *testing.T) {
	l, _ := net.Listen("tcp", "127.0.0.1:0")
	addr := l.Addr().String()
	l.Close()
	s, err := NewSyslog(SyslogConfig{URL: "tls://" + addr, QueueSize: 3})
	if err != nil {
		t.Fatal(err)
	}
	for range 5 {
		s.Send(examples()["store"])
	}
	if d := s.Dropped(); d < 2 {
		t.Errorf("dropped %d of 5 with a queue of 3", d)
	}
	ctx, cancel := contextWithTimeout(t, 100*time.Millisecond)
	defer cancel()
	if err := s.Close(ctx); err == nil {
		t.Error("Close with an unreachable collector and a full queue returned nil")
	}
	for _, bad := range []string{"udp://127.0.0.1:514", "tcp://127.0.0.1:601", "127.0.0.1:6514", "tls://"} {
		if _, err := NewSyslog(SyslogConfig{URL: bad}); err == nil {
			t.Errorf("NewSyslog(%q) succeeded", bad)
		}
	}
}

func contextWithTimeout(t *testing.T, d time.Duration) (context.Context, context.CancelFunc) {
	return context.WithTimeout(t.Context(), d)
}
