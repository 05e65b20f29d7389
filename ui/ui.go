package ui

import (
	"bytes"
	"compress/gzip"
	"crypto/sha256"
	"embed"
	"encoding/hex"
	"encoding/json"
	"io/fs"
	"net/http"
	"net/url"
	"path"
	"slices"
	"strings"
)

// assets are the page and its files. The embedded file system is
// read-only, so holding it at package level shares nothing mutable.
//
//go:embed assets
var assets embed.FS

// Scopes a principal may hold (the names of docs/api.md).
const (
	ScopeRead   = "read"
	ScopeWrite  = "write"
	ScopeDelete = "delete"
	ScopeAdmin  = "admin"
)

// Config is what the page is told about the server.
type Config struct {
	// Version is pacsd's version, shown on the system page.
	Version string
	// DICOMwebRoot is the path of the DICOMweb services (default
	// /dicom-web).
	DICOMwebRoot string
	// OHIFURL, when set, is the root of an OHIF viewer pointed at this
	// pacsd; the study page links to it.
	OHIFURL string
	// AuthModes are the --http-auth modes ("none", "oidc", "token").
	// Empty means none.
	AuthModes []string
	// OIDC is the OpenID Connect client the page signs in with, when
	// AuthModes holds "oidc".
	OIDC OIDC
	// NHSIssuer is the Issuer of Patient ID of NHS numbers; when set, a
	// search by a valid NHS number asks for that issuer, which finds the
	// studies of every linked local patient.
	NHSIssuer string
	// Features says which optional server features the page may use.
	Features Features
	// Principal returns who made a request, or nil when it carries no
	// valid credentials. A nil Principal func means authentication is
	// off: everyone may do everything.
	Principal func(r *http.Request) *Principal
	// ConnectSources are origins, besides pacsd's own and the OIDC
	// issuer's, that the page may send requests to (an OIDC provider
	// whose token endpoint lives on another origin than its issuer).
	ConnectSources []string
}

// OIDC describes the OpenID Connect client of the page: a public client
// using the Authorization Code flow with PKCE.
type OIDC struct {
	Issuer   string   `json:"issuer"`
	ClientID string   `json:"client_id"`
	Scopes   []string `json:"scopes"`
	Audience string   `json:"audience,omitempty"`
}

// Features are optional server features.
type Features struct {
	// QIDOOrderBy: QIDO-RS takes orderby=[-]Keyword, so that the study
	// list sorts across pages, not only within one.
	QIDOOrderBy bool `json:"qido_orderby"`
	// QIDOSourceAE: QIDO-RS matches SourceApplicationEntityTitle (the
	// calling AE that sent the study).
	QIDOSourceAE bool `json:"qido_source_ae"`
}

// Principal is who a request comes from.
type Principal struct {
	Name    string   `json:"name"`
	Scopes  []string `json:"scopes"`
	Issuers []string `json:"issuers"` // allowed Issuers of Patient ID; empty means all
}

// ConfigPath is where the page asks for its configuration.
const ConfigPath = "/api/ui-config"

// assetPrefix is the path under which the assets are served, followed by
// the hash of their content.
const assetPrefix = "/ui/"

type handler struct {
	cfg     Config
	version string // hash of the assets
	index   asset
	files   map[string]asset // by path below the hashed prefix
	csp     string
}

type asset struct {
	body, gzipped []byte
	contentType   string
	etag          string
}

