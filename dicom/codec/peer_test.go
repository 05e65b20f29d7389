package codec

import (
	"bufio"
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"

	"github.com/pacsd/pacsd/dicom"
	"github.com/pacsd/pacsd/dicom/tag"
	"github.com/pacsd/pacsd/dicom/uid"
	"github.com/pacsd/pacsd/internal/testpeer"
)

// file is a Part-10 file read back: its syntax and data set.
type file struct {
	ts string
	ds []byte
}

func readPart10(t *testing.T, path string) file {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	br := bufio.NewReader(bytes.NewReader(b))
	meta, n, err := dicom.ReadFileMeta(br)
	if err != nil {
		t.Fatalf("%s: %v", path, err)
	}
	return file{ts: meta.TransferSyntaxUID, ds: b[n:]}
}

// decoded is the native pixel data of a data set and what describes it.
type decoded struct {
	im     Image
	frames int
	pix    []byte
}

// decodeWith converts a data set to explicit VR little endian with reg
// and returns its pixels.
func decodeWith(t *testing.T, reg *Registry, f file) decoded {
	t.Helper()
	var out bytes.Buffer
	if _, err := reg.Transcode(context.Background(), &out, bytes.NewReader(f.ds), f.ts, uid.ExplicitVRLittleEndian, TranscodeOptions{}); err != nil {
		t.Fatalf("decode %s: %v", uid.Name(f.ts), err)
	}
	return pixelsOf(t, out.Bytes())
}

// pixelsOf reads the native pixels of an explicit VR little endian data set.
func pixelsOf(t *testing.T, ds []byte) decoded {
	t.Helper()
	els := parseTop(t, ds)
	u := func(tg tag.Tag) int {
		if v := els[tg].value; len(v) >= 2 {
			return int(binary.LittleEndian.Uint16(v))
		}
		return 0
	}
	d := decoded{im: Image{
		Rows: u(tag.Rows), Columns: u(tag.Columns), SamplesPerPixel: u(tag.SamplesPerPixel),
		BitsAllocated: u(tag.BitsAllocated), BitsStored: u(tag.BitsStored), PixelRepresentation: u(tag.PixelRepresentation),
		PhotometricInterpretation: text(els[tag.PhotometricInterpretation]), PlanarConfiguration: u(tag.PlanarConfiguration),
	}, frames: 1, pix: els[tag.PixelData].value}
	if n, err := strconv.Atoi(strings.TrimSpace(text(els[tag.NumberOfFrames]))); err == nil && n > 0 {
		d.frames = n
	}
	if d.im.SamplesPerPixel == 3 && d.im.PlanarConfiguration == 1 {
		n := int(d.im.FrameSize())
		var pix []byte
		for f := range d.frames {
			pix = append(pix, interleave(nil, d.pix[f*n:(f+1)*n], d.im.Rows*d.im.Columns, d.im.bytesPerSample())...)
		}
		d.pix, d.im.PlanarConfiguration = pix, 0
	}
	d.pix = d.pix[:min(len(d.pix), int(d.im.FrameSize())*d.frames)]
	return d
}

// diff returns the largest difference between two decodings' samples,
// cut to Bits Stored, or an error if they differ in shape.
func diff(a, b decoded) (int, error) {
	if a.im.Rows != b.im.Rows || a.im.Columns != b.im.Columns || a.im.SamplesPerPixel != b.im.SamplesPerPixel ||
		a.frames != b.frames || len(a.pix) != len(b.pix) {
		return 0, fmt.Errorf("shape %+v ×%d (%d bytes) against %+v ×%d (%d bytes)", a.im, a.frames, len(a.pix), b.im, b.frames, len(b.pix))
	}
	if a.im.Photometric() != b.im.Photometric() {
		return 0, fmt.Errorf("photometric interpretation %s against %s", a.im.PhotometricInterpretation, b.im.PhotometricInterpretation)
	}
	// Peers may widen Bits Stored; the bits both keep are compared.
	im := a.im
	im.BitsStored = min(a.im.BitsStored, b.im.BitsStored)
	ma, mb := masked(a.pix, im), masked(b.pix, im)
	worst := 0
	for i := range ma {
		d := int(ma[i]) - int(mb[i])
		worst = max(worst, d, -d)
	}
	return worst, nil
}

