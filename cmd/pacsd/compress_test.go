package main

import (
	"bufio"
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/pacsd/pacsd/api"
	"github.com/pacsd/pacsd/archive"
	"github.com/pacsd/pacsd/dicom"
	"github.com/pacsd/pacsd/dicom/tag"
	"github.com/pacsd/pacsd/dicom/uid"
	"github.com/pacsd/pacsd/dimse"
	"github.com/pacsd/pacsd/internal/dcmgen"
	"github.com/pacsd/pacsd/internal/testpeer"
	"github.com/pacsd/pacsd/recompress"
)

// compressOriginal is an instance stored uncompressed before compression.
type compressOriginal struct {
	sop, series, study string
	sha                string // of the object as stored
	datasetSHA         string // of its data set
	ts                 string
	pixels             pixels
}

// writeCompressStudy writes uncompressed originals into dir: 8-bit,
// signed 16-bit, RGB and multi-frame.
func writeCompressStudy(t *testing.T, dir string) {
	t.Helper()
	study := dcmgen.Study{UID: dcmgen.UID()}
	series := dcmgen.Series{UID: dcmgen.UID(), Modality: "CT", Number: 1}
	us := func(tg tag.Tag, v int) dcmgen.Element {
		return dcmgen.Element{Tag: dcmgen.Tag(tg), VR: "US", Value: uint16(v)}
	}
	for i, in := range []*dcmgen.Instance{
		{Rows: 64, Columns: 63, BitsAllocated: 8},
		{Rows: 64, Columns: 64, BitsAllocated: 16, Extra: []dcmgen.Element{us(tag.PixelRepresentation, 1)}},
		// Made as 8-bit of three times the columns, declared RGB.
		{Rows: 48, Columns: 3 * 40, BitsAllocated: 8, Extra: []dcmgen.Element{us(tag.SamplesPerPixel, 3), us(tag.Columns, 40),
			us(tag.PlanarConfiguration, 0), {Tag: dcmgen.Tag(tag.PhotometricInterpretation), VR: "CS", Value: "RGB"}}},
		{Rows: 32, Columns: 32, BitsAllocated: 16, NumberOfFrames: 3},
	} {
		in.Patient = dcmgen.Patient{Name: "Compress^Test", ID: "COMP1"}
		in.Study, in.Series, in.InstanceNumber = study, series, i+1
		if _, err := dcmgen.Create(filepath.Join(dir, fmt.Sprintf("%d.dcm", i)), in); err != nil {
			t.Fatal(err)
		}
	}
}

// framePixels reads the pixels of every frame of a data set in an
// uncompressed syntax.
func framePixels(t *testing.T, ds []byte, ts string) pixels {
	t.Helper()
	syntax, _ := uid.LookupTransferSyntax(ts)
	d, err := dicom.Parse(ds, syntax)
	if err != nil {
		t.Fatal(err)
	}
	frames, _ := strconv.Atoi(d.First(tag.NumberOfFrames))
	p := nativePixels(t, ds, ts)
	if frames > 1 {
		// nativePixels reads the first frame; read them all.
		pd, _ := d.Find(tag.PixelData)
		raw := ds[pd.Binary.Offset : pd.Binary.Offset+pd.Binary.Length]
		p.samples = p.samples[:0]
		for i := 0; i+1 < len(raw); i += 2 {
			p.samples = append(p.samples, int(binary.LittleEndian.Uint16(raw[i:]))&(1<<p.bitsStored-1))
		}
	}
	return p
}

func sum(b []byte) string { s := sha256.Sum256(b); return hex.EncodeToString(s[:]) }

