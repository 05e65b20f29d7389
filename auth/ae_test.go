package auth

import (
	"bufio"
	"context"
	"crypto/sha256"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
)

func TestParseAEEntry(t *testing.T) {
	pin := sha256.Sum256([]byte("x"))
	for _, tc := range []struct {
		in      string
		want    string // fmt of the parsed entry's parts
		wantErr string
	}{
		{"CT01", "CT01 [] - <nil> all", ""},
		{" CT01 ", "CT01 [] - <nil> all", ""},
		{"CT01@10.0.0.7", "CT01 [10.0.0.7/32] - <nil> all", ""},
		{"CT01@10.0.0.9/24", "CT01 [10.0.0.0/24] - <nil> all", ""},
		{"CT01@::ffff:10.0.0.7", "CT01 [10.0.0.7/32] - <nil> all", ""},
		{"CT01@fe80::/64", "CT01 [fe80::/64] - <nil> all", ""},
		{"MR1@ct01.rxh.nhs.uk", "MR1 [] ct01.rxh.nhs.uk <nil> all", ""},
		{"CT01@cert:CN=ct01.rxh.nhs.uk", "CT01 [] - cert:CN=ct01.rxh.nhs.uk all", ""},
		{"CT01@cert:dns=ct01.example", "CT01 [] - cert:DNS=ct01.example all", ""},
		{fmt.Sprintf("US1@cert:SHA256=%X", pin), fmt.Sprintf("US1 [] - cert:SHA256=%x all", pin), ""},
		{"CT01@10.0.0.0/24#RXH|RGT", "CT01 [10.0.0.0/24] - <nil> [RXH RGT]", ""},
		{"CT01@10.0.0.0/24@cert:CN=a#RXH", "CT01 [10.0.0.0/24] - cert:CN=a [RXH]", ""},
		{"CT01#*", "CT01 [] - <nil> all", ""},
		{"", "", "1 to 16"},
		{"ABCDEFGHIJKLMNOPQ", "", "1 to 16"},
		{"CT\\01", "", "repertoire"},
		{"CT01@", "", "empty condition"},
		{"CT01@a b", "", "not a host name"},
		{"CT01#", "", "no issuers"},
		{"CT01#RXH||X", "", "empty issuer"},
		{"CT01@10.0.0.1@10.0.0.2", "", "more than one host"},
		{"CT01@cert:CN=a@cert:CN=b", "", "more than one cert"},
		{"CT01@cert:O=RXH", "", "not CN, DNS or SHA256"},
		{"CT01@cert:CN=", "", "want cert:CN"},
		{"CT01@cert:SHA256=abcd", "", "SHA-256 fingerprint"},
	} {
		t.Run(tc.in, func(t *testing.T) {
			e, err := ParseAEEntry(tc.in)
			if tc.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tc.wantErr) || !errors.Is(err, ErrAEEntry) {
					t.Fatalf("error %v, want one wrapping ErrAEEntry containing %q", err, tc.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if got := describe(e); got != tc.want {
				t.Errorf("parsed as %q, want %q", got, tc.want)
			}
		})
	}
}

func describe(e AEEntry) string {
	host, issuers := e.Host, "all"
	if host == "" {
		host = "-"
	}
	if e.Issuers != nil {
		issuers = fmt.Sprint(e.Issuers)
	}
	cert := "<nil>"
	if e.Cert != nil {
		cert = e.Cert.String()
	}
	return fmt.Sprintf("%s %v %s %s %s", e.AETitle, e.Prefixes, host, cert, issuers)
}

func tcpAddr(s string) net.Addr {
	return net.TCPAddrFromAddrPort(netip.MustParseAddrPort(s))
}

func TestAllowListAuthorize(t *testing.T) {
	dir := t.TempDir()
	ca := newTestCA(t, dir, "ca")
	other := newTestCA(t, dir, "other-ca")
	ct01 := ca.IssueT(t, dir, "ct01.rxh.nhs.uk")
	forged := other.IssueT(t, dir, "ct01.rxh.nhs.uk")
	pin := sha256.Sum256(forged.Cert.Raw)

	l, err := ParseAllowList([]string{
		"CT01@10.0.0.0/24#RXH|RGT",
		"CT01@10.1.0.0/16",
		"TLSCT@cert:CN=ct01.rxh.nhs.uk#RXH",
		fmt.Sprintf("PINNED@cert:SHA256=%x", pin),
		"LOCAL@localhost",
		"ANY",
	})
	if err != nil {
		t.Fatal(err)
	}
	if !l.NeedsClientCert() {
		t.Error("NeedsClientCert false")
	}
	if err := l.Resolve(context.Background(), nil); err != nil {
		t.Fatal(err)
	}
	verifiedState := &tls.ConnectionState{PeerCertificates: []*x509.Certificate{ct01.Cert}, VerifiedChains: [][]*x509.Certificate{{ct01.Cert, ca.Cert}}}
	unverified := &tls.ConnectionState{PeerCertificates: []*x509.Certificate{forged.Cert}}
	for _, tc := range []struct {
		name    string
		ae      string
		addr    string
		cs      *tls.ConnectionState
		want    bool
		issuers []string
	}{
		{"first entry", "CT01", "10.0.0.8:4000", nil, true, []string{"RXH", "RGT"}},
		{"second entry", "CT01", "10.1.2.3:4000", nil, true, nil},
		{"outside both", "CT01", "10.2.0.1:4000", nil, false, nil},
		{"unknown AE", "CT09", "10.0.0.8:4000", nil, false, nil},
		{"padded AE", "CT01  ", "10.0.0.8:4000", nil, true, []string{"RXH", "RGT"}},
		{"cert bound, verified", "TLSCT", "192.0.2.1:1", verifiedState, true, []string{"RXH"}},
		{"cert bound, unverified", "TLSCT", "192.0.2.1:1", unverified, false, nil},
		{"cert bound, plain TCP", "TLSCT", "192.0.2.1:1", nil, false, nil},
		{"pinned, unverified", "PINNED", "192.0.2.1:1", unverified, true, nil},
		{"pinned, other cert", "PINNED", "192.0.2.1:1", verifiedState, false, nil},
		{"resolved host", "LOCAL", "127.0.0.1:5", nil, true, nil},
		{"resolved host, elsewhere", "LOCAL", "192.0.2.1:5", nil, false, nil},
		{"anywhere", "ANY", "192.0.2.1:5", nil, true, nil},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var ok bool
			var p *Principal
			if tc.cs == nil {
				p, ok = l.Authorize(tc.ae, tcpAddr(tc.addr))
			} else {
				e := matchState(l, tc.ae, tcpAddr(tc.addr), tc.cs)
				ok = e != nil
				if ok {
					p = &Principal{Name: e.AETitle, Issuers: e.Issuers}
				}
			}
			if ok != tc.want {
				t.Fatalf("allowed = %v, want %v", ok, tc.want)
			}
			if ok && !slices.Equal(p.Issuers, tc.issuers) {
				t.Errorf("issuers %v, want %v", p.Issuers, tc.issuers)
			}
			if ok && tc.cs == nil && (p.Kind != KindAE || p.Name != strings.TrimSpace(tc.ae) || !p.Can(Read) || !p.Can(Write) || p.Can(Delete)) {
				t.Errorf("principal %+v", p)
			}
		})
	}
	if (&AllowList{}).AllowCaller("ANY", tcpAddr("127.0.0.1:1")) {
		t.Error("a zero AllowList allowed a caller")
	}
}

