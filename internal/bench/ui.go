package main

// The study list of pacsd's web interface over an archive of many
// studies: -find-instances single-instance studies (100,000 by default)
// are loaded into a fresh pacsd by -find-loaders storescu associations,
// the page (package ui) is served in front of it as `pacsd serve` serves
// it, and Debian's Chromium, driven by internal/webtest/scripts/
// ui-bench.mjs, opens the study list on a few searches and submits each
// search again from the form, -web-reps times (at most 30), the searches
// alternating. The report gives, per search, the median and 90th
// percentile of the time from submitting the search until its results
// are painted (the target: 300 ms at the median), and of the time
// from opening the page until its first list is painted.

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log"
	"math/rand/v2"
	"net"
	"net/http"
	"net/http/httputil"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"text/tabwriter"
	"time"

	"github.com/pacsd/pacsd/internal/dcmgen"
	"github.com/pacsd/pacsd/internal/testpeer"
	"github.com/pacsd/pacsd/ui"
)

// targetListPaint is the target for the study list.
const targetListPaint = 300 * time.Millisecond

// uiSearch is one search of the measurement, as the hash of the page.
type uiSearch struct {
	Name string `json:"name"`
	Hash string `json:"hash"`
}

// measureUI runs the measurement and prints its section of the report to
// out. It is left out with -skip-web.
func measureUI(ctx context.Context, o options, bin, tmp string, out io.Writer, logf func(string, ...any)) (err error) {
	if o.skipWeb {
		return nil
	}
	chromium, err := testpeer.Lookup("chromium")
	if err != nil {
		return fmt.Errorf("study list: %w (make deps installs it)", err)
	}
	scripts, err := filepath.Abs(filepath.Join("internal", "webtest"))
	if err != nil {
		return err
	}
	if _, err := os.Stat(filepath.Join(scripts, "node_modules", "playwright-core")); err != nil {
		return fmt.Errorf("study list: playwright-core is not installed in internal/webtest (make deps runs npm ci there): %w", err)
	}
	n := o.findInstances
	dir := filepath.Join(tmp, "ui")
	defer os.RemoveAll(dir)
	logf("study list: writing %d studies of one instance", n)
	shards, patients, err := writeStudyList(ctx, filepath.Join(dir, "corpus"), n, o.findLoaders)
	if err != nil {
		return err
	}
	if err := os.MkdirAll(filepath.Join(dir, "pacsd"), 0o755); err != nil {
		return err
	}
	s, err := startPacsd(ctx, bin, filepath.Join(dir, "pacsd"), nil)
	if err != nil {
		return err
	}
	defer func() {
		if serr := s.stop(); serr != nil && err == nil && ctx.Err() == nil {
			err = serr
		}
	}()
	logf("study list: loading them with %d storescu associations", len(shards))
	t := time.Now()
	var wg sync.WaitGroup
	errs := make([]error, len(shards))
	for i, shard := range shards {
		wg.Go(func() { _, errs[i] = send(ctx, s, true, shard) })
	}
	wg.Wait()
	if err := errors.Join(errs...); err != nil {
		return fmt.Errorf("study list: %w", err)
	}
	if got, err := s.stored(ctx); err != nil || got != n {
		return fmt.Errorf("study list: pacsd holds %d of %d instances (%v); see %s", got, n, err, s.log)
	}
	logf("study list: loaded in %.1f s", time.Since(t).Seconds())
	if err := os.RemoveAll(filepath.Join(dir, "corpus")); err != nil {
		return err
	}

	// The page in front of pacsd, as pacsd serve mounts it.
	target, err := url.Parse(strings.TrimSuffix(s.web, "/dicom-web"))
	if err != nil {
		return err
	}
	page := ui.Handler(ui.Config{Version: "bench"})
	mux := http.NewServeMux()
	mux.Handle("GET /{$}", page)
	mux.Handle("GET /ui/", page)
	mux.Handle("GET "+ui.ConfigPath, page)
	proxy := httputil.NewSingleHostReverseProxy(target)
	// A request the browser gives up on as it moves to the next page is
	// no news.
	proxy.ErrorLog = log.New(io.Discard, "", 0)
	mux.Handle("/", proxy)
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return err
	}
	srv := &http.Server{Handler: mux, ReadHeaderTimeout: 10 * time.Second}
	go srv.Serve(ln)
	defer srv.Close()

	p := patients[len(patients)/2]
	family, _, _ := strings.Cut(p.Name, "^")
	searches := []uiSearch{
		{"first page, no filter", "#/studies"},
		{"PatientName=" + family[:3] + "*", "#/studies?name=" + family[:3]},
		{"PatientID", "#/studies?id=" + p.ID},
		{"StudyDate, one month", "#/studies?date=custom&from=2024-03-01&to=2024-03-31"},
	}
	plan := map[string]any{
		"chromium": chromium, "url": "http://" + ln.Addr().String(),
		"searches": searches, "reps": min(o.webReps, 30),
	}
	b, err := json.Marshal(plan)
	if err != nil {
		return err
	}
	planFile := filepath.Join(dir, "plan.json")
	if err := os.WriteFile(planFile, b, 0o644); err != nil {
		return err
	}
	logf("study list: %d searches × %d in Chromium", len(searches), min(o.webReps, 30))
	cmd := exec.CommandContext(ctx, "node", filepath.Join(scripts, "scripts", "ui-bench.mjs"), planFile)
	cmd.Dir = scripts
	cmd.Stderr = io.Discard
	stdout, err := cmd.Output()
	if err != nil {
		return fmt.Errorf("study list: node ui-bench.mjs: %w", err)
	}
	var res struct {
		Searches map[string]struct {
			Load, Search []float64
			Rows         int
		}
		Errors []string
	}
	if err := json.Unmarshal(stdout, &res); err != nil {
		return fmt.Errorf("study list: node ui-bench.mjs printed no result: %w", err)
	}
	if len(res.Errors) > 0 {
		return fmt.Errorf("study list: %s", strings.Join(res.Errors, "; "))
	}

	fmt.Fprintf(out, "\nStudy list of the web interface, %d studies, Chromium (target: results painted ≤ %d ms after a search, p50)\n",
		n, targetListPaint.Milliseconds())
	tw := tabwriter.NewWriter(out, 0, 0, 2, ' ', tabwriter.AlignRight)
	fmt.Fprintln(tw, "search\trows\tsearch→paint p50 ms\tp90 ms\topen page→list p50 ms\tp90 ms\ttarget\t")
	for _, sc := range searches {
		r := res.Searches[sc.Name]
		slices.Sort(r.Search)
		slices.Sort(r.Load)
		p50 := percentile(r.Search, 50)
		verdict := "met"
		if p50 > float64(targetListPaint.Milliseconds()) {
			verdict = "NOT met"
		}
		fmt.Fprintf(tw, "%s\t%d\t%.0f\t%.0f\t%.0f\t%.0f\t%s\t\n", sc.Name, r.Rows, p50, percentile(r.Search, 90),
			percentile(r.Load, 50), percentile(r.Load, 90), verdict)
	}
	return tw.Flush()
}

