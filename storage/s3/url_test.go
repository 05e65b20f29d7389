package s3_test

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/pacsd/pacsd/internal/testpeer"
	"github.com/pacsd/pacsd/storage"
	"github.com/pacsd/pacsd/storage/s3"
)

func TestParseURL(t *testing.T) {
	env := map[string]string{"AWS_ACCESS_KEY_ID": "AKID", "AWS_SECRET_ACCESS_KEY": "SECRET"}
	getenv := func(k string) string { return env[k] }
	creds := func(c s3.Config) s3.Config {
		c.AccessKey, c.SecretKey = "AKID", "SECRET"
		return c
	}
	for _, tc := range []struct {
		url  string
		want s3.Config
	}{
		{"s3://archive", creds(s3.Config{Endpoint: s3.DefaultEndpoint, Secure: true, Bucket: "archive"})},
		{"s3://archive?endpoint=127.0.0.1:9000&secure=false&region=eu-west-1&prefix=trust-a/pacs",
			creds(s3.Config{Endpoint: "127.0.0.1:9000", Region: "eu-west-1", Bucket: "archive", Prefix: "trust-a/pacs"})},
		{"s3://archive/trust-a/pacs/?endpoint=minio.example:9000",
			creds(s3.Config{Endpoint: "minio.example:9000", Secure: true, Bucket: "archive", Prefix: "trust-a/pacs"})},
		{"s3://archive?prefix=/trust-a/", creds(s3.Config{Endpoint: s3.DefaultEndpoint, Secure: true, Bucket: "archive", Prefix: "trust-a"})},
		{"s3://archive?part_size=32MiB", creds(s3.Config{Endpoint: s3.DefaultEndpoint, Secure: true, Bucket: "archive", PartSize: 32 << 20})},
		{"s3://archive?part_size=6000000&secure=1", creds(s3.Config{Endpoint: s3.DefaultEndpoint, Secure: true, Bucket: "archive", PartSize: 6000000})},
		{"s3://archive?max_retries=3", creds(s3.Config{Endpoint: s3.DefaultEndpoint, Secure: true, Bucket: "archive", MaxRetries: 3})},
		{"s3://archive?stall_timeout=2m30s", creds(s3.Config{Endpoint: s3.DefaultEndpoint, Secure: true, Bucket: "archive", StallTimeout: 150 * time.Second})},
	} {
		got, err := s3.ParseURL(tc.url, getenv)
		if err != nil {
			t.Errorf("ParseURL(%q): %v", tc.url, err)
			continue
		}
		if fmt.Sprint(got) != fmt.Sprint(tc.want) {
			t.Errorf("ParseURL(%q) =\n%+v, want\n%+v", tc.url, got, tc.want)
		}
	}

	env["AWS_SESSION_TOKEN"] = "TOKEN"
	if got, err := s3.ParseURL("s3://archive", getenv); err != nil || got.SessionToken != "TOKEN" {
		t.Errorf("ParseURL with AWS_SESSION_TOKEN: %+v, %v", got, err)
	}

	for _, tc := range []struct{ url, want string }{
		{"s3://user:pass-secret@archive", "credentials"},
		{"file:///data/objects", "scheme"},
		{"s3://", "BUCKET"},
		{"s3:archive", "BUCKET"},
		{"s3://archive#frag", "fragment"},
		{"s3://archive/a?prefix=b", "both"},
		{"s3://archive?secure=maybe", "secure"},
		{"s3://archive?endpoint=http://host:9000", "endpoint"},
		{"s3://archive?endpoint=", "endpoint"},
		{"s3://archive?secrue=false", "unknown parameter"},
		{"s3://archive?region=a&region=b", "2 times"},
		{"s3://archive?part_size=0", "part_size"},
		{"s3://archive?part_size=-5MiB", "part_size"},
		{"s3://archive?part_size=5MB", "part_size"},
		{"s3://archive?part_size=99999999999GiB", "part_size"},
		{"s3://archive?max_retries=0", "max_retries"},
		{"s3://archive?max_retries=many", "max_retries"},
		{"s3://archive?stall_timeout=30", "stall_timeout"},
		{"s3://archive?stall_timeout=-1s", "stall_timeout"},
		{"s3://archive?%zz", "query"},
		{"s3://arch ive", "parse"},
	} {
		_, err := s3.ParseURL(tc.url, getenv)
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("ParseURL(%q): error %v, want one saying %q", tc.url, err, tc.want)
		}
		if err != nil && strings.Contains(err.Error(), "secret") {
			t.Errorf("ParseURL(%q): error %q quotes the secret", tc.url, err)
		}
	}

	for _, unset := range []string{"AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY"} {
		partial := func(k string) string {
			if k == unset {
				return ""
			}
			return env[k]
		}
		if _, err := s3.ParseURL("s3://archive", partial); err == nil || !strings.Contains(err.Error(), unset) {
			t.Errorf("ParseURL without %s: %v, want an error naming it", unset, err)
		}
	}
}

// TestNewInvalid checks the errors New returns before it talks to a
// server, and for a server that is not there.
func TestNewInvalid(t *testing.T) {
	good := s3.Config{Endpoint: "127.0.0.1:9", Bucket: "archive", AccessKey: "a", SecretKey: "b"}
	for _, tc := range []struct {
		name   string
		change func(*s3.Config)
		is     error
	}{
		{"no endpoint", func(c *s3.Config) { c.Endpoint = "" }, nil},
		{"endpoint with scheme", func(c *s3.Config) { c.Endpoint = "http://127.0.0.1:9000" }, nil},
		{"bucket with capitals", func(c *s3.Config) { c.Bucket = "Archive" }, nil},
		{"bucket too short", func(c *s3.Config) { c.Bucket = "ab" }, nil},
		{"invalid prefix", func(c *s3.Config) { c.Prefix = "a//b" }, storage.ErrInvalidKey},
		{"part size too small", func(c *s3.Config) { c.PartSize = s3.MinPartSize - 1 }, nil},
		{"part size too large", func(c *s3.Config) { c.PartSize = s3.MaxPartSize + 1 }, nil},
		{"no secret key", func(c *s3.Config) { c.SecretKey = "" }, nil},
		{"negative retries", func(c *s3.Config) { c.MaxRetries = -1 }, nil},
	} {
		cfg := good
		tc.change(&cfg)
		ctx, cancel := context.WithTimeout(t.Context(), 5*time.Second)
		_, err := s3.New(ctx, cfg)
		cancel()
		if err == nil || tc.is != nil && !errors.Is(err, tc.is) {
			t.Errorf("New with %s: %v", tc.name, err)
		}
	}

	// Nothing listens on a port that was free a moment ago.
	port, err := testpeer.FreePort()
	if err != nil {
		t.Fatal(err)
	}
	cfg := good
	cfg.Endpoint = fmt.Sprintf("127.0.0.1:%d", port)
	cfg.MaxRetries = 1
	if _, err := s3.New(t.Context(), cfg); err == nil || !strings.Contains(err.Error(), cfg.Endpoint) {
		t.Errorf("New with nothing listening: %v, want an error naming the endpoint", err)
	}
}
