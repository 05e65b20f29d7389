package dicomweb_test

import (
	"bufio"
	"bytes"
	"compress/flate"
	"encoding/json"
	"fmt"
	"image/jpeg"
	"image/png"
	"io"
	"mime"
	"mime/multipart"
	"net/http"
	"net/http/httptest"
	"net/textproto"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/labstack/echo/v4"

	"github.com/pacsd/pacsd/archive"
	"github.com/pacsd/pacsd/dicom"
	"github.com/pacsd/pacsd/dicom/tag"
	"github.com/pacsd/pacsd/dicom/uid"
	"github.com/pacsd/pacsd/dicomweb"
	"github.com/pacsd/pacsd/index/sqlite"
	"github.com/pacsd/pacsd/internal/testpeer"
	"github.com/pacsd/pacsd/storage/mem"
)

type fixture struct {
	url  string // service root
	host string // server root
}

func newFixture(t *testing.T, configure ...func(*dicomweb.Server)) *fixture {
	t.Helper()
	db, err := sqlite.Open(t.Context(), sqlite.Memory)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { db.Close() })
	arch := archive.New(archive.Config{Store: mem.New(), Index: db, AETitle: "PACSD"})
	s := &dicomweb.Server{Index: db, Archive: arch, AETitle: "PACSD"}
	for _, f := range configure {
		f(s)
	}
	e := echo.New()
	s.Register(e)
	srv := httptest.NewServer(e)
	t.Cleanup(srv.Close)
	return &fixture{url: srv.URL + "/dicom-web", host: srv.URL}
}

// sample is a Part-10 file and what it holds.
type sample struct {
	name              string
	data              []byte
	meta              dicom.FileMeta
	dataset           []byte // the data set, after File Meta Information
	study, series, id string
}

func readSample(t *testing.T, path string) sample {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return sampleOf(t, path, b)
}

// sampleOf reads what a Part-10 file holds.
func sampleOf(t *testing.T, path string, b []byte) sample {
	t.Helper()
	br := bufio.NewReader(bytes.NewReader(b))
	fm, n, err := dicom.ReadFileMeta(br)
	if err != nil {
		t.Fatalf("%s: %v", path, err)
	}
	ts, _ := uid.LookupTransferSyntax(fm.TransferSyntaxUID)
	sc := dicom.NewScanner(bytes.NewReader(b[n:]), ts, dicom.Limits{})
	id, err := sc.Identify()
	if err != nil {
		t.Fatalf("%s: %v", path, err)
	}
	sc.Close()
	return sample{name: filepath.Base(path), data: b, meta: fm, dataset: b[n:], study: id.StudyInstanceUID, series: id.SeriesInstanceUID, id: id.SOPInstanceUID}
}

func (s sample) path() string {
	return "/studies/" + s.study + "/series/" + s.series + "/instances/" + s.id
}

func localSamples(t *testing.T) []sample {
	var out []sample
	for _, n := range []string{"ct-explicit-le.dcm", "mr-implicit-le-latin1.dcm", "ct-utf8-multiframe.dcm"} {
		out = append(out, readSample(t, filepath.Join("..", "testdata", "dicom", n)))
	}
	return out
}

func pydicomSample(t *testing.T, name string) sample {
	t.Helper()
	for _, p := range testpeer.PydicomFilesT(t) {
		if filepath.Base(p) == name {
			return readSample(t, p)
		}
	}
	t.Fatalf("pydicom sample %s not found", name)
	return sample{}
}

// stow posts parts as a multipart/related STOW-RS request.
func stow(t *testing.T, url string, parts ...[]byte) (*http.Response, map[string]any) {
	t.Helper()
	body, ct := multipartBody(t, parts...)
	req, _ := http.NewRequest("POST", url, bytes.NewReader(body))
	req.Header.Set("Content-Type", ct)
	return do(t, req)
}

func do(t *testing.T, req *http.Request) (*http.Response, map[string]any) {
	t.Helper()
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	var m map[string]any
	if strings.HasPrefix(resp.Header.Get("Content-Type"), "application/dicom+json") {
		if err := json.Unmarshal(b, &m); err != nil {
			t.Fatalf("response is not a JSON object: %v\n%s", err, b)
		}
	} else {
		m = map[string]any{"text": string(b)}
	}
	return resp, m
}

