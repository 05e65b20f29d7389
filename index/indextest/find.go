package indextest

import (
	"github.com/pacsd/pacsd/index/sqlindex"

	"cmp"
	"context"
	"errors"
	"fmt"
	"reflect"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/pacsd/pacsd/dicom"
	"github.com/pacsd/pacsd/dicom/tag"
	"github.com/pacsd/pacsd/index"
)

var (
	studyRoot   = index.Query{Level: index.StudyLevel}
	studyHier   = index.Query{Level: index.StudyLevel, Hierarchical: true}
	patientRoot = index.Query{Level: index.PatientLevel, PatientRoot: true, Hierarchical: true}
	seriesRel   = index.Query{Level: index.SeriesLevel}
	imageRel    = index.Query{Level: index.ImageLevel}
)

func allStudies() []string { return []string{"1.1", "1.2", "2.1", "3.1", "4.1", "5.1"} }

// testFindText covers Single Value, Wild Card, Universal, Empty Value and
// List of UID Matching, and keys of several values, on text and UIDs.
func testFindText(t *testing.T, db *sqlindex.DB) {
	putQueryFixtures(t, db)
	uid := tag.StudyInstanceUID
	runMatchCases(t, db, uid, []matchCase{
		{"universal", studyRoot, []any{uid, ""}, allStudies()},
		{"universal without keys", studyRoot, nil, allStudies()},
		{"star is universal", studyRoot, []any{tag.StudyDescription, "*"}, allStudies()},
		{"single value", studyRoot, []any{tag.AccessionNumber, "ACC-2"}, []string{"1.2"}},
		{"single value, spaces", studyRoot, []any{tag.AccessionNumber, " ACC-2 "}, []string{"1.2"}},
		{"single value is case-sensitive", studyRoot, []any{tag.StudyDescription, "ct chest"}, []string{}},
		{"single value whole", studyRoot, []any{tag.StudyDescription, "CT chest"}, []string{"1.1"}},
		{"no match", studyRoot, []any{tag.AccessionNumber, "NONE"}, []string{}},
		{"star suffix", studyRoot, []any{tag.StudyDescription, "CT*"}, []string{"1.1", "2.1", "4.1"}},
		{"star prefix", studyRoot, []any{tag.StudyDescription, "*brain"}, []string{"1.2"}},
		{"star inside", studyRoot, []any{tag.StudyDescription, "C*d"}, []string{"4.1"}},
		{"question mark", studyRoot, []any{tag.StudyDescription, "CT ?hest"}, []string{"1.1"}},
		{"wild cards are case-sensitive", studyRoot, []any{tag.StudyDescription, "ct*"}, []string{}},
		{"bracket is literal", studyRoot, []any{tag.StudyDescription, "[CT]*"}, []string{}},
		{"empty value", studyRoot, []any{tag.AccessionNumber, `""`}, []string{"5.1"}},
		{"several values", studyRoot, []any{tag.AccessionNumber, `ACC-1\ACC-3`}, []string{"1.1", "2.1"}},
		{"several values with wild cards", studyRoot, []any{tag.StudyDescription, `MR*\*neck`}, []string{"1.2", "3.1"}},
		{"UID", studyRoot, []any{uid, "2.1"}, []string{"2.1"}},
		{"UID list", studyRoot, []any{uid, `1.1\3.1\9.9`}, []string{"1.1", "3.1"}},
		{"UID list with commas", studyRoot, []any{uid, `1.2,2.1`}, []string{"1.2", "2.1"}},
		{"UID list mixed", studyRoot, []any{uid, `1.2,2.1\5.1`}, []string{"1.2", "2.1", "5.1"}},
		{"patient ID", studyRoot, []any{tag.PatientID, "PID-1"}, []string{"1.1", "1.2"}},
		{"issuer", studyRoot, []any{tag.IssuerOfPatientID, "ISSUER-A"}, []string{"4.1"}},
		{"CS key", studyRoot, []any{tag.PatientSex, "F"}, []string{"1.1", "1.2"}},
		{"CS wild card", studyRoot, []any{tag.PatientSex, "?"}, []string{"1.1", "1.2", "2.1", "3.1"}},
		{"two keys", studyRoot, []any{tag.PatientID, "PID-1", tag.AccessionNumber, "ACC-2"}, []string{"1.2"}},
		{"hierarchical study root", studyHier, []any{tag.AccessionNumber, "ACC-5"}, []string{"4.1"}},
	})
	// Series and instance attributes, and multi-valued ones.
	runMatchCases(t, db, tag.SeriesInstanceUID, []matchCase{
		{"modality", seriesRel, []any{tag.Modality, "CT"}, []string{"1.1.1", "2.1.1", "4.1.1"}},
		{"modalities", seriesRel, []any{tag.Modality, `SR\PR`}, []string{"1.1.2", "4.1.2"}},
		{"series number", seriesRel, []any{tag.SeriesNumber, "2"}, []string{"1.1.2", "4.1.2"}},
		{"series number with sign", seriesRel, []any{tag.SeriesNumber, "+2"}, []string{"1.1.2", "4.1.2"}},
		{"study key at series level", seriesRel, []any{tag.StudyInstanceUID, "1.1"}, []string{"1.1.1", "1.1.2"}},
		{"patient key at series level", seriesRel, []any{tag.PatientName, "müller*"}, []string{"2.1.1"}},
		{"multi-valued PN", seriesRel, []any{tag.OperatorsName, "tech^tom"}, []string{"1.2.1"}},
		{"empty value and number", seriesRel, []any{tag.SeriesDescription, `""`, tag.SeriesNumber, "1"}, []string{"1.2.1", "2.1.1", "3.1.1", "4.1.1", "5.1.1"}},
	})
	runMatchCases(t, db, tag.SOPInstanceUID, []matchCase{
		{"any value", imageRel, []any{tag.ImageType, "AXIAL"}, []string{"1.2.1.1"}},
		{"any value suffix", imageRel, []any{tag.ImageType, "*ARY"}, []string{"1.2.1.1", "2.1.1.1"}},
		{"any value prefix", imageRel, []any{tag.ImageType, "PRIM*"}, []string{"1.2.1.1"}},
		{"any value, question mark", imageRel, []any{tag.ImageType, "DERIVE?"}, []string{"2.1.1.1"}},
		// "D*Y" would match "DERIVED\SECONDARY" as one string; no one
		// value matches it.
		{"no match across values", imageRel, []any{tag.ImageType, "D*Y"}, []string{}},
		{"no question mark across values", imageRel, []any{tag.ImageType, "DERIVED?SECONDARY"}, []string{}},
		{"star inside one value", imageRel, []any{tag.ImageType, "S*Y"}, []string{"2.1.1.1"}},
		{"SOP class", imageRel, []any{tag.SOPClassUID, srBasic}, []string{"1.1.2.1"}},
		{"instance number", imageRel, []any{tag.InstanceNumber, "2"}, []string{"1.1.1.2"}},
		{"instance list", imageRel, []any{tag.SOPInstanceUID, `1.1.1.2\4.1.2.1`}, []string{"1.1.1.2", "4.1.2.1"}},
		{"study key at image level", imageRel, []any{tag.AccessionNumber, "ACC-5"}, []string{"4.1.1.1", "4.1.2.1"}},
		{"transfer syntax", imageRel, []any{tag.AvailableTransferSyntaxUID, "1.2.840.10008.1.2.1", tag.SeriesInstanceUID, "4.1.1"}, []string{"4.1.1.1"}},
	})
}

