package auth

import (
	"bufio"
	"bytes"
	"context"
	"crypto/rand"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/base64"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"os"
	"strings"
	"sync"
	"time"
)

// TokenPrefix starts every token CreateToken makes, so that secret
// scanners and people recognise one.
const TokenPrefix = "pacsd_"

// ErrInvalidToken reports a token that no authenticator accepts: unknown,
// expired, badly signed, for another audience. Errors that wrap it say
// why, without the token.
var ErrInvalidToken = errors.New("auth: invalid token")

// ErrTokenFile reports a malformed token file line.
var ErrTokenFile = errors.New("auth: token file")

// TokenEntry is one line of a token file.
type TokenEntry struct {
	Name    string
	Hash    [sha256.Size]byte // SHA-256 of the token
	Scopes  Scope
	Issuers []string // nil: all
}

// Principal returns the principal the entry's token authenticates.
func (e *TokenEntry) Principal() *Principal {
	return &Principal{Name: e.Name, Kind: KindToken, Scopes: e.Scopes, Issuers: e.Issuers}
}

// Line returns the entry as a token file line, without a newline.
func (e *TokenEntry) Line() string {
	is := "*"
	if e.Issuers != nil {
		is = strings.Join(e.Issuers, "|")
	}
	return e.Name + " " + hex.EncodeToString(e.Hash[:]) + " " + e.Scopes.String() + " " + is
}

// maxTokenFile bounds the size of a token file read into memory.
const maxTokenFile = 16 << 20

// ParseTokenFile reads a token file. Its grammar, one entry a line:
//
//	line    = blank | comment | entry
//	comment = *WSP "#" *any
//	entry   = *WSP name 1*WSP hash 1*WSP scopes [1*WSP issuers] *WSP
//	name    = 1*64 ( ALPHA | DIGIT | "." | "_" | "-" | "@" )
//	hash    = 64 HEXDIG                ; SHA-256 of the token
//	scopes  = scope *( "," scope )     ; read, write, delete, admin, research
//	issuers = "*" | issuer *( "|" issuer )
//	issuer  = any characters but "|", without surrounding spaces
//
// The issuers are the rest of the line, so an issuer may contain spaces.
// No issuers, or "*", means all. Names and hashes are unique in a file.
// An error names the line.
func ParseTokenFile(r io.Reader) ([]TokenEntry, error) {
	var out []TokenEntry
	names := map[string]bool{}
	hashes := map[[sha256.Size]byte]bool{}
	sc := bufio.NewScanner(io.LimitReader(r, maxTokenFile))
	sc.Buffer(make([]byte, 0, 4096), 64<<10)
	for n := 1; sc.Scan(); n++ {
		e, ok, err := parseTokenLine(sc.Text())
		if err != nil {
			return nil, fmt.Errorf("%w: line %d: %w", ErrTokenFile, n, err)
		}
		if !ok {
			continue
		}
		if names[e.Name] {
			return nil, fmt.Errorf("%w: line %d: name %q used twice", ErrTokenFile, n, e.Name)
		}
		if hashes[e.Hash] {
			return nil, fmt.Errorf("%w: line %d: hash of %q used twice", ErrTokenFile, n, e.Name)
		}
		names[e.Name], hashes[e.Hash] = true, true
		out = append(out, e)
	}
	if err := sc.Err(); err != nil {
		return nil, fmt.Errorf("%w: %w", ErrTokenFile, err)
	}
	return out, nil
}

// parseTokenLine reads one line; ok is false for blank lines and
// comments.
func parseTokenLine(line string) (e TokenEntry, ok bool, err error) {
	rest := strings.TrimSpace(line)
	if rest == "" || rest[0] == '#' {
		return e, false, nil
	}
	var fields [3]string
	for i := range fields {
		var f string
		f, rest = cutField(rest)
		if f == "" {
			return e, false, errors.New("want NAME SHA256HEX SCOPES [ISSUERS]")
		}
		fields[i] = f
	}
	if err := validName(fields[0]); err != nil {
		return e, false, err
	}
	e.Name = fields[0]
	if len(fields[1]) != 2*sha256.Size {
		return e, false, fmt.Errorf("hash of %q has %d characters, not 64 hexadecimal digits", e.Name, len(fields[1]))
	}
	if _, err := hex.Decode(e.Hash[:], []byte(fields[1])); err != nil {
		return e, false, fmt.Errorf("hash of %q is not hexadecimal", e.Name)
	}
	if e.Scopes, err = ParseScopes(fields[2]); err != nil {
		return e, false, err
	}
	if e.Issuers, err = parseIssuers(rest); err != nil {
		return e, false, err
	}
	return e, true, nil
}

// cutField returns the first space-separated field of s and the rest,
// trimmed.
func cutField(s string) (field, rest string) {
	i := strings.IndexAny(s, " \t")
	if i < 0 {
		return s, ""
	}
	return s[:i], strings.TrimSpace(s[i:])
}

func validName(name string) error {
	if name == "" || len(name) > 64 {
		return fmt.Errorf("name %q must have 1 to 64 characters", name)
	}
	for _, r := range name {
		if !(r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' || strings.ContainsRune("._-@", r)) {
			return fmt.Errorf("name %q has %q: use letters, digits and . _ - @", name, r)
		}
	}
	return nil
}

