package indextest

import (
	"github.com/pacsd/pacsd/index/sqlindex"

	"errors"
	"fmt"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/pacsd/pacsd/dicom"
	"github.com/pacsd/pacsd/dicom/tag"
	"github.com/pacsd/pacsd/index"
)

// The query tests share one archive of a few patients, studies, series
// and instances, each chosen for what it lets a key tell apart: names
// with several component groups and letters beyond ASCII, dates and
// times of every precision, sequences of several items.

// fixture is an instance of the query archive.
type fixture struct {
	sop, series, study string
	class              string
	pairs              []any
}

var (
	doeJane  = []any{tag.PatientID, "PID-1", tag.PatientName, "Doe^Jane", tag.PatientBirthDate, "19700101", tag.PatientSex, "F"}
	muller   = []any{tag.PatientID, "PID-2", tag.PatientName, "Müller^Jürgen", tag.PatientBirthDate, "19551231", tag.PatientSex, "M"}
	yamada   = []any{tag.PatientID, "PID-3", tag.PatientName, "Yamada^Tarou=山田^太郎=やまだ^たろう", tag.PatientSex, "M"}
	smithDr  = []any{tag.PatientID, "PID-4", tag.IssuerOfPatientID, "ISSUER-A", tag.PatientName, "Smith^John^^Dr", tag.OtherPatientNames, `Smyth^Jon\Schmidt^Johann`}
	smithAnn = []any{tag.PatientID, "PID-5", tag.PatientName, "smith^anna",
		tag.IssuerOfPatientIDQualifiersSequence, []*dicom.Dataset{{Elements: []dicom.Element{
			{Tag: tag.UniversalEntityID, VR: "UT", Values: []string{"1.2.3.4.5"}},
			{Tag: tag.UniversalEntityIDType, VR: "CS", Values: []string{"ISO"}},
		}}}}
)

func studyAttrs(date, tm, accession, description string, more ...any) []any {
	return append([]any{tag.StudyDate, date, tag.StudyTime, tm, tag.AccessionNumber, accession, tag.StudyDescription, description}, more...)
}

func item(pairs ...any) *dicom.Dataset {
	ds := &dicom.Dataset{}
	for i := 0; i < len(pairs); i += 2 {
		t := pairs[i].(tag.Tag)
		info, _ := tag.Lookup(t)
		ds.Elements = append(ds.Elements, dicom.Element{Tag: t, VR: info.VR, Values: []string{pairs[i+1].(string)}})
	}
	return ds
}

func queryFixtures() []fixture {
	ct := func(pairs ...any) []any { return append([]any{tag.Modality, "CT"}, pairs...) }
	s11 := studyAttrs("20240101", "103000", "ACC-1", "CT chest", tag.ReferringPhysicianName, "Ref^Rita")
	s12 := studyAttrs("20240215", "1030", "ACC-2", "MR brain", tag.ReferringPhysicianName, "Neuro^Nina")
	s21 := studyAttrs("20231231", "235959.5", "ACC-3", "CT abdomen")
	s31 := studyAttrs("2024.03.01", "10", "ACC-4", "US neck",
		tag.IssuerOfAccessionNumberSequence, []*dicom.Dataset{item(tag.LocalNamespaceEntityID, "RIS-A")},
		tag.ProcedureCodeSequence, []*dicom.Dataset{
			item(tag.CodeValue, "P-1", tag.CodingSchemeDesignator, "99LOCAL", tag.CodeMeaning, "US neck"),
			item(tag.CodeValue, "P-2", tag.CodingSchemeDesignator, "99OTHER", tag.CodeMeaning, "US thyroid"),
		})
	s41 := studyAttrs("20240101", "", "ACC-5", "CT head")
	s51 := studyAttrs("", "", "", "")
	requests := []*dicom.Dataset{
		item(tag.ScheduledProcedureStepID, "SPS-1", tag.RequestedProcedureID, "RP-1"),
		item(tag.ScheduledProcedureStepID, "SPS-2", tag.RequestedProcedureID, "RP-2"),
	}
	cat := func(parts ...[]any) []any { return slices.Concat(parts...) }
	return []fixture{
		{"1.1.1.1", "1.1.1", "1.1", ctImage, cat(doeJane, s11, ct(tag.SeriesNumber, "1", tag.SeriesDescription, "Axial", tag.InstanceNumber, "1",
			tag.ContentDate, "20240101", tag.ContentTime, "103015.25", tag.AcquisitionDateTime, "20240101103015+0100"))},
		{"1.1.1.2", "1.1.1", "1.1", ctImage, cat(doeJane, s11, ct(tag.SeriesNumber, "1", tag.SeriesDescription, "Axial", tag.InstanceNumber, "2",
			tag.ContentDate, "20240101", tag.ContentTime, "1031", tag.AcquisitionDateTime, "20240101093016"))},
		{"1.1.2.1", "1.1.2", "1.1", srBasic, cat(doeJane, s11, []any{tag.Modality, "SR", tag.SeriesNumber, "2", tag.InstanceNumber, "1",
			tag.ConceptNameCodeSequence, []*dicom.Dataset{item(tag.CodeValue, "18748-4", tag.CodingSchemeDesignator, "LN", tag.CodeMeaning, "Diagnostic imaging report")},
			tag.CompletionFlag, "COMPLETE"})},
		{"1.2.1.1", "1.2.1", "1.2", mrImage, cat(doeJane, s12, []any{tag.Modality, "MR", tag.SeriesNumber, "1", tag.InstanceNumber, "1",
			tag.OperatorsName, `Op^Anna\Tech^Tom`, tag.ImageType, `ORIGINAL\PRIMARY\AXIAL`})},
		{"2.1.1.1", "2.1.1", "2.1", ctImage, cat(muller, s21, ct(tag.SeriesNumber, "1", tag.RequestAttributesSequence, requests,
			tag.InstanceNumber, "1", tag.ImageType, `DERIVED\SECONDARY`))},
		{"3.1.1.1", "3.1.1", "3.1", ctImage, cat(yamada, s31, []any{tag.Modality, "US", tag.SeriesNumber, "1", tag.InstanceNumber, "1"})},
		{"4.1.1.1", "4.1.1", "4.1", ctImage, cat(smithDr, s41, ct(tag.SeriesNumber, "1", tag.InstanceNumber, "1", tag.ContentTime, "10"))},
		{"4.1.2.1", "4.1.2", "4.1", prState, cat(smithDr, s41, []any{tag.Modality, "PR", tag.SeriesNumber, "2", tag.InstanceNumber, "1"})},
		{"5.1.1.1", "5.1.1", "5.1", mrImage, cat(smithAnn, s51, []any{tag.Modality, "MR", tag.SeriesNumber, "1", tag.InstanceNumber, "1"})},
	}
}

