package dicom

import (
	"encoding/binary"
	"encoding/json"
	"math"
	"reflect"
	"slices"
	"strings"
	"testing"

	"github.com/pacsd/pacsd/dicom/tag"
)

// allVRs are the value representations of PS3.5 §6.2.
var allVRs = strings.Fields("AE AS AT CS DA DS DT FL FD IS LO LT OB OD OF OL OV OW PN SH SL SQ SS ST SV TM UC UI UL UN UR US UT UV")

// vrTestURI names a located value by its tag path, and leaves values
// without an offset (deflated data sets) without a URI, as
// archive.newMetadata does.
func vrTestURI(path []tag.Tag, b *Binary) string {
	if b.Offset < 0 {
		return ""
	}
	hex := make([]string, len(path))
	for i, t := range path {
		hex[i] = t.Hex()
	}
	return "bulk/" + strings.Join(hex, "/")
}

// le encodes values in little endian, as the walker holds binary values.
func le[T uint16 | uint32 | uint64 | int64 | float32 | float64](vs ...T) []byte {
	var b []byte
	for _, v := range vs {
		b, _ = binary.Append(b, binary.LittleEndian, v)
	}
	return b
}

// TestJSONPerVR asserts the exact DICOM JSON (PS3.18 §F.2) of an element
// of every VR, as the decoder hands it over, and what ParseJSON reads
// back from that JSON.
func TestJSONPerVR(t *testing.T) {
	inline := func(data []byte) *Binary { return &Binary{Offset: 100, Length: int64(len(data)), Data: data} }
	readBack := func(data []byte) *Binary { return &Binary{Offset: -1, Length: int64(len(data)), Data: data} }
	tests := []struct {
		name string
		e    Element
		// want is the element's JSON object.
		want string
		// back is what ParseJSON reads from want; nil means e itself.
		back *Element
	}{
		{"AE", Element{Tag: tag.RetrieveAETitle, VR: "AE", Values: []string{"PACSD", "STORESCP"}},
			`{"vr":"AE","Value":["PACSD","STORESCP"]}`, nil},
		// An empty value among others is null; an element without
		// values has no Value (§F.2.5).
		{"AE empty value", Element{Tag: tag.RetrieveAETitle, VR: "AE", Values: []string{"", "PACSD"}},
			`{"vr":"AE","Value":[null,"PACSD"]}`, nil},
		{"AE empty", Element{Tag: tag.RetrieveAETitle, VR: "AE"}, `{"vr":"AE"}`, nil},
		{"AS", Element{Tag: tag.PatientAge, VR: "AS", Values: []string{"045Y"}},
			`{"vr":"AS","Value":["045Y"]}`, nil},
		// AT: eight upper-case hexadecimal digits (§F.2.3).
		{"AT", Element{Tag: tag.FrameIncrementPointer, VR: "AT", Values: []string{"00181063", "7FE00010"}},
			`{"vr":"AT","Value":["00181063","7FE00010"]}`, nil},
		{"CS", Element{Tag: tag.ImageType, VR: "CS", Values: []string{"ORIGINAL", "", "AXIAL"}},
			`{"vr":"CS","Value":["ORIGINAL",null,"AXIAL"]}`, nil},
		{"DA", Element{Tag: tag.StudyDate, VR: "DA", Values: []string{"20240131"}},
			`{"vr":"DA","Value":["20240131"]}`, nil},
		{"DA range", Element{Tag: tag.StudyDate, VR: "DA", Values: []string{"20240101-20240131"}},
			`{"vr":"DA","Value":["20240101-20240131"]}`, nil},
		// DS: JSON numbers in their shortest form.
		{"DS", Element{Tag: tag.PixelSpacing, VR: "DS", Values: []string{"+0.50", "-1.25e-3", "72", "1.0E2", ""}},
			`{"vr":"DS","Value":[0.5,-0.00125,72,100,null]}`,
			&Element{Tag: tag.PixelSpacing, VR: "DS", Values: []string{"0.5", "-0.00125", "72", "100", ""}}},
		// A DS that no float64 holds exactly stays a string rather than
		// lose a digit (§F.2.3: "to avoid losing precision"), and so
		// does a malformed one.
		{"DS beyond float64", Element{Tag: tag.PixelSpacing, VR: "DS", Values: []string{"9007199254740993", "0.1000000000000001"}},
			`{"vr":"DS","Value":["9007199254740993",0.1000000000000001]}`, nil},
		{"DS malformed", Element{Tag: tag.PixelSpacing, VR: "DS", Values: []string{"1,5", "NaN"}},
			`{"vr":"DS","Value":["1,5","NaN"]}`, nil},
		{"DT", Element{Tag: tag.AcquisitionDateTime, VR: "DT", Values: []string{"20240131123456.123456+0100"}},
			`{"vr":"DT","Value":["20240131123456.123456+0100"]}`, nil},
		// FL: the decoder formats the float32; NaN and infinities are no
		// JSON numbers and stay strings.
		{"FL", Element{Tag: tag.TableOfParameterValues, VR: "FL", Values: []string{"0.3", "-1.5", "3.4028235e+38", "NaN"}},
			`{"vr":"FL","Value":[0.3,-1.5,3.4028235e+38,"NaN"]}`, nil},
		{"FD", Element{Tag: tag.TableOfYBreakPoints, VR: "FD", Values: []string{"3.141592653589793", "1e-300", "-0", "+Inf"}},
			`{"vr":"FD","Value":[3.141592653589793,1e-300,-0,"+Inf"]}`, nil},
		{"IS", Element{Tag: tag.InstanceNumber, VR: "IS", Values: []string{"+3", "-12", "007", ""}},
			`{"vr":"IS","Value":[3,-12,7,null]}`,
			&Element{Tag: tag.InstanceNumber, VR: "IS", Values: []string{"3", "-12", "7", ""}}},
		{"IS beyond int64", Element{Tag: tag.InstanceNumber, VR: "IS", Values: []string{"99999999999999999999"}},
			`{"vr":"IS","Value":["99999999999999999999"]}`, nil},
		// Text: JSON escapes for quotes, backslashes and controls only.
		{"LO", Element{Tag: tag.PatientID, VR: "LO", Values: []string{`ID "7"`, "<a&b>", "Müller"}},
			`{"vr":"LO","Value":["ID \"7\"","<a&b>","Müller"]}`, nil},
		{"LT", Element{Tag: tag.ImageComments, VR: "LT", Values: []string{"line 1\r\nline 2\\not a delimiter\t\x01"}},
			`{"vr":"LT","Value":["line 1\r\nline 2\\not a delimiter\t\u0001"]}`, nil},
		{"OB", Element{Tag: tag.EncapsulatedDocument, VR: "OB", Binary: inline([]byte{1, 2, 3})},
			`{"vr":"OB","InlineBinary":"AQID"}`,
			&Element{Tag: tag.EncapsulatedDocument, VR: "OB", Binary: readBack([]byte{1, 2, 3})}},
		{"OB bulk", Element{Tag: tag.EncapsulatedDocument, VR: "OB", Binary: &Binary{Offset: 100, Length: 4096}},
			`{"vr":"OB","BulkDataURI":"bulk/00420011"}`,
			&Element{Tag: tag.EncapsulatedDocument, VR: "OB"}},
		// A located value without a URI (deflated) is written with its
		// VR only.
		{"OB located without URI", Element{Tag: tag.EncapsulatedDocument, VR: "OB", Binary: &Binary{Offset: -1, Length: 4096}},
			`{"vr":"OB"}`, &Element{Tag: tag.EncapsulatedDocument, VR: "OB"}},
		// An empty binary value has neither InlineBinary nor a URI.
		{"OB empty", Element{Tag: tag.EncapsulatedDocument, VR: "OB", Binary: &Binary{Offset: 100, Length: 0}},
			`{"vr":"OB"}`, &Element{Tag: tag.EncapsulatedDocument, VR: "OB"}},
		{"OD", Element{Tag: tag.DoublePointCoordinatesData, VR: "OD", Binary: inline(le(1.5, -2.0))},
			`{"vr":"OD","InlineBinary":"AAAAAAAA+D8AAAAAAAAAwA=="}`,
			&Element{Tag: tag.DoublePointCoordinatesData, VR: "OD", Binary: readBack(le(1.5, -2.0))}},
		{"OF", Element{Tag: tag.VerticesOfThePolygonalOutline, VR: "OF", Binary: inline(le[float32](1.5, -2))},
			`{"vr":"OF","InlineBinary":"AADAPwAAAMA="}`,
			&Element{Tag: tag.VerticesOfThePolygonalOutline, VR: "OF", Binary: readBack(le[float32](1.5, -2))}},
		{"OL", Element{Tag: tag.LongPrimitivePointIndexList, VR: "OL", Binary: inline(le[uint32](1, 0xFFFFFFFF))},
			`{"vr":"OL","InlineBinary":"AQAAAP////8="}`,
			&Element{Tag: tag.LongPrimitivePointIndexList, VR: "OL", Binary: readBack(le[uint32](1, 0xFFFFFFFF))}},
		{"OV", Element{Tag: tag.SelectorOVValue, VR: "OV", Binary: inline(le[uint64](1 << 60))},
			`{"vr":"OV","InlineBinary":"AAAAAAAAABA="}`,
			&Element{Tag: tag.SelectorOVValue, VR: "OV", Binary: readBack(le[uint64](1 << 60))}},
		{"OW", Element{Tag: tag.RedPaletteColorLookupTableData, VR: "OW", Binary: inline(le[uint16](0x0102, 0xFFFF))},
			`{"vr":"OW","InlineBinary":"AgH//w=="}`,
			&Element{Tag: tag.RedPaletteColorLookupTableData, VR: "OW", Binary: readBack(le[uint16](0x0102, 0xFFFF))}},
		{"OW bulk in a sequence", Element{Tag: tag.IconImageSequence, VR: "SQ", Items: []*Dataset{{Elements: []Element{
			{Tag: tag.PixelData, VR: "OW", Binary: &Binary{Offset: 500, Length: 8192}},
		}}}},
			`{"vr":"SQ","Value":[{"7FE00010":{"vr":"OW","BulkDataURI":"bulk/00880200/7FE00010"}}]}`,
			&Element{Tag: tag.IconImageSequence, VR: "SQ", Items: []*Dataset{{Elements: []Element{{Tag: tag.PixelData, VR: "OW"}}}}}},
		// PN: an object of the non-empty component groups (§F.2.2).
		{"PN", Element{Tag: tag.PatientName, VR: "PN", Values: []string{"Yamada^Tarou=山田^太郎=やまだ^たろう"}},
			`{"vr":"PN","Value":[{"Alphabetic":"Yamada^Tarou","Ideographic":"山田^太郎","Phonetic":"やまだ^たろう"}]}`, nil},
		{"PN ideographic only", Element{Tag: tag.PatientName, VR: "PN", Values: []string{"=山田^太郎"}},
			`{"vr":"PN","Value":[{"Ideographic":"山田^太郎"}]}`, nil},
		{"PN multiple, empty", Element{Tag: tag.PatientName, VR: "PN", Values: []string{"Doe^John^^Dr.", "", "^^^^"}},
			`{"vr":"PN","Value":[{"Alphabetic":"Doe^John^^Dr."},null,{"Alphabetic":"^^^^"}]}`, nil},
		{"SH", Element{Tag: tag.AccessionNumber, VR: "SH", Values: []string{"A-1"}},
			`{"vr":"SH","Value":["A-1"]}`, nil},
		{"SL", Element{Tag: tag.RationalNumeratorValue, VR: "SL", Values: []string{"-2147483648", "2147483647"}},
			`{"vr":"SL","Value":[-2147483648,2147483647]}`, nil},
		{"SQ", Element{Tag: tag.ReferencedStudySequence, VR: "SQ", Items: []*Dataset{
			{Elements: []Element{{Tag: tag.SOPInstanceUID, VR: "UI", Values: []string{"1.2.3"}}}},
			{},
		}}, `{"vr":"SQ","Value":[{"00080018":{"vr":"UI","Value":["1.2.3"]}},{}]}`,
			&Element{Tag: tag.ReferencedStudySequence, VR: "SQ", Items: []*Dataset{
				{Elements: []Element{{Tag: tag.SOPInstanceUID, VR: "UI", Values: []string{"1.2.3"}}}},
				{Elements: []Element{}},
			}}},
		{"SQ empty", Element{Tag: tag.ReferencedStudySequence, VR: "SQ"}, `{"vr":"SQ"}`, nil},
		{"SS", Element{Tag: tag.SelectorSSValue, VR: "SS", Values: []string{"-32768", "32767"}},
			`{"vr":"SS","Value":[-32768,32767]}`, nil},
		{"ST", Element{Tag: tag.InstitutionAddress, VR: "ST", Values: []string{`1 Main St\Springfield`}},
			`{"vr":"ST","Value":["1 Main St\\Springfield"]}`, nil},
		// SV and UV: numbers while a float64 holds them exactly, strings
		// beyond ±2^53 (§F.2.3).
		{"SV", Element{Tag: tag.SelectorSVValue, VR: "SV",
			Values: []string{"-42", "9007199254740992", "-9007199254740993", "-9223372036854775808"},
			Binary: inline(le[int64](-42, 1<<53, -(1<<53)-1, math.MinInt64))},
			`{"vr":"SV","Value":[-42,9007199254740992,"-9007199254740993","-9223372036854775808"]}`,
			&Element{Tag: tag.SelectorSVValue, VR: "SV", Values: []string{"-42", "9007199254740992", "-9007199254740993", "-9223372036854775808"}}},
		{"TM", Element{Tag: tag.StudyTime, VR: "TM", Values: []string{"123456.789"}},
			`{"vr":"TM","Value":["123456.789"]}`, nil},
		{"UC", Element{Tag: tag.OECFColumnNames, VR: "UC", Values: []string{"first", "second"}},
			`{"vr":"UC","Value":["first","second"]}`, nil},
		{"UI", Element{Tag: tag.SOPInstanceUID, VR: "UI", Values: []string{"1.2.840.10008.5.1.4.1.1.2"}},
			`{"vr":"UI","Value":["1.2.840.10008.5.1.4.1.1.2"]}`, nil},
		{"UL", Element{Tag: tag.SimpleFrameList, VR: "UL", Values: []string{"0", "4294967295"}},
			`{"vr":"UL","Value":[0,4294967295]}`, nil},
		// UN: the bytes as they came, whatever they hold (§F.2.2 note 4).
		{"UN", Element{Tag: tag.SelectorUNValue, VR: "UN", Binary: inline([]byte("ABC\\"))},
			`{"vr":"UN","InlineBinary":"QUJDXA=="}`,
			&Element{Tag: tag.SelectorUNValue, VR: "UN", Binary: readBack([]byte("ABC\\"))}},
		{"UR", Element{Tag: tag.RetrieveURL, VR: "UR", Values: []string{"https://pacs.example/wado?a=1&b=2"}},
			`{"vr":"UR","Value":["https://pacs.example/wado?a=1&b=2"]}`, nil},
		{"US", Element{Tag: tag.Rows, VR: "US", Values: []string{"512"}},
			`{"vr":"US","Value":[512]}`, nil},
		{"UT", Element{Tag: tag.TextValue, VR: "UT", Values: []string{"Größe \"groß\"\n\u2028"}},
			`{"vr":"UT","Value":["Größe \"groß\"\n\u2028"]}`, nil},
		{"UV", Element{Tag: tag.SelectorUVValue, VR: "UV",
			Values: []string{"42", "9007199254740993", "18446744073709551615"},
			Binary: inline(le[uint64](42, 1<<53+1, math.MaxUint64))},
			`{"vr":"UV","Value":[42,"9007199254740993","18446744073709551615"]}`,
			&Element{Tag: tag.SelectorUVValue, VR: "UV", Values: []string{"42", "9007199254740993", "18446744073709551615"}}},
		// Too large to hold, SV and UV are located like any binary value.
		{"UV bulk", Element{Tag: tag.SelectorUVValue, VR: "UV", Binary: &Binary{Offset: 100, Length: 2048}},
			`{"vr":"UV","BulkDataURI":"bulk/00720083"}`, &Element{Tag: tag.SelectorUVValue, VR: "UV"}},
	}
	covered := map[string]bool{}
	for _, tt := range tests {
		covered[tt.e.VR] = true
		t.Run(tt.name, func(t *testing.T) {
			if info, ok := tag.Lookup(tt.e.Tag); !ok || !strings.Contains(info.VR, tt.e.VR) {
				t.Fatalf("%v is not a %s element of the dictionary", tt.e.Tag, tt.e.VR)
			}
			ds := &Dataset{Elements: []Element{tt.e}}
			got := string(ds.AppendJSON(nil, JSONOptions{BulkDataURI: vrTestURI}))
			want := `{"` + tt.e.Tag.Hex() + `":` + tt.want + `}`
			if got != want {
				t.Fatalf("got  %s\nwant %s", got, want)
			}
			if !json.Valid([]byte(got)) {
				t.Fatalf("invalid JSON: %s", got)
			}
			back, err := ParseJSON([]byte(got))
			if err != nil {
				t.Fatalf("ParseJSON: %v", err)
			}
			wantBack := tt.back
			if wantBack == nil {
				wantBack = &tt.e
			}
			if len(back.Elements) != 1 || !reflect.DeepEqual(back.Elements[0], *wantBack) {
				t.Fatalf("ParseJSON gives %s, want %s", dump(back.Elements), dump([]Element{*wantBack}))
			}
			// What ParseJSON reads encodes to the same JSON, but for
			// the bulk data URIs it drops.
			if again := string(back.AppendJSON(nil, JSONOptions{})); !strings.Contains(want, "BulkDataURI") && again != want {
				t.Errorf("encoded again: %s", again)
			}
		})
	}
	for _, vr := range allVRs {
		if !covered[vr] {
			t.Errorf("no case for VR %s", vr)
		}
	}
}

