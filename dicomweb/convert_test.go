package dicomweb_test

import (
	"bytes"
	"context"
	"encoding/json"
	"image"
	"image/jpeg"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/pacsd/pacsd/dicom"
	"github.com/pacsd/pacsd/dicom/codec"
	"github.com/pacsd/pacsd/dicom/tag"
	"github.com/pacsd/pacsd/dicom/uid"
	"github.com/pacsd/pacsd/dicomweb"
	"github.com/pacsd/pacsd/internal/testpeer"
)

func withCodecs(s *dicomweb.Server) { s.Codecs = codec.New(codec.Options{}) }

// nativeOf converts a Part-10 object to Explicit VR Little Endian with
// the codecs, for comparing pixel values.
func nativeOf(t *testing.T, s sample) sample {
	t.Helper()
	if s.meta.TransferSyntaxUID == uid.ExplicitVRLittleEndian {
		return s
	}
	var b bytes.Buffer
	if _, err := codec.New(codec.Options{}).Transcode(context.Background(), &b, bytes.NewReader(s.dataset), s.meta.TransferSyntaxUID, uid.ExplicitVRLittleEndian, codec.TranscodeOptions{}); err != nil {
		t.Fatalf("decoding %s: %v", s.meta.TransferSyntaxUID, err)
	}
	s.meta.TransferSyntaxUID = uid.ExplicitVRLittleEndian
	s.dataset = b.Bytes()
	return s
}

// TestRetrieveConverted checks WADO-RS retrieval of a JPEG-LS instance:
// Explicit VR Little Endian by default, every syntax pacsd encodes when
// asked, the same pixel values whichever way it went, and 406 or 400
// where the request cannot be met.
func TestRetrieveConverted(t *testing.T) {
	f := newFixture(t, withCodecs)
	jls := pydicomSample(t, "MR_small_jpeg_ls_lossless.dcm")
	want := pixelFrames(t, pydicomSample(t, "MR_small.dcm"))
	if resp, res := stow(t, f.url+"/studies", jls.data); resp.StatusCode != 200 {
		t.Fatalf("STOW: %d %v", resp.StatusCode, res)
	}
	for _, tt := range []struct{ accept, syntax string }{
		{`multipart/related; type="application/dicom"`, uid.ExplicitVRLittleEndian},
		{`multipart/related; type="application/dicom"; transfer-syntax=*`, uid.JPEGLSLossless},
		{`multipart/related; type="application/dicom"; transfer-syntax=1.2.840.10008.1.2`, uid.ImplicitVRLittleEndian},
		{`multipart/related; type="application/dicom"; transfer-syntax=1.2.840.10008.1.2.4.90`, uid.JPEG2000Lossless},
		{`multipart/related; type="application/dicom"; transfer-syntax=1.2.840.10008.1.2.4.201`, uid.HTJ2KLossless},
		{`multipart/related; type="application/dicom"; transfer-syntax=1.2.840.10008.1.2.4.70`, uid.JPEGLosslessSV1},
		{`multipart/related; type="application/dicom"; transfer-syntax=1.2.840.10008.1.2.5`, uid.RLELossless},
		{`application/dicom`, uid.ExplicitVRLittleEndian},
	} {
		t.Run(tt.syntax, func(t *testing.T) {
			resp, b := get(t, f.url+jls.path(), "Accept", tt.accept)
			if resp.StatusCode != 200 {
				t.Fatalf("%d %s", resp.StatusCode, b)
			}
			if tt.accept == "application/dicom" {
				if ct := resp.Header.Get("Content-Type"); ct != "application/dicom; transfer-syntax="+tt.syntax {
					t.Errorf("Content-Type %q", ct)
				}
			} else {
				_, ps := parts(t, resp, b)
				if len(ps) != 1 || ps[0].contentType != "application/dicom; transfer-syntax="+tt.syntax {
					t.Fatalf("parts %d, first %q", len(ps), ps[0].contentType)
				}
				b = ps[0].data
			}
			got := readPart10(t, b)
			if got.meta.TransferSyntaxUID != tt.syntax {
				t.Fatalf("File Meta says %s", got.meta.TransferSyntaxUID)
			}
			if frames := pixelFrames(t, nativeOf(t, got)); len(frames) != 1 || !bytes.Equal(frames[0], want[0]) {
				t.Errorf("pixel values differ from the original's")
			}
		})
	}
	for _, tt := range []struct {
		syntax string
		status int
	}{
		{uid.JPEGBaseline8Bit, 406}, // 16-bit signed pixels: JPEG Baseline cannot
		{"1.2.840.10008.1.2.4.100", 406},
		{"1.2.3.4", 400},
	} {
		resp, b := get(t, f.url+jls.path(), "Accept", `multipart/related; type="application/dicom"; transfer-syntax=`+tt.syntax)
		if resp.StatusCode != tt.status {
			t.Errorf("transfer-syntax=%s: %d %s, want %d", tt.syntax, resp.StatusCode, b, tt.status)
		}
	}
}

