package auth

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"
)

func hashOf(token string) string {
	h := sha256.Sum256([]byte(token))
	return hex.EncodeToString(h[:])
}

func TestParseTokenFile(t *testing.T) {
	h1, h2 := hashOf("one"), hashOf("two")
	for _, tc := range []struct {
		name    string
		in      string
		want    []string // Line() of each entry
		wantErr string
	}{
		{"empty", "", nil, ""},
		{"comments and blanks", "# tokens\n\n   # indented comment\n", nil, ""},
		{"all issuers by omission", "ris " + h1 + " read,write\n", []string{"ris " + h1 + " read,write *"}, ""},
		{"all issuers by star", "ris " + h1 + " read *", []string{"ris " + h1 + " read *"}, ""},
		{"issuers", "ris\t" + h1 + "\tread  RXH|RGT\n", []string{"ris " + h1 + " read RXH|RGT"}, ""},
		{"issuer with spaces", "ris " + h1 + " read Royal X H | RGT ", []string{"ris " + h1 + " read Royal X H|RGT"}, ""},
		{"uppercase hash", "ris " + strings.ToUpper(h1) + " admin", []string{"ris " + h1 + " admin *"}, ""},
		{"two", "a " + h1 + " read\nb " + h2 + " write", []string{"a " + h1 + " read *", "b " + h2 + " write *"}, ""},
		{"missing scopes", "ris " + h1, nil, "line 1"},
		{"short hash", "ris abcd read", nil, "64 hexadecimal"},
		{"bad hex", "ris " + strings.Repeat("zz", 32) + " read", nil, "not hexadecimal"},
		{"bad scope", "ris " + h1 + " read,fly", nil, "unknown scope"},
		{"bad name", "r/s " + h1 + " read", nil, "name"},
		{"empty issuer", "ris " + h1 + " read RXH||RGT", nil, "empty issuer"},
		{"star among issuers", "ris " + h1 + " read RXH|*", nil, "alone"},
		{"duplicate name", "a " + h1 + " read\na " + h2 + " read", nil, "line 2: name"},
		{"duplicate hash", "a " + h1 + " read\nb " + h1 + " read", nil, "line 2: hash"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			entries, err := ParseTokenFile(strings.NewReader(tc.in))
			if tc.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tc.wantErr) || !errors.Is(err, ErrTokenFile) {
					t.Fatalf("error %v, want one wrapping ErrTokenFile containing %q", err, tc.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			var got []string
			for _, e := range entries {
				got = append(got, e.Line())
			}
			if !slices.Equal(got, tc.want) {
				t.Errorf("entries\n got %q\nwant %q", got, tc.want)
			}
		})
	}
}

func TestCreateTokenAndAuthenticate(t *testing.T) {
	path := filepath.Join(t.TempDir(), "tokens")
	if err := os.WriteFile(path, []byte("# machine tokens\nold "+hashOf("old-token")+" read"), 0o600); err != nil {
		t.Fatal(err)
	}
	tok, err := CreateToken(path, "router", Read|Write, []string{"RXH", "RGT"})
	if err != nil {
		t.Fatal(err)
	}
	if !strings.HasPrefix(tok, TokenPrefix) || len(tok) < 40 {
		t.Fatalf("token %q", tok)
	}
	b, _ := os.ReadFile(path)
	if strings.Contains(string(b), tok) {
		t.Fatal("the token itself was written to the file")
	}
	if !strings.HasSuffix(string(b), "\nrouter "+hashOf(tok)+" read,write RXH|RGT\n") {
		t.Fatalf("file:\n%s", b)
	}
	if st, _ := os.Stat(path); st.Mode().Perm() != 0o600 {
		t.Errorf("mode %v", st.Mode())
	}
	if _, err := CreateToken(path, "router", Read, nil); err == nil {
		t.Error("a second token of the same name was created")
	}
	tok2, err := CreateToken(filepath.Join(t.TempDir(), "new"), "x", Admin, nil)
	if err != nil || tok2 == tok {
		t.Fatalf("new file: %v", err)
	}

	f, err := OpenTokenFile(path)
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	p, err := f.Authenticate(ctx, tok)
	if err != nil {
		t.Fatal(err)
	}
	if p.Name != "router" || p.Kind != KindToken || p.Scopes != Read|Write || !slices.Equal(p.Issuers, []string{"RXH", "RGT"}) {
		t.Errorf("principal %+v", p)
	}
	if p, err := f.Authenticate(ctx, "old-token"); err != nil || p.Name != "old" || !p.AllIssuers() {
		t.Errorf("old token: %+v, %v", p, err)
	}
	if _, err := f.Authenticate(ctx, tok+"x"); !errors.Is(err, ErrInvalidToken) {
		t.Errorf("wrong token: %v", err)
	} else if strings.Contains(err.Error(), tok) {
		t.Error("the error shows the token")
	}
}

func TestTokenFileReloadsWhenChanged(t *testing.T) {
	path := filepath.Join(t.TempDir(), "tokens")
	if err := os.WriteFile(path, []byte("a "+hashOf("A")+" read\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	f, err := OpenTokenFile(path)
	if err != nil {
		t.Fatal(err)
	}
	now := time.Now()
	f.now = func() time.Time { return now }
	ctx := context.Background()

	// A token created while the server runs works within a second.
	tok, err := CreateToken(path, "b", Write, nil)
	if err != nil {
		t.Fatal(err)
	}
	now = now.Add(2 * time.Second)
	if _, err := f.Authenticate(ctx, tok); err != nil {
		t.Fatalf("new token: %v", err)
	}

	// A broken file keeps the last good entries.
	if err := os.WriteFile(path, []byte("garbage\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	now = now.Add(2 * time.Second)
	if _, err := f.Authenticate(ctx, "A"); err != nil {
		t.Fatalf("after a broken edit: %v", err)
	}
	if err := f.Reload(); err == nil {
		t.Error("Reload of a broken file succeeded")
	}

	// A revoked token stops working.
	if err := os.WriteFile(path, []byte("b "+hashOf(tok)+" write\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	now = now.Add(2 * time.Second)
	if _, err := f.Authenticate(ctx, "A"); !errors.Is(err, ErrInvalidToken) {
		t.Errorf("revoked token: %v", err)
	}
	if f.Len() != 1 {
		t.Errorf("Len = %d", f.Len())
	}
}

func FuzzParseTokenFile(f *testing.F) {
	seeds, _ := filepath.Glob("testdata/tokens/*")
	for _, s := range seeds {
		b, err := os.ReadFile(s)
		if err != nil {
			f.Fatal(err)
		}
		f.Add(string(b))
	}
	f.Add("ris " + hashOf("x") + " read,write RXH|RGT\n")
	f.Fuzz(func(t *testing.T, in string) {
		entries, err := ParseTokenFile(strings.NewReader(in))
		if err != nil {
			return
		}
		// What parses, written back, parses to the same entries.
		var b strings.Builder
		for _, e := range entries {
			if e.Scopes == 0 || len(e.Name) == 0 {
				t.Fatalf("entry without scopes or name: %+v", e)
			}
			b.WriteString(e.Line() + "\n")
		}
		again, err := ParseTokenFile(strings.NewReader(b.String()))
		if err != nil {
			t.Fatalf("re-parse of %q: %v", b.String(), err)
		}
		if len(again) != len(entries) {
			t.Fatalf("%d entries, then %d", len(entries), len(again))
		}
		for i := range again {
			if again[i].Line() != entries[i].Line() {
				t.Fatalf("%q became %q", entries[i].Line(), again[i].Line())
			}
		}
	})
}
