package deid

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"

	"github.com/pacsd/pacsd/dicom"
	"github.com/pacsd/pacsd/dicom/tag"
	"github.com/pacsd/pacsd/dicom/uid"
	"github.com/pacsd/pacsd/internal/dcmgen"
	"github.com/pacsd/pacsd/internal/testpeer"
)

var testKey = []byte("project key for tests, 32 bytes!")

func newT(t testing.TB, opts Options) *Deidentifier {
	t.Helper()
	if opts.Key == nil {
		opts.Key = testKey
	}
	d, err := New(opts)
	if err != nil {
		t.Fatal(err)
	}
	return d
}

// TestGeneratedTableIsCurrent checks that zprofile.go is what the
// generator makes of the transcription.
func TestGeneratedTableIsCurrent(t *testing.T) {
	out, err := exec.Command("go", "run", "./internal/gen", "-out", "-").Output()
	if err != nil {
		t.Fatal(err)
	}
	have, err := os.ReadFile("zprofile.go")
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(out, have) {
		t.Fatal("zprofile.go is out of date: run go generate ./deid")
	}
}

// TestActions checks rows of Table E.1-1 as PS3.15 prints them, and how
// the options and the choices of the Basic Profile resolve.
func TestActions(t *testing.T) {
	p := BasicProfile()
	for _, tc := range []struct {
		tag  tag.Tag
		want Action
	}{
		{tag.PatientName, Zero},                 // Z
		{tag.PatientID, Dummy},                  // Z/D
		{tag.PatientBirthDate, Zero},            // Z
		{tag.OtherPatientIDsSequence, Remove},   // X
		{tag.StudyDate, Clean},                  // Z, Modified Dates C
		{tag.ContentTime, Clean},                // Z/D, Modified Dates C
		{tag.StudyDescription, Clean},           // X, Clean Descriptors C
		{tag.AccessionNumber, Zero},             // Z
		{tag.InstitutionName, Dummy},            // X/Z/D
		{tag.DeviceSerialNumber, Dummy},         // X/Z/D
		{tag.StudyInstanceUID, Replace},         // U
		{tag.ReferencedImageSequence, Replace},  // X/Z/U*
		{tag.ReferencedSOPInstanceUID, Replace}, // U
		{tag.SOPClassUID, Keep},                 // not in the table
		{tag.Modality, Keep},                    // not in the table
		{tag.New(0x6002, 0x3000), Remove},       // Overlay Data, 60xx
		{tag.New(0x5010, 0x0005), Remove},       // Curve Data, 50xx
		{tag.New(0x0029, 0x1010), Remove},       // private
		{tag.New(0x0029, 0x0010), Remove},       // private creator
		{tag.New(0xFFFA, 0xFFFA), Remove},       // Digital Signatures Sequence
		{tag.New(0xFFFC, 0xFFFC), Remove},       // Data Set Trailing Padding
		{tag.IconImageSequence, Remove},         // X
		{tag.BurnedInAnnotation, Keep},          // not in the table
		{tag.ReferringPhysicianName, Zero},      // Z
		{tag.PerformingPhysicianName, Remove},   // X
		{tag.FrameOfReferenceUID, Replace},      // U
		{tag.AcquisitionDateTime, Clean},        // X/Z/D, Modified Dates C
		{tag.PatientAge, Remove},                // X
		{tag.RequestAttributesSequence, Clean},  // X, Clean Descriptors C
		{tag.ContentSequence, Dummy},            // D
		{tag.ProtocolName, Clean},               // X/D, Clean Descriptors C
	} {
		if got := p.action(tc.tag); got != tc.want {
			t.Errorf("%v: %c, want %c", tc.tag, got, tc.want)
		}
	}
}

// tableRow is a row of the transcription, read here apart from the
// generator.
type tableRow struct {
	basic, modified, clean string
}

