package main

import (
	"bytes"
	"context"
	"crypto/tls"
	"crypto/x509"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/pacsd/pacsd/auth"
	"github.com/pacsd/pacsd/dicom/uid"
	"github.com/pacsd/pacsd/dimse"
	"github.com/pacsd/pacsd/internal/dcmgen"
	"github.com/pacsd/pacsd/internal/testpeer"
)

// tlsAddr returns the DICOM TLS address pacsd said it listens on.
func (p *instance) tlsAddr() string {
	p.t.Helper()
	addr, _ := findLog(p.log(), "pacsd started")["dimse_tls_addr"].(string)
	if addr == "" {
		p.t.Fatal("pacsd did not say its DICOM TLS address")
	}
	return addr
}

// tlsTool runs a dcmtk tool against addr over TLS with calling AE title
// ae; tlsArgs are its TLS options and args the others, files last.
func tlsTool(t *testing.T, tool, addr, ae string, tlsArgs []string, args ...string) (string, error) {
	t.Helper()
	host, port, _ := net.SplitHostPort(addr)
	var files []string
	if tool == "storescu" {
		args, files = args[:len(args)-1], args[len(args)-1:]
	}
	all := append(append(append([]string{"-aet", ae, "-aec", "PACSD"}, tlsArgs...), args...), host, port)
	ctx, cancel := context.WithTimeout(t.Context(), 2*time.Minute)
	defer cancel()
	stdout, stderr, err := testpeer.Run(ctx, tool, append(all, files...)...)
	return stdout + stderr, err
}

