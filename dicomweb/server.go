// Package dicomweb is pacsd's HTTP front door: the DICOMweb services of
// PS3.18 — QIDO-RS (search), WADO-RS (retrieve), STOW-RS (store) — and
// WADO-URI, over the archive service and the index, served with echo.
//
// Objects are streamed from storage to the client and from the client to
// the archive part by part; no request holds a whole object in memory.
// Objects, frames and compressed bulk data are converted to the transfer
// syntax a client asks for by the Codecs the server is given, a frame at
// a time: objects go in Explicit VR Little Endian unless asked otherwise
// (PS3.18 §8.7.3.5).
// Metadata comes from what the archive computed at ingest, so series
// metadata does not re-read the series' objects.
package dicomweb

import (
	"context"
	"errors"
	"fmt"
	"io"
	"iter"
	"log/slog"
	"net"
	"net/http"
	"net/url"
	"strconv"
	"strings"

	"github.com/labstack/echo/v4"

	"github.com/pacsd/pacsd/archive"
	"github.com/pacsd/pacsd/dicom"
	"github.com/pacsd/pacsd/dicom/tag"
	"github.com/pacsd/pacsd/index"
	"github.com/pacsd/pacsd/storage"
)

// Index is what the services need of the index.
type Index interface {
	Find(ctx context.Context, q *index.Query) iter.Seq2[*dicom.Dataset, error]
	FindInstances(ctx context.Context, q *index.Query) iter.Seq2[*index.Instance, error]
	// UnsupportedKeys returns the matching keys of q the index cannot
	// match on, or an error wrapping index.ErrInvalidQuery.
	UnsupportedKeys(q *index.Query) ([]tag.Tag, error)
}

// Archive is what the services need of the archive.
type Archive interface {
	Store(ctx context.Context, req *archive.StoreRequest) (*archive.Result, error)
	Open(ctx context.Context, in *index.Instance) (storage.Object, error)
	OpenDataset(ctx context.Context, in *index.Instance, ts string) (dicom.FileMeta, io.ReadCloser, error)
	Metadata(ctx context.Context, in *index.Instance) (*archive.Metadata, error)
}

// DefaultRoot is where the services live unless Server.Root says otherwise.
const DefaultRoot = "/dicom-web"

// Server serves DICOMweb. Its fields must be set before Register.
type Server struct {
	Index   Index
	Archive Archive
	// Trash, when not nil, serves DELETE of studies, series and
	// instances.
	Trash Trash
	// Root is the path of the service root (DefaultRoot when empty).
	// WADO-URI is served at /wado whatever the root.
	Root string
	// CORSOrigins are the origins allowed to call the services from a
	// browser; nil allows any, which suits an API that carries no
	// cookies.
	CORSOrigins []string
	// MaxBodyBytes bounds a STOW-RS request body (0: 4 GiB).
	MaxBodyBytes int64
	// MaxMatches bounds the results of a search without a smaller limit
	// (0: no bound). A search cut short says so in a Warning header.
	MaxMatches int
	// CaseSensitiveNames makes PN matching case-sensitive.
	CaseSensitiveNames bool
	// AETitle is recorded as the called AE of instances stored by STOW-RS.
	AETitle string
	// PublicURL is the URL clients reach the HTTP server at, for a
	// server behind a reverse proxy ("https://pacs.example.org/archive").
	// The URLs written into responses (Retrieve URL, BulkDataURI,
	// Content-Location) start with it. Without it they are built from
	// the request: a proxy's X-Forwarded-Proto, -Host and -Prefix, else
	// the Host header, with the port the request came in on when Host
	// names none.
	PublicURL string
	// Codecs converts pixel data for retrievals in a syntax other than
	// the stored one; nil converts only between uncompressed syntaxes.
	Codecs Codecs
	// Limits bound what one request may cost; zero fields take the
	// defaults documented on Limits.
	Limits Limits
	// Research, when set, serves de-identified copies to the callers
	// it names; without it they are served as any other.
	Research *Research
	Logger   *slog.Logger

	renders renderGate
}

func (s *Server) root() string {
	if s.Root == "" {
		return DefaultRoot
	}
	return strings.TrimSuffix(s.Root, "/")
}

func (s *Server) log() *slog.Logger {
	if s.Logger != nil {
		return s.Logger
	}
	return slog.New(slog.DiscardHandler)
}

func (s *Server) maxBody() int64 {
	if s.MaxBodyBytes > 0 {
		return s.MaxBodyBytes
	}
	return 4 << 30
}

