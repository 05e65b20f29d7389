package dicom

import (
	"bufio"
	"bytes"
	"errors"
	"io"
	"runtime"
	"slices"
	"strings"
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
			"charset":   {Elements: []Element{{Tag: tag.SpecificCharacterSet, VR: "CS", Values: []string{"ISO_IR 100"}}}},
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

// rawElement appends an element of explicit VR little endian with value
// v as it is, in whatever character set.
func rawElement(dst []byte, t tag.Tag, vr, v string) []byte {
	if len(v)%2 == 1 {
		v += " "
	}
	dst = append(dst, byte(t.Group()), byte(t.Group()>>8), byte(t.Element()), byte(t.Element()>>8), vr[0], vr[1])
	if longVR(vr) {
		dst = append(dst, 0, 0, byte(len(v)), byte(len(v)>>8), byte(len(v)>>16), byte(len(v)>>24))
	} else {
		dst = append(dst, byte(len(v)), byte(len(v)>>8))
	}
	return append(dst, v...)
}

// TestAmendConvertsToUTF8 checks that a data set amended with a value its
// character set cannot hold comes out in UTF-8: every text value of the
// stored data set decoded from its character set, items with their own
// included, and an item of the amendment that records the old character
// set keeping it.
func TestAmendConvertsToUTF8(t *testing.T) {
	ts := explicitLE
	item := func(elems ...[]byte) string {
		b := []byte{0xFE, 0xFF, 0x00, 0xE0, 0xFF, 0xFF, 0xFF, 0xFF}
		for _, e := range elems {
			b = append(b, e...)
		}
		return string(append(b, 0xFE, 0xFF, 0x0D, 0xE0, 0, 0, 0, 0))
	}
	pixels := rawElement(nil, tag.PixelData, "OB", "\x01\x02\x03\x04")
	for _, c := range []struct {
		name    string
		charset string
		stored  []byte // the data set, less Pixel Data
		oldName string
		want    map[tag.Tag]string
	}{{
		name:    "default repertoire",
		charset: "",
		stored: slices.Concat(
			rawElement(nil, tag.SOPInstanceUID, "UI", "1.2.3.4"),
			rawElement(nil, tag.PatientName, "PN", "Wrong^Name"),
			rawElement(nil, tag.PatientID, "LO", "P1"),
			rawElement(nil, tag.OtherPatientIDsSequence, "SQ", item(
				rawElement(nil, tag.SpecificCharacterSet, "CS", "ISO_IR 100"),
				rawElement(nil, tag.PatientID, "LO", "Z\xfcrich")))),
		oldName: "Wrong^Name",
		want:    map[tag.Tag]string{tag.PatientID: "P1", tag.StudyDescription: ""},
	}, {
		name:    "Latin-1",
		charset: "ISO_IR 100",
		stored: slices.Concat(
			rawElement(nil, tag.SpecificCharacterSet, "CS", "ISO_IR 100"),
			rawElement(nil, tag.SOPInstanceUID, "UI", "1.2.3.4"),
			rawElement(nil, tag.StudyDescription, "LO", "Sch\xe4del"),
			rawElement(nil, tag.PatientName, "PN", "M\xfcller^J\xfcrgen"),
			rawElement(nil, tag.PatientID, "LO", "P1"),
			rawElement(nil, tag.OtherPatientIDsSequence, "SQ", item(rawElement(nil, tag.PatientID, "LO", "Z\xfcrich")))),
		oldName: "Müller^Jürgen",
		want:    map[tag.Tag]string{tag.StudyDescription: "Schädel", tag.PatientID: "P1"},
	}, {
		name:    "ISO 2022 IR 87",
		charset: `\ISO 2022 IR 87`,
		stored: slices.Concat(
			rawElement(nil, tag.SpecificCharacterSet, "CS", `\ISO 2022 IR 87`),
			rawElement(nil, tag.SOPInstanceUID, "UI", "1.2.3.4"),
			rawElement(nil, tag.StudyDescription, "LO", "\x1b$B;3ED\x1b(B"),
			rawElement(nil, tag.PatientName, "PN", "Yamada^Tarou=\x1b$B;3ED\x1b(B^\x1b$BB@O:\x1b(B"),
			rawElement(nil, tag.PatientID, "LO", "P1")),
		oldName: "Yamada^Tarou=山田^太郎",
		want:    map[tag.Tag]string{tag.StudyDescription: "山田", tag.PatientID: "P1"},
	}} {
		t.Run(c.name, func(t *testing.T) {
			record := func(old ...Element) *Dataset {
				return &Dataset{Elements: []Element{
					{Tag: tag.ModifiedAttributesSequence, VR: "SQ", Items: []*Dataset{{Elements: old}}},
					{Tag: tag.ModifyingSystem, VR: "LO", Values: []string{"PACSD"}},
				}}
			}
			set := &Dataset{Elements: []Element{
				{Tag: tag.SpecificCharacterSet, VR: "CS", Values: []string{CharsetUTF8}},
				{Tag: tag.PatientName, VR: "PN", Values: []string{"Новиков^Иван"}},
				{Tag: tag.OriginalAttributesSequence, VR: "SQ", Items: []*Dataset{
					record(Element{Tag: tag.PatientName, VR: "PN", Values: []string{c.oldName}}),
					record(Element{Tag: tag.SpecificCharacterSet, VR: "CS", Values: splitCharset(c.charset)}),
				}},
			}}
			var out bytes.Buffer
			src := slices.Concat(c.stored, pixels)
			if err := Amend(&out, bytes.NewReader(src), ts, ts, false, set, c.charset); err != nil {
				t.Fatal(err)
			}
			got, err := Parse(out.Bytes(), ts)
			if err != nil {
				t.Fatal(err)
			}
			if v := got.Strings(tag.SpecificCharacterSet); !slices.Equal(v, []string{CharsetUTF8}) {
				t.Errorf("Specific Character Set = %q", v)
			}
			if v := got.String(tag.PatientName); v != "Новиков^Иван" {
				t.Errorf("PatientName = %q", v)
			}
			for tg, want := range c.want {
				if v := got.String(tg); v != want {
					t.Errorf("%v = %q, want %q", tg, v, want)
				}
			}
			if c.name != "ISO 2022 IR 87" {
				ids := got.Items(tag.OtherPatientIDsSequence)
				if len(ids) != 1 || ids[0].String(tag.PatientID) != "Zürich" {
					t.Errorf("Other Patient IDs Sequence = %+v, want the item's ID in UTF-8", ids)
				}
				if _, ok := ids[0].Find(tag.SpecificCharacterSet); ok {
					t.Error("the item keeps its own Specific Character Set, which no longer applies")
				}
			}
			oas := got.Items(tag.OriginalAttributesSequence)
			if len(oas) != 2 {
				t.Fatalf("Original Attributes Sequence = %+v", oas)
			}
			if v := oas[0].Items(tag.ModifiedAttributesSequence)[0].String(tag.PatientName); v != c.oldName {
				t.Errorf("old name %q, want %q", v, c.oldName)
			}
			// The old character set, in an item without other text;
			// the value of an empty one is still recorded as absent.
			old, ok := oas[1].Items(tag.ModifiedAttributesSequence)[0].Find(tag.SpecificCharacterSet)
			if !ok || strings.Join(old.Values, `\`) != c.charset {
				t.Errorf("old Specific Character Set %+v, want %q", old, c.charset)
			}
			px, _ := got.Find(tag.PixelData)
			if px == nil || px.Binary == nil || px.Binary.Length != 4 {
				t.Errorf("Pixel Data = %+v", px)
			}
			// Served in pieces, the same bytes.
			var head bytes.Buffer
			a, err := NewAmendment(set, c.charset)
			if err != nil {
				t.Fatal(err)
			}
			rest, err := a.Head(&head, bufio.NewReaderSize(bytes.NewReader(src), 64<<10), ts, ts, false)
			if err != nil {
				t.Fatal(err)
			}
			if rest != nil {
				io.Copy(&head, rest)
			}
			if !bytes.Equal(head.Bytes(), out.Bytes()) {
				t.Error("Head and the rest differ from Amend")
			}
		})
	}
	t.Run("too long", func(t *testing.T) {
		src := slices.Concat(rawElement(nil, tag.SOPInstanceUID, "UI", "1.2.3.4"),
			rawElement(nil, tag.New(0x0018, 0x9074), "UT", strings.Repeat("x", MaxConvertedText+2)))
		set := &Dataset{Elements: []Element{{Tag: tag.SpecificCharacterSet, VR: "CS", Values: []string{CharsetUTF8}}}}
		err := Amend(io.Discard, bytes.NewReader(src), ts, ts, false, set, "")
		if !errors.Is(err, ErrUnsupported) {
			t.Errorf("Amend = %v, want ErrUnsupported", err)
		}
	})
}

// TestAmendmentHead checks that Amendment.Head leaves the rest of the data set to
// its caller where Amend would copy it unchanged, and that the two write
// the same bytes.
func TestAmendmentHead(t *testing.T) {
	src := &Dataset{Elements: []Element{
		{Tag: tag.SOPInstanceUID, VR: "UI", Values: []string{"1.2.3.4"}},
		{Tag: tag.PatientName, VR: "PN", Values: []string{"Wrong^Name"}},
		{Tag: tag.PixelData, VR: "OW", Binary: &Binary{Data: make([]byte, 1<<20), Length: 1 << 20}},
	}}
	set := &Dataset{Elements: []Element{{Tag: tag.PatientName, VR: "PN", Values: []string{"Right^Name"}}}}
	for _, ts := range syntaxes {
		t.Run(syntaxName(ts), func(t *testing.T) {
			in := encode(t, src, ts, "")
			var whole, head bytes.Buffer
			if err := Amend(&whole, bytes.NewReader(in), ts, ts, false, set, ""); err != nil {
				t.Fatal(err)
			}
			a, err := NewAmendment(set, "")
			if err != nil {
				t.Fatal(err)
			}
			rest, err := a.Head(&head, bytes.NewReader(in), ts, ts, false)
			if err != nil {
				t.Fatal(err)
			}
			if ts.Deflated != (rest == nil) {
				t.Fatalf("rest = %v for %s", rest, syntaxName(ts))
			}
			if rest != nil {
				if head.Len() > 1024 {
					t.Errorf("Head wrote %d bytes, pixel data among them", head.Len())
				}
				io.Copy(&head, rest)
			}
			if !bytes.Equal(head.Bytes(), whole.Bytes()) {
				t.Error("Head and the rest differ from Amend")
			}
		})
	}
}

// FuzzAmend checks that Amend, on any input, fails only with the input's
// fault, allocates nothing in proportion to it, and that what it writes
// holds the amended value where Transcode's output is readable. With the
// high bit of syntax set, the amendment converts the data set to UTF-8
// from the character set bits 4–6 choose, which decodes every text value
// of the input.
func FuzzAmend(f *testing.F) {
	for _, seed := range sampleSeeds(f) {
		f.Add(seed, uint8(0), false)
		f.Add(seed, uint8(1), true)
		f.Add(seed, uint8(0x81), false)
	}
	f.Add(encode(f, queryDataset(japaneseName, "x"), deflatedLE, CharsetUTF8), uint8(3), false)
	f.Add(encode(f, queryDataset(latin1Name, "Schädel"), explicitLE, CharsetLatin1), uint8(0x91), false)
	f.Add(encode(f, queryDataset(latin1Name, "Schädel"), implicitLE, CharsetLatin1), uint8(0x90), true)
	set := &Dataset{Elements: []Element{
		{Tag: tag.PatientName, VR: "PN", Values: []string{"Amended^Name"}},
		{Tag: tag.OriginalAttributesSequence, VR: "SQ", Items: []*Dataset{{Elements: []Element{{Tag: tag.ModifyingSystem, VR: "LO", Values: []string{"PACSD"}}}}}},
	}}
	toUTF8 := &Dataset{Elements: []Element{
		{Tag: tag.SpecificCharacterSet, VR: "CS", Values: []string{CharsetUTF8}},
		{Tag: tag.PatientName, VR: "PN", Values: []string{japaneseName}},
		{Tag: tag.OriginalAttributesSequence, VR: "SQ", Items: []*Dataset{{Elements: []Element{
			{Tag: tag.ModifiedAttributesSequence, VR: "SQ", Items: []*Dataset{{Elements: []Element{
				{Tag: tag.SpecificCharacterSet, VR: "CS", Values: []string{"ISO_IR 100"}},
			}}}},
		}}}},
	}}
	charsets := []string{"", CharsetLatin1, `\ISO 2022 IR 87`, "ISO_IR 13", "GB18030", "ISO 2022 IR 6\\ISO 2022 IR 149", "ISO_IR 144", CharsetUTF8}
	f.Fuzz(func(t *testing.T, data []byte, syntax uint8, encapsulated bool) {
		ts := syntaxes[int(syntax&0x7F)%len(syntaxes)]
		if encapsulated && ts.BigEndian {
			return
		}
		amend, charset, name, perByte := set, "", "Amended^Name", uint64(4)
		if syntax&0x80 != 0 {
			// A value read whole is copied, decoded and copied again.
			amend, charset, name, perByte = toUTF8, charsets[int(syntax>>4&7)], japaneseName, 8
		}
		var before, after runtime.MemStats
		runtime.ReadMemStats(&before)
		var out bytes.Buffer
		err := Amend(&out, bytes.NewReader(data), ts, ts, encapsulated, amend, charset)
		runtime.ReadMemStats(&after)
		if a := after.TotalAlloc - before.TotalAlloc; a > 4<<20+perByte*uint64(len(data)) {
			t.Fatalf("%d bytes allocated for %d bytes of input", a, len(data))
		}
		if err != nil {
			if !errors.Is(err, ErrMalformed) && !errors.Is(err, ErrUnsupported) {
				t.Fatalf("error %v is neither ErrMalformed nor ErrUnsupported", err)
			}
			return
		}
		if got, err := Parse(out.Bytes(), ts); err == nil && got.String(tag.PatientName) != name {
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
