package tag

//go:generate go run ../internal/dictgen -tags ztags.go

import (
	"fmt"
	"sort"
	"strconv"
	"strings"
	"sync"
)

// Tag is a data element tag: the group number in the high 16 bits, the
// element number in the low 16 bits.
type Tag uint32

// New returns the tag (group,element).
func New(group, element uint16) Tag { return Tag(uint32(group)<<16 | uint32(element)) }

// Group returns the tag's group number.
func (t Tag) Group() uint16 { return uint16(t >> 16) }

// Element returns the tag's element number.
func (t Tag) Element() uint16 { return uint16(t) }

// IsPrivate reports whether t belongs to a private group (odd group number).
func (t Tag) IsPrivate() bool { return t.Group()%2 == 1 }

// String formats t as "(gggg,eeee)" in upper-case hexadecimal, as PS3.5 does.
func (t Tag) String() string { return fmt.Sprintf("(%04X,%04X)", t.Group(), t.Element()) }

// Hex formats t as the eight hexadecimal digits DICOM JSON and QIDO-RS use.
func (t Tag) Hex() string { return fmt.Sprintf("%08X", uint32(t)) }

// Info describes a public data element as PS3.6 registers it.
type Info struct {
	Tag     Tag
	VR      string // e.g. "PN", or "US or SS" where the VR depends on context
	VM      string
	Keyword string
	Name    string
	Retired bool
}

// Lookup returns the dictionary entry of t. Repeating groups (curves
// 50xx, overlays 60xx) are found through their first group.
func Lookup(t Tag) (Info, bool) {
	if i, ok := find(t); ok {
		return i, true
	}
	if g := t.Group(); g&0xFF00 == 0x5000 || g&0xFF00 == 0x6000 {
		if i, ok := find(New(g&0xFF00, t.Element())); ok {
			i.Tag = t
			return i, true
		}
	}
	switch t.Element() {
	case 0x0000:
		// Every group has a group length element (PS3.5 §7.2).
		return Info{Tag: t, VR: "UL", VM: "1", Keyword: "GenericGroupLength", Name: "Group Length"}, true
	}
	return Info{}, false
}

func find(t Tag) (Info, bool) {
	i := sort.Search(len(dictionary), func(i int) bool { return dictionary[i].Tag >= t })
	if i < len(dictionary) && dictionary[i].Tag == t {
		return dictionary[i], true
	}
	return Info{}, false
}

var byKeyword = sync.OnceValue(func() map[string]Tag {
	m := make(map[string]Tag, len(dictionary))
	for _, i := range dictionary {
		m[i.Keyword] = i.Tag
	}
	return m
})

// ByKeyword returns the tag whose PS3.6 keyword is kw (case-sensitive, as
// keywords are).
func ByKeyword(kw string) (Tag, bool) {
	t, ok := byKeyword()[kw]
	return t, ok
}

// Parse reads a tag written as a keyword ("PatientName"), as eight
// hexadecimal digits ("00100010") or as "(0010,0010)"/"0010,0010".
func Parse(s string) (Tag, error) {
	if t, ok := ByKeyword(s); ok {
		return t, nil
	}
	h := strings.TrimSuffix(strings.TrimPrefix(s, "("), ")")
	h = strings.Replace(h, ",", "", 1)
	if len(h) == 8 {
		if v, err := strconv.ParseUint(h, 16, 32); err == nil {
			return Tag(v), nil
		}
	}
	return 0, fmt.Errorf("tag: %q is neither a keyword nor a tag", s)
}
