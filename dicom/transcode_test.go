package dicom

import (
	"bufio"
	"bytes"
	"compress/flate"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/pacsd/pacsd/dicom/tag"
	"github.com/pacsd/pacsd/dicom/uid"
	"github.com/pacsd/pacsd/internal/dcmgen"
	"github.com/pacsd/pacsd/internal/testpeer"
)

// transcode runs Transcode on data and fails the test on error.
func transcode(t testing.TB, data []byte, from, to uid.TransferSyntax) []byte {
	t.Helper()
	var b bytes.Buffer
	if err := Transcode(&b, bytes.NewReader(data), from, to); err != nil {
		t.Fatalf("Transcode %s → %s: %v", syntaxName(from), syntaxName(to), err)
	}
	return b.Bytes()
}

// inflate returns data inflated if ts is deflated, else data itself.
func inflate(t testing.TB, data []byte, ts uid.TransferSyntax) []byte {
	t.Helper()
	if !ts.Deflated {
		return data
	}
	b, err := io.ReadAll(flate.NewReader(bytes.NewReader(data)))
	if err != nil {
		t.Fatalf("inflate: %v", err)
	}
	return b
}

// generatedInputs writes dcmgen instances that cover what real files of
// the archive hold: both little endian syntaxes, 8 and 16 bits,
// multi-frame, character sets, nested and private sequences, and the
// binary VRs, including big values.
func generatedInputs(t *testing.T, dir string) []string {
	t.Helper()
	nested := []dcmgen.Item{{
		{Tag: 0x00081150, VR: "UI", Value: dcmgen.CTImageStorage},
		{Tag: 0x00081155, VR: "UI", Value: "1.2.3.4.5"},
		{Tag: 0x00081199, VR: "SQ", Value: []dcmgen.Item{
			{{Tag: 0x00081155, VR: "UI", Value: "1.2.3.4.6"}, {Tag: 0x00081160, VR: "IS", Value: []int{1, 2, 3}}},
		}},
	}, {}}
	extra := []dcmgen.Element{
		{Tag: 0x00081110, VR: "SQ", Value: nested},
		{Tag: 0x00090010, VR: "LO", Value: "PACSD TEST"},
		{Tag: 0x00091001, VR: "LO", Value: "private value"},
		{Tag: 0x00091002, VR: "SQ", Value: []dcmgen.Item{{{Tag: 0x00091003, VR: "US", Value: 7}}}},
		{Tag: 0x00109431, VR: "FL", Value: []float32{1.5, -2}},
		{Tag: 0x00081163, VR: "FD", Value: []float64{0.25, 1e100}},
		{Tag: 0x00186020, VR: "SL", Value: []int32{-70000, 3}},
		{Tag: 0x00189219, VR: "SS", Value: []int16{-5}},
		{Tag: 0x00081161, VR: "UL", Value: []uint32{1, 16909060}},
		{Tag: 0x00720082, VR: "SV", Value: []int64{-2, 1 << 40}},
		{Tag: 0x00720083, VR: "UV", Value: []uint64{1<<64 - 1}},
		{Tag: 0x00181638, VR: "OF", Value: []float32{1, 2, 3}},
		{Tag: 0x00660040, VR: "OL", Value: []uint32{1, 2, 3}},
		{Tag: 0x00700002, VR: "OD", Value: []float64{1, 2}},
		{Tag: 0x00281201, VR: "OW", Value: []uint16{1, 2, 3, 0xFFFF}},
		{Tag: 0x00080082, VR: "SQ", Value: []dcmgen.Item{}}, // empty sequence
		{Tag: 0x00280106, VR: "US", Value: 0},
		{Tag: 0x00280107, VR: "US", Value: 4095},
	}
	ins := map[string]dcmgen.Instance{
		"gen-explicit":      {Extra: extra, Patient: dcmgen.Patient{Name: "Doe^Jane", ID: "PID-1"}},
		"gen-implicit":      {Extra: extra, Syntax: dcmgen.ImplicitVRLittleEndian},
		"gen-latin1":        {SpecificCharacterSet: "ISO_IR 100", Patient: dcmgen.Patient{Name: latin1Name}, Syntax: dcmgen.ImplicitVRLittleEndian},
		"gen-utf8":          {SpecificCharacterSet: "ISO_IR 192", Patient: dcmgen.Patient{Name: japaneseName}},
		"gen-8bit":          {BitsAllocated: 8, NumberOfFrames: 3, Rows: 33, Columns: 17},
		"gen-8bit-implicit": {BitsAllocated: 8, Rows: 31, Columns: 17, Syntax: dcmgen.ImplicitVRLittleEndian},
		"gen-multiframe":    {NumberOfFrames: 4, Rows: 300, Columns: 200, Syntax: dcmgen.ImplicitVRLittleEndian},
	}
	var paths []string
	for name, in := range ins {
		f, err := dcmgen.Create(filepath.Join(dir, name+".dcm"), &in)
		if err != nil {
			t.Fatalf("%s: %v", name, err)
		}
		paths = append(paths, f.Path)
	}
	return paths
}

// dcmconvFlags writes each syntax the way Transcode does: every sequence
// and item of undefined length, no group lengths.
var dcmconvFlags = map[string][]string{
	uid.ImplicitVRLittleEndian:         {"+ti"},
	uid.ExplicitVRLittleEndian:         {"+te"},
	uid.ExplicitVRBigEndian:            {"+tb"},
	uid.DeflatedExplicitVRLittleEndian: {"+td"},
}

