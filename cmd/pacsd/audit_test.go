package main

import (
	"bufio"
	"bytes"
	"crypto/tls"
	"crypto/x509"
	"io"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/pacsd/pacsd/internal/testpeer"
)

// syslogCollector is a syslog receiver over TLS (RFC 5425) that requires
// a client certificate, as an ATNA audit repository does.
type syslogCollector struct {
	addr string
	msgs chan string // each message, without its frame
}

func startSyslogCollector(t *testing.T, server testpeer.Issued, ca *testpeer.CA) *syslogCollector {
	t.Helper()
	cert, err := tls.LoadX509KeyPair(server.CertFile, server.KeyFile)
	if err != nil {
		t.Fatal(err)
	}
	pool := x509.NewCertPool()
	pool.AddCert(ca.Cert)
	l, err := tls.Listen("tcp", "127.0.0.1:0", &tls.Config{Certificates: []tls.Certificate{cert}, ClientAuth: tls.RequireAndVerifyClientCert, ClientCAs: pool})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { l.Close() })
	c := &syslogCollector{addr: l.Addr().String(), msgs: make(chan string, 1000)}
	go func() {
		for {
			conn, err := l.Accept()
			if err != nil {
				return
			}
			go c.read(conn)
		}
	}()
	return c
}

// read reads octet-counted frames: "LEN SP MSG".
func (c *syslogCollector) read(conn net.Conn) {
	defer conn.Close()
	br := bufio.NewReader(conn)
	for {
		n, err := br.ReadString(' ')
		if err != nil {
			return
		}
		size, err := strconv.Atoi(strings.TrimSpace(n))
		if err != nil || size <= 0 || size > 1<<20 {
			return
		}
		msg := make([]byte, size)
		if _, err := io.ReadFull(br, msg); err != nil {
			return
		}
		c.msgs <- string(msg)
	}
}

// wait returns the first message received that contains all of want.
func (c *syslogCollector) wait(t *testing.T, want ...string) string {
	t.Helper()
	timeout := time.After(15 * time.Second)
	for {
		select {
		case m := <-c.msgs:
			ok := true
			for _, w := range want {
				ok = ok && strings.Contains(m, w)
			}
			if ok {
				return m
			}
		case <-timeout:
			t.Fatalf("the syslog collector received no message with %q", want)
		}
	}
}

// pacsdAudit runs pacsd audit with args and returns its output and error.
func pacsdAudit(t *testing.T, args ...string) (string, error) {
	t.Helper()
	var stdout, stderr bytes.Buffer
	err := run(t.Context(), append([]string{"audit"}, args...), func(string) string { return "" }, &stdout, &stderr)
	return stdout.String() + stderr.String(), err
}

// TestAuditTrail checks the audit trail of a running pacsd from outside:
// its messages reach a syslog collector over TLS, pacsd audit lists and
// pacsd audit verify checks the journal while pacsd writes it, and a
// record removed from the middle or the end is detected.
func TestAuditTrail(t *testing.T) {
	testpeer.Need(t, "echoscu")
	pki := t.TempDir()
	ca := testpeer.NewCAT(t, pki, "ca")
	us := ca.IssueT(t, pki, "pacsd.test")
	collector := startSyslogCollector(t, ca.IssueT(t, pki, "audit.test"), ca)

	data := t.TempDir()
	p := startPacsd(t, data, "--audit-syslog", "tls://"+collector.addr,
		"--tls-cert", us.CertFile, "--tls-key", us.KeyFile, "--tls-ca", ca.File)
	collector.wait(t, "<AuditMessage>", `csd-code="110120"`) // Application Start
	if out, err := p.dcmtk("echoscu"); err != nil {
		t.Fatalf("echoscu: %v\n%s", err, out)
	}
	m := collector.wait(t, "association accepted", `AlternativeUserID="AETITLES=DCMTK"`)
	if !strings.HasPrefix(m, "<85>1 ") || !strings.Contains(m, " pacsd ") || !strings.Contains(m, "IHE+RFC-3881") {
		t.Errorf("not an RFC 5424 message of pacsd's: %.120q", m)
	}

	// While serve runs.
	if out, err := pacsdAudit(t, "verify", "--data", data); err != nil || !strings.Contains(out, "chain intact") {
		t.Fatalf("pacsd audit verify while serving: %v\n%s", err, out)
	}
	if out, err := pacsdAudit(t, "--data", data, "--user", "DCMTK"); err != nil || strings.Count(out, "Security-Alert") != 1 {
		t.Fatalf("pacsd audit --user DCMTK: %v\n%s", err, out)
	}
	p.stop()
	out, err := pacsdAudit(t, "--data", data)
	if err != nil || !strings.Contains(out, "Application-Activity") || strings.Count(out, "\n") != 4 {
		t.Fatalf("pacsd audit after serve stopped: want a header, start, association and stop records: %v\n%s", err, out)
	}

	journal := filepath.Join(data, "audit", "journal-000001.log")
	b, err := os.ReadFile(journal)
	if err != nil {
		t.Fatal(err)
	}
	lines := strings.SplitAfter(string(b), "\n")
	for _, tc := range []struct {
		name   string
		remove int // the line removed
		want   string
	}{
		{"a record removed from the middle", 1, "journal-000001.log line 2"},
		{"the last record removed", 2, "records were removed from the end"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			kept := strings.Join(append(append([]string{}, lines[:tc.remove]...), lines[tc.remove+1:]...), "")
			if err := os.WriteFile(journal, []byte(kept), 0o600); err != nil {
				t.Fatal(err)
			}
			out, err := pacsdAudit(t, "verify", "--data", data)
			if exitStatus(err) != 1 || !strings.Contains(err.Error(), tc.want) {
				t.Errorf("pacsd audit verify: exit status %d, %v, want 1 and an error saying %q\n%s", exitStatus(err), err, tc.want, out)
			}
		})
	}
}
