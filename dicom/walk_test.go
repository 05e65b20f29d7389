package dicom

import (
	"bytes"
	"encoding/binary"
	"errors"
	"strings"
	"testing"

	"github.com/pacsd/pacsd/dicom/tag"
	"github.com/pacsd/pacsd/dicom/uid"
)

// enc builds data sets by hand for the cases real files rarely show.
type enc struct {
	b  bytes.Buffer
	sx syntax
}

func (e *enc) tag(t tag.Tag) {
	bo := e.sx.order()
	var h [4]byte
	bo.PutUint16(h[:], t.Group())
	bo.PutUint16(h[2:], t.Element())
	e.b.Write(h[:])
}

// el writes an element with the given length field, which need not match
// len(v).
func (e *enc) el(t tag.Tag, vr string, length uint32, v []byte) *enc {
	bo := e.sx.order().(binary.AppendByteOrder)
	e.tag(t)
	switch {
	case t.Group() == 0xFFFE || !e.sx.explicit:
		e.b.Write(bo.AppendUint32(nil, length))
	case longVR(vr):
		e.b.WriteString(vr + "\x00\x00")
		e.b.Write(bo.AppendUint32(nil, length))
	default:
		e.b.WriteString(vr)
		e.b.Write(bo.AppendUint16(nil, uint16(length)))
	}
	e.b.Write(v)
	return e
}

func (e *enc) str(t tag.Tag, vr, s string) *enc {
	if len(s)%2 == 1 {
		s += " "
		if vr == "UI" {
			s = s[:len(s)-1] + "\x00"
		}
	}
	return e.el(t, vr, uint32(len(s)), []byte(s))
}

func (e *enc) ids() *enc {
	return e.str(tag.SOPClassUID, "UI", uid.CTImageStorage).
		str(tag.SOPInstanceUID, "UI", "1.2.3.4").
		str(tag.PatientName, "PN", "Doe^Jane").
		str(tag.StudyInstanceUID, "UI", "1.2.3").
		str(tag.SeriesInstanceUID, "UI", "1.2.3.5")
}

var (
	explicitLE = uid.TransferSyntax{UID: uid.ExplicitVRLittleEndian, ExplicitVR: true}
	implicitLE = uid.TransferSyntax{UID: uid.ImplicitVRLittleEndian}
	explicitBE = uid.TransferSyntax{UID: uid.ExplicitVRBigEndian, ExplicitVR: true, BigEndian: true}
)