func dump(es []Element) string {
	b, _ := json.Marshal(es)
	return string(b)
}

// TestJSONGroupLength checks that Group Length elements, which DICOM JSON
// leaves out (PS3.18 §F.2.2), are left out at every level.
func TestJSONGroupLength(t *testing.T) {
	ds := &Dataset{Elements: []Element{
		{Tag: tag.New(0x0008, 0x0000), VR: "UL", Values: []string{"26"}},
		{Tag: tag.ReferencedStudySequence, VR: "SQ", Items: []*Dataset{{Elements: []Element{
			{Tag: tag.New(0x0008, 0x0000), VR: "UL", Values: []string{"14"}},
			{Tag: tag.SOPInstanceUID, VR: "UI", Values: []string{"1.2.3"}},
		}}}},
		{Tag: tag.New(0x0010, 0x0000), VR: "UL", Values: []string{"10"}},
	}}
	got := string(ds.AppendJSON(nil, JSONOptions{}))
	if want := `{"00081110":{"vr":"SQ","Value":[{"00080018":{"vr":"UI","Value":["1.2.3"]}}]}}`; got != want {
		t.Errorf("got  %s\nwant %s", got, want)
	}
	empty := &Dataset{Elements: []Element{{Tag: tag.New(0x0008, 0x0000), VR: "UL", Values: []string{"0"}}}}
	if got := string(empty.AppendJSON(nil, JSONOptions{})); got != "{}" {
		t.Errorf("only a group length: %s", got)
	}
}

