package auth

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
)

// Scope is a set of permissions. The named scopes are single bits; a
// Scope value may hold several.
type Scope uint8

const (
	// Read allows queries and retrievals (C-FIND, C-MOVE, C-GET, QIDO-RS,
	// WADO-RS, WADO-URI).
	Read Scope = 1 << iota
	// Write allows storing (C-STORE, STOW-RS) and corrections.
	Write
	// Delete allows deleting instances, series and studies.
	Delete
	// Admin allows administration (the audit trail, re-identification)
	// and implies Read, Write and Delete.
	Admin
	// Research allows retrievals of de-identified copies only; a
	// principal with Research but not Read sees no original data.
	Research
)

var scopeNames = []struct {
	s    Scope
	name string
}{{Read, "read"}, {Write, "write"}, {Delete, "delete"}, {Admin, "admin"}, {Research, "research"}}

// String returns the scopes' names separated by commas, as the token file
// writes them.
func (s Scope) String() string {
	var names []string
	for _, n := range scopeNames {
		if s&n.s != 0 {
			names = append(names, n.name)
		}
	}
	return strings.Join(names, ",")
}

// ErrUnknownScope reports a scope name that is none of read, write,
// delete, admin and research.
var ErrUnknownScope = errors.New("auth: unknown scope")

// ParseScope reads one scope name (case-insensitive).
func ParseScope(name string) (Scope, error) {
	for _, n := range scopeNames {
		if strings.EqualFold(name, n.name) {
			return n.s, nil
		}
	}
	return 0, fmt.Errorf("%w %q: want read, write, delete, admin or research", ErrUnknownScope, name)
}

// ParseScopes reads comma-separated scope names, such as "read,write".
// It needs at least one.
func ParseScopes(list string) (Scope, error) {
	var s Scope
	for name := range strings.SplitSeq(list, ",") {
		one, err := ParseScope(strings.TrimSpace(name))
		if err != nil {
			return 0, err
		}
		s |= one
	}
	return s, nil
}

// Kind says how a principal was authenticated.
type Kind string

const (
	KindOIDC      Kind = "oidc"      // a bearer token from the OpenID Connect provider
	KindToken     Kind = "token"     // a machine token of the token file
	KindAE        Kind = "ae"        // a calling AE title of the DIMSE allow-list
	KindAnonymous Kind = "anonymous" // nobody: authentication is off
)

// Principal is an authenticated caller.
type Principal struct {
	// Name identifies the caller in logs and the audit trail: the
	// token's subject, the token file's name, or the AE title.
	Name string
	Kind Kind
	// Scopes are what the principal may do.
	Scopes Scope
	// Issuers lists the issuers of patient IDs whose patients the
	// principal may see; nil means all.
	Issuers []string
}

// Can reports whether p holds scope s (a single scope). Admin implies
// Read, Write and Delete, but not Research, which only restricts.
func (p *Principal) Can(s Scope) bool {
	if p == nil {
		return false
	}
	if p.Scopes&s != 0 {
		return true
	}
	return s&(Read|Write|Delete) != 0 && p.Scopes&Admin != 0
}

// ResearchOnly reports whether p may retrieve de-identified copies but
// not the originals.
func (p *Principal) ResearchOnly() bool {
	return p != nil && p.Scopes&Research != 0 && !p.Can(Read)
}

// AllIssuers reports whether p may see every patient, whatever the issuer
// of their ID.
func (p *Principal) AllIssuers() bool { return p != nil && p.Issuers == nil }

// AllowsIssuer reports whether p may see a patient whose Issuer of Patient
// ID is issuer. Surrounding spaces do not count; case does. A principal
// restricted to a list never sees patients without an issuer.
func (p *Principal) AllowsIssuer(issuer string) bool {
	if p == nil {
		return false
	}
	if p.Issuers == nil {
		return true
	}
	issuer = strings.TrimSpace(issuer)
	return issuer != "" && slices.Contains(p.Issuers, issuer)
}

// parseIssuers reads a list of issuers separated by "|". "*" or an empty
// list means all (nil); otherwise every issuer must be non-empty.
func parseIssuers(list string) ([]string, error) {
	list = strings.TrimSpace(list)
	if list == "" || list == "*" {
		return nil, nil
	}
	out := []string{}
	for is := range strings.SplitSeq(list, "|") {
		is = strings.TrimSpace(is)
		if is == "" {
			return nil, fmt.Errorf("auth: empty issuer in %q", list)
		}
		if is == "*" {
			return nil, fmt.Errorf("auth: * among other issuers in %q: it means all, alone", list)
		}
		if !slices.Contains(out, is) {
			out = append(out, is)
		}
	}
	return out, nil
}

type principalKey struct{}

// NewContext returns a copy of ctx that carries p.
func NewContext(ctx context.Context, p *Principal) context.Context {
	return context.WithValue(ctx, principalKey{}, p)
}

// FromContext returns the principal ctx carries, if any.
func FromContext(ctx context.Context) (*Principal, bool) {
	p, ok := ctx.Value(principalKey{}).(*Principal)
	return p, ok && p != nil
}
