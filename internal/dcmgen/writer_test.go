package dcmgen

import (
	"bytes"
	"encoding/binary"
	"encoding/hex"
	"errors"
	"io"
	"regexp"
	"strings"
	"testing"
	"testing/iotest"
)

func TestUID(t *testing.T) {
	valid := regexp.MustCompile(`^2\.25\.[1-9][0-9]*$`)
	seen := map[string]bool{}
	for range 1000 {
		u := UID()
		if !valid.MatchString(u) || len(u) > 64 {
			t.Fatalf("UID() = %q, want 2.25.<decimal without leading zero>, at most 64 characters", u)
		}
		if seen[u] {
			t.Fatalf("UID() returned %q twice", u)
		}
		seen[u] = true
	}
}

// unhex decodes hex written with spaces and quoted ASCII, e.g.
// `10 00 "PN" 06 00`, so golden bytes stay readable.
func unhex(t *testing.T, s string) []byte {
	t.Helper()
	var out []byte
	for i, part := range strings.Split(s, `"`) {
		if i%2 == 1 {
			out = append(out, part...)
			continue
		}
		b, err := hex.DecodeString(strings.ReplaceAll(part, " ", ""))
		if err != nil {
			t.Fatalf("bad golden %q: %v", s, err)
		}
		out = append(out, b...)
	}
	return out
}

func TestAppendElement(t *testing.T) {
	latin1 := charset{"ISO_IR 100"}
	utf8 := charset{"ISO_IR 192"}
	tests := []struct {
		name     string
		e        Element
		cs       charset
		explicit string
		implicit string
	}{
		{"PN padded with a space", Element{0x00100010, "PN", "Doe^J"}, charset{},
			`10 00 10 00 "PN" 06 00 "Doe^J "`, `10 00 10 00 06 00 00 00 "Doe^J "`},
		{"UI padded with NUL", Element{0x00080016, "UI", "1.2.3"}, charset{},
			`08 00 16 00 "UI" 06 00 "1.2.3" 00`, `08 00 16 00 06 00 00 00 "1.2.3" 00`},
		{"empty value", Element{0x00080050, "SH", nil}, charset{},
			`08 00 50 00 "SH" 00 00`, `08 00 50 00 00 00 00 00`},
		{"multi-valued CS", Element{0x00080008, "CS", []string{"ORIGINAL", "PRIMARY"}}, charset{},
			`08 00 08 00 "CS" 10 00 "ORIGINAL\PRIMARY"`, `08 00 08 00 10 00 00 00 "ORIGINAL\PRIMARY"`},
		{"US", Element{0x00280010, "US", 512}, charset{},
			`28 00 10 00 "US" 02 00 00 02`, `28 00 10 00 02 00 00 00 00 02`},
		{"SS negative", Element{0x00281106, "SS", -2}, charset{},
			`28 00 06 11 "SS" 02 00 fe ff`, `28 00 06 11 02 00 00 00 fe ff`},
		{"UL", Element{0x00080000, "UL", uint32(0x01020304)}, charset{},
			`08 00 00 00 "UL" 04 00 04 03 02 01`, `08 00 00 00 04 00 00 00 04 03 02 01`},
		{"FD", Element{0x00189087, "FD", 1.0}, charset{},
			`18 00 87 90 "FD" 08 00 00 00 00 00 00 00 f0 3f`, `18 00 87 90 08 00 00 00 00 00 00 00 00 00 f0 3f`},
		{"AT", Element{0x00280009, "AT", Tag(0x00181063)}, charset{},
			`28 00 09 00 "AT" 04 00 18 00 63 10`, `28 00 09 00 04 00 00 00 18 00 63 10`},
		{"IS from int", Element{0x00200013, "IS", 7}, charset{},
			`20 00 13 00 "IS" 02 00 "7 "`, `20 00 13 00 02 00 00 00 "7 "`},
		{"DS from floats", Element{0x00280030, "DS", []float64{0.5, -1024}}, charset{},
			`28 00 30 00 "DS" 0a 00 "0.5\-1024 "`, `28 00 30 00 0a 00 00 00 "0.5\-1024 "`},
		{"OB odd, padded with zero, 32-bit length", Element{0x00091010, "OB", []byte{1, 2, 3}}, charset{},
			`09 00 10 10 "OB" 00 00 04 00 00 00 01 02 03 00`, `09 00 10 10 04 00 00 00 01 02 03 00`},
		{"OW from uint16s", Element{0x00283006, "OW", []uint16{1, 0xABCD}}, charset{},
			`28 00 06 30 "OW" 00 00 04 00 00 00 01 00 cd ab`, `28 00 06 30 04 00 00 00 01 00 cd ab`},
		{"UT has a 32-bit length", Element{0x00404001, "UT", "x"}, charset{},
			`40 00 01 40 "UT" 00 00 02 00 00 00 "x "`, `40 00 01 40 02 00 00 00 "x "`},
		{"PN in Latin-1", Element{0x00100010, "PN", "Müller"}, latin1,
			`10 00 10 00 "PN" 06 00 "M" fc "ller"`, `10 00 10 00 06 00 00 00 "M" fc "ller"`},
		{"PN in UTF-8", Element{0x00100010, "PN", "Mü"}, utf8,
			`10 00 10 00 "PN" 04 00 "M" c3 bc " "`, `10 00 10 00 04 00 00 00 "M" c3 bc " "`},
		{"raw bytes are not converted", Element{0x00100010, "PN", []byte("M\xfc")}, charset{},
			`10 00 10 00 "PN" 02 00 "M" fc`, `10 00 10 00 02 00 00 00 "M" fc`},
		{"sequence of one item", Element{0x00400275, "SQ", []Item{{{0x00400009, "SH", "A1"}}}}, charset{},
			`40 00 75 02 "SQ" 00 00 12 00 00 00  fe ff 00 e0 0a 00 00 00  40 00 09 00 "SH" 02 00 "A1"`,
			`40 00 75 02 12 00 00 00  fe ff 00 e0 0a 00 00 00  40 00 09 00 02 00 00 00 "A1"`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			for _, c := range []struct {
				s    Syntax
				want string
			}{{ExplicitVRLittleEndian, tt.explicit}, {ImplicitVRLittleEndian, tt.implicit}} {
				got, err := appendElement(nil, tt.e, c.s, tt.cs)
				if err != nil {
					t.Fatalf("%v: %v", c.s, err)
				}
				if want := unhex(t, c.want); !bytes.Equal(got, want) {
					t.Errorf("%v:\n got % x\nwant % x", c.s, got, want)
				}
			}
		})
	}
}