// TokenFile authenticates machine tokens against a token file. It reads
// the file again when it changes (checked at most once a second), and on
// Reload; a file that has become malformed leaves the last good entries in
// force. It is safe for concurrent use.
type TokenFile struct {
	path string
	now  func() time.Time // for tests

	mu      sync.RWMutex
	entries []TokenEntry
	stamp   fileStamp
	checked time.Time
}

// fileStamp tells whether a file changed.
type fileStamp struct {
	size    int64
	modTime time.Time
}

// OpenTokenFile reads the token file at path. A missing file is an error:
// authentication by token was asked for, and nothing could pass.
func OpenTokenFile(path string) (*TokenFile, error) {
	f := &TokenFile{path: path, now: time.Now}
	if err := f.Reload(); err != nil {
		return nil, err
	}
	return f, nil
}

// Reload reads the file again.
func (f *TokenFile) Reload() error {
	st, err := os.Stat(f.path)
	if err != nil {
		return fmt.Errorf("%w: %w", ErrTokenFile, err)
	}
	b, err := os.ReadFile(f.path)
	if err != nil {
		return fmt.Errorf("%w: %w", ErrTokenFile, err)
	}
	entries, err := ParseTokenFile(bytes.NewReader(b))
	if err != nil {
		return fmt.Errorf("%s: %w", f.path, err)
	}
	f.mu.Lock()
	f.entries, f.stamp, f.checked = entries, fileStamp{st.Size(), st.ModTime()}, f.now()
	f.mu.Unlock()
	return nil
}

// Len returns how many tokens the file holds.
func (f *TokenFile) Len() int {
	f.mu.RLock()
	defer f.mu.RUnlock()
	return len(f.entries)
}

// refresh reloads the file if it changed since it was last read, looking
// at most once a second.
func (f *TokenFile) refresh() {
	now := f.now()
	f.mu.RLock()
	due := now.Sub(f.checked) >= time.Second
	stamp := f.stamp
	f.mu.RUnlock()
	if !due {
		return
	}
	f.mu.Lock()
	f.checked = now
	f.mu.Unlock()
	st, err := os.Stat(f.path)
	if err != nil || (st.Size() == stamp.size && st.ModTime().Equal(stamp.modTime)) {
		return
	}
	_ = f.Reload() // a broken file keeps the last good entries
}

// Authenticate returns the principal of token. Every entry is compared,
// in constant time, so the time taken says nothing about which matched.
func (f *TokenFile) Authenticate(_ context.Context, token string) (*Principal, error) {
	f.refresh()
	h := sha256.Sum256([]byte(token))
	f.mu.RLock()
	defer f.mu.RUnlock()
	found := -1
	for i := range f.entries {
		if subtle.ConstantTimeCompare(h[:], f.entries[i].Hash[:]) == 1 {
			found = i
		}
	}
	if found < 0 {
		return nil, fmt.Errorf("%w: not in the token file", ErrInvalidToken)
	}
	return f.entries[found].Principal(), nil
}

// CreateToken makes a new random token for name and appends its entry to
// the token file at path, creating the file (mode 0600) if needed. It
// returns the token, which exists nowhere else: the caller shows it once.
// A name already in the file is an error.
func CreateToken(path, name string, scopes Scope, issuers []string) (string, error) {
	if err := validName(name); err != nil {
		return "", fmt.Errorf("%w: %w", ErrTokenFile, err)
	}
	if scopes == 0 {
		return "", fmt.Errorf("%w: a token needs at least one scope", ErrTokenFile)
	}
	for _, is := range issuers {
		if strings.TrimSpace(is) != is || is == "" || strings.Contains(is, "|") || is == "*" {
			return "", fmt.Errorf("%w: issuer %q: want a name without surrounding spaces or |", ErrTokenFile, is)
		}
	}
	var secret [32]byte
	if _, err := rand.Read(secret[:]); err != nil {
		return "", err
	}
	token := TokenPrefix + base64.RawURLEncoding.EncodeToString(secret[:])
	e := TokenEntry{Name: name, Hash: sha256.Sum256([]byte(token)), Scopes: scopes}
	if len(issuers) > 0 {
		e.Issuers = issuers
	}

	f, err := os.OpenFile(path, os.O_RDWR|os.O_CREATE, 0o600)
	if err != nil {
		return "", fmt.Errorf("%w: %w", ErrTokenFile, err)
	}
	defer f.Close()
	existing, err := io.ReadAll(io.LimitReader(f, maxTokenFile+1))
	if err != nil {
		return "", fmt.Errorf("%w: %w", ErrTokenFile, err)
	}
	entries, err := ParseTokenFile(bytes.NewReader(existing))
	if err != nil {
		return "", fmt.Errorf("%s: %w", path, err)
	}
	for _, old := range entries {
		if old.Name == name {
			return "", fmt.Errorf("%w: %s already has a token named %q", ErrTokenFile, path, name)
		}
	}
	line := e.Line() + "\n"
	if len(existing) > 0 && existing[len(existing)-1] != '\n' {
		line = "\n" + line
	}
	if _, err := f.Seek(0, io.SeekEnd); err != nil {
		return "", err
	}
	if _, err := f.WriteString(line); err != nil {
		return "", fmt.Errorf("%w: %w", ErrTokenFile, err)
	}
	if err := f.Sync(); err != nil {
		return "", fmt.Errorf("%w: %w", ErrTokenFile, err)
	}
	return token, nil
}