// datasetDump returns dcmdump's account of the data set of a file, File
// Meta Information left out, and its warnings.
func datasetDump(t *testing.T, path string) (dump, warnings string) {
	t.Helper()
	out, stderr, err := testpeer.Run(context.Background(), "dcmdump", "+U8", "-Un", path)
	if err != nil {
		t.Fatalf("dcmdump: %v", err)
	}
	_, ds, ok := strings.Cut(out, "# Dicom-Data-Set\n")
	if !ok {
		t.Fatalf("dcmdump found no data set in %s", path)
	}
	_, ds, _ = strings.Cut(ds, "\n") // "# Used TransferSyntax: ..."
	return ds, stderr
}

// TestTranscodeDcmconv converts the pydicom test files in uncompressed
// syntaxes and generated files into every syntax with both dcmconv and
// Transcode, and compares the results: dcmdump must read the same from
// both, and the bytes must be identical: dcmconv is told to write
// undefined lengths (-e) and no group lengths (-g), as Transcode does.
func TestTranscodeDcmconv(t *testing.T) {
	testpeer.Need(t, "dcmconv", "dcmdump")
	dir := t.TempDir()
	inputs := append(testpeer.PydicomFilesT(t), generatedInputs(t, dir)...)
	var mu sync.Mutex
	identical, compared := 0, 0
	t.Run("files", func(t *testing.T) {
		for _, path := range inputs {
			dcmconvCompare(t, dir, path, &mu, &compared, &identical)
		}
	})
	t.Logf("%d conversions compared with dcmconv, %d byte-identical", compared, identical)
	if compared < 400 {
		t.Errorf("only %d conversions compared", compared)
	}
}

// dcmconvCompare converts the file at path into every syntax with dcmconv
// and with Transcode, in parallel subtests, and compares the results.
func dcmconvCompare(t *testing.T, dir, path string, mu *sync.Mutex, compared, identical *int) {
	{
		m, data, err := readPart10(path)
		if err != nil {
			return // not Part-10: no syntax to start from
		}
		from, ok := uid.LookupTransferSyntax(m.TransferSyntaxUID)
		if !ok || !Transcodable(from.UID) {
			return
		}
		base := strings.TrimSuffix(filepath.Base(path), ".dcm")
		for _, to := range syntaxes {
			name := base + "-to-" + syntaxName(to)
			t.Run(name, func(t *testing.T) {
				t.Parallel()
				var ours bytes.Buffer
				if err := Transcode(&ours, bytes.NewReader(data), from, to); err != nil {
					if strings.Contains(base, "truncated") || base == "badVR" {
						t.Skipf("malformed on purpose: %v", err)
					}
					t.Fatalf("Transcode: %v", err)
				}
				meta := m
				meta.TransferSyntaxUID = to.UID
				oursPath := filepath.Join(dir, name+"-pacsd.dcm")
				if err := os.WriteFile(oursPath, append(AppendFileMeta(nil, meta), ours.Bytes()...), 0o644); err != nil {
					t.Fatal(err)
				}
				theirsPath := filepath.Join(dir, name+"-dcmconv.dcm")
				args := append(append([]string{"-q"}, dcmconvFlags[to.UID]...), "-e", "-g", path, theirsPath)
				if _, _, err := testpeer.Run(context.Background(), "dcmconv", args...); err != nil {
					t.Fatalf("dcmconv: %v", err)
				}
				mu.Lock()
				*compared++
				mu.Unlock()
				_, theirs, err := readPart10(theirsPath)
				if err != nil {
					t.Fatal(err)
				}
				// Deflated streams are compared inflated: zlib and
				// compress/flate compress the same bytes differently.
				a, b := inflate(t, ours.Bytes(), to), inflate(t, theirs, to)
				wide := from.BigEndian != to.BigEndian && regroupWidePixels(t, b, to)
				got, gotWarn := datasetDump(t, oursPath)
				want, wantWarn := datasetDump(t, theirsPath)
				if wide {
					got, want = withoutPixelData(got), withoutPixelData(want)
				}
				if got != want {
					t.Errorf("dcmdump differs:\n%s", lineDiff(want, got))
				}
				if gotWarn != wantWarn {
					t.Errorf("dcmdump warns differently:\n%s", lineDiff(wantWarn, gotWarn))
				}
				if bytes.Equal(a, b) {
					mu.Lock()
					*identical++
					mu.Unlock()
					return
				}
				i := 0
				for i < len(a) && i < len(b) && a[i] == b[i] {
					i++
				}
				t.Errorf("%d bytes, dcmconv's %d: they differ from offset %d", len(a), len(b), i)
			})
		}
	}
}

// regroupWidePixels turns dcmconv's conversion of 32- or 64-bit Pixel
// Data of VR OW between byte orders, which swaps 16-bit words, into the
// conversion SwapUnit prescribes, which swaps each pixel: in data, a data
// set in syntax ts, it undoes the word swap and swaps whole pixels. It
// reports whether it changed anything.
func regroupWidePixels(t *testing.T, data []byte, ts uid.TransferSyntax) bool {
	t.Helper()
	plain := ts
	plain.Deflated = false
	_, h, err := scanAll(t, data, plain, Limits{})
	if err != nil || h.Err != nil || h.PixelData == nil || h.PixelData.Encapsulated {
		return false
	}
	px, _ := h.Dataset.Find(tag.PixelData)
	bits, _ := strconv.Atoi(h.Dataset.First(tag.BitsAllocated))
	unit := SwapUnit(tag.PixelData, px.VR, bits)
	if unit <= 2 {
		return false
	}
	v := data[h.PixelData.Offset : h.PixelData.Offset+h.PixelData.Length]
	swapUnits(v, 2)
	swapUnits(v, unit)
	return true
}