func TestAppendElementErrors(t *testing.T) {
	tests := []struct {
		name string
		e    Element
		cs   charset
	}{
		{"US out of range", Element{0x00280010, "US", 70000}, charset{}},
		{"US negative", Element{0x00280010, "US", -1}, charset{}},
		{"float for an integer VR", Element{0x00280010, "US", 1.5}, charset{}},
		{"IS from a float", Element{0x00200013, "IS", 1.5}, charset{}},
		{"non-ASCII without a character set", Element{0x00100010, "PN", "Müller"}, charset{}},
		{"outside Latin-1", Element{0x00100010, "PN", "Мюллер"}, charset{"ISO_IR 100"}},
		{"unsupported character set", Element{0x00100010, "PN", "山田"}, charset{`\ISO 2022 IR 87`}},
		{"non-ASCII in CS", Element{0x00080060, "CS", "É"}, charset{"ISO_IR 192"}},
		{"16-bit length overflow", Element{0x00081030, "LO", strings.Repeat("x", 0x10000)}, charset{}},
		{"sequence without items", Element{0x00400275, "SQ", "x"}, charset{}},
		{"items outside SQ", Element{0x00400275, "LO", []Item{{}}}, charset{}},
		{"bad VR", Element{0x00100010, "P", "x"}, charset{}},
		{"text for a binary VR", Element{0x00280010, "US", "512"}, charset{}},
		{"duplicate tag in an item", Element{0x00400275, "SQ", []Item{{{0x00400009, "SH", "A"}, {0x00400009, "SH", "B"}}}}, charset{}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if b, err := appendElement(nil, tt.e, ExplicitVRLittleEndian, tt.cs); err == nil {
				t.Errorf("appendElement = % x, want an error", b)
			}
		})
	}
}

