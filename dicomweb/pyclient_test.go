package dicomweb_test

import (
	"bytes"
	"compress/gzip"
	"encoding/json"
	"image/jpeg"
	"image/png"
	"io"
	"net/http"
	"net/url"
	"sort"
	"strconv"
	"strings"
	"testing"

	"github.com/pacsd/pacsd/dicom/tag"
)

// This file replays, request by request, what the Python dicomweb-client
// 0.61 (ImagingDataCommons/dicomweb-client, on python-requests) sends for
// its ordinary calls, and reads the answers as it reads them. What it
// sends, from its source:
//   - every request carries requests' session headers, User-Agent
//     python-requests/…, Accept-Encoding "gzip, deflate", Accept "*/*"
//     unless the call sets one, Connection keep-alive;
//   - GETs (not streamed) and POSTs of up to chunk_size (10^6) bytes set
//     Host to the URL's host name alone, without the port; larger POSTs
//     go chunked with Cache-Control no-cache;
//   - query parameters are sorted by name and each value escaped as
//     quote_plus does; a list becomes the parameter repeated (UID lists,
//     includefield);
//   - searches and metadata accept "application/dicom+json,
//     application/json"; retrieve_instance accepts multipart/related;
//     type="application/dicom"; transfer-syntax=*, retrieve_study the same
//     without transfer-syntax, frames and bulk data by default
//     multipart/related; type="*/*";
//   - STOW-RS bodies are written by hand: each part is CRLF, --boundary,
//     CRLF, its Content-Type, CRLF CRLF, then the file; the body ends with
//     CRLF --boundary-- and no CRLF; the boundary is quoted in the
//     Content-Type;
//   - multipart answers are split at CRLF --boundary, each part's content
//     taken after its first CRLF CRLF; a STOW-RS answer is read as DICOM
//     JSON only if its Content-Type is exactly application/dicom+json.

// pyClient sends requests as the Python dicomweb-client does.
type pyClient struct {
	t    *testing.T
	base string // the client's url: scheme, host, port and prefix
}

const pyBoundary = "0f3cf5c0-70e0-41ef-baef-c6f9f65ec3e1"

// header sets the headers requests sends with every request.
func (c *pyClient) header(req *http.Request, accept string) {
	req.Header.Set("User-Agent", "python-requests/2.32.3")
	req.Header.Set("Accept-Encoding", "gzip, deflate")
	req.Header.Set("Accept", cmpString(accept, "*/*"))
	req.Header.Set("Connection", "keep-alive")
}

func cmpString(s, def string) string {
	if s != "" {
		return s
	}
	return def
}

// pyQuery writes parameters as build_query_string does: sorted by name, a
// list as the parameter repeated, values escaped as quote_plus does.
func pyQuery(params map[string][]string) string {
	names := make([]string, 0, len(params))
	for n := range params {
		names = append(names, n)
	}
	sort.Strings(names)
	var parts []string
	for _, n := range names {
		for _, v := range params[n] {
			parts = append(parts, n+"="+url.QueryEscape(v))
		}
	}
	if len(parts) == 0 {
		return ""
	}
	return "?" + strings.Join(parts, "&")
}

// get sends a GET of a full URL with Host without the port, and returns
// the status, headers and body, decompressed as requests does.
func (c *pyClient) get(rawURL, accept string) (*http.Response, []byte) {
	c.t.Helper()
	req, err := http.NewRequest("GET", rawURL, nil)
	if err != nil {
		c.t.Fatal(err)
	}
	c.header(req, accept)
	req.Host = req.URL.Hostname()
	resp, err := http.DefaultTransport.RoundTrip(req)
	if err != nil {
		c.t.Fatal(err)
	}
	defer resp.Body.Close()
	var r io.Reader = resp.Body
	if resp.Header.Get("Content-Encoding") == "gzip" {
		if r, err = gzip.NewReader(resp.Body); err != nil {
			c.t.Fatal(err)
		}
	}
	b, err := io.ReadAll(r)
	if err != nil {
		c.t.Fatal(err)
	}
	return resp, b
}

// json runs a search or metadata request as _http_get_application_json
// does: an empty body is no result.
func (c *pyClient) json(path string, params map[string][]string) []map[string]any {
	c.t.Helper()
	resp, b := c.get(c.base+path+pyQuery(params), "application/dicom+json, application/json")
	if resp.StatusCode >= 400 {
		c.t.Fatalf("GET %s: %d %s", path, resp.StatusCode, b)
	}
	if len(b) == 0 {
		return nil
	}
	var out []map[string]any
	if err := json.Unmarshal(b, &out); err != nil {
		c.t.Fatalf("GET %s: %v", path, err)
	}
	return out
}