// TestDICOMTLS runs pacsd's DICOM TLS port against dcmtk over OpenSSL:
// client certificates required and bound to AE titles, a C-MOVE to a
// storescp that requires pacsd's own client certificate, a certificate
// renewed by SIGHUP while an association stays up, and the audit records
// of what was accepted and refused.
func TestDICOMTLS(t *testing.T) {
	testpeer.Need(t, "echoscu", "storescu", "findscu", "movescu", "storescp", "xmllint")
	pki := t.TempDir()
	ca := testpeer.NewCAT(t, pki, "ca")
	rogue := testpeer.NewCAT(t, pki, "rogue-ca")
	server := ca.IssueT(t, pki, "pacsd.test")
	ct01 := ca.IssueT(t, pki, "ct01.rxh.nhs.uk")
	ct02 := ca.IssueT(t, pki, "ct02.rgt.nhs.uk")
	forged := rogue.IssueT(t, t.TempDir(), "ct01.rxh.nhs.uk")
	peer := ca.IssueT(t, pki, "storescp.test")

	scp := testpeer.StartStoreSCPT(t, testpeer.StoreSCPOptions{AET: "STORESCP",
		Args: []string{"+B", "+tls", peer.KeyFile, peer.CertFile, "+cf", ca.File}})
	// Forwarding to a storescp that requires pacsd's client certificate.
	fwd := testpeer.StartStoreSCPT(t, testpeer.StoreSCPOptions{AET: "FWDSCP",
		Args: []string{"+B", "+tls", peer.KeyFile, peer.CertFile, "+cf", ca.File}})
	data := t.TempDir()
	p := startPacsd(t, data, "--dimse-tls-addr", "127.0.0.1:0", "--remote-ae", "FWDSCP=tls://"+fwd.Addr, "--forward", "FWDSCP",
		"--tls-cert", server.CertFile, "--tls-key", server.KeyFile, "--tls-client-ca", ca.File,
		"--allow-ae", "CT01@cert:CN=ct01.rxh.nhs.uk#RXH,CT02@cert:CN=ct02.rgt.nhs.uk,DCMTK@127.0.0.1",
		"--remote-ae", "STORESCP=tls://"+scp.Addr)
	addr := p.tlsAddr()
	withCert := func(c testpeer.Issued) []string { return []string{"+tls", c.KeyFile, c.CertFile, "+cf", ca.File} }

	study, series := dcmgen.UID(), dcmgen.UID()
	file, err := dcmgen.Create(filepath.Join(t.TempDir(), "ct.dcm"), &dcmgen.Instance{
		Patient: dcmgen.Patient{Name: "Tls^Test", ID: "TLS1", IssuerOfPatientID: "RXH"},
		Study:   dcmgen.Study{UID: study, Date: "20260301"},
		Series:  dcmgen.Series{UID: series, Modality: "CT", Number: 1}, Rows: 8, Columns: 8,
	})
	if err != nil {
		t.Fatal(err)
	}

	t.Run("storescu and findscu with CT01's certificate, C-MOVE to storescp over TLS", func(t *testing.T) {
		if out, err := tlsTool(t, "storescu", addr, "CT01", withCert(ct01), file.Path); err != nil {
			t.Fatalf("storescu +tls: %v\n%s", err, out)
		}
		out, err := tlsTool(t, "findscu", addr, "CT01", withCert(ct01), "-v", "-S", "-k", "QueryRetrieveLevel=STUDY", "-k", "StudyInstanceUID="+study, "-k", "PatientID")
		if err != nil || !strings.Contains(out, "TLS1") {
			t.Fatalf("findscu +tls did not find the study: %v\n%s", err, out)
		}
		// dcmtk's movescu has no TLS; the C-MOVE it asks for goes to
		// storescp over TLS.
		if out, err := tlsTool(t, "movescu", p.dimseAddr, "DCMTK", nil, "-S", "-aem", "STORESCP", "-k", "QueryRetrieveLevel=STUDY", "-k", "StudyInstanceUID="+study); err != nil {
			t.Fatalf("movescu: %v\n%s", err, out)
		}
		files, err := scp.Files()
		if err != nil {
			t.Fatal(err)
		}
		if _, ok := files[file.SOPInstanceUID]; !ok {
			t.Fatalf("storescp +tls did not receive the instance moved to it: %v", files)
		}
	})

	t.Run("forwarded over TLS with pacsd's client certificate", func(t *testing.T) {
		deadline := time.Now().Add(20 * time.Second)
		for {
			files, err := fwd.Files()
			if err != nil {
				t.Fatal(err)
			}
			if _, ok := files[file.SOPInstanceUID]; ok {
				break
			}
			if time.Now().After(deadline) {
				t.Fatalf("storescp +tls did not receive the instance forwarded to it: %v\n%s", files, p.log())
			}
			time.Sleep(100 * time.Millisecond)
		}
	})

	t.Run("pacsd retrieve over TLS with CT02's certificate", func(t *testing.T) {
		other := t.TempDir()
		var stdout, stderr bytes.Buffer
		err := run(t.Context(), []string{"retrieve", "--data", other, "--ae-title", "CT02", "--from", "PACSD", "--remote-ae", "PACSD=tls://" + addr,
			"--tls-cert", ct02.CertFile, "--tls-key", ct02.KeyFile, "--tls-ca", ca.File,
			"--level", "SERIES", "--key", "StudyInstanceUID=" + study, "--key", "SeriesInstanceUID=" + series},
			func(string) string { return "" }, &stdout, &stderr)
		if err != nil || !strings.Contains(stdout.String(), "retrieved 1 instances") {
			t.Fatalf("pacsd retrieve from a tls:// remote: %v\n%s%s", err, stdout.String(), stderr.String())
		}
	})

	for _, tc := range []struct {
		name, ae string
		tlsArgs  []string
		want     string // in dcmtk's output
	}{
		{"without a client certificate", "CT01", []string{"+tla", "+cf", ca.File}, "Association Request Failed"},
		{"with a certificate of another CA", "CT01", withCert(forged), "Association Request Failed"},
		{"with the certificate bound to another AE", "CT01", withCert(ct02), "Calling AE Title Not Recognized"},
	} {
		t.Run("echoscu refused "+tc.name, func(t *testing.T) {
			out, err := tlsTool(t, "echoscu", addr, tc.ae, tc.tlsArgs)
			if err == nil || !strings.Contains(out, tc.want) {
				t.Fatalf("echoscu: %v, want a failure saying %q\n%s", err, tc.want, out)
			}
		})
	}
	t.Run("a certificate-bound AE is refused on the plain port", func(t *testing.T) {
		out, err := tlsTool(t, "echoscu", p.dimseAddr, "CT01", nil)
		if err == nil || !strings.Contains(out, "Calling AE Title Not Recognized") {
			t.Fatalf("echoscu CT01 over TCP: %v\n%s", err, out)
		}
	})

	t.Run("SIGHUP renews the certificate without dropping an association", func(t *testing.T) {
		kp, err := auth.LoadKeyPair(ct01.CertFile, ct01.KeyFile)
		if err != nil {
			t.Fatal(err)
		}
		roots := x509.NewCertPool()
		roots.AddCert(ca.Cert)
		open := func() (*dimse.Association, *x509.Certificate) {
			t.Helper()
			c, err := tls.Dial("tcp", addr, auth.ClientTLSConfig(kp, roots))
			if err != nil {
				t.Fatal(err)
			}
			d := &dimse.Dialer{CallingAE: "CT01", CalledAE: "PACSD", Proposals: []dimse.Proposal{
				{AbstractSyntax: uid.Verification, TransferSyntaxes: []string{uid.ImplicitVRLittleEndian}},
			}}
			a, err := d.DialConn(t.Context(), c)
			if err != nil {
				t.Fatal(err)
			}
			return a, c.ConnectionState().PeerCertificates[0]
		}
		old, oldCert := open()
		if !oldCert.Equal(server.Cert) {
			t.Fatal("pacsd presented another certificate than --tls-cert")
		}
		renewed := ca.IssueT(t, t.TempDir(), "pacsd.test")
		for _, f := range [][2]string{{renewed.CertFile, server.CertFile}, {renewed.KeyFile, server.KeyFile}} {
			b, err := os.ReadFile(f[0])
			if err != nil {
				t.Fatal(err)
			}
			if err := os.WriteFile(f[1], b, 0o600); err != nil {
				t.Fatal(err)
			}
		}
		if err := syscall.Kill(p.proc.PID(), syscall.SIGHUP); err != nil {
			t.Fatal(err)
		}
		waitLog(t, p, "SIGHUP: TLS certificate reloaded")
		fresh, freshCert := open()
		if !freshCert.Equal(renewed.Cert) {
			t.Error("after SIGHUP, a new handshake did not get the renewed certificate")
		}
		for i, a := range []*dimse.Association{old, fresh} {
			if err := a.Echo(t.Context()); err != nil {
				t.Errorf("association %d after SIGHUP: %v", i, err)
			}
			if err := a.Release(t.Context()); err != nil {
				t.Errorf("release %d: %v", i, err)
			}
		}
	})

	t.Run("audit records of associations accepted and refused", func(t *testing.T) {
		var accepted, refusedTLS, refusedAE int
		// The journal writes a few milliseconds after the event.
		time.Sleep(200 * time.Millisecond)
		for _, m := range auditMessages(t, data) {
			switch {
			case strings.Contains(m, "association accepted") && strings.Contains(m, `AlternativeUserID="AETITLES=CT01"`):
				accepted++
			case strings.Contains(m, "TLS handshake"):
				refusedTLS++
			case strings.Contains(m, "association from CT01 to PACSD rejected: calling AE title not recognized"):
				refusedAE++
			}
		}
		// storescu, findscu, two Go clients; two handshakes; the wrong
		// certificate and the plain port.
		if accepted != 4 || refusedTLS != 2 || refusedAE != 2 {
			t.Errorf("audit records: %d associations of CT01 accepted, %d TLS handshakes and %d associations refused; want 4, 2, 2", accepted, refusedTLS, refusedAE)
		}
	})

	t.Run("TLS without client certificates", func(t *testing.T) {
		q := startPacsd(t, t.TempDir(), "--dimse-tls-addr", "127.0.0.1:0", "--tls-cert", server.CertFile, "--tls-key", server.KeyFile)
		if out, err := tlsTool(t, "echoscu", q.tlsAddr(), "ANY", []string{"+tla", "+cf", ca.File}); err != nil {
			t.Fatalf("echoscu +tla: %v\n%s", err, out)
		}
	})
}

