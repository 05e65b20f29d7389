package index

import (
	"fmt"
	"strconv"
	"strings"

	"github.com/pacsd/pacsd/dicom"
	"github.com/pacsd/pacsd/dicom/tag"
)

// Level is a level of the Query/Retrieve information model (PS3.4
// C.6): the entities a query asks for.
type Level int

const (
	PatientLevel Level = iota + 1
	StudyLevel
	SeriesLevel
	// ImageLevel is the level of instances, which DICOM calls IMAGE
	// whatever the instances are.
	ImageLevel
)

var levelNames = [...]string{PatientLevel: "PATIENT", StudyLevel: "STUDY", SeriesLevel: "SERIES", ImageLevel: "IMAGE"}

// String returns the level's name as Query/Retrieve Level (0008,0052)
// holds it.
func (l Level) String() string {
	if l.Valid() {
		return levelNames[l]
	}
	return "Level(" + strconv.Itoa(int(l)) + ")"
}

// Valid reports whether l is one of the four levels.
func (l Level) Valid() bool { return l >= PatientLevel && l <= ImageLevel }

// ParseLevel reads a value of Query/Retrieve Level (0008,0052): PATIENT,
// STUDY, SERIES or IMAGE.
func ParseLevel(s string) (Level, error) {
	s = strings.TrimSpace(s)
	for l := PatientLevel; l <= ImageLevel; l++ {
		if levelNames[l] == s {
			return l, nil
		}
	}
	return 0, fmt.Errorf("%w: unknown Query/Retrieve Level %q", ErrInvalidQuery, s)
}

// UniqueKey returns the unique key of level l (PS3.4 C.6.1.1 and
// C.6.2.1): Patient ID, Study, Series or SOP Instance UID. The patient
// level has it in the Patient Root model only; the Study Root model has
// no patient level.
func (l Level) UniqueKey() tag.Tag {
	switch l {
	case PatientLevel:
		return tag.PatientID
	case StudyLevel:
		return tag.StudyInstanceUID
	case SeriesLevel:
		return tag.SeriesInstanceUID
	case ImageLevel:
		return tag.SOPInstanceUID
	}
	return 0
}

// Query is a query of the Query/Retrieve information model, as C-FIND,
// C-MOVE and C-GET carry it in an identifier and QIDO-RS in a URL.
//
// # Matching
//
// Every key is matched as PS3.4 C.2.2.2 defines:
//
//   - A key without a value, or with the value "*", is universal: it
//     matches every entity and asks for the attribute to be returned.
//   - A value without wild cards is matched whole (Single Value
//     Matching); leading and trailing spaces are not significant. The
//     value "" (two quotation marks) matches the entities whose attribute
//     is empty or absent.
//   - "*" and "?" are wild cards in keys of VR AE, CS, LO, LT, PN, SH,
//     ST, UC, UR and UT; in keys of any other VR they make the query
//     invalid.
//   - A UID key may be a list of UIDs, separated by backslashes or, as
//     QIDO-RS writes them, by commas: it matches any of them.
//   - Any other key with several values matches when any of them does
//     ("CT\MR"), and a key matches an attribute with several values when
//     any of them matches.
//   - DA, TM and DT keys may be ranges: "a-b", "-b" and "a-", bounds
//     included. A bound, or a single value, stands for the whole period
//     it names: "1030" is 10:30:00 to 10:30:59.999999. A stored value
//     stands for the start of its period: "10" is 10:00:00. Dates and
//     times are compared by the moment they stand for, whatever their
//     precision; DT values are compared in UTC when they carry an offset
//     (or their instance has a Timezone Offset From UTC, or, for a key,
//     the identifier has one); without one they are taken as they are.
//     DA and TM values are compared as they are: Timezone Offset From
//     UTC is not applied to them, and a time range may not cross
//     midnight.
//   - PN keys are matched case-insensitively unless CaseSensitiveNames
//     is set, against each value of the attribute as a whole and against
//     each of its component groups, with the spaces around components and
//     trailing empty components ignored: "YAMADA*" and "山田*" both
//     match "Yamada^Tarou=山田^太郎=やまだ^たろう". A key of several
//     component groups ("Yamada^Tarou=山田^太郎") matches when each of
//     its groups matches the group of the same place.
//   - With FuzzyNames, a PN key also matches when each word of it (its
//     components split at spaces) begins a word of a component of the
//     name, case-insensitively: "tar yam" and "YAMA" match the name
//     above. The words may be found in different values of a
//     multi-valued attribute.
//   - A sequence key holds one item of keys (Sequence Matching): it
//     matches when one item of the stored sequence matches all of them,
//     and returns the matching items with the keys asked for. The index
//     matches on Request Attributes Sequence > Scheduled Procedure Step
//     ID and Requested Procedure ID, Issuer of Accession Number Sequence
//     > Local Namespace Entity ID, Procedure Code Sequence and Concept
//     Name Code Sequence > Code Value, and Issuer of Patient ID
//     Qualifiers Sequence > Universal Entity ID; once one of those keys
//     has a value, the other keys of its item are matched too. Keys in
//     any other sequence are return keys only (the engine reports them as unsupported keys).
//   - Modalities in Study and SOP Classes in Study match when any
//     series or instance of the study does. The numbers of related
//     studies, series and instances are return keys only.
//
// A key may name an attribute of the query's level or of any level
// above it: a STUDY query may match on and return Patient's Name, an
// IMAGE query Study Date. A key of a level below the query's is returned
// empty, and the unique key of a level below makes the query invalid.
// Attributes the index does not keep are returned empty, never invented.
type Query struct {
	Level Level
	// Identifier holds the matching and return keys, as a C-FIND
	// identifier does (PS3.4 C.2.2): an element with a value is a
	// matching key, an empty one a universal match (return key).
	// Sequences carry one item of keys. Values are in UTF-8. Query/
	// Retrieve Level is returned as Level; Specific Character Set is
	// neither matched nor returned: results are in UTF-8, and the front
	// doors encode them.
	Identifier *dicom.Dataset
	// Hierarchical requires the unique keys of the levels above Level
	// (PS3.4 C.4.1.2.1), as C-FIND, C-MOVE and C-GET do without
	// relational negotiation; C-MOVE and C-GET also require the unique
	// key of Level itself. QIDO-RS leaves it false (relational).
	Hierarchical bool
	// PatientRoot selects the Patient Root model: the PATIENT level
	// exists, its unique key is Patient ID, and a hierarchical query at
	// the STUDY level or below needs one. Without it (Study Root), the
	// PATIENT level is invalid and the patient's attributes are
	// attributes of the study.
	PatientRoot bool
	// CaseSensitiveNames makes PN matching case-sensitive.
	CaseSensitiveNames bool
	// FuzzyNames adds word matching to PN keys, as QIDO-RS asks for
	// with fuzzymatching=true.
	FuzzyNames bool
	// Issuers, when not nil, restricts the query to the patients whose
	// Issuer of Patient ID is one of them, as the caller's principal
	// allows (per-trust access): nothing else matches, nor is retrieved.
	// An empty list matches nothing; a patient without an issuer is
	// matched only by nil.
	Issuers []string
	// Offset skips that many matches; Limit, when not 0, returns at most
	// that many. Matches come in the order the index first recorded the
	// entities, which later records do not change, so that pages of a
	// result follow on from each other.
	Offset, Limit int
}
