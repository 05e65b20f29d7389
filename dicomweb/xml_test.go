package dicomweb

import (
	"encoding/xml"
	"strings"
	"testing"

	"github.com/pacsd/pacsd/dicom"
	"github.com/pacsd/pacsd/dicom/tag"
)

// TestAppendXML checks the Native DICOM Model (PS3.19 §A.1) of each kind
// of value against the standard's layout, written out by hand.
func TestAppendXML(t *testing.T) {
	ds := &dicom.Dataset{Elements: []dicom.Element{
		{Tag: tag.New(0x0008, 0x0000), VR: "UL", Values: []string{"100"}},
		{Tag: tag.SpecificCharacterSet, VR: "CS", Values: []string{"ISO_IR 192"}},
		{Tag: tag.FailedSOPSequence, VR: "SQ", Items: []*dicom.Dataset{
			{Elements: []dicom.Element{{Tag: tag.FailureReason, VR: "US", Values: []string{"272"}}}},
			{},
		}},
		{Tag: tag.PatientName, VR: "PN", Values: []string{"Yamada^Tarou=山田^太郎=やまだ^たろう", "", "^^^Dr"}},
		{Tag: tag.StudyDescription, VR: "LO", Values: []string{"<b>&"}},
		{Tag: tag.New(0x0009, 0x0010), VR: "LO", Values: []string{"ACME 1.0"}},
		{Tag: tag.New(0x0009, 0x1001), VR: "OB", Binary: &dicom.Binary{Data: []byte{1, 2, 3}}},
		{Tag: tag.New(0x0028, 0x0009), VR: "AT", Values: []string{"00181063"}},
		{Tag: tag.ImageType, VR: "CS", Values: []string{"ORIGINAL", "", "AXIAL"}},
		{Tag: tag.PixelData, VR: "OW", Binary: &dicom.Binary{Offset: 1000, Length: 100}},
	}}
	want := xml.Header + `<NativeDicomModel xmlns="http://dicom.nema.org/PS3.19/models/NativeDICOM" xml:space="preserve">` +
		`<DicomAttribute tag="00080005" vr="CS" keyword="SpecificCharacterSet"><Value number="1">ISO_IR 192</Value></DicomAttribute>` +
		`<DicomAttribute tag="00080008" vr="CS" keyword="ImageType"><Value number="1">ORIGINAL</Value><Value number="3">AXIAL</Value></DicomAttribute>` +
		`<DicomAttribute tag="00081030" vr="LO" keyword="StudyDescription"><Value number="1">&lt;b&gt;&amp;</Value></DicomAttribute>` +
		`<DicomAttribute tag="00081198" vr="SQ" keyword="FailedSOPSequence">` +
		`<Item number="1"><DicomAttribute tag="00081197" vr="US" keyword="FailureReason"><Value number="1">272</Value></DicomAttribute></Item>` +
		`<Item number="2"></Item></DicomAttribute>` +
		`<DicomAttribute tag="00090010" vr="LO"><Value number="1">ACME 1.0</Value></DicomAttribute>` +
		`<DicomAttribute tag="00091001" vr="OB" privateCreator="ACME 1.0"><InlineBinary>AQID</InlineBinary></DicomAttribute>` +
		`<DicomAttribute tag="00100010" vr="PN" keyword="PatientName">` +
		`<PersonName number="1"><Alphabetic><FamilyName>Yamada</FamilyName><GivenName>Tarou</GivenName></Alphabetic>` +
		`<Ideographic><FamilyName>山田</FamilyName><GivenName>太郎</GivenName></Ideographic>` +
		`<Phonetic><FamilyName>やまだ</FamilyName><GivenName>たろう</GivenName></Phonetic></PersonName>` +
		`<PersonName number="3"><Alphabetic><NamePrefix>Dr</NamePrefix></Alphabetic></PersonName></DicomAttribute>` +
		`<DicomAttribute tag="00280009" vr="AT" keyword="FrameIncrementPointer"><Value number="1">00181063</Value></DicomAttribute>` +
		`<DicomAttribute tag="7FE00010" vr="OW" keyword="PixelData"></DicomAttribute>` +
		"</NativeDicomModel>\n"
	got := string(appendXML(nil, ds))
	if got != want {
		t.Errorf("got\n%s\nwant\n%s", strings.ReplaceAll(got, "><", ">\n<"), strings.ReplaceAll(want, "><", ">\n<"))
	}
	if err := xml.Unmarshal([]byte(got), new(struct{})); err != nil {
		t.Errorf("not well-formed XML: %v", err)
	}
}
