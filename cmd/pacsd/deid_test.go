package main

import (
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func TestDeidKey(t *testing.T) {
	dir := t.TempDir()
	write := func(name, content string) string {
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, []byte(content), 0o600); err != nil {
			t.Fatal(err)
		}
		return p
	}
	hex := strings.Repeat("0123456789abcdef", 4)
	for _, tc := range []struct {
		name, file string
		key        string // want; "" for none
		err        string // in the error
	}{
		{"no setting", "", "", ""},
		{"hex key with a newline", write("good", hex+"\n"), hex, ""},
		{"missing file", filepath.Join(dir, "absent"), "", "deid_key"},
		{"short key", write("short", "secret\n"), "", "fewer than 32"},
		{"white space only", write("blank", "  \n\n"), "", "fewer than 32"},
		{"a file far too long", write("long", strings.Repeat("x", 5000)), "", "longer than"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			d := deidSettings{DeidKey: tc.file}
			key, err := d.key(slog.New(slog.DiscardHandler))
			if string(key) != tc.key || (err == nil) != (tc.err == "") || (err != nil && !strings.Contains(err.Error(), tc.err)) {
				t.Errorf("key %q, error %v; want %q and an error saying %q", key, err, tc.key, tc.err)
			}
			if err != nil && strings.Contains(err.Error(), "secret") {
				t.Error("the error shows the key")
			}
		})
	}
}

func TestCertBindingsNeedClientCA(t *testing.T) {
	for _, tc := range []struct {
		allow    string
		clientCA string
		ok       bool
	}{
		{"CT01@cert:CN=ct01.rxh.nhs.uk", "", false},
		{"CT01@cert:DNS=ct01.rxh.nhs.uk", "", false},
		{"CT01@cert:CN=ct01.rxh.nhs.uk", "ca.pem", true},
		{"CT01@cert:SHA256=" + strings.Repeat("ab", 32), "", true},
		{"CT01@10.0.0.0/24#RXH|RGT", "", true},
	} {
		a, err := newAEAuthorizer(t.Context(), &dimseSettings{AllowAE: []string{tc.allow}})
		if err != nil {
			t.Fatal(err)
		}
		if err := a.checkCertBindings(tc.clientCA); (err == nil) != tc.ok {
			t.Errorf("%s with client CA %q: %v", tc.allow, tc.clientCA, err)
		}
	}
}
