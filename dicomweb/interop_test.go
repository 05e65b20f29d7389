package dicomweb_test

import (
	"bytes"
	"encoding/json"
	"encoding/xml"
	"fmt"
	"image/png"
	"io"
	"mime/multipart"
	"net"
	"net/http"
	"net/textproto"
	"net/url"
	"strings"
	"testing"

	"github.com/pacsd/pacsd/dicom"
	"github.com/pacsd/pacsd/dicom/tag"
	"github.com/pacsd/pacsd/dicom/uid"
	"github.com/pacsd/pacsd/dicomweb"
)

// These tests keep the interoperability defects that independent DICOMweb
// clients found fixed: each request is one a real client sends.

// searchCount runs a search and returns its number of matches, failing
// on anything but 200 or 204.
func searchCount(t *testing.T, url string, header ...string) int {
	t.Helper()
	resp, b := get(t, url, header...)
	switch resp.StatusCode {
	case http.StatusNoContent:
		return 0
	case http.StatusOK:
		var got []map[string]any
		if err := json.Unmarshal(b, &got); err != nil {
			t.Fatalf("%s: %v", url, err)
		}
		return len(got)
	}
	t.Fatalf("%s: %d %s", url, resp.StatusCode, b)
	return 0
}

// TestSearchListSpellings checks that a list of UIDs matches the same in
// each spelling PS3.18 §8.3.4.1 allows: commas, backslashes and repeated
// parameters (which the Python dicomweb-client sends), and that a key
// repeated with the same value is that value.
func TestSearchListSpellings(t *testing.T) {
	f := newFixture(t)
	s := localSamples(t)
	stow(t, f.url+"/studies", s[0].data, s[1].data, s[2].data)
	a, b := s[0].id, s[2].id
	for _, q := range []string{
		"SOPInstanceUID=" + a + "," + b,
		"SOPInstanceUID=" + a + "%5C" + b,
		"SOPInstanceUID=" + a + "&SOPInstanceUID=" + b,
		"00080018=" + a + "&SOPInstanceUID=" + b + "," + a,
	} {
		if n := searchCount(t, f.url+"/instances?"+q); n != 2 {
			t.Errorf("%s: %d matches, want 2", q, n)
		}
	}
	pid := readDataset(t, s[0]).First(tag.PatientID)
	if n := searchCount(t, f.url+"/studies?PatientID="+url.QueryEscape(pid)+"&PatientID="+url.QueryEscape(pid)); n != 1 {
		t.Errorf("PatientID repeated with one value: %d matches, want 1", n)
	}
	// A list longer than the documented bound is refused with the
	// reason, not failed with a database error.
	var many strings.Builder
	for i := range 40000 {
		fmt.Fprintf(&many, ",1.2.826.0.1.%d", i)
	}
	resp, body := get(t, f.url+"/instances?SOPInstanceUID="+many.String()[1:])
	if resp.StatusCode != http.StatusBadRequest || !bytes.Contains(body, []byte("1000")) {
		t.Errorf("40,000 UIDs: %d %.200s, want 400 naming the bound", resp.StatusCode, body)
	}
	// A key the index does not match on is named in a warning, not
	// silently ignored.
	resp, _ = get(t, f.url+"/studies?00091001=x")
	if w := resp.Header.Get("Warning"); resp.StatusCode != 200 || !strings.HasPrefix(w, "299 ") || !strings.Contains(w, "00091001") {
		t.Errorf("search on a private tag: %d, Warning %q", resp.StatusCode, w)
	}
	// A study in the query other than the path's matches nothing.
	if n := searchCount(t, f.url+"/studies/"+s[0].study+"/series?StudyInstanceUID="+s[1].study); n != 0 {
		t.Errorf("study in the path and another in the query: %d matches", n)
	}
}

