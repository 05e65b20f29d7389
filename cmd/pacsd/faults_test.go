package main

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"net/http/httputil"
	neturl "net/url"
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/pacsd/pacsd/dicom/uid"
	"github.com/pacsd/pacsd/dimse"
	"github.com/pacsd/pacsd/index/sqlite"
	"github.com/pacsd/pacsd/internal/dcmgen"
	"github.com/pacsd/pacsd/internal/testpeer"
)

// TestPostgresRestartMidIngest restarts PostgreSQL while a modality
// stores a series: every instance acknowledged with success is indexed
// with its object, every other one got a failure status that tells the
// modality to send it again, and pacsd stores again once the database is
// back, without being restarted.
func TestPostgresRestartMidIngest(t *testing.T) {
	testpeer.Need(t, "postgres")
	pg := testpeer.StartPostgresT(t)
	data := t.TempDir()
	p := startPacsd(t, data, "--index", pg.NewDatabaseT(t))
	a, _ := dial(t, p)
	study, series := dcmgen.UID(), dcmgen.UID()

	var acked, refused []string
	restarted := make(chan error, 1)
	for i := range 400 {
		if i == 40 {
			go func() { restarted <- pg.Restart(context.Background()) }()
		}
		sop := fmt.Sprintf("%s.%d", series, i+1)
		st, err := storeCT(t, a, study, series, sop)
		var se *dimse.StatusError
		switch {
		case err == nil && st.IsSuccess():
			acked = append(acked, sop)
		case errors.As(err, &se) && se.Status&0xFF00 == 0xA700:
			refused = append(refused, sop)
		default:
			t.Fatalf("instance %d: status %v, %v; want success or 0xA7xx", i+1, st, err)
		}
	}
	if err := <-restarted; err != nil {
		t.Fatalf("restart PostgreSQL: %v", err)
	}
	t.Logf("%d acknowledged, %d refused with 0xA7xx while PostgreSQL restarted", len(acked), len(refused))
	if len(refused) == 0 {
		t.Log("no store fell into the restart; the check below still holds")
	}
	// After the restart, stores succeed again on the same association.
	sop := series + ".9999"
	if st, err := storeCT(t, a, study, series, sop); err != nil || !st.IsSuccess() {
		t.Fatalf("store after the restart: %v %v", st, err)
	}
	acked = append(acked, sop)
	if err := a.Release(t.Context()); err != nil {
		t.Errorf("release: %v", err)
	}

	// Every acknowledged instance is indexed, with its object.
	found := indexedSOPs(t, p, study)
	for _, sop := range acked {
		if !found[sop] {
			t.Errorf("%s was acknowledged but is not indexed", sop)
		}
	}
	for _, sop := range acked[:min(len(acked), 20)] {
		url := "http://" + p.httpAddr + "/dicom-web/studies/" + study + "/series/" + series + "/instances/" + sop
		if obj := wadoObject(t, url); len(obj) < 132 {
			t.Errorf("%s: object of %d bytes", sop, len(obj))
		}
	}
}

