package dicom

import (
	"bytes"
	"reflect"
	"strings"
	"testing"
	"unicode/utf8"

	"github.com/pacsd/pacsd/dicom/tag"
)

// Values of the character set samples of PS3.5 Annex H (Japanese) and
// Annex I (Korean), as pydicom's charset_files hold them.
const (
	// ISO 2022 IR 87 after the default repertoire (chrH31).
	jisName = "Yamada^Tarou=\x1b$B;3ED\x1b(B^\x1b$BB@O:\x1b(B=\x1b$B$d$^$@\x1b(B^\x1b$B$?$m$&\x1b(B"
	// ISO 2022 IR 13 katakana, then JIS X 0208 (chrH32).
	katakanaName = "\xd4\xcf\xc0\xde^\xc0\xdb\xb3=\x1b$B;3ED\x1b(J^\x1b$BB@O:\x1b(J=\x1b$B$d$^$@\x1b(J^\x1b$B$?$m$&\x1b(J"
	// ISO 2022 IR 149, designated again after every delimiter (chrI2).
	koreanName = "Hong^Gildong=\x1b$)C\xfb\xf3^\x1b$)C\xd1\xce\xd4\xd7=\x1b$)C\xc8\xab^\x1b$)C\xb1\xe6\xb5\xbf"
)

var (
	japanese87   = []string{"", "ISO 2022 IR 87"}
	japanese1387 = []string{"ISO 2022 IR 13", "ISO 2022 IR 87"}
	korean149    = []string{"", "ISO 2022 IR 149"}
	latinGreek   = []string{"ISO 2022 IR 100", "ISO 2022 IR 126"}
)