// withoutPixelData drops the Pixel Data line of a dcmdump.
func withoutPixelData(dump string) string {
	lines := strings.Split(dump, "\n")
	return strings.Join(slices.DeleteFunc(lines, func(l string) bool { return strings.HasPrefix(l, "(7fe0,0010)") }), "\n")
}

// lineDiff lists the lines of want and got that differ, for messages.
func lineDiff(want, got string) string {
	w, g := strings.Split(want, "\n"), strings.Split(got, "\n")
	var b strings.Builder
	for i := 0; i < max(len(w), len(g)); i++ {
		var wl, gl string
		if i < len(w) {
			wl = w[i]
		}
		if i < len(g) {
			gl = g[i]
		}
		if wl != gl {
			fmt.Fprintf(&b, "dcmconv: %s\npacsd:   %s\n", wl, gl)
		}
	}
	return b.String()
}

// errWriter fails every write.
type errWriter struct{}

var errWrite = errors.New("write refused")

func (errWriter) Write([]byte) (int, error) { return 0, errWrite }

// TestTranscodeStructures converts hand-built data sets with the
// structures real files rarely show and checks the bytes.
func TestTranscodeStructures(t *testing.T) {
	t.Run("defined lengths, group lengths, odd lengths, UN sequence, unknown VR", func(t *testing.T) {
		in := &enc{sx: syntax{explicit: true}}
		in.el(tag.New(0x0008, 0x0000), "UL", 4, []byte{0, 0, 0, 0}) // dropped
		in.str(tag.SOPInstanceUID, "UI", "1.2.3")
		// A sequence of defined length holding an item of defined length.
		item := &enc{sx: syntax{explicit: true}}
		item.str(tag.ReferencedSOPInstanceUID, "UI", "1.2")
		in.el(tag.ReferencedStudySequence, "SQ", uint32(8+item.b.Len()), nil)
		in.el(tag.Item, "", uint32(item.b.Len()), item.b.Bytes())
		// A private sequence sent as UN: implicit VR items.
		in.el(tag.New(0x0009, 0x0010), "LO", 4, []byte("ACME"))
		in.el(tag.New(0x0009, 0x1001), "UN", undefinedLength, nil)
		im := &enc{sx: syntax{}}
		im.el(tag.Item, "", 10, nil)
		im.el(tag.New(0x0009, 0x1002), "", 2, []byte("ab"))
		im.el(tag.SequenceDelimitationItem, "", 0, nil)
		in.b.Write(im.b.Bytes())
		in.el(tag.PatientName, "PN", 3, []byte("Doe"))              // odd: padded with a space
		in.el(tag.New(0x0011, 0x1001), "ZZ", 3, []byte{1, 2, 3})    // unknown VR: UN, padded with zero
		in.el(tag.New(0x0020, 0x0000), "UL", 4, []byte{0, 0, 0, 0}) // dropped

		want := &enc{sx: syntax{explicit: true}}
		want.str(tag.SOPInstanceUID, "UI", "1.2.3")
		want.el(tag.ReferencedStudySequence, "SQ", undefinedLength, nil)
		want.el(tag.Item, "", undefinedLength, nil)
		want.str(tag.ReferencedSOPInstanceUID, "UI", "1.2")
		want.el(tag.ItemDelimitationItem, "", 0, nil)
		want.el(tag.SequenceDelimitationItem, "", 0, nil)
		want.el(tag.New(0x0009, 0x0010), "LO", 4, []byte("ACME"))
		want.el(tag.New(0x0009, 0x1001), "UN", undefinedLength, nil)
		wim := &enc{sx: syntax{}}
		wim.el(tag.Item, "", undefinedLength, nil)
		wim.el(tag.New(0x0009, 0x1002), "", 2, []byte("ab"))
		wim.el(tag.ItemDelimitationItem, "", 0, nil)
		wim.el(tag.SequenceDelimitationItem, "", 0, nil)
		want.b.Write(wim.b.Bytes())
		want.el(tag.PatientName, "PN", 4, []byte("Doe "))
		want.el(tag.New(0x0011, 0x1001), "UN", 4, []byte{1, 2, 3, 0})

		if got := transcode(t, in.b.Bytes(), explicitLE, explicitLE); !bytes.Equal(got, want.b.Bytes()) {
			t.Errorf("got  %x\nwant %x", got, want.b.Bytes())
		}
		// In big endian the UN sequence keeps its little endian items.
		be := transcode(t, in.b.Bytes(), explicitLE, explicitBE)
		if !bytes.Contains(be, wim.b.Bytes()) {
			t.Errorf("UN sequence items changed in big endian: %x", be)
		}
		if back := transcode(t, be, explicitBE, explicitLE); !bytes.Equal(back, want.b.Bytes()) {
			t.Errorf("back from big endian:\n got  %x\nwant %x", back, want.b.Bytes())
		}
	})

	t.Run("implicit to explicit VR", func(t *testing.T) {
		in := &enc{sx: syntax{}}
		in.el(tag.SOPInstanceUID, "", 6, []byte("1.2.3\x00"))
		in.el(tag.PixelRepresentation, "", 2, []byte{1, 0})
		in.el(tag.SmallestImagePixelValue, "", 2, []byte{0xFB, 0xFF})
		in.el(tag.LUTDescriptor, "", 6, []byte{0, 1, 0, 0, 16, 0})
		long := bytes.Repeat([]byte("x"), 70000)
		in.el(tag.New(0x0032, 0x4000), "", uint32(len(long)), long) // LT too long for its header
		in.el(tag.New(0x0033, 0x0010), "", 4, []byte("ACME"))
		in.el(tag.New(0x0033, 0x1001), "", 4, []byte{1, 2, 3, 4})
		in.el(tag.New(0x0033, 0x1002), "", undefinedLength, nil) // unknown: a sequence
		in.el(tag.Item, "", 12, nil)
		in.el(tag.New(0x0033, 0x1003), "", 4, []byte("abcd"))
		in.el(tag.SequenceDelimitationItem, "", 0, nil)
		in.el(tag.PixelData, "", 4, []byte{1, 2, 3, 4})

		want := &enc{sx: syntax{explicit: true, bigEndian: true}}
		want.str(tag.SOPInstanceUID, "UI", "1.2.3")
		want.el(tag.PixelRepresentation, "US", 2, []byte{0, 1})
		want.el(tag.SmallestImagePixelValue, "SS", 2, []byte{0xFF, 0xFB})
		want.el(tag.LUTDescriptor, "US", 6, []byte{1, 0, 0, 0, 0, 16})
		want.el(tag.New(0x0032, 0x4000), "UN", uint32(len(long)), long)
		want.el(tag.New(0x0033, 0x0010), "LO", 4, []byte("ACME"))
		want.el(tag.New(0x0033, 0x1001), "UN", 4, []byte{1, 2, 3, 4})
		want.el(tag.New(0x0033, 0x1002), "SQ", undefinedLength, nil)
		want.el(tag.Item, "", undefinedLength, nil)
		want.el(tag.New(0x0033, 0x1003), "UN", 4, []byte("abcd"))
		want.el(tag.ItemDelimitationItem, "", 0, nil)
		want.el(tag.SequenceDelimitationItem, "", 0, nil)
		want.el(tag.PixelData, "OW", 4, []byte{2, 1, 4, 3})

		got := transcode(t, in.b.Bytes(), implicitLE, explicitBE)
		if !bytes.Equal(got, want.b.Bytes()) {
			t.Errorf("got  %x\nwant %x", got, want.b.Bytes())
		}
		// Back to implicit VR, every byte is as it was but the
		// sequence's item, now of undefined length.
		back := transcode(t, got, explicitBE, implicitLE)
		if again := transcode(t, back, implicitLE, explicitBE); !bytes.Equal(again, got) {
			t.Errorf("implicit → big endian → implicit → big endian is not stable")
		}
	})

	t.Run("byte swapping per VR", func(t *testing.T) {
		in := &enc{sx: syntax{explicit: true}}
		in.el(tag.FrameIncrementPointer, "AT", 4, []byte{0x18, 0x00, 0x63, 0x10})
		in.el(tag.Rows, "US", 4, []byte{1, 2, 3, 4})
		in.el(tag.New(0x0028, 0x1201), "OW", 4, []byte{1, 2, 3, 4})
		in.el(tag.New(0x0066, 0x0040), "OL", 8, []byte{1, 2, 3, 4, 5, 6, 7, 8})
		in.el(tag.New(0x0072, 0x0082), "SV", 8, []byte{1, 2, 3, 4, 5, 6, 7, 8})
		in.el(tag.New(0x0008, 0x1163), "FD", 8, []byte{1, 2, 3, 4, 5, 6, 7, 8})
		in.el(tag.New(0x0010, 0x9431), "FL", 4, []byte{1, 2, 3, 4})
		in.el(tag.PatientName, "PN", 4, []byte("ab^c"))
		in.el(tag.PixelData, "OB", 4, []byte{1, 2, 3, 4})
		want := &enc{sx: syntax{explicit: true, bigEndian: true}}
		want.el(tag.FrameIncrementPointer, "AT", 4, []byte{0x00, 0x18, 0x10, 0x63})
		want.el(tag.Rows, "US", 4, []byte{2, 1, 4, 3})
		want.el(tag.New(0x0028, 0x1201), "OW", 4, []byte{2, 1, 4, 3})
		want.el(tag.New(0x0066, 0x0040), "OL", 8, []byte{4, 3, 2, 1, 8, 7, 6, 5})
		want.el(tag.New(0x0072, 0x0082), "SV", 8, []byte{8, 7, 6, 5, 4, 3, 2, 1})
		want.el(tag.New(0x0008, 0x1163), "FD", 8, []byte{8, 7, 6, 5, 4, 3, 2, 1})
		want.el(tag.New(0x0010, 0x9431), "FL", 4, []byte{4, 3, 2, 1})
		want.el(tag.PatientName, "PN", 4, []byte("ab^c"))
		want.el(tag.PixelData, "OB", 4, []byte{1, 2, 3, 4})
		if got := transcode(t, in.b.Bytes(), explicitLE, explicitBE); !bytes.Equal(got, want.b.Bytes()) {
			t.Errorf("got  %x\nwant %x", got, want.b.Bytes())
		}
	})

	t.Run("swapping across buffer boundaries", func(t *testing.T) {
		// A value several buffers long, of a length that is not a
		// multiple of the buffer, swaps like a short one.
		n := 3*copyBuffer + 24
		v := make([]byte, n)
		for i := range v {
			v[i] = byte(i * 7)
		}
		in := &enc{sx: syntax{explicit: true}}
		in.el(tag.New(0x0070, 0x0002), "OD", uint32(n), v)
		got := transcode(t, in.b.Bytes(), explicitLE, explicitBE)
		w := bytes.Clone(v)
		swapUnits(w, 8)
		if !bytes.Equal(got[12:], w) {
			t.Errorf("OD value swapped wrongly")
		}
	})

	t.Run("implicit data set labelled explicit", func(t *testing.T) {
		in := &enc{sx: syntax{}}
		in.ids()
		want := &enc{sx: syntax{explicit: true}}
		want.ids()
		if got := transcode(t, in.b.Bytes(), explicitLE, explicitLE); !bytes.Equal(got, want.b.Bytes()) {
			t.Errorf("got  %x\nwant %x", got, want.b.Bytes())
		}
	})

	t.Run("deflated in and out", func(t *testing.T) {
		d := queryDataset(latin1Name, "deflated")
		plain := encode(t, d, explicitLE, CharsetLatin1)
		deflated := encode(t, d, deflatedLE, CharsetLatin1)
		if got := transcode(t, deflated, deflatedLE, explicitLE); !bytes.Equal(got, plain) {
			t.Errorf("deflated → explicit differs from the explicit encoding")
		}
		if got := inflate(t, transcode(t, plain, explicitLE, deflatedLE), deflatedLE); !bytes.Equal(got, plain) {
			t.Errorf("explicit → deflated does not inflate to the explicit encoding")
		}
	})

	t.Run("empty", func(t *testing.T) {
		for _, from := range []uid.TransferSyntax{implicitLE, explicitLE, explicitBE} {
			for _, to := range syntaxes {
				got := inflate(t, transcode(t, nil, from, to), to)
				if len(got) != 0 {
					t.Errorf("%s → %s: %x", syntaxName(from), syntaxName(to), got)
				}
			}
		}
	})
}

