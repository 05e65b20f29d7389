package webtest

import (
	"archive/zip"
	"encoding/json"
	"fmt"
	"io"
	"log"
	"maps"
	"net/http"
	"net/http/httptest"
	"net/http/httputil"
	"net/url"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/pacsd/pacsd/dicom/tag"
	"github.com/pacsd/pacsd/internal/testpeer"
	"github.com/pacsd/pacsd/ui"
)

// uiPlan is what scripts/ui.mjs does.
type uiPlan struct {
	Chromium      string `json:"chromium"`
	URL           string `json:"url"`     // the page in front of pacsd, without sign-in
	FakeURL       string `json:"fakeURL"` // the page with sign-in and the fake /api
	ScreenshotDir string `json:"screenshotDir"`
	TimeoutMS     int    `json:"timeoutMs"`
	SearchName    string `json:"searchName"`
	PageSize      int    `json:"pageSize"`
	Study         string `json:"study"`
	Series        string `json:"series"`
	Frames        int    `json:"frames"`
	Preset        string `json:"preset"` // a window preset to pick, if the series has them
	// Destination is the remote AE the study is sent to, a storescp.
	Destination string `json:"destination"`
}

type uiRow struct{ Study, Name, Date string }

type uiResult struct {
	Steps map[string]*string // step name → error, nil when it ran through
	A11y  map[string]struct {
		Unlabelled []string
		Overflow   int
	}
	Tab []struct {
		Desc    string
		Outline bool
	}
	Contrast []struct {
		What  string
		Ratio float64
		FG    string
		BG    string
	}
	Search struct {
		Rows           []uiRow
		MS, PaintMS    float64
		KeyboardSearch bool
	}
	Pages  [][]uiRow
	Sorted map[string][]string // aria-sort value → dates as shown
	Study  struct {
		Heading, OHIF string
		Series        int
		Frames        int
	}
	Scroll struct {
		Shown     []int
		Hashes    []string
		Home, End int
	}
	Window  struct{ Before, Preset, Drag struct{ Window, Hash string } }
	Missing map[string]string // page → what it said
	Dialogs map[string]string // action on the server without /api → what the dialog said
	Fake    struct {
		SignedIn       bool
		Who            string
		Queue          []string
		RetryNotice    string
		Migration      string
		MigrationError string
		SendNotice     string
		DeleteNotice   string
		RestoreNotice  string
		Download       struct {
			Name string
			Size int
		}
		ChangesNotice string
		Audit         []string
		System        string
		ReadOnly      struct {
			Actions []string
			Nav     []string
		}
	}
	Real struct {
		SendNotice    string
		Deleted       int // QIDO-RS status for the study once deleted
		RestoreNotice string
		Queue         []string // the destination's row once drained
		Download      struct {
			Name, Path string
			Size       int
		}
	}
	Requests []struct {
		Method, URL string
		Status      int
	}
	OtherHosts    []string
	ConsoleErrors []struct{ Text, URL string }
	PageErrors    []string
	CSP           []string
	Screenshots   []string
}

