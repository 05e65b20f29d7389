package uid

//go:generate go run ../internal/dictgen -uids zuids.go

import (
	"errors"
	"fmt"
	"slices"
	"strings"
	"sync"
)

// MaxLength is the longest UID PS3.5 §9.1 allows.
const MaxLength = 64

// ErrInvalid reports a string that is not a UID.
var ErrInvalid = errors.New("uid: invalid")

// Valid reports whether s is a UID per PS3.5 §9.1: dot-separated components
// of digits, at most 64 characters. Components with a leading zero are
// accepted because real equipment sends them; empty components are not,
// because nothing built from a UID may contain "..".
func Valid(s string) error {
	if s == "" {
		return fmt.Errorf("%w: empty", ErrInvalid)
	}
	if len(s) > MaxLength {
		return fmt.Errorf("%w: %d characters, more than %d", ErrInvalid, len(s), MaxLength)
	}
	prevDot := true
	for i := 0; i < len(s); i++ {
		c := s[i]
		switch {
		case c == '.':
			if prevDot {
				return fmt.Errorf("%w: %q has an empty component", ErrInvalid, s)
			}
			prevDot = true
		case c >= '0' && c <= '9':
			prevDot = false
		default:
			return fmt.Errorf("%w: %q has a character other than digits and dots", ErrInvalid, s)
		}
	}
	if prevDot {
		return fmt.Errorf("%w: %q ends with a dot", ErrInvalid, s)
	}
	return nil
}

// Trim removes the padding a UID value carries on the wire: one trailing NUL
// (PS3.5 §9.1) and, from lenient senders, spaces.
func Trim(s string) string {
	return strings.TrimRight(s, "\x00 ")
}

// Entry describes a registered UID.
type Entry struct {
	UID     string
	Keyword string
	Name    string
	Type    string // "SOP Class", "Transfer Syntax", ...
	Retired bool
}

var byUID = sync.OnceValue(func() map[string]Entry {
	m := make(map[string]Entry, len(registry))
	for _, e := range registry {
		m[e.UID] = e
	}
	return m
})

// Lookup returns the registry entry of u.
func Lookup(u string) (Entry, bool) {
	e, ok := byUID()[u]
	return e, ok
}

// Name returns the registered name of u, or u itself; for logs and error
// comments.
func Name(u string) string {
	if e, ok := Lookup(u); ok {
		return e.Name
	}
	return u
}

// StorageClasses returns the Storage SOP classes (PS3.4 Annex B) the
// archive accepts, in registry order.
func StorageClasses() []string { return slices.Clone(storageClasses[:]) }

var storageSet = sync.OnceValue(func() map[string]bool {
	m := make(map[string]bool, len(storageClasses))
	for _, u := range storageClasses {
		m[u] = true
	}
	return m
})

// IsStorage reports whether u is one of StorageClasses.
func IsStorage(u string) bool { return storageSet()[u] }

// TransferSyntax describes how a data set is encoded (PS3.5 §10).
type TransferSyntax struct {
	UID        string
	Name       string
	BigEndian  bool
	ExplicitVR bool
	// Deflated data sets are compressed as a whole (PS3.5 §A.5); the
	// element structure is visible only after inflating.
	Deflated bool
	// Encapsulated syntaxes carry Pixel Data as fragments (PS3.5 §A.4).
	Encapsulated bool
}

// LookupTransferSyntax describes the transfer syntax u. Every registered
// transfer syntax other than the three native ones and deflate is
// encapsulated explicit VR little endian (PS3.5 §10.2 and Annex A).
func LookupTransferSyntax(u string) (TransferSyntax, bool) {
	e, ok := Lookup(u)
	if !ok || e.Type != "Transfer Syntax" {
		return TransferSyntax{}, false
	}
	ts := TransferSyntax{UID: u, Name: e.Name, ExplicitVR: true}
	switch u {
	case ImplicitVRLittleEndian:
		ts.ExplicitVR = false
	case ExplicitVRLittleEndian:
	case ExplicitVRBigEndian:
		ts.BigEndian = true
	case DeflatedExplicitVRLittleEndian:
		ts.Deflated = true
	case JPIPReferencedDeflate, JPIPHTJ2KReferencedDeflate:
		// JPIP references carry no pixel data; the deflate variants
		// deflate the whole data set.
		ts.Deflated = true
	case JPIPReferenced, JPIPHTJ2KReferenced:
	default:
		ts.Encapsulated = true
	}
	return ts, true
}

// StorageSyntaxes returns every transfer syntax a stored data set may be
// encoded in: the archive keeps what it receives, so it accepts them all.
func StorageSyntaxes() []string { return slices.Clone(storageSyntaxes[:]) }