// matchState is Authorize with a TLS state given directly.
func matchState(l *AllowList, ae string, addr net.Addr, cs *tls.ConnectionState) *AEEntry {
	for i := range l.entries {
		if l.entries[i].Matches(ae, addr, cs) {
			return &l.entries[i]
		}
	}
	return nil
}

func TestCertMatchCommonNameNeedsVerifiedChain(t *testing.T) {
	c := &x509.Certificate{Raw: []byte{1}, Subject: pkix.Name{CommonName: "A"}, DNSNames: []string{"a.example"}}
	cs := &tls.ConnectionState{PeerCertificates: []*x509.Certificate{c}}
	for _, m := range []*CertMatch{{CommonName: "a"}, {DNSName: "A.EXAMPLE"}} {
		if m.matches(cs) {
			t.Errorf("%v matched an unverified certificate", m)
		}
		cs2 := *cs
		cs2.VerifiedChains = [][]*x509.Certificate{{c}}
		if !m.matches(&cs2) {
			t.Errorf("%v did not match a verified certificate", m)
		}
	}
}

func FuzzParseAEEntry(f *testing.F) {
	file, err := os.Open(filepath.Join("testdata", "allow-ae", "examples"))
	if err != nil {
		f.Fatal(err)
	}
	sc := bufio.NewScanner(file)
	for sc.Scan() {
		f.Add(sc.Text())
	}
	file.Close()
	f.Fuzz(func(t *testing.T, in string) {
		e, err := ParseAEEntry(in)
		if err != nil {
			return
		}
		if validAETitle(e.AETitle) != nil || e.AETitle != strings.TrimSpace(e.AETitle) {
			t.Fatalf("accepted AE title %q", e.AETitle)
		}
		if e.Host != "" && len(e.Prefixes) > 0 {
			t.Fatal("both a host and prefixes")
		}
		for _, is := range e.Issuers {
			if is == "" || strings.Contains(is, "|") {
				t.Fatalf("issuer %q", is)
			}
		}
		// Matching never panics, whatever was parsed.
		e.Matches(e.AETitle, tcpAddr("10.0.0.1:1"), &tls.ConnectionState{})
	})
}
