package tag

import "testing"

func TestLookup(t *testing.T) {
	tests := []struct {
		tag     Tag
		keyword string
		vr      string
	}{
		{PatientName, "PatientName", "PN"},
		{New(0x0010, 0x0020), "PatientID", "LO"},
		{PixelData, "PixelData", "OB or OW"},
		{New(0x6002, 0x3000), "OverlayData", "OB or OW"}, // repeating group
		{New(0x0009, 0x0000), "GenericGroupLength", "UL"},
		{SequenceDelimitationItem, "SequenceDelimitationItem", "NONE"},
	}
	for _, tt := range tests {
		t.Run(tt.keyword, func(t *testing.T) {
			info, ok := Lookup(tt.tag)
			if !ok || info.Keyword != tt.keyword || info.VR != tt.vr || info.Tag != tt.tag {
				t.Fatalf("Lookup(%v) = %+v, %v; want keyword %s VR %s", tt.tag, info, ok, tt.keyword, tt.vr)
			}
		})
	}
	if _, ok := Lookup(New(0x0009, 0x1001)); ok {
		t.Error("private tag found in the dictionary")
	}
}

func TestParse(t *testing.T) {
	for _, s := range []string{"PatientName", "00100010", "(0010,0010)", "0010,0010", "00100010"} {
		got, err := Parse(s)
		if err != nil || got != PatientName {
			t.Errorf("Parse(%q) = %v, %v", s, got, err)
		}
	}
	for _, s := range []string{"", "patientname", "0010001", "(0010,001G)", "Nope"} {
		if _, err := Parse(s); err == nil {
			t.Errorf("Parse(%q) succeeded", s)
		}
	}
}

func TestString(t *testing.T) {
	if s := StudyInstanceUID.String(); s != "(0020,000D)" {
		t.Errorf("String = %s", s)
	}
	if s := StudyInstanceUID.Hex(); s != "0020000D" {
		t.Errorf("Hex = %s", s)
	}
	if !New(0x0029, 0x1010).IsPrivate() || PatientID.IsPrivate() {
		t.Error("IsPrivate wrong")
	}
}

func TestDictionarySorted(t *testing.T) {
	for i := 1; i < len(dictionary); i++ {
		if dictionary[i-1].Tag >= dictionary[i].Tag {
			t.Fatalf("dictionary not sorted at %d: %v >= %v", i, dictionary[i-1].Tag, dictionary[i].Tag)
		}
	}
}