// peerDecode decompresses the file at path with a peer and returns its
// pixels: dcmtk for JPEG, JPEG-LS and RLE, GDCM for JPEG 2000.
func peerDecode(t *testing.T, reg *Registry, path, ts string) decoded {
	t.Helper()
	out := filepath.Join(t.TempDir(), "peer.dcm")
	switch ts {
	case uid.JPEGBaseline8Bit, uid.JPEGExtended12Bit, uid.JPEGLossless, uid.JPEGLosslessSV1:
		testpeer.RunT(t, "dcmdjpeg", path, out)
	case uid.JPEGLSLossless, uid.JPEGLSNearLossless:
		testpeer.RunT(t, "dcmdjpls", path, out)
	case uid.RLELossless:
		testpeer.RunT(t, "dcmdrle", path, out)
	case uid.JPEG2000, uid.JPEG2000Lossless:
		testpeer.RunT(t, "gdcmconv", "--raw", path, out)
	default:
		t.Fatalf("no peer decodes %s", uid.Name(ts))
	}
	return decodeWith(t, reg, readPart10(t, out))
}

// TestPydicomCorpus decodes every compressed file of pydicom's corpus
// that a codec here handles and compares the pixels with a peer's.
func TestPydicomCorpus(t *testing.T) {
	testpeer.Need(t, "dcmdjpeg", "dcmdjpls", "dcmdrle", "gdcmconv")
	reg := New(Options{})
	// Files dcmtk cannot read: an implicit VR data set in an explicit VR
	// syntax, which GDCM and pacsd read as what it is.
	gdcmOnly := map[string]bool{"SC_rgb_jpeg.dcm": true}
	// Files whose code streams no decoder accepts: pacsd must refuse
	// them with ErrMalformed, as GDCM refuses them.
	broken := map[string]bool{"JPEG2000-embedded-sequence-delimiter.dcm": true}
	n := 0
	for _, path := range testpeer.PydicomFilesT(t) {
		f := readPart10Maybe(path)
		if f == nil {
			continue
		}
		c, ok := reg.Lookup(f.ts)
		if !ok {
			continue
		}
		base := filepath.Base(path)
		t.Run(base, func(t *testing.T) {
			if broken[base] {
				_, err := reg.Transcode(context.Background(), io.Discard, bytes.NewReader(f.ds), f.ts, uid.ExplicitVRLittleEndian, TranscodeOptions{})
				if !errors.Is(err, ErrMalformed) {
					t.Errorf("decoding gives %v, want ErrMalformed", err)
				}
				return
			}
			if !bytes.Contains(f.ds, []byte{0xE0, 0x7F, 0x10, 0x00}) {
				t.Skip("no pixel data")
			}
			n++
			got := decodeWith(t, reg, *f)
			var want decoded
			if gdcmOnly[base] {
				out := filepath.Join(t.TempDir(), "peer.dcm")
				testpeer.RunT(t, "gdcmconv", "--raw", path, out)
				want = decodeWith(t, reg, readPart10(t, out))
			} else {
				want = peerDecode(t, reg, path, f.ts)
			}
			d, err := diff(got, want)
			if err != nil {
				t.Fatal(err)
			}
			tol := 0
			if c.Lossy() {
				tol = 1
			}
			if d > tol {
				t.Errorf("largest difference from the peer's decoding %d, tolerance %d", d, tol)
			}
		})
	}
	if n < 20 {
		t.Errorf("only %d compressed files decoded", n)
	}
}

func readPart10Maybe(path string) *file {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil
	}
	meta, n, err := dicom.ReadFileMeta(bufio.NewReader(bytes.NewReader(b)))
	if err != nil {
		return nil
	}
	return &file{ts: meta.TransferSyntaxUID, ds: b[n:]}
}

// peerEncoders make compressed files from native originals.
var peerEncoders = []struct {
	name string
	ts   string
	cmd  []string // the input and output paths follow
	gray bool     // only for grayscale images of more than 8 bits
}{
	{"dcmcjpeg baseline", uid.JPEGBaseline8Bit, []string{"dcmcjpeg", "+eb"}, false},
	{"dcmcjpeg extended", uid.JPEGExtended12Bit, []string{"dcmcjpeg", "+ee"}, false},
	{"dcmcjpeg lossless sv1", uid.JPEGLosslessSV1, []string{"dcmcjpeg", "+e1"}, false},
	{"dcmcjpeg lossless sv6", uid.JPEGLossless, []string{"dcmcjpeg", "+el", "+sv", "6"}, false},
	{"dcmcjpeg lossless sv4", uid.JPEGLossless, []string{"dcmcjpeg", "+el", "+sv", "4"}, false},
	{"dcmcjpls lossless", uid.JPEGLSLossless, []string{"dcmcjpls", "+el"}, false},
	{"dcmcjpls near-lossless", uid.JPEGLSNearLossless, []string{"dcmcjpls", "+en"}, false},
	{"dcmcrle", uid.RLELossless, []string{"dcmcrle"}, false},
	{"gdcmconv j2k lossless", uid.JPEG2000Lossless, []string{"gdcmconv", "--j2k"}, false},
	{"gdcmconv j2k lossy", uid.JPEG2000, []string{"gdcmconv", "--j2k", "--lossy", "-r", "10"}, false},
	{"gdcmconv jpegls lossless", uid.JPEGLSLossless, []string{"gdcmconv", "--jpegls"}, false},
	{"gdcmconv jpegls lossy", uid.JPEGLSNearLossless, []string{"gdcmconv", "--jpegls", "--lossy", "-e", "2"}, false},
}