func TestScanStructures(t *testing.T) {
	t.Run("undefined length sequences and UN sequence", func(t *testing.T) {
		e := &enc{sx: syntax{explicit: true}}
		e.str(tag.SOPClassUID, "UI", uid.CTImageStorage).str(tag.SOPInstanceUID, "UI", "1.2.3.4")
		// A private sequence of undefined length sent as UN: its items
		// are implicit VR little endian (PS3.5 §6.2.2).
		e.el(tag.New(0x0009, 0x0010), "LO", 4, []byte("ACME"))
		e.el(tag.New(0x0009, 0x1001), "UN", undefinedLength, nil)
		im := &enc{sx: syntax{}}
		im.el(tag.Item, "", undefinedLength, nil)
		im.str(tag.New(0x0009, 0x1002), "", "private")
		im.el(tag.ItemDelimitationItem, "", 0, nil)
		im.el(tag.SequenceDelimitationItem, "", 0, nil)
		e.b.Write(im.b.Bytes())
		// A public sequence of undefined length holding a defined one.
		e.el(tag.ReferencedStudySequence, "SQ", undefinedLength, nil)
		e.el(tag.Item, "", undefinedLength, nil)
		e.str(tag.ReferencedSOPClassUID, "UI", "1.2")
		e.el(tag.ReferencedSOPInstanceUID, "UI", 6, []byte("9.8.7\x00"))
		e.el(tag.ItemDelimitationItem, "", 0, nil)
		e.el(tag.SequenceDelimitationItem, "", 0, nil)
		e.str(tag.StudyInstanceUID, "UI", "1.2.3").str(tag.SeriesInstanceUID, "UI", "1.2.3.5")
		e.str(tag.Modality, "CS", "CT")
		// Encapsulated pixel data: offset table and two fragments.
		e.el(tag.PixelData, "OB", undefinedLength, nil)
		e.el(tag.Item, "", 4, []byte{0, 0, 0, 0})
		e.el(tag.Item, "", 6, []byte("frame1"))
		e.el(tag.Item, "", 2, []byte("f2"))
		e.el(tag.SequenceDelimitationItem, "", 0, nil)

		id, h, err := scanAll(t, e.b.Bytes(), uid.TransferSyntax{ExplicitVR: true, Encapsulated: true}, Limits{})
		if err != nil || h.Err != nil {
			t.Fatalf("Identify: %v; header: %v", err, h.Err)
		}
		if id.SeriesInstanceUID != "1.2.3.5" || id.SOPInstanceUID != "1.2.3.4" {
			t.Errorf("identity %+v", id)
		}
		if got := h.Dataset.First(tag.Modality); got != "CT" {
			t.Errorf("Modality %q", got)
		}
		priv := h.Dataset.Items(tag.New(0x0009, 0x1001))
		if len(priv) != 1 || len(priv[0].Elements) != 1 || string(priv[0].Elements[0].Binary.Data) != "private " {
			t.Errorf("UN sequence not recovered: %+v", priv)
		}
		ref := h.Dataset.Items(tag.ReferencedStudySequence)
		if len(ref) != 1 || ref[0].First(tag.ReferencedSOPInstanceUID) != "9.8.7" {
			t.Errorf("sequence: %+v", ref)
		}
		px := h.PixelData
		if px == nil || !px.Encapsulated || len(px.Fragments) != 3 || px.Fragments[1].Length != 6 {
			t.Fatalf("pixel data %+v", px)
		}
		data := e.b.Bytes()
		if f := px.Fragments[1]; string(data[f.Offset:f.Offset+f.Length]) != "frame1" {
			t.Errorf("fragment offset %d points at %q", f.Offset, data[f.Offset:f.Offset+f.Length])
		}
		if el, ok := h.Dataset.Find(tag.PixelData); !ok || el.Binary == nil || el.Binary.Offset != px.Offset || el.VR != "OB" {
			t.Errorf("Pixel Data element %+v", el)
		}
	})

	t.Run("big endian values and bulk", func(t *testing.T) {
		e := &enc{sx: syntax{explicit: true, bigEndian: true}}
		e.ids()
		e.el(tag.Rows, "US", 2, []byte{0x01, 0x02})
		e.el(tag.New(0x0028, 0x1201), "OW", 4, []byte{0x12, 0x34, 0x56, 0x78}) // small: inline, swapped
		big := bytes.Repeat([]byte{7}, 5000)
		e.el(tag.PixelData, "OW", uint32(len(big)), big)
		_, h, err := scanAll(t, e.b.Bytes(), explicitBE, Limits{})
		if err != nil || h.Err != nil {
			t.Fatalf("%v / %v", err, h.Err)
		}
		if got := h.Dataset.First(tag.Rows); got != "258" {
			t.Errorf("Rows = %q, want 258", got)
		}
		lut, _ := h.Dataset.Find(tag.New(0x0028, 0x1201))
		if lut == nil || lut.VR != "OW" || !bytes.Equal(lut.Binary.Data, []byte{0x34, 0x12, 0x78, 0x56}) {
			t.Errorf("inline OW = %+v", lut)
		}
		px, _ := h.Dataset.Find(tag.PixelData)
		if px == nil || px.Binary.Data != nil || px.Binary.Length != 5000 || px.Binary.Offset != int64(e.b.Len()-5000) {
			t.Errorf("pixel data = %+v", px.Binary)
		}
	})

	t.Run("implicit VR private and long values", func(t *testing.T) {
		e := &enc{sx: syntax{}}
		e.ids()
		e.str(tag.New(0x0011, 0x0010), "", "ACME 1.0")
		e.str(tag.New(0x0011, 0x1010), "", "opaque")
		_, h, err := scanAll(t, e.b.Bytes(), implicitLE, Limits{})
		if err != nil || h.Err != nil {
			t.Fatalf("%v / %v", err, h.Err)
		}
		if got := h.Dataset.First(tag.New(0x0011, 0x0010)); got != "ACME 1.0" {
			t.Errorf("private creator %q", got)
		}
		if el, _ := h.Dataset.Find(tag.New(0x0011, 0x1010)); el == nil || el.VR != "UN" || string(el.Binary.Data) != "opaque" {
			t.Errorf("private element %+v", el)
		}
		if got := h.Dataset.First(tag.PatientName); got != "Doe^Jane" {
			t.Errorf("PatientName %q", got)
		}
	})

	t.Run("implicit data set labelled explicit", func(t *testing.T) {
		e := &enc{sx: syntax{}}
		e.ids()
		id, h, err := scanAll(t, e.b.Bytes(), explicitLE, Limits{})
		if err != nil || h.Err != nil || id.StudyInstanceUID != "1.2.3" {
			t.Fatalf("%+v %v / %v", id, err, h.Err)
		}
	})

	t.Run("identity after an out-of-order element", func(t *testing.T) {
		e := &enc{sx: syntax{explicit: true}}
		e.str(tag.SOPClassUID, "UI", uid.CTImageStorage).str(tag.SOPInstanceUID, "UI", "1.2.3.4")
		e.str(tag.StudyInstanceUID, "UI", "1.2.3").str(tag.Modality, "CS", "MR")
		e.str(tag.SeriesInstanceUID, "UI", "1.2.3.5")
		id, _, err := scanAll(t, e.b.Bytes(), explicitLE, Limits{})
		if err != nil || id.SeriesInstanceUID != "1.2.3.5" {
			t.Fatalf("%+v %v", id, err)
		}
	})

	t.Run("header limit omits an element", func(t *testing.T) {
		e := &enc{sx: syntax{explicit: true}}
		e.ids()
		e.str(tag.StudyDescription, "LO", "kept")
		e.str(tag.New(0x0040, 0xA160), "UT", strings.Repeat("x", 4000))
		e.str(tag.New(0x0040, 0xA161), "LT", "after")
		_, h, err := scanAll(t, e.b.Bytes(), explicitLE, Limits{Header: 1024})
		if err != nil || h.Err != nil {
			t.Fatalf("%v / %v", err, h.Err)
		}
		if len(h.Omitted) != 1 || h.Omitted[0] != tag.New(0x0040, 0xA160) {
			t.Errorf("Omitted = %v", h.Omitted)
		}
		if h.Dataset.First(tag.StudyDescription) != "kept" || h.Dataset.First(tag.New(0x0040, 0xA161)) != "after" {
			t.Errorf("elements around the omitted one lost: %+v", h.Dataset.Elements)
		}
	})
}