// Handler returns the handler of the page (GET /), its assets (GET
// /ui/...) and its configuration (GET /api/ui-config). Any other path is
// answered 404, so that mounting it never hides another route: an /api
// endpoint this server lacks still answers 404, which the page shows as
// "not available on this server".
func Handler(cfg Config) http.Handler {
	if cfg.DICOMwebRoot == "" {
		cfg.DICOMwebRoot = "/dicom-web"
	}
	h := &handler{cfg: cfg, files: map[string]asset{}}
	sub, err := fs.Sub(assets, "assets")
	if err != nil {
		return failed(err)
	}
	sum := sha256.New()
	var indexHTML []byte
	err = fs.WalkDir(sub, ".", func(name string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return err
		}
		b, err := fs.ReadFile(sub, name)
		if err != nil {
			return err
		}
		sum.Write([]byte(name))
		sum.Write([]byte{0})
		sum.Write(b)
		if name == "index.html" {
			indexHTML = b
			return nil
		}
		h.files[name] = newAsset(b, contentType(name))
		return nil
	})
	if err != nil {
		return failed(err)
	}
	h.version = hex.EncodeToString(sum.Sum(nil))[:16]
	for name, a := range h.files {
		a.etag = `"` + h.version + `"`
		h.files[name] = a
	}
	// The page names its assets by the hashed prefix, so that a new
	// version of pacsd never meets a cached old script.
	page := bytes.ReplaceAll(indexHTML, []byte("/ui/ASSETS/"), []byte(assetPrefix+h.version+"/"))
	h.index = newAsset(page, "text/html; charset=utf-8")
	h.index.etag = `"` + h.version + `"`
	h.csp = contentSecurityPolicy(cfg)
	return h
}

func newAsset(b []byte, typ string) asset {
	a := asset{body: b, contentType: typ}
	var buf bytes.Buffer
	zw, _ := gzip.NewWriterLevel(&buf, gzip.BestCompression)
	zw.Write(b)
	zw.Close()
	if buf.Len() < len(b) {
		a.gzipped = buf.Bytes()
	}
	return a
}

// contentType names the types of the files the page is made of; the
// system's MIME database is not consulted, so that a host without one
// still serves scripts as scripts.
func contentType(name string) string {
	switch path.Ext(name) {
	case ".js", ".mjs":
		return "text/javascript; charset=utf-8"
	case ".css":
		return "text/css; charset=utf-8"
	case ".svg":
		return "image/svg+xml"
	case ".json":
		return "application/json"
	case ".html":
		return "text/html; charset=utf-8"
	}
	return "application/octet-stream"
}

// contentSecurityPolicy allows the page to load nothing but its own
// files and to talk to nobody but pacsd and its OpenID Connect provider.
// Images come from pacsd through fetch, as blob: URLs, because a request
// with a bearer token cannot be made by an <img>.
func contentSecurityPolicy(cfg Config) string {
	connect := []string{"'self'"}
	if o := origin(cfg.OIDC.Issuer); o != "" {
		connect = append(connect, o)
	}
	for _, s := range cfg.ConnectSources {
		if o := origin(s); o != "" && !slices.Contains(connect, o) {
			connect = append(connect, o)
		}
	}
	return strings.Join([]string{
		"default-src 'none'",
		"script-src 'self'",
		"style-src 'self'",
		"img-src 'self' blob: data:",
		"connect-src " + strings.Join(connect, " "),
		"base-uri 'none'",
		"form-action 'self'",
		"frame-ancestors 'none'",
	}, "; ")
}

// origin returns the scheme://host[:port] of an absolute http(s) URL.
func origin(s string) string {
	u, err := url.Parse(s)
	if err != nil || (u.Scheme != "https" && u.Scheme != "http") || u.Host == "" {
		return ""
	}
	return u.Scheme + "://" + u.Host
}

func (h *handler) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	hdr := w.Header()
	hdr.Set("Content-Security-Policy", h.csp)
	hdr.Set("X-Content-Type-Options", "nosniff")
	hdr.Set("Referrer-Policy", "no-referrer")
	hdr.Set("X-Frame-Options", "DENY")
	hdr.Set("Cross-Origin-Opener-Policy", "same-origin")
	if r.Method != http.MethodGet && r.Method != http.MethodHead {
		hdr.Set("Allow", "GET, HEAD")
		http.Error(w, "method not allowed", http.StatusMethodNotAllowed)
		return
	}
	p := r.URL.Path
	switch {
	case p == "/" || p == "/index.html":
		// The page is small and names the current assets: always
		// revalidated, answered 304 while the build is the same.
		hdr.Set("Cache-Control", "no-cache")
		h.serve(w, r, h.index)
	case p == ConfigPath:
		h.serveConfig(w, r)
	case strings.HasPrefix(p, assetPrefix):
		version, name, ok := strings.Cut(strings.TrimPrefix(p, assetPrefix), "/")
		a, found := h.files[name]
		if !ok || !found {
			http.NotFound(w, r)
			return
		}
		if version == h.version {
			hdr.Set("Cache-Control", "public, max-age=31536000, immutable")
		} else {
			// A page loaded before an upgrade asking for a module by
			// the old hash gets today's file, not to be kept.
			hdr.Set("Cache-Control", "no-cache")
		}
		h.serve(w, r, a)
	default:
		http.NotFound(w, r)
	}
}