// writeStudyList writes n studies of one small CT instance each, for
// about n/2 patients, with dates over 2024, dealt out to shards
// directories; it returns the directories and the patients.
func writeStudyList(ctx context.Context, dir string, n, shards int) ([]string, []dcmgen.Patient, error) {
	rng := rand.New(rand.NewPCG(3, 4))
	patients := make([]dcmgen.Patient, max(1, n/2))
	for i := range patients {
		patients[i] = dcmgen.Patient{
			Name:      familyNames[rng.IntN(len(familyNames))] + "^" + givenNames[rng.IntN(len(givenNames))],
			ID:        fmt.Sprintf("UIP%07d", i+1),
			BirthDate: day("19300101", rng.IntN(80*365)),
			Sex:       []string{"F", "M"}[rng.IntN(2)],
		}
	}
	studies := make([]dcmgen.Instance, n)
	for i := range studies {
		kind := studyKinds[rng.IntN(len(studyKinds))]
		studies[i] = dcmgen.Instance{
			Patient: patients[rng.IntN(len(patients))],
			Study: dcmgen.Study{
				UID: dcmgen.UID(), Date: day("20240101", rng.IntN(366)), Time: fmt.Sprintf("%02d%02d00", 7+rng.IntN(13), rng.IntN(60)),
				AccessionNumber: fmt.Sprintf("UIA%07d", i+1), Description: kind.description,
				ReferringPhysicianName: familyNames[rng.IntN(len(familyNames))] + "^" + givenNames[rng.IntN(len(givenNames))],
			},
			Series:         dcmgen.Series{UID: dcmgen.UID(), Modality: "CT", Number: 1, FrameOfReferenceUID: dcmgen.UID()},
			InstanceNumber: 1,
			Rows:           8,
			Columns:        8,
		}
	}
	dirs := make([]string, shards)
	var wg sync.WaitGroup
	errs := make([]error, shards)
	for s := range shards {
		dirs[s] = filepath.Join(dir, fmt.Sprintf("shard-%d", s+1))
		if err := os.MkdirAll(dirs[s], 0o755); err != nil {
			return nil, nil, err
		}
		wg.Go(func() {
			for i := s; i < n; i += shards {
				if errs[s] = ctx.Err(); errs[s] != nil {
					return
				}
				if _, errs[s] = dcmgen.Create(filepath.Join(dirs[s], fmt.Sprintf("%07d.dcm", i+1)), &studies[i]); errs[s] != nil {
					return
				}
			}
		})
	}
	wg.Wait()
	return dirs, patients, errors.Join(errs...)
}
