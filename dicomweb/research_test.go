package dicomweb_test

import (
	"bytes"
	"context"
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync/atomic"
	"testing"

	"github.com/labstack/echo/v4"

	"github.com/pacsd/pacsd/archive"
	"github.com/pacsd/pacsd/deid"
	"github.com/pacsd/pacsd/dicom"
	"github.com/pacsd/pacsd/dicom/tag"
	"github.com/pacsd/pacsd/dicom/uid"
	"github.com/pacsd/pacsd/dicomweb"
	"github.com/pacsd/pacsd/index/sqlite"
	"github.com/pacsd/pacsd/storage/mem"
)

// TestResearch serves research callers de-identified copies: searches
// answer pseudonymous UIDs, retrievals by them answer de-identified
// objects, the original UIDs name nothing, and the services that do not
// de-identify answer 403.
func TestResearch(t *testing.T) {
	db, err := sqlite.Open(t.Context(), sqlite.Memory)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { db.Close() })
	arch := archive.New(archive.Config{Store: mem.New(), Index: db, AETitle: "PACSD"})
	mapping := &deid.MemoryMapping{}
	d, err := deid.New(deid.Options{Key: []byte("0123456789abcdef0123456789abcdef"), Mapping: mapping})
	if err != nil {
		t.Fatal(err)
	}
	var research atomic.Bool
	s := &dicomweb.Server{Index: db, Archive: arch, AETitle: "PACSD", Research: &dicomweb.Research{
		Only:         func(context.Context) bool { return research.Load() },
		Deidentifier: d,
		Originals:    mapping,
	}}
	e := echo.New()
	s.Register(e)
	srv := httptest.NewServer(e)
	t.Cleanup(srv.Close)
	base := srv.URL + "/dicom-web"

	samples := localSamples(t)
	var bodies [][]byte
	for _, x := range samples {
		bodies = append(bodies, x.data)
	}
	if resp, res := stow(t, base+"/studies", bodies...); resp.StatusCode != http.StatusOK {
		t.Fatalf("STOW: %d %v", resp.StatusCode, res)
	}
	research.Store(true)

	resp, b := get(t, base+"/studies?includefield=all")
	var studies []map[string]any
	if err := json.Unmarshal(b, &studies); err != nil || resp.StatusCode != 200 || len(studies) != len(samples) {
		t.Fatalf("search: %d %v %s", resp.StatusCode, err, b)
	}
	for _, x := range samples {
		if bytes.Contains(b, []byte(x.study)) || !bytes.Contains(b, []byte(d.UID(x.study))) {
			t.Errorf("search answers study %s, or not its pseudonym", x.study)
		}
	}
	for _, x := range samples {
		pseudo := "/studies/" + d.UID(x.study) + "/series/" + d.UID(x.series) + "/instances/" + d.UID(x.id)
		resp, b := get(t, base+pseudo, "Accept", `multipart/related; type="application/dicom"; transfer-syntax=*`)
		if resp.StatusCode != 200 {
			t.Errorf("%s: retrieve by its pseudonyms: %d %s", x.name, resp.StatusCode, b)
			continue
		}
		_, ps := parts(t, resp, b)
		got := sampleOf(t, x.name, ps[0].data)
		if got.id != d.UID(x.id) || got.meta.MediaStorageSOPInstanceUID != got.id || got.study != d.UID(x.study) {
			t.Errorf("%s: retrieved instance %s of study %s (meta %s)", x.name, got.id, got.study, got.meta.MediaStorageSOPInstanceUID)
		}
		ts, _ := uid.LookupTransferSyntax(got.meta.TransferSyntaxUID)
		sc := dicom.NewScanner(bytes.NewReader(got.dataset), ts, dicom.Limits{})
		sc.Identify()
		io.Copy(io.Discard, sc.Rest())
		if h := sc.Header(); h.Dataset.String(tag.PatientIdentityRemoved) != "YES" || h.Dataset.String(tag.PatientName) != "" {
			t.Errorf("%s: Patient Identity Removed %q, Patient's Name %q", x.name, h.Dataset.String(tag.PatientIdentityRemoved), h.Dataset.String(tag.PatientName))
		}
		sc.Close()
		if resp, b := get(t, base+pseudo+"/metadata"); resp.StatusCode != 200 || bytes.Contains(b, []byte(x.id)) {
			t.Errorf("%s: metadata: %d %s", x.name, resp.StatusCode, b)
		}
		if resp, b := get(t, base+x.path()+"/metadata"); resp.StatusCode != 404 {
			t.Errorf("%s: metadata by the original UIDs: %d %s, want 404", x.name, resp.StatusCode, b)
		}
	}
	x := samples[0]
	pseudo := base + "/studies/" + d.UID(x.study) + "/series/" + d.UID(x.series) + "/instances/" + d.UID(x.id)
	if resp, b := get(t, pseudo+"/frames/1", "Accept", "multipart/related; type=application/octet-stream"); resp.StatusCode != 200 {
		t.Errorf("frames by the pseudonyms: %d %s", resp.StatusCode, b)
	}
	for _, c := range []struct{ method, url string }{
		{"GET", pseudo + "/bulkdata/132/4"},
		{"GET", base + "/studies/" + d.UID(x.study) + "/thumbnail"},
		{"GET", srv.URL + "/wado?requestType=WADO&studyUID=" + x.study + "&seriesUID=" + x.series + "&objectUID=" + x.id},
		{"POST", base + "/studies"},
	} {
		req, _ := http.NewRequestWithContext(t.Context(), c.method, c.url, strings.NewReader(""))
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != http.StatusForbidden {
			t.Errorf("%s %s by a research caller: %d, want 403", c.method, c.url, resp.StatusCode)
		}
	}
	if resp, b := get(t, base+"/studies?PatientName=M*"); resp.StatusCode != 400 {
		t.Errorf("search on a name: %d %s, want 400", resp.StatusCode, b)
	}
	if resp, b := get(t, base+"/studies?StudyInstanceUID="+x.study); resp.StatusCode != 204 {
		t.Errorf("search by an original UID: %d %s, want 204", resp.StatusCode, b)
	}
}