// Register adds the services' routes to e.
func (s *Server) Register(e *echo.Echo) {
	g := e.Group(s.root(), secure, s.cors, s.researchGate)
	h := s.handle
	// QIDO-RS (PS3.18 §10.6).
	g.GET("/studies", h(s.searchStudies))
	g.GET("/series", h(s.searchSeries))
	g.GET("/instances", h(s.searchInstances))
	g.GET("/studies/:study/series", h(s.searchSeries))
	g.GET("/studies/:study/instances", h(s.searchInstances))
	g.GET("/studies/:study/series/:series/instances", h(s.searchInstances))
	// WADO-RS (PS3.18 §10.4).
	g.GET("/studies/:study", h(s.retrieve))
	g.GET("/studies/:study/series/:series", h(s.retrieve))
	g.GET("/studies/:study/series/:series/instances/:instance", h(s.retrieve))
	g.GET("/studies/:study/metadata", h(s.metadata))
	g.GET("/studies/:study/series/:series/metadata", h(s.metadata))
	g.GET("/studies/:study/series/:series/instances/:instance/metadata", h(s.metadata))
	g.GET("/studies/:study/series/:series/instances/:instance/frames/:frames", h(s.frames))
	g.GET("/studies/:study/series/:series/instances/:instance/bulkdata/:offset/:length", h(s.bulkdata))
	g.GET("/studies/:study/series/:series/instances/:instance/rendered", h(s.rendered))
	g.GET("/studies/:study/series/:series/instances/:instance/frames/:frames/rendered", h(s.rendered))
	g.GET("/studies/:study/thumbnail", h(s.thumbnail))
	g.GET("/studies/:study/series/:series/thumbnail", h(s.thumbnail))
	g.GET("/studies/:study/series/:series/instances/:instance/thumbnail", h(s.thumbnail))
	g.GET("/studies/:study/series/:series/instances/:instance/frames/:frames/thumbnail", h(s.thumbnail))
	// STOW-RS (PS3.18 §10.5).
	g.POST("/studies", h(s.store))
	g.POST("/studies/:study", h(s.store))
	// Deletion, into the archive's trash.
	if s.Trash != nil {
		g.DELETE("/studies/:study", h(s.remove))
		g.DELETE("/studies/:study/series/:series", h(s.remove))
		g.DELETE("/studies/:study/series/:series/instances/:instance", h(s.remove))
	}
	// Preflight requests of browsers reach these routes through the CORS
	// middleware, which answers them.
	g.OPTIONS("/*", func(c echo.Context) error { return c.NoContent(http.StatusNoContent) })
	// WADO-URI (PS3.18 §9), where viewers and RIS links expect it.
	e.GET("/wado", h(s.wadoURI), secure, s.cors, s.researchGate)
}

// cors allows browsers on other origins to call the services: a viewer
// is usually served from elsewhere.
func (s *Server) cors(next echo.HandlerFunc) echo.HandlerFunc {
	return func(c echo.Context) error {
		origin := c.Request().Header.Get("Origin")
		if origin != "" && s.originAllowed(origin) {
			h := c.Response().Header()
			if s.CORSOrigins == nil {
				h.Set("Access-Control-Allow-Origin", "*")
			} else {
				h.Set("Access-Control-Allow-Origin", origin)
				h.Add("Vary", "Origin")
			}
			h.Set("Access-Control-Expose-Headers", "Content-Type, Content-Length, Content-Range, ETag, Warning, Location")
			if c.Request().Method == http.MethodOptions {
				h.Set("Access-Control-Allow-Methods", "GET, POST, DELETE, OPTIONS")
				if req := c.Request().Header.Get("Access-Control-Request-Headers"); req != "" {
					h.Set("Access-Control-Allow-Headers", req)
				}
				h.Set("Access-Control-Max-Age", "600")
				return c.NoContent(http.StatusNoContent)
			}
		}
		return next(c)
	}
}

func (s *Server) originAllowed(origin string) bool {
	if s.CORSOrigins == nil {
		return true
	}
	for _, o := range s.CORSOrigins {
		if o == "*" || strings.EqualFold(o, origin) {
			return true
		}
	}
	return false
}

// Error is an error with the HTTP status it is answered with.
type Error struct {
	Status int
	Reason string
}

func (e *Error) Error() string { return e.Reason }

func errorf(status int, format string, args ...any) error {
	return &Error{Status: status, Reason: fmt.Sprintf(format, args...)}
}

// handle turns a handler's error into a response. It is the one place
// that maps the errors of the archive, the index and storage onto HTTP.
func (s *Server) handle(fn func(echo.Context) error) echo.HandlerFunc {
	return func(c echo.Context) error {
		err := fn(c)
		if err == nil {
			return nil
		}
		status, reason := statusOf(err)
		if s.researching(c) {
			reason = s.pseudonymize(c, reason)
		}
		if len(reason) > maxReason {
			reason = strings.ToValidUTF8(reason[:maxReason], "") + "…"
		}
		if c.Response().Committed {
			// The status line is sent; all that is left is to cut the
			// response short so the client cannot take it as complete.
			s.log().Error("response cut short", "path", c.Request().URL.Path, "err", err)
			panic(http.ErrAbortHandler)
		}
		if status >= 500 {
			s.log().Error("request failed", "method", c.Request().Method, "path", c.Request().URL.Path, "status", status, "err", err)
		}
		if status == http.StatusServiceUnavailable && c.Response().Header().Get("Retry-After") == "" {
			c.Response().Header().Set("Retry-After", "10")
		}
		// The reason may quote the request; as plain text that no
		// browser sniffs into HTML, it cannot become a page.
		h := c.Response().Header()
		h.Set("Content-Type", "text/plain; charset=utf-8")
		h.Set("X-Content-Type-Options", "nosniff")
		c.Response().WriteHeader(status)
		_, err = io.WriteString(c.Response(), reason+"\n")
		return err
	}
}

