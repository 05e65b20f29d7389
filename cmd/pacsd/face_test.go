package main

import (
	"archive/zip"
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"

	"github.com/pacsd/pacsd/api"
	"github.com/pacsd/pacsd/internal/testpeer"
)

// getJSON GETs url and decodes its JSON answer into v, returning the
// status.
func getJSON(t *testing.T, url string, v any) int {
	t.Helper()
	resp, err := (&http.Client{Timeout: 40 * time.Second}).Get(url)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	if ct := resp.Header.Get("Content-Type"); !strings.HasPrefix(ct, "application/json") {
		t.Errorf("GET %s: Content-Type %q", url, ct)
	}
	if err := json.NewDecoder(resp.Body).Decode(v); err != nil {
		t.Fatalf("GET %s: %v", url, err)
	}
	return resp.StatusCode
}

// scrape reads pacsd's metrics: each sample's value by its name and
// labels, written name{a="x",b="y"} with the labels in order.
func scrape(t *testing.T, base string) map[string]float64 {
	t.Helper()
	resp, err := http.Get(base + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	parser := expfmt.NewTextParser(model.UTF8Validation)
	families, err := parser.TextToMetricFamilies(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	out := map[string]float64{}
	for name, f := range families {
		if !strings.HasPrefix(name, "pacsd_") {
			t.Errorf("metric %s lacks the pacsd_ prefix", name)
		}
		for _, m := range f.Metric {
			var labels []string
			for _, l := range m.Label {
				labels = append(labels, fmt.Sprintf("%s=%q", l.GetName(), l.GetValue()))
			}
			key := name + "{" + strings.Join(labels, ",") + "}"
			switch {
			case m.Counter != nil:
				out[key] = m.Counter.GetValue()
			case m.Gauge != nil:
				out[key] = m.Gauge.GetValue()
			case m.Histogram != nil:
				out[key+"_count"] = float64(m.Histogram.GetSampleCount())
			}
		}
	}
	return out
}

// TestFace stores a series with storescu into a running pacsd and checks
// what its staff see of it: the metrics, the health checks, the change
// feed, the system, the study as a ZIP, the web interface, pacsd status
// and the conformance statement.
func TestFace(t *testing.T) {
	testpeer.Need(t, "storescu", "echoscu")
	data := t.TempDir()
	p := startPacsd(t, data, "--allow-ae", "MODALITY@127.0.0.1", "--ohif-url", "https://viewer.example")
	base := "http://" + p.httpAddr
	dir, files := writeSeries(t, 3)
	ctx := t.Context()
	if _, stderr, err := testpeer.Run(ctx, "storescu", "-aet", "MODALITY", "-aec", "PACSD", "+sd", p.host(), p.port(), dir); err != nil {
		t.Fatalf("storescu: %v\n%s", err, stderr)
	}
	if _, stderr, err := testpeer.Run(ctx, "echoscu", "-aet", "NOBODY", "-aec", "PACSD", p.host(), p.port()); err == nil {
		t.Fatalf("echoscu from an AE not allowed was accepted\n%s", stderr)
	}
	study := files[0].StudyInstanceUID

	t.Run("metrics", func(t *testing.T) {
		if status, err := httpGet(base + "/dicom-web/studies?PatientName=Bucket*"); err != nil || status != 200 {
			t.Fatalf("QIDO-RS: %d %v", status, err)
		}
		m := scrape(t, base)
		for key, want := range map[string]float64{
			`pacsd_dimse_associations_total{calling_ae="MODALITY",result="accepted"}`:              1,
			`pacsd_dimse_associations_total{calling_ae="other",result="rejected"}`:                 1,
			`pacsd_dimse_associations_active{}`:                                                    0,
			`pacsd_dimse_operations_total{operation="C-STORE",status="0x0000"}`:                    3,
			`pacsd_dimse_operation_duration_seconds{operation="C-STORE"}_count`:                    3,
			`pacsd_stored_instances_total{calling_ae="MODALITY",source="dimse"}`:                   3,
			`pacsd_storage_operation_duration_seconds{backend="file",operation="put"}_count`:       3,
			`pacsd_index_operation_duration_seconds{operation="commit"}_count`:                     3,
			`pacsd_http_requests_total{method="GET",route="/dicom-web/studies",status="200"}`:      1,
			`pacsd_http_request_duration_seconds{route="/dicom-web/studies",service="qido"}_count`: 1,
		} {
			if got, ok := m[key]; !ok || got != want {
				t.Errorf("%s = %v (present %v), want %v", key, got, ok, want)
			}
		}
		var size int64
		for _, f := range files {
			size += f.Size
		}
		if got := m[`pacsd_received_bytes_total{protocol="dimse"}`]; got < float64(size) {
			t.Errorf("DIMSE bytes received %v, want at least the files' %d", got, size)
		}
		if got := m[`pacsd_stored_bytes_total{source="dimse"}`]; got < float64(size)*0.9 {
			t.Errorf("bytes stored %v, want about %d", got, size)
		}
		// The scrape before counts under its route.
		if got := scrape(t, base)[`pacsd_http_requests_total{method="GET",route="/metrics",status="200"}`]; got < 1 {
			t.Errorf("the scrape was not counted: %v", got)
		}
	})

	t.Run("health", func(t *testing.T) {
		var h map[string]string
		if s := getJSON(t, base+"/healthz", &h); s != 200 || h["status"] != "ok" {
			t.Errorf("/healthz: %d %v", s, h)
		}
		var r struct {
			Status string
			Checks map[string]struct{ Status string }
		}
		if s := getJSON(t, base+"/readyz", &r); s != 200 || r.Status != "ready" || r.Checks["storage"].Status != "ok" || r.Checks["index"].Status != "ok" {
			t.Errorf("/readyz: %d %+v", s, r)
		}
	})

	t.Run("changes", func(t *testing.T) {
		var page api.ChangePage
		getJSON(t, base+"/api/changes?after=0", &page)
		if len(page.Changes) != 3 || page.LastSeq != 3 {
			t.Fatalf("changes %+v", page)
		}
		for i, c := range page.Changes {
			if c.Seq != int64(i+1) || c.Type != "created" || c.Study != study || c.Time.IsZero() {
				t.Errorf("change %d: %+v", i, c)
			}
		}
		// A long poll ends at a change.
		done := make(chan api.ChangePage, 1)
		go func() {
			var next api.ChangePage
			getJSON(t, base+"/api/changes?after=3&wait=30s", &next)
			done <- next
		}()
		time.Sleep(100 * time.Millisecond)
		more, _ := writeSeriesIn(t, 1, 4<<10, "Later^Larry")
		if _, stderr, err := testpeer.Run(ctx, "storescu", "-aet", "MODALITY", "-aec", "PACSD", "+sd", p.host(), p.port(), more); err != nil {
			t.Fatalf("storescu: %v\n%s", err, stderr)
		}
		select {
		case next := <-done:
			if len(next.Changes) != 1 || next.Changes[0].Seq != 4 {
				t.Errorf("after the wait: %+v", next)
			}
		case <-time.After(35 * time.Second):
			t.Fatal("the long poll did not end")
		}
	})

	t.Run("system", func(t *testing.T) {
		var sys api.System
		getJSON(t, base+"/api/system", &sys)
		if sys.AETitle != "PACSD" || sys.DIMSEAddr != p.dimseAddr || sys.HTTPAddr != p.httpAddr ||
			sys.Index.Kind != "sqlite" || sys.Storage.Kind != "file" || sys.Index.Counts.Instances != 4 ||
			sys.Associations.Max != 64 || sys.Storage.FreeBytes == nil || sys.Spool != nil {
			t.Errorf("system %+v", sys)
		}
	})

	t.Run("archive", func(t *testing.T) {
		resp, err := http.Get(base + "/api/studies/" + study + "/archive.zip")
		if err != nil {
			t.Fatal(err)
		}
		b, err := io.ReadAll(resp.Body)
		resp.Body.Close()
		if err != nil || resp.StatusCode != 200 {
			t.Fatalf("%s %v", resp.Status, err)
		}
		zr, err := zip.NewReader(bytes.NewReader(b), int64(len(b)))
		if err != nil {
			t.Fatal(err)
		}
		a := openArchive(t, data)
		if len(zr.File) != 3 {
			t.Fatalf("%d files", len(zr.File))
		}
		for _, f := range zr.File {
			sop := strings.TrimSuffix(f.Name[strings.LastIndexByte(f.Name, '/')+1:], ".dcm")
			rc, _ := f.Open()
			body, err := io.ReadAll(rc)
			rc.Close()
			row, rerr := a.db.Instance(ctx, sop)
			if err != nil || rerr != nil {
				t.Fatalf("%s: %v %v", f.Name, err, rerr)
			}
			sum := sha256.Sum256(body)
			if f.Name != study+"/"+row.SeriesInstanceUID+"/"+sop+".dcm" || hex.EncodeToString(sum[:]) != row.SHA256 {
				t.Errorf("%s differs from the object stored", f.Name)
			}
		}
	})

	t.Run("ui", func(t *testing.T) {
		resp, err := http.Get(base + "/")
		if err != nil {
			t.Fatal(err)
		}
		b, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode != 200 || !strings.Contains(string(b), "<html") || !strings.Contains(resp.Header.Get("Content-Security-Policy"), "script-src 'self'") {
			t.Errorf("GET /: %s %.200s", resp.Status, b)
		}
		var cfg struct {
			OHIFURL   string `json:"ohif_url"`
			Principal struct{ Scopes []string }
		}
		getJSON(t, base+"/api/ui-config", &cfg)
		if cfg.OHIFURL != "https://viewer.example" || len(cfg.Principal.Scopes) != 4 {
			t.Errorf("ui-config %+v", cfg)
		}
	})

	t.Run("status", func(t *testing.T) {
		var out bytes.Buffer
		if err := run(ctx, []string{"status", "--http-addr", p.httpAddr}, func(string) string { return "" }, &out, &out); err != nil {
			t.Fatalf("pacsd status: %v\n%s", err, out.String())
		}
		for _, want := range []string{", ready, up ", "associations: 0 open (most 64)", "4 instances", "queue: no destinations"} {
			if !strings.Contains(out.String(), want) {
				t.Errorf("pacsd status lacks %q:\n%s", want, out.String())
			}
		}
	})

	t.Run("conformance", func(t *testing.T) {
		var out bytes.Buffer
		if err := run(ctx, []string{"conformance", "--format", "html", "--ae-title", "ARCHIVE1"}, func(string) string { return "" }, &out, &out); err != nil {
			t.Fatal(err)
		}
		if !strings.Contains(out.String(), "<html") || !strings.Contains(out.String(), "ARCHIVE1") {
			t.Errorf("pacsd conformance --format html: %.300s", out.String())
		}
	})
}

// TestFaceSignedIn runs pacsd with machine tokens: the web interface's
// configuration names the principal of a token, /metrics and /api want
// one, and a study downloads once through a ticket, without one.
func TestFaceSignedIn(t *testing.T) {
	testpeer.Need(t, "storescu")
	tokens := filepath.Join(t.TempDir(), "tokens")
	reader := strings.TrimSpace(createToken(t, tokens, "prometheus", "read"))
	p := startPacsd(t, t.TempDir(), "--http-auth", "token", "--token-file", tokens)
	base := "http://" + p.httpAddr
	dir, files := writeSeries(t, 2)
	if out, err := p.dcmtk("storescu", "+sd", dir); err != nil {
		t.Fatalf("storescu: %v\n%s", err, out)
	}
	study := files[0].StudyInstanceUID

	type principal struct {
		Name   string
		Scopes []string
	}
	var cfg struct{ Principal *principal }
	if resp, body := request(t, "GET", base+"/api/ui-config", "", nil); resp.StatusCode != 200 || json.Unmarshal([]byte(body), &cfg) != nil || cfg.Principal != nil {
		t.Errorf("ui-config without a token: %s %s", resp.Status, body)
	}
	if resp, body := request(t, "GET", base+"/api/ui-config", reader, nil); resp.StatusCode != 200 || json.Unmarshal([]byte(body), &cfg) != nil ||
		cfg.Principal == nil || cfg.Principal.Name != "prometheus" || strings.Join(cfg.Principal.Scopes, ",") != "read" {
		t.Errorf("ui-config with a read token: %s %s", resp.Status, body)
	}
	for _, path := range []string{"/metrics", "/api/changes", "/api/system", "/api/studies/" + study + "/archive.zip"} {
		if resp, _ := request(t, "GET", base+path, "", nil); resp.StatusCode != 401 {
			t.Errorf("GET %s without a token: %s", path, resp.Status)
		}
		if resp, _ := request(t, "GET", base+path, reader, nil); resp.StatusCode != 200 {
			t.Errorf("GET %s with a read token: %s", path, resp.Status)
		}
	}
	for _, path := range []string{"/", "/healthz", "/readyz"} {
		if resp, _ := request(t, "GET", base+path, "", nil); resp.StatusCode != 200 {
			t.Errorf("GET %s without a token: %s", path, resp.Status)
		}
	}

	resp, body := request(t, "POST", base+"/api/studies/"+study+"/archive-ticket", reader, nil)
	var ticket struct{ URL string }
	if resp.StatusCode != 200 || json.Unmarshal([]byte(body), &ticket) != nil || ticket.URL == "" {
		t.Fatalf("archive-ticket: %s %s", resp.Status, body)
	}
	resp, body = request(t, "GET", base+ticket.URL, "", nil)
	if resp.StatusCode != 200 {
		t.Fatalf("download with the ticket: %s %s", resp.Status, body)
	}
	if zr, err := zip.NewReader(strings.NewReader(body), int64(len(body))); err != nil || len(zr.File) != 2 {
		t.Errorf("download with the ticket is not the study's ZIP: %v", err)
	}
	if resp, _ := request(t, "GET", base+ticket.URL, "", nil); resp.StatusCode != 401 {
		t.Errorf("the ticket used again: %s", resp.Status)
	}
}
