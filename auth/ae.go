package auth

import (
	"bytes"
	"context"
	"crypto/sha256"
	"crypto/tls"
	"crypto/x509"
	"encoding/hex"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"slices"
	"strings"
)

// ErrAEEntry reports a malformed --allow-ae entry.
var ErrAEEntry = errors.New("auth: allow_ae")

// AEEntry is one entry of the calling AE allow-list (--allow-ae). The
// calling AE title must match, and every condition must hold.
type AEEntry struct {
	AETitle string
	// Prefixes the peer's address must be in (an address is a full
	// length prefix); empty means any address. Host names are resolved
	// into it by AllowList.Resolve.
	Prefixes []netip.Prefix
	// Host is a name to resolve into Prefixes.
	Host string
	// Cert, if set, is what the peer's TLS client certificate must show.
	Cert *CertMatch
	// Issuers the AE may reach; nil means all.
	Issuers []string
}

// CertMatch binds an AE title to a TLS client certificate.
type CertMatch struct {
	// CommonName must equal the subject's CN (ASCII case-insensitive);
	// the certificate must have been verified against the client CA.
	CommonName string
	// DNSName must be among the subject alternative names; the
	// certificate must have been verified against the client CA.
	DNSName string
	// SHA256 pins the DER certificate by its fingerprint; it holds
	// without a client CA, since the handshake proves the peer holds the
	// key of the certificate it presented.
	SHA256 []byte
}

// String returns the match as ParseAEEntry reads it.
func (c *CertMatch) String() string {
	switch {
	case c.CommonName != "":
		return "cert:CN=" + c.CommonName
	case c.DNSName != "":
		return "cert:DNS=" + c.DNSName
	}
	return "cert:SHA256=" + hex.EncodeToString(c.SHA256)
}

// ParseAEEntry reads one --allow-ae entry. Its grammar:
//
//	entry     = aetitle *( "@" condition ) [ "#" issuers ]
//	condition = host | address | cidr | "cert:" certmatch
//	certmatch = "CN=" name | "DNS=" name | "SHA256=" 64HEXDIG
//	issuers   = "*" | issuer *( "|" issuer )
//
// For example: CT01, CT01@10.0.0.7, CT01@10.0.0.0/24,
// CT01@ct01.rxh.nhs.uk, CT01@cert:CN=ct01.rxh.nhs.uk,
// CT01@10.0.0.0/24@cert:CN=ct01.rxh.nhs.uk#RXH|RGT. The entries of the
// flag are separated by commas, so no part of an entry may contain one:
// a certificate is matched by one attribute, not by a whole DN. AE titles
// and hosts cannot contain "@" or "#", nor issuers "|" or ",".
func ParseAEEntry(s string) (AEEntry, error) {
	e := AEEntry{}
	left, issuers, hasIssuers := strings.Cut(s, "#")
	if hasIssuers {
		list, err := parseIssuers(issuers)
		if err != nil {
			return e, fmt.Errorf("%w %q: %w", ErrAEEntry, s, err)
		}
		if list == nil && strings.TrimSpace(issuers) != "*" {
			return e, fmt.Errorf("%w %q: no issuers after #", ErrAEEntry, s)
		}
		e.Issuers = list
	}
	parts := strings.Split(left, "@")
	e.AETitle = strings.TrimSpace(parts[0])
	if err := validAETitle(parts[0]); err != nil {
		return e, fmt.Errorf("%w %q: %w", ErrAEEntry, s, err)
	}
	for _, c := range parts[1:] {
		c = strings.TrimSpace(c)
		if rest, ok := strings.CutPrefix(c, "cert:"); ok {
			if e.Cert != nil {
				return e, fmt.Errorf("%w %q: more than one cert: condition", ErrAEEntry, s)
			}
			m, err := parseCertMatch(rest)
			if err != nil {
				return e, fmt.Errorf("%w %q: %w", ErrAEEntry, s, err)
			}
			e.Cert = m
			continue
		}
		if len(e.Prefixes) > 0 || e.Host != "" {
			return e, fmt.Errorf("%w %q: more than one host or address", ErrAEEntry, s)
		}
		switch p, perr := netip.ParsePrefix(c); {
		case c == "":
			return e, fmt.Errorf("%w %q: empty condition after @", ErrAEEntry, s)
		case perr == nil:
			e.Prefixes = []netip.Prefix{p.Masked()}
		default:
			if ip, err := netip.ParseAddr(c); err == nil {
				ip = ip.Unmap()
				e.Prefixes = []netip.Prefix{netip.PrefixFrom(ip, ip.BitLen())}
			} else if validHost(c) {
				e.Host = c
			} else {
				return e, fmt.Errorf("%w %q: %q is not a host name, address or CIDR prefix", ErrAEEntry, s, c)
			}
		}
	}
	return e, nil
}

