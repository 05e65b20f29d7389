package main

import (
	"context"
	"encoding/binary"
	"fmt"
	"io"
	"mime"
	"mime/multipart"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/pacsd/pacsd/dicom"
	"github.com/pacsd/pacsd/dicom/tag"
	"github.com/pacsd/pacsd/dicom/uid"
	"github.com/pacsd/pacsd/dimse"
	"github.com/pacsd/pacsd/internal/dcmgen"
	"github.com/pacsd/pacsd/internal/testpeer"
)

// pixels are the samples of a native image, cut to Bits Stored.
type pixels struct {
	bitsStored int
	samples    []int
}

// nativePixels reads the pixels of a data set in an uncompressed syntax.
func nativePixels(t *testing.T, ds []byte, ts string) pixels {
	t.Helper()
	syntax, _ := uid.LookupTransferSyntax(ts)
	d, err := dicom.Parse(ds, syntax)
	if err != nil {
		t.Fatalf("parse %s: %v", uid.Name(ts), err)
	}
	num := func(tg tag.Tag) int { n, _ := strconv.Atoi(d.First(tg)); return n }
	pd, ok := d.Find(tag.PixelData)
	if !ok || pd.Binary == nil || pd.Binary.Encapsulated {
		t.Fatalf("no native Pixel Data in %s", uid.Name(ts))
	}
	raw := ds[pd.Binary.Offset : pd.Binary.Offset+pd.Binary.Length]
	p := pixels{bitsStored: num(tag.BitsStored)}
	mask := 1<<p.bitsStored - 1
	n := num(tag.Rows) * num(tag.Columns) * num(tag.SamplesPerPixel)
	var order binary.ByteOrder = binary.LittleEndian
	if ts == uid.ExplicitVRBigEndian {
		order = binary.BigEndian
	}
	for i := range n {
		if num(tag.BitsAllocated) == 8 {
			p.samples = append(p.samples, int(raw[i])&mask)
		} else {
			p.samples = append(p.samples, int(order.Uint16(raw[2*i:]))&mask)
		}
	}
	return p
}

// filePixels reads the pixels of a Part-10 file in an uncompressed syntax.
func filePixels(t *testing.T, path string) pixels {
	t.Helper()
	meta, ds := part10(t, path)
	return nativePixels(t, ds, meta.TransferSyntaxUID)
}

// peerPixels decodes a Part-10 file with dcmtk, or GDCM for JPEG 2000,
// and returns its pixels.
func peerPixels(t *testing.T, path string) pixels {
	t.Helper()
	meta, _ := part10(t, path)
	out := filepath.Join(t.TempDir(), "decoded.dcm")
	switch meta.TransferSyntaxUID {
	case uid.JPEGBaseline8Bit, uid.JPEGExtended12Bit, uid.JPEGLossless, uid.JPEGLosslessSV1:
		testpeer.RunT(t, "dcmdjpeg", path, out)
	case uid.JPEGLSLossless, uid.JPEGLSNearLossless:
		testpeer.RunT(t, "dcmdjpls", path, out)
	case uid.RLELossless:
		testpeer.RunT(t, "dcmdrle", path, out)
	case uid.JPEG2000Lossless, uid.JPEG2000:
		testpeer.RunT(t, "gdcmconv", "--raw", path, out)
	default:
		testpeer.RunT(t, "dcmconv", "+te", path, out)
	}
	return filePixels(t, out)
}

// samePixels reports how far apart two images' samples are, or -1 when
// they differ in size.
func samePixels(a, b pixels) int {
	if len(a.samples) != len(b.samples) || a.bitsStored != b.bitsStored {
		return -1
	}
	worst := 0
	for i := range a.samples {
		d := a.samples[i] - b.samples[i]
		worst = max(worst, d, -d)
	}
	return worst
}

// convertedStudy is a study stored in six transfer syntaxes, with what
// each instance's pixels must decode to.
type convertedStudy struct {
	uid  string
	want map[string]pixels // by SOP Instance UID
	// lossy lists the instances stored lossily, whose pixels may differ
	// by 1 from the peer's decoding.
	lossy map[string]bool
}