// TestS3OutageDuringIngest stops the S3 server in the middle of a
// 500-instance ingest and starts it again. With ack=spool every instance
// is acknowledged and reaches the bucket once the spool drains; with
// ack=direct the instances sent during the outage are refused with 0xA7xx
// and the others acknowledged. Either way every acknowledged instance is
// indexed and in the bucket, and pacsd verify finds no problem.
func TestS3OutageDuringIngest(t *testing.T) {
	for _, ack := range []string{"spool", "direct"} {
		t.Run(ack, func(t *testing.T) {
			a := newS3Archive(t)
			data := t.TempDir()
			url := a.url("ack="+ack, "max_retries=2")
			p := startPacsd(t, data, "--storage", url)
			assoc, _ := dial(t, p)
			study, series := dcmgen.UID(), dcmgen.UID()
			var acked, refused []string
			down := false
			for i := range 500 {
				switch {
				case i == 100:
					if err := a.srv.Stop(); err != nil {
						t.Fatal(err)
					}
					down = true
				case down && (ack == "direct" && len(refused) >= 5 || ack == "spool" && i == 300):
					if err := a.srv.Restart(t.Context()); err != nil {
						t.Fatal(err)
					}
					down = false
				}
				sop := fmt.Sprintf("%s.%d", series, i+1)
				st, err := storeCT(t, assoc, study, series, sop)
				var se *dimse.StatusError
				switch {
				case err == nil && st.IsSuccess():
					acked = append(acked, sop)
				case ack == "direct" && errors.As(err, &se) && se.Status&0xFF00 == 0xA700:
					refused = append(refused, sop)
				default:
					t.Fatalf("instance %d (S3 down: %v): status %v, %v", i+1, down, st, err)
				}
			}
			if err := assoc.Release(t.Context()); err != nil {
				t.Errorf("release: %v", err)
			}
			t.Logf("ack=%s: %d acknowledged, %d refused", ack, len(acked), len(refused))
			if ack == "direct" && len(refused) == 0 {
				t.Errorf("no instance refused while S3 was down")
			}
			if ack == "spool" {
				spoolDir := filepath.Join(data, "spool")
				for deadline := time.Now().Add(2 * time.Minute); countFiles(t, spoolDir) > 0 && time.Now().Before(deadline); {
					time.Sleep(100 * time.Millisecond)
				}
				if n := countFiles(t, spoolDir); n > 0 {
					t.Fatalf("%d objects still in the spool", n)
				}
			}
			p.stop()

			db, err := sqlite.Open(t.Context(), filepath.Join(data, "index.db"))
			if err != nil {
				t.Fatal(err)
			}
			defer db.Close()
			bucket := a.store(t)
			for _, sop := range acked {
				in, err := db.Instance(t.Context(), sop)
				if err != nil {
					t.Errorf("%s acknowledged but not indexed: %v", sop, err)
					continue
				}
				if info, err := bucket.Stat(t.Context(), in.Key); err != nil || info.Size != in.Size {
					t.Errorf("%s acknowledged but not in the bucket: %+v %v", sop, info, err)
				}
			}
			stdout, stderr, err := pacsd(t, "verify", "--data", data, "--storage", url)
			if err != nil {
				t.Errorf("pacsd verify: %v\n%s%s", err, stdout, stderr)
			}
		})
	}
}

// faultyS3 is a proxy in front of an S3 server that can answer 503 to
// everything, delay every request, or take requests and never answer, as
// an overloaded, failing or hung object store does.
type faultyS3 struct {
	mode  atomic.Int32 // 0 pass, 1 answer 503, 2 delay, 3 hang
	delay time.Duration
	hung  chan struct{} // closed when the test ends, to end hung requests
	srv   *httptest.Server
}

func newFaultyS3(t *testing.T, target string) *faultyS3 {
	u, err := neturl.Parse(target)
	if err != nil {
		t.Fatal(err)
	}
	f := &faultyS3{delay: 300 * time.Millisecond, hung: make(chan struct{})}
	proxy := httputil.NewSingleHostReverseProxy(u) // keeps the Host header the client signed
	f.srv = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		switch f.mode.Load() {
		case 1:
			w.Header().Set("Content-Type", "application/xml")
			w.WriteHeader(http.StatusServiceUnavailable)
			io.WriteString(w, `<?xml version="1.0" encoding="UTF-8"?><Error><Code>ServiceUnavailable</Code><Message>injected</Message></Error>`)
			return
		case 2:
			time.Sleep(f.delay)
		case 3:
			// Until the test ends: the body is left unread, so the
			// server cannot see the client give up.
			<-f.hung
			return
		}
		proxy.ServeHTTP(w, r)
	}))
	t.Cleanup(func() {
		close(f.hung)
		f.srv.Close()
	})
	return f
}