// originals returns native files to compress: pydicom's CT and MR and
// pacsd-made 8-bit, 12-bit and colour images, one of them multi-frame.
func originals(t *testing.T) map[string]string {
	t.Helper()
	dir := t.TempDir()
	out := map[string]string{}
	for _, p := range testpeer.PydicomFilesT(t) {
		switch filepath.Base(p) {
		case "CT_small.dcm", "MR_small.dcm":
			out[filepath.Base(p)] = p
		}
	}
	for name, im := range map[string]Image{
		"gray8":  {Rows: 64, Columns: 80, SamplesPerPixel: 1, BitsAllocated: 8, BitsStored: 8, PhotometricInterpretation: Monochrome2},
		"gray12": {Rows: 70, Columns: 64, SamplesPerPixel: 1, BitsAllocated: 16, BitsStored: 12, PhotometricInterpretation: Monochrome2},
		"rgb8":   {Rows: 48, Columns: 64, SamplesPerPixel: 3, BitsAllocated: 8, BitsStored: 8, PhotometricInterpretation: RGB},
	} {
		frames := 1
		if name == "gray12" {
			frames = 3
		}
		ds, _ := nativeDataset(im, frames, 3)
		out[name] = writePart10(t, dir, name+".dcm", ds, uid.ExplicitVRLittleEndian)
	}
	return out
}

// TestPeerEncodings compresses native originals with dcmtk and GDCM and
// checks pacsd's decoding: the originals bit for bit when lossless, the
// peer's own decoding ±1 when lossy.
func TestPeerEncodings(t *testing.T) {
	testpeer.Need(t, "dcmcjpeg", "dcmcjpls", "dcmcrle", "gdcmconv", "dcmdjpeg", "dcmdjpls", "dcmdrle")
	reg := New(Options{})
	for name, path := range originals(t) {
		orig := decodeWith(t, reg, readPart10(t, path))
		for _, e := range peerEncoders {
			t.Run(name+"/"+e.name, func(t *testing.T) {
				if orig.im.BitsStored > 8 && (e.ts == uid.JPEGBaseline8Bit) || orig.im.BitsStored > 12 && e.ts == uid.JPEGExtended12Bit {
					t.Skip("more bits than the process codes")
				}
				if orig.im.Signed() && (e.ts == uid.JPEGExtended12Bit || e.ts == uid.JPEGBaseline8Bit) {
					t.Skip("dcmtk does not encode signed pixels lossily")
				}
				if orig.im.Signed() && e.cmd[0] == "dcmcjpls" && e.ts == uid.JPEGLSNearLossless {
					t.Skip("dcmcjpls does not encode signed pixels near-lossless")
				}
				out := filepath.Join(t.TempDir(), "peer.dcm")
				testpeer.RunT(t, e.cmd[0], append(e.cmd[1:], path, out)...)
				f := readPart10(t, out)
				if f.ts != e.ts {
					t.Fatalf("%s wrote %s", e.cmd[0], uid.Name(f.ts))
				}
				got := decodeWith(t, reg, f)
				c, _ := reg.Lookup(e.ts)
				want, tol := orig, 0
				if c.Lossy() {
					want, tol = peerDecode(t, reg, out, e.ts), 1
				}
				d, err := diff(got, want)
				if err != nil {
					t.Fatal(err)
				}
				if d > tol {
					t.Errorf("largest difference %d, tolerance %d", d, tol)
				}
			})
		}
	}
}

