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
	"strconv"
	"strings"
	"testing"

	"github.com/pacsd/pacsd/dicom"
	"github.com/pacsd/pacsd/dicom/tag"
	"github.com/pacsd/pacsd/dicom/uid"
)

// appendElement appends one explicit VR little endian element.
func appendElement(dst []byte, t tag.Tag, vr string, v []byte) []byte {
	if len(v)%2 == 1 {
		v = append(v, map[bool]byte{true: 0, false: ' '}[vr == "UI" || vr == "OB"])
	}
	dst = binary.LittleEndian.AppendUint16(dst, t.Group())
	dst = binary.LittleEndian.AppendUint16(dst, t.Element())
	dst = append(dst, vr...)
	if longVR(vr) {
		dst = append(dst, 0, 0)
		dst = binary.LittleEndian.AppendUint32(dst, uint32(len(v)))
	} else {
		dst = binary.LittleEndian.AppendUint16(dst, uint16(len(v)))
	}
	return append(dst, v...)
}

func us(v int) []byte { return binary.LittleEndian.AppendUint16(nil, uint16(v)) }

// nativeDataset returns an explicit VR little endian data set of frames
// native frames of im, with a sequence of undefined length before the
// pixels and padding after them, as real data sets have.
func nativeDataset(im Image, frames int, seed uint64) ([]byte, []byte) {
	var d []byte
	d = appendElement(d, tag.SOPClassUID, "UI", []byte("1.2.840.10008.5.1.4.1.1.7"))
	d = appendElement(d, tag.SOPInstanceUID, "UI", []byte("1.2.3.4.5.6.7"))
	d = appendElement(d, tag.Modality, "CS", []byte("OT"))
	d = appendElement(d, tag.PatientName, "PN", []byte("Test^Codec"))
	d = appendElement(d, tag.StudyInstanceUID, "UI", []byte("1.2.3.4"))
	d = appendElement(d, tag.SeriesInstanceUID, "UI", []byte("1.2.3.4.5"))
	// (0008,1140) Referenced Image Sequence, undefined length.
	d = append(d, 0x08, 0x00, 0x40, 0x11, 'S', 'Q', 0, 0, 0xFF, 0xFF, 0xFF, 0xFF)
	d = append(d, 0xFE, 0xFF, 0x00, 0xE0, 0xFF, 0xFF, 0xFF, 0xFF)
	d = appendElement(d, tag.ReferencedSOPClassUID, "UI", []byte("1.2.840.10008.5.1.4.1.1.7"))
	d = append(d, 0xFE, 0xFF, 0x0D, 0xE0, 0, 0, 0, 0, 0xFE, 0xFF, 0xDD, 0xE0, 0, 0, 0, 0)
	d = appendElement(d, tag.SamplesPerPixel, "US", us(im.SamplesPerPixel))
	d = appendElement(d, tag.PhotometricInterpretation, "CS", []byte(im.PhotometricInterpretation))
	if im.SamplesPerPixel == 3 {
		d = appendElement(d, tag.PlanarConfiguration, "US", us(im.PlanarConfiguration))
	}
	if frames > 1 {
		d = appendElement(d, tag.NumberOfFrames, "IS", []byte(strconv.Itoa(frames)))
	}
	d = appendElement(d, tag.Rows, "US", us(im.Rows))
	d = appendElement(d, tag.Columns, "US", us(im.Columns))
	d = appendElement(d, tag.BitsAllocated, "US", us(im.BitsAllocated))
	d = appendElement(d, tag.BitsStored, "US", us(im.BitsStored))
	d = appendElement(d, tag.HighBit, "US", us(im.BitsStored-1))
	d = appendElement(d, tag.PixelRepresentation, "US", us(im.PixelRepresentation))
	var pix []byte
	for f := range frames {
		pix = append(pix, synthetic(im, seed+uint64(f))...)
	}
	vr := "OW"
	if im.BitsAllocated == 8 {
		vr = "OB"
	}
	d = appendElement(d, tag.PixelData, vr, pix)
	d = appendElement(d, tag.New(0xFFFC, 0xFFFC), "OB", make([]byte, 6))
	return d, pix
}

