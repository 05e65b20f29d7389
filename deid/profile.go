package deid

import (
	"sort"

	"github.com/pacsd/pacsd/dicom/tag"
)

// Option is a column of Table E.1-1: an option of the Basic Application
// Level Confidentiality Profile (PS3.15 E.3).
type Option int

const (
	SafePrivate            Option = iota // Retain Safe Private Option
	RetainUIDs                           // Retain UIDs Option
	DeviceIdentity                       // Retain Device Identity Option
	InstitutionIdentity                  // Retain Institution Identity Option
	PatientCharacteristics               // Retain Patient Characteristics Option
	FullDates                            // Retain Longitudinal Temporal Information Full Dates Option
	ModifiedDates                        // Retain Longitudinal Temporal Information Modified Dates Option
	CleanDescriptors                     // Clean Descriptors Option
	CleanStructuredContent               // Clean Structured Content Option
	CleanGraphics                        // Clean Graphics Option
	numOptions
)

// rule is a row of Table E.1-1.
type rule struct {
	tag, mask uint32 // the row applies to tags t with t&mask == tag
	private   bool   // the row of all private attributes
	basic     string // the Basic Profile's action
	std       bool   // in a standard composite IOD
	options   [numOptions]string
	name      string
}

// lookupRule returns the row of Table E.1-1 for t, if any.
func lookupRule(t tag.Tag) (*rule, bool) {
	single := profile[:numSingle]
	i := sort.Search(len(single), func(i int) bool { return single[i].tag >= uint32(t) })
	if i < len(single) && single[i].tag == uint32(t) {
		return &single[i], true
	}
	for i := numSingle; i < len(profile); i++ {
		r := &profile[i]
		if r.private {
			if t.IsPrivate() {
				return r, true
			}
			continue
		}
		if uint32(t)&r.mask == r.tag {
			return r, true
		}
	}
	return nil, false
}

// Action is what the profile does to an attribute (PS3.15 Table E.1-1).
type Action byte

const (
	Keep    Action = 'K'
	Remove  Action = 'X'
	Zero    Action = 'Z' // replace with a zero-length value
	Dummy   Action = 'D' // replace with a non-zero dummy value
	Clean   Action = 'C' // replace with a value of similar meaning
	Replace Action = 'U' // replace UIDs, consistently
)

// Profile selects the options applied on top of the Basic Profile. The
// options' actions take precedence over the Basic Profile's.
type Profile struct {
	Options []Option
}

// BasicProfile is what "deidentify": "basic" means: the Basic Application
// Level Confidentiality Profile with the Retain Longitudinal Temporal
// Information Modified Dates and Clean Descriptors options.
func BasicProfile() Profile {
	return Profile{Options: []Option{ModifiedDates, CleanDescriptors}}
}

// action returns the action for attribute t. Where the Basic Profile
// leaves the choice to the attribute's type in its IOD (X/Z, X/D, Z/D,
// X/Z/D, X/Z/U*), the action that keeps the attribute present is chosen,
// so that a de-identified instance still conforms to its IOD: Z for X/Z,
// D for X/D, Z/D and X/Z/D, and U (the sequence kept, its UIDs replaced)
// for X/Z/U*.
func (p Profile) action(t tag.Tag) Action {
	r, ok := lookupRule(t)
	if !ok {
		return Keep
	}
	for _, o := range p.Options {
		if a := r.options[o]; a != "" {
			return Action(a[0])
		}
	}
	switch r.basic {
	case "X/Z":
		return Zero
	case "X/D", "Z/D", "X/Z/D":
		return Dummy
	case "X/Z/U*":
		return Replace
	}
	return Action(r.basic[0])
}

// Keeps reports whether the profile leaves attribute t as it is: a search
// of de-identified data may match on such attributes only, since matching
// on one it removes or changes would tell what the copy hides.
func (p Profile) Keeps(t tag.Tag) bool {
	return !t.IsPrivate() && p.action(t) == Keep
}