func TestTranscodeErrors(t *testing.T) {
	ex := func(build func(e *enc)) []byte {
		e := &enc{sx: syntax{explicit: true}}
		build(e)
		return e.b.Bytes()
	}
	deep := ex(func(e *enc) {
		for range maxTranscodeDepth + 1 {
			e.el(tag.ReferencedStudySequence, "SQ", undefinedLength, nil)
			e.el(tag.Item, "", undefinedLength, nil)
		}
	})
	tests := []struct {
		name     string
		data     []byte
		from, to uid.TransferSyntax
		is       error
		want     string
	}{
		{"encapsulated pixel data", ex(func(e *enc) {
			e.str(tag.SOPInstanceUID, "UI", "1.2")
			e.el(tag.PixelData, "OB", undefinedLength, nil)
			e.el(tag.Item, "", 0, nil)
			e.el(tag.SequenceDelimitationItem, "", 0, nil)
		}), explicitLE, explicitBE, ErrUnsupported, "element (7FE0,0010) at offset 12 is encapsulated"},
		{"compressed syntax", nil, uid.TransferSyntax{UID: uid.JPEGBaseline8Bit, ExplicitVR: true, Encapsulated: true}, explicitLE, ErrUnsupported, "JPEG"},
		{"to a compressed syntax", nil, explicitLE, uid.TransferSyntax{UID: uid.JPEG2000Lossless, ExplicitVR: true, Encapsulated: true}, ErrUnsupported, "JPEG 2000"},
		{"value cut short", ex(func(e *enc) {
			e.str(tag.SOPInstanceUID, "UI", "1.2")
			e.el(tag.PixelData, "OW", 1<<30, []byte{1, 2, 3, 4})
		}), explicitLE, explicitBE, ErrTruncated, "element (7FE0,0010) at offset 12: dicom: data set truncated: data set ends inside a value at offset 28"},
		{"header cut short", []byte{8, 0, 0x18, 0, 'U'}, explicitLE, implicitLE, ErrMalformed, "inside an element header"},
		{"item at the top level", ex(func(e *enc) { e.el(tag.Item, "", 0, nil) }), explicitLE, implicitLE, ErrMalformed, "(FFFE,E000) outside a sequence at offset 0"},
		{"bad VR", ex(func(e *enc) {
			e.str(tag.SOPInstanceUID, "UI", "1.2")
			e.el(tag.PatientName, "p1", 0, nil)
		}), explicitLE, implicitLE, ErrMalformed, `element (0010,0010) at offset 12 has VR "p1"`},
		{"element overruns its item", ex(func(e *enc) {
			e.el(tag.ReferencedStudySequence, "SQ", undefinedLength, nil)
			e.el(tag.Item, "", 10, nil)
			e.el(tag.ReferencedSOPInstanceUID, "UI", 4, []byte("1.2\x00"))
		}), explicitLE, implicitLE, ErrMalformed, "element (0008,1155) at offset 20 overruns its item"},
		{"item overruns its sequence", ex(func(e *enc) {
			e.el(tag.ReferencedStudySequence, "SQ", 8, nil)
			e.el(tag.Item, "", 2, nil)
		}), explicitLE, implicitLE, ErrMalformed, "overruns sequence (0008,1110)"},
		{"not an item in a sequence", ex(func(e *enc) {
			e.el(tag.ReferencedStudySequence, "SQ", undefinedLength, nil)
			e.el(tag.PatientName, "PN", 0, nil)
		}), explicitLE, implicitLE, ErrMalformed, "where an item of sequence (0008,1110) belongs"},
		{"text of undefined length", ex(func(e *enc) { e.el(tag.PatientComments, "UT", undefinedLength, nil) }), explicitLE, implicitLE, ErrMalformed, "(0010,4000) (UT) at offset 0 has an undefined length"},
		{"nested too deep", deep, explicitLE, implicitLE, ErrMalformed, "nested deeper than 128"},
		{"corrupt deflate", []byte{0xff, 2, 3}, deflatedLE, explicitLE, ErrMalformed, "deflated stream"},
		{"truncated deflate", deflatedPrefix(), deflatedLE, explicitLE, ErrMalformed, "deflated stream"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := Transcode(io.Discard, bytes.NewReader(tt.data), tt.from, tt.to)
			if err == nil {
				t.Fatal("no error")
			}
			if tt.is != nil && !errors.Is(err, tt.is) {
				t.Errorf("error %v is not %v", err, tt.is)
			}
			if !strings.Contains(err.Error(), tt.want) {
				t.Errorf("error %q does not say %q", err, tt.want)
			}
		})
	}
	t.Run("write error", func(t *testing.T) {
		data := encode(t, queryDataset("Doe^Jane", "x"), explicitLE, "")
		if err := Transcode(errWriter{}, bytes.NewReader(data), explicitLE, explicitBE); !errors.Is(err, errWrite) {
			t.Errorf("error %v, want the writer's", err)
		}
	})
}

