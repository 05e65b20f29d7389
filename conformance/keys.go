package conformance

import (
	"slices"
	"strings"

	"github.com/pacsd/pacsd/dicom"
	"github.com/pacsd/pacsd/dicom/tag"
	"github.com/pacsd/pacsd/index"
	"github.com/pacsd/pacsd/index/sqlindex"
)

// Key is a matching key of C-FIND (and QIDO-RS) at one level of the Patient
// Root model.
type Key struct {
	Level string // PATIENT, STUDY, SERIES or IMAGE
	Tag   tag.Tag
	// In, when not zero, is the sequence whose item holds Tag (Sequence
	// Matching, PS3.4 C.2.2.2.6).
	In tag.Tag
	// Matching lists the kinds of matching PS3.4 C.2.2.2 defines that the
	// key takes, in the standard's words.
	Matching []string
}

// candidateGroups are the groups of the attributes that the query levels
// of PS3.4 C.6 and PS3.18 Table 10.6.1-5 draw on. The tag dictionary has
// no exported iterator, so Defaults looks up each element of these groups.
var candidateGroups = []uint16{0x0008, 0x0010, 0x0018, 0x0020, 0x0028, 0x0032, 0x0038, 0x0040, 0x0054, 0x0070, 0x0088, 0x0400, 0x2050, 0x3006}

// candidates returns the public attributes of candidateGroups, in tag
// order. Retired ones are included: equipment still sends Other Patient
// IDs, and the index keeps it.
func candidates() []tag.Info {
	var out []tag.Info
	for _, g := range candidateGroups {
		for e := 1; e <= 0xFFFF; e++ {
			info, ok := tag.Lookup(tag.New(g, uint16(e)))
			if !ok || info.Keyword == "" {
				continue
			}
			out = append(out, info)
		}
	}
	return out
}

// queryLevels are the levels of the Patient Root model, top down.
var queryLevels = []index.Level{index.PatientLevel, index.StudyLevel, index.SeriesLevel, index.ImageLevel}

// MatchingKeys returns the keys the index matches on, each at the highest
// level that accepts it, by asking index.Query which keys of a query it
// cannot match (Query.UnsupportedKeys): the index's own answer, not a
// copy of its column list. Keys the index only returns (the numbers of
// related entities) and attributes it does not keep are not listed.
func MatchingKeys() []Key {
	cands := candidates()
	var keys []Key
	seen := map[tag.Tag]bool{}
	for _, lvl := range queryLevels {
		for _, info := range cands {
			if seen[info.Tag] || skipKey(info.Tag) {
				continue
			}
			vr := firstVR(info.VR)
			if vr == "SQ" {
				if !seen[info.Tag] && keptSequence(lvl, info.Tag) {
					seen[info.Tag] = true
					for _, child := range cands {
						if cvr := firstVR(child.VR); cvr != "SQ" && matches(lvl, info.Tag, child.Tag, cvr) {
							keys = append(keys, Key{Level: lvl.String(), Tag: child.Tag, In: info.Tag, Matching: matching(cvr)})
						}
					}
				}
				continue
			}
			if matches(lvl, 0, info.Tag, vr) {
				seen[info.Tag] = true
				keys = append(keys, Key{Level: lvl.String(), Tag: info.Tag, Matching: matching(vr)})
			}
		}
	}
	return keys
}

// skipKey leaves out what is not a key: Specific Character Set, Query/
// Retrieve Level, Timezone Offset From UTC (which qualifies the others).
func skipKey(t tag.Tag) bool {
	return t == tag.SpecificCharacterSet || t == tag.QueryRetrieveLevel || t == tag.TimezoneOffsetFromUTC
}

func firstVR(vr string) string {
	v, _, _ := strings.Cut(vr, " ")
	return v
}

// matches reports whether a query at lvl matches on t (inside the
// sequence seq, if not zero) rather than treating it as a return key.
func matches(lvl index.Level, seq, t tag.Tag, vr string) bool {
	v, ok := sampleValue(vr)
	if !ok {
		return false
	}
	e := dicom.Element{Tag: t, VR: vr, Values: []string{v}}
	if seq != 0 {
		e = dicom.Element{Tag: seq, VR: "SQ", Items: []*dicom.Dataset{{Elements: []dicom.Element{e}}}}
	}
	q := &index.Query{Level: lvl, PatientRoot: true, Identifier: &dicom.Dataset{Elements: []dicom.Element{e}}}
	unsupported, err := sqlindex.UnsupportedKeys(q)
	if err != nil {
		return false
	}
	return !slices.Contains(unsupported, e.Tag)
}

// keptSequence reports whether the index keeps the sequence seq at lvl:
// whether some attribute of its item can be matched there.
func keptSequence(lvl index.Level, seq tag.Tag) bool {
	for _, t := range []tag.Tag{tag.CodeValue, tag.LocalNamespaceEntityID, tag.UniversalEntityID, tag.ScheduledProcedureStepID, tag.RequestedProcedureID} {
		if matches(lvl, seq, t, firstVR(vrOf(t))) {
			return true
		}
	}
	return false
}

func vrOf(t tag.Tag) string {
	info, _ := tag.Lookup(t)
	return info.VR
}

// sampleValue is a well-formed value of vr to probe the index with.
func sampleValue(vr string) (string, bool) {
	switch vr {
	case "DA":
		return "20240131", true
	case "TM":
		return "120000", true
	case "DT":
		return "20240131120000", true
	case "UI":
		return "1.2.3", true
	case "IS", "US", "UL", "SS", "SL", "UV", "SV":
		return "1", true
	case "DS", "FL", "FD":
		return "1.5", true
	case "AS":
		return "030Y", true
	case "PN":
		return "DOE^JOHN", true
	case "AE", "CS", "LO", "SH", "LT", "ST", "UT", "UC", "UR":
		return "X", true
	}
	return "", false // binary and other VRs are never keys
}

// matching names the kinds of matching a key of vr takes (PS3.4
// C.2.2.2); which VRs take which kinds is the index's rule, stated in the
// index.Query documentation.
func matching(vr string) []string {
	m := []string{"single value", "universal"}
	switch vr {
	case "UI":
		m = append(m, "list of UIDs")
	case "DA", "TM", "DT":
		m = append(m, "range")
	case "AE", "CS", "LO", "LT", "PN", "SH", "ST", "UC", "UR", "UT":
		m = append(m, "wild card")
	}
	return m
}