// maxReason bounds the reason of an error response, which may quote the
// request.
const maxReason = 1024

// clip quotes request text for an error message, shortened: a reason says
// what was wrong and does not echo a long request back.
func clip(s string) string {
	const max = 128
	if len(s) > max {
		return strconv.Quote(s[:max]) + "…"
	}
	return strconv.Quote(s)
}

// secure adds the headers every response carries: no response of the
// services is a page a browser should sniff a type for.
func secure(next echo.HandlerFunc) echo.HandlerFunc {
	return func(c echo.Context) error {
		c.Response().Header().Set("X-Content-Type-Options", "nosniff")
		return next(c)
	}
}

func statusOf(err error) (int, string) {
	var e *Error
	var he *echo.HTTPError
	var mb *http.MaxBytesError
	switch {
	case errors.As(err, &e):
		return e.Status, e.Reason
	case errors.As(err, &he):
		return he.Code, fmt.Sprint(he.Message)
	case errors.As(err, &mb):
		return http.StatusRequestEntityTooLarge, fmt.Sprintf("request body exceeds %d bytes", mb.Limit)
	case errors.Is(err, index.ErrInvalidQuery):
		return http.StatusBadRequest, err.Error()
	case errors.Is(err, index.ErrNotFound), errors.Is(err, storage.ErrNotFound):
		return http.StatusNotFound, err.Error()
	case errors.Is(err, archive.ErrUnavailable):
		return http.StatusServiceUnavailable, err.Error()
	case errors.Is(err, context.Canceled):
		return 499, "request cancelled"
	}
	return http.StatusInternalServerError, err.Error()
}

// baseURL returns the absolute URL of the service root as the client sees
// it: PublicURL's if set, else from the headers of a reverse proxy, else
// from the request itself.
func (s *Server) baseURL(r *http.Request) string {
	if s.PublicURL != "" {
		return strings.TrimSuffix(s.PublicURL, "/") + s.root()
	}
	scheme := "http"
	if r.TLS != nil {
		scheme = "https"
	}
	if p := forwarded(r, "X-Forwarded-Proto"); p == "http" || p == "https" {
		scheme = p
	}
	host := r.Host
	switch h := forwarded(r, "X-Forwarded-Host"); {
	case h != "" && !strings.ContainsAny(h, "/\\ \""):
		host = h
	case forwarded(r, "X-Forwarded-Proto") == "" && forwarded(r, "X-Forwarded-Prefix") == "":
		// No proxy in front, whose port the listener's would not be.
		host = withPort(host, scheme, r)
	}
	prefix := ""
	if p := forwarded(r, "X-Forwarded-Prefix"); strings.HasPrefix(p, "/") && !strings.ContainsAny(p, "\\ \"") {
		prefix = strings.TrimSuffix(p, "/")
	}
	return scheme + "://" + host + prefix + s.root()
}

// CheckPublicURL reports whether u can be a PublicURL: empty (none), or an
// absolute http or https URL with a host, and without user, query or
// fragment.
func CheckPublicURL(u string) error {
	if u == "" {
		return nil
	}
	p, err := url.Parse(u)
	switch {
	case err != nil:
		return fmt.Errorf("public URL %q: %w", u, err)
	case p.Scheme != "http" && p.Scheme != "https":
		return fmt.Errorf("public URL %q: the scheme is not http or https", u)
	case p.Host == "":
		return fmt.Errorf("public URL %q: no host", u)
	case p.User != nil || p.RawQuery != "" || p.Fragment != "" || p.Opaque != "":
		return fmt.Errorf("public URL %q: only scheme, host, port and path are allowed", u)
	}
	return nil
}

// withPort adds to a Host header without a port the port the request came
// in on, unless it is the scheme's default: clients such as the Python
// dicomweb-client send "Host: 127.0.0.1" to a server on port 8042, and a
// URL without the port would send them to port 80.
func withPort(host, scheme string, r *http.Request) string {
	if host == "" {
		return host
	}
	if _, _, err := net.SplitHostPort(host); err == nil {
		return host
	}
	addr, ok := r.Context().Value(http.LocalAddrContextKey).(net.Addr)
	if !ok {
		return host
	}
	_, port, err := net.SplitHostPort(addr.String())
	if err != nil || scheme == "http" && port == "80" || scheme == "https" && port == "443" {
		return host
	}
	return net.JoinHostPort(strings.TrimSuffix(strings.TrimPrefix(host, "["), "]"), port)
}

// forwarded returns the first value of a proxy header.
func forwarded(r *http.Request, name string) string {
	v, _, _ := strings.Cut(r.Header.Get(name), ",")
	return strings.TrimSpace(v)
}

func studyURL(base, study string) string { return base + "/studies/" + study }
func seriesURL(base, study, series string) string {
	return studyURL(base, study) + "/series/" + series
}
func instanceURL(base, study, series, instance string) string {
	return seriesURL(base, study, series) + "/instances/" + instance
}
