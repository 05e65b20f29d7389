package dicom

import (
	"bytes"
	"errors"
	"io"
	"runtime"
	"slices"
	"testing"

	"github.com/pacsd/pacsd/dicom/tag"
	"github.com/pacsd/pacsd/dicom/uid"
)

func TestAmend(t *testing.T) {
	src := &Dataset{Elements: []Element{
		{Tag: tag.SOPClassUID, VR: "UI", Values: []string{"1.2.840.10008.5.1.4.1.1.7"}},
		{Tag: tag.SOPInstanceUID, VR: "UI", Values: []string{"1.2.3.4"}},
		{Tag: tag.PatientName, VR: "PN", Values: []string{"Wrong^Name"}},
		{Tag: tag.PatientID, VR: "LO", Values: []string{"123"}},
		{Tag: tag.OtherPatientIDsSequence, VR: "SQ", Items: []*Dataset{{Elements: []Element{{Tag: tag.PatientID, VR: "LO", Values: []string{"X"}}}}}},
		{Tag: tag.StudyInstanceUID, VR: "UI", Values: []string{"1.2.3"}},
		{Tag: tag.SeriesInstanceUID, VR: "UI", Values: []string{"1.2.3.1"}},
		{Tag: tag.PixelData, VR: "OB", Binary: &Binary{Data: []byte{1, 2, 3, 4}, Length: 4}},
	}}
	set := &Dataset{Elements: []Element{
		{Tag: tag.PatientName, VR: "PN", Values: []string{"Right^Name"}},
		{Tag: tag.IssuerOfPatientID, VR: "LO", Values: []string{"RXH"}},
		{Tag: tag.OtherPatientIDsSequence, VR: "SQ"}, // emptied
		{Tag: tag.OriginalAttributesSequence, VR: "SQ", Items: []*Dataset{{Elements: []Element{
			{Tag: tag.ModifiedAttributesSequence, VR: "SQ", Items: []*Dataset{{Elements: []Element{{Tag: tag.PatientName, VR: "PN", Values: []string{"Wrong^Name"}}}}}},
		}}}},
	}}
	for _, ts := range []string{uid.ExplicitVRLittleEndian, uid.ImplicitVRLittleEndian, uid.ExplicitVRBigEndian, uid.DeflatedExplicitVRLittleEndian} {
		t.Run(uid.Name(ts), func(t *testing.T) {
			syntax, _ := uid.LookupTransferSyntax(ts)
			var in, out bytes.Buffer
			if err := src.Encode(&in, syntax, EncodeOptions{}); err != nil {
				t.Fatal(err)
			}
			if err := Amend(&out, bytes.NewReader(in.Bytes()), syntax, syntax, false, set, ""); err != nil {
				t.Fatal(err)
			}
			got, err := Parse(out.Bytes(), syntax)
			if err != nil {
				t.Fatal(err)
			}
			var tags []tag.Tag
			for _, e := range got.Elements {
				tags = append(tags, e.Tag)
			}
			want := []tag.Tag{tag.SOPClassUID, tag.SOPInstanceUID, tag.PatientName, tag.PatientID, tag.IssuerOfPatientID,
				tag.OtherPatientIDsSequence, tag.StudyInstanceUID, tag.SeriesInstanceUID, tag.OriginalAttributesSequence, tag.PixelData}
			if !slices.Equal(tags, want) {
				t.Errorf("tags = %v, want %v", tags, want)
			}
			if v := got.String(tag.PatientName); v != "Right^Name" {
				t.Errorf("PatientName = %q", v)
			}
			if v := got.String(tag.IssuerOfPatientID); v != "RXH" {
				t.Errorf("IssuerOfPatientID = %q", v)
			}
			if n := len(got.Items(tag.OtherPatientIDsSequence)); n != 0 {
				t.Errorf("OtherPatientIDsSequence has %d items", n)
			}
			orig := got.Items(tag.OriginalAttributesSequence)
			if len(orig) != 1 || orig[0].Items(tag.ModifiedAttributesSequence)[0].String(tag.PatientName) != "Wrong^Name" {
				t.Errorf("Original Attributes Sequence = %+v", orig)
			}
			px, _ := got.Find(tag.PixelData)
			if px == nil || px.Binary == nil || px.Binary.Length != 4 {
				t.Errorf("Pixel Data = %+v", px)
			}
		})
	}
	t.Run("refused", func(t *testing.T) {
		ts, _ := uid.LookupTransferSyntax(uid.ExplicitVRLittleEndian)
		for name, bad := range map[string]*Dataset{
			"charset":   {Elements: []Element{{Tag: tag.SpecificCharacterSet, VR: "CS", Values: []string{"ISO_IR 192"}}}},
			"meta":      {Elements: []Element{{Tag: 0x00020010, VR: "UI", Values: []string{"1.2"}}}},
			"not ascii": {Elements: []Element{{Tag: tag.PatientName, VR: "PN", Values: []string{"Müller"}}}},
		} {
			var out bytes.Buffer
			if err := Amend(&out, bytes.NewReader(nil), ts, ts, false, bad, ""); err == nil || out.Len() != 0 {
				t.Errorf("%s: Amend = %v, wrote %d bytes; want an error and nothing", name, err, out.Len())
			}
		}
		var out bytes.Buffer
		err := Amend(&out, bytes.NewReader(nil), ts, ts, false, nil, "ISO 2022 IR 999")
		if !errors.Is(err, ErrUnsupported) {
			t.Errorf("unknown character set: %v", err)
		}
	})
}

