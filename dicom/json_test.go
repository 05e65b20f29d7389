package dicom

import (
	"encoding/json"
	"reflect"
	"strings"
	"testing"

	"github.com/pacsd/pacsd/dicom/tag"
)

func TestJSON(t *testing.T) {
	ds := &Dataset{Elements: []Element{
		{Tag: tag.ImageType, VR: "CS", Values: []string{"ORIGINAL", "", "AXIAL"}},
		{Tag: tag.AccessionNumber, VR: "SH"},
		{Tag: tag.ReferencedStudySequence, VR: "SQ", Items: []*Dataset{{Elements: []Element{
			{Tag: tag.ReferencedSOPInstanceUID, VR: "UI", Values: []string{"1.2.3"}},
		}}}},
		{Tag: tag.PatientName, VR: "PN", Values: []string{"Yamada^Tarou=山田^太郎=やまだ^たろう", "Doe^John"}},
		{Tag: tag.PatientWeight, VR: "DS", Values: []string{"72.5"}},
		{Tag: tag.SeriesNumber, VR: "IS", Values: []string{"+3"}},
		{Tag: tag.Rows, VR: "US", Values: []string{"512"}},
		{Tag: tag.FrameIncrementPointer, VR: "AT", Values: []string{"00181063"}},
		{Tag: tag.New(0x0009, 0x1010), VR: "OB", Binary: &Binary{Data: []byte{1, 2, 3}}},
		{Tag: tag.PixelData, VR: "OW", Binary: &Binary{Offset: 100, Length: 4}},
	}}
	got, err := ds.MarshalJSON()
	if err != nil {
		t.Fatal(err)
	}
	// The elements are out of order; DICOM JSON lists them in order.
	want := `{"00080008":{"vr":"CS","Value":["ORIGINAL",null,"AXIAL"]},"00080050":{"vr":"SH"},` +
		`"00081110":{"vr":"SQ","Value":[{"00081155":{"vr":"UI","Value":["1.2.3"]}}]},` +
		`"00091010":{"vr":"OB","InlineBinary":"AQID"},"00100010":{"vr":"PN","Value":[{"Alphabetic":"Yamada^Tarou","Ideographic":"山田^太郎","Phonetic":"やまだ^たろう"},{"Alphabetic":"Doe^John"}]},` +
		`"00101030":{"vr":"DS","Value":[72.5]},"00200011":{"vr":"IS","Value":[3]},` +
		`"00280009":{"vr":"AT","Value":["00181063"]},"00280010":{"vr":"US","Value":[512]},"7FE00010":{"vr":"OW"}}`
	if string(got) != want {
		t.Fatalf("got  %s\nwant %s", got, want)
	}
	if !json.Valid(got) {
		t.Fatal("invalid JSON")
	}
	back, err := ParseJSON(got)
	if err != nil {
		t.Fatal(err)
	}
	if v := back.Strings(tag.PatientName); !reflect.DeepEqual(v, []string{"Yamada^Tarou=山田^太郎=やまだ^たろう", "Doe^John"}) {
		t.Errorf("PN back: %q", v)
	}
	if v := back.First(tag.SeriesNumber); v != "3" {
		t.Errorf("IS back: %q", v)
	}
	if items := back.Items(tag.ReferencedStudySequence); len(items) != 1 || items[0].First(tag.ReferencedSOPInstanceUID) != "1.2.3" {
		t.Errorf("SQ back: %+v", items)
	}
	if e, _ := back.Find(tag.New(0x0009, 0x1010)); e == nil || string(e.Binary.Data) != "\x01\x02\x03" {
		t.Errorf("binary back: %+v", e)
	}
	bulk := ds.AppendJSON(nil, JSONOptions{BulkDataURI: func(path []tag.Tag, b *Binary) string { return "bulk/" + path[0].Hex() }})
	if !json.Valid(bulk) || !strings.Contains(string(bulk), `"7FE00010":{"vr":"OW","BulkDataURI":"bulk/7FE00010"}`) {
		t.Errorf("bulk: %s", bulk)
	}
}