func TestScanMalformed(t *testing.T) {
	tests := []struct {
		name       string
		build      func(e *enc)
		identified bool // the identity is complete despite the damage
		truncated  bool // the data set ends inside an element
	}{
		{"element overruns item", func(e *enc) {
			e.ids()
			e.el(tag.ContentSequence, "SQ", undefinedLength, nil)
			e.el(tag.Item, "", 10, nil)
			e.el(tag.ReferencedSOPClassUID, "UI", 20, []byte("1.2.3.4.5.6.7.8.9.10"))
		}, true, false},
		{"truncated value", func(e *enc) {
			e.ids()
			e.el(tag.ImageComments, "LT", 40, []byte("short"))
		}, true, true},
		{"item outside sequence", func(e *enc) {
			e.ids()
			e.el(tag.Item, "", 0, nil)
		}, true, false},
		{"trailing bytes", func(e *enc) {
			e.ids()
			e.b.Write([]byte{1, 2})
		}, true, true},
		{"broken before the study UID", func(e *enc) {
			e.str(tag.SOPClassUID, "UI", uid.CTImageStorage).str(tag.SOPInstanceUID, "UI", "1.2.3.4")
			e.el(tag.PatientName, "PN", 60000, []byte("x"))
		}, false, false},
		{"not DICOM at all", func(e *enc) {
			e.b.WriteString("GET / HTTP/1.1\r\nHost: pacs\r\n\r\n")
		}, false, false},
		{"nesting too deep", func(e *enc) {
			e.ids()
			for i := 0; i < 40; i++ {
				e.el(tag.ContentSequence, "SQ", undefinedLength, nil)
				e.el(tag.Item, "", undefinedLength, nil)
			}
		}, true, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			e := &enc{sx: syntax{explicit: true}}
			tt.build(e)
			id, h, err := scanAll(t, e.b.Bytes(), explicitLE, Limits{})
			if !tt.identified {
				if err == nil && id.StudyInstanceUID != "" && id.SeriesInstanceUID != "" {
					t.Fatalf("identified %+v", id)
				}
				return
			}
			if err != nil {
				t.Fatalf("Identify: %v", err)
			}
			if !errors.Is(h.Err, ErrMalformed) {
				t.Fatalf("header error %v, want ErrMalformed", h.Err)
			}
			if errors.Is(h.Err, ErrTruncated) != tt.truncated {
				t.Errorf("header error %v: truncated %v, want %v", h.Err, !tt.truncated, tt.truncated)
			}
			if h.Dataset.First(tag.PatientName) != "Doe^Jane" {
				t.Errorf("elements before the damage lost: %+v", h.Dataset.Elements)
			}
		})
	}
}

