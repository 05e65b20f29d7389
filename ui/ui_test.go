package ui

import (
	"compress/gzip"
	"encoding/json"
	"io"
	"io/fs"
	"net/http"
	"net/http/httptest"
	"path"
	"regexp"
	"slices"
	"strings"
	"testing"
)

func get(t *testing.T, h http.Handler, target string, hdr map[string]string) *http.Response {
	t.Helper()
	req := httptest.NewRequest(http.MethodGet, target, nil)
	for k, v := range hdr {
		req.Header.Set(k, v)
	}
	rec := httptest.NewRecorder()
	h.ServeHTTP(rec, req)
	return rec.Result()
}

func body(t *testing.T, resp *http.Response) string {
	t.Helper()
	var r io.Reader = resp.Body
	if resp.Header.Get("Content-Encoding") == "gzip" {
		zr, err := gzip.NewReader(resp.Body)
		if err != nil {
			t.Fatal(err)
		}
		r = zr
	}
	b, err := io.ReadAll(r)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

var assetRef = regexp.MustCompile(`/ui/[0-9a-f]{16}/[A-Za-z0-9_./-]+`)

func TestPage(t *testing.T) {
	h := Handler(Config{})
	resp := get(t, h, "/", nil)
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("GET / = %d", resp.StatusCode)
	}
	page := body(t, resp)
	for k, want := range map[string]string{
		"Content-Type":           "text/html; charset=utf-8",
		"Cache-Control":          "no-cache",
		"X-Content-Type-Options": "nosniff",
		"X-Frame-Options":        "DENY",
		"Referrer-Policy":        "no-referrer",
	} {
		if got := resp.Header.Get(k); got != want {
			t.Errorf("%s: %q, want %q", k, got, want)
		}
	}
	csp := resp.Header.Get("Content-Security-Policy")
	for _, d := range []string{"default-src 'none'", "script-src 'self'", "style-src 'self'", "connect-src 'self'", "frame-ancestors 'none'", "base-uri 'none'"} {
		if !strings.Contains(csp, d) {
			t.Errorf("Content-Security-Policy %q lacks %q", csp, d)
		}
	}
	if strings.Contains(csp, "unsafe") {
		t.Errorf("Content-Security-Policy allows something unsafe: %q", csp)
	}
	if strings.Contains(page, "/ui/ASSETS/") {
		t.Error("the page still names its assets by the placeholder")
	}
	refs := assetRef.FindAllString(page, -1)
	if len(refs) < 3 {
		t.Fatalf("the page names %d assets: %v", len(refs), refs)
	}
	etag := resp.Header.Get("ETag")
	if etag == "" {
		t.Fatal("no ETag on the page")
	}
	if r := get(t, h, "/", map[string]string{"If-None-Match": etag}); r.StatusCode != http.StatusNotModified {
		t.Errorf("revalidation with the ETag: %d, want 304", r.StatusCode)
	}
	for _, ref := range refs {
		r := get(t, h, ref, map[string]string{"Accept-Encoding": "gzip"})
		if r.StatusCode != http.StatusOK {
			t.Errorf("GET %s = %d", ref, r.StatusCode)
			continue
		}
		if cc := r.Header.Get("Cache-Control"); cc != "public, max-age=31536000, immutable" {
			t.Errorf("%s: Cache-Control %q", ref, cc)
		}
		if strings.HasSuffix(ref, ".js") && r.Header.Get("Content-Type") != "text/javascript; charset=utf-8" {
			t.Errorf("%s: Content-Type %q", ref, r.Header.Get("Content-Type"))
		}
		if b := body(t, r); len(b) == 0 {
			t.Errorf("%s is empty", ref)
		}
	}
}

