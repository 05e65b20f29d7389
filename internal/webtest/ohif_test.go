package webtest

import (
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"os"
	"path"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"
)

// ohifPlan is what scripts/ohif.mjs does.
type ohifPlan struct {
	Chromium      string      `json:"chromium"`
	ViewerURL     string      `json:"viewerURL"`
	PacsdOrigin   string      `json:"pacsdOrigin"`
	PatientNames  []string    `json:"patientNames"`
	Studies       []ohifStudy `json:"studies"`
	ScreenshotDir string      `json:"screenshotDir"`
	TimeoutMS     int         `json:"timeoutMs"`
	// A viewport counts as showing an image when at least MinNonBlack of
	// its canvas's pixels are not black and they take MinLevels levels.
	MinNonBlack float64 `json:"minNonBlack"`
	MinLevels   int     `json:"minLevels"`
}

type ohifStudy struct {
	StudyInstanceUID string `json:"studyInstanceUID"`
	// InitialSeriesInstanceUID, if set, is the series the viewer shows
	// first, rather than the one its hanging protocol picks.
	InitialSeriesInstanceUID string `json:"initialSeriesInstanceUID,omitempty"`
	Name                     string `json:"name"` // of the screenshot
}

type ohifResult struct {
	StudyList struct {
		Visible, Missing []string
		Screenshot       string
		MS               int
		Settled          bool
	}
	Studies []struct {
		StudyInstanceUID string
		Canvases         []struct {
			Width, Height int
			NonBlack      float64
			Levels        int
		}
		Rendered  bool
		RenderMS  int
		Settled   bool
		SettledMS int
		// The viewer scrolled through the ViewportImages of the series in
		// its first viewport, then drew the last (RenderedAfterScroll).
		ViewportImages      int
		RenderedAfterScroll *bool
		DisplaySets         []struct {
			SeriesInstanceUID, Modality string
			Images                      int
			Messages                    []string
		}
		Screenshot string
		Error      *string
	}
	PacsdRequests  []pacsdRequest
	FailedRequests []struct{ Method, URL, Failure string }
	ErrorResponses []struct {
		Method, URL     string
		Status          int
		RequestHeaders  map[string]string
		ResponseHeaders map[string]string
		Body            string
	}
	Blocked       []string
	ConsoleErrors []string
	PageErrors    []string
}

// pacsdRequest is a request of the viewer to pacsd.
type pacsdRequest struct {
	Method, URL, Accept, ContentType string
	Status                           int
}