// writeConvertedStudy writes the study into dir: native CT images
// compressed by dcmtk (JPEG Lossless SV1, JPEG-LS lossless, RLE, JPEG
// Baseline from an 8-bit image) and by GDCM (JPEG 2000 lossless), and one
// left in Explicit VR Little Endian. The pixels to expect are the native
// originals for lossless syntaxes and dcmtk's decoding for JPEG Baseline.
func writeConvertedStudy(t *testing.T, dir string) *convertedStudy {
	t.Helper()
	st := &convertedStudy{uid: dcmgen.UID(), want: map[string]pixels{}, lossy: map[string]bool{}}
	native := t.TempDir()
	series := dcmgen.Series{UID: dcmgen.UID(), Modality: "CT", Number: 1}
	encodings := []struct {
		name string
		bits int
		cmd  []string
	}{
		{"explicit", 16, nil},
		{"jpeg-lossless", 16, []string{"dcmcjpeg", "+e1"}},
		{"jpeg-ls", 16, []string{"dcmcjpls", "+el"}},
		{"rle", 16, []string{"dcmcrle"}},
		{"j2k", 16, []string{"gdcmconv", "--j2k"}},
		{"jpeg-baseline", 8, []string{"dcmcjpeg", "+eb"}},
	}
	for i, e := range encodings {
		in := &dcmgen.Instance{Patient: dcmgen.Patient{Name: "Codec^Test", ID: "CODEC1"}, InstanceNumber: i + 1,
			Rows: 48, Columns: 40, BitsAllocated: e.bits, Series: series}
		in.Study.UID = st.uid
		orig := filepath.Join(native, e.name+".dcm")
		if _, err := dcmgen.Create(orig, in); err != nil {
			t.Fatal(err)
		}
		out := filepath.Join(dir, e.name+".dcm")
		if e.cmd == nil {
			b, err := os.ReadFile(orig)
			if err != nil {
				t.Fatal(err)
			}
			if err := os.WriteFile(out, b, 0o644); err != nil {
				t.Fatal(err)
			}
		} else {
			testpeer.RunT(t, e.cmd[0], append(e.cmd[1:], orig, out)...)
		}
		// dcmcjpeg gives a lossy copy a UID of its own.
		if meta, _ := part10(t, out); meta.TransferSyntaxUID == uid.JPEGBaseline8Bit {
			st.lossy[meta.MediaStorageSOPInstanceUID] = true
			st.want[meta.MediaStorageSOPInstanceUID] = peerPixels(t, out)
		} else {
			st.want[meta.MediaStorageSOPInstanceUID] = filePixels(t, orig)
		}
	}
	return st
}

// check compares what a retrieval received, pixels by SOP Instance UID,
// with what the study's instances must decode to.
func (st *convertedStudy) check(t *testing.T, got map[string]pixels) {
	t.Helper()
	if len(got) != len(st.want) {
		t.Errorf("received %d instances, want %d", len(got), len(st.want))
	}
	for sop, want := range st.want {
		p, ok := got[sop]
		if !ok {
			t.Errorf("%s not received", sop)
			continue
		}
		tolerance := 0
		if st.lossy[sop] {
			tolerance = 1
		}
		if d := samePixels(p, want); d < 0 || d > tolerance {
			t.Errorf("%s: pixels differ by %d from the original's (tolerance %d)", sop, d, tolerance)
		}
	}
}

// receivedPixels decodes every Part-10 file in dir with the peers.
func receivedPixels(t *testing.T, dir string) map[string]pixels {
	t.Helper()
	out := map[string]pixels{}
	for sop, path := range dirFiles(t, dir) {
		out[sop] = peerPixels(t, path)
	}
	return out
}