func parseCertMatch(s string) (*CertMatch, error) {
	key, val, ok := strings.Cut(s, "=")
	val = strings.TrimSpace(val)
	if !ok || val == "" {
		return nil, fmt.Errorf("cert:%s: want cert:CN=NAME, cert:DNS=NAME or cert:SHA256=HEX", s)
	}
	switch strings.ToUpper(strings.TrimSpace(key)) {
	case "CN":
		return &CertMatch{CommonName: val}, nil
	case "DNS":
		return &CertMatch{DNSName: val}, nil
	case "SHA256":
		h, err := hex.DecodeString(strings.ReplaceAll(val, ":", ""))
		if err != nil || len(h) != sha256.Size {
			return nil, fmt.Errorf("cert:SHA256=%s is not a SHA-256 fingerprint in hexadecimal", val)
		}
		return &CertMatch{SHA256: h}, nil
	}
	return nil, fmt.Errorf("cert:%s: %q is not CN, DNS or SHA256", s, key)
}

// validHost reports whether s can be a DNS host name.
func validHost(s string) bool {
	if len(s) > 253 {
		return false
	}
	for _, r := range s {
		if !(r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' || r == '.' || r == '-' || r == '_') {
			return false
		}
	}
	return s != "" && s[0] != '.' && s[0] != '-'
}

// validAETitle checks an AE title: 1 to 16 characters of the default
// repertoire without backslash, not counting surrounding spaces.
func validAETitle(s string) error {
	t := strings.TrimSpace(s)
	if t == "" || len(t) > 16 {
		return fmt.Errorf("AE title %q must have 1 to 16 characters", s)
	}
	for _, r := range t {
		if r < 0x20 || r > 0x7E || r == '\\' {
			return fmt.Errorf("AE title %q has a character outside the AE repertoire", s)
		}
	}
	return nil
}

// Matches reports whether a peer calling as callingAE from addr, with the
// TLS state tls (nil over plain TCP), satisfies e.
func (e *AEEntry) Matches(callingAE string, addr net.Addr, cs *tls.ConnectionState) bool {
	if strings.TrimSpace(callingAE) != e.AETitle {
		return false
	}
	if e.Host != "" && len(e.Prefixes) == 0 {
		return false // not resolved
	}
	if len(e.Prefixes) > 0 {
		ip := addrIP(addr)
		if !ip.IsValid() || !slices.ContainsFunc(e.Prefixes, func(p netip.Prefix) bool { return p.Contains(ip) }) {
			return false
		}
	}
	if e.Cert != nil {
		return cs != nil && e.Cert.matches(cs)
	}
	return true
}

func (c *CertMatch) matches(cs *tls.ConnectionState) bool {
	if len(cs.PeerCertificates) == 0 {
		return false
	}
	leaf := cs.PeerCertificates[0]
	if c.SHA256 != nil {
		sum := sha256.Sum256(leaf.Raw)
		return bytes.Equal(sum[:], c.SHA256)
	}
	if !verified(cs, leaf) {
		return false
	}
	if c.CommonName != "" {
		return strings.EqualFold(leaf.Subject.CommonName, c.CommonName)
	}
	return slices.ContainsFunc(leaf.DNSNames, func(n string) bool { return strings.EqualFold(n, c.DNSName) })
}

