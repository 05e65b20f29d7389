package webtest

import (
	"bufio"
	"bytes"
	"mime/multipart"
	"net/http"
	"net/textproto"
	"os"
	"path/filepath"
	"testing"

	"github.com/pacsd/pacsd/dicom"
	"github.com/pacsd/pacsd/dicom/codec"
	"github.com/pacsd/pacsd/dicom/uid"
	"github.com/pacsd/pacsd/internal/dcmgen"
	"github.com/pacsd/pacsd/internal/testpeer"
)

// compressedStudy is a study of one CT image stored compressed.
type compressedStudy struct {
	name, path, study string
}

// storeCompressed stores the studies: with dcmsend, which proposes each
// file's own syntax, or by STOW-RS for HTJ2K, which dcmtk 3.6.7 does not
// know.
func (p *pacsd) storeCompressed(t *testing.T, studies []compressedStudy) {
	t.Helper()
	for _, s := range studies {
		if s.name != "htj2k" {
			p.store(t, s.path)
			continue
		}
		b, err := os.ReadFile(s.path)
		if err != nil {
			t.Fatal(err)
		}
		var body bytes.Buffer
		mw := multipart.NewWriter(&body)
		pw, _ := mw.CreatePart(textproto.MIMEHeader{"Content-Type": {"application/dicom"}})
		pw.Write(b)
		mw.Close()
		req, _ := http.NewRequestWithContext(t.Context(), "POST", p.root()+"/studies", &body)
		req.Header.Set("Content-Type", `multipart/related; type="application/dicom"; boundary=`+mw.Boundary())
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != http.StatusOK {
			t.Fatalf("STOW-RS of %s: %s", s.path, resp.Status)
		}
	}
}

// writeCompressedStudies writes three studies of one 256×256 CT image
// each: JPEG-LS lossless made by dcmtk's dcmcjpls, JPEG 2000 lossless by
// GDCM's gdcmconv, and HTJ2K lossless by pacsd's codecs, which neither
// dcmtk nor GDCM writes.
func writeCompressedStudies(t *testing.T) []compressedStudy {
	t.Helper()
	testpeer.Need(t, "dcmcjpls", "gdcmconv")
	dir := t.TempDir()
	var out []compressedStudy
	for _, c := range []struct {
		name string
		cmd  []string
	}{
		{"jpeg-ls", []string{"dcmcjpls"}},
		{"j2k", []string{"gdcmconv", "--j2k"}},
		{"htj2k", nil},
	} {
		in := &dcmgen.Instance{Patient: dcmgen.Patient{Name: "Codec^" + c.name, ID: "CODEC-" + c.name},
			Rows: 256, Columns: 256, InstanceNumber: 1, Series: dcmgen.Series{Modality: "CT", Number: 1}}
		native := filepath.Join(dir, c.name+"-native.dcm")
		f, err := dcmgen.Create(native, in)
		if err != nil {
			t.Fatal(err)
		}
		path := filepath.Join(dir, c.name+".dcm")
		if c.cmd != nil {
			testpeer.RunT(t, c.cmd[0], append(c.cmd[1:], native, path)...)
		} else {
			encodeFile(t, native, path, uid.HTJ2KLossless)
		}
		out = append(out, compressedStudy{c.name, path, f.StudyInstanceUID})
	}
	return out
}

// encodeFile writes the Part-10 file src to dst in transfer syntax ts.
func encodeFile(t *testing.T, src, dst, ts string) {
	t.Helper()
	b, err := os.ReadFile(src)
	if err != nil {
		t.Fatal(err)
	}
	meta, n, err := dicom.ReadFileMeta(bufio.NewReader(bytes.NewReader(b)))
	if err != nil {
		t.Fatal(err)
	}
	from := meta.TransferSyntaxUID
	meta.TransferSyntaxUID = ts
	out := bytes.NewBuffer(dicom.AppendFileMeta(nil, meta))
	if _, err := codec.New(codec.Options{}).Transcode(t.Context(), out, bytes.NewReader(b[n:]), from, ts, codec.TranscodeOptions{}); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(dst, out.Bytes(), 0o644); err != nil {
		t.Fatal(err)
	}
}