// putQueryFixtures puts the query archive into db, an instance a second.
func putQueryFixtures(t *testing.T, db *sqlindex.DB) {
	t.Helper()
	for i, f := range queryFixtures() {
		in := instance(f.sop, f.series, f.study, base.Add(time.Duration(i)*time.Second), header(t, f.pairs...))
		in.SOPClassUID = f.class
		put(t, db, in)
	}
}

// keys builds an identifier from tag/value pairs, as header does; a
// value "" makes a return key.
func keys(t *testing.T, pairs ...any) *dicom.Dataset {
	t.Helper()
	ds := header(t, pairs...)
	for i := range ds.Elements {
		e := &ds.Elements[i]
		if len(e.Values) == 1 && e.Values[0] == "" {
			e.Values = nil
		}
	}
	return ds
}

// find runs q and returns its matches, failing the test on an error.
func find(t *testing.T, db *sqlindex.DB, q *index.Query) []*dicom.Dataset {
	t.Helper()
	var out []*dicom.Dataset
	for ds, err := range db.Find(t.Context(), q) {
		if err != nil {
			t.Fatalf("Find(%s): %v", describe(q), err)
		}
		out = append(out, ds)
	}
	return out
}

// column returns the value of tg in each match.
func column(matches []*dicom.Dataset, tg tag.Tag) []string {
	out := []string{}
	for _, m := range matches {
		out = append(out, m.String(tg))
	}
	return out
}

func describe(q *index.Query) string {
	var b strings.Builder
	fmt.Fprintf(&b, "%s", q.Level)
	if q.Hierarchical {
		b.WriteString(" hierarchical")
	}
	if q.PatientRoot {
		b.WriteString(" patient-root")
	}
	for _, e := range q.Identifier.Elements {
		fmt.Fprintf(&b, " %s=%q", keywordOf(e.Tag), e.Values)
		if e.VR == "SQ" && len(e.Items) > 0 {
			for _, ie := range e.Items[0].Elements {
				fmt.Fprintf(&b, " >%s=%q", keywordOf(ie.Tag), ie.Values)
			}
		}
	}
	return b.String()
}

func keywordOf(t tag.Tag) string {
	if i, ok := tag.Lookup(t); ok {
		return i.Keyword
	}
	return t.String()
}

// matchCase is a query and the values of one attribute its matches
// must have, in order.
type matchCase struct {
	name  string
	q     index.Query
	pairs []any
	want  []string
}

func runMatchCases(t *testing.T, db *sqlindex.DB, got tag.Tag, cases []matchCase) {
	t.Helper()
	for _, c := range cases {
		q := c.q
		q.Identifier = keys(t, c.pairs...)
		ms := find(t, db, &q)
		if g := column(ms, got); !slices.Equal(g, c.want) {
			t.Errorf("%s: Find(%s) matched %s %q, want %q", c.name, describe(&q), keywordOf(got), g, c.want)
		}
	}
}

func uidsOf(t *testing.T, db *sqlindex.DB, q *index.Query) []string {
	t.Helper()
	var out []string
	for in, err := range db.FindInstances(t.Context(), q) {
		if err != nil {
			t.Fatalf("FindInstances(%s): %v", describe(q), err)
		}
		out = append(out, in.SOPInstanceUID)
	}
	return out
}

func isInvalid(err error) bool { return errors.Is(err, index.ErrInvalidQuery) }