// TestWildcardAccept checks that multipart/related; type="*/*", the
// dicomweb-client's default for frames and bulk data, selects each
// resource's default media type (PS3.18 §8.7).
func TestWildcardAccept(t *testing.T) {
	f := newFixture(t)
	native := localSamples(t)[0]
	jpg := pydicomSample(t, "SC_rgb_jpeg_dcmtk.dcm")
	stow(t, f.url+"/studies", native.data, jpg.data)
	frames := pixelFrames(t, native)
	for _, c := range []struct {
		name, path, accept, partType string
		want                         []byte
	}{
		{"native frame", native.path() + "/frames/1", `multipart/related; type="*/*"`, "application/octet-stream", frames[0]},
		{"native frame, application/*", native.path() + "/frames/1", `multipart/related; type="application/*"`, "application/octet-stream", frames[0]},
		{"JPEG frame", jpg.path() + "/frames/1", `multipart/related; type="*/*"`, "image/jpeg", nil},
		{"JPEG frame, image/*", jpg.path() + "/frames/1", `multipart/related; type="image/*"`, "image/jpeg", nil},
		{"instance", native.path(), `multipart/related; type="*/*"`, "application/dicom", nil},
	} {
		t.Run(c.name, func(t *testing.T) {
			resp, b := get(t, f.url+c.path, "Accept", c.accept)
			if resp.StatusCode != 200 {
				t.Fatalf("%d %s", resp.StatusCode, b)
			}
			_, ps := parts(t, resp, b)
			if len(ps) != 1 || !strings.HasPrefix(ps[0].contentType, c.partType) {
				t.Fatalf("parts %+v, want one of %s", ps, c.partType)
			}
			if c.want != nil && !bytes.Equal(ps[0].data, c.want) {
				t.Errorf("part differs from the frame")
			}
		})
	}
	// Bulk data by the URI the metadata gives.
	_, b := get(t, f.url+native.path()+"/metadata")
	uri := bulkDataURI(t, b, tag.PixelData)
	resp, b := get(t, uri, "Accept", `multipart/related; type="*/*"`)
	if _, ps := parts(t, resp, b); len(ps) != 1 || !bytes.Equal(ps[0].data, bytes.Join(frames, nil)) {
		t.Errorf("bulk data with type=*/*: %d parts", len(ps))
	}
}

// TestAcceptParameter checks that the accept query parameter (PS3.18
// §8.3.3.1) takes precedence over the Accept header: dcm4che's wadors sent
// Java's default header beside accept=image/png.
func TestAcceptParameter(t *testing.T) {
	f := newFixture(t)
	s := localSamples(t)[0]
	stow(t, f.url+"/studies", s.data)
	javaDefault := "text/html, image/gif, image/jpeg, *; q=.2, */*; q=.2"
	resp, b := get(t, f.url+s.path()+"/rendered?accept=image/png", "Accept", javaDefault)
	if _, err := png.Decode(bytes.NewReader(b)); resp.StatusCode != 200 || err != nil || resp.Header.Get("Content-Type") != "image/png" {
		t.Errorf("rendered?accept=image/png: %d %s %v", resp.StatusCode, resp.Header.Get("Content-Type"), err)
	}
	if resp, _ := get(t, f.url+s.path()+"/rendered?accept=image/jp2", "Accept", "image/jpeg"); resp.StatusCode != http.StatusNotAcceptable {
		t.Errorf("rendered?accept=image/jp2 with Accept: image/jpeg: %d, want 406", resp.StatusCode)
	}
	// In a query "+" stands for a space unless escaped; both spellings
	// of application/dicom+json are taken.
	for _, q := range []string{"accept=application/dicom%2Bjson", "accept=application/dicom+json"} {
		if resp, b := get(t, f.url+"/studies?"+q, "Accept", "text/html"); resp.StatusCode != 200 {
			t.Errorf("search with %s: %d %s", q, resp.StatusCode, b)
		}
		if resp, b := get(t, f.url+s.path()+"/metadata?"+q, "Accept", "text/html"); resp.StatusCode != 200 {
			t.Errorf("metadata with %s: %d %s", q, resp.StatusCode, b)
		}
	}
	q := url.Values{"accept": {`multipart/related; type="application/octet-stream"`}}
	resp, b = get(t, f.url+s.path()+"/frames/1?"+q.Encode(), "Accept", "image/jpeg")
	if _, ps := parts(t, resp, b); len(ps) != 1 {
		t.Errorf("frames with accept parameter: %d parts", len(ps))
	}
}