// multipart runs a multipart GET and splits the answer as the client does.
func (c *pyClient) multipart(rawURL, accept string) [][]byte {
	c.t.Helper()
	resp, b := c.get(rawURL, accept)
	if resp.StatusCode != 200 {
		c.t.Fatalf("GET %s with Accept %s: %d %s", rawURL, accept, resp.StatusCode, b)
	}
	return pySplit(c.t, resp.Header.Get("Content-Type"), b)
}

// pySplit splits a multipart body at CRLF --boundary and takes each part's
// content after its first CRLF CRLF, skipping the empty pieces before the
// first part and after the last.
func pySplit(t *testing.T, contentType string, body []byte) [][]byte {
	t.Helper()
	typ, params, ok := strings.Cut(contentType, ";")
	if strings.TrimSpace(strings.ToLower(typ)) != "multipart/related" || !ok {
		t.Fatalf("Content-Type %q is not multipart/related", contentType)
	}
	boundary := ""
	for p := range strings.SplitSeq(params, ";") {
		if k, v, _ := strings.Cut(strings.TrimSpace(p), "="); strings.EqualFold(k, "boundary") {
			boundary = strings.Trim(v, `"`)
		}
	}
	var out [][]byte
	for _, piece := range bytes.Split(body, []byte("\r\n--"+boundary)) {
		if len(piece) == 0 || bytes.Equal(piece, []byte("--")) || bytes.Equal(piece, []byte("\r\n")) || bytes.HasPrefix(piece, []byte("--\r\n")) {
			continue
		}
		i := bytes.Index(piece, []byte("\r\n\r\n"))
		if i < 0 {
			t.Fatalf("a part without CRLF CRLF: %.100q", piece)
		}
		out = append(out, piece[i+4:])
	}
	return out
}