// TestJSONBulkDataURIEscaping checks that any URI, however odd, is
// written as a valid JSON string that reads back as the same URI.
func TestJSONBulkDataURIEscaping(t *testing.T) {
	uris := []string{
		"https://pacs.example/studies/1.2/bulk?a=1&b=<2>",
		"bulk/\"quoted\"\\back",
		"ctl\x00\x07\v\x7f",
		"ünï/コード",
	}
	for _, uri := range uris {
		ds := &Dataset{Elements: []Element{{Tag: tag.PixelData, VR: "OW", Binary: &Binary{Offset: 0, Length: 4096}}}}
		got := ds.AppendJSON(nil, JSONOptions{BulkDataURI: func([]tag.Tag, *Binary) string { return uri }})
		var m map[string]struct{ BulkDataURI string }
		if err := json.Unmarshal(got, &m); err != nil {
			t.Errorf("%q: invalid JSON %s: %v", uri, got, err)
			continue
		}
		if m["7FE00010"].BulkDataURI != uri {
			t.Errorf("%q: reads back as %q", uri, m["7FE00010"].BulkDataURI)
		}
	}
}

// TestJSONRoundTripOrder checks that ParseJSON gives the elements in tag
// order whatever the order of the keys.
func TestJSONRoundTripOrder(t *testing.T) {
	ds, err := ParseJSON([]byte(`{"00200013":{"vr":"IS","Value":[1]},"00080018":{"vr":"UI","Value":["1.2"]},"00100010":{"vr":"PN"}}`))
	if err != nil {
		t.Fatal(err)
	}
	tags := make([]tag.Tag, len(ds.Elements))
	for i, e := range ds.Elements {
		tags[i] = e.Tag
	}
	if !slices.IsSorted(tags) || len(tags) != 3 {
		t.Errorf("tags %v", tags)
	}
}