// readTable reads table-e1-1.txt into rows by tag pattern.
func readTable(t *testing.T) map[string]tableRow {
	t.Helper()
	f, err := os.Open(filepath.Join("internal", "gen", "table-e1-1.txt"))
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	rows := map[string]tableRow{}
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		line := sc.Text()
		if line == "" || line[0] == '#' {
			continue
		}
		fs := strings.Split(line, "\t")
		r := tableRow{basic: fs[1]}
		for o := range strings.FieldsSeq(fs[3]) {
			name, act, _ := strings.Cut(o, "=")
			switch name {
			case "ModifiedDates":
				r.modified = act
			case "CleanDescriptors":
				r.clean = act
			}
		}
		rows[strings.ToUpper(fs[0])] = r
	}
	return rows
}

// expected returns the action the table gives tag (g,e), as PS3.15 E.3
// reads: an option's action over the Basic Profile's, and where the
// Basic Profile offers a choice, the one that keeps the attribute.
func expected(rows map[string]tableRow, g, e uint16) string {
	key := strings.ToUpper(strconv.FormatUint(uint64(g)|1<<16, 16)[1:] + "," + strconv.FormatUint(uint64(e)|1<<16, 16)[1:])
	r, ok := rows["("+key+")"]
	if !ok {
		for pattern, row := range rows {
			if strings.Contains(pattern, "X") && matchPattern(pattern[1:len(pattern)-1], key) {
				r, ok = row, true
				break
			}
		}
	}
	if !ok && g%2 == 1 {
		return "X"
	}
	if !ok {
		return "K"
	}
	for _, a := range []string{r.modified, r.clean} {
		if a != "" {
			return a
		}
	}
	return map[string]string{"X/Z": "Z", "X/D": "D", "Z/D": "D", "X/Z/D": "D", "X/Z/U*": "U"}[r.basic] + map[bool]string{true: r.basic}[len(r.basic) == 1]
}

// matchPattern reports whether "GGGG,EEEE" matches a pattern in which X
// stands for any digit.
func matchPattern(pattern, key string) bool {
	if len(pattern) != len(key) {
		return false
	}
	for i := range pattern {
		if pattern[i] != 'X' && pattern[i] != key[i] {
			return false
		}
	}
	return true
}

// pydicomFile is a Part 10 file of the pydicom corpus.
type pydicomFile struct {
	path string
	meta dicom.FileMeta
	ts   uid.TransferSyntax
	data []byte // the data set
}

func readPart10(t *testing.T, path string) (pydicomFile, bool) {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	br := bufio.NewReader(bytes.NewReader(b))
	m, n, err := dicom.ReadFileMeta(br)
	if err != nil {
		return pydicomFile{}, false
	}
	ts, ok := uid.LookupTransferSyntax(m.TransferSyntaxUID)
	if !ok {
		return pydicomFile{}, false
	}
	return pydicomFile{path: path, meta: m, ts: ts, data: b[n:]}, true
}

// malformed are the corpus files broken on purpose.
var malformed = map[string]bool{"MR_truncated.dcm": true, "rtplan_truncated.dcm": true}