// store posts files as store_instances does: by hand-made multipart, with
// Host without the port, or chunked past chunk_size.
func (c *pyClient) store(files ...[]byte) (int, map[string]any) {
	c.t.Helper()
	var body bytes.Buffer
	for _, f := range files {
		body.WriteString("\r\n--" + pyBoundary + "\r\nContent-Type: application/dicom\r\n\r\n")
		body.Write(f)
	}
	body.WriteString("\r\n--" + pyBoundary + "--")
	var req *http.Request
	if body.Len() > 1e6 {
		// Chunked: requests sets Host itself, with the port.
		req, _ = http.NewRequest("POST", c.base+"/studies", io.MultiReader(&body))
		c.header(req, "")
		req.Header.Set("Cache-Control", "no-cache")
		req.Header.Set("Connection", "Keep-Alive")
		req.ContentLength = -1
	} else {
		req, _ = http.NewRequest("POST", c.base+"/studies", bytes.NewReader(body.Bytes()))
		c.header(req, "")
		req.Host = req.URL.Hostname()
	}
	req.Header.Set("Content-Type", `multipart/related; type="application/dicom"; boundary="`+pyBoundary+`"`)
	resp, err := http.DefaultTransport.RoundTrip(req)
	if err != nil {
		c.t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	if resp.Header.Get("Content-Type") != "application/dicom+json" {
		c.t.Fatalf("STOW-RS answer of type %q, which the client does not read: %d %s", resp.Header.Get("Content-Type"), resp.StatusCode, b)
	}
	var m map[string]any
	if err := json.Unmarshal(b, &m); err != nil {
		c.t.Fatal(err)
	}
	return resp.StatusCode, m
}

// TestPythonDicomwebClient replays the Python dicomweb-client's calls:
// store, searches with lists, paging to the end, retrieval, metadata and
// the bulk data it points at, frames and rendered images.
func TestPythonDicomwebClient(t *testing.T) {
	f := newFixture(t)
	c := &pyClient{t: t, base: f.url}
	s := localSamples(t)
	big := bigImage(t, 1024)
	jpg := pydicomSample(t, "SC_rgb_jpeg_dcmtk.dcm")

	// store_instances: files as read (preamble), one as pydicom 3 writes
	// a new data set (no preamble), and a body past chunk_size.
	if code, res := c.store(s[0].data, s[1].data[132:], jpg.data); code != 200 || seqLen(res, tag.ReferencedSOPSequence) != 3 {
		t.Fatalf("store_instances: %d %v", code, res)
	}
	if code, res := c.store(s[2].data, big.data); code != 200 || seqLen(res, tag.ReferencedSOPSequence) != 2 {
		t.Fatalf("store_instances, chunked: %d %v", code, res)
	}

	// search_for_studies with a filter, fields and a limit.
	pid := readDataset(t, s[0]).First(tag.PatientID)
	got := c.json("/studies", map[string][]string{"PatientID": {pid}, "includefield": {"StudyDescription", "PatientAge"}, "limit": {"10"}})
	if len(got) != 1 || got[0][tag.PatientAge.Hex()] == nil {
		t.Errorf("search_for_studies(PatientID, fields): %d results %v", len(got), got)
	}
	// search_for_instances with a list of UIDs, sent as the key repeated.
	got = c.json("/instances", map[string][]string{"SOPInstanceUID": {s[0].id, s[2].id, big.id}})
	if len(got) != 3 {
		t.Errorf("search_for_instances(SOPInstanceUID list): %d results, want 3", len(got))
	}
	// search_for_series with get_remaining: offset from 0 until an
	// empty answer.
	total := 0
	for offset := 0; ; {
		page := c.json("/series", map[string][]string{"limit": {"2"}, "offset": {strconv.Itoa(offset)}})
		if len(page) == 0 {
			break
		}
		total += len(page)
		offset += len(page)
		if total > 10 {
			t.Fatal("paging does not end")
		}
	}
	if total != 5 {
		t.Errorf("search_for_series(get_remaining): %d series, want 5", total)
	}

	// retrieve_instance and retrieve_study.
	inst := c.multipart(f.url+s[1].path(), `multipart/related; type="application/dicom"; transfer-syntax=*`)
	if len(inst) != 1 || !bytes.Equal(readPart10(t, inst[0]).dataset, s[1].dataset) {
		t.Errorf("retrieve_instance: %d parts, or not the stored data set", len(inst))
	}
	if study := c.multipart(f.url+"/studies/"+s[0].study, `multipart/related; type="application/dicom"`); len(study) != 1 {
		t.Errorf("retrieve_study: %d parts", len(study))
	}

	// retrieve_instance_metadata, then retrieve_bulkdata of its Pixel
	// Data by the URI it gives, with Host still without the port.
	md := c.json(s[2].path()+"/metadata", nil)
	if len(md) != 1 {
		t.Fatalf("retrieve_instance_metadata: %d documents", len(md))
	}
	pd, _ := md[0][tag.PixelData.Hex()].(map[string]any)
	uri, _ := pd["BulkDataURI"].(string)
	bulk := c.multipart(uri, `multipart/related; type="*/*"`)
	frames := pixelFrames(t, s[2])
	if len(bulk) != 1 || !bytes.Equal(bulk[0], bytes.Join(frames, nil)) {
		t.Errorf("retrieve_bulkdata(%s): %d parts, or not the pixel data", uri, len(bulk))
	}

	// retrieve_instance_frames: the default, octet-stream in explicit VR
	// little endian, and JPEG.
	fr := c.multipart(f.url+s[2].path()+"/frames/1,3", `multipart/related; type="*/*"`)
	if len(fr) != 2 || !bytes.Equal(fr[0], frames[0]) || !bytes.Equal(fr[1], frames[2]) {
		t.Errorf("retrieve_instance_frames([1, 3]): %d parts", len(fr))
	}
	fr = c.multipart(f.url+s[2].path()+"/frames/2", `multipart/related; type="application/octet-stream"; transfer-syntax=1.2.840.10008.1.2.1`)
	if len(fr) != 1 || !bytes.Equal(fr[0], frames[1]) {
		t.Errorf("retrieve_instance_frames(octet-stream): %d parts", len(fr))
	}
	fr = c.multipart(f.url+jpg.path()+"/frames/1", `multipart/related; type="image/jpeg"`)
	if len(fr) != 1 {
		t.Fatalf("retrieve_instance_frames(image/jpeg): %d parts", len(fr))
	}
	if _, err := jpeg.Decode(bytes.NewReader(fr[0])); err != nil {
		t.Errorf("JPEG frame: %v", err)
	}
	fr = c.multipart(f.url+jpg.path()+"/frames/1", `multipart/related; type="*/*"`)
	if len(fr) != 1 {
		t.Errorf("retrieve_instance_frames of a JPEG instance by default: %d parts", len(fr))
	}

	// retrieve_instance_rendered: without media types (requests' */*),
	// with image/png, and with a quality parameter.
	resp, b := c.get(f.url+s[0].path()+"/rendered", "")
	if _, err := jpeg.Decode(bytes.NewReader(b)); resp.StatusCode != 200 || err != nil {
		t.Errorf("retrieve_instance_rendered(): %d %v", resp.StatusCode, err)
	}
	resp, b = c.get(f.url+s[0].path()+"/rendered", "image/png")
	if _, err := png.Decode(bytes.NewReader(b)); resp.StatusCode != 200 || err != nil {
		t.Errorf("retrieve_instance_rendered(image/png): %d %v", resp.StatusCode, err)
	}
	resp, b = c.get(f.url+jpg.path()+"/frames/1/rendered"+pyQuery(map[string][]string{"quality": {"95"}}), "image/jpeg")
	if _, err := jpeg.Decode(bytes.NewReader(b)); resp.StatusCode != 200 || err != nil {
		t.Errorf("retrieve_instance_frames_rendered(quality=95): %d %v", resp.StatusCode, err)
	}
}