// testFindNames covers PN matching: case, component groups, names
// beyond ASCII, multi-valued names, fuzzy matching.
func testFindNames(t *testing.T, db *sqlindex.DB) {
	putQueryFixtures(t, db)
	pn := tag.PatientName
	cs := index.Query{Level: index.StudyLevel, CaseSensitiveNames: true}
	fuzzy := index.Query{Level: index.StudyLevel, FuzzyNames: true}
	runMatchCases(t, db, tag.StudyInstanceUID, []matchCase{
		{"whole name", studyRoot, []any{pn, "Doe^Jane"}, []string{"1.1", "1.2"}},
		{"case-insensitive", studyRoot, []any{pn, "DOE^JANE"}, []string{"1.1", "1.2"}},
		{"prefix", studyRoot, []any{pn, "doe*"}, []string{"1.1", "1.2"}},
		{"suffix", studyRoot, []any{pn, "*jane"}, []string{"1.1", "1.2"}},
		{"component is not the name", studyRoot, []any{pn, "Doe"}, []string{}},
		{"Latin-1 letters", studyRoot, []any{pn, "MÜLLER^JÜRGEN"}, []string{"2.1"}},
		{"Latin-1 prefix", studyRoot, []any{pn, "mül*"}, []string{"2.1"}},
		{"alphabetic group", studyRoot, []any{pn, "YAMADA*"}, []string{"3.1"}},
		{"alphabetic group whole", studyRoot, []any{pn, "yamada^tarou"}, []string{"3.1"}},
		{"ideographic group", studyRoot, []any{pn, "山田*"}, []string{"3.1"}},
		{"ideographic group whole", studyRoot, []any{pn, "山田^太郎"}, []string{"3.1"}},
		{"phonetic group", studyRoot, []any{pn, "やまだ^たろう"}, []string{"3.1"}},
		{"whole value", studyRoot, []any{pn, "Yamada^Tarou=山田^太郎=やまだ^たろう"}, []string{"3.1"}},
		{"two groups", studyRoot, []any{pn, "Yamada^Tarou=山田^太郎"}, []string{"3.1"}},
		{"ideographic only", studyRoot, []any{pn, "=山田*"}, []string{"3.1"}},
		{"groups in their place", studyRoot, []any{pn, "山田^太郎=Yamada^Tarou"}, []string{}},
		{"one group differs", studyRoot, []any{pn, "Yamada^Tarou=鈴木^一郎"}, []string{}},
		{"star across groups", studyRoot, []any{pn, "YAMADA*たろう"}, []string{"3.1"}},
		{"trailing empty components", studyRoot, []any{pn, "smith^anna^^^"}, []string{"5.1"}},
		{"prefix component", studyRoot, []any{pn, "Smith^John^^Dr"}, []string{"4.1"}},
		{"not without the prefix", studyRoot, []any{pn, "Smith^John"}, []string{}},
		{"either case", studyRoot, []any{pn, "SMITH*"}, []string{"4.1", "5.1"}},
		{"question mark", studyRoot, []any{pn, "D?E^JANE"}, []string{"1.1", "1.2"}},
		{"several names", studyRoot, []any{pn, `Doe^Jane\smith^anna`}, []string{"1.1", "1.2", "5.1"}},
		{"empty name", studyRoot, []any{pn, `""`}, []string{}},
		{"multi-valued", studyRoot, []any{tag.OtherPatientNames, "schmidt*"}, []string{"4.1"}},
		{"multi-valued whole", studyRoot, []any{tag.OtherPatientNames, "SMYTH^JON"}, []string{"4.1"}},
		{"study level name", studyRoot, []any{tag.ReferringPhysicianName, "ref*"}, []string{"1.1"}},
		{"case-sensitive lower", cs, []any{pn, "smith*"}, []string{"5.1"}},
		{"case-sensitive upper", cs, []any{pn, "Smith*"}, []string{"4.1"}},
		{"case-sensitive exact", cs, []any{pn, "Doe^Jane"}, []string{"1.1", "1.2"}},
		{"case-sensitive differs", cs, []any{pn, "DOE^JANE"}, []string{}},
		{"case-sensitive Latin-1", cs, []any{pn, "müller*"}, []string{}},
		{"not fuzzy", studyRoot, []any{pn, "jan"}, []string{}},
		{"fuzzy given name", fuzzy, []any{pn, "jan"}, []string{"1.1", "1.2"}},
		{"fuzzy two words", fuzzy, []any{pn, "tar yam"}, []string{"3.1"}},
		{"fuzzy components", fuzzy, []any{pn, "yam^tar"}, []string{"3.1"}},
		{"fuzzy phonetic", fuzzy, []any{pn, "たろ"}, []string{"3.1"}},
		{"fuzzy Latin-1", fuzzy, []any{pn, "jürg"}, []string{"2.1"}},
		{"fuzzy all words", fuzzy, []any{pn, "john anna"}, []string{}},
		{"fuzzy still whole", fuzzy, []any{pn, "Doe^Jane"}, []string{"1.1", "1.2"}},
		{"fuzzy prefix of no word", fuzzy, []any{pn, "ane"}, []string{}},
	})
}

