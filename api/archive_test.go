package api

import (
	"archive/zip"
	"bytes"
	"context"
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/labstack/echo/v4"

	"github.com/pacsd/pacsd/index"
	"github.com/pacsd/pacsd/storage"
)

// knownStudyIndex is fakeIndex that finds no patient for other studies.
type knownStudyIndex struct{ fakeIndex }

func (x knownStudyIndex) StudyPatient(ctx context.Context, study string) (*index.Patient, error) {
	if study != "1.2.3" {
		return nil, index.ErrNotFound
	}
	return x.fakeIndex.StudyPatient(ctx, study)
}

// memObjects serves each instance's SOP Instance UID, repeated, as its
// object; broken names one that fails halfway through.
type memObjects struct{ broken string }

type memObject struct {
	r    *bytes.Reader
	fail bool
}

func (o *memObject) Close() error                              { return nil }
func (o *memObject) Size() int64                               { return o.r.Size() }
func (o *memObject) Seek(off int64, whence int) (int64, error) { return o.r.Seek(off, whence) }
func (o *memObject) ReadAt(b []byte, off int64) (int, error)   { return o.r.ReadAt(b, off) }
func (o *memObject) Read(b []byte) (int, error) {
	if o.fail && int64(o.r.Len()) < o.r.Size()/2 {
		return 0, errors.New("disk on fire")
	}
	return o.r.Read(b[:min(len(b), 512)])
}

func (m memObjects) Open(ctx context.Context, in *index.Instance) (storage.Object, error) {
	return &memObject{r: bytes.NewReader([]byte(strings.Repeat(in.SOPInstanceUID, 1000))), fail: in.SOPInstanceUID == m.broken}, nil
}

func archiveServer(t *testing.T, objs memObjects) *httptest.Server {
	s := &Server{Index: knownStudyIndex{}, Objects: objs}
	e := echo.New()
	s.Register(e)
	srv := httptest.NewServer(e)
	t.Cleanup(srv.Close)
	return srv
}

func TestArchive(t *testing.T) {
	srv := archiveServer(t, memObjects{})
	resp, err := http.Get(srv.URL + "/api/studies/1.2.3/archive.zip")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != 200 || resp.Header.Get("Content-Type") != "application/zip" ||
		resp.Header.Get("Content-Disposition") != `attachment; filename="1.2.3.zip"` || resp.ContentLength != -1 {
		t.Fatalf("%s, headers %v, length %d", resp.Status, resp.Header, resp.ContentLength)
	}
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	zr, err := zip.NewReader(bytes.NewReader(b), int64(len(b)))
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, f := range zr.File {
		names = append(names, f.Name)
		if f.Method != zip.Store {
			t.Errorf("%s: method %d, want stored", f.Name, f.Method)
		}
		rc, err := f.Open()
		if err != nil {
			t.Fatal(err)
		}
		body, err := io.ReadAll(rc) // checks the CRC too
		rc.Close()
		sop := strings.TrimSuffix(f.Name[strings.LastIndexByte(f.Name, '/')+1:], ".dcm")
		if err != nil || string(body) != strings.Repeat(sop, 1000) {
			t.Errorf("%s: %d bytes, %v", f.Name, len(body), err)
		}
	}
	if got := strings.Join(names, " "); got != "1.2.3/1.2.3.1/1.2.3.1.1.dcm 1.2.3/1.2.3.1/1.2.3.1.2.dcm 1.2.3/1.2.3.2/1.2.3.2.1.dcm" {
		t.Errorf("names %s", got)
	}
}

func TestArchiveHeadAndErrors(t *testing.T) {
	srv := archiveServer(t, memObjects{})
	for _, tt := range []struct {
		method, path string
		want         int
	}{
		{"HEAD", "/api/studies/1.2.3/archive.zip", 200},
		{"GET", "/api/studies/9.9/archive.zip", 404},
		{"HEAD", "/api/studies/9.9/archive.zip", 404},
		{"GET", "/api/studies/1..2/archive.zip", 400},
		{"GET", "/api/studies/1.2.3/archive.zip?ticket=nonsense", 401},
		{"POST", "/api/studies/9.9/archive-ticket", 404},
	} {
		t.Run(tt.method+" "+tt.path, func(t *testing.T) {
			req, _ := http.NewRequest(tt.method, srv.URL+tt.path, nil)
			resp, err := http.DefaultClient.Do(req)
			if err != nil {
				t.Fatal(err)
			}
			b, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			if resp.StatusCode != tt.want {
				t.Errorf("%s %s", resp.Status, b)
			}
			if tt.method == "HEAD" && len(b) != 0 {
				t.Errorf("HEAD answered %d bytes", len(b))
			}
		})
	}
}

// TestArchiveBroken checks that an object failing halfway leaves the
// client with a transfer that fails, not a ZIP that looks complete.
func TestArchiveBroken(t *testing.T) {
	srv := archiveServer(t, memObjects{broken: "1.2.3.1.2"})
	resp, err := http.Get(srv.URL + "/api/studies/1.2.3/archive.zip")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err == nil {
		if _, zerr := zip.NewReader(bytes.NewReader(b), int64(len(b))); zerr == nil {
			t.Fatal("a failed archive reads as a complete ZIP")
		}
		t.Fatal("the transfer of a failed archive ended cleanly")
	}
}

func TestArchiveTicket(t *testing.T) {
	srv := archiveServer(t, memObjects{})
	var tk struct {
		URL       string `json:"url"`
		ExpiresIn int    `json:"expires_in"`
	}
	call(t, srv, "POST", "/api/studies/1.2.3/archive-ticket", "{}", 200, &tk)
	if !strings.HasPrefix(tk.URL, "/api/studies/1.2.3/archive.zip?ticket=") || tk.ExpiresIn != 60 {
		t.Fatalf("ticket %+v", tk)
	}
	get := func() int {
		resp, err := http.Get(srv.URL + tk.URL)
		if err != nil {
			t.Fatal(err)
		}
		io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		return resp.StatusCode
	}
	if s := get(); s != 200 {
		t.Fatalf("first use: %d", s)
	}
	if s := get(); s != 401 {
		t.Errorf("second use: %d, want 401", s)
	}
	call(t, srv, "POST", "/api/studies/1.2.3/archive-ticket", "{}", 200, &tk)
	other := strings.Replace(tk.URL, "1.2.3", "1.2.4", 1)
	if resp, err := http.Get(srv.URL + other); err != nil || resp.StatusCode != 401 {
		t.Errorf("a ticket for another study: %v %v", resp.Status, err)
	}
}