// roundTripInputs returns the data sets and syntaxes of the uncompressed
// pydicom test files that are well formed, and of generated files.
func roundTripInputs(t *testing.T) map[string]struct {
	data []byte
	ts   uid.TransferSyntax
} {
	t.Helper()
	paths := generatedInputs(t, t.TempDir())
	if files, err := testpeer.PydicomFiles(); err == nil {
		paths = append(paths, files...)
	} else if !errors.Is(err, testpeer.ErrNotInstalled) {
		t.Fatal(err)
	}
	out := map[string]struct {
		data []byte
		ts   uid.TransferSyntax
	}{}
	for _, p := range paths {
		m, data, err := readPart10(p)
		if err != nil {
			continue
		}
		ts, ok := uid.LookupTransferSyntax(m.TransferSyntaxUID)
		if !ok || !Transcodable(ts.UID) || Transcode(io.Discard, bytes.NewReader(data), ts, ts) != nil {
			continue // malformed on purpose
		}
		out[filepath.Base(filepath.Dir(p))+"/"+filepath.Base(p)] = struct {
			data []byte
			ts   uid.TransferSyntax
		}{data, ts}
	}
	return out
}

// TestTranscodeRoundTrip converts files there and back. The first
// conversion changes the layout (undefined lengths, no group lengths,
// padding); from then on:
//
//   - little endian → big endian → little endian, and explicit →
//     deflated → explicit, give back the same bytes;
//   - implicit → explicit → implicit gives back the same bytes;
//   - explicit → implicit → explicit gives back the same bytes only when
//     every VR is the dictionary's (private elements come back as UN, OB
//     pixel data as OW, a UN sequence as SQ), so it is checked on data
//     sets that were implicit to begin with;
//   - converting to the same syntax changes nothing.
func TestTranscodeRoundTrip(t *testing.T) {
	inputs := roundTripInputs(t)
	if len(inputs) < 7 {
		t.Fatalf("only %d inputs", len(inputs))
	}
	for name, in := range inputs {
		t.Run(name, func(t *testing.T) {
			le := transcode(t, in.data, in.ts, explicitLE)
			be := transcode(t, le, explicitLE, explicitBE)
			if back := transcode(t, be, explicitBE, explicitLE); !bytes.Equal(back, le) {
				t.Errorf("LE → BE → LE differs")
			}
			deflated := transcode(t, le, explicitLE, deflatedLE)
			if len(deflated)%2 != 0 {
				t.Errorf("deflated data set has odd length %d; PS3.5 A.5 pads it", len(deflated))
			}
			if back := transcode(t, deflated, deflatedLE, explicitLE); !bytes.Equal(back, le) {
				t.Errorf("LE → deflated → LE differs")
			}
			im := transcode(t, in.data, in.ts, implicitLE)
			if back := transcode(t, transcode(t, im, implicitLE, explicitLE), explicitLE, implicitLE); !bytes.Equal(back, im) {
				t.Errorf("implicit → explicit → implicit differs")
			}
			if in.ts.UID == uid.ImplicitVRLittleEndian {
				if back := transcode(t, transcode(t, le, explicitLE, implicitLE), implicitLE, explicitLE); !bytes.Equal(back, le) {
					t.Errorf("explicit → implicit → explicit differs for an implicit VR source")
				}
			}
			for _, x := range []struct {
				data []byte
				ts   uid.TransferSyntax
			}{{le, explicitLE}, {be, explicitBE}, {im, implicitLE}} {
				if same := transcode(t, x.data, x.ts, x.ts); !bytes.Equal(same, x.data) {
					t.Errorf("%s → %s changes the data set", syntaxName(x.ts), syntaxName(x.ts))
				}
			}
			// The values are the ones the Scanner reads from the input.
			want, got := decodeHeader(t, in.data, in.ts), decodeHeader(t, be, explicitBE)
			want.Elements = slices.DeleteFunc(want.Elements, func(e Element) bool { return e.Tag.Element() == 0 })
			if w, g := string(must(want.MarshalJSON())), string(must(got.MarshalJSON())); w != g && in.ts.ExplicitVR {
				t.Errorf("values differ after conversion to big endian:\n%s\n%s", w, g)
			}
		})
	}
}