func TestIdentifyLimit(t *testing.T) {
	e := &enc{sx: syntax{explicit: true}}
	e.str(tag.SOPClassUID, "UI", uid.CTImageStorage)
	e.el(tag.New(0x0009, 0x1001), "OB", 1<<20, make([]byte, 1<<20))
	e.str(tag.StudyInstanceUID, "UI", "1.2.3").str(tag.SeriesInstanceUID, "UI", "1.2.3.5")
	s := NewScanner(bytes.NewReader(e.b.Bytes()), explicitLE, Limits{Identify: 256 << 10})
	if _, err := s.Identify(); !errors.Is(err, ErrTooLarge) {
		t.Fatalf("Identify = %v, want ErrTooLarge", err)
	}
	if len(s.Prefix()) > 256<<10 {
		t.Errorf("held %d bytes", len(s.Prefix()))
	}
}

func TestScannerClose(t *testing.T) {
	e := &enc{sx: syntax{explicit: true}}
	e.ids()
	big := make([]byte, 1<<20)
	e.el(tag.PixelData, "OB", uint32(len(big)), big)
	s := NewScanner(bytes.NewReader(e.b.Bytes()), explicitLE, Limits{})
	if _, err := s.Identify(); err != nil {
		t.Fatal(err)
	}
	buf := make([]byte, 1000)
	if _, err := s.Rest().Read(buf); err != nil {
		t.Fatal(err)
	}
	s.Close() // the caller gives up: Header must not hang
	if h := s.Header(); h.Err == nil {
		t.Error("no error for an abandoned scan")
	}
}

func FuzzScanner(f *testing.F) {
	e := &enc{sx: syntax{explicit: true}}
	e.ids()
	e.el(tag.ReferencedStudySequence, "SQ", undefinedLength, nil)
	e.el(tag.Item, "", undefinedLength, nil)
	e.str(tag.ReferencedSOPClassUID, "UI", "1.2")
	e.el(tag.ItemDelimitationItem, "", 0, nil)
	e.el(tag.SequenceDelimitationItem, "", 0, nil)
	e.el(tag.PixelData, "OB", undefinedLength, nil)
	e.el(tag.Item, "", 0, nil)
	e.el(tag.Item, "", 2, []byte("ab"))
	e.el(tag.SequenceDelimitationItem, "", 0, nil)
	f.Add(e.b.Bytes(), uint8(0))
	im := &enc{sx: syntax{}}
	im.ids()
	f.Add(im.b.Bytes(), uint8(1))
	be := &enc{sx: syntax{explicit: true, bigEndian: true}}
	be.ids()
	f.Add(be.b.Bytes(), uint8(2))
	for _, seed := range sampleSeeds(f) {
		f.Add(seed, uint8(0))
		f.Add(seed, uint8(1))
	}
	syntaxes := []uid.TransferSyntax{explicitLE, implicitLE, explicitBE,
		{UID: uid.DeflatedExplicitVRLittleEndian, ExplicitVR: true, Deflated: true}}
	f.Fuzz(func(t *testing.T, data []byte, which uint8) {
		ts := syntaxes[int(which)%len(syntaxes)]
		lim := Limits{Identify: 64 << 10, Header: 64 << 10}
		s := NewScanner(bytes.NewReader(data), ts, lim)
		_, err := s.Identify()
		if err != nil {
			s.Close()
			s.Header()
			return
		}
		var got bytes.Buffer
		got.Write(s.Prefix())
		if _, err := got.ReadFrom(s.Rest()); err != nil {
			t.Fatal(err)
		}
		if !bytes.Equal(got.Bytes(), data) {
			t.Fatal("bytes changed in passing")
		}
		h := s.Header()
		if h.Err == nil && !ts.Deflated && h.Length != int64(len(data)) {
			t.Fatalf("walked %d of %d bytes without error", h.Length, len(data))
		}
	})
}

