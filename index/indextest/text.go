package indextest

import (
	"github.com/pacsd/pacsd/index/sqlindex"

	"testing"

	"github.com/pacsd/pacsd/dicom/tag"
	"github.com/pacsd/pacsd/index"
)

// testInvalidText puts a header whose text is not all UTF-8 (values in a
// character set it did not declare) and holds NUL characters, which not
// every database can keep as text. The index keeps it all the same, with
// U+FFFD for each byte that is not UTF-8 and without the NULs, and finds
// it by the values as they came. A record whose storage facts are not
// such text is refused: they name the object, and may not change.
func testInvalidText(t *testing.T, db *sqlindex.DB) {
	h := with(t, patientHeader(t, "ID\xe9", "", "M\xfcller^J\x00rgen"),
		tag.StudyDescription, "Thorax\x00 \xff",
		tag.AccessionNumber, "A\xe91")
	put(t, db, instance("1.1", "1.1.1", "1", base, h))
	put(t, db, instance("1.2", "1.1.1", "1", base, h))
	checkCounts(t, db, index.Counts{Patients: 1, Studies: 1, Series: 1, Instances: 2})

	p := getPatient(t, db, "ID\xe9", "")
	checkAttr(t, "patient", p.Attributes, tag.PatientID, "ID\uFFFD")
	checkAttr(t, "patient", p.Attributes, tag.PatientName, "M\uFFFDller^Jrgen")
	if got := p.Search[tag.PatientName]; got != "M\uFFFDLLER^JRGEN" {
		t.Errorf("normalized name = %q", got)
	}
	s := getStudy(t, db, "1")
	checkAttr(t, "study", s.Attributes, tag.StudyDescription, "Thorax \uFFFD")
	if s.PatientID != "ID\uFFFD" {
		t.Errorf("study's Patient ID = %q", s.PatientID)
	}

	for _, pairs := range [][]any{
		{tag.AccessionNumber, "A\xe91"},
		{tag.PatientID, "ID\xe9"},
		{tag.PatientName, "m\xfcller*"},
		{tag.StudyDescription, "Thorax*\x00"},
	} {
		q := &index.Query{Level: index.StudyLevel, Identifier: keys(t, pairs...)}
		if got := column(find(t, db, q), tag.StudyInstanceUID); len(got) != 1 || got[0] != "1" {
			t.Errorf("Find(%s) matched studies %q, want 1", describe(q), got)
		}
	}

	for _, bad := range []func(in *index.Instance){
		func(in *index.Instance) { in.Key = "1/1.1.1/\xff.dcm" },
		func(in *index.Instance) { in.SOPInstanceUID = "1.3\x00" },
		func(in *index.Instance) { in.CallingAE = "MOD\xe9" },
	} {
		in := instance("1.3", "1.1.1", "1", base, h)
		bad(in)
		if _, err := db.Put(t.Context(), &index.PutRequest{Instance: in}); err == nil {
			t.Errorf("Put of %+v succeeded", *in)
		}
	}
	checkCounts(t, db, index.Counts{Patients: 1, Studies: 1, Series: 1, Instances: 2})
}