// TestS3ServerErrors puts a proxy between pacsd and MinIO that answers
// 503 for a while, then is slow, then hangs: C-STOREs fail with 0xA7xx
// while it answers 503 or hangs (within the stall timeout), succeed again
// when it recovers, and succeed, slower, when it is slow; no index row is
// written for a refused instance. While it answers 503 or hangs, WADO-RS
// and STOW-RS answer 503 with Retry-After.
func TestS3ServerErrors(t *testing.T) {
	a := newS3Archive(t)
	proxy := newFaultyS3(t, a.srv.URL)
	endpoint := strings.TrimPrefix(proxy.srv.URL, "http://")
	url := fmt.Sprintf("s3://%s?endpoint=%s&secure=false&region=%s&max_retries=2&stall_timeout=1s", a.bucket, endpoint, a.srv.Region)
	data := t.TempDir()
	p := startPacsd(t, data, "--storage", url)
	assoc, _ := dial(t, p)
	study, series := dcmgen.UID(), dcmgen.UID()
	sop := func(i int) string { return fmt.Sprintf("%s.%d", series, i) }
	store := func(i int) (dimse.Status, error) {
		return storeCT(t, assoc, study, series, sop(i))
	}
	if st, err := store(1); err != nil || !st.IsSuccess() {
		t.Fatalf("store before the faults: %v %v", st, err)
	}
	proxy.mode.Store(1)
	start := time.Now()
	st, err := store(2)
	var se *dimse.StatusError
	if !errors.As(err, &se) || se.Status&0xFF00 != 0xA700 {
		t.Fatalf("store while S3 answers 503: %v %v, want 0xA7xx", st, err)
	}
	t.Logf("refused after %v: %v", time.Since(start).Round(time.Millisecond), err)
	checkWebUnavailable(t, p, "S3 answers 503", study, series, sop(1), series+".901")
	proxy.mode.Store(2)
	start = time.Now()
	if st, err := store(3); err != nil || !st.IsSuccess() {
		t.Fatalf("store while S3 is slow: %v %v", st, err)
	}
	t.Logf("stored through a slow S3 in %v", time.Since(start).Round(time.Millisecond))
	proxy.mode.Store(3)
	start = time.Now()
	st, err = store(4)
	if !errors.As(err, &se) || se.Status&0xFF00 != 0xA700 {
		t.Fatalf("store while S3 hangs: %v %v, want 0xA7xx", st, err)
	}
	// Two attempts of a one-second stall, and a margin for a loaded
	// machine; without the stall timeout it would wait for minutes.
	if took := time.Since(start); took > 10*time.Second {
		t.Errorf("store while S3 hangs took %v to be refused", took)
	}
	t.Logf("refused after %v while S3 hangs: %v", time.Since(start).Round(time.Millisecond), err)
	checkWebUnavailable(t, p, "S3 hangs", study, series, sop(1), series+".902")
	proxy.mode.Store(0)
	if st, err := store(5); err != nil || !st.IsSuccess() {
		t.Fatalf("store after the faults: %v %v", st, err)
	}
	assoc.Release(t.Context())
	found := indexedSOPs(t, p, study)
	for i, want := range []bool{true, false, true, false, true} {
		if found[sop(i+1)] != want {
			t.Errorf("%s indexed: %v, want %v", sop(i+1), found[sop(i+1)], want)
		}
	}
	for _, s := range []string{series + ".901", series + ".902"} {
		if found[s] {
			t.Errorf("%s, refused by STOW-RS, is indexed", s)
		}
	}
}

// checkWebUnavailable checks, while S3 cannot serve, that a WADO-RS
// retrieve of the stored instance sop and a STOW-RS of a new instance
// (newSOP) are answered 503 with Retry-After, as a client that may try
// again later needs.
func checkWebUnavailable(t *testing.T, p *instance, when, study, series, sop, newSOP string) {
	t.Helper()
	check := func(what string, resp *http.Response, err error) {
		t.Helper()
		if err != nil {
			t.Fatalf("%s while %s: %v", what, when, err)
		}
		body, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode != http.StatusServiceUnavailable || resp.Header.Get("Retry-After") == "" {
			t.Errorf("%s while %s: %s, Retry-After %q, want 503 with Retry-After: %s",
				what, when, resp.Status, resp.Header.Get("Retry-After"), bytes.TrimSpace(body))
		}
	}
	base := "http://" + p.httpAddr + "/dicom-web/studies/" + study
	req, _ := http.NewRequestWithContext(t.Context(), "GET", base+"/series/"+series+"/instances/"+sop, nil)
	req.Header.Set("Accept", `multipart/related; type="application/dicom"; transfer-syntax=*`)
	resp, err := http.DefaultClient.Do(req)
	check("WADO-RS", resp, err)

	var b bytes.Buffer
	in := &dcmgen.Instance{Study: dcmgen.Study{UID: study}, Series: dcmgen.Series{UID: series, Modality: "CT"}, SOPInstanceUID: newSOP, Rows: 16, Columns: 16}
	if _, err := dcmgen.WriteFile(&b, in); err != nil {
		t.Fatal(err)
	}
	req, _ = http.NewRequestWithContext(t.Context(), "POST", base, &b)
	req.Header.Set("Content-Type", "application/dicom")
	resp, err = http.DefaultClient.Do(req)
	check("STOW-RS", resp, err)
}

