package dicom

import (
	"bytes"
	"compress/flate"
	"context"
	"encoding/hex"
	"errors"
	"io"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/pacsd/pacsd/dicom/tag"
	"github.com/pacsd/pacsd/dicom/uid"
	"github.com/pacsd/pacsd/internal/testpeer"
)

var (
	deflatedLE = uid.TransferSyntax{UID: uid.DeflatedExplicitVRLittleEndian, ExplicitVR: true, Deflated: true}
	// syntaxes are the transfer syntaxes Encode and Transcode write.
	syntaxes = []uid.TransferSyntax{implicitLE, explicitLE, explicitBE, deflatedLE}
)

func syntaxName(ts uid.TransferSyntax) string {
	switch ts.UID {
	case uid.ImplicitVRLittleEndian:
		return "implicit"
	case uid.ExplicitVRLittleEndian:
		return "explicit-le"
	case uid.ExplicitVRBigEndian:
		return "explicit-be"
	case uid.DeflatedExplicitVRLittleEndian:
		return "deflated"
	}
	return ts.UID
}

const (
	latin1Name   = "Müller^Jürgen"
	japaneseName = "Yamada^Tarou=山田^太郎=やまだ^たろう"
	// Names in the scripts of ISO 8859-5, -7, -6 and -8.
	cyrillicName = "Иванов^Пётр"
	greekName    = "Διονυσιος"
	arabicName   = "قباني^لنزار"
	hebrewName   = "שרון^דבורה"
)

// queryDataset has an element of every VR that Encode writes from text,
// a sequence, and patient names in the given character set's repertoire.
func queryDataset(name, description string) *Dataset {
	return &Dataset{Elements: []Element{
		// Out of order on purpose: Encode sorts.
		{Tag: tag.PatientName, VR: "PN", Values: []string{name}},
		{Tag: tag.SpecificCharacterSet, VR: "CS", Values: []string{"ISO 2022 IR 87"}}, // replaced
		{Tag: tag.ImageType, VR: "CS", Values: []string{"ORIGINAL", "PRIMARY", "AXIAL"}},
		{Tag: tag.InstanceCreationTime, VR: "TM", Values: []string{"120000.5"}},
		{Tag: tag.SOPClassUID, VR: "UI", Values: []string{uid.CTImageStorage}},
		{Tag: tag.SOPInstanceUID, VR: "UI", Values: []string{"1.2.3.4.5"}},
		{Tag: tag.StudyDate, VR: "DA", Values: []string{"20240131"}},
		{Tag: tag.AcquisitionDateTime, VR: "DT", Values: []string{"20240131120000"}},
		{Tag: tag.AccessionNumber, VR: "SH"},
		{Tag: tag.Modality, VR: "CS", Values: []string{"CT"}},
		{Tag: tag.InstitutionAddress, VR: "ST", Values: []string{`1 Main St\Springfield`}},
		{Tag: tag.StudyDescription, VR: "LO", Values: []string{description}},
		{Tag: tag.ReferencedStudySequence, VR: "SQ", Items: []*Dataset{
			{Elements: []Element{
				{Tag: tag.ReferencedSOPInstanceUID, VR: "UI", Values: []string{"1.2.3"}},
				{Tag: tag.ReferencedSOPClassUID, VR: "UI", Values: []string{uid.CTImageStorage}},
				{Tag: tag.SpecificCharacterSet, VR: "CS", Values: []string{"ISO_IR 100"}}, // dropped
			}},
			{},
		}},
		{Tag: tag.PatientID, VR: "LO", Values: []string{"PID-1", "PID-2"}},
		{Tag: tag.PatientAge, VR: "AS", Values: []string{"042Y"}},
		{Tag: tag.PatientWeight, VR: "DS", Values: []string{"72.5"}},
		{Tag: tag.PatientTelecomInformation, VR: "LT", Values: []string{description}},
		{Tag: tag.SeriesNumber, VR: "IS", Values: []string{"3"}},
		{Tag: tag.Rows, VR: "US", Values: []string{"512"}},
		{Tag: tag.ReferencePixelX0, VR: "SL", Values: []string{"-70000"}},
		{Tag: tag.TagAngleSecondAxis, VR: "SS", Values: []string{"-5"}},
		{Tag: tag.ExaminedBodyThickness, VR: "FL", Values: []string{"1.5"}},
		{Tag: tag.TimeRange, VR: "FD", Values: []string{"0.25", "-1e+100"}},
		{Tag: tag.FrameIncrementPointer, VR: "AT", Values: []string{"00181063", "7FE00010"}},
		{Tag: tag.RedPaletteColorLookupTableData, VR: "OW", Binary: &Binary{Data: []byte{1, 2, 3, 4}}},
		{Tag: tag.New(0x0009, 0x0010), VR: "LO", Values: []string{"PACSD TEST"}},
		{Tag: tag.New(0x0009, 0x1001), VR: "OB", Binary: &Binary{Data: []byte{1, 2, 3, 4}}},
		{Tag: tag.PixelData, VR: "OW", Binary: &Binary{Offset: 1000, Length: 1 << 20}}, // not in memory
	}}
}

