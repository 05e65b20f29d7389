package metrics

import (
	"io"
	"net"
	"net/http"
	"strconv"
	"strings"
	"time"

	"github.com/labstack/echo/v4"
	"github.com/prometheus/client_golang/prometheus"
)

// ObserveHTTP counts one HTTP request: its route pattern (as the router
// registered it: "/dicom-web/studies/:study/series", or "GET
// /api/queue", never the request's own path), method, final status code
// and the time until its response ended. An empty route stands for a
// request no route matched.
func (r *Registry) ObserveHTTP(route, method string, status int, d time.Duration) {
	if r == nil {
		return
	}
	route = normalizeRoute(route)
	method = methodLabel(method)
	r.httpRequests.WithLabelValues(route, method, strconv.Itoa(status)).Inc()
	r.httpDuration.WithLabelValues(Service(route, method), route).Observe(d.Seconds())
}

// normalizeRoute drops the method that a net/http pattern may start with;
// the method has a label of its own.
func normalizeRoute(route string) string {
	if i := strings.IndexByte(route, ' '); i >= 0 {
		route = strings.TrimSpace(route[i+1:])
	}
	if route == "" {
		return "unmatched"
	}
	return route
}

// Service names the part of pacsd a route belongs to: "qido", "wado",
// "stow" and "delete" under a DICOMweb root (any route whose first
// segment is "dicom-web", or which has a /studies, /series or
// /instances segment), "wado_uri" for /wado, "api" under /api, "ops" for
// the health checks and /metrics, "ui" for the other GET routes and
// "other" for the rest. A QIDO-RS route ends in a resource of searches
// (studies, series, instances); any other GET of a study, series or
// instance is a WADO-RS retrieve.
func Service(route, method string) string {
	route = normalizeRoute(route)
	method = strings.ToUpper(method)
	switch {
	case route == "/wado":
		return "wado_uri"
	case route == "/api" || strings.HasPrefix(route, "/api/"):
		return "api"
	case route == "/metrics" || route == "/healthz" || route == "/readyz":
		return "ops"
	}
	segs := strings.Split(strings.Trim(route, "/"), "/")
	dicomweb := false
	for _, s := range segs {
		if s == "studies" || s == "series" || s == "instances" {
			dicomweb = true
		}
	}
	if dicomweb {
		switch method {
		case http.MethodPost:
			return "stow"
		case http.MethodDelete:
			return "delete"
		case http.MethodGet, http.MethodHead:
			switch segs[len(segs)-1] {
			case "studies", "series", "instances":
				return "qido"
			}
			return "wado"
		}
		return "other"
	}
	if (method == http.MethodGet || method == http.MethodHead) && route != "unmatched" {
		return "ui"
	}
	return "other"
}

// EchoMiddleware counts each request an echo server routes. Add it with
// e.Use, which runs after routing, so that the route is known.
func (r *Registry) EchoMiddleware() echo.MiddlewareFunc {
	return func(next echo.HandlerFunc) echo.HandlerFunc {
		if r == nil {
			return next
		}
		return func(c echo.Context) (err error) {
			start := time.Now()
			defer func() {
				status := c.Response().Status
				if err != nil && !c.Response().Committed {
					// The error is answered after this middleware
					// returns, by echo's error handler.
					status = http.StatusInternalServerError
					if he, ok := err.(*echo.HTTPError); ok {
						status = he.Code
					}
				}
				r.ObserveHTTP(c.Path(), c.Request().Method, status, time.Since(start))
			}()
			return next(c)
		}
	}
}

// Middleware counts each request next serves. next is usually an
// http.ServeMux, which records the pattern it matched in the request's
// Pattern field; routes of other routers are counted as "unmatched"
// unless they set it too.
func (r *Registry) Middleware(next http.Handler) http.Handler {
	if r == nil {
		return next
	}
	return http.HandlerFunc(func(w http.ResponseWriter, req *http.Request) {
		start := time.Now()
		sw := &statusWriter{ResponseWriter: w}
		defer func() {
			status := sw.status
			if status == 0 {
				status = http.StatusOK
			}
			r.ObserveHTTP(req.Pattern, req.Method, status, time.Since(start))
		}()
		next.ServeHTTP(sw, req)
	})
}

// statusWriter remembers the status code of a response.
type statusWriter struct {
	http.ResponseWriter
	status int
}

func (w *statusWriter) WriteHeader(code int) {
	if w.status == 0 && code >= 200 {
		w.status = code
	}
	w.ResponseWriter.WriteHeader(code)
}

func (w *statusWriter) Write(b []byte) (int, error) {
	if w.status == 0 {
		w.status = http.StatusOK
	}
	return w.ResponseWriter.Write(b)
}

// Flush lets streaming handlers flush through the wrapper.
func (w *statusWriter) Flush() {
	if w.status == 0 {
		w.status = http.StatusOK
	}
	_ = http.NewResponseController(w.ResponseWriter).Flush()
}

// Unwrap gives http.ResponseController the writer underneath.
func (w *statusWriter) Unwrap() http.ResponseWriter { return w.ResponseWriter }

// Listener counts the bytes of every connection l accepts as received and
// sent over protocol ("dimse" or "http"). Wrap the TCP listener, before
// any TLS, so that what is counted is what crossed the network and the
// server still sees its *tls.Conn.
func (r *Registry) Listener(l net.Listener, protocol string) net.Listener {
	if r == nil {
		return l
	}
	return &countingListener{Listener: l, in: r.received.WithLabelValues(protocol), out: r.sent.WithLabelValues(protocol)}
}

// Conn counts the bytes of one connection, such as one pacsd dialled to
// send to a destination.
func (r *Registry) Conn(c net.Conn, protocol string) net.Conn {
	if r == nil {
		return c
	}
	return &countingConn{Conn: c, in: r.received.WithLabelValues(protocol), out: r.sent.WithLabelValues(protocol)}
}

type countingListener struct {
	net.Listener
	in, out prometheus.Counter
}

func (l *countingListener) Accept() (net.Conn, error) {
	c, err := l.Listener.Accept()
	if err != nil {
		return nil, err
	}
	return &countingConn{Conn: c, in: l.in, out: l.out}, nil
}

type countingConn struct {
	net.Conn
	in, out prometheus.Counter
}

func (c *countingConn) Read(b []byte) (int, error) {
	n, err := c.Conn.Read(b)
	if n > 0 {
		c.in.Add(float64(n))
	}
	return n, err
}

func (c *countingConn) Write(b []byte) (int, error) {
	n, err := c.Conn.Write(b)
	if n > 0 {
		c.out.Add(float64(n))
	}
	return n, err
}

// ReadFrom keeps the kernel's zero-copy path (sendfile, splice) that
// *net.TCPConn offers to io.Copy.
func (c *countingConn) ReadFrom(src io.Reader) (int64, error) {
	var n int64
	var err error
	if rf, ok := c.Conn.(io.ReaderFrom); ok {
		n, err = rf.ReadFrom(src)
	} else {
		n, err = io.Copy(struct{ io.Writer }{c.Conn}, src)
	}
	if n > 0 {
		c.out.Add(float64(n))
	}
	return n, err
}