func get(t *testing.T, url string, header ...string) (*http.Response, []byte) {
	t.Helper()
	req, _ := http.NewRequest("GET", url, nil)
	for i := 0; i+1 < len(header); i += 2 {
		req.Header.Set(header[i], header[i+1])
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	return resp, b
}

func seqLen(m map[string]any, tg tag.Tag) int {
	e, ok := m[tg.Hex()].(map[string]any)
	if !ok {
		return 0
	}
	v, _ := e["Value"].([]any)
	return len(v)
}

// parts reads a multipart/related body.
func parts(t *testing.T, resp *http.Response, body []byte) (typ string, out []partData) {
	t.Helper()
	mt, params, err := mime.ParseMediaType(resp.Header.Get("Content-Type"))
	if err != nil || mt != "multipart/related" {
		t.Fatalf("Content-Type %q is not multipart/related (%v): %.200s", resp.Header.Get("Content-Type"), err, body)
	}
	mr := multipart.NewReader(bytes.NewReader(body), params["boundary"])
	for {
		p, err := mr.NextPart()
		if err == io.EOF {
			break
		}
		if err != nil {
			t.Fatal(err)
		}
		b, err := io.ReadAll(p)
		if err != nil {
			t.Fatal(err)
		}
		out = append(out, partData{p.Header.Get("Content-Type"), b})
	}
	return params["type"], out
}

type partData struct {
	contentType string
	data        []byte
}

func TestStoreSearchRetrieve(t *testing.T) {
	f := newFixture(t)
	samples := localSamples(t)
	var bodies [][]byte
	for _, s := range samples {
		bodies = append(bodies, s.data)
	}
	resp, res := stow(t, f.url+"/studies", append(bodies, []byte("not DICOM at all"))...)
	if resp.StatusCode != http.StatusAccepted {
		t.Fatalf("STOW with one garbage part: %d %v, want 202", resp.StatusCode, res)
	}
	if n := seqLen(res, tag.ReferencedSOPSequence); n != len(samples) {
		t.Errorf("ReferencedSOPSequence has %d items, want %d: %v", n, len(samples), res)
	}
	if n := seqLen(res, tag.FailedSOPSequence); n != 1 {
		t.Errorf("FailedSOPSequence has %d items, want 1: %v", n, res)
	}

	t.Run("search", func(t *testing.T) {
		resp, b := get(t, f.url+"/studies")
		var studies []map[string]any
		if err := json.Unmarshal(b, &studies); err != nil || resp.StatusCode != 200 {
			t.Fatalf("studies: %d %v %s", resp.StatusCode, err, b)
		}
		if len(studies) != 3 {
			t.Errorf("%d studies, want 3", len(studies))
		}
		for _, st := range studies {
			for _, k := range []tag.Tag{tag.StudyInstanceUID, tag.RetrieveURL, tag.NumberOfStudyRelatedInstances, tag.ModalitiesInStudy, tag.PatientName} {
				if _, ok := st[k.Hex()]; !ok {
					t.Errorf("study lacks %s: %v", k, st)
				}
			}
		}
		for _, c := range []struct {
			query string
			want  int
		}{
			{"/studies?PatientName=M*", 1},
			{"/studies?00100010=m%C3%BCller*", 1},
			{"/studies?limit=2", 2},
			{"/studies?limit=2&offset=2", 1},
			{"/studies?StudyInstanceUID=" + samples[0].study + "," + samples[1].study, 2},
			{"/series?Modality=MR", 1},
			{"/studies/" + samples[0].study + "/series", 1},
			{"/studies/" + samples[0].study + "/series/" + samples[0].series + "/instances", 1},
			{"/instances?SOPInstanceUID=" + samples[2].id, 1},
			{"/studies?PatientName=nobody", 0},
		} {
			resp, b := get(t, f.url+c.query)
			var got []map[string]any
			if resp.StatusCode == http.StatusNoContent {
				got = nil
			} else if err := json.Unmarshal(b, &got); err != nil {
				t.Errorf("%s: %d %v %s", c.query, resp.StatusCode, err, b)
				continue
			}
			if len(got) != c.want {
				t.Errorf("%s: %d matches, want %d", c.query, len(got), c.want)
			}
		}
		_, b = get(t, f.url+"/studies?includefield=PatientAge&includefield=00081030")
		if !bytes.Contains(b, []byte(`"00101010"`)) || !bytes.Contains(b, []byte(`"00081030"`)) {
			t.Errorf("includefield: %s", b)
		}
		for _, bad := range []string{"/studies?NoSuchKeyword=1", "/studies?limit=-1", "/studies?StudyDate=2024-13-40x", "/studies?fuzzymatching=maybe", "/studies?StudyInstanceUID=1.2.*"} {
			resp, b := get(t, f.url+bad)
			if resp.StatusCode != http.StatusBadRequest || len(b) < 10 {
				t.Errorf("%s: %d %q, want 400 with a reason", bad, resp.StatusCode, b)
			}
		}
	})

	t.Run("retrieve", func(t *testing.T) {
		for _, s := range samples {
			resp, b := get(t, f.url+s.path(), "Accept", `multipart/related; type="application/dicom"; transfer-syntax=*`)
			_, ps := parts(t, resp, b)
			if len(ps) != 1 {
				t.Fatalf("%s: %d parts", s.name, len(ps))
			}
			got := readPart10(t, ps[0].data)
			if !bytes.Equal(got.dataset, s.dataset) {
				t.Errorf("%s: retrieved data set differs from the stored one", s.name)
			}
			if !strings.Contains(ps[0].contentType, "transfer-syntax="+s.meta.TransferSyntaxUID) {
				t.Errorf("%s: part type %q", s.name, ps[0].contentType)
			}
		}
		// The implicit VR sample, asked for in explicit VR.
		s := samples[1]
		resp, b := get(t, f.url+s.path(), "Accept", `multipart/related; type=application/dicom; transfer-syntax=1.2.840.10008.1.2.1`)
		_, ps := parts(t, resp, b)
		got := readPart10(t, ps[0].data)
		if got.meta.TransferSyntaxUID != uid.ExplicitVRLittleEndian {
			t.Errorf("transcoded object's meta says %s", got.meta.TransferSyntaxUID)
		}
		var back bytes.Buffer
		ex, _ := uid.LookupTransferSyntax(uid.ExplicitVRLittleEndian)
		im, _ := uid.LookupTransferSyntax(uid.ImplicitVRLittleEndian)
		if err := dicom.Transcode(&back, bytes.NewReader(got.dataset), ex, im); err != nil || !bytes.Equal(back.Bytes(), s.dataset) {
			t.Errorf("explicit copy does not convert back to the stored data set (%v)", err)
		}
		// A whole study; an unknown study; an unacceptable type.
		resp, b = get(t, f.url+"/studies/"+s.study)
		if _, ps := parts(t, resp, b); len(ps) != 1 {
			t.Errorf("study retrieve: %d parts", len(ps))
		}
		if resp, _ := get(t, f.url+"/studies/1.2.3.4"); resp.StatusCode != 404 {
			t.Errorf("unknown study: %d", resp.StatusCode)
		}
		if resp, _ := get(t, f.url+"/studies/"+s.study, "Accept", "application/zip"); resp.StatusCode != 406 {
			t.Errorf("application/zip: %d", resp.StatusCode)
		}
		resp, b = get(t, f.url+s.path(), "Accept", "application/dicom")
		if resp.StatusCode != 200 || !bytes.Equal(readPart10(t, b).dataset, back.Bytes()) && !bytes.Equal(readPart10(t, b).dataset, got.dataset) {
			t.Errorf("single-part application/dicom: %d", resp.StatusCode)
		}
	})

	t.Run("metadata", func(t *testing.T) {
		s := samples[2]
		url := f.url + "/studies/" + s.study + "/series/" + s.series + "/metadata"
		resp, b := get(t, url)
		var docs []map[string]any
		if err := json.Unmarshal(b, &docs); err != nil || len(docs) != 1 {
			t.Fatalf("metadata: %d %v %s", resp.StatusCode, err, b)
		}
		ds, err := dicom.ParseJSON(mustJSON(docs[0]))
		if err != nil {
			t.Fatal(err)
		}
		if ds.First(tag.SOPInstanceUID) != s.id || ds.First(tag.NumberOfFrames) != "3" {
			t.Errorf("metadata: %s", b)
		}
		pd, _ := docs[0][tag.PixelData.Hex()].(map[string]any)
		uri, _ := pd["BulkDataURI"].(string)
		if !strings.HasPrefix(uri, f.url+s.path()+"/bulkdata/") {
			t.Fatalf("Pixel Data BulkDataURI %q", uri)
		}
		etag := resp.Header.Get("ETag")
		if resp, _ := get(t, url, "If-None-Match", etag); etag == "" || resp.StatusCode != http.StatusNotModified {
			t.Errorf("If-None-Match %q: %d", etag, resp.StatusCode)
		}
		resp, gz := get(t, url, "Accept-Encoding", "gzip")
		_ = gz
		if resp.Header.Get("Content-Encoding") != "" && !resp.Uncompressed {
			t.Logf("gzip: %s", resp.Header.Get("Content-Encoding"))
		}
		req, _ := http.NewRequest("GET", url, nil)
		req.Header.Set("Accept-Encoding", "gzip")
		raw, err := http.DefaultTransport.RoundTrip(req)
		if err != nil {
			t.Fatal(err)
		}
		raw.Body.Close()
		if raw.Header.Get("Content-Encoding") != "gzip" {
			t.Errorf("metadata not gzipped for a client that accepts it")
		}

		// Bulk data: the whole pixel data, and a range of it.
		frames := pixelFrames(t, s)
		resp, b = get(t, uri, "Accept", "application/octet-stream")
		if resp.StatusCode != 200 || !bytes.Equal(b, bytes.Join(frames, nil)) {
			t.Errorf("bulk data: %d, %d bytes", resp.StatusCode, len(b))
		}
		resp, b = get(t, uri, "Accept", "application/octet-stream", "Range", "bytes=2-9")
		if resp.StatusCode != http.StatusPartialContent || !bytes.Equal(b, bytes.Join(frames, nil)[2:10]) {
			t.Errorf("bulk data range: %d %x", resp.StatusCode, b)
		}
		resp, b = get(t, uri, "Accept", `multipart/related; type="application/octet-stream"`)
		if _, ps := parts(t, resp, b); len(ps) != 1 || !bytes.Equal(ps[0].data, bytes.Join(frames, nil)) {
			t.Errorf("multipart bulk data differs")
		}

		// Frames by number.
		resp, b = get(t, f.url+s.path()+"/frames/3,1", "Accept", `multipart/related; type="application/octet-stream"; transfer-syntax=*`)
		_, ps := parts(t, resp, b)
		if len(ps) != 2 || !bytes.Equal(ps[0].data, frames[2]) || !bytes.Equal(ps[1].data, frames[0]) {
			t.Errorf("frames 3,1: %d parts", len(ps))
		}
		if resp, _ := get(t, f.url+s.path()+"/frames/4"); resp.StatusCode != 404 {
			t.Errorf("frame 4 of 3: %d", resp.StatusCode)
		}
		if resp, _ := get(t, f.url+s.path()+"/frames/x"); resp.StatusCode != 400 {
			t.Errorf("frame x: %d", resp.StatusCode)
		}
	})

	t.Run("rendered", func(t *testing.T) {
		s := samples[0]
		resp, b := get(t, f.url+s.path()+"/rendered")
		if _, err := jpeg.Decode(bytes.NewReader(b)); resp.StatusCode != 200 || err != nil {
			t.Errorf("rendered: %d %v", resp.StatusCode, err)
		}
		resp, b = get(t, f.url+s.path()+"/thumbnail", "Accept", "image/png")
		img, err := png.Decode(bytes.NewReader(b))
		if err != nil || img.Bounds().Dx() > 128 || img.Bounds().Dy() > 128 {
			t.Errorf("thumbnail: %d %v", resp.StatusCode, err)
		}
		resp, b = get(t, f.url+"/studies/"+s.study+"/thumbnail")
		if _, err := jpeg.Decode(bytes.NewReader(b)); err != nil {
			t.Errorf("study thumbnail: %d %v", resp.StatusCode, err)
		}
		if resp, _ := get(t, f.url+s.path()+"/rendered?window=40,-1"); resp.StatusCode != 400 {
			t.Errorf("bad window: %d", resp.StatusCode)
		}
		if resp, _ := get(t, f.url+s.path()+"/rendered", "Accept", "image/jp2"); resp.StatusCode != 406 {
			t.Errorf("image/jp2: %d", resp.StatusCode)
		}
		// WADO-URI.
		q := fmt.Sprintf("%s/wado?requestType=WADO&studyUID=%s&seriesUID=%s&objectUID=%s", f.host, s.study, s.series, s.id)
		resp, b = get(t, q+"&contentType=application/dicom")
		if resp.StatusCode != 200 || !bytes.Equal(readPart10(t, b).dataset, s.dataset) {
			t.Errorf("WADO-URI application/dicom: %d", resp.StatusCode)
		}
		resp, b = get(t, q)
		if _, err := jpeg.Decode(bytes.NewReader(b)); err != nil {
			t.Errorf("WADO-URI default image/jpeg: %d %v", resp.StatusCode, err)
		}
		if resp, _ := get(t, f.host+"/wado?requestType=WADO&studyUID=1&seriesUID=2&objectUID=3&contentType=application/dicom"); resp.StatusCode != 404 {
			t.Errorf("WADO-URI unknown object: %d", resp.StatusCode)
		}
		if resp, _ := get(t, f.host+"/wado?requestType=XYZ"); resp.StatusCode != 400 {
			t.Errorf("WADO-URI bad requestType: %d", resp.StatusCode)
		}
	})
}

func TestFramesOfRealFiles(t *testing.T) {
	f := newFixture(t)
	jpg := pydicomSample(t, "SC_rgb_jpeg_dcmtk.dcm")
	j2k := pydicomSample(t, "JPEG2000.dcm")
	resp, res := stow(t, f.url+"/studies", jpg.data, j2k.data)
	if resp.StatusCode != 200 {
		t.Fatalf("STOW: %d %v", resp.StatusCode, res)
	}
	resp, b := get(t, f.url+jpg.path()+"/frames/1", "Accept", `multipart/related; type="image/jpeg"`)
	_, ps := parts(t, resp, b)
	if len(ps) != 1 || !strings.HasPrefix(ps[0].contentType, "image/jpeg; transfer-syntax=1.2.840.10008.1.2.4.50") {
		t.Fatalf("JPEG frame: %+v", ps)
	}
	if _, err := jpeg.Decode(bytes.NewReader(ps[0].data)); err != nil {
		t.Errorf("JPEG frame does not decode: %v", err)
	}
	// A viewer asking for octet-stream with any syntax gets the JPEG
	// stream labelled with its syntax.
	resp, b = get(t, f.url+jpg.path()+"/frames/1", "Accept", `multipart/related; type=application/octet-stream; transfer-syntax=*`)
	if _, ps := parts(t, resp, b); len(ps) != 1 || !strings.Contains(ps[0].contentType, "transfer-syntax=1.2.840.10008.1.2.4.50") {
		t.Errorf("octet-stream with transfer-syntax=*: %+v", ps)
	}
	if resp, _ := get(t, f.url+j2k.path()+"/frames/1", "Accept", `multipart/related; type="application/octet-stream"; transfer-syntax=1.2.840.10008.1.2.1`); resp.StatusCode != 406 {
		t.Errorf("J2K frame as explicit LE: %d, want 406", resp.StatusCode)
	}
	// dicom/render decodes JPEG 2000 through dicom/codec.
	if resp, _ := get(t, f.url+j2k.path()+"/rendered"); resp.StatusCode != 200 {
		t.Errorf("J2K rendered: %d, want 200", resp.StatusCode)
	}
}

// TestFramesBigEndian checks that big endian pixel data is served as
// little endian frames equal to those of the little endian twin, 16-bit
// and 32-bit (swapped by pixel, not by 16-bit word). Each twin has the
// same UIDs, so each is stored in an archive of its own.
func TestFramesBigEndian(t *testing.T) {
	for _, tt := range []struct{ be, le, frame string }{
		{"MR_small_bigendian.dcm", "MR_small.dcm", "1"},
		{"rtdose_expb.dcm", "rtdose.dcm", "3"},
	} {
		t.Run(tt.be, func(t *testing.T) {
			var frames [2][]byte
			for i, name := range []string{tt.be, tt.le} {
				f := newFixture(t)
				s := pydicomSample(t, name)
				// The rtdose files' File Meta Information names
				// another SOP Instance UID than their data set.
				m := s.meta
				m.MediaStorageSOPInstanceUID = s.id
				part10 := append(dicom.AppendFileMeta(nil, m), s.dataset...)
				if resp, res := stow(t, f.url+"/studies", part10); resp.StatusCode != 200 {
					t.Fatalf("STOW %s: %d %v", name, resp.StatusCode, res)
				}
				_, frames[i] = get(t, f.url+s.path()+"/frames/"+tt.frame, "Accept", "application/octet-stream")
			}
			if len(frames[0]) == 0 || !bytes.Equal(frames[0], frames[1]) {
				t.Errorf("big endian frame (%d bytes) differs from the little endian one (%d bytes)", len(frames[0]), len(frames[1]))
			}
		})
	}
}

func TestStoreErrors(t *testing.T) {
	f := newFixture(t, func(s *dicomweb.Server) { s.MaxBodyBytes = 1 << 20 })
	s := localSamples(t)[0]
	post := func(ct string, body []byte, path string) (*http.Response, map[string]any) {
		req, _ := http.NewRequest("POST", f.url+path, bytes.NewReader(body))
		req.Header.Set("Content-Type", ct)
		return do(t, req)
	}
	// A study in the path that the instance does not belong to.
	resp, res := stow(t, f.url+"/studies/1.2.3.4", s.data)
	if resp.StatusCode != http.StatusConflict || !strings.Contains(fmt.Sprint(res), "43264") {
		t.Errorf("wrong study: %d %v, want 409 with reason A900 (43264)", resp.StatusCode, res)
	}
	// A bad boundary, a truncated body, a wrong type.
	if resp, _ := post(`multipart/related; type="application/dicom"; boundary=nope`, append([]byte("--other\r\n\r\n"), s.data...), "/studies"); resp.StatusCode != 400 {
		t.Errorf("bad boundary: %d", resp.StatusCode)
	}
	var body bytes.Buffer
	mw := multipart.NewWriter(&body)
	w, _ := mw.CreatePart(textproto.MIMEHeader{"Content-Type": {"application/dicom"}})
	w.Write(s.data)
	mw.Close()
	truncated := body.Bytes()[:body.Len()/2]
	if resp, m := post(`multipart/related; type="application/dicom"; boundary=`+mw.Boundary(), truncated, "/studies"); resp.StatusCode != 409 && resp.StatusCode != 400 {
		t.Errorf("truncated body: %d %v", resp.StatusCode, m)
	}
	if resp, _ := post("application/json", []byte("{}"), "/studies"); resp.StatusCode != 415 {
		t.Errorf("application/json: %d", resp.StatusCode)
	}
	if resp, _ := post(`multipart/related; type="application/dicom+json"; boundary=x`, nil, "/studies"); resp.StatusCode != 415 {
		t.Errorf("dicom+json parts: %d", resp.StatusCode)
	}
	if resp, m := stow(t, f.url+"/studies", s.data, make([]byte, 2<<20)); resp.StatusCode != 413 {
		t.Errorf("body over the limit: %d %v", resp.StatusCode, m)
	}
	// Single-part application/dicom, and then the server still serves.
	if resp, m := post("application/dicom", s.data, "/studies"); resp.StatusCode != 200 {
		t.Errorf("application/dicom: %d %v", resp.StatusCode, m)
	}
	if resp, _ := get(t, f.url+"/studies"); resp.StatusCode != 200 {
		t.Errorf("search after bad requests: %d", resp.StatusCode)
	}
}

func TestCORS(t *testing.T) {
	f := newFixture(t)
	req, _ := http.NewRequest("OPTIONS", f.url+"/studies", nil)
	req.Header.Set("Origin", "http://viewer.example")
	req.Header.Set("Access-Control-Request-Method", "GET")
	req.Header.Set("Access-Control-Request-Headers", "accept")
	resp, _ := do(t, req)
	if resp.StatusCode != 204 || resp.Header.Get("Access-Control-Allow-Origin") != "*" || resp.Header.Get("Access-Control-Allow-Headers") != "accept" {
		t.Errorf("preflight: %d %v", resp.StatusCode, resp.Header)
	}
	g := newFixture(t, func(s *dicomweb.Server) { s.CORSOrigins = []string{"http://ok.example"} })
	for origin, want := range map[string]string{"http://ok.example": "http://ok.example", "http://evil.example": ""} {
		resp, _ := get(t, g.url+"/studies", "Origin", origin)
		if got := resp.Header.Get("Access-Control-Allow-Origin"); got != want {
			t.Errorf("origin %s: Allow-Origin %q, want %q", origin, got, want)
		}
	}
}

func TestForwardedBaseURL(t *testing.T) {
	f := newFixture(t)
	s := localSamples(t)[0]
	stow(t, f.url+"/studies", s.data)
	_, b := get(t, f.url+"/studies", "X-Forwarded-Proto", "https", "X-Forwarded-Host", "pacs.example.nhs.uk", "X-Forwarded-Prefix", "/archive")
	if !bytes.Contains(b, []byte(`"https://pacs.example.nhs.uk/archive/dicom-web/studies/`+s.study+`"`)) {
		t.Errorf("RetrieveURL ignores X-Forwarded-*: %s", b)
	}
}

func readPart10(t *testing.T, b []byte) sample {
	t.Helper()
	br := bufio.NewReader(bytes.NewReader(b))
	fm, n, err := dicom.ReadFileMeta(br)
	if err != nil {
		t.Fatalf("not Part-10: %v", err)
	}
	return sample{meta: fm, dataset: b[n:]}
}

func mustJSON(v any) []byte {
	b, err := json.Marshal(v)
	if err != nil {
		panic(err)
	}
	return b
}

// pixelFrames splits a native sample's Pixel Data into its frames.
func pixelFrames(t *testing.T, s sample) [][]byte {
	t.Helper()
	ts, _ := uid.LookupTransferSyntax(s.meta.TransferSyntaxUID)
	sc := dicom.NewScanner(bytes.NewReader(s.dataset), ts, dicom.Limits{})
	if _, err := sc.Identify(); err != nil {
		t.Fatal(err)
	}
	io.Copy(io.Discard, sc.Rest())
	h := sc.Header()
	pd := s.dataset[h.PixelData.Offset : h.PixelData.Offset+h.PixelData.Length]
	n := 1
	fmt.Sscan(h.Dataset.First(tag.NumberOfFrames), &n)
	size := len(pd) / n
	var out [][]byte
	for i := range n {
		out = append(out, pd[i*size:(i+1)*size])
	}
	return out
}

// TestSearchLimit checks that a search cut at the server's maximum says
// so, in a Warning trailer.
func TestSearchLimit(t *testing.T) {
	f := newFixture(t, func(s *dicomweb.Server) { s.MaxMatches = 2 })
	var bodies [][]byte
	for _, s := range localSamples(t) {
		bodies = append(bodies, s.data)
	}
	stow(t, f.url+"/studies", bodies...)
	resp, b := get(t, f.url+"/studies")
	var got []map[string]any
	if err := json.Unmarshal(b, &got); err != nil || len(got) != 2 {
		t.Fatalf("%d matches (%v), want the maximum, 2", len(got), err)
	}
	if w := resp.Trailer.Get("Warning"); !strings.HasPrefix(w, "299 ") {
		t.Errorf("Warning trailer %q, want a 299 warning", w)
	}
	resp, b = get(t, f.url+"/studies?limit=2")
	if err := json.Unmarshal(b, &got); err != nil || len(got) != 2 || resp.Trailer.Get("Warning") != "" {
		t.Errorf("limit=2: %d matches, Warning %q; want 2 and none", len(got), resp.Trailer.Get("Warning"))
	}
}

// TestDeflatedInstance stores pydicom's deflated image_dfl.dcm and checks
// that its metadata locates Pixel Data, and that the bulk data, the frame
// and the rendered image are served by inflating the object on the fly.
func TestDeflatedInstance(t *testing.T) {
	f := newFixture(t)
	s := pydicomSample(t, "image_dfl.dcm")
	if resp, res := stow(t, f.url+"/studies", s.data); resp.StatusCode != 200 {
		t.Fatalf("STOW: %d %v", resp.StatusCode, res)
	}
	// The image is the last 512×512 bytes of the inflated data set.
	inflated, err := io.ReadAll(flate.NewReader(bytes.NewReader(s.dataset)))
	if err != nil {
		t.Fatal(err)
	}
	pixels := inflated[len(inflated)-512*512:]

	resp, b := get(t, f.url+s.path()+"/metadata")
	var docs []map[string]map[string]any
	if err := json.Unmarshal(b, &docs); err != nil || resp.StatusCode != 200 || len(docs) != 1 {
		t.Fatalf("metadata: %d %v %s", resp.StatusCode, err, b)
	}
	uri, _ := docs[0][tag.PixelData.Hex()]["BulkDataURI"].(string)
	if uri == "" {
		t.Fatalf("Pixel Data without a BulkDataURI: %v", docs[0][tag.PixelData.Hex()])
	}
	if resp, b := get(t, uri, "Accept", "application/octet-stream"); resp.StatusCode != 200 || !bytes.Equal(b, pixels) {
		t.Errorf("bulk data: %d, %d bytes, equal %v", resp.StatusCode, len(b), bytes.Equal(b, pixels))
	}
	if resp, b := get(t, uri, "Accept", "application/octet-stream", "Range", "bytes=100-199"); resp.StatusCode != http.StatusPartialContent || !bytes.Equal(b, pixels[100:200]) {
		t.Errorf("bulk data range: %d, %d bytes", resp.StatusCode, len(b))
	}
	if resp, b := get(t, f.url+s.path()+"/frames/1", "Accept", "application/octet-stream"); resp.StatusCode != 200 || !bytes.Equal(b, pixels) {
		t.Errorf("frame 1: %d, %d bytes, equal %v", resp.StatusCode, len(b), bytes.Equal(b, pixels))
	}
	if resp, b := get(t, f.url+s.path()+"/rendered", "Accept", "image/png"); resp.StatusCode != 200 {
		t.Errorf("rendered: %d %s", resp.StatusCode, b)
	}
	beyond := fmt.Sprintf("%s/bulkdata/%d/%d", f.url+s.path(), 2000, len(inflated))
	if resp, _ := get(t, beyond, "Accept", "application/octet-stream"); resp.StatusCode != 404 {
		t.Errorf("bulk data beyond the inflated data set: %d, want 404", resp.StatusCode)
	}
}

// TestUNInstance stores pydicom's rtdose_rle.dcm, whose standard elements,
// identifying UIDs included, are all sent as UN, and checks that it is
// archived and described with the dictionary's VRs.
func TestUNInstance(t *testing.T) {
	f := newFixture(t)
	s := pydicomSample(t, "rtdose_rle.dcm")
	if resp, res := stow(t, f.url+"/studies", s.data); resp.StatusCode != 200 {
		t.Fatalf("STOW: %d %v", resp.StatusCode, res)
	}
	resp, b := get(t, f.url+"/studies?StudyInstanceUID="+s.study)
	if resp.StatusCode != 200 || !strings.Contains(string(b), "RTDOSE") {
		t.Errorf("search: %d %s", resp.StatusCode, b)
	}
	resp, b = get(t, f.url+s.path()+"/metadata")
	var docs []map[string]map[string]any
	if err := json.Unmarshal(b, &docs); err != nil || resp.StatusCode != 200 || len(docs) != 1 {
		t.Fatalf("metadata: %d %v %s", resp.StatusCode, err, b)
	}
	for _, c := range []struct {
		tag tag.Tag
		vr  string
	}{{tag.SOPInstanceUID, "UI"}, {tag.StudyDate, "DA"}, {tag.PatientName, "PN"}, {tag.FrameIncrementPointer, "AT"}, {tag.ReferencedRTPlanSequence, "SQ"}} {
		if vr := docs[0][c.tag.Hex()]["vr"]; vr != c.vr {
			t.Errorf("%v: VR %v, want %s", c.tag, vr, c.vr)
		}
	}
}