// testFindDates covers Range Matching of DA, TM and DT with values of
// different precision and forms.
func testFindDates(t *testing.T, db *sqlindex.DB) {
	putQueryFixtures(t, db)
	runMatchCases(t, db, tag.StudyInstanceUID, []matchCase{
		{"date", studyRoot, []any{tag.StudyDate, "20240101"}, []string{"1.1", "4.1"}},
		{"date range", studyRoot, []any{tag.StudyDate, "20240101-20240215"}, []string{"1.1", "1.2", "4.1"}},
		{"date range with spaces", studyRoot, []any{tag.StudyDate, "20240101 - 20240215"}, []string{"1.1", "1.2", "4.1"}},
		{"until", studyRoot, []any{tag.StudyDate, "-20231231"}, []string{"2.1"}},
		{"from", studyRoot, []any{tag.StudyDate, "20240215-"}, []string{"1.2", "3.1"}},
		{"old date form", studyRoot, []any{tag.StudyDate, "20240301"}, []string{"3.1"}},
		{"dates", studyRoot, []any{tag.StudyDate, `20231231\20240301`}, []string{"2.1", "3.1"}},
		{"empty date", studyRoot, []any{tag.StudyDate, `""`}, []string{"5.1"}},
		{"time range of minutes", studyRoot, []any{tag.StudyTime, "1000-1100"}, []string{"1.1", "1.2", "3.1"}},
		{"time of minutes", studyRoot, []any{tag.StudyTime, "1030"}, []string{"1.1", "1.2"}},
		{"time of seconds", studyRoot, []any{tag.StudyTime, "103000"}, []string{"1.1", "1.2"}},
		{"time of hours", studyRoot, []any{tag.StudyTime, "10"}, []string{"1.1", "1.2", "3.1"}},
		{"time with fraction", studyRoot, []any{tag.StudyTime, "235959"}, []string{"2.1"}},
		{"fraction in range", studyRoot, []any{tag.StudyTime, "235959.4-235959.6"}, []string{"2.1"}},
		{"fraction out of range", studyRoot, []any{tag.StudyTime, "235959.6-"}, []string{}},
		{"until time", studyRoot, []any{tag.StudyTime, "-0959"}, []string{}},
		{"from time", studyRoot, []any{tag.StudyTime, "2359-"}, []string{"2.1"}},
		{"old time form", studyRoot, []any{tag.StudyTime, "10:30-10:30:59"}, []string{"1.1", "1.2"}},
		{"date and time", studyRoot, []any{tag.StudyDate, "20240101", tag.StudyTime, "1000-1100"}, []string{"1.1"}},
		{"birth date", studyRoot, []any{tag.PatientBirthDate, "-19600101"}, []string{"2.1"}},
	})
	runMatchCases(t, db, tag.SOPInstanceUID, []matchCase{
		{"content time range", imageRel, []any{tag.ContentTime, "1030-1031"}, []string{"1.1.1.1", "1.1.1.2"}},
		{"content time", imageRel, []any{tag.ContentTime, "103015"}, []string{"1.1.1.1"}},
		{"content time of hours", imageRel, []any{tag.ContentTime, "10"}, []string{"1.1.1.1", "1.1.1.2", "4.1.1.1"}},
		{"content date", imageRel, []any{tag.ContentDate, "20240101-"}, []string{"1.1.1.1", "1.1.1.2"}},
		// 10:30:15 at +01:00 is 09:30:15 UTC; the other has no offset.
		{"date-times in UTC", imageRel, []any{tag.AcquisitionDateTime, "20240101093015-20240101093016"}, []string{"1.1.1.1", "1.1.1.2"}},
		{"date-time with offset", imageRel, []any{tag.AcquisitionDateTime, "20240101103015+0100"}, []string{"1.1.1.1"}},
		{"date-time of minutes", imageRel, []any{tag.AcquisitionDateTime, "202401010930"}, []string{"1.1.1.1", "1.1.1.2"}},
		{"date-time range of days at an offset", imageRel, []any{tag.AcquisitionDateTime, "20240101-0900-20240101-0900"}, []string{"1.1.1.1", "1.1.1.2"}},
		{"date-time of a year", imageRel, []any{tag.AcquisitionDateTime, "2023"}, []string{}},
		{"date-time until", imageRel, []any{tag.AcquisitionDateTime, "-20240101093015"}, []string{"1.1.1.1"}},
		{"date-time with the identifier's offset", imageRel,
			[]any{tag.AcquisitionDateTime, "20240101103016", tag.TimezoneOffsetFromUTC, "+0100"}, []string{"1.1.1.2"}},
	})
}

