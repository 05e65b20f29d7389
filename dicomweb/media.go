package dicomweb

import (
	"bufio"
	"compress/gzip"
	"io"
	"net/http"
	"strconv"
	"strings"

	"github.com/labstack/echo/v4"
)

// mediaRange is one entry of an Accept header.
type mediaRange struct {
	typ    string // "multipart/related", "application/dicom", "*/*"
	params map[string]string
	q      float64
}

// param returns a parameter, lower-cased names, quotes removed.
func (m mediaRange) param(name string) string { return m.params[name] }

// parseAccept reads an Accept header leniently, as clients write it:
// parameters quoted or not, several ranges separated by commas, q-values.
// Ranges come in order of preference; a missing header is "*/*".
func parseAccept(h []string) []mediaRange {
	var out []mediaRange
	for _, line := range h {
		for _, item := range splitOutsideQuotes(line, ',') {
			item = strings.TrimSpace(item)
			if item == "" {
				continue
			}
			parts := splitOutsideQuotes(item, ';')
			m := mediaRange{typ: strings.ToLower(strings.TrimSpace(parts[0])), params: map[string]string{}, q: 1}
			for _, p := range parts[1:] {
				k, v, _ := strings.Cut(p, "=")
				k = strings.ToLower(strings.TrimSpace(k))
				v = strings.Trim(strings.TrimSpace(v), `"`)
				if k == "q" {
					if f, err := strconv.ParseFloat(v, 64); err == nil {
						m.q = f
					}
					continue
				}
				if k == "type" {
					v = strings.ToLower(v)
				}
				m.params[k] = v
			}
			if m.q > 0 {
				out = append(out, m)
			}
		}
	}
	if len(out) == 0 {
		return []mediaRange{{typ: "*/*", params: map[string]string{}, q: 1}}
	}
	// A stable sort by q keeps the client's order among equals.
	for i := 1; i < len(out); i++ {
		for j := i; j > 0 && out[j].q > out[j-1].q; j-- {
			out[j], out[j-1] = out[j-1], out[j]
		}
	}
	return out
}

func splitOutsideQuotes(s string, sep byte) []string {
	var out []string
	quoted, start := false, 0
	for i := 0; i < len(s); i++ {
		switch s[i] {
		case '"':
			quoted = !quoted
		case sep:
			if !quoted {
				out = append(out, s[start:i])
				start = i + 1
			}
		}
	}
	return append(out, s[start:])
}

// matches reports whether a media range accepts media type typ.
func (m mediaRange) matches(typ string) bool {
	return covers(m.typ, typ)
}

// covers reports whether the media range r ("*/*", "image/*" or a type)
// covers the media type typ.
func covers(r, typ string) bool {
	if r == "*/*" || r == typ {
		return true
	}
	major, _, _ := strings.Cut(typ, "/")
	return r == major+"/*"
}

// admits reports whether a multipart/related range admits parts of media
// type typ: its type parameter is absent, typ, or a wild card covering it
// ("*/*" selects the resource's default type, PS3.18 §8.7).
func (m mediaRange) admits(typ string) bool {
	t := m.param("type")
	return t == "" || covers(t, typ)
}

// acceptance is what a request accepts: the media ranges of the accept
// query parameter, which takes precedence (PS3.18 §8.3.3.1), or else of
// the Accept header, and the text they came from, for error messages.
type acceptance struct {
	ranges []mediaRange
	source string // "Accept" or "accept"
	text   string
}

// String says what the request asked for, for a 406's reason.
func (a acceptance) String() string { return a.source + " was " + clip(a.text) }

func accepted(r *http.Request) acceptance {
	if v, ok := r.URL.Query()["accept"]; ok {
		ranges := parseAccept(v)
		for i := range ranges {
			// A "+" written unescaped in a query ("application/dicom+json")
			// arrives as a space.
			m := &ranges[i]
			m.typ = strings.ReplaceAll(m.typ, " ", "+")
			if t, ok := m.params["type"]; ok {
				m.params["type"] = strings.ReplaceAll(t, " ", "+")
			}
		}
		return acceptance{ranges, "accept", strings.Join(v, ",")}
	}
	return acceptance{parseAccept(r.Header.Values("Accept")), "Accept", strings.Join(r.Header.Values("Accept"), ", ")}
}

// acceptsJSON checks that a search or metadata request accepts DICOM JSON.
func acceptsJSON(r *http.Request) error {
	a := accepted(r)
	for _, m := range a.ranges {
		if m.matches("application/dicom+json") || m.typ == "application/json" {
			return nil
		}
	}
	return errorf(http.StatusNotAcceptable, "only application/dicom+json is available; %s", a)
}

// jsonWriter writes a JSON response, gzip-compressed when the client
// accepts it: metadata of a large series compresses tenfold.
type jsonWriter struct {
	c   echo.Context
	bw  *bufio.Writer
	gz  *gzip.Writer
	buf []byte // scratch for the caller
}

func newJSONWriter(c echo.Context, etag string) *jsonWriter {
	h := c.Response().Header()
	h.Set("Content-Type", "application/dicom+json")
	h.Add("Vary", "Accept-Encoding")
	if etag != "" {
		h.Set("ETag", etag)
	}
	w := &jsonWriter{c: c}
	var out io.Writer = c.Response()
	if strings.Contains(c.Request().Header.Get("Accept-Encoding"), "gzip") {
		h.Set("Content-Encoding", "gzip")
		w.gz, _ = gzip.NewWriterLevel(out, gzip.BestSpeed) // the level is valid
		out = w.gz
	}
	c.Response().WriteHeader(http.StatusOK)
	w.bw = bufio.NewWriterSize(out, 64<<10)
	return w
}

func (w *jsonWriter) Write(b []byte) {
	w.bw.Write(b)
	w.buf = b[:0]
}

func (w *jsonWriter) WriteString(s string) { w.bw.WriteString(s) }

// Flush sends what is buffered, so a long result starts arriving early.
func (w *jsonWriter) Flush() {
	w.bw.Flush()
	if w.gz != nil {
		w.gz.Flush()
	}
	w.c.Response().Flush()
}

// Close ends the response; it may be called twice.
func (w *jsonWriter) Close() error {
	if w.bw == nil {
		return nil
	}
	err := w.bw.Flush()
	if w.gz != nil {
		if cerr := w.gz.Close(); err == nil {
			err = cerr
		}
	}
	w.bw = nil
	return err
}