// element is one top-level element of an explicit VR little endian
// data set, as the tests read them back.
type element struct {
	vr    string
	value []byte   // nil for undefined length
	frags [][]byte // of encapsulated pixel data
}

// parseTop reads the top-level elements of an explicit VR little endian
// data set.
func parseTop(t *testing.T, d []byte) map[tag.Tag]element {
	t.Helper()
	els := map[tag.Tag]element{}
	r := &recoder{r: bufio.NewReader(bytes.NewReader(d)), w: bufio.NewWriter(&bytes.Buffer{})}
	for {
		if _, err := r.r.Peek(1); err != nil {
			return els
		}
		tg, vr, n, _, err := r.header(true)
		if err != nil {
			t.Fatalf("parse: %v", err)
		}
		if n != 0xFFFFFFFF {
			v, err := r.read(int(n))
			if err != nil {
				t.Fatalf("parse %v: %v", tg, err)
			}
			els[tg] = element{vr: vr, value: v}
			continue
		}
		if tg != tag.PixelData {
			if err := r.copyUndefined(vr == "SQ", 0); err != nil {
				t.Fatalf("parse %v: %v", tg, err)
			}
			els[tg] = element{vr: vr}
			continue
		}
		var e element
		for {
			it, _, n, _, err := r.header(true)
			if err != nil {
				t.Fatalf("parse fragments: %v", err)
			}
			if it == tag.SequenceDelimitationItem {
				break
			}
			v, err := r.read(int(n))
			if err != nil {
				t.Fatal(err)
			}
			e.frags = append(e.frags, v)
		}
		e.vr = vr
		els[tg] = e
	}
}

func text(e element) string { return string(bytes.TrimRight(e.value, " \x00")) }

func TestTranscodeSyntheticRoundTrip(t *testing.T) {
	reg := New(Options{})
	ctx := context.Background()
	images := map[string]Image{
		"gray16": {Rows: 48, Columns: 40, SamplesPerPixel: 1, BitsAllocated: 16, BitsStored: 12, PhotometricInterpretation: Monochrome2},
		"rgb8":   {Rows: 24, Columns: 30, SamplesPerPixel: 3, BitsAllocated: 8, BitsStored: 8, PhotometricInterpretation: RGB, PlanarConfiguration: 1},
	}
	for _, ts := range reg.Syntaxes() {
		c, _ := reg.Lookup(ts)
		for name, im := range images {
			t.Run(uid.Name(ts)+"/"+name, func(t *testing.T) {
				ds, pix := nativeDataset(im, 3, 1)
				var enc bytes.Buffer
				res, err := reg.Transcode(ctx, &enc, bytes.NewReader(ds), uid.ExplicitVRLittleEndian, ts, TranscodeOptions{})
				if err != nil {
					if ts == uid.JPEGBaseline8Bit && im.BitsStored > 8 {
						return // baseline is 8 bits only
					}
					t.Fatalf("encode: %v", err)
				}
				if res.Frames != 3 || res.Lossy != c.Lossy() {
					t.Errorf("result %+v", res)
				}
				els := parseTop(t, enc.Bytes())
				px := els[tag.PixelData]
				if len(px.frags) != 4 || len(px.frags[0]) != 0 {
					t.Fatalf("%d fragments, Basic Offset Table of %d bytes", len(px.frags), len(px.frags[0]))
				}
				if _, ok := els[tag.New(0xFFFC, 0xFFFC)]; !ok {
					t.Errorf("trailing padding lost")
				}
				if _, ok := els[tag.New(0x0008, 0x1140)]; !ok {
					t.Errorf("sequence lost")
				}
				if c.Lossy() {
					if got := text(els[tag.LossyImageCompression]); got != "01" {
						t.Errorf("Lossy Image Compression %q", got)
					}
					if got := text(els[tag.LossyImageCompressionMethod]); got != c.Method() {
						t.Errorf("Lossy Image Compression Method %q", got)
					}
					if r, err := strconv.ParseFloat(text(els[tag.LossyImageCompressionRatio]), 64); err != nil || r <= 1 {
						t.Errorf("Lossy Image Compression Ratio %q", text(els[tag.LossyImageCompressionRatio]))
					}
				} else if _, ok := els[tag.LossyImageCompression]; ok {
					t.Errorf("Lossy Image Compression set for a lossless syntax")
				}
				var dec bytes.Buffer
				if _, err := reg.Transcode(ctx, &dec, bytes.NewReader(enc.Bytes()), ts, uid.ExplicitVRLittleEndian, TranscodeOptions{}); err != nil {
					t.Fatalf("decode: %v", err)
				}
				back := parseTop(t, dec.Bytes())
				got := back[tag.PixelData].value
				if len(got) != len(pix) {
					t.Fatalf("%d bytes of pixel data, want %d", len(got), len(pix))
				}
				if !c.Lossy() {
					want := pix
					if im.SamplesPerPixel == 3 {
						want = nil
						n := int(im.FrameSize())
						for f := range 3 {
							want = append(want, interleave(nil, pix[f*n:(f+1)*n], im.Rows*im.Columns, 1)...)
						}
					}
					if !bytes.Equal(got, want) {
						t.Errorf("pixels differ after the round trip")
					}
				}
				if pc := back[tag.PlanarConfiguration].value; im.SamplesPerPixel == 3 && (len(pc) != 2 || pc[0] != 0) {
					t.Errorf("planar configuration %v", pc)
				}
			})
		}
	}
}

