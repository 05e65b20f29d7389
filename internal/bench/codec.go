package main

import (
	"bufio"
	"bytes"
	"context"
	"encoding/binary"
	"fmt"
	"io"
	"math"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"time"

	"github.com/pacsd/pacsd/dicom"
	"github.com/pacsd/pacsd/dicom/codec"
	"github.com/pacsd/pacsd/dicom/render"
	"github.com/pacsd/pacsd/dicom/uid"
	"github.com/pacsd/pacsd/internal/testpeer"
)

// codecCase is one decode measurement: a file compressed by a peer's
// encoder, decoded by pacsd and by the peers that decode it.
type codecCase struct {
	name     string
	ts       string
	bits     int      // 8 or 12 bits stored
	encode   []string // the peer command that compresses; nil: pacsd does
	decoders [][]string
}

var codecCases = []codecCase{
	{"JPEG Baseline 8-bit", uid.JPEGBaseline8Bit, 8, []string{"dcmcjpeg", "+eb"}, [][]string{{"dcmdjpeg"}, {"gdcmconv", "--raw"}}},
	{"JPEG Extended 12-bit", uid.JPEGExtended12Bit, 12, []string{"dcmcjpeg", "+ee"}, [][]string{{"dcmdjpeg"}, {"gdcmconv", "--raw"}}},
	{"JPEG Lossless SV1", uid.JPEGLosslessSV1, 12, []string{"dcmcjpeg", "+e1"}, [][]string{{"dcmdjpeg"}, {"gdcmconv", "--raw"}}},
	{"JPEG-LS lossless", uid.JPEGLSLossless, 12, []string{"dcmcjpls", "+el"}, [][]string{{"dcmdjpls"}, {"gdcmconv", "--raw"}}},
	{"JPEG 2000 lossless", uid.JPEG2000Lossless, 12, []string{"gdcmconv", "--j2k"}, [][]string{{"gdcmconv", "--raw"}}},
	{"HTJ2K lossless", uid.HTJ2KLossless, 12, nil, nil},
	{"RLE Lossless", uid.RLELossless, 12, []string{"dcmcrle"}, [][]string{{"dcmdrle"}, {"gdcmconv", "--raw"}}},
}