// TestRetrieveLossyCopy checks that a lossy compression asked for is a
// new instance that says it is lossy.
func TestRetrieveLossyCopy(t *testing.T) {
	f := newFixture(t, withCodecs)
	rle := pydicomSample(t, "SC_rgb_rle.dcm")
	if resp, res := stow(t, f.url+"/studies", rle.data); resp.StatusCode != 200 {
		t.Fatalf("STOW: %d %v", resp.StatusCode, res)
	}
	resp, b := get(t, f.url+rle.path(), "Accept", `multipart/related; type="application/dicom"; transfer-syntax=1.2.840.10008.1.2.4.50`)
	if resp.StatusCode != 200 {
		t.Fatalf("%d %s", resp.StatusCode, b)
	}
	_, ps := parts(t, resp, b)
	got := readPart10(t, ps[0].data)
	ts, _ := uid.LookupTransferSyntax(uid.JPEGBaseline8Bit)
	ds, err := dicom.Parse(got.dataset, ts)
	if err != nil {
		t.Fatal(err)
	}
	copyUID := codec.LossyInstanceUID(rle.id, uid.JPEGBaseline8Bit)
	if ds.First(tag.SOPInstanceUID) != copyUID || got.meta.MediaStorageSOPInstanceUID != copyUID {
		t.Errorf("SOP Instance UID %s (meta %s), want %s", ds.First(tag.SOPInstanceUID), got.meta.MediaStorageSOPInstanceUID, copyUID)
	}
	if ds.First(tag.LossyImageCompression) != "01" {
		t.Errorf("Lossy Image Compression %q", ds.First(tag.LossyImageCompression))
	}
}