// TestUI drives pacsd's web interface in Debian's Chromium: the study
// list searched with a wildcard, paged and sorted; a study opened from
// the keyboard; a series scrolled with the mouse wheel and the keys; the
// window changed by a preset and by dragging; the study sent to a
// storescp, the queue watched until it drains, and the study downloaded
// as a ZIP. pacsd serves the page and answers every request; the pages
// whose /api endpoints pacsd lacks must say so. A second origin signs in
// through an OpenID Connect provider (Authorization Code with PKCE) and
// answers those /api endpoints as docs/api.md defines them, with fakes
// that record what the page sent. Every input must be labelled, the
// controls reachable by Tab with a visible focus, text contrast at least
// 4.5:1, and nothing wider than a 1366×768 screen.
func TestUI(t *testing.T) {
	needNodeModules(t)
	chromium := needChromium(t)
	c := loadCorpus(t)
	scp := testpeer.StartStoreSCPT(t, testpeer.StoreSCPOptions{AET: "STORESCP", Args: []string{"+B"}})
	p := startPacsd(t, "--remote-ae", "STORESCP="+scp.Addr, "--ohif-url", "http://127.0.0.1:9/ohif")
	p.store(t, c.files()...)
	target, err := url.Parse(p.origin())
	if err != nil {
		t.Fatal(err)
	}

	// The page with sign-in in front of pacsd: its own paths and the
	// fake /api, everything else to pacsd.
	front := func(cfg ui.Config, extra func(*http.ServeMux)) http.Handler {
		page := ui.Handler(cfg)
		mux := http.NewServeMux()
		mux.Handle("GET /{$}", page)
		mux.Handle("GET /ui/", page)
		mux.Handle("GET "+ui.ConfigPath, page)
		proxy := httputil.NewSingleHostReverseProxy(target)
		proxy.ErrorLog = log.New(io.Discard, "", 0) // requests the page abandons as it moves on
		mux.Handle("/", proxy)
		if extra != nil {
			extra(mux)
		}
		return mux
	}

	api := &fakeAPI{scopes: []string{ui.ScopeRead, ui.ScopeWrite, ui.ScopeDelete, ui.ScopeAdmin}}
	fake := httptest.NewUnstartedServer(nil)
	fakeURL := "http://" + fake.Listener.Addr().String()
	op := newFakeOP("pacsd-ui", fakeURL+"/")
	opSrv := httptest.NewServer(op.handler())
	t.Cleanup(opSrv.Close)
	op.issuer = opSrv.URL
	fakeFront := front(ui.Config{
		Version:   "test",
		AuthModes: []string{"oidc"},
		OIDC:      ui.OIDC{Issuer: op.issuer, ClientID: "pacsd-ui", Scopes: []string{"pacsd"}},
		Principal: op.principal(api),
		NHSIssuer: "NHS",
	}, api.register)
	// The fake /api wants a token, as pacsd's will.
	fake.Config.Handler = http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		open := r.URL.Path == ui.ConfigPath || !strings.HasPrefix(r.URL.Path, "/api/") ||
			strings.HasSuffix(r.URL.Path, "/archive.zip") && r.URL.Query().Get("ticket") != ""
		if !open && !op.valid(r) {
			w.Header().Set("WWW-Authenticate", "Bearer")
			http.Error(w, "sign in", http.StatusUnauthorized)
			return
		}
		fakeFront.ServeHTTP(w, r)
	})
	fake.Start()
	t.Cleanup(fake.Close)

	// The study whose series the viewer scrolls through: the largest CT
	// series of the Doe patients, which has window presets, else the
	// largest series.
	series := map[string][]*sample{}
	for _, s := range c.doe {
		series[s.series] = append(series[s.series], s)
	}
	var largest []*sample
	isCT := func(ss []*sample) bool { return ss != nil && ss[0].attrs[uint32(tag.Modality)] == "CT" }
	for _, ss := range series {
		if isCT(ss) && !isCT(largest) || isCT(ss) == isCT(largest) && len(ss) > len(largest) {
			largest = ss
		}
	}
	doe := studies(c.doe)
	preset := ""
	if isCT(largest) {
		preset = "Bone"
	}
	artifacts := artifactDir(t)
	plan := uiPlan{
		Chromium: chromium, URL: p.origin(), FakeURL: fakeURL, ScreenshotDir: artifacts, TimeoutMS: 20000,
		SearchName: "Doe", PageSize: 2,
		Study: largest[0].study, Series: largest[0].series, Frames: len(largest), Preset: preset,
		Destination: "STORESCP",
	}
	var res uiResult
	runNode(t, 4*time.Minute, "ui.mjs", plan, &res)
	t.Logf("screenshots in %s", artifacts)
	t.Logf("search of %q: results drawn %.0f ms after submitting (%.0f ms to the next paint)", plan.SearchName, res.Search.MS, res.Search.PaintMS)
	for _, e := range res.PageErrors {
		t.Errorf("page error: %s", e)
	}
	for _, e := range res.ConsoleErrors {
		// Chromium logs every 4xx of a fetch; the page asks for
		// endpoints this pacsd lacks on purpose.
		if strings.HasPrefix(e.Text, "Failed to load resource") && (strings.Contains(e.URL, "/api/") || strings.Contains(e.URL, "/dicom-web/studies/")) {
			continue
		}
		t.Errorf("console error: %s (%s)", e.Text, e.URL)
	}
	for _, v := range res.CSP {
		t.Errorf("Content-Security-Policy violation: %s", v)
	}
	for _, h := range res.OtherHosts {
		t.Errorf("the page asked another host for %s", h)
	}
	for name, e := range res.Steps {
		if e != nil {
			t.Errorf("step %s: %s", name, *e)
		}
	}

	t.Run("accessibility", func(t *testing.T) {
		for page, a := range res.A11y {
			for _, u := range a.Unlabelled {
				t.Errorf("%s: %s has no accessible name", page, u)
			}
			if a.Overflow > 0 {
				t.Errorf("%s: %d px wider than a 1366×768 screen", page, a.Overflow)
			}
		}
		if len(res.A11y) < 6 {
			t.Errorf("accessibility checked on %d pages: %v", len(res.A11y), slices.Sorted(maps.Keys(res.A11y)))
		}
		var order []string
		for _, f := range res.Tab {
			order = append(order, f.Desc)
			if !f.Outline {
				t.Errorf("focus on %s is not visible", f.Desc)
			}
		}
		for i, want := range []string{"a:Skip to content", "a:pacsd", "a:Studies", "a:Queue"} {
			if i >= len(order) || order[i] != want {
				t.Errorf("Tab stop %d is %q, want %q (order %q)", i+1, at(order, i), want, order)
			}
		}
		for _, want := range []string{"input:Patient name", "select:Study date", "select:Modality", "button:Search"} {
			if !slices.Contains(order, want) {
				t.Errorf("Tab never reaches %s (order %q)", want, order)
			}
		}
		if !res.Search.KeyboardSearch {
			t.Error("a search typed and submitted from the keyboard did not show results")
		}
		for _, c := range res.Contrast {
			if c.Ratio < 4.5 {
				t.Errorf("contrast of %s is %.2f:1 (%s on %s), below 4.5:1", c.What, c.Ratio, c.FG, c.BG)
			}
		}
		if len(res.Contrast) < 8 {
			t.Errorf("contrast measured on %d elements", len(res.Contrast))
		}
	})

	t.Run("search", func(t *testing.T) {
		got := map[string]bool{}
		for _, r := range res.Search.Rows {
			got[r.Study] = true
			if want := formatPN(doe[r.Study][0].patientName); doe[r.Study] != nil && r.Name != want {
				t.Errorf("study %s shows patient %q, want %q", r.Study, r.Name, want)
			}
		}
		if want := slices.Sorted(maps.Keys(doe)); !slices.Equal(slices.Sorted(maps.Keys(got)), want) {
			t.Errorf("search for %s* shows studies %v, want %v", plan.SearchName, slices.Sorted(maps.Keys(got)), want)
		}
		var sizes []int
		seen := map[string]bool{}
		for _, pg := range res.Pages {
			sizes = append(sizes, len(pg))
			for _, r := range pg {
				if seen[r.Study] {
					t.Errorf("study %s on two pages", r.Study)
				}
				seen[r.Study] = true
			}
		}
		if want := []int{2, 2, 2}; !slices.Equal(sizes, want) {
			t.Errorf("pages of %v studies, want %v", sizes, want)
		}
		asc, desc := res.Sorted["ascending"], res.Sorted["descending"]
		if len(asc) != len(doe) || !slices.IsSorted(asc) {
			t.Errorf("sorted by study date, ascending: %v", asc)
		}
		if len(desc) != len(doe) || !slices.IsSortedFunc(desc, func(a, b string) int { return strings.Compare(b, a) }) {
			t.Errorf("sorted by study date, descending: %v", desc)
		}
	})

	t.Run("study and viewer", func(t *testing.T) {
		s := largest[0]
		if want := formatPN(s.patientName); res.Study.Heading != want {
			t.Errorf("study page heading %q, want %q", res.Study.Heading, want)
		}
		nSeries := map[string]bool{}
		for _, x := range doe[s.study] {
			nSeries[x.series] = true
		}
		if res.Study.Series != len(nSeries) {
			t.Errorf("%d series shown, the study has %d", res.Study.Series, len(nSeries))
		}
		if res.Study.Frames != len(largest) {
			t.Errorf("viewer has %d images, the series %d", res.Study.Frames, len(largest))
		}
		if !strings.Contains(res.Study.OHIF, "StudyInstanceUIDs="+s.study) {
			t.Errorf("Open in OHIF links to %q", res.Study.OHIF)
		}
		wantShown := make([]int, len(largest))
		for i := range wantShown {
			wantShown[i] = i + 1
		}
		if !slices.Equal(res.Scroll.Shown, wantShown) {
			t.Errorf("scrolling showed images %v, want %v", res.Scroll.Shown, wantShown)
		}
		if distinct := len(uniq(res.Scroll.Hashes)); distinct < 2 {
			t.Errorf("scrolling through %d images drew %d distinct pictures", len(res.Scroll.Hashes), distinct)
		}
		if res.Scroll.Home != 1 || res.Scroll.End != len(largest) {
			t.Errorf("Home showed image %d and End %d, want 1 and %d", res.Scroll.Home, res.Scroll.End, len(largest))
		}
		// Each image of the series was rendered by pacsd.
		for _, x := range largest {
			ok := slices.ContainsFunc(res.Requests, func(r struct {
				Method, URL string
				Status      int
			}) bool {
				return r.Status == http.StatusOK && strings.Contains(r.URL, "/instances/"+x.sop+"/frames/1/rendered")
			})
			if !ok {
				t.Errorf("image %s was never rendered", x.sop)
			}
		}
		w := res.Window
		if plan.Preset != "" {
			if w.Preset.Window != "400,1800" || w.Preset.Hash == w.Before.Hash {
				t.Errorf("the %s preset: window %q, picture changed %v", plan.Preset, w.Preset.Window, w.Preset.Hash != w.Before.Hash)
			}
		}
		if w.Drag.Window == "" || w.Drag.Window == w.Before.Window || w.Drag.Hash == w.Before.Hash {
			t.Errorf("dragging: window %q (before %q), picture changed %v", w.Drag.Window, w.Before.Window, w.Drag.Hash != w.Before.Hash)
		}
		windowed := slices.ContainsFunc(res.Requests, func(r struct {
			Method, URL string
			Status      int
		}) bool {
			return r.Status == http.StatusOK && strings.Contains(r.URL, "/rendered?") && strings.Contains(r.URL, "window=")
		})
		if !windowed {
			t.Error("pacsd rendered no image with a window")
		}
	})

	t.Run("pacsd's own API", func(t *testing.T) {
		if q := res.Missing["queue"]; !strings.Contains(q, "STORESCP") || strings.Contains(q, "not available") {
			t.Errorf("queue page says %q, want the destination STORESCP", q)
		}
		if s := res.Missing["system"]; !strings.Contains(s, "PACSD") || !strings.Contains(s, p.dimseAddr) || !strings.Contains(s, "Ready") {
			t.Errorf("system page says %q, want pacsd's AE title, DIMSE address and readiness", s)
		}
		// pacsd serves the audit trail: newest first, the accesses of
		// the test so far (how many of them fill the first page depends
		// on the machine's pace, so no particular one is looked for).
		if a := res.Missing["audit"]; !strings.Contains(a, "DICOM Instances Transferred") || strings.Contains(a, "not available") {
			t.Errorf("audit page says %q, want pacsd's own records", a)
		}
		if m := res.Missing["migrations"]; strings.Contains(m, "failed") || !strings.Contains(m, "Migrations") {
			t.Errorf("migrations page says %q", m)
		}
		// Deleting moves the study to pacsd's trash, where QIDO-RS no
		// longer finds it, and restoring brings it back.
		if d := res.Dialogs["delete"]; !strings.Contains(d, "in the trash") {
			t.Errorf("delete on this pacsd says %q, want that the study is in the trash", d)
		}
		if res.Real.Deleted != http.StatusNoContent {
			t.Errorf("QIDO-RS of the deleted study answered %d, want 204", res.Real.Deleted)
		}
		if !strings.Contains(res.Real.RestoreNotice, "restored") {
			t.Errorf("restore on this pacsd says %q", res.Real.RestoreNotice)
		}
	})

	t.Run("send to storescp", func(t *testing.T) {
		if !strings.Contains(res.Real.SendNotice, "Queued for STORESCP") {
			t.Errorf("send notice %q", res.Real.SendNotice)
		}
		got, err := scp.Files()
		if err != nil {
			t.Fatal(err)
		}
		// What dcmsend sent pacsd, which pacsd must pass on unchanged.
		var paths []string
		for _, s := range doe[plan.Study] {
			paths = append(paths, s.path)
		}
		sent := sentDatasets(t, paths)
		for _, s := range doe[plan.Study] {
			f, ok := got[s.sop]
			if !ok {
				t.Errorf("storescp did not receive %s", s.sop)
				continue
			}
			if readSample(t, f).datasetSHA256 != sent[s.sop] {
				t.Errorf("%s reached storescp changed", s.sop)
			}
		}
		if len(got) != len(doe[plan.Study]) {
			t.Errorf("storescp received %d instances, the study has %d", len(got), len(doe[plan.Study]))
		}
		t.Logf("queue once drained: %q", res.Real.Queue)
	})

	t.Run("download", func(t *testing.T) {
		d := res.Real.Download
		if d.Name != plan.Study+".zip" {
			t.Errorf("download named %q", d.Name)
		}
		zr, err := zip.OpenReader(d.Path)
		if err != nil {
			t.Fatalf("download %+v: %v", d, err)
		}
		defer zr.Close()
		if len(zr.File) != len(doe[plan.Study]) {
			t.Errorf("the ZIP holds %d files, the study %d instances", len(zr.File), len(doe[plan.Study]))
		}
	})

	t.Run("signed in, against the API contract", func(t *testing.T) {
		o := op
		o.mu.Lock()
		failures, issued := slices.Clone(o.failures), o.issued
		o.mu.Unlock()
		for _, f := range failures {
			t.Errorf("OpenID provider: %s", f)
		}
		f := res.Fake
		if !f.SignedIn || issued != 1 || !strings.Contains(f.Who, "Dr Test") {
			t.Errorf("sign-in: signed in %v as %q, %d tokens issued", f.SignedIn, f.Who, issued)
		}
		q := strings.Join(f.Queue, "\n")
		for _, want := range []string{"REPORTING", "12", "association rejected", "C-STORE 0xA700"} {
			if !strings.Contains(q, want) {
				t.Errorf("queue page lacks %q:\n%s", want, q)
			}
		}
		if !strings.Contains(f.Migration, "100 of 200 studies") || !strings.Contains(f.MigrationError, "2 instances missing") {
			t.Errorf("migration page: %q, failure %q", f.Migration, f.MigrationError)
		}
		if !strings.Contains(f.ChangesNotice, "1 instance") {
			t.Errorf("change feed notice: %q", f.ChangesNotice)
		}
		if f.Download.Size == 0 || !strings.HasSuffix(f.Download.Name, ".zip") {
			t.Errorf("download: %+v", f.Download)
		}
		if len(f.Audit) < 2 || !strings.Contains(f.System, "s3://pacs-objects") {
			t.Errorf("audit rows %q, system %q", f.Audit, f.System)
		}
		if slices.Contains(f.ReadOnly.Actions, "Send…") || slices.Contains(f.ReadOnly.Actions, "Delete…") || slices.Contains(f.ReadOnly.Nav, "Audit") {
			t.Errorf("a principal with the read scope only sees actions %q and pages %q", f.ReadOnly.Actions, f.ReadOnly.Nav)
		}
		calls := api.recorded()
		find := func(method, suffix string) *apiCall {
			for i := range calls {
				if calls[i].Method == method && strings.HasSuffix(calls[i].Path, suffix) {
					return &calls[i]
				}
			}
			return nil
		}
		st := largest[0].study
		if c := find("POST", "/api/queue/REPORTING/retry"); c == nil || !jsonEqual(c.Body, `{"failed":true}`) {
			t.Errorf("retry: %+v", c)
		}
		if c := find("POST", "/api/studies/"+st+"/send"); c == nil || !jsonEqual(c.Body, `{"to":["REPORTING"]}`) {
			t.Errorf("send: %+v", c)
		}
		if c := find("POST", "/api/studies/"+st+"/update"); c == nil || c.Query.Get("reason") == "" ||
			!jsonEqual(c.Body, `{"00081030":{"vr":"LO","Value":["Corrected description"]}}`) {
			t.Errorf("correction: %+v", c)
		}
		if c := find("DELETE", "/dicom-web/studies/"+st); c == nil || c.Query.Get("reason") == "" {
			t.Errorf("delete: %+v", c)
		}
		if find("POST", "/api/studies/"+st+"/restore") == nil {
			t.Error("restore was not asked for")
		}
		for _, want := range []string{"Queued for REPORTING", "in the trash", "restored"} {
			if !strings.Contains(f.SendNotice+f.DeleteNotice+f.RestoreNotice, want) {
				t.Errorf("no notice %q: send %q, delete %q, restore %q", want, f.SendNotice, f.DeleteNotice, f.RestoreNotice)
			}
		}
	})
}

func at(s []string, i int) string {
	if i < len(s) {
		return s[i]
	}
	return ""
}

func uniq(s []string) map[string]bool {
	m := map[string]bool{}
	for _, x := range s {
		m[x] = true
	}
	return m
}

func jsonEqual(a, b string) bool {
	var x, y any
	if json.Unmarshal([]byte(a), &x) != nil || json.Unmarshal([]byte(b), &y) != nil {
		return false
	}
	return fmt.Sprint(x) == fmt.Sprint(y)
}