// FuzzAmend checks that Amend, on any input, fails only with the input's
// fault, allocates nothing in proportion to it, and that what it writes
// holds the amended value where Transcode's output is readable.
func FuzzAmend(f *testing.F) {
	for _, seed := range sampleSeeds(f) {
		f.Add(seed, uint8(0), false)
		f.Add(seed, uint8(1), true)
	}
	f.Add(encode(f, queryDataset(japaneseName, "x"), deflatedLE, CharsetUTF8), uint8(3), false)
	set := &Dataset{Elements: []Element{
		{Tag: tag.PatientName, VR: "PN", Values: []string{"Amended^Name"}},
		{Tag: tag.OriginalAttributesSequence, VR: "SQ", Items: []*Dataset{{Elements: []Element{{Tag: tag.ModifyingSystem, VR: "LO", Values: []string{"PACSD"}}}}}},
	}}
	f.Fuzz(func(t *testing.T, data []byte, syntax uint8, encapsulated bool) {
		ts := syntaxes[int(syntax)%len(syntaxes)]
		if encapsulated && ts.BigEndian {
			return
		}
		var before, after runtime.MemStats
		runtime.ReadMemStats(&before)
		var out bytes.Buffer
		err := Amend(&out, bytes.NewReader(data), ts, ts, encapsulated, set, "")
		runtime.ReadMemStats(&after)
		if a := after.TotalAlloc - before.TotalAlloc; a > 4<<20+4*uint64(len(data)) {
			t.Fatalf("%d bytes allocated for %d bytes of input", a, len(data))
		}
		if err != nil {
			if !errors.Is(err, ErrMalformed) && !errors.Is(err, ErrUnsupported) {
				t.Fatalf("error %v is neither ErrMalformed nor ErrUnsupported", err)
			}
			return
		}
		if got, err := Parse(out.Bytes(), ts); err == nil && got.String(tag.PatientName) != "Amended^Name" {
			t.Fatalf("amended output has Patient Name %q", got.String(tag.PatientName))
		}
	})
}

// BenchmarkAmend compares serving a 4 MiB image with a corrected header
// (Amend) with serving it as stored (a copy): WADO-RS of a corrected
// series against an uncorrected one.
func BenchmarkAmend(b *testing.B) {
	ts, _ := uid.LookupTransferSyntax(uid.ExplicitVRLittleEndian)
	src := &Dataset{Elements: []Element{
		{Tag: tag.SOPClassUID, VR: "UI", Values: []string{"1.2.840.10008.5.1.4.1.1.2"}},
		{Tag: tag.SOPInstanceUID, VR: "UI", Values: []string{"1.2.3.4"}},
		{Tag: tag.PatientName, VR: "PN", Values: []string{"Wrong^Name"}},
		{Tag: tag.PatientID, VR: "LO", Values: []string{"123"}},
		{Tag: tag.StudyInstanceUID, VR: "UI", Values: []string{"1.2.3"}},
		{Tag: tag.SeriesInstanceUID, VR: "UI", Values: []string{"1.2.3.1"}},
		{Tag: tag.PixelData, VR: "OW", Binary: &Binary{Data: make([]byte, 4<<20), Length: 4 << 20}},
	}}
	var in bytes.Buffer
	if err := src.Encode(&in, ts, EncodeOptions{}); err != nil {
		b.Fatal(err)
	}
	set := &Dataset{Elements: []Element{
		{Tag: tag.PatientName, VR: "PN", Values: []string{"Right^Name"}},
		{Tag: tag.OriginalAttributesSequence, VR: "SQ", Items: []*Dataset{{Elements: []Element{
			{Tag: tag.ModifiedAttributesSequence, VR: "SQ", Items: []*Dataset{{Elements: []Element{{Tag: tag.PatientName, VR: "PN", Values: []string{"Wrong^Name"}}}}}},
		}}}},
	}}
	data := in.Bytes()
	b.Run("as stored", func(b *testing.B) {
		b.SetBytes(int64(len(data)))
		buf := make([]byte, 1<<20)
		for b.Loop() {
			if _, err := io.CopyBuffer(io.Discard, struct{ io.Reader }{bytes.NewReader(data)}, buf); err != nil {
				b.Fatal(err)
			}
		}
	})
	b.Run("amended", func(b *testing.B) {
		b.SetBytes(int64(len(data)))
		for b.Loop() {
			if err := Amend(io.Discard, bytes.NewReader(data), ts, ts, false, set, ""); err != nil {
				b.Fatal(err)
			}
		}
	})
}