// TestScanUN checks that standard elements sent as UN in explicit VR are
// read with their dictionary VR, as little endian in every syntax (PS3.5
// §6.2.2), while the bytes pass on unchanged.
func TestScanUN(t *testing.T) {
	for _, ts := range []uid.TransferSyntax{explicitLE, explicitBE} {
		t.Run(uid.Name(ts.UID), func(t *testing.T) {
			e := &enc{sx: syntax{explicit: true, bigEndian: ts.BigEndian}}
			un := func(tg tag.Tag, v string) { e.el(tg, "UN", uint32(len(v)), []byte(v)) }
			un(tag.SOPClassUID, uid.RTDoseStorage+"\x00")
			un(tag.SOPInstanceUID, "1.2.3.4\x00")
			un(tag.StudyDate, "20030805")
			un(tag.PatientName, "Doe^Jane")
			// A sequence of defined length sent as UN: implicit VR
			// little endian items.
			item := &enc{sx: syntax{}}
			item.str(tag.ReferencedSOPInstanceUID, "", "9.8.7")
			seq := &enc{sx: syntax{}}
			seq.el(tag.Item, "", uint32(item.b.Len()), item.b.Bytes())
			e.el(tag.ReferencedRTPlanSequence, "UN", uint32(seq.b.Len()), seq.b.Bytes())
			un(tag.StudyInstanceUID, "1.2.3\x00")
			un(tag.SeriesInstanceUID, "1.2.3.5\x00")
			un(tag.FrameIncrementPointer, "\x04\x30\x0c\x00") // AT, little endian
			un(tag.Rows, "\x0a\x00")                          // US, little endian
			un(tag.New(0x0009, 0x0010), "ACME")               // private creator: LO
			un(tag.New(0x0009, 0x1001), "opaque")             // private: stays UN
			un(tag.ImageComments, strings.Repeat("x", 70000)) // LT, too long for its header
			// A sequence sent as UN with its items in explicit VR, not
			// the implicit VR the standard requires: kept as UN.
			bad := &enc{sx: syntax{explicit: true}}
			bad.el(tag.Item, "", undefinedLength, nil)
			bad.str(tag.ReferencedSOPInstanceUID, "UI", "9.8.7")
			bad.el(tag.ItemDelimitationItem, "", 0, nil)
			e.el(tag.ReferencedImageSequence, "UN", uint32(bad.b.Len()), bad.b.Bytes())
			un(tag.New(0x0029, 0x0010), "AFTER")
			id, h, err := scanAll(t, e.b.Bytes(), ts, Limits{})
			if err != nil || h.Err != nil {
				t.Fatalf("%v / %v", err, h.Err)
			}
			if want := (Identity{uid.RTDoseStorage, "1.2.3.4", "1.2.3", "1.2.3.5"}); id != want {
				t.Errorf("identity %+v, want %+v", id, want)
			}
			ds := h.Dataset
			for _, c := range []struct {
				tag   tag.Tag
				vr, v string
			}{
				{tag.SOPClassUID, "UI", uid.RTDoseStorage},
				{tag.SOPInstanceUID, "UI", "1.2.3.4"},
				{tag.StudyDate, "DA", "20030805"},
				{tag.PatientName, "PN", "Doe^Jane"},
				{tag.StudyInstanceUID, "UI", "1.2.3"},
				{tag.FrameIncrementPointer, "AT", "3004000C"},
				{tag.Rows, "US", "10"},
				{tag.New(0x0009, 0x0010), "LO", "ACME"},
				{tag.New(0x0029, 0x0010), "LO", "AFTER"},
			} {
				el, ok := ds.Find(c.tag)
				if !ok || el.VR != c.vr || ds.String(c.tag) != c.v {
					t.Errorf("%v: %+v, want %s %q", c.tag, el, c.vr, c.v)
				}
			}
			if items := ds.Items(tag.ReferencedRTPlanSequence); len(items) != 1 || items[0].First(tag.ReferencedSOPInstanceUID) != "9.8.7" {
				t.Errorf("sequence sent as UN: %+v", items)
			}
			for _, tg := range []tag.Tag{tag.New(0x0009, 0x1001), tag.ImageComments, tag.ReferencedImageSequence} {
				if el, ok := ds.Find(tg); !ok || el.VR != "UN" || el.Binary == nil {
					t.Errorf("%v: %+v, want UN", tg, el)
				}
			}
		})
	}
}