// TestTextDecoder decodes values byte for byte under each kind of
// Specific Character Set: without code extensions, and with ISO 2022
// escape sequences, whose designations return to those of value 1 at each
// delimiter (PS3.5 §6.1.2.5.3).
func TestTextDecoder(t *testing.T) {
	for _, tt := range []struct {
		name string
		scs  []string
		vr   string
		in   string
		want string
	}{
		// Without code extensions.
		{"ASCII in any set", japanese1387, "LO", "Doe^Jane", "Doe^Jane"},
		{"empty is the default repertoire", nil, "LO", "caf\xe9", "café"},
		{"Latin-1", []string{"ISO_IR 100"}, "PN", "Buc^J\xe9r\xf4me", "Buc^Jérôme"},
		{"Latin-1 escape left as text", []string{"ISO_IR 100"}, "LO", "a\x1b-Ab", "a\x1b-Ab"},
		{"Greek", []string{"ISO_IR 126"}, "PN", "\xc4\xe9\xef\xed\xf5\xf3\xe9\xef\xf2", "Διονυσιος"},
		{"Thai", []string{"ISO_IR 166"}, "LO", "\xa1", "ก"},
		{"Latin-9", []string{"ISO_IR 203"}, "LO", "\xa4", "€"},
		{"Shift_JIS", []string{"ISO_IR 13"}, "PN", "\xd4\xcf\xc0\xde", "ﾔﾏﾀﾞ"},
		{"UTF-8", []string{"ISO_IR 192"}, "PN", "Wang^XiaoDong=\xe7\x8e\x8b^\xe5\xb0\x8f\xe6\x9d\xb1=", "Wang^XiaoDong=王^小東="},
		{"invalid UTF-8", []string{"ISO_IR 192"}, "LO", "a\xffb", "a\uFFFDb"},
		{"GB 18030", []string{"GB18030"}, "PN", "Wang^XiaoDong=\xcd\xf5^\xd0\xa1\xb6\xab=", "Wang^XiaoDong=王^小东="},
		{"GBK byte 0x5C is half a character", []string{"GBK"}, "LO", "\x81\x5c\\\xb0\x5c", `乗\癨`},
		{"UTF-8 excludes code extensions", []string{"ISO_IR 192", "ISO 2022 IR 87"}, "LO", "\xe5\xb1\xb1", "山"},

		// ISO 2022: Japanese.
		{"PN of three groups", japanese87, "PN", jisName, "Yamada^Tarou=山田^太郎=やまだ^たろう"},
		{"katakana in G1 from value 1", japanese1387, "PN", katakanaName, "ﾔﾏﾀﾞ^ﾀﾛｳ=山田^太郎=やまだ^たろう"},
		{"katakana kept across JIS X 0208", japanese1387, "LO", "\x1b$B;3\x1b(J\xd4", "山ﾔ"},
		{"escape at the start", japanese87, "LO", "\x1b$B;3ED\x1b(B", "山田"},
		{"escape mid-value", japanese87, "LO", "Dr \x1b$B;3ED\x1b(B MD", "Dr 山田 MD"},
		{"values split by backslash", japanese87, "LO", "\x1b$B;3ED\x1b(B\\\x1b$BB@O:\x1b(B", `山田\太郎`},
		{"0x5C in JIS X 0208 is half a character", japanese87, "LO", "\x1b$B\\!\x1b(B", "棔"},
		{"0x5E in JIS X 0208 is half a character", japanese87, "PN", "\x1b$B!^\x1b(B", "±"},
		{"delimiter without switching back", japanese87, "PN", "\x1b$B;3ED^\x1b$BB@O:", "山田^太郎"},
		{"JIS X 0212", []string{"", "ISO 2022 IR 159"}, "LO", "\x1b$(D0!\x1b(B", "丂"},
		{"no G1 set named", japanese87, "LO", "caf\xe9", "café"},
		{"unknown escape sequence", japanese87, "LO", "a\x1b$)Zb", "a\uFFFDb"},
		{"ESC beginning no sequence", japanese87, "LO", "a\x1b\x01b\x1b", "a\uFFFD\x01b\uFFFD"},

		// ISO 2022: Korean and Chinese, double-byte G1 sets.
		{"Korean PN", korean149, "PN", koreanName, "Hong^Gildong=洪^吉洞=홍^길동"},
		{"Korean after a redundant ESC ( B", korean149, "LO", "\x1b$)C\xb1\xe8\xc8\xf1\xc1\xdf\x1b(B", "김희중"},
		{"Korean without escape sequences", korean149, "LO", "\xb1\xe8\xc8\xf1\xc1\xdf", "김희중"},
		{"GB 2312", []string{"", "ISO 2022 IR 58"}, "PN", "Zhang^XiaoDong=\x1b$)A\xd5\xc5^\x1b$)A\xd0\xa1\xb6\xab=", "Zhang^XiaoDong=张^小东="},

		// G1 designations: they last across G0 designations, and return
		// to value 1's at each delimiter of the VR.
		{"G1 kept across a G0 designation", korean149, "LO", "\x1b$)C\xc8\xab\x1b(B \xb1\xe6", "홍 길"},
		{"G1 reset at ^ in PN", latinGreek, "PN", "\x1b-F\xc4\xe9^\xc4\xe9", "Δι^Äé"},
		{"G1 reset at = in PN", latinGreek, "PN", "\x1b-F\xc4=\xc4", "Δ=Ä"},
		{"G1 reset at backslash", latinGreek, "LO", "\x1b-F\xc4\\\xc4", `Δ\Ä`},
		{"^ is no delimiter in LO", latinGreek, "LO", "\x1b-F\xc4^\xc4", "Δ^Δ"},
		{"backslash is text in LT", latinGreek, "LT", "\x1b-F\xc4\\\xc4", `Δ\Δ`},
		{"G1 reset at CR LF", latinGreek, "LT", "\x1b-F\xc4\r\n\xc4", "Δ\r\nÄ"},
		{"G1 reset at TAB", latinGreek, "ST", "\x1b-F\xc4\t\xc4", "Δ\tÄ"},
		{"G1 of value 1 after a redundant designation", []string{"ISO 2022 IR 100"}, "LO", "\x1b-A\xe9", "é"},
		{"G1 named later stands in after a delimiter", korean149, "PN", "\x1b$)C\xfb\xf3^\xd1\xce\xd4\xd7", "洪^吉洞"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			d := newTextDecoder(tt.scs)
			if d == nil {
				t.Fatalf("no decoder for %q", tt.scs)
			}
			if got := d.decode(tt.vr, tt.in); got != tt.want {
				t.Errorf("decode(%s, %q) = %q, want %q", tt.vr, tt.in, got, tt.want)
			}
		})
	}
}