// metaElement is one element of group 0002 as the test reads it back.
type metaElement struct {
	tag   Tag
	vr    string
	value string
}

// readMeta parses the preamble and File Meta Information independently of
// the encoder and checks the group length against the bytes that follow.
func readMeta(t *testing.T, b []byte) (els []metaElement, rest []byte) {
	t.Helper()
	if len(b) < 144 || !bytes.Equal(b[:128], make([]byte, 128)) || string(b[128:132]) != "DICM" {
		t.Fatalf("no preamble and DICM prefix: % x", b[:min(len(b), 140)])
	}
	b = b[132:]
	if got := b[:8]; !bytes.Equal(got, unhex(t, `02 00 00 00 "UL" 04 00`)) {
		t.Fatalf("group length header % x", got)
	}
	groupLen := binary.LittleEndian.Uint32(b[8:])
	b = b[12:]
	if int(groupLen) > len(b) {
		t.Fatalf("group length %d, only %d bytes follow", groupLen, len(b))
	}
	group, rest := b[:groupLen], b[groupLen:]
	for len(group) > 0 {
		tag := Tag(binary.LittleEndian.Uint16(group))<<16 | Tag(binary.LittleEndian.Uint16(group[2:]))
		vr := string(group[4:6])
		var n, hdr int
		if vr == "OB" {
			n, hdr = int(binary.LittleEndian.Uint32(group[8:])), 12
		} else {
			n, hdr = int(binary.LittleEndian.Uint16(group[6:])), 8
		}
		if tag>>16 != 2 || hdr+n > len(group) || n%2 != 0 {
			t.Fatalf("bad meta element %s %s length %d with %d bytes left", tag, vr, n, len(group))
		}
		els = append(els, metaElement{tag, vr, string(group[hdr : hdr+n])})
		group = group[hdr+n:]
	}
	if len(rest) >= 2 && binary.LittleEndian.Uint16(rest) == 2 {
		t.Fatalf("a group 0002 element follows the group length's end")
	}
	return els, rest
}

func TestNewWriterMeta(t *testing.T) {
	for _, s := range []Syntax{ExplicitVRLittleEndian, ImplicitVRLittleEndian} {
		t.Run(s.String(), func(t *testing.T) {
			var buf bytes.Buffer
			w, err := NewWriter(&buf, Meta{SOPClassUID: CTImageStorage, SOPInstanceUID: "1.2.3.4", Syntax: s})
			if err != nil {
				t.Fatal(err)
			}
			if w.Written() != int64(buf.Len()) {
				t.Errorf("Written() = %d, buffer holds %d", w.Written(), buf.Len())
			}
			els, rest := readMeta(t, buf.Bytes())
			pad := func(s, with string) string { return s + strings.Repeat(with, len(s)%2) }
			want := []metaElement{
				{0x00020001, "OB", "\x00\x01"},
				{0x00020002, "UI", pad(CTImageStorage, "\x00")},
				{0x00020003, "UI", "1.2.3.4\x00"},
				{0x00020010, "UI", pad(s.UID(), "\x00")},
				{0x00020012, "UI", pad(ImplementationClassUID, "\x00")},
				{0x00020013, "SH", pad(ImplementationVersionName, " ")},
			}
			if len(els) != len(want) {
				t.Fatalf("meta = %+v, want %+v", els, want)
			}
			for i := range want {
				if els[i] != want[i] {
					t.Errorf("meta element %d = %+v, want %+v", i, els[i], want[i])
				}
			}
			if len(rest) != 0 {
				t.Errorf("% x after the meta group", rest)
			}
		})
	}
	if _, err := NewWriter(io.Discard, Meta{}); err == nil {
		t.Error("NewWriter without UIDs succeeded")
	}
	if len(ImplementationVersionName) > 16 {
		t.Errorf("ImplementationVersionName %q is longer than an SH value may be", ImplementationVersionName)
	}
}

