package dicom

import (
	"bytes"
	"encoding/json"
	"flag"
	"fmt"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"

	"github.com/pacsd/pacsd/dicom/tag"
	"github.com/pacsd/pacsd/dicom/uid"
	"github.com/pacsd/pacsd/internal/testpeer"
)

var update = flag.Bool("update", false, "rewrite the golden files in testdata/json from the current output")

// A sampleDir is where a sample file comes from: the project's own
// testdata, or one of the two directories of test files that Debian's
// python3-pydicom installs.
type sampleDir int

const (
	ownSamples sampleDir = iota
	pydicomTestFiles
	pydicomCharsetFiles
)

// goldenSamples are the files whose DICOM JSON is kept in testdata/json.
// Together they hold every VR that occurs in the samples but AE (AS AT CS
// DA DS DT FD FL IS LO LT OB OF OW PN SH SL SQ SS ST TM UI UL UN US UT),
// every transfer syntax family (implicit and explicit little endian, big
// endian, deflated, encapsulated) and the character sets pacsd decodes.
// The one sample with AE values, waveform_ecg.dcm, would weigh 170 KB as
// a golden file; TestJSONPerVR covers AE, and the VRs no sample holds.
var goldenSamples = []struct {
	dir  sampleDir
	file string
}{
	{ownSamples, "ct-explicit-le.dcm"},
	{ownSamples, "mr-implicit-le-latin1.dcm"},
	{ownSamples, "ct-utf8-multiframe.dcm"},
	// FD, FL, SL, SS, UL and LT values, private GE elements, an inline
	// OB and a located OW.
	{pydicomTestFiles, "CT_small.dcm"},
	{pydicomTestFiles, "MR_small.dcm"},
	// Sequences nested four deep, implicit VR.
	{pydicomTestFiles, "rtplan.dcm"},
	// Odd lengths, DT, ST and a sequence, explicit VR.
	{pydicomTestFiles, "SC_rgb_small_odd.dcm"},
	// JPEG 2000: encapsulated Pixel Data, AT.
	{pydicomTestFiles, "JPEG2000.dcm"},
	// Explicit VR Big Endian: inline values swapped to little endian.
	{pydicomTestFiles, "ExplVR_BigEnd.dcm"},
	{pydicomTestFiles, "rtdose_expb_1frame.dcm"},
	// Deflated: bulk values located in the inflated data set.
	{pydicomTestFiles, "image_dfl.dcm"},
	// Structured reports: deep content trees, UT, and empty FD, FL, OF,
	// SL, SS, UL and US values.
	{pydicomTestFiles, "test-SR.dcm"},
	{pydicomTestFiles, "reportsi_with_empty_number_tags.dcm"},
	// UN: private elements in explicit VR, a whole data set of UN
	// values, and private sequences of undefined length read as SQ.
	{pydicomTestFiles, "J2K_pixelrep_mismatch.dcm"},
	{pydicomTestFiles, "rtdose_rle_1frame.dcm"},
	{pydicomTestFiles, "nested_priv_SQ.dcm"},
	{pydicomTestFiles, "UN_sequence.dcm"},
	// Character sets: Arabic, Greek, Hebrew, Russian, Latin-1 French
	// and German, UTF-8 and GB 18030 (chrX1, chrX2), ISO 2022 Japanese
	// (chrH31, chrH32, chrJapMulti), ISO 2022 Korean (chrI2,
	// chrKoreanMulti), and a character set changed inside a sequence
	// item (chrSQEncoding).
	{pydicomCharsetFiles, "chrArab.dcm"},
	{pydicomCharsetFiles, "chrFrenMulti.dcm"},
	{pydicomCharsetFiles, "chrGerm.dcm"},
	{pydicomCharsetFiles, "chrGreek.dcm"},
	{pydicomCharsetFiles, "chrHbrw.dcm"},
	{pydicomCharsetFiles, "chrRuss.dcm"},
	{pydicomCharsetFiles, "chrX1.dcm"},
	{pydicomCharsetFiles, "chrX2.dcm"},
	{pydicomCharsetFiles, "chrH31.dcm"},
	{pydicomCharsetFiles, "chrH32.dcm"},
	{pydicomCharsetFiles, "chrJapMulti.dcm"},
	{pydicomCharsetFiles, "chrI2.dcm"},
	{pydicomCharsetFiles, "chrKoreanMulti.dcm"},
	{pydicomCharsetFiles, "chrSQEncoding.dcm"},
}