// writePart10 writes a data set as a Part-10 file and returns its path.
func writePart10(t *testing.T, dir, name string, ds []byte, ts string) string {
	t.Helper()
	meta := dicom.AppendFileMeta(nil, dicom.FileMeta{
		MediaStorageSOPClassUID: "1.2.840.10008.5.1.4.1.1.7", MediaStorageSOPInstanceUID: "1.2.3.4.5.6.7",
		TransferSyntaxUID: ts, ImplementationClassUID: dicom.ImplementationClassUID,
	})
	p := fmt.Sprintf("%s/%s", dir, name)
	if err := os.WriteFile(p, append(meta, ds...), 0o644); err != nil {
		t.Fatal(err)
	}
	return p
}

// TestTranscodeBadFrame: a frame that does not decode, among frames
// converted in parallel, ends the conversion with its error, whatever
// the frames around it; so does a cancelled context.
func TestTranscodeBadFrame(t *testing.T) {
	reg := New(Options{})
	im := Image{Rows: 32, Columns: 32, SamplesPerPixel: 1, BitsAllocated: 16, BitsStored: 12, PhotometricInterpretation: Monochrome2}
	ds, _ := nativeDataset(im, 9, 1)
	var enc bytes.Buffer
	if _, err := reg.Transcode(t.Context(), &enc, bytes.NewReader(ds), uid.ExplicitVRLittleEndian, uid.JPEGLSLossless, TranscodeOptions{}); err != nil {
		t.Fatal(err)
	}
	for _, bad := range []int{1, 5, 9} {
		t.Run(fmt.Sprintf("frame %d", bad), func(t *testing.T) {
			b := bytes.Clone(enc.Bytes())
			// The bad frame's code stream loses its frame header.
			soi := []byte{0xFF, 0xD8, 0xFF, 0xF7}
			at := -1
			for i := 0; i < bad; i++ {
				at += 1 + bytes.Index(b[at+1:], soi)
			}
			b[at+3] = 0
			_, err := reg.Transcode(t.Context(), io.Discard, bytes.NewReader(b), uid.JPEGLSLossless, uid.ExplicitVRLittleEndian, TranscodeOptions{})
			if !errors.Is(err, ErrMalformed) || !strings.Contains(err.Error(), fmt.Sprintf("frame %d:", bad)) {
				t.Errorf("got %v, want frame %d malformed", err, bad)
			}
		})
	}
	ctx, cancel := context.WithCancel(t.Context())
	cancel()
	if _, err := reg.Transcode(ctx, io.Discard, bytes.NewReader(enc.Bytes()), uid.JPEGLSLossless, uid.ExplicitVRLittleEndian, TranscodeOptions{}); !errors.Is(err, context.Canceled) {
		t.Errorf("cancelled: got %v", err)
	}
}