// TestFramesConverted checks frames in every media type, and
// decompressed as application/octet-stream, against the original pixels.
func TestFramesConverted(t *testing.T) {
	f := newFixture(t, withCodecs)
	jls := pydicomSample(t, "MR_small_jpeg_ls_lossless.dcm")
	want := pixelFrames(t, pydicomSample(t, "MR_small.dcm"))[0]
	if resp, res := stow(t, f.url+"/studies", jls.data); resp.StatusCode != 200 {
		t.Fatalf("STOW: %d %v", resp.StatusCode, res)
	}
	im := codec.Image{Rows: 64, Columns: 64, SamplesPerPixel: 1, BitsAllocated: 16, BitsStored: 16, PixelRepresentation: 1, PhotometricInterpretation: "MONOCHROME2"}
	reg := codec.New(codec.Options{})
	for _, tt := range []struct{ accept, contentType string }{
		{`multipart/related; type="application/octet-stream"`, "application/octet-stream; transfer-syntax=" + uid.ExplicitVRLittleEndian},
		{`multipart/related; type="application/octet-stream"; transfer-syntax=*`, "application/octet-stream; transfer-syntax=" + uid.JPEGLSLossless},
		{`multipart/related; type="image/jls"`, "image/jls; transfer-syntax=" + uid.JPEGLSLossless},
		{`multipart/related; type="image/jp2"`, "image/jp2; transfer-syntax=" + uid.JPEG2000Lossless},
		{`multipart/related; type="image/jp2"; transfer-syntax=1.2.840.10008.1.2.4.91`, "image/jp2; transfer-syntax=" + uid.JPEG2000},
		{`multipart/related; type="image/jphc"`, "image/jphc; transfer-syntax=" + uid.HTJ2KLossless},
		{`multipart/related; type="image/jpeg"`, "image/jpeg; transfer-syntax=" + uid.JPEGLosslessSV1},
		{`multipart/related; type="image/dicom-rle"`, "image/dicom-rle; transfer-syntax=" + uid.RLELossless},
		{`image/jphc`, "image/jphc; transfer-syntax=" + uid.HTJ2KLossless},
		{`application/octet-stream`, "application/octet-stream; transfer-syntax=" + uid.ExplicitVRLittleEndian},
	} {
		t.Run(tt.accept, func(t *testing.T) {
			resp, b := get(t, f.url+jls.path()+"/frames/1", "Accept", tt.accept)
			if resp.StatusCode != 200 {
				t.Fatalf("%d %s", resp.StatusCode, b)
			}
			ct := resp.Header.Get("Content-Type")
			if strings.HasPrefix(ct, "multipart/") {
				_, ps := parts(t, resp, b)
				if len(ps) != 1 {
					t.Fatalf("%d parts", len(ps))
				}
				ct, b = ps[0].contentType, ps[0].data
			}
			if ct != tt.contentType {
				t.Fatalf("Content-Type %q, want %q", ct, tt.contentType)
			}
			ts := ct[strings.Index(ct, "=")+1:]
			native, _, err := reg.TranscodeFrame(nil, b, ts, uid.ExplicitVRLittleEndian, im)
			if err != nil {
				t.Fatalf("decoding the frame: %v", err)
			}
			lossy := ts == uid.JPEG2000
			if !lossy && !bytes.Equal(native, want) {
				t.Errorf("pixel values differ from the original's")
			}
		})
	}
	for _, accept := range []string{
		`multipart/related; type="image/jpeg"; transfer-syntax=1.2.840.10008.1.2.4.50`, // 16-bit signed
		`multipart/related; type="image/jls"; transfer-syntax=1.2.840.10008.1.2.4.90`,  // not a JPEG-LS syntax
		`multipart/related; type="image/gif"`,
	} {
		if resp, b := get(t, f.url+jls.path()+"/frames/1", "Accept", accept); resp.StatusCode != 406 {
			t.Errorf("%s: %d %s, want 406", accept, resp.StatusCode, b)
		}
	}
}

// TestCurlConverted retrieves converted objects and frames with curl, as
// an operator checks a server by hand: the response headers say what
// the body is, and the body is it.
func TestCurlConverted(t *testing.T) {
	testpeer.Need(t, "curl")
	f := newFixture(t, withCodecs)
	jls := pydicomSample(t, "MR_small_jpeg_ls_lossless.dcm")
	want := pixelFrames(t, pydicomSample(t, "MR_small.dcm"))[0]
	if resp, res := stow(t, f.url+"/studies", jls.data); resp.StatusCode != 200 {
		t.Fatalf("STOW: %d %v", resp.StatusCode, res)
	}
	im := codec.Image{Rows: 64, Columns: 64, SamplesPerPixel: 1, BitsAllocated: 16, BitsStored: 16, PixelRepresentation: 1, PhotometricInterpretation: "MONOCHROME2"}
	for _, tt := range []struct{ path, accept, syntax string }{
		{"", "application/dicom", uid.ExplicitVRLittleEndian},
		{"", "application/dicom; transfer-syntax=1.2.840.10008.1.2.4.202", uid.HTJ2KLosslessRPCL},
		{"/frames/1", "image/jp2", uid.JPEG2000Lossless},
		{"/frames/1", "image/jphc", uid.HTJ2KLossless},
		{"/frames/1", "image/jpeg", uid.JPEGLosslessSV1},
		{"/frames/1", "image/jls", uid.JPEGLSLossless},
		{"/frames/1", "application/octet-stream", uid.ExplicitVRLittleEndian},
	} {
		t.Run(tt.accept+tt.path, func(t *testing.T) {
			dir := t.TempDir()
			body, head := filepath.Join(dir, "body"), filepath.Join(dir, "head")
			out, err := exec.CommandContext(t.Context(), "curl", "-sS", "--fail", "-H", "Accept: "+tt.accept,
				"-D", head, "-o", body, f.url+jls.path()+tt.path).CombinedOutput()
			if err != nil {
				t.Fatalf("curl: %v: %s", err, out)
			}
			h, _ := os.ReadFile(head)
			typ, _, _ := strings.Cut(tt.accept, ";")
			if !bytes.Contains(bytes.ToLower(h), []byte("content-type: "+typ+"; transfer-syntax="+tt.syntax+"\r\n")) {
				t.Fatalf("headers:\n%s", h)
			}
			b, _ := os.ReadFile(body)
			var native []byte
			if tt.path == "" {
				native = pixelFrames(t, nativeOf(t, readPart10(t, b)))[0]
			} else if native, _, err = codec.New(codec.Options{}).TranscodeFrame(nil, b, tt.syntax, uid.ExplicitVRLittleEndian, im); err != nil {
				t.Fatal(err)
			}
			if !bytes.Equal(native, want) {
				t.Errorf("pixel values differ from the original's")
			}
		})
	}
}