// TestJSONGolden compares the DICOM JSON of each golden sample, as
// DICOMweb's /metadata serves it, byte for byte with its golden file, and
// checks that ParseJSON reads the golden file back to the same JSON less
// its bulk data URIs. Run `go test ./dicom -run TestJSONGolden -update` to
// rewrite the golden files after a deliberate change, and review the diff.
func TestJSONGolden(t *testing.T) {
	seen := map[string]bool{}
	for _, s := range goldenSamples {
		name := strings.TrimSuffix(s.file, filepath.Ext(s.file))
		if seen[name] {
			t.Fatalf("two golden samples named %s", name)
		}
		seen[name] = true
		t.Run(name, func(t *testing.T) {
			path := filepath.Join(sampleDirPath(t, s.dir), s.file)
			h := readSample(t, path)
			if h.Err != nil {
				t.Fatalf("header: %v", h.Err)
			}
			compact := h.Dataset.AppendJSON(nil, JSONOptions{BulkDataURI: goldenBulkURI})
			var got bytes.Buffer
			if err := json.Indent(&got, compact, "", "  "); err != nil {
				t.Fatalf("invalid JSON: %v\n%s", err, compact)
			}
			got.WriteByte('\n')
			golden := filepath.Join("testdata", "json", name+".json")
			if *update {
				if err := os.WriteFile(golden, got.Bytes(), 0o644); err != nil {
					t.Fatal(err)
				}
			}
			want, err := os.ReadFile(golden)
			if err != nil {
				t.Fatalf("%v (run with -update to create it)", err)
			}
			if !bytes.Equal(got.Bytes(), want) {
				t.Errorf("JSON differs from %s (run with -update to accept it):\n%s", golden, firstDiff(got.Bytes(), want))
			}
			checkRoundTrip(t, compact)
		})
	}
	// Every golden file belongs to a sample, so none goes stale unseen.
	files, _ := filepath.Glob(filepath.Join("testdata", "json", "*.json"))
	for _, f := range files {
		if name := strings.TrimSuffix(filepath.Base(f), ".json"); !seen[name] {
			t.Errorf("%s belongs to no golden sample", f)
		}
	}
}

// goldenBulkURI names a located value by its tag path, offset and length,
// so that the golden files also pin down where the scanner found it.
func goldenBulkURI(path []tag.Tag, b *Binary) string {
	hex := make([]string, len(path))
	for i, t := range path {
		hex[i] = t.Hex()
	}
	return fmt.Sprintf("bulk/%s?offset=%d&length=%d", strings.Join(hex, "/"), b.Offset, b.Length)
}

// checkRoundTrip checks that ParseJSON reads js back into a data set that
// encodes to js again, except for BulkDataURI, which ParseJSON drops.
func checkRoundTrip(t *testing.T, js []byte) {
	t.Helper()
	back, err := ParseJSON(js)
	if err != nil {
		t.Fatalf("ParseJSON: %v", err)
	}
	want, got := decodeJSON(t, js), decodeJSON(t, back.AppendJSON(nil, JSONOptions{}))
	dropBulkDataURI(want)
	if !reflect.DeepEqual(got, want) {
		a, _ := json.Marshal(got)
		b, _ := json.Marshal(want)
		t.Errorf("round trip through ParseJSON:\n%s", firstDiff(a, b))
	}
}

// decodeJSON decodes js keeping numbers as their text.
func decodeJSON(t *testing.T, js []byte) map[string]any {
	t.Helper()
	var m map[string]any
	d := json.NewDecoder(bytes.NewReader(js))
	d.UseNumber()
	if err := d.Decode(&m); err != nil {
		t.Fatalf("%v\n%s", err, js)
	}
	return m
}

func dropBulkDataURI(ds map[string]any) {
	for _, v := range ds {
		e := v.(map[string]any)
		delete(e, "BulkDataURI")
		if items, ok := e["Value"].([]any); ok && e["vr"] == "SQ" {
			for _, it := range items {
				dropBulkDataURI(it.(map[string]any))
			}
		}
	}
}

// firstDiff shows the first line where got and want differ.
func firstDiff(got, want []byte) string {
	g, w := strings.Split(string(got), "\n"), strings.Split(string(want), "\n")
	for i := 0; i < len(g) || i < len(w); i++ {
		var a, b string
		if i < len(g) {
			a = g[i]
		}
		if i < len(w) {
			b = w[i]
		}
		if a != b || i >= len(g) || i >= len(w) {
			return fmt.Sprintf("line %d:\n got  %.400s\n want %.400s", i+1, a, b)
		}
	}
	return "(no difference)"
}

// readSample reads the Part-10 file at path as pacsd receives an instance:
// File Meta Information first, then the data set through a Scanner.
func readSample(t *testing.T, path string) Header {
	t.Helper()
	m, data, err := readPart10(path)
	if err != nil {
		t.Fatal(err)
	}
	ts, ok := uid.LookupTransferSyntax(m.TransferSyntaxUID)
	if !ok {
		t.Fatalf("transfer syntax %q unknown", m.TransferSyntaxUID)
	}
	_, h, err := scanAll(t, data, ts, Limits{})
	if err != nil {
		t.Fatalf("Identify: %v", err)
	}
	return h
}

// sampleDirPath returns the directory of dir's files, skipping or failing
// t as testpeer.Need does when python3-pydicom is not installed.
func sampleDirPath(t *testing.T, dir sampleDir) string {
	t.Helper()
	if dir == ownSamples {
		return filepath.Join("..", "testdata", "dicom")
	}
	var testFiles string
	for _, f := range testpeer.PydicomFilesT(t) {
		if filepath.Base(filepath.Dir(f)) == "test_files" {
			testFiles = filepath.Dir(f)
			break
		}
	}
	if testFiles == "" {
		t.Fatal("python3-pydicom installs no test_files directory")
	}
	if dir == pydicomTestFiles {
		return testFiles
	}
	// The character set files lie beside the test files, which are all
	// PydicomFiles lists.
	charset := filepath.Join(filepath.Dir(testFiles), "charset_files")
	if _, err := os.Stat(charset); err != nil {
		t.Fatalf("python3-pydicom installs no charset_files beside its test files: %v", err)
	}
	return charset
}
