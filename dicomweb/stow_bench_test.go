package dicomweb_test

import (
	"bytes"
	"context"
	"mime/multipart"
	"net/http"
	"net/http/httptest"
	"net/textproto"
	"os"
	"path/filepath"
	"testing"

	"github.com/labstack/echo/v4"

	"github.com/pacsd/pacsd/archive"
	"github.com/pacsd/pacsd/dicomweb"
	"github.com/pacsd/pacsd/index/sqlite"
	"github.com/pacsd/pacsd/internal/dcmgen"
	"github.com/pacsd/pacsd/storage/file"
)

// BenchmarkStow posts 20 instances of 512 KiB per request into the
// filesystem store and a SQLite index, as pacsd serve runs them.
func BenchmarkStow(b *testing.B) {
	dir := b.TempDir()
	db, err := sqlite.Open(context.Background(), filepath.Join(dir, "index.db"))
	if err != nil {
		b.Fatal(err)
	}
	defer db.Close()
	os.Mkdir(filepath.Join(dir, "objects"), 0o755)
	fs, err := file.New(filepath.Join(dir, "objects"))
	if err != nil {
		b.Fatal(err)
	}
	arch := archive.New(archive.Config{Store: fs, Index: db, AETitle: "PACSD"})
	e := echo.New()
	(&dicomweb.Server{Index: db, Archive: arch}).Register(e)
	srv := httptest.NewServer(e)
	defer srv.Close()
	files, err := dcmgen.WriteSeries(b.TempDir(), 20, 512<<10, dcmgen.Instance{})
	if err != nil {
		b.Fatal(err)
	}
	var body bytes.Buffer
	mw := multipart.NewWriter(&body)
	for _, f := range files {
		data, _ := os.ReadFile(f.Path)
		w, _ := mw.CreatePart(textproto.MIMEHeader{"Content-Type": {"application/dicom"}})
		w.Write(data)
	}
	mw.Close()
	b.SetBytes(int64(body.Len()))
	for b.Loop() {
		resp, err := http.Post(srv.URL+"/dicom-web/studies", `multipart/related; type="application/dicom"; boundary=`+mw.Boundary(), bytes.NewReader(body.Bytes()))
		if err != nil || resp.StatusCode != 200 {
			b.Fatalf("%v %v", resp.Status, err)
		}
		resp.Body.Close()
	}
}