// httpBody gets url with accept and returns the body of a 200.
func httpBody(t *testing.T, url, accept string) []byte {
	t.Helper()
	req, _ := http.NewRequestWithContext(t.Context(), "GET", url, nil)
	if accept != "" {
		req.Header.Set("Accept", accept)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil || resp.StatusCode != 200 {
		t.Fatalf("GET %s (%s): %s %v %.200s", url, accept, resp.Status, err, b)
	}
	return b
}

// TestCompress stores uncompressed instances, lets serve compress them
// in each syntax --compress-syntax takes, and retrieves the originals
// byte for byte (WADO-RS in the original syntax, the default syntax and
// /api/instances/{sop}/original) and their pixels (getscu); the bytes
// saved show in the metrics; each syntax decodes, with an independent
// peer, to the original pixels; reindex from the bucket restores the
// originals' SHA-256 and syntax.
func TestCompress(t *testing.T) {
	testpeer.Need(t, "dcmsend", "getscu", "dcmdjpls", "gdcmconv", "ojph_expand")
	src := t.TempDir()
	writeCompressStudy(t, src)
	for _, c := range []struct{ name, peer string }{
		{"htj2k-lossless", "ojph_expand"},
		{"jpegls-lossless", "dcmdjpls"},
		{"j2k-lossless", "gdcmconv"},
	} {
		t.Run(c.name, func(t *testing.T) {
			ts, _ := recompress.ParseSyntax(c.name)
			data := t.TempDir()
			// Stored first without compression, to know the originals.
			p := startPacsd(t, data, "--log-format", "json")
			if out, err := p.dcmtk("dcmsend", "+sd", src); err != nil {
				t.Fatalf("dcmsend: %v\n%s", err, out)
			}
			p.stop()
			a := openArchive(t, data)
			originals := map[string]compressOriginal{}
			for in, err := range a.db.Instances(t.Context()) {
				if err != nil {
					t.Fatal(err)
				}
				_, ds, _ := a.object(t, in.SOPInstanceUID)
				originals[in.SOPInstanceUID] = compressOriginal{sop: in.SOPInstanceUID, series: in.SeriesInstanceUID, study: in.StudyInstanceUID,
					sha: in.SHA256, datasetSHA: sum(ds), ts: in.TransferSyntaxUID, pixels: framePixels(t, ds, in.TransferSyntaxUID)}
			}
			if len(originals) != 4 {
				t.Fatalf("%d instances stored, want 4", len(originals))
			}

			p = startPacsd(t, data, "--log-format", "json", "--compress-after", "1s", "--compress-syntax", c.name)
			deadline := time.Now().Add(2 * time.Minute)
			for {
				s, err := a.db.Compressions().Stats(t.Context())
				if err != nil {
					t.Fatal(err)
				}
				if s.Instances == 4 && findLog(p.log(), "archive compression pass") != nil {
					if s.Saved() <= 0 {
						t.Errorf("compression saved %d bytes", s.Saved())
					}
					t.Logf("%d instances compressed: %d bytes to %d", s.Instances, s.OriginalBytes, s.StoredBytes)
					break
				}
				if time.Now().After(deadline) {
					t.Fatalf("compressed %+v after 2 minutes\n%s", s, p.log())
				}
				time.Sleep(200 * time.Millisecond)
			}
			base := "http://" + p.httpAddr
			if m := scrape(t, base); m[`pacsd_compress_instances_total{outcome="compressed"}`] != 4 || m["pacsd_compress_saved_bytes{}"] <= 0 {
				t.Errorf("metrics: compressed %v, saved %v", m[`pacsd_compress_instances_total{outcome="compressed"}`], m["pacsd_compress_saved_bytes{}"])
			}
			if findLog(p.log(), "archive compression pass") == nil {
				t.Error("no log line of the compression pass")
			}

			var sys struct {
				Compression *api.CompressionState `json:"compression"`
			}
			if err := json.Unmarshal(httpBody(t, base+"/api/system", "application/json"), &sys); err != nil || sys.Compression == nil ||
				sys.Compression.Instances != 4 || sys.Compression.SavedBytes <= 0 || sys.Compression.Syntax != c.name {
				t.Errorf("/api/system compression %+v, %v", sys.Compression, err)
			}
			for sop, o := range originals {
				_, _, row := a.object(t, sop)
				if row.TransferSyntaxUID != ts {
					t.Errorf("%s stored in %s", sop, uid.Name(row.TransferSyntaxUID))
				}
				inst := base + "/dicom-web/studies/" + o.study + "/series/" + o.series + "/instances/" + sop
				for _, accept := range []string{"application/dicom; transfer-syntax=" + o.ts, "application/dicom"} {
					if got := sum(httpBody(t, inst, accept)); got != o.sha {
						t.Errorf("WADO-RS %s of %s: SHA-256 %s, the original's %s", accept, sop, got, o.sha)
					}
				}
				if got := sum(httpBody(t, base+"/api/instances/"+sop+"/original", "")); got != o.sha {
					t.Errorf("/api/instances/%s/original: SHA-256 %s, the original's %s", sop, got, o.sha)
				}
				if resp, err := http.Get(base + "/api/instances/" + sop + "/original"); err != nil {
					t.Error(err)
				} else if resp.Body.Close(); resp.Header.Get("ETag") != strconv.Quote(o.sha) {
					t.Errorf("/api/instances/%s/original: ETag %s, want the original's SHA-256 %s", sop, resp.Header.Get("ETag"), o.sha)
				}
				// As stored: the compressed syntax, pacsd's description
				// of the original in File Meta Information's Private
				// Information, under pacsd's creator UID, and none in the
				// data set; decoded by a peer.
				stored := filepath.Join(t.TempDir(), "stored.dcm")
				if err := os.WriteFile(stored, httpBody(t, inst, "application/dicom; transfer-syntax=*"), 0o644); err != nil {
					t.Fatal(err)
				}
				meta, _ := part10(t, stored)
				if meta.TransferSyntaxUID != ts || meta.PrivateInformationCreatorUID != archive.CompressCreatorUID {
					t.Errorf("%s served as stored in %s, private information %q", sop, uid.Name(meta.TransferSyntaxUID), meta.PrivateInformationCreatorUID)
				}
				if d := samePixels(decodeWithPeer(t, c.peer, stored), o.pixels); d != 0 {
					t.Errorf("%s: %s decodes the %s object to pixels that differ by %d from the original's", sop, c.peer, c.name, d)
				}
			}

			// pacsd's own SCU proposing Explicit VR Little Endian only,
			// the originals' syntax, gets their data sets byte for byte.
			var mu sync.Mutex
			received := map[string]string{}
			explicit := []string{uid.ExplicitVRLittleEndian}
			classes := []string{uid.CTImageStorage, uid.MultiFrameGrayscaleWordSecondaryCaptureImageStorage}
			props := []dimse.Proposal{{AbstractSyntax: uid.StudyRootQueryRetrieveInformationModelGet, TransferSyntaxes: explicit}}
			for _, cl := range classes {
				props = append(props, dimse.Proposal{AbstractSyntax: cl, TransferSyntaxes: explicit})
			}
			d := &dimse.Dialer{CallingAE: "EXPLICIT", CalledAE: "PACSD", Proposals: props,
				Store: storeFunc(func(ctx context.Context, _ *dimse.Association, req *dimse.StoreRequest) error {
					ds, err := io.ReadAll(req.Dataset)
					if err != nil {
						return err
					}
					mu.Lock()
					defer mu.Unlock()
					received[req.SOPInstanceUID] = sum(ds)
					return nil
				})}
			as, err := d.Dial(t.Context(), p.dimseAddr)
			if err != nil {
				t.Fatal(err)
			}
			ident := &dicom.Dataset{Elements: []dicom.Element{
				{Tag: tag.QueryRetrieveLevel, VR: "CS", Values: []string{"STUDY"}},
				{Tag: tag.StudyInstanceUID, VR: "UI", Values: []string{originals[firstKey(originals)].study}},
			}}
			subs, err := as.Get(t.Context(), uid.StudyRootQueryRetrieveInformationModelGet, ident, nil)
			as.Release(t.Context())
			if err != nil || subs.Completed != len(originals) {
				t.Fatalf("C-GET: %+v, %v", subs, err)
			}
			for sop, o := range originals {
				if received[sop] != o.datasetSHA {
					t.Errorf("C-GET in Explicit VR Little Endian: data set of %s has SHA-256 %s, the original's %s", sop, received[sop], o.datasetSHA)
				}
			}

			out := t.TempDir()
			if o, err := p.dcmtk("getscu", "-od", out, "-S", "-k", "QueryRetrieveLevel=STUDY", "-k", "StudyInstanceUID="+originals[firstKey(originals)].study); err != nil {
				t.Fatalf("getscu: %v\n%s", err, o)
			}
			checkUncompressed(t, out)
			got := dirFiles(t, out)
			for sop, o := range originals {
				path, ok := got[sop]
				if !ok {
					t.Errorf("getscu did not receive %s", sop)
					continue
				}
				meta, ds := part10(t, path)
				if d := samePixels(framePixels(t, ds, meta.TransferSyntaxUID), o.pixels); d != 0 {
					t.Errorf("getscu: %s differs by %d from the original's pixels", sop, d)
				}
			}
			p.stop()

			// The bucket alone: a new index, rebuilt.
			idx := "sqlite://" + filepath.Join(t.TempDir(), "reindexed.db")
			if stdout, stderr, err := pacsd(t, "reindex", "--data", data, "--index", idx); err != nil {
				t.Fatalf("reindex: %v\n%s%s", err, stdout, stderr)
			}
			re := openArchiveAt(t, data, idx)
			for sop, o := range originals {
				row, err := re.db.Instance(t.Context(), sop)
				if err != nil {
					t.Fatal(err)
				}
				orig, err := re.db.Compressions().Original(t.Context(), row.Key)
				if err != nil || orig.SHA256 != o.sha || orig.TransferSyntaxUID != o.ts {
					t.Errorf("reindexed original of %s: %+v, %v; want %s in %s", sop, orig, err, o.sha, uid.Name(o.ts))
				}
			}
		})
	}
}

func firstKey[V any](m map[string]V) string {
	for k := range m {
		return k
	}
	return ""
}

// decodeWithPeer decodes a compressed Part-10 file with a peer and
// returns its pixels: dcmdjpls and gdcmconv write DICOM, ojph_expand
// decodes each frame's code stream to raw samples.
func decodeWithPeer(t *testing.T, peer, path string) pixels {
	t.Helper()
	out := filepath.Join(t.TempDir(), "decoded.dcm")
	switch peer {
	case "dcmdjpls":
		testpeer.RunT(t, "dcmdjpls", path, out)
		return filePixelsAll(t, out)
	case "gdcmconv":
		testpeer.RunT(t, "gdcmconv", "--raw", path, out)
		return filePixelsAll(t, out)
	}
	meta, ds := part10(t, path)
	syntax, _ := uid.LookupTransferSyntax(meta.TransferSyntaxUID)
	d, err := dicom.Parse(ds, syntax)
	if err != nil {
		t.Fatal(err)
	}
	num := func(tg tag.Tag) int { n, _ := strconv.Atoi(d.First(tg)); return n }
	pd, ok := d.Find(tag.PixelData)
	if !ok || pd.Binary == nil || !pd.Binary.Encapsulated {
		t.Fatalf("%s: no encapsulated pixel data", path)
	}
	// The items of the pixel data: the Basic Offset Table, then one
	// fragment a frame, as pacsd writes them.
	var frags [][]byte
	v := ds[pd.Binary.Offset : pd.Binary.Offset+pd.Binary.Length]
	for len(v) >= 8 && binary.LittleEndian.Uint32(v) == 0xE000FFFE {
		n := int(binary.LittleEndian.Uint32(v[4:]))
		frags, v = append(frags, v[8:8+n]), v[8+n:]
	}
	p := pixels{bitsStored: num(tag.BitsStored)}
	for i, f := range frags[1:] {
		cs := filepath.Join(t.TempDir(), fmt.Sprintf("f%d.j2c", i))
		if err := os.WriteFile(cs, f, 0o644); err != nil {
			t.Fatal(err)
		}
		raw := filepath.Join(t.TempDir(), fmt.Sprintf("f%d.raw", i))
		if num(tag.SamplesPerPixel) == 3 {
			raw = filepath.Join(t.TempDir(), fmt.Sprintf("f%d.ppm", i))
		}
		testpeer.RunT(t, "ojph_expand", "-i", cs, "-o", raw)
		b, err := os.ReadFile(raw)
		if err != nil {
			t.Fatal(err)
		}
		if num(tag.SamplesPerPixel) == 3 {
			// P6, width, height, maximum, one whitespace, then RGB.
			br := bufio.NewReader(bytes.NewReader(b))
			var magic string
			var w, h, maxval int
			if _, err := fmt.Fscan(br, &magic, &w, &h, &maxval); err != nil {
				t.Fatal(err)
			}
			br.ReadByte()
			b, _ = io.ReadAll(br)
		}
		mask := 1<<p.bitsStored - 1
		if num(tag.BitsAllocated) == 8 {
			for _, v := range b {
				p.samples = append(p.samples, int(v)&mask)
			}
			continue
		}
		for j := 0; j+1 < len(b); j += 2 {
			p.samples = append(p.samples, int(binary.LittleEndian.Uint16(b[j:]))&mask)
		}
	}
	return p
}

// filePixelsAll reads every frame's pixels of a Part-10 file in an
// uncompressed syntax.
func filePixelsAll(t *testing.T, path string) pixels {
	t.Helper()
	meta, ds := part10(t, path)
	return framePixels(t, ds, meta.TransferSyntaxUID)
}
