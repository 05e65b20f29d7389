package storage

import (
	"errors"
	"path"
	"path/filepath"
	"strings"
	"testing"
)

func TestValidKey(t *testing.T) {
	valid := []string{
		"a",
		"A-z_0.9",
		"1.2.840.10008.1.2.1/1.2.3/4.5.6",
		"a/.hidden",
		"a/...",
		"a/..b",
		"a/b.",
		strings.Repeat("s", maxSegmentLen),
		strings.Repeat("a/", MaxKeyLen/2-1) + "bb",
	}
	for _, key := range valid {
		if err := ValidKey(key); err != nil {
			t.Errorf("ValidKey(%q) = %v, want nil", key, err)
		}
	}
	invalid := []string{
		"",
		"/",
		"/a",
		"a/",
		"a//b",
		".",
		"..",
		"./a",
		"../a",
		"a/.",
		"a/..",
		"a/./b",
		"a/../b",
		`a\b`,
		"a:b",
		"a b",
		"a\x00",
		"a\t",
		"a~",
		"é",
		"a\u2215b", // DIVISION SLASH looks like '/' but is not one
		strings.Repeat("s", maxSegmentLen+1),
		strings.Repeat("a/", MaxKeyLen/2) + "a",
	}
	for _, key := range invalid {
		err := ValidKey(key)
		if !errors.Is(err, ErrInvalidKey) {
			t.Errorf("ValidKey(%q) = %v, want %v", key, err, ErrInvalidKey)
		}
	}
}

func TestValidPrefix(t *testing.T) {
	for _, prefix := range []string{"", "a", "a/", "a/b", "a/.", "a/..", ".", "..", strings.Repeat("a", maxSegmentLen)} {
		if err := ValidPrefix(prefix); err != nil {
			t.Errorf("ValidPrefix(%q) = %v, want nil", prefix, err)
		}
	}
	for _, prefix := range []string{"/", "/a", "a//", "../", "./", "a/../", "a/./", `a\`, "a~", strings.Repeat("a", maxSegmentLen+1)} {
		if err := ValidPrefix(prefix); !errors.Is(err, ErrInvalidKey) {
			t.Errorf("ValidPrefix(%q) = %v, want %v", prefix, err, ErrInvalidKey)
		}
	}
}

// FuzzValidKey checks that whatever ValidKey accepts is a clean, local,
// slash-separated path on every operating system, so no backend can be
// led outside its root by a key.
func FuzzValidKey(f *testing.F) {
	for _, seed := range []string{"a/b", "../x", "a//b", "/abs", "a/./b", `a\b`, "C:", "a/..", ".x", "1.2.3/4.5.6"} {
		f.Add(seed)
	}
	f.Fuzz(func(t *testing.T, key string) {
		if ValidKey(key) != nil {
			return
		}
		if path.Clean(key) != key {
			t.Errorf("valid key %q is not clean", key)
		}
		if !filepath.IsLocal(filepath.FromSlash(key)) || path.IsAbs(key) {
			t.Errorf("valid key %q is not local", key)
		}
		if strings.ContainsAny(key, `\:`) {
			t.Errorf("valid key %q contains a Windows separator", key)
		}
		if ValidPrefix(key) != nil {
			t.Errorf("valid key %q is no valid prefix", key)
		}
	})
}