func (h *handler) serve(w http.ResponseWriter, r *http.Request, a asset) {
	hdr := w.Header()
	hdr.Set("Content-Type", a.contentType)
	hdr.Set("Vary", "Accept-Encoding")
	if a.etag != "" {
		hdr.Set("ETag", a.etag)
		if match := r.Header.Get("If-None-Match"); match != "" && etagMatches(match, a.etag) {
			w.WriteHeader(http.StatusNotModified)
			return
		}
	}
	body := a.body
	if a.gzipped != nil && acceptsGzip(r) {
		hdr.Set("Content-Encoding", "gzip")
		body = a.gzipped
	}
	if r.Method == http.MethodHead {
		return
	}
	w.Write(body)
}

func etagMatches(header, etag string) bool {
	for t := range strings.SplitSeq(header, ",") {
		t = strings.TrimPrefix(strings.TrimSpace(t), "W/")
		if t == etag || t == "*" {
			return true
		}
	}
	return false
}

func acceptsGzip(r *http.Request) bool {
	for _, part := range strings.Split(r.Header.Get("Accept-Encoding"), ",") {
		name, params, _ := strings.Cut(strings.TrimSpace(part), ";")
		if strings.EqualFold(strings.TrimSpace(name), "gzip") && !strings.Contains(strings.ReplaceAll(params, " ", ""), "q=0") {
			return true
		}
	}
	return false
}

// clientConfig is the document of GET /api/ui-config (docs/api.md).
type clientConfig struct {
	Version      string     `json:"version"`
	DICOMwebRoot string     `json:"dicomweb_root"`
	OHIFURL      string     `json:"ohif_url"`
	Auth         authConfig `json:"auth"`
	Principal    *Principal `json:"principal"`
	NHSIssuer    string     `json:"nhs_issuer"`
	Features     Features   `json:"features"`
}

type authConfig struct {
	Modes []string `json:"modes"`
	OIDC  *OIDC    `json:"oidc"`
}

// allScopes is what everyone may do when authentication is off.
var allScopes = []string{ScopeRead, ScopeWrite, ScopeDelete, ScopeAdmin}

func (h *handler) serveConfig(w http.ResponseWriter, r *http.Request) {
	c := clientConfig{
		Version:      h.cfg.Version,
		DICOMwebRoot: h.cfg.DICOMwebRoot,
		OHIFURL:      h.cfg.OHIFURL,
		Auth:         authConfig{Modes: h.cfg.AuthModes},
		NHSIssuer:    h.cfg.NHSIssuer,
		Features:     h.cfg.Features,
	}
	if len(c.Auth.Modes) == 0 {
		c.Auth.Modes = []string{"none"}
	}
	if slices.Contains(c.Auth.Modes, "oidc") {
		o := h.cfg.OIDC
		c.Auth.OIDC = &o
	}
	if h.cfg.Principal == nil {
		c.Principal = &Principal{Name: "anonymous", Scopes: allScopes, Issuers: []string{}}
	} else if p := h.cfg.Principal(r); p != nil {
		c.Principal = p
	}
	b, err := json.Marshal(c)
	if err != nil {
		http.Error(w, err.Error(), http.StatusInternalServerError)
		return
	}
	// Who the principal is depends on the request's credentials: never
	// cached, by the browser or anything between.
	w.Header().Set("Cache-Control", "no-store")
	w.Header().Set("Content-Type", "application/json")
	w.Write(b)
}

// failed is a handler for a page that could not be built; only a broken
// build gets one.
func failed(err error) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		http.Error(w, "ui: "+err.Error(), http.StatusInternalServerError)
	})
}