// TestURLsReachServer checks the URLs in responses: with a Host header
// without a port (the Python dicomweb-client's) they carry the port the
// request came in on, and with a public URL they start with it.
func TestURLsReachServer(t *testing.T) {
	f := newFixture(t)
	s := localSamples(t)[2]
	stow(t, f.url+"/studies", s.data)
	req, _ := http.NewRequest("GET", f.url+s.path()+"/metadata", nil)
	req.Host = "127.0.0.1"
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	uri := bulkDataURI(t, body, tag.PixelData)
	u, err := url.Parse(uri)
	if err != nil {
		t.Fatal(err)
	}
	_, port, _ := net.SplitHostPort(strings.TrimPrefix(f.host, "http://"))
	if u.Host != "127.0.0.1:"+port {
		t.Errorf("BulkDataURI %s for Host: 127.0.0.1, want host 127.0.0.1:%s", uri, port)
	}
	if resp, _ := get(t, uri, "Accept", "application/octet-stream"); resp.StatusCode != 200 {
		t.Errorf("the BulkDataURI does not reach the server: %d", resp.StatusCode)
	}

	// Behind a proxy that passes Host on, the listener's port is not
	// the client's.
	req, _ = http.NewRequest("GET", f.url+"/studies", nil)
	req.Host = "pacs.example.org"
	req.Header.Set("X-Forwarded-Proto", "https")
	resp, err = http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	body, _ = io.ReadAll(resp.Body)
	resp.Body.Close()
	if !bytes.Contains(body, []byte(`"https://pacs.example.org/dicom-web/studies/`)) {
		t.Errorf("RetrieveURL behind a proxy: %.300s", body)
	}

	g := newFixture(t, func(s *dicomweb.Server) { s.PublicURL = "https://pacs.example.org/archive/" })
	_, res := stow(t, g.url+"/studies", s.data)
	if !strings.Contains(fmt.Sprint(res), "https://pacs.example.org/archive/dicom-web/studies/"+s.study) {
		t.Errorf("STOW response does not use the public URL: %v", res)
	}
	_, b := get(t, g.url+s.path()+"/metadata", "X-Forwarded-Host", "evil.example")
	if uri := bulkDataURI(t, b, tag.PixelData); !strings.HasPrefix(uri, "https://pacs.example.org/archive/dicom-web/studies/") {
		t.Errorf("BulkDataURI %s does not start with the public URL", uri)
	}
	for _, bad := range []string{"pacs.example.org", "ftp://x", "https://x/?q=1", "https://user@x/"} {
		if dicomweb.CheckPublicURL(bad) == nil {
			t.Errorf("CheckPublicURL(%q) accepts it", bad)
		}
	}
}

// TestStoreWithoutPreamble checks that a Part-10 file whose File Meta
// Information starts at byte 0 (pydicom 3's dcmwrite without a preamble),
// or with "DICM" at byte 0, is stored.
func TestStoreWithoutPreamble(t *testing.T) {
	f := newFixture(t)
	s := localSamples(t)
	resp, res := stow(t, f.url+"/studies", s[0].data[132:], s[1].data[128:])
	if resp.StatusCode != 200 || seqLen(res, tag.ReferencedSOPSequence) != 2 {
		t.Fatalf("STOW without preambles: %d %v", resp.StatusCode, res)
	}
	resp, b := get(t, f.url+s[0].path(), "Accept", `multipart/related; type="application/dicom"; transfer-syntax=*`)
	if _, ps := parts(t, resp, b); len(ps) != 1 || !bytes.Equal(readPart10(t, ps[0].data).dataset, s[0].dataset) {
		t.Errorf("the data set stored without a preamble is not the one sent")
	}
}

// nativeModel is enough of PS3.19's Native DICOM Model to read a STOW-RS
// response with encoding/xml, independently of how pacsd writes it.
type nativeModel struct {
	XMLName    xml.Name       `xml:"http://dicom.nema.org/PS3.19/models/NativeDICOM NativeDicomModel"`
	Attributes []xmlAttribute `xml:"DicomAttribute"`
}

type xmlAttribute struct {
	Tag     string `xml:"tag,attr"`
	VR      string `xml:"vr,attr"`
	Keyword string `xml:"keyword,attr"`
	Values  []struct {
		Number int    `xml:"number,attr"`
		Text   string `xml:",chardata"`
	} `xml:"Value"`
	Items []struct {
		Number     int            `xml:"number,attr"`
		Attributes []xmlAttribute `xml:"DicomAttribute"`
	} `xml:"Item"`
}

func (a xmlAttribute) find(keyword string) (xmlAttribute, bool) {
	for _, it := range a.Items {
		for _, x := range it.Attributes {
			if x.Keyword == keyword {
				return x, true
			}
		}
	}
	return xmlAttribute{}, false
}

