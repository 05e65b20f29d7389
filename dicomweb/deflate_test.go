package dicomweb_test

import (
	"bytes"
	"net/http"
	"strconv"
	"strings"
	"testing"

	"github.com/pacsd/pacsd/dicom"
	"github.com/pacsd/pacsd/dicom/tag"
	"github.com/pacsd/pacsd/dicom/uid"
	"github.com/pacsd/pacsd/internal/dcmgen"
)

// deflatedSample writes a multi-frame instance in Deflated Explicit VR
// Little Endian, and returns it with its frames as stored inflated.
func deflatedSample(t *testing.T, frames int) (sample, [][]byte) {
	t.Helper()
	var plain bytes.Buffer
	if _, err := dcmgen.WriteFile(&plain, &dcmgen.Instance{Rows: 16, Columns: 16, NumberOfFrames: frames}); err != nil {
		t.Fatal(err)
	}
	s := sampleOf(t, "generated", plain.Bytes())
	want := pixelFrames(t, s)
	fm := s.meta
	fm.TransferSyntaxUID = uid.DeflatedExplicitVRLittleEndian
	out := dicom.AppendFileMeta(nil, fm)
	var data bytes.Buffer
	if err := dicom.Transcode(&data, bytes.NewReader(s.dataset), mustSyntax(uid.ExplicitVRLittleEndian), mustSyntax(uid.DeflatedExplicitVRLittleEndian)); err != nil {
		t.Fatal(err)
	}
	return sampleOf(t, "deflated", append(out, data.Bytes()...)), want
}

func mustSyntax(u string) uid.TransferSyntax {
	ts, _ := uid.LookupTransferSyntax(u)
	return ts
}

// TestDeflatedFrames checks that frames of a deflated multi-frame instance
// are served inflated in any order, that a list stepping back more than
// the bound is refused before anything is sent, and that several ranges
// of its bulk data are answered with the whole run.
func TestDeflatedFrames(t *testing.T) {
	f := newFixture(t)
	s, frames := deflatedSample(t, 20)
	if resp, res := stow(t, f.url+"/studies", s.data); resp.StatusCode != 200 {
		t.Fatalf("STOW: %d %v", resp.StatusCode, res)
	}
	resp, b := get(t, f.url+s.path()+"/frames/20,2,11", "Accept", `multipart/related; type="application/octet-stream"`)
	_, ps := parts(t, resp, b)
	if len(ps) != 3 || !bytes.Equal(ps[0].data, frames[19]) || !bytes.Equal(ps[1].data, frames[1]) || !bytes.Equal(ps[2].data, frames[10]) {
		t.Errorf("frames 20,2,11 of a deflated instance: %d parts, or not the frames", len(ps))
	}
	var down []string
	for n := 20; n >= 1; n-- {
		down = append(down, strconv.Itoa(n))
	}
	resp, b = get(t, f.url+s.path()+"/frames/"+strings.Join(down, ","), "Accept", `multipart/related; type="application/octet-stream"`)
	if resp.StatusCode != http.StatusBadRequest || !bytes.Contains(b, []byte("ascending")) {
		t.Errorf("frames 20 down to 1 of a deflated instance: %d %s, want 400", resp.StatusCode, b)
	}
	_, md := get(t, f.url+s.path()+"/metadata")
	uri := bulkDataURI(t, md, tag.PixelData)
	resp, b = get(t, uri, "Accept", "application/octet-stream", "Range", "bytes=300-399,0-9")
	if all := bytes.Join(frames, nil); resp.StatusCode != 200 || !bytes.Equal(b, all) {
		t.Errorf("several ranges of deflated bulk data: %d, %d bytes, want the whole %d", resp.StatusCode, len(b), len(all))
	}
}