// TestOHIF opens the OHIF viewer (the prebuilt one of the npm package
// @ohif/app) in Debian's Chromium, served from another origin than pacsd's
// as a viewer is deployed, with pacsd as its DICOMweb data source. The
// study list must show the stored studies, and each study opened in the
// viewer must draw its image, without any request to pacsd failing.
func TestOHIF(t *testing.T) {
	needNodeModules(t)
	chromium := needChromium(t)
	dist := ohifDist(t)
	var ohifPkg struct{ Name, Version string }
	if b, err := os.ReadFile(filepath.Join(dist, "..", "package.json")); err == nil {
		_ = json.Unmarshal(b, &ohifPkg)
	}
	t.Logf("OHIF viewer %s@%s, Chromium %s", ohifPkg.Name, ohifPkg.Version, chromium)

	c := loadCorpus(t)
	p := startPacsd(t)
	p.store(t, c.files()...)
	// Studies the viewer decodes in the browser: JPEG-LS, JPEG 2000 and
	// HTJ2K, sent as stored.
	compressed := writeCompressedStudies(t)
	p.storeCompressed(t, compressed)

	viewer := httptest.NewServer(viewerHandler(t, dist, p))
	t.Cleanup(viewer.Close)

	artifacts := artifactDir(t)
	plan := ohifPlan{
		Chromium:      chromium,
		ViewerURL:     viewer.URL,
		PacsdOrigin:   p.origin(),
		ScreenshotDir: artifacts,
		TimeoutMS:     30000,
		MinNonBlack:   0.02,
		MinLevels:     16,
	}
	names := map[string]bool{}
	for rel, s := range c.byID {
		if rel != j2kStowed {
			names[formatPN(s.patientName)] = true
		}
	}
	for _, s := range c.doe {
		names[formatPN(s.patientName)] = true
	}
	for n := range names {
		plan.PatientNames = append(plan.PatientNames, n)
	}
	for _, o := range []struct{ rel, name string }{
		{ctSmall, "ct-native"},
		{jpegRGB, "jpeg-baseline"},
		{mrSmall, "mr-native"},
	} {
		plan.Studies = append(plan.Studies, ohifStudy{StudyInstanceUID: c.byID[o.rel].study, Name: o.name})
	}
	for _, s := range compressed {
		plan.Studies = append(plan.Studies, ohifStudy{StudyInstanceUID: s.study, Name: s.name})
	}
	// And the largest series of the Doe patients, whose images the viewer
	// scrolls through.
	series := map[string][]*sample{}
	for _, s := range c.doe {
		series[s.series] = append(series[s.series], s)
	}
	var largest []*sample
	for _, ss := range series {
		if len(ss) > len(largest) {
			largest = ss
		}
	}
	plan.Studies = append(plan.Studies, ohifStudy{StudyInstanceUID: largest[0].study, InitialSeriesInstanceUID: largest[0].series, Name: "doe-stack"})

	var res ohifResult
	runNode(t, 3*time.Minute, "ohif.mjs", plan, &res)

	t.Logf("screenshots in %s", artifacts)
	t.Logf("study list shown in %d ms", res.StudyList.MS)
	t.Logf("%d requests to pacsd", len(res.PacsdRequests))
	for _, r := range res.PacsdRequests {
		t.Logf("  %s %s -> %d %s (Accept: %s)", r.Method, r.URL, r.Status, r.ContentType, r.Accept)
	}
	if len(res.Blocked) > 0 {
		t.Logf("requests off loopback, refused: %v", res.Blocked)
	}
	for _, e := range res.ConsoleErrors {
		t.Logf("console error: %s", e)
	}
	for _, e := range res.PageErrors {
		t.Logf("page error: %s", e)
	}

	if !res.StudyList.Settled {
		t.Errorf("study list: requests to pacsd still under way after %d ms", plan.TimeoutMS)
	}
	if len(res.StudyList.Missing) > 0 {
		t.Errorf("the study list does not show %q (it shows %q); screenshot %s", res.StudyList.Missing, res.StudyList.Visible, res.StudyList.Screenshot)
	}
	for _, st := range res.Studies {
		if st.Error != nil {
			t.Errorf("study %s: %s", st.StudyInstanceUID, *st.Error)
			continue
		}
		t.Logf("study %s: image drawn after %d ms, requests settled after %d ms, %d images in the first viewport",
			st.StudyInstanceUID, st.RenderMS, st.SettledMS, st.ViewportImages)
		for _, ds := range st.DisplaySets {
			t.Logf("study %s: display set %s %s of %d images, messages %v", st.StudyInstanceUID, ds.Modality, ds.SeriesInstanceUID, ds.Images, ds.Messages)
		}
		if !st.Rendered {
			t.Errorf("study %s: no viewport drew an image (canvases %+v); screenshot %s", st.StudyInstanceUID, st.Canvases, st.Screenshot)
		}
		if st.RenderedAfterScroll != nil && !*st.RenderedAfterScroll {
			t.Errorf("study %s: after scrolling through its %d images the viewport is blank; screenshot %s", st.StudyInstanceUID, st.ViewportImages, st.Screenshot)
		}
		if !st.Settled {
			t.Errorf("study %s: requests to pacsd still under way after %d ms", st.StudyInstanceUID, plan.TimeoutMS)
		}
	}
	// Scrolling through the series fetched each of its images.
	for _, s := range largest {
		ok := slices.ContainsFunc(res.PacsdRequests, func(r pacsdRequest) bool {
			return r.Status == http.StatusOK && strings.Contains(r.URL, "/instances/"+s.sop+"/frames/")
		})
		if !ok {
			t.Errorf("no frame of %s (image of the series %s that the viewer scrolled through) was fetched", s.sop, s.series)
		}
	}
	if len(res.PacsdRequests) == 0 {
		t.Errorf("the viewer sent no request to pacsd")
	}
	for _, f := range res.FailedRequests {
		t.Errorf("request failed: %s %s: %s", f.Method, f.URL, f.Failure)
	}
	for _, r := range res.ErrorResponses {
		t.Errorf("pacsd answered %s %s with %d\nrequest headers: %v\nresponse headers: %v\nbody: %s",
			r.Method, r.URL, r.Status, r.RequestHeaders, r.ResponseHeaders, r.Body)
	}
}