func must[T any](v T, err error) T {
	if err != nil {
		panic(err)
	}
	return v
}

// TestTranscodeMemory transcodes a multi-frame data set of more than
// 256 MiB from little to big endian and checks that memory stays bounded.
func TestTranscodeMemory(t *testing.T) {
	if testing.Short() {
		t.Skip("transcodes 256 MiB")
	}
	in := dcmgen.Instance{Rows: 512, Columns: 512, BitsAllocated: 16}
	if err := in.FitFrames(260 << 20); err != nil {
		t.Fatal(err)
	}
	pr, pw := io.Pipe()
	go func() { _, err := dcmgen.WriteFile(pw, &in); pw.CloseWithError(err) }()
	br := bufio.NewReader(pr)
	if _, _, err := ReadFileMeta(br); err != nil {
		t.Fatal(err)
	}
	runtime.GC()
	var before, after runtime.MemStats
	runtime.ReadMemStats(&before)
	done, peakc := make(chan struct{}), make(chan uint64)
	go func() {
		var m runtime.MemStats
		peak := uint64(0)
		for {
			select {
			case <-done:
				peakc <- peak
				return
			case <-time.After(20 * time.Millisecond):
				runtime.ReadMemStats(&m)
				peak = max(peak, m.HeapInuse)
			}
		}
	}()
	n := &countWriter{}
	err := Transcode(n, br, explicitLE, explicitBE)
	close(done)
	peak := <-peakc
	runtime.ReadMemStats(&after)
	if err != nil {
		t.Fatal(err)
	}
	if n.n < 256<<20 {
		t.Fatalf("only %d bytes written", n.n)
	}
	allocated := after.TotalAlloc - before.TotalAlloc
	t.Logf("%d MiB transcoded: %d KiB allocated in all, heap in use at most %d MiB", n.n>>20, allocated>>10, peak>>20)
	if allocated > 16<<20 {
		t.Errorf("%d MiB allocated to transcode %d MiB", allocated>>20, n.n>>20)
	}
	if peak > before.HeapInuse+32<<20 {
		t.Errorf("heap in use reached %d MiB", peak>>20)
	}
}

