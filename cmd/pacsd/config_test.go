package main

import (
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// TestS3Env checks where the credentials of a bucket come from: the AWS_
// variables when set, else the config file, never half from each, and
// never from a flag.
func TestS3Env(t *testing.T) {
	conf := filepath.Join(t.TempDir(), "pacsd.json")
	js := `{"s3_access_key_id": "file-key", "s3_secret_access_key": "file-secret"}`
	if err := os.WriteFile(conf, []byte(js), 0o600); err != nil {
		t.Fatal(err)
	}
	env := func(m map[string]string) func(string) string {
		return func(k string) string { return m[k] }
	}
	for _, tc := range []struct {
		name        string
		env         map[string]string
		key, secret string
	}{
		{"file only", nil, "file-key", "file-secret"},
		{"environment wins", map[string]string{"AWS_ACCESS_KEY_ID": "env-key", "AWS_SECRET_ACCESS_KEY": "env-secret"}, "env-key", "env-secret"},
		{"never half of each", map[string]string{"AWS_ACCESS_KEY_ID": "env-key"}, "env-key", ""},
		{"PACSD_ variables", map[string]string{"PACSD_S3_ACCESS_KEY_ID": "pacsd-key", "PACSD_S3_SECRET_ACCESS_KEY": "pacsd-secret"}, "pacsd-key", "pacsd-secret"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c, err := loadConfig("serve", []string{"--config", conf}, env(tc.env), io.Discard, nil)
			if err != nil {
				t.Fatal(err)
			}
			get := c.s3Env()
			if k, s := get("AWS_ACCESS_KEY_ID"), get("AWS_SECRET_ACCESS_KEY"); k != tc.key || s != tc.secret {
				t.Errorf("credentials %q/%q, want %q/%q", k, s, tc.key, tc.secret)
			}
		})
	}
	var usage strings.Builder
	if _, err := loadConfig("serve", []string{"--s3-secret-access-key", "x"}, env(nil), &usage, nil); err == nil {
		t.Errorf("a flag set the secret key")
	}
	if strings.Contains(usage.String(), "  -s3-secret") {
		t.Errorf("usage offers a flag for the secret key:\n%s", usage.String())
	}
}