// viewerHandler serves the OHIF viewer in dist as a single-page
// application: its files as they are, any other path (the viewer's routes,
// such as /viewer) as index.html, and an app-config.js whose one data
// source is pacsd.
func viewerHandler(t *testing.T, dist string, p *pacsd) http.Handler {
	t.Helper()
	return viewerHandlerConfig(t, dist, ohifConfig(p))
}

// viewerHandlerConfig is viewerHandler with the configuration config.
func viewerHandlerConfig(t *testing.T, dist string, config map[string]any) http.Handler {
	t.Helper()
	cfg, err := json.MarshalIndent(config, "", "  ")
	if err != nil {
		t.Fatal(err)
	}
	appConfig := []byte("window.config = " + string(cfg) + ";\n")
	files := http.FileServer(http.Dir(dist))
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		name := path.Clean("/" + r.URL.Path)
		if name == "/app-config.js" {
			w.Header().Set("Content-Type", "text/javascript")
			w.Write(appConfig)
			return
		}
		if fi, err := os.Stat(filepath.Join(dist, filepath.FromSlash(name))); err != nil || fi.IsDir() && name != "/" {
			r.URL.Path = "/"
		}
		files.ServeHTTP(w, r)
	})
}

// ohifConfig is the viewer's configuration: the DICOMweb data source of
// OHIF's own examples (platform/app/public/config), pointed at pacsd, with
// the dialogs and checks that would stop an unattended run turned off.
func ohifConfig(p *pacsd) map[string]any {
	return map[string]any{
		"routerBasename":                   "/",
		"extensions":                       []any{},
		"modes":                            []any{},
		"showStudyList":                    true,
		"maxNumberOfWebWorkers":            2,
		"showWarningMessageForCrossOrigin": false,
		"showCPUFallbackMessage":           false,
		"showLoadingIndicator":             true,
		"strictZSpacingForVolumeViewport":  true,
		"investigationalUseDialog":         map[string]any{"option": "never"},
		"defaultDataSourceName":            "pacsd",
		"dataSources": []any{map[string]any{
			"namespace":  "@ohif/extension-default.dataSourcesModule.dicomweb",
			"sourceName": "pacsd",
			"configuration": map[string]any{
				"friendlyName":                     "pacsd",
				"name":                             "pacsd",
				"wadoUriRoot":                      p.origin() + "/wado",
				"qidoRoot":                         p.root(),
				"wadoRoot":                         p.root(),
				"qidoSupportsIncludeField":         true,
				"supportsReject":                   false,
				"supportsStow":                     true,
				"dicomUploadEnabled":               false,
				"imageRendering":                   "wadors",
				"thumbnailRendering":               "wadors",
				"enableStudyLazyLoad":              true,
				"supportsFuzzyMatching":            true,
				"supportsWildcard":                 true,
				"omitQuotationForMultipartRequest": true,
				"bulkDataURI":                      map[string]any{"enabled": true},
			},
		}},
	}
}

// formatPN is how OHIF shows a person name (formatPN of @ohif/core): the
// first caret becomes a comma and a space, the others spaces.
func formatPN(name string) string {
	name = strings.Replace(name, "^", ", ", 1)
	return strings.TrimSpace(strings.ReplaceAll(name, "^", " "))
}

// artifactDir is where the test leaves its screenshots: the directory
// named by PACSD_ARTIFACTS, or else the test's artifact directory, which
// go test keeps with -artifacts and removes otherwise.
func artifactDir(t *testing.T) string {
	t.Helper()
	if dir := os.Getenv("PACSD_ARTIFACTS"); dir != "" {
		dir = filepath.Join(dir, t.Name())
		if err := os.MkdirAll(dir, 0o755); err != nil {
			t.Fatal(err)
		}
		return dir
	}
	return t.ArtifactDir()
}
