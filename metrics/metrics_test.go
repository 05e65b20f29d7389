package metrics

import (
	"bytes"
	"fmt"
	"io"
	"maps"
	"net"
	"net/http"
	"net/http/httptest"
	"runtime"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/labstack/echo/v4"
	dto "github.com/prometheus/client_model/go"
	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"
)

// scrape fetches /metrics from h as Prometheus does and parses the text.
func scrape(t testing.TB, h http.Handler) map[string]*dto.MetricFamily {
	t.Helper()
	srv := httptest.NewServer(h)
	defer srv.Close()
	resp, err := http.Get(srv.URL + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("GET /metrics: %s", resp.Status)
	}
	if ct := resp.Header.Get("Content-Type"); !strings.HasPrefix(ct, "text/plain") {
		t.Fatalf("Content-Type %q, want the text format", ct)
	}
	p := expfmt.NewTextParser(model.UTF8Validation)
	mfs, err := p.TextToMetricFamilies(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	return mfs
}

// value returns the value of the series of name with exactly labels: a
// counter's or gauge's value, a histogram's sample count.
func value(t *testing.T, mfs map[string]*dto.MetricFamily, name string, labels map[string]string) float64 {
	t.Helper()
	mf, ok := mfs[name]
	if !ok {
		t.Fatalf("no metric %s; have %v", name, slices.Sorted(maps.Keys(mfs)))
	}
	for _, m := range mf.Metric {
		got := map[string]string{}
		for _, lp := range m.Label {
			got[lp.GetName()] = lp.GetValue()
		}
		if !maps.Equal(got, labels) {
			continue
		}
		switch {
		case m.Counter != nil:
			return m.Counter.GetValue()
		case m.Gauge != nil:
			return m.Gauge.GetValue()
		case m.Histogram != nil:
			return float64(m.Histogram.GetSampleCount())
		}
	}
	var have []string
	for _, m := range mf.Metric {
		have = append(have, fmt.Sprint(m.Label))
	}
	t.Fatalf("%s has no series %v; it has %v", name, labels, have)
	return 0
}

// series is a series with the value a test expects of it.
type series struct {
	name   string
	labels map[string]string
	want   float64
}

// expect checks each series in a scrape.
func expect(t *testing.T, mfs map[string]*dto.MetricFamily, want []series) {
	t.Helper()
	for _, c := range want {
		if got := value(t, mfs, c.name, c.labels); got != c.want {
			t.Errorf("%s%v = %v, want %v", c.name, c.labels, got, c.want)
		}
	}
}

func l(kv ...string) map[string]string {
	m := map[string]string{}
	for i := 0; i+1 < len(kv); i += 2 {
		m[kv[i]] = kv[i+1]
	}
	return m
}

func TestNamesArePrefixed(t *testing.T) {
	r := New(Config{Version: "v1.2.3"})
	// Touch every vector so that its family appears.
	r.ObserveAssociation("CT01", true)
	r.ObserveCStore("CT01", 0, time.Millisecond, 10)
	r.ObserveHTTP("/x", "GET", 200, time.Millisecond)
	r.ObserveStoragePut("s3", time.Millisecond, io.ErrUnexpectedEOF)
	r.ObserveIndexCommit(time.Millisecond, io.ErrUnexpectedEOF)
	r.SetQueue("REPORTING", QueueState{})
	r.SetMigration("OLDPACS", MigrationState{})
	r.ObserveMigrated("OLDPACS", 1, 1)
	r.SetIndexCounts(IndexCounts{})
	r.Conn(nopConn{}, "dimse").Write([]byte("x"))
	r.Conn(nopConn{}, "dimse").Read(make([]byte, 1))
	mfs := scrape(t, r.Handler())
	for name := range mfs {
		if !strings.HasPrefix(name, "pacsd_") {
			t.Errorf("metric %s is not prefixed pacsd_", name)
		}
	}
	want := []string{
		"pacsd_build_info",
		"pacsd_dimse_associations_total", "pacsd_dimse_associations_active",
		"pacsd_dimse_operations_total", "pacsd_dimse_operation_duration_seconds",
		"pacsd_http_requests_total", "pacsd_http_request_duration_seconds",
		"pacsd_received_bytes_total", "pacsd_sent_bytes_total",
		"pacsd_stored_instances_total", "pacsd_stored_bytes_total", "pacsd_index_entities",
		"pacsd_storage_operation_duration_seconds", "pacsd_storage_errors_total",
		"pacsd_index_operation_duration_seconds", "pacsd_index_errors_total",
		"pacsd_queue_tasks", "pacsd_queue_oldest_pending_seconds",
		"pacsd_migration_studies", "pacsd_migration_instances_total", "pacsd_migration_bytes_total",
		"pacsd_spool_backlog_objects", "pacsd_spool_backlog_bytes",
	}
	for _, name := range want {
		if mfs[name] == nil {
			t.Errorf("no metric %s", name)
		}
	}
	if got := value(t, mfs, "pacsd_build_info", l("version", "v1.2.3", "goversion", runtime.Version())); got != 1 {
		t.Errorf("pacsd_build_info = %v", got)
	}
}

func TestDIMSE(t *testing.T) {
	r := New(Config{KnownAEs: []string{"CT01@10.0.0.5", "MR02"}})
	r.ObserveAssociation("CT01", true)
	r.ObserveAssociation("CT01 ", true) // padded as on the wire
	r.ObserveAssociation("MR02", false)
	r.ObserveAssociation("ROGUE", false)
	r.ObserveAssociation("ROGUE2", true)
	r.AssociationClosed()
	r.ObserveCStore("CT01", 0x0000, 20*time.Millisecond, 1000)
	r.ObserveCStore("CT01", 0xB007, 30*time.Millisecond, 500)
	r.ObserveCStore("CT01", 0xA700, 2*time.Second, 0)
	r.ObserveCStore("UNKNOWN", 0x0000, time.Millisecond, 7)
	r.ObserveDIMSE(CFind, 0x0000, 5*time.Millisecond)
	r.ObserveDIMSE(CEcho, 0x0000, time.Millisecond)
	r.ObserveDIMSE("C-BOGUS", 0x0000, time.Millisecond)

	mfs := scrape(t, r.Handler())
	expect(t, mfs, []series{
		{"pacsd_dimse_associations_total", l("calling_ae", "CT01", "result", "accepted"), 2},
		{"pacsd_dimse_associations_total", l("calling_ae", "MR02", "result", "rejected"), 1},
		{"pacsd_dimse_associations_total", l("calling_ae", "other", "result", "rejected"), 1},
		{"pacsd_dimse_associations_total", l("calling_ae", "other", "result", "accepted"), 1},
		{"pacsd_dimse_associations_active", l(), 2},
		{"pacsd_dimse_operations_total", l("operation", "C-STORE", "status", "0x0000"), 2},
		{"pacsd_dimse_operations_total", l("operation", "C-STORE", "status", "0xB007"), 1},
		{"pacsd_dimse_operations_total", l("operation", "C-STORE", "status", "0xA700"), 1},
		{"pacsd_dimse_operations_total", l("operation", "C-FIND", "status", "0x0000"), 1},
		{"pacsd_dimse_operations_total", l("operation", "other", "status", "0x0000"), 1},
		{"pacsd_dimse_operation_duration_seconds", l("operation", "C-STORE"), 4},
		{"pacsd_stored_instances_total", l("source", "dimse", "calling_ae", "CT01"), 2},
		{"pacsd_stored_instances_total", l("source", "dimse", "calling_ae", "other"), 1},
		{"pacsd_stored_bytes_total", l("source", "dimse"), 1507},
	})
	// The C-STORE of 2 s falls in the bucket of 2.5 s, not below.
	h := histogram(t, mfs, "pacsd_dimse_operation_duration_seconds", l("operation", "C-STORE"))
	for _, b := range h.Bucket {
		want := uint64(3)
		if b.GetUpperBound() >= 2.5 {
			want = 4
		} else if b.GetUpperBound() < 0.025 {
			want = 1
		} else if b.GetUpperBound() < 0.05 {
			want = 2
		}
		if b.GetCumulativeCount() != want {
			t.Errorf("C-STORE bucket le=%v holds %d, want %d", b.GetUpperBound(), b.GetCumulativeCount(), want)
		}
	}
}

func histogram(t *testing.T, mfs map[string]*dto.MetricFamily, name string, labels map[string]string) *dto.Histogram {
	t.Helper()
	for _, m := range mfs[name].GetMetric() {
		got := map[string]string{}
		for _, lp := range m.Label {
			got[lp.GetName()] = lp.GetValue()
		}
		if maps.Equal(got, labels) {
			return m.Histogram
		}
	}
	t.Fatalf("no histogram %s%v", name, labels)
	return nil
}

func TestStatusLabelsBounded(t *testing.T) {
	r := New(Config{})
	for s := range 1000 {
		r.ObserveDIMSE(CStore, uint16(0xC000+s), time.Millisecond)
	}
	mfs := scrape(t, r.Handler())
	if n := len(mfs["pacsd_dimse_operations_total"].GetMetric()); n != maxStatusLabels+1 {
		t.Errorf("%d series of pacsd_dimse_operations_total, want %d and other", n, maxStatusLabels)
	}
	if got := value(t, mfs, "pacsd_dimse_operations_total", l("operation", "C-STORE", "status", "other")); got != 1000-maxStatusLabels {
		t.Errorf("other statuses counted %v, want %d", got, 1000-maxStatusLabels)
	}
}

func TestService(t *testing.T) {
	for _, c := range []struct{ route, method, want string }{
		{"/dicom-web/studies", "GET", "qido"},
		{"/dicom-web/studies/:study/series", "GET", "qido"},
		{"/dicom-web/studies/:study/series/:series/instances", "GET", "qido"},
		{"GET /dicom-web/instances", "", "qido"},
		{"/dicom-web/studies/:study", "GET", "wado"},
		{"/dicom-web/studies/:study/series/:series/instances/:instance/frames/:frames", "GET", "wado"},
		{"/dicom-web/studies/:study/metadata", "GET", "wado"},
		{"/dicom-web/studies/{study}/thumbnail", "GET", "wado"},
		{"/dicom-web/studies", "POST", "stow"},
		{"/dicom-web/studies/:study", "POST", "stow"},
		{"/dicom-web/studies/:study", "DELETE", "delete"},
		{"/dicom-web/*", "OPTIONS", "other"},
		{"/wado", "GET", "wado_uri"},
		{"/api/queue", "GET", "api"},
		{"/api/studies/:study/send", "POST", "api"},
		{"/metrics", "GET", "ops"},
		{"/readyz", "GET", "ops"},
		{"/*", "GET", "ui"},
		{"", "GET", "other"},
	} {
		m := c.method
		if m == "" {
			m, _, _ = strings.Cut(c.route, " ")
		}
		if got := Service(c.route, m); got != c.want {
			t.Errorf("Service(%q, %q) = %q, want %q", c.route, m, got, c.want)
		}
	}
}

func TestEchoMiddleware(t *testing.T) {
	r := New(Config{})
	e := echo.New()
	e.Use(r.EchoMiddleware())
	e.GET("/dicom-web/studies", func(c echo.Context) error { return c.String(http.StatusOK, "[]") })
	e.GET("/dicom-web/studies/:study", func(c echo.Context) error {
		return echo.NewHTTPError(http.StatusNotFound, "no such study")
	})
	e.POST("/dicom-web/studies", func(c echo.Context) error { return io.ErrUnexpectedEOF })
	srv := httptest.NewServer(e)
	defer srv.Close()
	do := func(method, path string) int {
		req, _ := http.NewRequest(method, srv.URL+path, nil)
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		return resp.StatusCode
	}
	do("GET", "/dicom-web/studies?PatientName=Doe*")
	do("GET", "/dicom-web/studies")
	do("GET", "/dicom-web/studies/1.2.3")
	do("GET", "/dicom-web/studies/1.2.4")
	do("POST", "/dicom-web/studies")
	do("GET", "/no/such/route")

	// A handler counts its request after the response is sent; Close
	// waits for the handlers to return.
	srv.Close()
	mfs := scrape(t, r.Handler())
	expect(t, mfs, []series{
		{"pacsd_http_requests_total", l("route", "/dicom-web/studies", "method", "GET", "status", "200"), 2},
		{"pacsd_http_requests_total", l("route", "/dicom-web/studies/:study", "method", "GET", "status", "404"), 2},
		{"pacsd_http_requests_total", l("route", "/dicom-web/studies", "method", "POST", "status", "500"), 1},
		{"pacsd_http_request_duration_seconds", l("service", "qido", "route", "/dicom-web/studies"), 2},
		{"pacsd_http_request_duration_seconds", l("service", "wado", "route", "/dicom-web/studies/:study"), 2},
		{"pacsd_http_request_duration_seconds", l("service", "stow", "route", "/dicom-web/studies"), 1},
	})
	// A path no route matches must not become a label value.
	for _, m := range mfs["pacsd_http_requests_total"].GetMetric() {
		for _, lp := range m.Label {
			if lp.GetName() == "route" && strings.Contains(lp.GetValue(), "no/such") {
				t.Errorf("an unrouted path became a route label: %v", m.Label)
			}
		}
	}
}

func TestMiddleware(t *testing.T) {
	r := New(Config{})
	mux := http.NewServeMux()
	mux.HandleFunc("GET /api/queue", func(w http.ResponseWriter, _ *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		w.Write([]byte(`{"destinations":[]}`))
		// A streaming handler flushes through the wrapper.
		http.NewResponseController(w).Flush()
	})
	mux.HandleFunc("POST /api/studies/{study}/send", func(w http.ResponseWriter, _ *http.Request) {
		w.WriteHeader(http.StatusAccepted)
	})
	srv := httptest.NewServer(r.Middleware(mux))
	defer srv.Close()
	for range 3 {
		resp, err := http.Get(srv.URL + "/api/queue")
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
	}
	resp, err := http.Post(srv.URL+"/api/studies/1.2.3/send", "application/json", strings.NewReader(`{"to":["X"]}`))
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	resp, err = http.Get(srv.URL + "/nothing/here")
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()

	// A handler counts its request after the response is sent; Close
	// waits for the handlers to return.
	srv.Close()
	mfs := scrape(t, r.Handler())
	const name = "pacsd_http_requests_total"
	expect(t, mfs, []series{
		{name, l("route", "/api/queue", "method", "GET", "status", "200"), 3},
		{name, l("route", "/api/studies/{study}/send", "method", "POST", "status", "202"), 1},
		{name, l("route", "unmatched", "method", "GET", "status", "404"), 1},
	})
}

func TestListenerCountsBytes(t *testing.T) {
	r := New(Config{})
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	ln = r.Listener(ln, "dimse")
	defer ln.Close()
	done := make(chan error, 1)
	go func() {
		c, err := ln.Accept()
		if err != nil {
			done <- err
			return
		}
		defer c.Close()
		buf := make([]byte, 100)
		if _, err := io.ReadFull(c, buf); err != nil {
			done <- err
			return
		}
		// io.Copy to the conn goes through ReadFrom.
		_, err = io.Copy(c, bytes.NewReader(make([]byte, 250)))
		done <- err
	}()
	c, err := net.Dial("tcp", ln.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if _, err := c.Write(make([]byte, 100)); err != nil {
		t.Fatal(err)
	}
	if _, err := io.ReadFull(c, make([]byte, 250)); err != nil {
		t.Fatal(err)
	}
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	mfs := scrape(t, r.Handler())
	if got := value(t, mfs, "pacsd_received_bytes_total", l("protocol", "dimse")); got != 100 {
		t.Errorf("received %v bytes, want 100", got)
	}
	if got := value(t, mfs, "pacsd_sent_bytes_total", l("protocol", "dimse")); got != 250 {
		t.Errorf("sent %v bytes, want 250", got)
	}
}

func TestState(t *testing.T) {
	r := New(Config{})
	r.SetQueue("REPORTING", QueueState{Pending: 12, InFlight: 2, Failed: 1, OldestPending: 90 * time.Second})
	r.SetQueue("GONE", QueueState{Pending: 1})
	r.RemoveQueue("GONE")
	r.SetMigration("OLDPACS", MigrationState{Pending: 70, Done: 5, Verified: 20, Failed: 3, Conflict: 2})
	r.ObserveMigrated("OLDPACS", 10, 5<<20)
	r.ObserveMigrated("OLDPACS", 5, 1<<20)
	r.SetSpoolBacklog(4, 2048)
	r.SetIndexCounts(IndexCounts{Patients: 3, Studies: 6, Series: 12, Instances: 40})
	r.ObserveStored("stow", "", 300)
	r.ObserveStoragePut("s3", 50*time.Millisecond, nil)
	r.ObserveStoragePut("s3", time.Second, io.ErrUnexpectedEOF)
	r.ObserveStorageGet("file", time.Millisecond, nil)
	r.ObserveStorageError("s3", "delete")
	r.ObserveIndexCommit(3*time.Millisecond, nil)
	r.ObserveIndexError("query")

	mfs := scrape(t, r.Handler())
	expect(t, mfs, []series{
		{"pacsd_queue_tasks", l("destination", "REPORTING", "state", "pending"), 12},
		{"pacsd_queue_tasks", l("destination", "REPORTING", "state", "in_flight"), 2},
		{"pacsd_queue_tasks", l("destination", "REPORTING", "state", "failed"), 1},
		{"pacsd_queue_oldest_pending_seconds", l("destination", "REPORTING"), 90},
		{"pacsd_migration_studies", l("source", "OLDPACS", "state", "verified"), 20},
		{"pacsd_migration_studies", l("source", "OLDPACS", "state", "conflict"), 2},
		{"pacsd_migration_instances_total", l("source", "OLDPACS"), 15},
		{"pacsd_migration_bytes_total", l("source", "OLDPACS"), 6 << 20},
		{"pacsd_spool_backlog_objects", l(), 4},
		{"pacsd_spool_backlog_bytes", l(), 2048},
		{"pacsd_index_entities", l("level", "study"), 6},
		{"pacsd_index_entities", l("level", "instance"), 40},
		{"pacsd_stored_instances_total", l("source", "stow", "calling_ae", "none"), 1},
		{"pacsd_storage_operation_duration_seconds", l("backend", "s3", "operation", "put"), 2},
		{"pacsd_storage_operation_duration_seconds", l("backend", "file", "operation", "get"), 1},
		{"pacsd_storage_errors_total", l("backend", "s3", "operation", "put"), 1},
		{"pacsd_storage_errors_total", l("backend", "s3", "operation", "delete"), 1},
		{"pacsd_index_operation_duration_seconds", l("operation", "commit"), 1},
		{"pacsd_index_errors_total", l("operation", "query"), 1},
	})
	for _, m := range mfs["pacsd_queue_tasks"].GetMetric() {
		for _, lp := range m.Label {
			if lp.GetValue() == "GONE" {
				t.Errorf("a removed destination is still reported: %v", m.Label)
			}
		}
	}
}

// A nil Registry counts nothing and breaks nothing, so that a component
// given none needs no check.
func TestNilRegistry(t *testing.T) {
	var r *Registry
	r.ObserveAssociation("X", true)
	r.AssociationClosed()
	r.ObserveCStore("X", 0, 0, 0)
	r.ObserveHTTP("/", "GET", 200, 0)
	r.SetQueue("X", QueueState{})
	r.SetMigration("X", MigrationState{})
	r.SetSpoolBacklog(0, 0)
	r.ObserveStoragePut("s3", 0, nil)
	r.ObserveIndexCommit(0, nil)
	ok := http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {})
	if h := r.Middleware(ok); h == nil {
		t.Error("Middleware of a nil registry is nil")
	}
	if c := r.Conn(nopConn{}, "dimse"); c == nil {
		t.Error("Conn of a nil registry is nil")
	}
	rec := httptest.NewRecorder()
	r.Handler().ServeHTTP(rec, httptest.NewRequest("GET", "/metrics", nil))
	if rec.Code != http.StatusNotFound {
		t.Errorf("a nil registry's handler answers %d", rec.Code)
	}
}

func TestRuntimeCollectors(t *testing.T) {
	mfs := scrape(t, New(Config{Runtime: true}).Handler())
	if mfs["go_goroutines"] == nil || mfs["process_open_fds"] == nil {
		t.Errorf("Runtime: no go_goroutines or process_open_fds")
	}
}

type nopConn struct{ net.Conn }

func (nopConn) Read(b []byte) (int, error)  { return len(b), nil }
func (nopConn) Write(b []byte) (int, error) { return len(b), nil }