// waitLog waits until pacsd logs msg.
func waitLog(t *testing.T, p *instance, msg string) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for findLog(p.log(), msg) == nil {
		if time.Now().After(deadline) {
			t.Fatalf("pacsd did not log %q:\n%s", msg, p.proc.LogTail(20))
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// auditMessages returns the audit messages pacsd journalled under data,
// as pacsd audit --xml prints them, after checking each against the
// schema of PS3.15 A.5.1 with xmllint.
func auditMessages(t *testing.T, data string) []string {
	t.Helper()
	var stdout, stderr bytes.Buffer
	if err := run(t.Context(), []string{"audit", "--data", data, "--xml"}, func(string) string { return "" }, &stdout, &stderr); err != nil {
		t.Fatalf("pacsd audit: %v\n%s", err, stderr.String())
	}
	msgs := strings.Split(strings.TrimSpace(stdout.String()), "\n")
	dir := t.TempDir()
	args := []string{"--noout", "--relaxng", filepath.Join("..", "..", "audit", "testdata", "audit-message.rng")}
	for i, m := range msgs {
		f := filepath.Join(dir, fmt.Sprintf("%04d.xml", i))
		if err := os.WriteFile(f, []byte(m), 0o600); err != nil {
			t.Fatal(err)
		}
		args = append(args, f)
	}
	if _, out, err := testpeer.Run(t.Context(), "xmllint", args...); err != nil || strings.Count(out, " validates") != len(msgs) {
		t.Fatalf("audit messages do not validate against the schema: %v\n%s", err, out)
	}
	return msgs
}