// encode runs Encode and fails the test on error.
func encode(t testing.TB, d *Dataset, ts uid.TransferSyntax, cs string) []byte {
	t.Helper()
	var b bytes.Buffer
	if err := d.Encode(&b, ts, EncodeOptions{CharacterSet: cs}); err != nil {
		t.Fatalf("Encode %s %q: %v", syntaxName(ts), cs, err)
	}
	return b.Bytes()
}

// decodeHeader reads a data set back with the Scanner.
func decodeHeader(t *testing.T, data []byte, ts uid.TransferSyntax) *Dataset {
	t.Helper()
	s := NewScanner(bytes.NewReader(data), ts, Limits{})
	if _, err := s.Identify(); err != nil {
		t.Fatalf("Identify: %v", err)
	}
	if _, err := io.Copy(io.Discard, s.Rest()); err != nil {
		t.Fatal(err)
	}
	h := s.Header()
	if h.Err != nil {
		t.Fatalf("header: %v", h.Err)
	}
	return h.Dataset
}

// sameValues compares the values of want with those decoded into got,
// as far as the syntax keeps them: implicit VR loses private VRs.
func sameValues(t *testing.T, path string, want, got *Dataset) {
	t.Helper()
	for _, w := range want.Elements {
		if w.Tag == tag.SpecificCharacterSet {
			continue
		}
		p := path + w.Tag.String()
		g, ok := got.Find(w.Tag)
		if !ok {
			t.Errorf("%s missing", p)
			continue
		}
		switch {
		case w.VR == "SQ":
			if len(g.Items) != len(w.Items) {
				t.Errorf("%s: %d items, want %d", p, len(g.Items), len(w.Items))
				continue
			}
			for i := range w.Items {
				it := w.Items[i]
				if it == nil {
					it = &Dataset{}
				}
				sameValues(t, p+"/", it, g.Items[i])
			}
		case g.VR == "UN" && w.VR != "UN":
			// Implicit VR: a private element is read back as UN.
			want := strings.Join(w.Values, `\`)
			if w.Binary != nil {
				want = string(w.Binary.Data)
			}
			if got := strings.TrimRight(string(g.Binary.Data), " \x00"); got != strings.TrimRight(want, " \x00") {
				t.Errorf("%s = %q, want %q", p, got, want)
			}
		case w.Binary != nil:
			if g.Binary == nil || !bytes.Equal(g.Binary.Data, w.Binary.Data) && len(w.Binary.Data)+len(g.Binary.Data) > 0 {
				t.Errorf("%s = %+v, want data %x", p, g.Binary, w.Binary.Data)
			}
		default:
			if !slices.Equal(g.Values, w.Values) {
				t.Errorf("%s %s = %q, want %q", p, w.VR, g.Values, w.Values)
			}
		}
	}
}

func TestEncodeRoundTrip(t *testing.T) {
	tests := []struct {
		name, charset, patient, text string
	}{
		{"ascii", "", "Doe^Jane", "plain"},
		{"ISO_IR 6", CharsetDefault, "Doe^Jane", "plain"},
		{"latin1", CharsetLatin1, latin1Name, "Étude thoracique"},
		{"utf8", CharsetUTF8, japaneseName, "胸部 Σειρά"},
	}
	for _, tt := range tests {
		for _, ts := range syntaxes {
			t.Run(tt.name+"/"+syntaxName(ts), func(t *testing.T) {
				d := queryDataset(tt.patient, tt.text)
				data := encode(t, d, ts, tt.charset)
				got := decodeHeader(t, data, ts)
				sameValues(t, "", d, got)
				wantCS := []string(nil)
				if tt.charset == CharsetLatin1 || tt.charset == CharsetUTF8 {
					wantCS = []string{tt.charset}
				}
				if cs := got.Strings(tag.SpecificCharacterSet); !slices.Equal(cs, wantCS) {
					t.Errorf("Specific Character Set %q, want %q", cs, wantCS)
				}
				if e, ok := got.Find(tag.SpecificCharacterSet); !ok {
					t.Errorf("Specific Character Set left out although the data set carries it")
				} else if e.VR != "CS" && ts.ExplicitVR {
					t.Errorf("Specific Character Set VR %s", e.VR)
				}
				if items := got.Items(tag.ReferencedStudySequence); len(items) > 0 {
					if _, ok := items[0].Find(tag.SpecificCharacterSet); ok {
						t.Errorf("Specific Character Set written in an item")
					}
				}
				for i := 1; i < len(got.Elements); i++ {
					if got.Elements[i-1].Tag >= got.Elements[i].Tag {
						t.Errorf("%v after %v", got.Elements[i].Tag, got.Elements[i-1].Tag)
					}
				}
			})
		}
	}
}

// TestEncodeNoCharset checks that the default repertoire leaves Specific
// Character Set out when the data set does not carry it.
func TestEncodeNoCharset(t *testing.T) {
	d := &Dataset{Elements: []Element{{Tag: tag.PatientName, VR: "PN", Values: []string{"Doe^Jane"}}}}
	got := encode(t, d, explicitLE, "")
	want := "10001000" + hex.EncodeToString([]byte("PN")) + "0800" + hex.EncodeToString([]byte("Doe^Jane"))
	if hex.EncodeToString(got) != want {
		t.Errorf("got %x, want %s", got, want)
	}
}

func unhexT(t *testing.T, s string) []byte {
	t.Helper()
	b, err := hex.DecodeString(strings.NewReplacer(" ", "", "\n", "", "\t", "").Replace(s))
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// TestEncodeGolden checks the bytes of one element of each kind in each
// byte order and VR encoding, written out by hand from PS3.5.
func TestEncodeGolden(t *testing.T) {
	type golden struct{ implicit, explicitLE, explicitBE string }
	tests := []struct {
		name string
		el   Element
		cs   string
		want golden
	}{
		{"UI padded with NUL", Element{Tag: tag.SOPInstanceUID, VR: "UI", Values: []string{"1.2.3"}}, "", golden{
			"08001800 06000000 312e322e3300",
			"08001800 5549 0600 312e322e3300",
			"00080018 5549 0006 312e322e3300"}},
		{"CS multi-valued, padded with space", Element{Tag: tag.ImageType, VR: "CS", Values: []string{"A", "B"}}, "", golden{
			"08000800 04000000 415c4220",
			"08000800 4353 0400 415c4220",
			"00080008 4353 0004 415c4220"}},
		{"empty", Element{Tag: tag.AccessionNumber, VR: "SH"}, "", golden{
			"08005000 00000000",
			"08005000 5348 0000",
			"00080050 5348 0000"}},
		{"PN in Latin-1", Element{Tag: tag.PatientName, VR: "PN", Values: []string{"Mü^J"}}, CharsetLatin1, golden{
			"08000500 0a000000 49534f5f495220313030 10001000 04000000 4dfc5e4a",
			"08000500 4353 0a00 49534f5f495220313030 10001000 504e 0400 4dfc5e4a",
			"00080005 4353 000a 49534f5f495220313030 00100010 504e 0004 4dfc5e4a"}},
		{"PN in UTF-8", Element{Tag: tag.PatientName, VR: "PN", Values: []string{"山"}}, CharsetUTF8, golden{
			"08000500 0a000000 49534f5f495220313932 10001000 04000000 e5b1b120",
			"08000500 4353 0a00 49534f5f495220313932 10001000 504e 0400 e5b1b120",
			"00080005 4353 000a 49534f5f495220313932 00100010 504e 0004 e5b1b120"}},
		{"US", Element{Tag: tag.Rows, VR: "US", Values: []string{"512", "1"}}, "", golden{
			"28001000 04000000 0002 0100",
			"28001000 5553 0400 0002 0100",
			"00280010 5553 0004 0200 0001"}},
		{"SS", Element{Tag: tag.TagAngleSecondAxis, VR: "SS", Values: []string{"-2"}}, "", golden{
			"18001992 02000000 feff",
			"18001992 5353 0200 feff",
			"00189219 5353 0002 fffe"}},
		{"UL", Element{Tag: tag.New(0x0008, 0x1161), VR: "UL", Values: []string{"16909060"}}, "", golden{
			"08006111 04000000 04030201",
			"08006111 554c 0400 04030201",
			"00081161 554c 0004 01020304"}},
		{"SL", Element{Tag: tag.ReferencePixelX0, VR: "SL", Values: []string{"-2"}}, "", golden{
			"18002060 04000000 feffffff",
			"18002060 534c 0400 feffffff",
			"00186020 534c 0004 fffffffe"}},
		{"FL", Element{Tag: tag.ExaminedBodyThickness, VR: "FL", Values: []string{"1.5"}}, "", golden{
			"10003194 04000000 0000c03f",
			"10003194 464c 0400 0000c03f",
			"00109431 464c 0004 3fc00000"}},
		{"FD", Element{Tag: tag.TimeRange, VR: "FD", Values: []string{"-2"}}, "", golden{
			"08006311 08000000 00000000000000c0",
			"08006311 4644 0800 00000000000000c0",
			"00081163 4644 0008 c000000000000000"}},
		{"SV", Element{Tag: tag.SelectorSVValue, VR: "SV", Values: []string{"-2"}}, "", golden{
			"72008200 08000000 feffffffffffffff",
			"72008200 5356 0000 08000000 feffffffffffffff",
			"00720082 5356 0000 00000008 fffffffffffffffe"}},
		{"UV", Element{Tag: tag.SelectorUVValue, VR: "UV", Values: []string{"18446744073709551615"}}, "", golden{
			"72008300 08000000 ffffffffffffffff",
			"72008300 5556 0000 08000000 ffffffffffffffff",
			"00720083 5556 0000 00000008 ffffffffffffffff"}},
		{"AT", Element{Tag: tag.FrameIncrementPointer, VR: "AT", Values: []string{"00181063"}}, "", golden{
			"28000900 04000000 18006310",
			"28000900 4154 0400 18006310",
			"00280009 4154 0004 00181063"}},
		{"IS and DS stay text", Element{Tag: tag.SeriesNumber, VR: "IS", Values: []string{"-12"}}, "", golden{
			"20001100 04000000 2d313220",
			"20001100 4953 0400 2d313220",
			"00200011 4953 0004 2d313220"}},
		{"OB padded with zero", Element{Tag: tag.New(0x0009, 0x1001), VR: "OB", Binary: &Binary{Data: []byte{1, 2, 3}}}, "", golden{
			"09000110 04000000 01020300",
			"09000110 4f42 0000 04000000 01020300",
			"00091001 4f42 0000 00000004 01020300"}},
		{"OW swapped in big endian", Element{Tag: tag.RedPaletteColorLookupTableData, VR: "OW", Binary: &Binary{Data: []byte{1, 2, 3, 4}}}, "", golden{
			"28000112 04000000 01020304",
			"28000112 4f57 0000 04000000 01020304",
			"00281201 4f57 0000 00000004 02010403"}},
		{"OF", Element{Tag: tag.VerticesOfThePolygonalOutline, VR: "OF", Binary: &Binary{Data: []byte{1, 2, 3, 4}}}, "", golden{
			"18003816 04000000 01020304",
			"18003816 4f46 0000 04000000 01020304",
			"00181638 4f46 0000 00000004 04030201"}},
		{"binary not in memory", Element{Tag: tag.PixelData, VR: "OW", Binary: &Binary{Offset: 100, Length: 1 << 30}}, "", golden{
			"e07f1000 00000000",
			"e07f1000 4f57 0000 00000000",
			"7fe00010 4f57 0000 00000000"}},
		{"sequence", Element{Tag: tag.ReferencedStudySequence, VR: "SQ", Items: []*Dataset{{Elements: []Element{
			{Tag: tag.ReferencedSOPInstanceUID, VR: "UI", Values: []string{"1.2"}}}}}}, "", golden{
			"08001011 ffffffff feff00e0 ffffffff 08005511 04000000 312e3200 feff0de0 00000000 feffdde0 00000000",
			"08001011 5351 0000 ffffffff feff00e0 ffffffff 08005511 5549 0400 312e3200 feff0de0 00000000 feffdde0 00000000",
			"00081110 5351 0000 ffffffff fffee000 ffffffff 00081155 5549 0004 312e3200 fffee00d 00000000 fffee0dd 00000000"}},
		{"group length left out", Element{Tag: tag.New(0x0008, 0x0000), VR: "UL", Values: []string{"8"}}, "", golden{"", "", ""}},
	}
	for _, tt := range tests {
		for i, ts := range []uid.TransferSyntax{implicitLE, explicitLE, explicitBE} {
			t.Run(tt.name+"/"+syntaxName(ts), func(t *testing.T) {
				want := []string{tt.want.implicit, tt.want.explicitLE, tt.want.explicitBE}[i]
				d := &Dataset{Elements: []Element{tt.el}}
				got := encode(t, d, ts, tt.cs)
				if !bytes.Equal(got, unhexT(t, want)) {
					t.Errorf("got  %x\nwant %x", got, unhexT(t, want))
				}
			})
		}
	}
}

func TestEncodeDeflated(t *testing.T) {
	d := queryDataset(latin1Name, "x")
	plain := encode(t, d, explicitLE, CharsetLatin1)
	deflated := encode(t, d, deflatedLE, CharsetLatin1)
	inflated, err := io.ReadAll(flate.NewReader(bytes.NewReader(deflated)))
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(inflated, plain) {
		t.Errorf("deflated data set inflates to something else than the explicit VR little endian one")
	}
}

func TestEncodeErrors(t *testing.T) {
	tests := []struct {
		name string
		els  []Element
		ts   uid.TransferSyntax
		cs   string
		want string // in the error message
		is   error
	}{
		{"not ASCII", []Element{{Tag: tag.PatientName, VR: "PN", Values: []string{latin1Name}}}, explicitLE, "", `(0010,0010) PN: value 1: 'ü' is not representable in the default repertoire`, nil},
		{"not Latin-1", []Element{{Tag: tag.PatientName, VR: "PN", Values: []string{japaneseName}}}, explicitLE, CharsetLatin1, `(0010,0010) PN: value 1: '山' is not representable in ISO_IR 100`, nil},
		{"CS not ASCII", []Element{{Tag: tag.Modality, VR: "CS", Values: []string{"É"}}}, explicitLE, CharsetUTF8, `(0008,0060) CS: value 1: 'É' is not representable in the default repertoire`, nil},
		{"invalid UTF-8", []Element{{Tag: tag.PatientName, VR: "PN", Values: []string{"\xff"}}}, explicitLE, CharsetUTF8, `(0010,0010) PN`, nil},
		{"backslash in a value", []Element{{Tag: tag.PatientID, VR: "LO", Values: []string{`a\b`}}}, explicitLE, "", `(0010,0020) LO: value 1 contains a backslash`, nil},
		{"two values of LT", []Element{{Tag: tag.PatientTelecomInformation, VR: "LT", Values: []string{"a", "b"}}}, explicitLE, "", `(0010,2155) LT: 2 values`, nil},
		{"bad number", []Element{{Tag: tag.Rows, VR: "US", Values: []string{"70000"}}}, explicitLE, "", `(0028,0010) US: value 1: "70000" is not a number of VR US`, nil},
		{"bad tag", []Element{{Tag: tag.FrameIncrementPointer, VR: "AT", Values: []string{"0018106"}}}, explicitLE, "", `(0028,0009) AT: value 1`, nil},
		{"unknown VR", []Element{{Tag: tag.Rows, VR: "XX"}}, explicitLE, "", `(0028,0010) XX: unknown VR`, nil},
		{"binary as text", []Element{{Tag: tag.PixelData, VR: "OB", Values: []string{"1"}}}, explicitLE, "", `(7FE0,0010) OB: a binary value given as text`, nil},
		{"text not in memory", []Element{{Tag: tag.PatientComments, VR: "LT", Binary: &Binary{Length: 2 << 20}}}, explicitLE, "", `(0010,4000) LT: the value (2097152 bytes) is not held in memory`, nil},
		{"too long", []Element{{Tag: tag.PatientID, VR: "LO", Values: []string{strings.Repeat("x", 70000)}}}, implicitLE, "", `(0010,0020) LO: 70000 bytes are too long`, nil},
		{"twice", []Element{{Tag: tag.Rows, VR: "US"}, {Tag: tag.Rows, VR: "US"}}, explicitLE, "", `(0028,0010): element given twice`, nil},
		{"file meta", []Element{{Tag: tag.TransferSyntaxUID, VR: "UI"}}, explicitLE, "", `(0002,0010): group 0002`, nil},
		{"nested", []Element{{Tag: tag.ReferencedStudySequence, VR: "SQ", Items: []*Dataset{{}, {Elements: []Element{{Tag: tag.ReferencedSOPInstanceUID, VR: "UI", Values: []string{"1.2.É"}}}}}}}, explicitLE, CharsetUTF8, `(0008,1110) item 2: dicom: encode (0008,1155) UI`, nil},
		{"encapsulated syntax", nil, uid.TransferSyntax{UID: uid.JPEGBaseline8Bit, ExplicitVR: true, Encapsulated: true}, "", "JPEG", ErrUnsupported},
		{"character set", nil, explicitLE, "ISO 2022 IR 87", "ISO 2022 IR 87", ErrUnsupported},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var w bytes.Buffer
			err := (&Dataset{Elements: tt.els}).Encode(&w, tt.ts, EncodeOptions{CharacterSet: tt.cs})
			if err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Fatalf("error %v, want one containing %q", err, tt.want)
			}
			if tt.is != nil && !errors.Is(err, tt.is) {
				t.Errorf("error %v is not %v", err, tt.is)
			}
			if w.Len() != 0 {
				t.Errorf("%d bytes written before the error", w.Len())
			}
		})
	}
}

func TestResponseCharset(t *testing.T) {
	ascii := queryDataset("Doe^Jane", "plain")
	latin := queryDataset(latin1Name, "plain")
	japanese := queryDataset("Doe^Jane", "")
	japanese.Elements = append(japanese.Elements, Element{Tag: tag.OtherPatientIDsSequence, VR: "SQ", Items: []*Dataset{
		{Elements: []Element{{Tag: tag.PatientName, VR: "PN", Values: []string{japaneseName}}}}}})
	tests := []struct {
		requested []string
		d         *Dataset
		want      string
	}{
		{nil, ascii, ""},
		{[]string{""}, ascii, ""},
		{[]string{"ISO_IR 6"}, ascii, ""},
		{nil, latin, CharsetUTF8},
		{[]string{"ISO_IR 100"}, ascii, CharsetLatin1},
		{[]string{"ISO_IR 100 "}, latin, CharsetLatin1},
		{[]string{"ISO_IR 100"}, japanese, CharsetUTF8},
		{[]string{"ISO_IR 192"}, japanese, CharsetUTF8},
		{[]string{"ISO 2022 IR 87"}, ascii, CharsetUTF8},
		{[]string{"", "ISO 2022 IR 87"}, ascii, CharsetUTF8},
		{[]string{"GB18030"}, latin, CharsetUTF8},
		{[]string{"ISO_IR 144"}, queryDataset(cyrillicName, "Рентген"), "ISO_IR 144"},
		{[]string{"ISO_IR 126"}, queryDataset(greekName, "Ακτινογραφία"), "ISO_IR 126"},
		{[]string{"ISO_IR 127"}, queryDataset(arabicName, "أشعة"), "ISO_IR 127"},
		{[]string{"ISO_IR 138"}, queryDataset(hebrewName, "צילום"), "ISO_IR 138"},
		{[]string{"ISO_IR 144"}, ascii, "ISO_IR 144"},
		{[]string{"ISO_IR 144"}, queryDataset(greekName, ""), CharsetUTF8},
		{[]string{"ISO_IR 138"}, latin, CharsetUTF8},
		{[]string{"ISO_IR 101"}, queryDataset("Dvořák^Antonín", ""), "ISO_IR 101"},
		{[]string{"ISO_IR 166"}, ascii, CharsetUTF8},
	}
	for _, tt := range tests {
		if got := ResponseCharset(tt.requested, tt.d); got != tt.want {
			t.Errorf("ResponseCharset(%q, %s) = %q, want %q", tt.requested, tt.d.First(tag.PatientName), got, tt.want)
		}
		// Whatever it chooses, Encode can write.
		if err := tt.d.Encode(io.Discard, explicitLE, EncodeOptions{CharacterSet: ResponseCharset(tt.requested, tt.d)}); err != nil {
			t.Errorf("Encode in the chosen character set: %v", err)
		}
	}
}

// TestEncodeDcmdump writes encoded data sets as Part-10 files and checks
// that dcmtk's dcmdump reads the same values from them, in every syntax
// and character set.
func TestEncodeDcmdump(t *testing.T) {
	testpeer.Need(t, "dcmdump")
	dir := t.TempDir()
	for _, tt := range []struct{ charset, patient, text string }{
		{"", "Doe^Jane", "plain"},
		{CharsetLatin1, latin1Name, "Étude thoracique"},
		{CharsetUTF8, japaneseName, "胸部 Σειρά"},
		{"ISO_IR 144", cyrillicName, "Рентген грудной клетки"},
		{"ISO_IR 126", greekName, "Ακτινογραφία θώρακος"},
		{"ISO_IR 127", arabicName, "أشعة الصدر"},
		{"ISO_IR 138", hebrewName, "צילום חזה"},
	} {
		for _, ts := range syntaxes {
			name := syntaxName(ts) + "-" + strings.ReplaceAll(tt.charset, " ", "")
			t.Run(name, func(t *testing.T) {
				d := queryDataset(tt.patient, tt.text)
				file := AppendFileMeta(nil, FileMeta{
					MediaStorageSOPClassUID:    d.First(tag.SOPClassUID),
					MediaStorageSOPInstanceUID: d.First(tag.SOPInstanceUID),
					TransferSyntaxUID:          ts.UID,
					ImplementationClassUID:     ImplementationClassUID,
				})
				file = append(file, encode(t, d, ts, tt.charset)...)
				path := filepath.Join(dir, name+".dcm")
				if err := os.WriteFile(path, file, 0o644); err != nil {
					t.Fatal(err)
				}
				dump, err := testpeer.Dump(context.Background(), path)
				if err != nil {
					t.Fatalf("dcmdump: %v", err)
				}
				checked := 0
				for _, e := range d.Elements {
					want := strings.Join(e.Values, `\`)
					got, ok := dump[uint32(e.Tag)]
					if !ok {
						continue // a VR that Dump does not report
					}
					checked++
					if e.VR == "LT" || e.VR == "ST" {
						want = strings.TrimRight(want, " ")
					}
					if got != want {
						t.Errorf("%v %s: dcmdump reads %q, want %q", e.Tag, e.VR, got, want)
					}
				}
				if checked < 15 {
					t.Errorf("only %d values compared", checked)
				}
				if _, ok := dump[uint32(tag.PatientName)]; !ok {
					t.Errorf("dcmdump did not report Patient Name: %v", dump)
				}
				// The values Dump leaves out, nested ones included, and
				// not a word of complaint.
				full, stderr, err := testpeer.Run(context.Background(), "dcmdump", "+U8", path)
				if err != nil || strings.TrimSpace(stderr) != "" {
					t.Errorf("dcmdump: %v %s", err, stderr)
				}
				for _, want := range []string{
					"\n(0010,9431) FL 1.5 ",
					"\n(0008,1163) FD 0.25\\-1",
					"\n(0028,0009) AT (0018,1063)\\(7fe0,0010) ",
					"\n(0018,6020) SL -70000 ",
					"\n    (0008,1155) UI [1.2.3] ",
					"\n(0028,1201) OW 0201\\0403 ",
					"\n(7fe0,0010) OW (no value available) ",
				} {
					if !strings.Contains(full, want) {
						t.Errorf("dcmdump does not show %q", strings.TrimSpace(want))
					}
				}
				// In implicit VR a private element's VR is unknown to
				// dcmtk too.
				if want := "\n(0009,1001) OB 01\\02\\03\\04 "; ts.ExplicitVR && !strings.Contains(full, want) {
					t.Errorf("dcmdump does not show %q", strings.TrimSpace(want))
				}
			})
		}
	}
}