// Every module a script imports is one the handler serves, so that a
// renamed file cannot break the page unnoticed.
func TestModuleImportsResolve(t *testing.T) {
	sub, _ := fs.Sub(assets, "assets")
	imp := regexp.MustCompile(`(?:import[^'"]*|import\()\s*['"](\.[^'"]+)['"]`)
	n := 0
	err := fs.WalkDir(sub, "js", func(name string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return err
		}
		b, err := fs.ReadFile(sub, name)
		if err != nil {
			return err
		}
		for _, m := range imp.FindAllStringSubmatch(string(b), -1) {
			target := path.Join(path.Dir(name), m[1])
			if _, err := fs.Stat(sub, target); err != nil {
				t.Errorf("%s imports %s, which does not exist", name, m[1])
			}
			n++
		}
		if regexp.MustCompile(`https?://[a-z]`).Match(b) {
			t.Errorf("%s names an absolute URL: the page must not depend on another host", name)
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	if n < 10 {
		t.Errorf("found %d imports; the pattern no longer matches the scripts", n)
	}
}

func TestNotFoundAndMethods(t *testing.T) {
	h := Handler(Config{})
	for _, p := range []string{"/api/queue", "/dicom-web/studies", "/ui/", "/ui/0123456789abcdef/nope.js", "/favicon.ico", "/studies"} {
		if r := get(t, h, p, nil); r.StatusCode != http.StatusNotFound {
			t.Errorf("GET %s = %d, want 404", p, r.StatusCode)
		}
	}
	rec := httptest.NewRecorder()
	h.ServeHTTP(rec, httptest.NewRequest(http.MethodPost, "/", nil))
	if rec.Code != http.StatusMethodNotAllowed || rec.Header().Get("Allow") != "GET, HEAD" {
		t.Errorf("POST / = %d, Allow %q", rec.Code, rec.Header().Get("Allow"))
	}
	// An asset asked for by an older hash is served, but not for keeps.
	page := body(t, get(t, h, "/", nil))
	ref := assetRef.FindString(page)
	old := "/ui/0000000000000000/" + strings.SplitN(ref, "/", 4)[3]
	r := get(t, h, old, nil)
	if r.StatusCode != http.StatusOK || r.Header.Get("Cache-Control") != "no-cache" {
		t.Errorf("GET %s = %d, Cache-Control %q", old, r.StatusCode, r.Header.Get("Cache-Control"))
	}
}

func TestConfig(t *testing.T) {
	decode := func(h http.Handler, hdr map[string]string) clientConfig {
		t.Helper()
		r := get(t, h, ConfigPath, hdr)
		if r.StatusCode != http.StatusOK || r.Header.Get("Cache-Control") != "no-store" {
			t.Fatalf("GET %s = %d, Cache-Control %q", ConfigPath, r.StatusCode, r.Header.Get("Cache-Control"))
		}
		var c clientConfig
		if err := json.NewDecoder(r.Body).Decode(&c); err != nil {
			t.Fatal(err)
		}
		return c
	}
	c := decode(Handler(Config{Version: "v1", OHIFURL: "https://viewer.example"}), nil)
	if c.DICOMwebRoot != "/dicom-web" || c.OHIFURL != "https://viewer.example" || c.Version != "v1" ||
		!slices.Equal(c.Auth.Modes, []string{"none"}) || c.Auth.OIDC != nil {
		t.Errorf("config without auth: %+v", c)
	}
	if c.Principal == nil || !slices.Equal(c.Principal.Scopes, allScopes) {
		t.Errorf("without auth everyone may do everything; principal %+v", c.Principal)
	}

	oidc := Config{
		AuthModes: []string{"oidc", "token"},
		OIDC:      OIDC{Issuer: "https://login.example/realms/rxh", ClientID: "pacsd-ui", Scopes: []string{"pacsd"}},
		Principal: func(r *http.Request) *Principal {
			if r.Header.Get("Authorization") != "Bearer good" {
				return nil
			}
			return &Principal{Name: "dr who", Scopes: []string{ScopeRead}, Issuers: []string{"RXH"}}
		},
	}
	h := Handler(oidc)
	c = decode(h, nil)
	if c.Principal != nil || c.Auth.OIDC == nil || c.Auth.OIDC.ClientID != "pacsd-ui" {
		t.Errorf("config to a visitor without a token: %+v", c)
	}
	c = decode(h, map[string]string{"Authorization": "Bearer good"})
	if c.Principal == nil || c.Principal.Name != "dr who" || !slices.Equal(c.Principal.Scopes, []string{ScopeRead}) {
		t.Errorf("config to a signed-in principal: %+v", c.Principal)
	}
	// The page may call the provider, and nobody else.
	csp := get(t, h, "/", nil).Header.Get("Content-Security-Policy")
	if !strings.Contains(csp, "connect-src 'self' https://login.example;") {
		t.Errorf("Content-Security-Policy %q does not allow the OIDC provider", csp)
	}
}