// TestTextDecoderUnknown checks that text under no Specific Character Set,
// or under one naming no character set known here, is left as it is, as
// suyashkumar/dicom left it.
func TestTextDecoderUnknown(t *testing.T) {
	var none *textDecoder
	if got := none.decode("PN", "J\xe9r\xf4me"); got != "J\xe9r\xf4me" {
		t.Errorf("without a character set: %q", got)
	}
	if d := newTextDecoder([]string{"ISO_IR 999"}); d != nil {
		t.Errorf("unknown character set: decoder %+v", d)
	}
}

// TestCharsetInDataset reads data sets whose Specific Character Set
// changes inside sequence items (PS3.5 §7.5.3): an item's own applies to
// it and to the items within it, and the data set's applies to every
// other item, also to one before Specific Character Set in tag order.
func TestCharsetInDataset(t *testing.T) {
	item := func(els ...func(*enc)) []byte {
		e := &enc{sx: syntax{explicit: true}}
		for _, el := range els {
			el(e)
		}
		return e.b.Bytes()
	}
	str := func(tg tag.Tag, vr, s string) func(*enc) { return func(e *enc) { e.str(tg, vr, s) } }
	seq := func(tg tag.Tag, items ...[]byte) func(*enc) {
		return func(e *enc) {
			e.el(tg, "SQ", undefinedLength, nil)
			for _, it := range items {
				e.el(tag.Item, "", uint32(len(it)), it)
			}
			e.el(tag.SequenceDelimitationItem, "", 0, nil)
		}
	}
	directoryRecord := tag.New(0x0004, 0x1220)
	otherNames := tag.New(0x0010, 0x1001)
	data := item(
		seq(directoryRecord, item(str(tag.PatientName, "PN", "J\xe9r\xf4me"))),
		str(tag.SpecificCharacterSet, "CS", "ISO_IR 100"),
		str(tag.SOPInstanceUID, "UI", "1.2.3"),
		str(tag.PatientName, "PN", "Buc^J\xe9r\xf4me"),
		str(otherNames, "PN", "\xc4neas\\R\xfcdiger"),
		seq(tag.New(0x0032, 0x1064),
			item(
				str(tag.SpecificCharacterSet, "CS", `ISO 2022 IR 13\ISO 2022 IR 87`),
				str(tag.StudyDescription, "LO", "\x1b$B\\!\x1b(J"),
				seq(tag.ReferencedStudySequence, item(str(tag.StudyDescription, "LO", "\x1b$B6;It\x1b(J"))),
				str(tag.PatientName, "PN", katakanaName),
				str(otherNames, "PN", `\`+jisName+`\`+"\x1b$B;3\x1b(J"),
			),
			item(str(tag.PatientName, "PN", "Ren\xe9e")),
		),
	)
	d, err := Parse(data, explicitLE)
	if err != nil {
		t.Fatal(err)
	}
	scheduled := d.Items(tag.New(0x0032, 0x1064))
	if len(scheduled) != 2 {
		t.Fatalf("%d items, want 2", len(scheduled))
	}
	for _, c := range []struct {
		name string
		got  []string
		want []string
	}{
		{"item before the data set's character set", d.Items(directoryRecord)[0].Strings(tag.PatientName), []string{"Jérôme"}},
		{"Specific Character Set", d.Strings(tag.SpecificCharacterSet), []string{"ISO_IR 100"}},
		{"Latin-1", d.Strings(tag.PatientName), []string{"Buc^Jérôme"}},
		{"Latin-1 values", d.Strings(otherNames), []string{"Äneas", "Rüdiger"}},
		{"item's Specific Character Set", scheduled[0].Strings(tag.SpecificCharacterSet), []string{"ISO 2022 IR 13", "ISO 2022 IR 87"}},
		{"item's own character set", scheduled[0].Strings(tag.PatientName), []string{"ﾔﾏﾀﾞ^ﾀﾛｳ=山田^太郎=やまだ^たろう"}},
		{"item's own values", scheduled[0].Strings(otherNames), []string{"", "Yamada^Tarou=山田^太郎=やまだ^たろう", "山"}},
		{"0x5C in JIS X 0208 splits no value", scheduled[0].Strings(tag.StudyDescription), []string{"棔"}},
		{"inherited by the item within", scheduled[0].Items(tag.ReferencedStudySequence)[0].Strings(tag.StudyDescription), []string{"胸部"}},
		{"next item, the data set's", scheduled[1].Strings(tag.PatientName), []string{"Renée"}},
	} {
		if !reflect.DeepEqual(c.got, c.want) {
			t.Errorf("%s: %q, want %q", c.name, c.got, c.want)
		}
	}
}

// TestCharsetGBKValues checks that a GBK character whose second byte is
// 0x5C does not split a value.
func TestCharsetGBKValues(t *testing.T) {
	e := &enc{sx: syntax{explicit: true}}
	e.str(tag.SpecificCharacterSet, "CS", "GBK")
	e.str(tag.PatientName, "PN", "\x81\x5c^\xb0\x5c\\\xd0\xd6")
	d, err := Parse(e.b.Bytes(), explicitLE)
	if err != nil {
		t.Fatal(err)
	}
	if got, want := d.Strings(tag.PatientName), []string{"乗^癨", "兄"}; !reflect.DeepEqual(got, want) {
		t.Errorf("values %q, want %q", got, want)
	}
}

// TestEncodeAfterCodeExtensions checks that text decoded from ISO 2022
// code extensions is answered in UTF-8, which Encode writes without
// escape sequences, and reads back the same.
func TestEncodeAfterCodeExtensions(t *testing.T) {
	e := &enc{sx: syntax{explicit: true}}
	e.str(tag.SpecificCharacterSet, "CS", `ISO 2022 IR 13\ISO 2022 IR 87`)
	e.str(tag.PatientName, "PN", katakanaName)
	d, err := Parse(e.b.Bytes(), explicitLE)
	if err != nil {
		t.Fatal(err)
	}
	cs := ResponseCharset(d.Strings(tag.SpecificCharacterSet), d)
	if cs != CharsetUTF8 {
		t.Fatalf("ResponseCharset = %q, want %q", cs, CharsetUTF8)
	}
	var b bytes.Buffer
	if err := d.Encode(&b, explicitLE, EncodeOptions{CharacterSet: cs}); err != nil {
		t.Fatal(err)
	}
	if bytes.IndexByte(b.Bytes(), esc) >= 0 {
		t.Errorf("Encode wrote an escape sequence: %q", b.Bytes())
	}
	back, err := Parse(b.Bytes(), explicitLE)
	if err != nil {
		t.Fatal(err)
	}
	if got, want := back.String(tag.PatientName), d.String(tag.PatientName); got != want {
		t.Errorf("read back %q, want %q", got, want)
	}
}

// FuzzTextDecoder checks that every decoder of code extensions returns
// valid UTF-8 without escape sequences, whatever the bytes.
func FuzzTextDecoder(f *testing.F) {
	scs := [][]string{japanese87, japanese1387, korean149, latinGreek, {"", "ISO 2022 IR 58"}, {"", "ISO 2022 IR 159"}}
	for _, s := range []string{jisName, katakanaName, koreanName, "\x1b$B!^", "a\x1b$)Zb\x1b", "\x1b-F\xc4\r\n\xc4"} {
		for i := range scs {
			f.Add(uint8(i), s)
		}
	}
	vrs := []string{"PN", "LO", "LT"}
	f.Fuzz(func(t *testing.T, which uint8, s string) {
		d := newTextDecoder(scs[int(which)%len(scs)])
		got := d.decode(vrs[int(which)%len(vrs)], s)
		if !utf8.ValidString(got) {
			t.Errorf("decode(%q) = %q, not UTF-8", s, got)
		}
		if strings.IndexByte(got, esc) >= 0 {
			t.Errorf("decode(%q) = %q, with an ESC", s, got)
		}
	})
}