type countWriter struct{ n int64 }

func (w *countWriter) Write(p []byte) (int, error) { w.n += int64(len(p)); return len(p), nil }

// FuzzTranscode checks that Transcode never panics, allocates no more
// than its buffers whatever lengths the input claims, and that its output
// converts to the same syntax unchanged.
func FuzzTranscode(f *testing.F) {
	e := &enc{sx: syntax{explicit: true}}
	e.ids()
	e.el(tag.ReferencedStudySequence, "SQ", undefinedLength, nil)
	e.el(tag.Item, "", undefinedLength, nil)
	e.str(tag.ReferencedSOPClassUID, "UI", "1.2")
	e.el(tag.ItemDelimitationItem, "", 0, nil)
	e.el(tag.SequenceDelimitationItem, "", 0, nil)
	e.el(tag.New(0x0009, 0x1001), "UN", undefinedLength, nil)
	e.el(tag.Item, "", undefinedLength, nil)
	e.el(tag.ItemDelimitationItem, "", 0, nil)
	e.el(tag.SequenceDelimitationItem, "", 0, nil)
	e.el(tag.PixelData, "OW", 4, []byte{1, 2, 3, 4})
	f.Add(e.b.Bytes(), uint8(1), uint8(2))
	im := &enc{sx: syntax{}}
	im.ids()
	im.el(tag.PixelRepresentation, "", 2, []byte{1, 0})
	im.el(tag.SmallestImagePixelValue, "", 2, []byte{1, 0})
	f.Add(im.b.Bytes(), uint8(0), uint8(2))
	for _, seed := range sampleSeeds(f) {
		f.Add(seed, uint8(0), uint8(2))
		f.Add(seed, uint8(1), uint8(0))
	}
	f.Add(encode(f, queryDataset(japaneseName, "x"), deflatedLE, CharsetUTF8), uint8(3), uint8(2))
	f.Fuzz(func(t *testing.T, data []byte, from, to uint8) {
		src, dst := syntaxes[int(from)%len(syntaxes)], syntaxes[int(to)%len(syntaxes)]
		var before, after runtime.MemStats
		runtime.ReadMemStats(&before)
		err := Transcode(io.Discard, bytes.NewReader(data), src, dst)
		runtime.ReadMemStats(&after)
		// The buffers, deflate's state and the recursion are all there
		// is; none grows with a length read from the input.
		if a := after.TotalAlloc - before.TotalAlloc; a > 4<<20 {
			t.Fatalf("%d bytes allocated for %d bytes of input", a, len(data))
		}
		if err != nil {
			// The source is in memory and the destination discards:
			// every error is the input's fault or a limit.
			if !errors.Is(err, ErrMalformed) && !errors.Is(err, ErrUnsupported) {
				t.Fatalf("error %v is neither ErrMalformed nor ErrUnsupported", err)
			}
			return
		}
		out := transcode(t, data, src, dst)
		again, err := transcodeBytes(out, dst, dst)
		if dst.ExplicitVR {
			// The output has every VR, every length undefined or
			// even: read again, it is written again unchanged.
			if err != nil {
				t.Fatalf("output does not transcode again: %v", err)
			}
			if !bytes.Equal(inflate(t, again, dst), inflate(t, out, dst)) {
				t.Fatalf("output changes when transcoded again:\n%x\n%x", out, again)
			}
			return
		}
		// In implicit VR, reading the output again takes each VR from
		// the dictionary, which may disagree with the input's explicit
		// VR; after that the output is stable.
		if err == nil {
			if third, err := transcodeBytes(again, dst, dst); err != nil || !bytes.Equal(third, again) {
				t.Fatalf("implicit VR output not stable: %v", err)
			}
		}
	})
}