// measureCodecs writes a multi-frame CT-like image of frames 512×512
// frames, compresses it in each syntax, and decodes each file with pacsd
// (in process: read the file, Transcode to Explicit VR Little Endian,
// write the file) and with each peer (a process doing the same), rounds
// times, alternating. It also times render.Render of one 512×512 16-bit
// frame. It prints MB/s of native pixels, medians.
func measureCodecs(ctx context.Context, out io.Writer, tmp string, frames, rounds int, logf func(string, ...any)) error {
	reg := codec.New(codec.Options{})
	dir := filepath.Join(tmp, "codec")
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return err
	}
	native := map[int]string{}
	var nativeBytes int64
	for _, bits := range []int{8, 12} {
		ds, n := ctDataset(bits, frames)
		nativeBytes = int64(n)
		p := filepath.Join(dir, fmt.Sprintf("native%d.dcm", bits))
		if err := writeFile(p, ds, uid.ExplicitVRLittleEndian); err != nil {
			return err
		}
		native[bits] = p
	}
	fmt.Fprintf(out, "\nPixel data decoding: %d frames of 512x512 (%.0f MB native for 12 bits), MB/s of native pixels, median of %d rounds\n", frames, float64(nativeBytes)/1e6, rounds)
	fmt.Fprintf(out, "  %-22s %10s %10s %10s %8s  %s\n", "codec", "pacsd", "dcmtk", "gdcmconv", "ratio", "target ≥ 1.0× the faster peer")
	for _, c := range codecCases {
		src := filepath.Join(dir, c.name+".dcm")
		if c.encode != nil {
			if _, _, err := testpeer.Run(ctx, c.encode[0], append(c.encode[1:], native[c.bits], src)...); err != nil {
				return fmt.Errorf("%s: %w", c.name, err)
			}
		} else if err := pacsdTranscode(ctx, reg, native[c.bits], src, c.ts); err != nil {
			return err
		}
		size := nativeBytes
		if c.bits == 8 {
			size /= 2
		}
		logf("decoding %s", c.name)
		var ours []float64
		theirs := make([][]float64, len(c.decoders))
		for range rounds {
			t := time.Now()
			if err := pacsdTranscode(ctx, reg, src, filepath.Join(dir, "out.dcm"), uid.ExplicitVRLittleEndian); err != nil {
				return fmt.Errorf("%s: %w", c.name, err)
			}
			ours = append(ours, float64(size)/1e6/time.Since(t).Seconds())
			for i, d := range c.decoders {
				t := time.Now()
				if _, _, err := testpeer.Run(ctx, d[0], append(d[1:], src, filepath.Join(dir, "peer.dcm"))...); err != nil {
					return fmt.Errorf("%s: %w", c.name, err)
				}
				theirs[i] = append(theirs[i], float64(size)/1e6/time.Since(t).Seconds())
			}
		}
		cols := map[string]float64{}
		best := 0.0
		for i, d := range c.decoders {
			m := median(theirs[i])
			cols[d[0]] = m
			best = max(best, m)
		}
		col := func(name string) string {
			if v, ok := cols[name]; ok {
				return fmt.Sprintf("%10.1f", v)
			}
			return fmt.Sprintf("%10s", "-")
		}
		dcmtk := "-"
		for _, d := range c.decoders {
			if d[0] != "gdcmconv" {
				dcmtk = d[0]
			}
		}
		ratio, verdict := "-", "no DICOM peer decodes it"
		if best > 0 {
			r := median(ours) / best
			ratio = fmt.Sprintf("%.2f×", r)
			verdict = map[bool]string{true: "met", false: "NOT met"}[r >= 1]
		}
		fmt.Fprintf(out, "  %-22s %10.1f %s %s %8s  %s\n", c.name, median(ours), col(dcmtk), col("gdcmconv"), ratio, verdict)
	}

	// render.Render of one 512×512 16-bit frame, as /rendered does after
	// reading it.
	ds, _ := ctDataset(12, 1)
	frame := ds[len(ds)-512*512*2:]
	p := render.Params{Rows: 512, Columns: 512, SamplesPerPixel: 1, PhotometricInterpretation: render.Monochrome2,
		BitsAllocated: 16, BitsStored: 12, HighBit: 11, RescaleSlope: 1, RescaleIntercept: -1024,
		Window: &render.Window{Center: 40, Width: 400}}
	var times []float64
	for range 200 {
		t := time.Now()
		if _, err := render.Render(ctx, p, uid.ExplicitVRLittleEndian, bytes.NewReader(frame), render.Options{}); err != nil {
			return err
		}
		times = append(times, float64(time.Since(t).Microseconds())/1000)
	}
	slices.Sort(times)
	p50 := times[len(times)/2]
	fmt.Fprintf(out, "\nrender.Render of a 512x512 16-bit CT frame (function level; over HTTP below): p50 %.2f ms, p95 %.2f ms (target p50 ≤ 10 ms: %s)\n",
		p50, times[len(times)*95/100], map[bool]string{true: "met", false: "NOT met"}[p50 <= 10])
	return nil
}

// pacsdTranscode converts the Part-10 file src to syntax ts in dst.
func pacsdTranscode(ctx context.Context, reg *codec.Registry, src, dst, ts string) error {
	f, err := os.Open(src)
	if err != nil {
		return err
	}
	defer f.Close()
	br := bufio.NewReaderSize(f, 1<<20)
	meta, _, err := dicom.ReadFileMeta(br)
	if err != nil {
		return err
	}
	o, err := os.Create(dst)
	if err != nil {
		return err
	}
	bw := bufio.NewWriterSize(o, 1<<20)
	m := meta
	m.TransferSyntaxUID = ts
	if _, err := bw.Write(dicom.AppendFileMeta(nil, m)); err != nil {
		o.Close()
		return err
	}
	if _, err := reg.Transcode(ctx, bw, br, meta.TransferSyntaxUID, ts, codec.TranscodeOptions{}); err != nil {
		o.Close()
		return err
	}
	if err := bw.Flush(); err != nil {
		o.Close()
		return err
	}
	return o.Close()
}

func writeFile(path string, ds []byte, ts string) error {
	return os.WriteFile(path, append(fileMeta(ts, ctDatasetClass, "2.25.1234567"), ds...), 0o644)
}