// verified reports whether leaf was verified against a CA in the
// handshake.
func verified(cs *tls.ConnectionState, leaf *x509.Certificate) bool {
	for _, chain := range cs.VerifiedChains {
		if len(chain) > 0 && chain[0].Equal(leaf) {
			return true
		}
	}
	return false
}

// addrIP returns the IP address of a peer's address.
func addrIP(addr net.Addr) netip.Addr {
	switch a := addr.(type) {
	case *PeerAddr:
		return addrIP(a.Addr)
	case *net.TCPAddr:
		ip, _ := netip.AddrFromSlice(a.IP)
		return ip.Unmap()
	case nil:
		return netip.Addr{}
	}
	ap, err := netip.ParseAddrPort(addr.String())
	if err != nil {
		return netip.Addr{}
	}
	return ap.Addr().Unmap()
}

// AllowList is the calling AE allow-list: the first entry that matches an
// association decides its principal. A zero AllowList allows nobody.
type AllowList struct {
	entries []AEEntry
}

// ParseAllowList reads the entries of --allow-ae. Host names stay
// unresolved until Resolve.
func ParseAllowList(list []string) (*AllowList, error) {
	l := &AllowList{}
	for _, s := range list {
		e, err := ParseAEEntry(s)
		if err != nil {
			return nil, err
		}
		l.entries = append(l.entries, e)
	}
	return l, nil
}

// Entries returns the entries, in order.
func (l *AllowList) Entries() []AEEntry { return slices.Clone(l.entries) }

// NeedsClientCert reports whether an entry binds an AE title to a
// certificate, so the TLS listener must ask peers for one.
func (l *AllowList) NeedsClientCert() bool {
	return slices.ContainsFunc(l.entries, func(e AEEntry) bool { return e.Cert != nil })
}

// Resolve looks up the addresses of the entries that name a host, once:
// a host that moves needs a restart or a reload. r nil means
// net.DefaultResolver.
func (l *AllowList) Resolve(ctx context.Context, r *net.Resolver) error {
	if r == nil {
		r = net.DefaultResolver
	}
	for i := range l.entries {
		e := &l.entries[i]
		if e.Host == "" {
			continue
		}
		addrs, err := r.LookupNetIP(ctx, "ip", e.Host)
		if err != nil {
			return fmt.Errorf("%w %s@%s: %w", ErrAEEntry, e.AETitle, e.Host, err)
		}
		e.Prefixes = e.Prefixes[:0]
		for _, ip := range addrs {
			ip = ip.Unmap()
			e.Prefixes = append(e.Prefixes, netip.PrefixFrom(ip, ip.BitLen()))
		}
	}
	return nil
}

// Authorize returns the principal of an association from callingAE at
// addr, or false if no entry allows it. When addr is a *PeerAddr (the
// connection came through NewListener), its TLS state is checked against
// certificate bindings; otherwise none holds.
func (l *AllowList) Authorize(callingAE string, addr net.Addr) (*Principal, bool) {
	var cs *tls.ConnectionState
	if pa, ok := addr.(*PeerAddr); ok {
		s := pa.ConnectionState()
		cs = &s
	}
	for i := range l.entries {
		e := &l.entries[i]
		if e.Matches(callingAE, addr, cs) {
			return &Principal{Name: e.AETitle, Kind: KindAE, Scopes: Read | Write, Issuers: e.Issuers}, true
		}
	}
	return nil, false
}

// AllowCaller has the signature of dimse.Server.AllowCaller.
func (l *AllowList) AllowCaller(callingAE string, addr net.Addr) bool {
	_, ok := l.Authorize(callingAE, addr)
	return ok
}

// OpenAE returns the principal of a calling AE when no allow-list applies
// (--allow-any-ae, or loopback only): every issuer, read and write.
func OpenAE(callingAE string) *Principal {
	return &Principal{Name: strings.TrimSpace(callingAE), Kind: KindAE, Scopes: Read | Write}
}