// TestBulkDataCompressedPixels checks the bulk data of compressed Pixel
// Data: its frames in their media type, converted to another, or the
// decompressed value as one octet-stream part.
func TestBulkDataCompressedPixels(t *testing.T) {
	f := newFixture(t, withCodecs)
	jls := pydicomSample(t, "MR_small_jpeg_ls_lossless.dcm")
	want := pixelFrames(t, pydicomSample(t, "MR_small.dcm"))[0]
	if resp, res := stow(t, f.url+"/studies", jls.data); resp.StatusCode != 200 {
		t.Fatalf("STOW: %d %v", resp.StatusCode, res)
	}
	_, b := get(t, f.url+jls.path()+"/metadata", "Accept", "application/dicom+json")
	var md []map[string]struct{ BulkDataURI string }
	if err := json.Unmarshal(b, &md); err != nil || len(md) != 1 || md[0]["7FE00010"].BulkDataURI == "" {
		t.Fatalf("metadata: %v %s", err, b)
	}
	uri := md[0]["7FE00010"].BulkDataURI
	im := codec.Image{Rows: 64, Columns: 64, SamplesPerPixel: 1, BitsAllocated: 16, BitsStored: 16, PixelRepresentation: 1, PhotometricInterpretation: "MONOCHROME2"}
	for _, tt := range []struct{ accept, contentType string }{
		{`multipart/related; type="image/jls"`, "image/jls; transfer-syntax=" + uid.JPEGLSLossless},
		{`multipart/related; type="image/jphc"`, "image/jphc; transfer-syntax=" + uid.HTJ2KLossless},
		{`multipart/related; type="application/octet-stream"`, "application/octet-stream; transfer-syntax=" + uid.ExplicitVRLittleEndian},
		{`application/octet-stream`, "application/octet-stream; transfer-syntax=" + uid.ExplicitVRLittleEndian},
	} {
		t.Run(tt.accept, func(t *testing.T) {
			resp, b := get(t, uri, "Accept", tt.accept)
			if resp.StatusCode != 200 {
				t.Fatalf("%d %s", resp.StatusCode, b)
			}
			ct := resp.Header.Get("Content-Type")
			if strings.HasPrefix(ct, "multipart/") {
				_, ps := parts(t, resp, b)
				if len(ps) != 1 {
					t.Fatalf("%d parts", len(ps))
				}
				ct, b = ps[0].contentType, ps[0].data
			}
			if ct != tt.contentType {
				t.Fatalf("Content-Type %q, want %q", ct, tt.contentType)
			}
			native, _, err := codec.New(codec.Options{}).TranscodeFrame(nil, b, ct[strings.Index(ct, "=")+1:], uid.ExplicitVRLittleEndian, im)
			if err != nil || !bytes.Equal(native, want) {
				t.Errorf("pixel values differ from the original's (%v)", err)
			}
		})
	}
}