// TestSpoolDiskFull fills the spool's disk while S3 is away: pacsd, with
// its spool on a 2 MiB filesystem of its own (a tmpfs mounted in a mount
// namespace of the pacsd process, so that nothing else sees it), refuses
// what it cannot spool with 0xA7xx and stores nothing of it, keeps
// serving, and takes instances in again, without a restart, once S3 is
// back and the spool has drained.
func TestSpoolDiskFull(t *testing.T) {
	testpeer.Need(t, "unshare")
	a := newS3Archive(t)
	data := t.TempDir()
	spoolDir := filepath.Join(data, "spool")
	if err := os.MkdirAll(spoolDir, 0o755); err != nil {
		t.Fatal(err)
	}
	// unshare makes a user namespace in which the test's user is root,
	// with a mount namespace of its own, so that mounting needs no
	// privilege and the mount ends with the process.
	wrap := []string{"unshare", "--user", "--map-root-user", "--mount", "sh", "-c",
		`mount -t tmpfs -o size=2m tmpfs "$0" && exec "$@"`, spoolDir}
	p := startPacsdIn(t, wrap, data, "--storage", a.url("ack=spool", "spool_dir="+spoolDir))
	if err := a.srv.Stop(); err != nil {
		t.Fatal(err)
	}
	assoc, _ := dial(t, p)
	study, series := dcmgen.UID(), dcmgen.UID()
	store := func(i int) (dimse.Status, error) {
		sop := fmt.Sprintf("%s.%d", series, i)
		return storeCT(t, assoc, study, series, sop)
	}
	var acked []int
	refused := -1
	for i := 1; i <= 1000 && refused < 0; i++ {
		st, err := store(i)
		var se *dimse.StatusError
		switch {
		case err == nil && st.IsSuccess():
			acked = append(acked, i)
		case errors.As(err, &se) && se.Status&0xFF00 == 0xA700:
			refused = i
			t.Logf("instance %d refused with the spool full: %v", i, err)
		default:
			t.Fatalf("instance %d: %v %v", i, st, err)
		}
	}
	if refused < 0 || len(acked) == 0 {
		t.Fatalf("%d acknowledged and none refused: the spool never filled", len(acked))
	}
	if st, err := store(refused); err == nil {
		t.Fatalf("a store into the full spool succeeded: %v", st)
	}
	if code, err := httpGet("http://" + p.httpAddr + "/healthz"); err != nil || code != 200 {
		t.Errorf("/healthz with the spool full: %d %v", code, err)
	}

	// S3 returns; the spool drains and makes room; the refused instance
	// goes in on the same association.
	if err := a.srv.Restart(t.Context()); err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(2 * time.Minute)
	for {
		st, err := store(refused)
		if err == nil && st.IsSuccess() {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("the refused instance is still refused two minutes after S3 came back: %v %v", st, err)
		}
		time.Sleep(200 * time.Millisecond)
	}
	acked = append(acked, refused)
	assoc.Release(t.Context())
	found := indexedSOPs(t, p, study)
	if len(found) != len(acked) {
		t.Errorf("%d instances indexed, %d acknowledged", len(found), len(acked))
	}
	for _, i := range acked {
		if sop := fmt.Sprintf("%s.%d", series, i); !found[sop] {
			t.Errorf("%s acknowledged but not indexed", sop)
		}
	}
}

// storeCT sends a small CT instance of the given UIDs on a and returns
// the status, as a modality would.
func storeCT(t *testing.T, a *dimse.Association, study, series, sop string) (dimse.Status, error) {
	t.Helper()
	return a.Store(t.Context(), &dimse.StoreRequest{SOPClassUID: uid.CTImageStorage, SOPInstanceUID: sop,
		TransferSyntaxUID: uid.ExplicitVRLittleEndian, Dataset: bytes.NewReader(dataset(t, study, series, sop))})
}

// indexedSOPs returns the SOP Instance UIDs that a QIDO-RS search of the
// study's instances on p finds.
func indexedSOPs(t *testing.T, p *instance, study string) map[string]bool {
	t.Helper()
	found := map[string]bool{}
	for _, m := range qido(t, p, "/studies/"+study+"/instances") {
		e, _ := m["00080018"].(map[string]any)
		v, _ := e["Value"].([]any)
		if len(v) == 1 {
			found[v[0].(string)] = true
		}
	}
	return found
}
