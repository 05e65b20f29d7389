package dicomweb_test

import (
	"bufio"
	"bytes"
	"context"
	"io"
	"mime/multipart"
	"net/http"
	"net/http/httptest"
	"net/textproto"
	"testing"

	"github.com/labstack/echo/v4"

	"github.com/pacsd/pacsd/archive"
	"github.com/pacsd/pacsd/dicom"
	"github.com/pacsd/pacsd/dicom/codec"
	"github.com/pacsd/pacsd/dicom/uid"
	"github.com/pacsd/pacsd/dicomweb"
	"github.com/pacsd/pacsd/index/sqlite"
	"github.com/pacsd/pacsd/internal/dcmgen"
	"github.com/pacsd/pacsd/storage/mem"
)

// ctInstance returns a 512×512 CT slice as a Part-10 file in syntax ts,
// and its path under /dicom-web.
func ctInstance(tb testing.TB, ts string) ([]byte, string) {
	tb.Helper()
	in := dcmgen.Instance{Rows: 512, Columns: 512, Pixels: bytes.NewReader(dcmgen.CTPixels(512, 512))}
	var f bytes.Buffer
	if _, err := dcmgen.WriteFile(&f, &in); err != nil {
		tb.Fatal(err)
	}
	path := "/studies/" + in.Study.UID + "/series/" + in.Series.UID + "/instances/" + in.SOPInstanceUID
	if ts == uid.ExplicitVRLittleEndian {
		return f.Bytes(), path
	}
	br := bufio.NewReader(&f)
	meta, _, err := dicom.ReadFileMeta(br)
	if err != nil {
		tb.Fatal(err)
	}
	var enc bytes.Buffer
	if _, err := codec.New(codec.Options{}).Transcode(context.Background(), &enc, br, meta.TransferSyntaxUID, ts, codec.TranscodeOptions{}); err != nil {
		tb.Fatal(err)
	}
	meta.TransferSyntaxUID = ts
	return append(dicom.AppendFileMeta(nil, meta), enc.Bytes()...), path
}

// BenchmarkRendered times WADO-RS /rendered and /thumbnail of a 512×512
// 16-bit CT slice, stored uncompressed and in JPEG-LS Lossless, through
// the HTTP handler as pacsd serve wires it (in-memory store).
func BenchmarkRendered(b *testing.B) {
	db, err := sqlite.Open(b.Context(), sqlite.Memory)
	if err != nil {
		b.Fatal(err)
	}
	defer db.Close()
	arch := archive.New(archive.Config{Store: mem.New(), Index: db, AETitle: "PACSD"})
	e := echo.New()
	(&dicomweb.Server{Index: db, Archive: arch, AETitle: "PACSD", Codecs: codec.New(codec.Options{})}).Register(e)
	srv := httptest.NewServer(e)
	defer srv.Close()
	for _, tc := range []struct{ name, ts string }{
		{"native", uid.ExplicitVRLittleEndian},
		{"jpegls", uid.JPEGLSLossless},
	} {
		file, path := ctInstance(b, tc.ts)
		var body bytes.Buffer
		mw := multipart.NewWriter(&body)
		w, _ := mw.CreatePart(textproto.MIMEHeader{"Content-Type": {"application/dicom"}})
		w.Write(file)
		mw.Close()
		resp, err := http.Post(srv.URL+"/dicom-web/studies", `multipart/related; type="application/dicom"; boundary=`+mw.Boundary(), &body)
		if err != nil || resp.StatusCode != 200 {
			b.Fatalf("STOW: %v %v", resp, err)
		}
		resp.Body.Close()
		for _, rq := range []struct{ name, suffix string }{
			{"rendered", "/rendered"},
			{"thumbnail", "/thumbnail"},
			{"frame", "/frames/1"},
		} {
			b.Run(tc.name+"/"+rq.name, func(b *testing.B) {
				accept := "image/jpeg"
				if rq.name == "frame" {
					accept = `multipart/related; type="application/octet-stream"`
				}
				for b.Loop() {
					req, _ := http.NewRequest("GET", srv.URL+"/dicom-web"+path+rq.suffix, nil)
					req.Header.Set("Accept", accept)
					resp, err := http.DefaultClient.Do(req)
					if err != nil {
						b.Fatal(err)
					}
					n, _ := io.Copy(io.Discard, resp.Body)
					resp.Body.Close()
					if resp.StatusCode != 200 || n == 0 {
						b.Fatalf("%s: %d, %d bytes", rq.suffix, resp.StatusCode, n)
					}
				}
			})
		}
	}
}