// TestBulkDataCompressedMultiframe checks that the decompressed bulk data
// of a multi-frame image is its whole native Pixel Data value.
func TestBulkDataCompressedMultiframe(t *testing.T) {
	f := newFixture(t, withCodecs)
	rle := pydicomSample(t, "SC_rgb_rle_2frame.dcm")
	want := bytes.Join(pixelFrames(t, nativeOf(t, rle)), nil)
	if resp, res := stow(t, f.url+"/studies", rle.data); resp.StatusCode != 200 {
		t.Fatalf("STOW: %d %v", resp.StatusCode, res)
	}
	_, b := get(t, f.url+rle.path()+"/metadata", "Accept", "application/dicom+json")
	var md []map[string]struct{ BulkDataURI string }
	if err := json.Unmarshal(b, &md); err != nil || len(md) != 1 {
		t.Fatalf("metadata: %v %s", err, b)
	}
	resp, b := get(t, md[0]["7FE00010"].BulkDataURI, "Accept", `multipart/related; type="application/octet-stream"`)
	if _, ps := parts(t, resp, b); len(ps) != 1 || !bytes.Equal(ps[0].data, want) {
		t.Errorf("%d parts, want one of the %d bytes of the native pixel data", len(ps), len(want))
	}
	resp, b = get(t, md[0]["7FE00010"].BulkDataURI, "Accept", `multipart/related; type="image/jls"`)
	_, ps := parts(t, resp, b)
	if len(ps) != 2 {
		t.Fatalf("%d image/jls parts, want one a frame", len(ps))
	}
	// Each part is its own frame, though the server converts them one
	// after the other in the same buffers.
	frames := pixelFrames(t, nativeOf(t, rle))
	im := codec.Image{Rows: 100, Columns: 100, SamplesPerPixel: 3, BitsAllocated: 8, BitsStored: 8, PhotometricInterpretation: "RGB"}
	for i, p := range ps {
		native, _, err := codec.New(codec.Options{}).TranscodeFrame(nil, p.data, uid.JPEGLSLossless, uid.ExplicitVRLittleEndian, im)
		if err != nil || !bytes.Equal(native, frames[i]) {
			t.Errorf("image/jls part %d: pixel values differ from frame %d's (%v)", i+1, i+1, err)
		}
	}
	if resp, _ := get(t, md[0]["7FE00010"].BulkDataURI, "Accept", `image/dicom-rle`); resp.StatusCode != 406 {
		t.Errorf("two frames as one image/dicom-rle body: %d, want 406", resp.StatusCode)
	}
}

// TestRenderedWithCodecs checks that a rendered JPEG encoded by the
// codecs shows what image/jpeg's encoding of the same rendering shows.
func TestRenderedWithCodecs(t *testing.T) {
	s := pydicomSample(t, "MR_small.dcm")
	var imgs [2]image.Image
	for i, configure := range []func(*dicomweb.Server){func(*dicomweb.Server) {}, withCodecs} {
		f := newFixture(t, configure)
		if resp, res := stow(t, f.url+"/studies", s.data); resp.StatusCode != 200 {
			t.Fatalf("STOW: %d %v", resp.StatusCode, res)
		}
		resp, b := get(t, f.url+s.path()+"/rendered?quality=95", "Accept", "image/jpeg")
		if resp.StatusCode != 200 || resp.Header.Get("Content-Type") != "image/jpeg" {
			t.Fatalf("%d %s", resp.StatusCode, resp.Header.Get("Content-Type"))
		}
		img, err := jpeg.Decode(bytes.NewReader(b))
		if err != nil {
			t.Fatal(err)
		}
		imgs[i] = img
	}
	if imgs[0].Bounds() != imgs[1].Bounds() {
		t.Fatalf("bounds %v and %v", imgs[0].Bounds(), imgs[1].Bounds())
	}
	worst := 0
	for y := imgs[0].Bounds().Min.Y; y < imgs[0].Bounds().Max.Y; y++ {
		for x := imgs[0].Bounds().Min.X; x < imgs[0].Bounds().Max.X; x++ {
			a, _, _, _ := imgs[0].At(x, y).RGBA()
			b, _, _, _ := imgs[1].At(x, y).RGBA()
			worst = max(worst, int(a>>8)-int(b>>8), int(b>>8)-int(a>>8))
		}
	}
	if worst > 8 {
		t.Errorf("the two encodings differ by up to %d", worst)
	}
}