// testFindAggregates covers Modalities in Study and SOP Classes in Study,
// which match against the study's series.
func testFindAggregates(t *testing.T, db *sqlindex.DB) {
	putQueryFixtures(t, db)
	runMatchCases(t, db, tag.StudyInstanceUID, []matchCase{
		{"modality", studyRoot, []any{tag.ModalitiesInStudy, "CT"}, []string{"1.1", "2.1", "4.1"}},
		{"one of two", studyRoot, []any{tag.ModalitiesInStudy, "SR"}, []string{"1.1"}},
		{"modalities", studyRoot, []any{tag.ModalitiesInStudy, `CT\MR`}, []string{"1.1", "1.2", "2.1", "4.1", "5.1"}},
		{"modality wild card", studyRoot, []any{tag.ModalitiesInStudy, "M?"}, []string{"1.2", "5.1"}},
		{"modalities and a key", studyRoot, []any{tag.ModalitiesInStudy, "CT", tag.PatientID, "PID-4"}, []string{"4.1"}},
		{"SOP class", studyRoot, []any{tag.SOPClassesInStudy, srBasic}, []string{"1.1"}},
		{"SOP classes", studyRoot, []any{tag.SOPClassesInStudy, prState + `\` + mrImage}, []string{"1.2", "4.1", "5.1"}},
		{"SOP classes with commas", studyRoot, []any{tag.SOPClassesInStudy, prState + `,` + mrImage}, []string{"1.2", "4.1", "5.1"}},
		{"at series level", seriesRel, []any{tag.ModalitiesInStudy, "PR", tag.StudyInstanceUID, ""}, []string{"4.1", "4.1"}},
	})
}

// testFindSequences covers Sequence Matching.
func testFindSequences(t *testing.T, db *sqlindex.DB) {
	putQueryFixtures(t, db)
	seq := func(pairs ...any) []*dicom.Dataset {
		if len(pairs) == 0 {
			return []*dicom.Dataset{{}}
		}
		return []*dicom.Dataset{item(pairs...)}
	}
	runMatchCases(t, db, tag.StudyInstanceUID, []matchCase{
		{"issuer of accession number", studyRoot, []any{tag.IssuerOfAccessionNumberSequence, seq(tag.LocalNamespaceEntityID, "RIS-A")}, []string{"3.1"}},
		{"issuer wild card", studyRoot, []any{tag.IssuerOfAccessionNumberSequence, seq(tag.LocalNamespaceEntityID, "RIS*")}, []string{"3.1"}},
		{"other issuer", studyRoot, []any{tag.IssuerOfAccessionNumberSequence, seq(tag.LocalNamespaceEntityID, "RIS-B")}, []string{}},
		{"procedure code of the second item", studyRoot, []any{tag.ProcedureCodeSequence, seq(tag.CodeValue, "P-2")}, []string{"3.1"}},
		{"code and scheme in one item", studyRoot, []any{tag.ProcedureCodeSequence, seq(tag.CodeValue, "P-1", tag.CodingSchemeDesignator, "99LOCAL")}, []string{"3.1"}},
		{"code and scheme of two items", studyRoot, []any{tag.ProcedureCodeSequence, seq(tag.CodeValue, "P-2", tag.CodingSchemeDesignator, "99LOCAL")}, []string{}},
		{"codes", studyRoot, []any{tag.ProcedureCodeSequence, []*dicom.Dataset{{Elements: []dicom.Element{{Tag: tag.CodeValue, VR: "SH", Values: []string{"X", "P-1"}}}}}}, []string{"3.1"}},
		{"issuer of patient ID", studyRoot, []any{tag.IssuerOfPatientIDQualifiersSequence, seq(tag.UniversalEntityID, "1.2.3.4.5")}, []string{"5.1"}},
		{"issuer of patient ID and type", studyRoot, []any{tag.IssuerOfPatientIDQualifiersSequence, seq(tag.UniversalEntityID, "1.2.3.4.5", tag.UniversalEntityIDType, "DNS")}, []string{}},
		{"empty item", studyRoot, []any{tag.ProcedureCodeSequence, seq()}, allStudies()},
		{"no item", studyRoot, []any{tag.ProcedureCodeSequence, []*dicom.Dataset{}}, allStudies()},
		{"item of return keys", studyRoot, []any{tag.ProcedureCodeSequence, seq(tag.CodeValue, "")}, allStudies()},
	})
	runMatchCases(t, db, tag.SeriesInstanceUID, []matchCase{
		{"scheduled step", seriesRel, []any{tag.RequestAttributesSequence, seq(tag.ScheduledProcedureStepID, "SPS-2")}, []string{"2.1.1"}},
		{"requested procedure", seriesRel, []any{tag.RequestAttributesSequence, seq(tag.RequestedProcedureID, "RP-*")}, []string{"2.1.1"}},
		{"step and procedure of one item", seriesRel, []any{tag.RequestAttributesSequence, seq(tag.ScheduledProcedureStepID, "SPS-2", tag.RequestedProcedureID, "RP-2")}, []string{"2.1.1"}},
		{"step and procedure of two items", seriesRel, []any{tag.RequestAttributesSequence, seq(tag.ScheduledProcedureStepID, "SPS-1", tag.RequestedProcedureID, "RP-2")}, []string{}},
		{"no star across items", seriesRel, []any{tag.RequestAttributesSequence, seq(tag.ScheduledProcedureStepID, "SPS-1*2")}, []string{}},
	})
	runMatchCases(t, db, tag.SOPInstanceUID, []matchCase{
		{"concept name", imageRel, []any{tag.ConceptNameCodeSequence, seq(tag.CodeValue, "18748-4")}, []string{"1.1.2.1"}},
	})

	// Matching items are returned with the keys asked for only.
	q := studyRoot
	q.Identifier = keys(t, tag.StudyInstanceUID, "3.1", tag.ProcedureCodeSequence, seq(tag.CodeValue, "P-2", tag.CodeMeaning, ""))
	ms := find(t, db, &q)
	if len(ms) != 1 {
		t.Fatalf("%d matches", len(ms))
	}
	items := ms[0].Items(tag.ProcedureCodeSequence)
	if len(items) != 1 || items[0].String(tag.CodeValue) != "P-2" || items[0].String(tag.CodeMeaning) != "US thyroid" || len(items[0].Elements) != 2 {
		t.Errorf("returned items %s", jsonOf(items))
	}
	// An empty item asks for every item, whole.
	q.Identifier = keys(t, tag.StudyInstanceUID, "3.1", tag.ProcedureCodeSequence, seq())
	ms = find(t, db, &q)
	if items := ms[0].Items(tag.ProcedureCodeSequence); len(items) != 2 || len(items[1].Elements) != 3 {
		t.Errorf("returned items %s", jsonOf(items))
	}
	// An item of return keys asks for every item, with those keys.
	q.Identifier = keys(t, tag.StudyInstanceUID, "3.1", tag.ProcedureCodeSequence, seq(tag.CodingSchemeDesignator, "", tag.CodeValue, ""))
	ms = find(t, db, &q)
	if items := ms[0].Items(tag.ProcedureCodeSequence); len(items) != 2 || len(items[1].Elements) != 2 || items[1].String(tag.CodingSchemeDesignator) != "99OTHER" {
		t.Errorf("returned items %s", jsonOf(items))
	}
}

func jsonOf(items []*dicom.Dataset) string {
	var parts []string
	for _, it := range items {
		b, _ := it.MarshalJSON()
		parts = append(parts, string(b))
	}
	return "[" + strings.Join(parts, ",") + "]"
}

// testFindLevels covers each level of both models, hierarchical and
// relational, and the unique keys each needs.
func testFindLevels(t *testing.T, db *sqlindex.DB) {
	putQueryFixtures(t, db)
	seriesHier := index.Query{Level: index.SeriesLevel, Hierarchical: true}
	seriesPatientRoot := index.Query{Level: index.SeriesLevel, Hierarchical: true, PatientRoot: true}
	studyPatientRoot := index.Query{Level: index.StudyLevel, Hierarchical: true, PatientRoot: true}
	imageHier := index.Query{Level: index.ImageLevel, Hierarchical: true}
	runMatchCases(t, db, tag.PatientID, []matchCase{
		{"patients", patientRoot, []any{tag.PatientID, ""}, []string{"PID-1", "PID-2", "PID-3", "PID-4", "PID-5"}},
		{"patient name", patientRoot, []any{tag.PatientName, "s*"}, []string{"PID-4", "PID-5"}},
		{"patient ID", patientRoot, []any{tag.PatientID, "PID-3"}, []string{"PID-3"}},
		{"study key at patient level is not matched", patientRoot, []any{tag.AccessionNumber, "ACC-1", tag.PatientID, "PID-2"}, []string{"PID-2"}},
		{"studies of a patient", studyPatientRoot, []any{tag.PatientID, "PID-1"}, []string{"PID-1", "PID-1"}},
	})
	runMatchCases(t, db, tag.SeriesInstanceUID, []matchCase{
		{"series of a study", seriesHier, []any{tag.StudyInstanceUID, "1.1"}, []string{"1.1.1", "1.1.2"}},
		{"series of studies", seriesHier, []any{tag.StudyInstanceUID, `1.1\4.1`}, []string{"1.1.1", "1.1.2", "4.1.1", "4.1.2"}},
		{"series of a study and modality", seriesHier, []any{tag.StudyInstanceUID, "4.1", tag.Modality, "PR"}, []string{"4.1.2"}},
		{"series by UID", seriesHier, []any{tag.StudyInstanceUID, "4.1", tag.SeriesInstanceUID, "4.1.1"}, []string{"4.1.1"}},
		{"series of a patient's study", seriesPatientRoot, []any{tag.PatientID, "PID-1", tag.StudyInstanceUID, "1.2"}, []string{"1.2.1"}},
		{"other patient's study", seriesPatientRoot, []any{tag.PatientID, "PID-2", tag.StudyInstanceUID, "1.2"}, []string{}},
		{"all series", seriesRel, nil, []string{"1.1.1", "1.1.2", "1.2.1", "2.1.1", "3.1.1", "4.1.1", "4.1.2", "5.1.1"}},
	})
	runMatchCases(t, db, tag.SOPInstanceUID, []matchCase{
		{"instances of a series", imageHier, []any{tag.StudyInstanceUID, "1.1", tag.SeriesInstanceUID, "1.1.1"}, []string{"1.1.1.1", "1.1.1.2"}},
		{"instances of series", imageHier, []any{tag.StudyInstanceUID, "1.1", tag.SeriesInstanceUID, `1.1.1\1.1.2`}, []string{"1.1.1.1", "1.1.1.2", "1.1.2.1"}},
		{"series of another study", imageHier, []any{tag.StudyInstanceUID, "1.2", tag.SeriesInstanceUID, "1.1.1"}, []string{}},
		{"instance", imageHier, []any{tag.StudyInstanceUID, "1.1", tag.SeriesInstanceUID, "1.1.1", tag.SOPInstanceUID, "1.1.1.2"}, []string{"1.1.1.2"}},
	})
	// Parse and print levels.
	for _, s := range []string{"PATIENT", "STUDY", "SERIES", "IMAGE", " IMAGE "} {
		l, err := index.ParseLevel(s)
		if err != nil || l.String() != strings.TrimSpace(s) {
			t.Errorf("ParseLevel(%q) = %v, %v", s, l, err)
		}
	}
}

// testFindReturnKeys covers what a match holds: every key of the
// identifier in tag order, values from the levels above, aggregates, and
// empty values for what the index does not keep.
func testFindReturnKeys(t *testing.T, db *sqlindex.DB) {
	putQueryFixtures(t, db)
	private := tag.New(0x0009, 0x1010)
	q := studyRoot
	q.Identifier = keys(t, tag.StudyInstanceUID, "1.1", tag.QueryRetrieveLevel, "STUDY", tag.SpecificCharacterSet, "ISO_IR 192",
		tag.PatientName, "", tag.PatientID, "", tag.PatientBirthDate, "", tag.StudyDate, "", tag.StudyTime, "", tag.AccessionNumber, "",
		tag.ReferringPhysicianName, "", tag.ModalitiesInStudy, "", tag.SOPClassesInStudy, "",
		tag.NumberOfStudyRelatedSeries, "", tag.NumberOfStudyRelatedInstances, "", tag.NumberOfPatientRelatedStudies, "",
		tag.NumberOfPatientRelatedSeries, "", tag.NumberOfPatientRelatedInstances, "",
		tag.InstitutionName, "", tag.RetrieveAETitle, "", tag.StudyComments, "")
	q.Identifier.Elements = append(q.Identifier.Elements, dicom.Element{Tag: private, VR: "LO"})
	ms := find(t, db, &q)
	if len(ms) != 1 {
		t.Fatalf("%d matches, want 1", len(ms))
	}
	want := map[tag.Tag]string{
		tag.QueryRetrieveLevel: "STUDY", tag.StudyInstanceUID: "1.1", tag.PatientName: "Doe^Jane", tag.PatientID: "PID-1",
		tag.PatientBirthDate: "19700101", tag.StudyDate: "20240101", tag.StudyTime: "103000", tag.AccessionNumber: "ACC-1",
		tag.ReferringPhysicianName: "Ref^Rita", tag.ModalitiesInStudy: `CT\SR`, tag.SOPClassesInStudy: ctImage + `\` + srBasic,
		tag.NumberOfStudyRelatedSeries: "2", tag.NumberOfStudyRelatedInstances: "3", tag.NumberOfPatientRelatedStudies: "2",
		tag.NumberOfPatientRelatedSeries: "3", tag.NumberOfPatientRelatedInstances: "4",
		// Not kept at the study level or above: returned empty.
		tag.InstitutionName: "", tag.RetrieveAETitle: "", tag.StudyComments: "", private: "",
	}
	checkMatch(t, ms[0], want)
	if e, _ := ms[0].Find(private); e.VR != "LO" {
		t.Errorf("private key returned as %s", e.VR)
	}

	// An IMAGE query returns the attributes of every level above; the
	// unique key of the level comes back though not asked for.
	q = imageRel
	q.Identifier = keys(t, tag.SeriesInstanceUID, "1.2.1", tag.PatientName, "", tag.StudyDate, "", tag.AccessionNumber, "",
		tag.Modality, "", tag.SeriesNumber, "", tag.SOPClassUID, "", tag.InstanceNumber, "", tag.ImageType, "",
		tag.NumberOfSeriesRelatedInstances, "", tag.TimezoneOffsetFromUTC, "")
	ms = find(t, db, &q)
	if len(ms) != 1 {
		t.Fatalf("%d matches, want 1", len(ms))
	}
	checkMatch(t, ms[0], map[tag.Tag]string{
		tag.SeriesInstanceUID: "1.2.1", tag.SOPInstanceUID: "1.2.1.1", tag.PatientName: "Doe^Jane", tag.StudyDate: "20240215",
		tag.AccessionNumber: "ACC-2", tag.Modality: "MR", tag.SeriesNumber: "1", tag.SOPClassUID: mrImage, tag.InstanceNumber: "1",
		tag.ImageType: `ORIGINAL\PRIMARY\AXIAL`, tag.NumberOfSeriesRelatedInstances: "1", tag.TimezoneOffsetFromUTC: "",
	})
	if v := ms[0].Strings(tag.ImageType); len(v) != 3 {
		t.Errorf("ImageType returned as %q, want three values", v)
	}

	// A PATIENT query returns the patient's aggregates and no study's
	// attributes.
	q = patientRoot
	q.Identifier = keys(t, tag.PatientID, "PID-4", tag.IssuerOfPatientID, "", tag.OtherPatientNames, "",
		tag.NumberOfPatientRelatedStudies, "", tag.NumberOfPatientRelatedSeries, "", tag.StudyDate, "")
	ms = find(t, db, &q)
	if len(ms) != 1 {
		t.Fatalf("%d matches, want 1", len(ms))
	}
	checkMatch(t, ms[0], map[tag.Tag]string{
		tag.PatientID: "PID-4", tag.IssuerOfPatientID: "ISSUER-A", tag.OtherPatientNames: `Smyth^Jon\Schmidt^Johann`,
		tag.NumberOfPatientRelatedStudies: "1", tag.NumberOfPatientRelatedSeries: "2", tag.StudyDate: "",
	})

	// Returned values are as stored: names beyond ASCII in UTF-8.
	q = studyRoot
	q.Identifier = keys(t, tag.PatientName, "", tag.PatientID, "PID-3")
	if ms := find(t, db, &q); len(ms) != 1 || ms[0].String(tag.PatientName) != "Yamada^Tarou=山田^太郎=やまだ^たろう" {
		t.Errorf("Find(PID-3) = %v", column(ms, tag.PatientName))
	}
}

// checkMatch checks that a match holds exactly the attributes of want,
// with their values, in tag order.
func checkMatch(t *testing.T, m *dicom.Dataset, want map[tag.Tag]string) {
	t.Helper()
	for tg, w := range want {
		e, ok := m.Find(tg)
		if !ok {
			t.Errorf("%s is missing", keywordOf(tg))
			continue
		}
		if got := strings.Join(e.Values, `\`); got != w {
			t.Errorf("%s = %q, want %q", keywordOf(tg), got, w)
		}
	}
	if len(m.Elements) != len(want) {
		var got []string
		for _, e := range m.Elements {
			got = append(got, keywordOf(e.Tag))
		}
		t.Errorf("match holds %d attributes %v, want %d", len(m.Elements), got, len(want))
	}
	if !slices.IsSortedFunc(m.Elements, func(a, b dicom.Element) int { return cmp.Compare(a.Tag, b.Tag) }) {
		t.Errorf("match is not in tag order")
	}
}

// testFindInvalid covers the queries Find refuses, each for its reason.
func testFindInvalid(t *testing.T, db *sqlindex.DB) {
	putQueryFixtures(t, db)
	seriesHier := index.Query{Level: index.SeriesLevel, Hierarchical: true}
	studyPatientRoot := index.Query{Level: index.StudyLevel, Hierarchical: true, PatientRoot: true}
	cases := []struct {
		name   string
		q      index.Query
		pairs  []any
		reason string
	}{
		{"no level", index.Query{}, nil, "Level"},
		{"unknown level", index.Query{Level: 9}, nil, "Level"},
		{"patient level in study root", index.Query{Level: index.PatientLevel}, nil, "PATIENT"},
		{"series UID at study level", studyRoot, []any{tag.SeriesInstanceUID, "1.1.1"}, "SeriesInstanceUID"},
		{"empty SOP UID at series level", seriesRel, []any{tag.SOPInstanceUID, ""}, "SOPInstanceUID"},
		{"study UID at patient level", patientRoot, []any{tag.StudyInstanceUID, ""}, "StudyInstanceUID"},
		{"series without study", seriesHier, []any{tag.Modality, "CT"}, "StudyInstanceUID"},
		{"series with universal study", seriesHier, []any{tag.StudyInstanceUID, ""}, "StudyInstanceUID"},
		{"image without series", index.Query{Level: index.ImageLevel, Hierarchical: true}, []any{tag.StudyInstanceUID, "1.1"}, "SeriesInstanceUID"},
		{"patient root without patient", studyPatientRoot, []any{tag.StudyDate, ""}, "PatientID"},
		{"patient ID list in hierarchy", studyPatientRoot, []any{tag.PatientID, `PID-1\PID-2`}, "PatientID"},
		{"patient ID wild card in hierarchy", studyPatientRoot, []any{tag.PatientID, `PID*`}, "PatientID"},
		{"wild card in UID", studyRoot, []any{tag.StudyInstanceUID, "1.*"}, "UID"},
		{"question mark in UID", studyRoot, []any{tag.StudyInstanceUID, "1.?"}, "UID"},
		{"wild card in date", studyRoot, []any{tag.StudyDate, "2024*"}, "wild card"},
		{"wild card in number", seriesRel, []any{tag.SeriesNumber, "1*"}, "wild card"},
		{"malformed date", studyRoot, []any{tag.StudyDate, "2024-01-01"}, "StudyDate"},
		{"date range of three", studyRoot, []any{tag.StudyDate, "20240101-20240102-20240103"}, "StudyDate"},
		{"bare hyphen", studyRoot, []any{tag.StudyDate, "-"}, "StudyDate"},
		{"malformed time", studyRoot, []any{tag.StudyTime, "2500"}, "StudyTime"},
		{"malformed date-time", imageRel, []any{tag.AcquisitionDateTime, "2024x"}, "AcquisitionDateTime"},
		{"not an integer", seriesRel, []any{tag.SeriesNumber, "one"}, "SeriesNumber"},
		{"two items", studyRoot, []any{tag.ProcedureCodeSequence, []*dicom.Dataset{item(tag.CodeValue, "A"), item(tag.CodeValue, "B")}}, "item"},
		{"malformed item key", studyRoot, []any{tag.ProcedureCodeSequence, []*dicom.Dataset{item(tag.CodeValue, "A", tag.ContextGroupVersion, "x-y-z")}}, "ContextGroupVersion"},
		{"malformed offset", imageRel, []any{tag.TimezoneOffsetFromUTC, "+25"}, "Timezone"},
		{"negative limit", index.Query{Level: index.StudyLevel, Limit: -1}, nil, "limit"},
	}
	for _, c := range cases {
		q := c.q
		q.Identifier = keys(t, c.pairs...)
		var errs []error
		for ds, err := range db.Find(t.Context(), &q) {
			if err == nil {
				t.Errorf("%s: Find(%s) matched %v", c.name, describe(&q), ds.Elements)
				continue
			}
			errs = append(errs, err)
		}
		if len(errs) != 1 || !isInvalid(errs[0]) || !strings.Contains(errs[0].Error(), c.reason) {
			t.Errorf("%s: Find(%s) errors %v, want one ErrInvalidQuery about %q", c.name, describe(&q), errs, c.reason)
		}
		if _, err := db.UnsupportedKeys(&q); !isInvalid(err) {
			t.Errorf("%s: UnsupportedKeys: %v, want ErrInvalidQuery", c.name, err)
		}
	}
	if _, err := index.ParseLevel("WORKLIST"); !isInvalid(err) {
		t.Errorf("ParseLevel(WORKLIST) = %v", err)
	}
	// Retrieval needs the unique key of its level too.
	for _, q := range []index.Query{
		{Level: index.StudyLevel, Hierarchical: true, Identifier: keys(t, tag.StudyDate, "20240101")},
		{Level: index.SeriesLevel, Hierarchical: true, Identifier: keys(t, tag.StudyInstanceUID, "1.1")},
		{Level: index.PatientLevel, Hierarchical: true, PatientRoot: true, Identifier: keys(t, tag.PatientName, "Doe^Jane")},
	} {
		if _, err := db.CountInstances(t.Context(), &q); !isInvalid(err) {
			t.Errorf("CountInstances(%s) = %v, want ErrInvalidQuery", describe(&q), err)
		}
		for _, err := range db.FindInstances(t.Context(), &q) {
			if !isInvalid(err) {
				t.Errorf("FindInstances(%s) = %v, want ErrInvalidQuery", describe(&q), err)
			}
		}
	}
}

// testFindUnsupported covers the matching keys the index cannot match
// on: they are reported, and treated as return keys.
func testFindUnsupported(t *testing.T, db *sqlindex.DB) {
	putQueryFixtures(t, db)
	private := tag.New(0x0009, 0x1010)
	q := studyRoot
	q.Identifier = keys(t, tag.StudyInstanceUID, "", tag.InstitutionName, "Nowhere", tag.StudyComments, "none",
		tag.NumberOfStudyRelatedSeries, "7", tag.ModalitiesInStudy, "", tag.StudyDescription, "CT*",
		tag.ReferencedStudySequence, []*dicom.Dataset{item(tag.ReferencedSOPInstanceUID, "9.9")},
		tag.ProcedureCodeSequence, []*dicom.Dataset{item(tag.CodeMeaning, "nothing")},
		tag.IssuerOfAccessionNumberSequence, []*dicom.Dataset{item(tag.LocalNamespaceEntityID, "")},
		tag.TimezoneOffsetFromUTC, "+0100")
	q.Identifier.Elements = append(q.Identifier.Elements, dicom.Element{Tag: private, VR: "LO", Values: []string{"x"}})
	got, err := db.UnsupportedKeys(&q)
	if err != nil {
		t.Fatal(err)
	}
	want := []tag.Tag{tag.ProcedureCodeSequence, private, tag.ReferencedStudySequence, tag.StudyComments, tag.InstitutionName, tag.NumberOfStudyRelatedSeries}
	slices.Sort(want)
	if !slices.Equal(got, want) {
		t.Errorf("UnsupportedKeys = %v, want %v", got, want)
	}
	ms := find(t, db, &q)
	if g := column(ms, tag.StudyInstanceUID); !slices.Equal(g, []string{"1.1", "2.1", "4.1"}) {
		t.Errorf("with unsupported keys, matched %q", g)
	}
	for _, m := range ms {
		for _, tg := range []tag.Tag{tag.InstitutionName, tag.StudyComments, private} {
			if v := m.String(tg); v != "" {
				t.Errorf("unsupported key %s returned %q", keywordOf(tg), v)
			}
		}
	}
	q.Identifier = keys(t, tag.ProcedureCodeSequence, []*dicom.Dataset{item(tag.CodeValue, "P-1")}, tag.PatientName, "Doe*")
	if got, err := db.UnsupportedKeys(&q); err != nil || len(got) != 0 {
		t.Errorf("UnsupportedKeys of supported keys = %v, %v", got, err)
	}
}

// testFindPaging covers Offset and Limit, and the stable order that
// makes pages follow on from each other.
func testFindPaging(t *testing.T, db *sqlindex.DB) {
	putQueryFixtures(t, db)
	page := func(q index.Query, offset, limit int) []string {
		q.Offset, q.Limit = offset, limit
		if q.Identifier == nil {
			q.Identifier = &dicom.Dataset{}
		}
		return column(find(t, db, &q), uniqueKeyOf(q.Level))
	}
	all := page(studyRoot, 0, 0)
	if !slices.Equal(all, allStudies()) {
		t.Fatalf("all studies %q", all)
	}
	for _, limit := range []int{1, 2, 4, 5, 6, 10} {
		var got []string
		for offset := 0; offset < len(all)+1; offset += limit {
			got = append(got, page(studyRoot, offset, limit)...)
		}
		if !slices.Equal(got, all) {
			t.Errorf("pages of %d: %q, want %q", limit, got, all)
		}
	}
	if got := page(studyRoot, 10, 2); len(got) != 0 {
		t.Errorf("page past the end: %q", got)
	}
	// A new study comes after the others; earlier pages stay as they
	// were.
	put(t, db, instance("0.1.1.1", "0.1.1", "0.1", base.Add(-time.Hour), header(t, tag.PatientID, "PID-0")))
	if got := page(studyRoot, 0, 6); !slices.Equal(got, all) {
		t.Errorf("first page after a put: %q", got)
	}
	if got := page(studyRoot, 6, 6); !slices.Equal(got, []string{"0.1"}) {
		t.Errorf("last page after a put: %q", got)
	}
	// Pages of a query that Go finishes checking.
	q := imageRel
	q.Identifier = keys(t, tag.ImageType, "*R*Y")
	if got := page(q, 0, 0); !slices.Equal(got, []string{"1.2.1.1", "2.1.1.1"}) {
		t.Fatalf("ImageType *R*Y matched %q", got)
	}
	if got := slices.Concat(page(q, 0, 1), page(q, 1, 1), page(q, 2, 1)); !slices.Equal(got, []string{"1.2.1.1", "2.1.1.1"}) {
		t.Errorf("pages of one: %q", got)
	}
}

func uniqueKeyOf(l index.Level) tag.Tag {
	return [...]tag.Tag{index.PatientLevel: tag.PatientID, index.StudyLevel: tag.StudyInstanceUID,
		index.SeriesLevel: tag.SeriesInstanceUID, index.ImageLevel: tag.SOPInstanceUID}[l]
}

// testFindStreaming checks that Find reads as the loop asks: with a
// batch of two rows, a study put or deleted while the loop runs is seen
// or not seen as the batches reach it, the loop body may use the DB, and
// breaking out of the loop releases it.
func testFindStreaming(t *testing.T, db *sqlindex.DB) {
	putQueryFixtures(t, db)
	q := studyRoot
	q.Identifier = keys(t, tag.StudyInstanceUID, "")
	var got []string
	for ds, err := range db.Find(t.Context(), &q) {
		if err != nil {
			t.Fatal(err)
		}
		got = append(got, ds.String(tag.StudyInstanceUID))
		if len(got) == 1 {
			// Neither would be seen had Find read every row first.
			if err := db.Delete(t.Context(), "5.1.1.1"); err != nil {
				t.Fatal(err)
			}
			put(t, db, instance("6.1.1.1", "6.1.1", "6.1", base, header(t, tag.PatientID, "PID-6")))
		}
	}
	if want := []string{"1.1", "1.2", "2.1", "3.1", "4.1", "6.1"}; !slices.Equal(got, want) {
		t.Errorf("streamed %q, want %q", got, want)
	}
	n := 0
	for _, err := range db.Find(t.Context(), &q) {
		if err != nil {
			t.Fatal(err)
		}
		if n++; n == 3 {
			break
		}
	}
	for range 2 {
		if got := column(find(t, db, &q), tag.StudyInstanceUID); len(got) != 6 {
			t.Errorf("after a break: %q", got)
		}
	}
	// FindInstances streams too.
	rq := index.Query{Level: index.StudyLevel, Identifier: keys(t, tag.StudyInstanceUID, `1.1\4.1`)}
	var sops []string
	for in, err := range db.FindInstances(t.Context(), &rq) {
		if err != nil {
			t.Fatal(err)
		}
		sops = append(sops, in.SOPInstanceUID)
		if len(sops) == 1 {
			if err := db.Delete(t.Context(), "4.1.2.1"); err != nil {
				t.Fatal(err)
			}
		}
	}
	if want := []string{"1.1.1.1", "1.1.1.2", "1.1.2.1", "4.1.1.1"}; !slices.Equal(sops, want) {
		t.Errorf("streamed instances %q, want %q", sops, want)
	}

	ctx, cancel := context.WithCancel(t.Context())
	cancel()
	failed := false
	for _, err := range db.Find(ctx, &q) {
		failed = failed || errors.Is(err, context.Canceled)
	}
	if !failed {
		t.Errorf("Find with a cancelled context yielded no context.Canceled")
	}
}

// testFindLarge checks a result of more rows than a batch, in order.
func testFindLarge(t *testing.T, db *sqlindex.DB) {
	const n = 700
	for i := range n {
		put(t, db, instance(fmt.Sprintf("7.%d.1.1", i), fmt.Sprintf("7.%d.1", i), fmt.Sprintf("7.%d", i), base,
			header(t, tag.PatientID, fmt.Sprintf("P%d", i%7), tag.PatientName, fmt.Sprintf("Name%d^Given", i%7))))
	}
	q := studyRoot
	q.Identifier = keys(t, tag.PatientName, "name3*")
	ms := find(t, db, &q)
	if len(ms) != n/7 {
		t.Fatalf("%d matches, want %d", len(ms), n/7)
	}
	for i, m := range ms {
		if want := fmt.Sprintf("7.%d", 3+7*i); m.String(tag.StudyInstanceUID) != want {
			t.Fatalf("match %d is %s, want %s", i, m.String(tag.StudyInstanceUID), want)
		}
	}
	q.Offset, q.Limit = 95, 10
	if ms := find(t, db, &q); len(ms) != 5 || ms[0].String(tag.StudyInstanceUID) != fmt.Sprintf("7.%d", 3+7*95) {
		t.Errorf("last page: %q", column(ms, tag.StudyInstanceUID))
	}
	rq := index.Query{Level: index.PatientLevel, PatientRoot: true, Hierarchical: true, Identifier: keys(t, tag.PatientID, "P3")}
	if c, err := db.CountInstances(t.Context(), &rq); err != nil || c != n/7 {
		t.Errorf("CountInstances = %d, %v; want %d", c, err, n/7)
	}
	if got := uidsOf(t, db, &rq); len(got) != n/7 {
		t.Errorf("FindInstances yielded %d, want %d", len(got), n/7)
	}
}

// testFindInstances covers retrieve identifiers at each level, with
// lists of UIDs, and the count of their instances.
func testFindInstances(t *testing.T, db *sqlindex.DB) {
	putQueryFixtures(t, db)
	cases := []struct {
		name string
		q    index.Query
		keys []any
		want []string
	}{
		{"patient", index.Query{Level: index.PatientLevel, PatientRoot: true, Hierarchical: true}, []any{tag.PatientID, "PID-1"},
			[]string{"1.1.1.1", "1.1.1.2", "1.1.2.1", "1.2.1.1"}},
		{"patients", index.Query{Level: index.PatientLevel, PatientRoot: true, Hierarchical: true}, []any{tag.PatientID, `PID-2\PID-5`},
			[]string{"2.1.1.1", "5.1.1.1"}},
		{"study", index.Query{Level: index.StudyLevel, Hierarchical: true}, []any{tag.StudyInstanceUID, "1.1"},
			[]string{"1.1.1.1", "1.1.1.2", "1.1.2.1"}},
		{"studies", index.Query{Level: index.StudyLevel, Hierarchical: true}, []any{tag.StudyInstanceUID, `4.1\1.2\9.9`},
			[]string{"1.2.1.1", "4.1.1.1", "4.1.2.1"}},
		{"study of a patient", index.Query{Level: index.StudyLevel, Hierarchical: true, PatientRoot: true},
			[]any{tag.PatientID, "PID-4", tag.StudyInstanceUID, "4.1"}, []string{"4.1.1.1", "4.1.2.1"}},
		{"study of another patient", index.Query{Level: index.StudyLevel, Hierarchical: true, PatientRoot: true},
			[]any{tag.PatientID, "PID-1", tag.StudyInstanceUID, "4.1"}, nil},
		{"series", index.Query{Level: index.SeriesLevel, Hierarchical: true}, []any{tag.StudyInstanceUID, "1.1", tag.SeriesInstanceUID, "1.1.1"},
			[]string{"1.1.1.1", "1.1.1.2"}},
		{"series list", index.Query{Level: index.SeriesLevel, Hierarchical: true},
			[]any{tag.StudyInstanceUID, "1.1", tag.SeriesInstanceUID, `1.1.2\1.1.1`}, []string{"1.1.1.1", "1.1.1.2", "1.1.2.1"}},
		{"image", index.Query{Level: index.ImageLevel, Hierarchical: true},
			[]any{tag.StudyInstanceUID, "1.1", tag.SeriesInstanceUID, "1.1.1", tag.SOPInstanceUID, "1.1.1.2"}, []string{"1.1.1.2"}},
		{"images", index.Query{Level: index.ImageLevel, Hierarchical: true, PatientRoot: true},
			[]any{tag.PatientID, "PID-4", tag.StudyInstanceUID, "4.1", tag.SeriesInstanceUID, `4.1.1\4.1.2`, tag.SOPInstanceUID, `4.1.2.1\4.1.1.1`},
			[]string{"4.1.1.1", "4.1.2.1"}},
		{"relational series", index.Query{Level: index.SeriesLevel}, []any{tag.SeriesInstanceUID, "4.1.2"}, []string{"4.1.2.1"}},
		{"relational image", index.Query{Level: index.ImageLevel}, []any{tag.SOPInstanceUID, "2.1.1.1"}, []string{"2.1.1.1"}},
		{"relational keys", index.Query{Level: index.StudyLevel}, []any{tag.ModalitiesInStudy, "PR"}, []string{"4.1.1.1", "4.1.2.1"}},
		{"relational page", index.Query{Level: index.StudyLevel, Offset: 1, Limit: 2}, []any{tag.PatientID, "PID-1"}, []string{"1.1.1.2", "1.1.2.1"}},
		{"nothing", index.Query{Level: index.StudyLevel, Hierarchical: true}, []any{tag.StudyInstanceUID, "9.9"}, nil},
	}
	for _, c := range cases {
		q := c.q
		q.Identifier = keys(t, c.keys...)
		if got := uidsOf(t, db, &q); !slices.Equal(got, c.want) {
			t.Errorf("%s: FindInstances(%s) = %q, want %q", c.name, describe(&q), got, c.want)
		}
		if n, err := db.CountInstances(t.Context(), &q); err != nil || n != len(c.want) {
			t.Errorf("%s: CountInstances(%s) = %d, %v; want %d", c.name, describe(&q), n, err, len(c.want))
		}
	}
	// The records are those Instance returns.
	q := index.Query{Level: index.StudyLevel, Identifier: keys(t, tag.StudyInstanceUID, "1.1")}
	for in, err := range db.FindInstances(t.Context(), &q) {
		if err != nil {
			t.Fatal(err)
		}
		want, err := db.Instance(t.Context(), in.SOPInstanceUID)
		if err != nil {
			t.Fatal(err)
		}
		if !reflect.DeepEqual(*in, *want) {
			t.Errorf("FindInstances yielded %+v, want %+v", *in, *want)
		}
	}
}

// testFindIssuers checks per-trust access: a query restricted to issuers
// finds, counts and retrieves only the patients of those issuers, at
// every level, whatever its keys ask for.
func testFindIssuers(t *testing.T, db *sqlindex.DB) {
	put(t, db, instance("1.1", "1.100", "1", base, patientHeader(t, "12345", "TRUST-A", "Smith^Ann")))
	put(t, db, instance("2.1", "2.100", "2", base, patientHeader(t, "12345", "TRUST-B", "Jones^Bob")))
	put(t, db, instance("3.1", "3.100", "3", base, patientHeader(t, "12345", "", "Brown^Cy")))
	put(t, db, instance("4.1", "4.100", "4", base, patientHeader(t, "777", "TRUST-B", "Gray^Di")))
	cases := []struct {
		name    string
		issuers []string
		want    []string // SOP Instance UIDs
	}{
		{"all", nil, []string{"1.1", "2.1", "3.1", "4.1"}},
		{"one", []string{"TRUST-A"}, []string{"1.1"}},
		{"other", []string{"TRUST-B"}, []string{"2.1", "4.1"}},
		{"both", []string{"TRUST-B", "TRUST-A"}, []string{"1.1", "2.1", "4.1"}},
		{"unknown", []string{"TRUST-C"}, nil},
		{"none", []string{}, nil},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			for _, l := range []index.Level{index.PatientLevel, index.StudyLevel, index.SeriesLevel, index.ImageLevel} {
				q := &index.Query{Level: l, PatientRoot: true, Identifier: keys(t, tag.PatientID, "", tag.IssuerOfPatientID, ""), Issuers: c.issuers}
				got := find(t, db, q)
				var issuers []string
				for _, m := range got {
					if is := m.String(tag.IssuerOfPatientID); !slices.Contains(issuers, is) {
						issuers = append(issuers, is)
					}
				}
				for _, is := range issuers {
					if c.issuers != nil && !slices.Contains(c.issuers, is) {
						t.Errorf("%s: Find at %s returned a patient of issuer %q", c.name, l, is)
					}
				}
				if l == index.ImageLevel && len(got) != len(c.want) {
					t.Errorf("%s: Find at IMAGE returned %d matches, want %d", c.name, len(got), len(c.want))
				}
			}
			// A retrieve by UIDs of every study finds only the allowed.
			q := &index.Query{Level: index.StudyLevel, Identifier: keys(t, tag.StudyInstanceUID, `1\2\3\4`), Issuers: c.issuers}
			if got := uidsOf(t, db, q); !slices.Equal(got, c.want) {
				t.Errorf("%s: FindInstances = %q, want %q", c.name, got, c.want)
			}
			if n, err := db.CountInstances(t.Context(), q); err != nil || n != len(c.want) {
				t.Errorf("%s: CountInstances = %d, %v; want %d", c.name, n, err, len(c.want))
			}
		})
	}
}
