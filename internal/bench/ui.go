package main

// The study list of pacsd's web interface over an archive of many
// studies: -find-instances single-instance studies (100,000 by default)
// are loaded into a fresh pacsd by -find-loaders storescu associations,
// pacsd serve serves the page (package ui), and Debian's Chromium, driven by internal/webtest/scripts/
// ui-bench.mjs, opens the study list on a few searches and submits each
// search again from the form, -web-reps times (at most 30), the searches
// alternating. The report gives, per search, the median and 90th
// percentile of the time from submitting the search until its results
// are painted (the target: 300 ms at the median), and of the time
// from opening the page until its first list is painted; then of the
// QIDO-RS request the page sends for each search, alone. On the same
// pacsd, GET /metrics is then timed (the target: 10 ms), one
// scrape after another and then more than a second apart, when each
// scrape reads the queue and the index again.

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"net/http"
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
)

// targetListPaint is the target for the study list.
const targetListPaint = 300 * time.Millisecond

// uiSearch is one search of the measurement, as the hash of the page,
// and as the QIDO-RS query the page sends for it.
type uiSearch struct {
	Name string `json:"name"`
	Hash string `json:"hash"`
	Qido string `json:"-"`
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

	// pacsd serve serves the page itself.
	origin := strings.TrimSuffix(s.web, "/dicom-web")

	p := patients[len(patients)/2]
	family, _, _ := strings.Cut(p.Name, "^")
	// The page asks for one match more than its 25 rows, to know
	// whether there is a next page.
	searches := []uiSearch{
		{"first page, no filter", "#/studies", "limit=26"},
		{"PatientName=" + family[:3] + "*", "#/studies?name=" + family[:3], "PatientName=" + family[:3] + "*&limit=26"},
		{"PatientID", "#/studies?id=" + p.ID, "PatientID=" + p.ID + "&limit=26"},
		{"StudyDate, one month", "#/studies?date=custom&from=2024-03-01&to=2024-03-31", "StudyDate=20240301-20240331&limit=26"},
		{"StudyDate, 12 months", "#/studies?date=custom&from=2024-01-01&to=2024-12-31", "StudyDate=20240101-20241231&limit=26"},
		{"StudyDate, one day", "#/studies?date=custom&from=2024-03-15&to=2024-03-15", "StudyDate=20240315&limit=26"},
		{"StudyDate, one month, CT", "#/studies?date=custom&from=2024-03-01&to=2024-03-31&modality=CT", "StudyDate=20240301-20240331&ModalitiesInStudy=CT&limit=26"},
	}
	plan := map[string]any{
		"chromium": chromium, "url": origin,
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
	// The same searches over QIDO-RS alone, without the browser: what
	// of the time above is pacsd's.
	qido, err := measureQidoSearches(ctx, s.web, searches, 3*min(o.webReps, 30))
	if err != nil {
		return fmt.Errorf("study list: %w", err)
	}
	// After the searches, so that the HTTP metrics have their series.
	scrapes, err := measureScrapes(ctx, origin, 200, 0)
	if err != nil {
		return fmt.Errorf("study list: %w", err)
	}
	// pacsd reads the queue, the index counts and the migrations for a
	// scrape at most once a second: scrapes further apart each read them.
	spaced, err := measureScrapes(ctx, origin, 10, 1100*time.Millisecond)
	if err != nil {
		return fmt.Errorf("study list: %w", err)
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
	if err := tw.Flush(); err != nil {
		return err
	}

	fmt.Fprintf(out, "\nThe same searches over QIDO-RS alone (GET /dicom-web/studies?…, body read), %d studies, %d times each, alternating\n",
		n, 3*min(o.webReps, 30))
	tw = tabwriter.NewWriter(out, 0, 0, 2, ' ', tabwriter.AlignRight)
	fmt.Fprintln(tw, "search\tquery\tp50 ms\tp90 ms\t")
	for _, sc := range searches {
		d := qido[sc.Name]
		slices.Sort(d)
		fmt.Fprintf(tw, "%s\t%s\t%.1f\t%.1f\t\n", sc.Name, sc.Qido, percentile(d, 50), percentile(d, 90))
	}
	if err := tw.Flush(); err != nil {
		return err
	}

	fmt.Fprintf(out, "\nGET /metrics of the same pacsd (target: ≤ %d ms, p50)\n", targetScrape.Milliseconds())
	tw = tabwriter.NewWriter(out, 0, 0, 2, ' ', tabwriter.AlignRight)
	fmt.Fprintln(tw, "scrapes\tp50 ms\tp90 ms\tmax ms\tratio to target\ttarget\t")
	for _, sc := range []struct {
		name string
		d    []float64
	}{{fmt.Sprintf("%d one after another", len(scrapes)), scrapes}, {fmt.Sprintf("%d, 1.1 s apart", len(spaced)), spaced}} {
		slices.Sort(sc.d)
		p50 := percentile(sc.d, 50)
		verdict := "met"
		if p50 > float64(targetScrape.Microseconds())/1000 {
			verdict = "NOT met"
		}
		fmt.Fprintf(tw, "%s\t%.2f\t%.2f\t%.2f\t%.2f\t%s\t\n", sc.name, p50, percentile(sc.d, 90), sc.d[len(sc.d)-1],
			p50/(float64(targetScrape.Microseconds())/1000), verdict)
	}
	return tw.Flush()
}

// measureQidoSearches runs the QIDO-RS query of each search reps times,
// the searches alternating, and returns how long each took until its
// body was read, in milliseconds, by search.
func measureQidoSearches(ctx context.Context, web string, searches []uiSearch, reps int) (map[string][]float64, error) {
	c := &http.Client{Timeout: 30 * time.Second}
	out := map[string][]float64{}
	for range reps {
		for _, sc := range searches {
			req, err := http.NewRequestWithContext(ctx, http.MethodGet, web+"/studies?"+sc.Qido, nil)
			if err != nil {
				return nil, err
			}
			req.Header.Set("Accept", "application/dicom+json")
			start := time.Now()
			resp, err := c.Do(req)
			if err != nil {
				return nil, fmt.Errorf("QIDO-RS %s: %w", sc.Qido, err)
			}
			_, err = io.Copy(io.Discard, resp.Body)
			resp.Body.Close()
			if err != nil || resp.StatusCode != http.StatusOK {
				return nil, fmt.Errorf("QIDO-RS %s: %s %v", sc.Qido, resp.Status, err)
			}
			out[sc.Name] = append(out[sc.Name], float64(time.Since(start).Microseconds())/1000)
		}
	}
	return out, nil
}

// targetScrape is the target for a scrape of /metrics.
const targetScrape = 10 * time.Millisecond

// measureScrapes GETs origin's /metrics n times, gap apart, and returns
// how long each took until its body was read, in milliseconds.
func measureScrapes(ctx context.Context, origin string, n int, gap time.Duration) ([]float64, error) {
	c := &http.Client{Timeout: 10 * time.Second}
	out := make([]float64, 0, n)
	for i := range n {
		if i > 0 && gap > 0 {
			select {
			case <-time.After(gap):
			case <-ctx.Done():
				return nil, ctx.Err()
			}
		}
		req, err := http.NewRequestWithContext(ctx, http.MethodGet, origin+"/metrics", nil)
		if err != nil {
			return nil, err
		}
		start := time.Now()
		resp, err := c.Do(req)
		if err != nil {
			return nil, fmt.Errorf("scrape: %w", err)
		}
		_, err = io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		if err != nil || resp.StatusCode != http.StatusOK {
			return nil, fmt.Errorf("scrape: %s %v", resp.Status, err)
		}
		out = append(out, float64(time.Since(start).Microseconds())/1000)
	}
	return out, nil
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