// fileMeta is the File Meta Information of instance sop of class in
// syntax ts.
func fileMeta(ts, class, sop string) []byte {
	return dicom.AppendFileMeta(nil, dicom.FileMeta{
		MediaStorageSOPClassUID: class, MediaStorageSOPInstanceUID: sop,
		TransferSyntaxUID: ts, ImplementationClassUID: dicom.ImplementationClassUID,
	})
}

// ctDatasetClass is the SOP class of the images ctDataset writes: a
// multi-frame class, since they may have several frames.
const ctDatasetClass = "1.2.840.10008.5.1.4.1.1.2.1"

// ctDataset returns an explicit VR little endian data set of frames
// 512×512 frames that look like CT slices (a body, organs and noise)
// of bits stored bits, and the size of its pixel data.
func ctDataset(bits, frames int) ([]byte, int) {
	return ctDatasetUIDs(bits, frames, 0, ctDatasetClass, "2.25.1", "2.25.1234567")
}

// ctDatasetUIDs is ctDataset for instance sop of class in study, its
// anatomy moved by shift.
func ctDatasetUIDs(bits, frames, shift int, class, study, sop string) ([]byte, int) {
	el := func(d []byte, g, e uint16, vr string, v []byte) []byte {
		if len(v)%2 == 1 {
			v = append(v, map[bool]byte{true: 0, false: ' '}[vr == "UI"])
		}
		d = binary.LittleEndian.AppendUint16(d, g)
		d = binary.LittleEndian.AppendUint16(d, e)
		d = append(d, vr...)
		if vr == "OW" || vr == "OB" {
			d = append(d, 0, 0)
			return append(binary.LittleEndian.AppendUint32(d, uint32(len(v))), v...)
		}
		return append(binary.LittleEndian.AppendUint16(d, uint16(len(v))), v...)
	}
	us := func(v int) []byte { return binary.LittleEndian.AppendUint16(nil, uint16(v)) }
	alloc := 16
	if bits == 8 {
		alloc = 8
	}
	var d []byte
	d = el(d, 0x0008, 0x0016, "UI", []byte(class))
	d = el(d, 0x0008, 0x0018, "UI", []byte(sop))
	d = el(d, 0x0008, 0x0060, "CS", []byte("CT"))
	d = el(d, 0x0020, 0x000D, "UI", []byte(study))
	d = el(d, 0x0020, 0x000E, "UI", []byte(study+".1"))
	d = el(d, 0x0028, 0x0002, "US", us(1))
	d = el(d, 0x0028, 0x0004, "CS", []byte("MONOCHROME2"))
	d = el(d, 0x0028, 0x0008, "IS", []byte(strconv.Itoa(frames)))
	d = el(d, 0x0028, 0x0010, "US", us(512))
	d = el(d, 0x0028, 0x0011, "US", us(512))
	d = el(d, 0x0028, 0x0100, "US", us(alloc))
	d = el(d, 0x0028, 0x0101, "US", us(bits))
	d = el(d, 0x0028, 0x0102, "US", us(bits-1))
	d = el(d, 0x0028, 0x0103, "US", us(0))
	maxv := float64(int(1)<<bits - 1)
	pix := make([]byte, 0, 512*512*frames*alloc/8)
	seed := uint32(1 + shift)
	for f := shift; f < shift+frames; f++ {
		for y := range 512 {
			for x := range 512 {
				dx, dy := float64(x-256)/200, float64(y-256)/160
				r := dx*dx + dy*dy
				v := 0.0
				if r < 1 {
					v = 0.45 + 0.05*math.Sin(float64(x+f*3)/17)*math.Cos(float64(y)/23)
					if ox, oy := float64(x-200)/50, float64(y-240-f)/40; ox*ox+oy*oy < 1 {
						v = 0.6
					}
				}
				seed = seed*1664525 + 1013904223
				v = v*maxv + float64(seed>>28) - 8
				iv := int(min(max(v, 0), maxv))
				if alloc == 8 {
					pix = append(pix, byte(iv))
				} else {
					pix = binary.LittleEndian.AppendUint16(pix, uint16(iv))
				}
			}
		}
	}
	vr := "OW"
	if alloc == 8 {
		vr = "OB"
	}
	return el(d, 0x7FE0, 0x0010, vr, pix), len(pix)
}