// TestStoreXMLResponse checks that a STOW-RS request that accepts only
// application/dicom+xml is answered in the Native DICOM Model of PS3.19,
// and that one accepting neither XML nor JSON is refused before anything
// is stored.
func TestStoreXMLResponse(t *testing.T) {
	f := newFixture(t)
	s := localSamples(t)[0]
	body, ct := multipartBody(t, s.data, []byte("not DICOM"))
	req, _ := http.NewRequest("POST", f.url+"/studies", bytes.NewReader(body))
	req.Header.Set("Content-Type", ct)
	req.Header.Set("Accept", "application/dicom+xml")
	resp, res := do(t, req)
	if resp.StatusCode != http.StatusAccepted || resp.Header.Get("Content-Type") != "application/dicom+xml" {
		t.Fatalf("STOW with Accept: application/dicom+xml: %d %q", resp.StatusCode, resp.Header.Get("Content-Type"))
	}
	var m nativeModel
	if err := xml.Unmarshal([]byte(res["text"].(string)), &m); err != nil {
		t.Fatalf("response is not Native DICOM Model XML: %v\n%s", err, res["text"])
	}
	byKeyword := map[string]xmlAttribute{}
	for _, a := range m.Attributes {
		byKeyword[a.Keyword] = a
	}
	ref, failed := byKeyword["ReferencedSOPSequence"], byKeyword["FailedSOPSequence"]
	if ref.Tag != "00081199" || ref.VR != "SQ" || len(ref.Items) != 1 || ref.Items[0].Number != 1 {
		t.Fatalf("ReferencedSOPSequence: %+v", ref)
	}
	if x, ok := ref.find("ReferencedSOPInstanceUID"); !ok || len(x.Values) != 1 || x.Values[0].Text != s.id || x.Values[0].Number != 1 || x.VR != "UI" {
		t.Errorf("ReferencedSOPInstanceUID: %+v, want %s", x, s.id)
	}
	if x, ok := ref.find("RetrieveURL"); !ok || !strings.HasSuffix(x.Values[0].Text, s.path()) {
		t.Errorf("RetrieveURL: %+v", x)
	}
	if x, ok := failed.find("FailureReason"); !ok || x.VR != "US" || len(x.Values) != 1 || x.Values[0].Text != "49152" {
		t.Errorf("FailureReason: %+v, want 49152 (C000)", x)
	}

	g := newFixture(t)
	req, _ = http.NewRequest("POST", g.url+"/studies", bytes.NewReader(body))
	req.Header.Set("Content-Type", ct)
	req.Header.Set("Accept", "text/html")
	if resp, _ := do(t, req); resp.StatusCode != http.StatusNotAcceptable {
		t.Errorf("STOW with Accept: text/html: %d, want 406", resp.StatusCode)
	}
	if n := searchCount(t, g.url+"/studies"); n != 0 {
		t.Errorf("a refused STOW stored %d studies", n)
	}
}

// bulkDataURI returns the BulkDataURI of attribute tg in the first
// instance of a metadata response.
func bulkDataURI(t *testing.T, metadata []byte, tg tag.Tag) string {
	t.Helper()
	var docs []map[string]map[string]any
	if err := json.Unmarshal(metadata, &docs); err != nil || len(docs) == 0 {
		t.Fatalf("metadata: %v %.200s", err, metadata)
	}
	uri, _ := docs[0][tg.Hex()]["BulkDataURI"].(string)
	if uri == "" {
		t.Fatalf("no BulkDataURI for %s", tg)
	}
	return uri
}

// readDataset returns the header of a sample.
func readDataset(t *testing.T, s sample) *dicom.Dataset {
	t.Helper()
	ts, _ := uid.LookupTransferSyntax(s.meta.TransferSyntaxUID)
	sc := dicom.NewScanner(bytes.NewReader(s.dataset), ts, dicom.Limits{})
	defer sc.Close()
	if _, err := sc.Identify(); err != nil {
		t.Fatal(err)
	}
	io.Copy(io.Discard, sc.Rest())
	return sc.Header().Dataset
}

// multipartBody builds the body of a STOW-RS request and its Content-Type.
func multipartBody(t *testing.T, parts ...[]byte) ([]byte, string) {
	t.Helper()
	var body bytes.Buffer
	mw := multipart.NewWriter(&body)
	for _, p := range parts {
		w, err := mw.CreatePart(textproto.MIMEHeader{"Content-Type": {"application/dicom"}})
		if err != nil {
			t.Fatal(err)
		}
		w.Write(p)
	}
	mw.Close()
	return body.Bytes(), `multipart/related; type="application/dicom"; boundary=` + mw.Boundary()
}