// TestEncodingsDecodeWithPeers encodes native originals with pacsd in
// every syntax and decodes the result with dcmtk or GDCM (OpenJPH's
// ojph_expand for HTJ2K): the same pixels as pacsd's own decoding, which
// for lossless syntaxes are the originals.
func TestEncodingsDecodeWithPeers(t *testing.T) {
	testpeer.Need(t, "dcmdjpeg", "dcmdjpls", "dcmdrle", "gdcmconv", "ojph_expand")
	reg := New(Options{})
	ctx := context.Background()
	for name, path := range originals(t) {
		src := readPart10(t, path)
		orig := decodeWith(t, reg, src)
		for _, ts := range reg.Syntaxes() {
			c, _ := reg.Lookup(ts)
			t.Run(name+"/"+uid.Name(ts), func(t *testing.T) {
				var enc bytes.Buffer
				_, err := reg.Transcode(ctx, &enc, bytes.NewReader(src.ds), src.ts, ts, TranscodeOptions{})
				if err != nil {
					t.Skipf("pacsd does not encode it: %v", err)
				}
				f := file{ts: ts, ds: enc.Bytes()}
				ours := decodeWith(t, reg, f)
				if !c.Lossy() {
					if d, err := diff(ours, orig); err != nil || d != 0 {
						t.Fatalf("pacsd's own decoding differs from the original by %d (%v)", d, err)
					}
				}
				var theirs decoded
				switch ts {
				case uid.HTJ2K, uid.HTJ2KLossless, uid.HTJ2KLosslessRPCL:
					theirs = ojphExpand(t, f, ours)
				default:
					p := writePart10(t, t.TempDir(), "pacsd.dcm", f.ds, ts)
					theirs = peerDecode(t, reg, p, ts)
				}
				d, err := diff(theirs, ours)
				if err != nil {
					t.Fatal(err)
				}
				if d > 0 && !(c.Lossy() && d <= 1) {
					t.Errorf("the peer's decoding differs from pacsd's by %d", d)
				}
			})
		}
	}
}

// ojphExpand decodes each frame of an HTJ2K data set with OpenJPH's
// ojph_expand, to PGM or PPM, and returns the pixels as like describes
// them.
func ojphExpand(t *testing.T, f file, like decoded) decoded {
	t.Helper()
	els := parseTop(t, f.ds)
	frags := els[tag.PixelData].frags
	if len(frags) != like.frames+1 {
		t.Fatalf("%d fragments for %d frames", len(frags), like.frames)
	}
	out := like
	out.pix = nil
	dir := t.TempDir()
	ext := ".pgm"
	if like.im.SamplesPerPixel == 3 {
		ext = ".ppm"
	}
	for i, fr := range frags[1:] {
		in := filepath.Join(dir, fmt.Sprintf("%d.j2c", i))
		o := filepath.Join(dir, fmt.Sprintf("%d%s", i, ext))
		if err := os.WriteFile(in, fr, 0o644); err != nil {
			t.Fatal(err)
		}
		testpeer.RunT(t, "ojph_expand", "-i", in, "-o", o)
		b, err := os.ReadFile(o)
		if err != nil {
			t.Fatal(err)
		}
		out.pix = append(out.pix, readPNM(t, b, like.im)...)
	}
	return out
}

// readPNM returns the samples of a binary PGM or PPM as a native frame.
func readPNM(t *testing.T, b []byte, im Image) []byte {
	t.Helper()
	// Header: magic, width, height, maxval, each followed by whitespace.
	fields, pos := 0, 0
	for fields < 4 && pos < len(b) {
		for pos < len(b) && (b[pos] == ' ' || b[pos] == '\n' || b[pos] == '\r' || b[pos] == '\t') {
			pos++
		}
		for pos < len(b) && !(b[pos] == ' ' || b[pos] == '\n' || b[pos] == '\r' || b[pos] == '\t') {
			pos++
		}
		fields++
	}
	head := strings.Fields(string(b[:pos]))
	maxval, _ := strconv.Atoi(head[3])
	data := b[pos+1:]
	n := im.Rows * im.Columns * im.SamplesPerPixel
	out := make([]byte, n*im.bytesPerSample())
	for i := range n {
		v := 0
		if maxval > 255 {
			v = int(data[2*i])<<8 | int(data[2*i+1])
		} else {
			v = int(data[i])
		}
		if im.BitsAllocated == 8 {
			out[i] = byte(v)
		} else {
			binary.LittleEndian.PutUint16(out[2*i:], uint16(v))
		}
	}
	return out
}

// TestJ2KPixelRepresentationMismatch: pydicom's file whose code stream
// says unsigned 13-bit samples in an image of signed ones decodes, as
// pydicom decodes it, to signed values (pydicom's reference values).
func TestJ2KPixelRepresentationMismatch(t *testing.T) {
	var path string
	for _, p := range testpeer.PydicomFilesT(t) {
		if filepath.Base(p) == "J2K_pixelrep_mismatch.dcm" {
			path = p
		}
	}
	if path == "" {
		t.Fatal("J2K_pixelrep_mismatch.dcm is not in pydicom's corpus")
	}
	d := decodeWith(t, New(Options{}), readPart10(t, path))
	at := func(row, col int) int { return int(int16(binary.LittleEndian.Uint16(d.pix[2*(row*512+col):]))) }
	if v := at(0, 0); v != -2000 {
		t.Errorf("pixel (0,0) is %d, want -2000", v)
	}
	want := []int{621, 412, 138, -193, -520, -767, -907, -966, -988, -995}
	for i, w := range want {
		if v := at(47+i, 279); v != w {
			t.Errorf("pixel (%d,279) is %d, want %d", 47+i, v, w)
		}
	}
}