// TestRetrieveConverts retrieves a study stored in six transfer syntaxes
// by peers that accept fewer: each gets every instance, converted where
// it did not accept the stored syntax, with the pixels of the original.
func TestRetrieveConverts(t *testing.T) {
	testpeer.Need(t, "dcmsend", "getscu", "movescu", "storescp", "dcmcjpeg", "dcmcjpls", "dcmcrle", "gdcmconv",
		"dcmdjpeg", "dcmdjpls", "dcmdrle", "dcmconv")
	dir := t.TempDir()
	st := writeConvertedStudy(t, dir)
	scp := testpeer.StartStoreSCPT(t, testpeer.StoreSCPOptions{AET: "STORESCP", Dir: t.TempDir(), Args: []string{"+x="}})
	// FORWARD, also of uncompressed syntaxes only, is sent every
	// instance stored.
	fwd := testpeer.StartStoreSCPT(t, testpeer.StoreSCPOptions{AET: "FORWARD", Dir: t.TempDir(), Args: []string{"+x="}})
	p := startPacsd(t, t.TempDir(), "--remote-ae", fmt.Sprintf("STORESCP=%s", scp.Addr),
		"--remote-ae", fmt.Sprintf("FORWARD=%s", fwd.Addr), "--forward", "FORWARD")
	// dcmsend proposes each file's own syntax: stored as compressed.
	if out, err := p.dcmtk("dcmsend", "+sd", dir); err != nil {
		t.Fatalf("dcmsend: %v\n%s", err, out)
	}
	ctx := context.Background()
	study := []string{"-S", "-k", "QueryRetrieveLevel=STUDY", "-k", "StudyInstanceUID=" + st.uid}

	t.Run("implicit VR only", func(t *testing.T) {
		// pacsd's own SCU: dcmtk 3.6.7's getscu +xi still proposes
		// explicit VR.
		var mu sync.Mutex
		got := map[string]pixels{}
		implicit := []string{uid.ImplicitVRLittleEndian}
		d := &dimse.Dialer{CallingAE: "IMPLICIT", CalledAE: "PACSD", Proposals: []dimse.Proposal{
			{AbstractSyntax: uid.StudyRootQueryRetrieveInformationModelGet, TransferSyntaxes: implicit},
			{AbstractSyntax: uid.CTImageStorage, TransferSyntaxes: implicit},
		}, Store: storeFunc(func(ctx context.Context, a *dimse.Association, req *dimse.StoreRequest) error {
			ds, err := io.ReadAll(req.Dataset)
			if err != nil {
				return err
			}
			if req.TransferSyntaxUID != uid.ImplicitVRLittleEndian {
				return fmt.Errorf("received in %s", uid.Name(req.TransferSyntaxUID))
			}
			mu.Lock()
			defer mu.Unlock()
			got[req.SOPInstanceUID] = nativePixels(t, ds, req.TransferSyntaxUID)
			return nil
		})}
		as, err := d.Dial(ctx, p.dimseAddr)
		if err != nil {
			t.Fatal(err)
		}
		defer as.Release(ctx)
		ident := &dicom.Dataset{Elements: []dicom.Element{
			{Tag: tag.QueryRetrieveLevel, VR: "CS", Values: []string{"STUDY"}},
			{Tag: tag.StudyInstanceUID, VR: "UI", Values: []string{st.uid}},
		}}
		subs, err := as.Get(ctx, uid.StudyRootQueryRetrieveInformationModelGet, ident, nil)
		if err != nil || subs.Completed != len(st.want) {
			t.Fatalf("C-GET: %+v, %v", subs, err)
		}
		st.check(t, got)
	})

	for _, c := range []struct {
		name string
		args []string
	}{
		{"getscu", nil},
		// JPEG Lossless first, uncompressed after it, in one
		// presentation context: pacsd accepts the context with an
		// uncompressed syntax, into which it converts every instance.
		{"getscu +xs", []string{"+xs"}},
	} {
		t.Run(c.name, func(t *testing.T) {
			out := t.TempDir()
			args := append(append(append([]string{}, c.args...), "-od", out), study...)
			if o, err := p.dcmtk("getscu", args...); err != nil {
				t.Fatalf("getscu: %v\n%s", err, o)
			}
			checkUncompressed(t, out)
			st.check(t, receivedPixels(t, out))
		})
	}

	t.Run("forwarded to a storescp of uncompressed syntaxes", func(t *testing.T) {
		waitReceived(t, fwd, len(st.want), time.Minute)
		checkUncompressed(t, fwd.Dir)
		st.check(t, receivedPixels(t, fwd.Dir))
	})

	t.Run("movescu to a storescp of uncompressed syntaxes", func(t *testing.T) {
		if o, err := p.dcmtk("movescu", append([]string{"-aem", "STORESCP"}, study...)...); err != nil {
			t.Fatalf("movescu: %v\n%s", err, o)
		}
		checkUncompressed(t, scp.Dir)
		st.check(t, receivedPixels(t, scp.Dir))
	})
	// WADO-RS: Explicit VR Little Endian when no syntax is asked for,
	// and JPEG-LS lossless when asked, which dcmtk decodes.
	for _, c := range []struct{ accept, syntax string }{
		{`multipart/related; type="application/dicom"`, uid.ExplicitVRLittleEndian},
		{`multipart/related; type="application/dicom"; transfer-syntax=1.2.840.10008.1.2.4.80`, uid.JPEGLSLossless},
	} {
		t.Run("WADO-RS "+uid.Name(c.syntax), func(t *testing.T) {
			out := t.TempDir()
			wadoStudy(t, "http://"+p.httpAddr+"/dicom-web/studies/"+st.uid, c.accept, out)
			files := dirFiles(t, out)
			for _, path := range files {
				if meta, _ := part10(t, path); meta.TransferSyntaxUID != c.syntax {
					t.Errorf("%s received in %s", filepath.Base(path), uid.Name(meta.TransferSyntaxUID))
				}
			}
			st.check(t, receivedPixels(t, out))
		})
	}
}

// wadoStudy retrieves a study with WADO-RS and writes each part to dir.
func wadoStudy(t *testing.T, url, accept, dir string) {
	t.Helper()
	req, _ := http.NewRequestWithContext(t.Context(), "GET", url, nil)
	req.Header.Set("Accept", accept)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	mt, params, err := mime.ParseMediaType(resp.Header.Get("Content-Type"))
	if resp.StatusCode != 200 || err != nil || mt != "multipart/related" {
		b, _ := io.ReadAll(resp.Body)
		t.Fatalf("%s: %s %s", url, resp.Status, b)
	}
	mr := multipart.NewReader(resp.Body, params["boundary"])
	for i := 0; ; i++ {
		part, err := mr.NextPart()
		if err == io.EOF {
			return
		}
		if err != nil {
			t.Fatal(err)
		}
		b, err := io.ReadAll(part)
		if err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(dir, fmt.Sprintf("%d.dcm", i)), b, 0o644); err != nil {
			t.Fatal(err)
		}
	}
}

// checkUncompressed checks that every file in dir is in an uncompressed
// syntax.
func checkUncompressed(t *testing.T, dir string) {
	t.Helper()
	for _, path := range dirFiles(t, dir) {
		if meta, _ := part10(t, path); !slices.Contains([]string{uid.ExplicitVRLittleEndian, uid.ImplicitVRLittleEndian, uid.ExplicitVRBigEndian}, meta.TransferSyntaxUID) {
			t.Errorf("%s received in %s", filepath.Base(path), uid.Name(meta.TransferSyntaxUID))
		}
	}
}