// TestPydicomCorpus de-identifies every Part 10 file of pydicom's test
// corpus and checks the result attribute by attribute against Table
// E.1-1, as dcmtk's dcmdump reads both files, and the pixel data byte for
// byte.
func TestPydicomCorpus(t *testing.T) {
	testpeer.Need(t, "dcmdump")
	files := testpeer.PydicomFilesT(t)
	rows := readTable(t)
	d := newT(t, Options{AllowBurnedIn: true})
	dir := t.TempDir()

	// De-identify every file, then let one dcmdump read the originals
	// and one the copies.
	type result struct {
		f       pydicomFile
		res     Result
		out     []byte
		outPath string
	}
	var results []result
	var originals, copies []string
	for _, path := range files {
		f, ok := readPart10(t, path)
		base := filepath.Base(path)
		if !ok || f.ts.Deflated {
			continue
		}
		var out bytes.Buffer
		res, err := d.Rewrite(t.Context(), &out, bytes.NewReader(f.data), f.ts)
		if malformed[base] {
			if err == nil {
				t.Errorf("%s: a malformed file was de-identified", base)
			}
			continue
		}
		if err != nil {
			t.Errorf("%s: %v", base, err)
			continue
		}
		// The copy gets File Meta Information naming the new SOP
		// Instance UID.
		outPath := filepath.Join(dir, strconv.Itoa(len(results))+"-"+base)
		meta := dicom.FileMeta{MediaStorageSOPClassUID: f.meta.MediaStorageSOPClassUID, MediaStorageSOPInstanceUID: res.Replaced.SOPInstanceUID, TransferSyntaxUID: f.ts.UID}
		if err := os.WriteFile(outPath, append(dicom.AppendFileMeta(nil, meta), out.Bytes()...), 0o600); err != nil {
			t.Fatal(err)
		}
		results = append(results, result{f, res, out.Bytes(), outPath})
		originals, copies = append(originals, path), append(copies, outPath)
	}
	beforeAll, err := testpeer.DumpFiles(t.Context(), originals)
	if err != nil {
		t.Fatal(err)
	}
	afterAll, err := testpeer.DumpFiles(t.Context(), copies)
	if err != nil {
		t.Fatal(err)
	}

	marks := map[tag.Tag]bool{tag.PatientIdentityRemoved: true, tag.DeidentificationMethod: true, tag.LongitudinalTemporalInformationModified: true}
	attrs := 0
	for _, r := range results {
		t.Run(filepath.Base(r.f.path), func(t *testing.T) {
			before, ok := beforeAll[r.f.path]
			if !ok {
				t.Skip("dcmdump cannot read the original")
			}
			after, ok := afterAll[r.outPath]
			if !ok {
				t.Fatal("dcmdump cannot read the de-identified file")
			}
			res := r.res
			shift := d.DateShift(before[uint32(tag.PatientID)], before[uint32(tag.IssuerOfPatientID)])
			for tg, v := range before {
				g, e := uint16(tg>>16), uint16(tg)
				if e == 0 || marks[tag.Tag(tg)] {
					// Group lengths are left out, as their groups
					// change; the marks of de-identification are
					// replaced.
					continue
				}
				got, present := after[tg]
				act := expected(rows, g, e)
				if tag.Tag(tg) == tag.PatientID {
					act = "pseudonym"
				}
				attrs++
				switch act {
				case "X":
					if present {
						t.Errorf("%v (X) kept: %q", tag.Tag(tg), got)
					}
				case "Z":
					if !present || got != "" {
						t.Errorf("%v (Z) is %q, present %v", tag.Tag(tg), got, present)
					}
				case "D":
					if !present || (got == v && v != "") {
						t.Errorf("%v (D) is %q, was %q", tag.Tag(tg), got, v)
					}
				case "K":
					if got != v {
						t.Errorf("%v (K) is %q, was %q", tag.Tag(tg), got, v)
					}
				case "U":
					want := make([]string, 0)
					for _, u := range strings.Split(v, `\`) {
						if u != "" {
							want = append(want, d.UID(u))
						}
					}
					if got != strings.Join(want, `\`) {
						t.Errorf("%v (U) is %q, want %q", tag.Tag(tg), got, strings.Join(want, `\`))
					}
				case "C":
					checkClean(t, tag.Tag(tg), v, got, shift, before)
				case "pseudonym":
					if !strings.HasPrefix(got, "ANON-") || got != res.PatientID {
						t.Errorf("Patient ID is %q", got)
					}
				default:
					t.Fatalf("%v: action %q", tag.Tag(tg), act)
				}
			}
			// Nothing is added but the marks: an element dcmdump did
			// not show before (as UN, it shows no value) must have
			// been there.
			orig, err := dicom.Parse(r.f.data, r.f.ts)
			if err != nil {
				t.Fatal(err)
			}
			for tg := range after {
				_, was := orig.Find(tag.Tag(tg))
				if !was && tg>>16 != 0x0012 && tag.Tag(tg) != tag.LongitudinalTemporalInformationModified {
					t.Errorf("%v added", tag.Tag(tg))
				}
			}
			if after[uint32(tag.PatientIdentityRemoved)] != "YES" || after[uint32(tag.LongitudinalTemporalInformationModified)] != "MODIFIED" {
				t.Error("Patient Identity Removed or Longitudinal Temporal Information Modified not set")
			}
			checkPixelData(t, r.f, r.out)
		})
	}
	t.Logf("%d files, %d attributes checked", len(results), attrs)
	if len(results) < 100 {
		t.Errorf("only %d files de-identified", len(results))
	}
}

// checkClean checks a C action: dates moved by the patient's shift, times
// kept, descriptors without identifying words.
func checkClean(t *testing.T, tg tag.Tag, before, after string, shift int, all map[uint32]string) {
	t.Helper()
	info, _ := tag.Lookup(tg)
	switch info.VR {
	case "DA", "DT":
		if before == "" {
			return
		}
		if want := shiftDate(before, shift); after != want || (want == before && before != "") {
			t.Errorf("%v (C) is %q, want %q (from %q, %d days)", tg, after, want, before, shift)
		}
	case "TM":
		if after != before {
			t.Errorf("%v (C) time changed: %q to %q", tg, before, after)
		}
	default:
		for _, id := range []tag.Tag{tag.PatientName, tag.OtherPatientNames, tag.ReferringPhysicianName} {
			for w := range strings.FieldsFuncSeq(all[uint32(id)], func(r rune) bool { return r == '^' || r == ' ' }) {
				if len(w) >= 3 && strings.Contains(strings.ToUpper(after), strings.ToUpper(w)) {
					t.Errorf("%v (C) %q still holds %q of %v", tg, after, w, id)
				}
			}
		}
	}
}

// checkPixelData compares the Pixel Data element of the original and the
// copy byte for byte.
func checkPixelData(t *testing.T, f pydicomFile, out []byte) {
	t.Helper()
	px := func(b []byte) []byte {
		s := dicom.NewScanner(bytes.NewReader(b), f.ts, dicom.Limits{})
		defer s.Close()
		if _, err := s.Identify(); err != nil {
			t.Fatal(err)
		}
		io.Copy(io.Discard, s.Rest())
		h := s.Header()
		if h.PixelData == nil {
			return nil
		}
		return b[h.PixelData.Offset : h.PixelData.Offset+h.PixelData.Length]
	}
	a, b := px(f.data), px(out)
	if !bytes.Equal(a, b) {
		t.Errorf("pixel data changed: %d bytes, then %d", len(a), len(b))
	}
}

// TestSamePatientSameUIDs de-identifies two instances of one study twice
// with one key: the same originals get the same replacements across runs
// and instances, another key gives others, and the mapping finds the
// originals.
func TestSamePatientSameUIDs(t *testing.T) {
	study := dcmgen.Study{UID: dcmgen.UID(), Date: "20240315", AccessionNumber: "ACC42", Description: "CT CHEST DOE", ReferringPhysicianName: "Who^Doctor"}
	series := dcmgen.Series{UID: dcmgen.UID(), Modality: "CT", FrameOfReferenceUID: dcmgen.UID()}
	patient := dcmgen.Patient{Name: "Doe^Jane", ID: "P-77", IssuerOfPatientID: "RXH", BirthDate: "19700101"}
	var files [][]byte
	for range 2 {
		var b bytes.Buffer
		if _, err := dcmgen.WriteFile(&b, &dcmgen.Instance{Patient: patient, Study: study, Series: series}); err != nil {
			t.Fatal(err)
		}
		files = append(files, b.Bytes())
	}
	run := func(key []byte, m *MemoryMapping) []Result {
		d := newT(t, Options{Key: key, Mapping: m})
		var out []Result
		for _, f := range files {
			br := bufio.NewReader(bytes.NewReader(f))
			meta, n, err := dicom.ReadFileMeta(br)
			if err != nil {
				t.Fatal(err)
			}
			ts, _ := uid.LookupTransferSyntax(meta.TransferSyntaxUID)
			res, err := d.Rewrite(t.Context(), io.Discard, bytes.NewReader(f[n:]), ts)
			if err != nil {
				t.Fatal(err)
			}
			out = append(out, res)
		}
		return out
	}
	m := &MemoryMapping{}
	first, second := run(testKey, m), run(testKey, &MemoryMapping{})
	other := run([]byte("another project's key, 32 bytes!"), &MemoryMapping{})
	for i := range first {
		if first[i].Replaced != second[i].Replaced || first[i].PatientID != second[i].PatientID {
			t.Errorf("instance %d: %+v, then %+v", i, first[i].Replaced, second[i].Replaced)
		}
		if first[i].Replaced.StudyInstanceUID == other[i].Replaced.StudyInstanceUID || first[i].PatientID == other[i].PatientID {
			t.Errorf("instance %d: another key gave the same replacements", i)
		}
		if err := uid.Valid(first[i].Replaced.SOPInstanceUID); err != nil || !strings.HasPrefix(first[i].Replaced.SOPInstanceUID, "2.25.") {
			t.Errorf("replacement UID %q: %v", first[i].Replaced.SOPInstanceUID, err)
		}
	}
	r0, r1 := first[0].Replaced, first[1].Replaced
	if r0.StudyInstanceUID != r1.StudyInstanceUID || r0.SeriesInstanceUID != r1.SeriesInstanceUID || r0.SOPInstanceUID == r1.SOPInstanceUID {
		t.Errorf("one study and series, two instances: %+v, %+v", r0, r1)
	}
	if r0.StudyInstanceUID == study.UID || r0.SOPClassUID != dcmgen.CTImageStorage {
		t.Errorf("replaced %+v", r0)
	}
	ctx := context.Background()
	if o, ok, _ := m.Original(ctx, KindUID, r0.StudyInstanceUID); !ok || o != study.UID {
		t.Errorf("re-identified study %q, %v", o, ok)
	}
	if o, ok, _ := m.Original(ctx, KindPatient, first[0].PatientID); !ok || o != "P-77^^^RXH" {
		t.Errorf("re-identified patient %q, %v", o, ok)
	}
}

// TestBurnedInAnnotation refuses pixels that show text unless allowed.
func TestBurnedInAnnotation(t *testing.T) {
	var b bytes.Buffer
	in := &dcmgen.Instance{Patient: dcmgen.Patient{Name: "Doe^Jane", ID: "P1"},
		Extra: []dcmgen.Element{{Tag: dcmgen.Tag(tag.BurnedInAnnotation), VR: "CS", Value: "YES"}}}
	if _, err := dcmgen.WriteFile(&b, in); err != nil {
		t.Fatal(err)
	}
	f := b.Bytes()
	br := bufio.NewReader(bytes.NewReader(f))
	meta, n, _ := dicom.ReadFileMeta(br)
	ts, _ := uid.LookupTransferSyntax(meta.TransferSyntaxUID)
	var out bytes.Buffer
	if _, err := newT(t, Options{}).Rewrite(t.Context(), &out, bytes.NewReader(f[n:]), ts); !errors.Is(err, ErrBurnedIn) || out.Len() != 0 {
		t.Fatalf("error %v, %d bytes written", err, out.Len())
	}
	if _, err := newT(t, Options{AllowBurnedIn: true}).Rewrite(t.Context(), &out, bytes.NewReader(f[n:]), ts); err != nil {
		t.Fatal(err)
	}
}

// TestHeaderCleansDescriptors checks the Clean Descriptors option and the
// marks of de-identification on a header held in memory.
func TestHeaderCleansDescriptors(t *testing.T) {
	ds := &dicom.Dataset{Elements: []dicom.Element{
		{Tag: tag.StudyDate, VR: "DA", Values: []string{"20240229"}},
		{Tag: tag.StudyTime, VR: "TM", Values: []string{"101500"}},
		{Tag: tag.AccessionNumber, VR: "SH", Values: []string{"ACC123"}},
		{Tag: tag.InstitutionName, VR: "LO", Values: []string{"Royal Xanadu Hospital"}},
		{Tag: tag.StudyDescription, VR: "LO", Values: []string{"CT head for Doe, ACC123 at Xanadu"}},
		{Tag: tag.SeriesDescription, VR: "LO", Values: []string{"AX 5mm"}},
		{Tag: tag.PatientName, VR: "PN", Values: []string{"Doe^John"}},
		{Tag: tag.PatientID, VR: "LO", Values: []string{"P9"}},
		{Tag: tag.New(0x0009, 0x0010), VR: "LO", Values: []string{"ACME"}},
		{Tag: tag.New(0x0009, 0x1001), VR: "LO", Values: []string{"secret"}},
		{Tag: tag.StudyInstanceUID, VR: "UI", Values: []string{"1.2.3"}},
	}}
	d := newT(t, Options{})
	out, res, err := d.Header(t.Context(), ds)
	if err != nil {
		t.Fatal(err)
	}
	shift := d.DateShift("P9", "")
	if shift > -1 || shift < -3650 {
		t.Errorf("shift %d days", shift)
	}
	for _, c := range []struct {
		t    tag.Tag
		want string
	}{
		{tag.StudyDate, shiftDate("20240229", shift)},
		{tag.StudyTime, "101500"},
		{tag.AccessionNumber, ""},
		{tag.InstitutionName, "ANONYMIZED"},
		{tag.StudyDescription, "CT head for at"},
		{tag.SeriesDescription, "AX 5mm"},
		{tag.PatientName, ""},
		{tag.PatientID, res.PatientID},
		{tag.StudyInstanceUID, d.UID("1.2.3")},
		{tag.PatientIdentityRemoved, "YES"},
		{tag.DeidentificationMethod, `PS3.15 E.3 Basic Application Confidentiality Profile\Retain Longitudinal Temporal Information Modified Dates Option\Clean Descriptors Option`},
	} {
		if got := out.String(c.t); got != c.want {
			t.Errorf("%v = %q, want %q", c.t, got, c.want)
		}
	}
	if _, ok := out.Find(tag.New(0x0009, 0x1001)); ok {
		t.Error("private element kept")
	}
	codes := out.Items(tag.DeidentificationMethodCodeSequence)
	if len(codes) != 3 || codes[0].First(tag.CodeValue) != "113100" || codes[1].First(tag.CodeValue) != "113107" || codes[2].First(tag.CodeValue) != "113105" {
		t.Errorf("method codes %+v", codes)
	}
	if ds.First(tag.PatientName) != "Doe^John" {
		t.Error("Header changed its input")
	}
}

func TestShiftDate(t *testing.T) {
	for _, c := range []struct {
		in   string
		days int
		want string
	}{
		{"20240301", -1, "20240229"},
		{"20240301120000.5+0100", -366, "20230301120000.5+0100"},
		{"1999.12.31", 1, "20000101"},
		{"2024", -1, ""},
		{"garbage!", -1, ""},
	} {
		if got := shiftDate(c.in, c.days); got != c.want {
			t.Errorf("shiftDate(%q, %d) = %q, want %q", c.in, c.days, got, c.want)
		}
	}
}

// TestLargePixelDataStreams de-identifies an instance whose pixel data is
// far larger than the header limit: only the header is held.
func TestLargePixelDataStreams(t *testing.T) {
	in := &dcmgen.Instance{Patient: dcmgen.Patient{Name: "Big^Image", ID: "P2"}, Rows: 1024, Columns: 1024, NumberOfFrames: 24}
	pr, pw := io.Pipe()
	go func() {
		_, err := dcmgen.WriteFile(pw, in)
		pw.CloseWithError(err)
	}()
	br := bufio.NewReader(pr)
	meta, _, err := dicom.ReadFileMeta(br)
	if err != nil {
		t.Fatal(err)
	}
	ts, _ := uid.LookupTransferSyntax(meta.TransferSyntaxUID)
	var n countWriter
	if _, err := newT(t, Options{MaxHeader: 64 << 10}).Rewrite(t.Context(), &n, br, ts); err != nil {
		t.Fatal(err)
	}
	if int64(n) < in.PixelLength() {
		t.Errorf("%d bytes written for %d bytes of pixel data", n, in.PixelLength())
	}
}

type countWriter int64

func (c *countWriter) Write(p []byte) (int, error) { *c += countWriter(len(p)); return len(p), nil }