func transcodeBytes(data []byte, from, to uid.TransferSyntax) ([]byte, error) {
	var b bytes.Buffer
	err := Transcode(&b, bytes.NewReader(data), from, to)
	return b.Bytes(), err
}

// TestTranscodeUNSequenceDcmdump checks that dcmtk reads a sequence sent
// as UN, whose items stay implicit VR little endian, from Transcode's
// output in every syntax, big endian included.
func TestTranscodeUNSequenceDcmdump(t *testing.T) {
	testpeer.Need(t, "dcmdump")
	in := &enc{sx: syntax{explicit: true}}
	in.str(tag.SOPInstanceUID, "UI", "1.2.3")
	in.el(tag.New(0x0009, 0x0010), "LO", 4, []byte("ACME"))
	in.el(tag.New(0x0009, 0x1001), "UN", undefinedLength, nil)
	im := &enc{sx: syntax{}}
	im.el(tag.Item, "", 10, nil)
	im.el(tag.New(0x0009, 0x1002), "", 2, []byte("ab"))
	im.el(tag.SequenceDelimitationItem, "", 0, nil)
	in.b.Write(im.b.Bytes())
	in.el(tag.PatientName, "PN", 4, []byte("Doe "))
	dir := t.TempDir()
	for _, ts := range syntaxes {
		t.Run(syntaxName(ts), func(t *testing.T) {
			path := filepath.Join(dir, syntaxName(ts)+".dcm")
			file := AppendFileMeta(nil, FileMeta{MediaStorageSOPClassUID: uid.CTImageStorage, MediaStorageSOPInstanceUID: "1.2.3",
				TransferSyntaxUID: ts.UID, ImplementationClassUID: ImplementationClassUID})
			if err := os.WriteFile(path, append(file, transcode(t, in.b.Bytes(), explicitLE, ts)...), 0o644); err != nil {
				t.Fatal(err)
			}
			dump, warnings := datasetDump(t, path)
			for _, want := range []string{"    (0009,1002) ?? 61\\62 ", "(0010,0010) PN [Doe] "} {
				if !strings.Contains(dump, want) {
					t.Errorf("dcmdump does not show %q:\n%s", want, dump)
				}
			}
			// dcmtk announces that it reads the UN element as a
			// sequence (CP-246); anything else is a complaint.
			for _, w := range strings.Split(strings.TrimSpace(warnings), "\n") {
				if w != "" && !strings.HasSuffix(w, "(CP-246)") {
					t.Errorf("dcmdump warns: %s", w)
				}
			}
		})
	}
}

// deflatedPrefix returns the first half of a deflated data set.
func deflatedPrefix() []byte {
	var b bytes.Buffer
	if err := queryDataset("Doe^Jane", "x").Encode(&b, deflatedLE, EncodeOptions{}); err != nil {
		panic(err)
	}
	return b.Bytes()[:b.Len()/2]
}

// TestTranscodeHeader: an implicit VR data set with encapsulated pixel
// data, in a syntax that says explicit VR, comes out in explicit VR with
// its fragments unchanged; Transcode refuses the fragments.
func TestTranscodeHeader(t *testing.T) {
	le := func(b []byte, v ...uint32) []byte {
		for _, x := range v {
			b = append(b, byte(x), byte(x>>8), byte(x>>16), byte(x>>24))
		}
		return b
	}
	var in []byte
	in = append(in, 0x08, 0x00, 0x60, 0x00) // (0008,0060) Modality
	in = le(in, 2)
	in = append(in, "OT"...)
	in = append(in, 0x28, 0x00, 0x10, 0x00) // (0028,0010) Rows
	in = le(in, 2)
	in = append(in, 8, 0)
	in = append(in, 0xE0, 0x7F, 0x10, 0x00) // (7FE0,0010) Pixel Data
	in = le(in, 0xFFFFFFFF)
	in = append(in, 0xFE, 0xFF, 0x00, 0xE0)
	in = le(in, 0) // Basic Offset Table
	in = append(in, 0xFE, 0xFF, 0x00, 0xE0)
	in = le(in, 4)
	in = append(in, 0xFF, 0xD8, 0xFF, 0xD9)
	in = append(in, 0xFE, 0xFF, 0xDD, 0xE0)
	in = le(in, 0)

	explicit, _ := uid.LookupTransferSyntax(uid.ExplicitVRLittleEndian)
	if err := Transcode(io.Discard, bytes.NewReader(in), explicit, explicit); !errors.Is(err, ErrUnsupported) {
		t.Errorf("Transcode = %v, want ErrUnsupported", err)
	}
	var out bytes.Buffer
	if err := TranscodeHeader(&out, bytes.NewReader(in), explicit, explicit); err != nil {
		t.Fatal(err)
	}
	var want []byte
	want = append(want, 0x08, 0x00, 0x60, 0x00, 'C', 'S', 2, 0, 'O', 'T')
	want = append(want, 0x28, 0x00, 0x10, 0x00, 'U', 'S', 2, 0, 8, 0)
	want = append(want, 0xE0, 0x7F, 0x10, 0x00, 'O', 'B', 0, 0)
	want = append(want, in[len(in)-32:]...) // length, fragments, delimiter
	if !bytes.Equal(out.Bytes(), want) {
		t.Errorf("got\n% x\nwant\n% x", out.Bytes(), want)
	}
}