func TestWriterOrder(t *testing.T) {
	w, err := NewWriter(io.Discard, Meta{SOPClassUID: "1.2", SOPInstanceUID: "1.3"})
	if err != nil {
		t.Fatal(err)
	}
	if err := w.WriteElement(Element{0x00020010, "UI", "1.2"}); err == nil {
		t.Error("a group 0002 element was accepted in the dataset")
	}
	w, _ = NewWriter(io.Discard, Meta{SOPClassUID: "1.2", SOPInstanceUID: "1.3"})
	if err := w.WriteElement(Element{0x00100020, "LO", "ID"}); err != nil {
		t.Fatal(err)
	}
	err = w.WriteElement(Element{0x00100010, "PN", "Doe"})
	if err == nil {
		t.Fatal("an element out of tag order was accepted")
	}
	if err2 := w.WriteElement(Element{0x00200010, "SH", "1"}); err2 != err {
		t.Errorf("after an error WriteElement = %v, want the same error %v", err2, err)
	}
}

func TestWriterCharset(t *testing.T) {
	var buf bytes.Buffer
	w, _ := NewWriter(&buf, Meta{SOPClassUID: "1.2", SOPInstanceUID: "1.3"})
	if err := w.WriteElement(Element{0x00100010, "PN", "Müller"}); err == nil {
		t.Fatal("non-ASCII PN accepted before a Specific Character Set")
	}
	buf.Reset()
	w, _ = NewWriter(&buf, Meta{SOPClassUID: "1.2", SOPInstanceUID: "1.3"})
	if err := w.WriteElement(Element{0x00080005, "CS", "ISO_IR 100"}); err != nil {
		t.Fatal(err)
	}
	if err := w.WriteElement(Element{0x00100010, "PN", "Müller"}); err != nil {
		t.Fatal(err)
	}
	if !bytes.HasSuffix(buf.Bytes(), []byte("M\xfcller")) {
		t.Errorf("PN not in Latin-1: % x", buf.Bytes()[buf.Len()-8:])
	}
}

func TestWriteStream(t *testing.T) {
	var buf bytes.Buffer
	w, _ := NewWriter(&buf, Meta{SOPClassUID: "1.2", SOPInstanceUID: "1.3"})
	start := buf.Len()
	if err := w.WriteStream(tagPixelData, "OB", 3, strings.NewReader("abcdef")); err != nil {
		t.Fatal(err)
	}
	if got, want := buf.Bytes()[start:], unhex(t, `e0 7f 10 00 "OB" 00 00 04 00 00 00 "abc" 00`); !bytes.Equal(got, want) {
		t.Errorf("got % x, want % x", got, want)
	}
	if w.Written() != int64(buf.Len()) {
		t.Errorf("Written() = %d, buffer holds %d", w.Written(), buf.Len())
	}

	w, _ = NewWriter(io.Discard, Meta{SOPClassUID: "1.2", SOPInstanceUID: "1.3"})
	if err := w.WriteStream(tagPixelData, "OW", 10, strings.NewReader("short")); !errors.Is(err, io.ErrUnexpectedEOF) {
		t.Errorf("short reader: %v, want io.ErrUnexpectedEOF", err)
	}
	w, _ = NewWriter(io.Discard, Meta{SOPClassUID: "1.2", SOPInstanceUID: "1.3"})
	if err := w.WriteStream(0x00081030, "LO", 2, strings.NewReader("ab")); err == nil {
		t.Error("a VR with a 16-bit length was streamed")
	}
}

func TestPattern(t *testing.T) {
	for _, bits := range []int{8, 16} {
		const rows, cols, frames = 3, 5, 300
		in := Instance{Rows: rows, Columns: cols, BitsAllocated: bits, NumberOfFrames: frames}
		want := make([]byte, 0, in.PixelLength())
		for f := range frames {
			for r := range rows {
				for c := range cols {
					if bits == 8 {
						want = append(want, byte((r+c+8*f)%256))
					} else {
						want = binary.LittleEndian.AppendUint16(want, uint16((r+c+8*f)%4096))
					}
				}
			}
		}
		// TestReader reads with odd sizes too, crossing row boundaries.
		if err := iotest.TestReader(newPattern(rows, cols, bits, frames), want); err != nil {
			t.Errorf("%d bits: %v", bits, err)
		}
	}
}
