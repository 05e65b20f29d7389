package indextest

import (
	"slices"
	"testing"
	"time"

	"github.com/pacsd/pacsd/dicom"
	"github.com/pacsd/pacsd/dicom/tag"
	"github.com/pacsd/pacsd/index"
	"github.com/pacsd/pacsd/index/sqlindex"
)

// issuerAmendment is what the archive gives an instance that came
// without an issuer.
func issuerAmendment(issuer string) *dicom.Dataset {
	return &dicom.Dataset{Elements: []dicom.Element{{Tag: tag.IssuerOfPatientID, VR: "LO", Values: []string{issuer}}}}
}

// studiesOf returns the Study Instance UID, Patient ID and issuer of
// every study a STUDY query with the keys given finds, sorted.
func studiesOf(t *testing.T, db *sqlindex.DB, pairs ...any) []string {
	t.Helper()
	ident := with(t, header(t, tag.StudyInstanceUID, "", tag.PatientID, "", tag.IssuerOfPatientID, ""), pairs...)
	var out []string
	for m, err := range db.Find(t.Context(), &index.Query{Level: index.StudyLevel, Identifier: ident}) {
		if err != nil {
			t.Fatalf("Find: %v", err)
		}
		out = append(out, m.String(tag.StudyInstanceUID)+" "+m.String(tag.PatientID)+"^"+m.String(tag.IssuerOfPatientID))
	}
	slices.Sort(out)
	return out
}

func testIdentity(t *testing.T, db *sqlindex.DB) {
	ctx := t.Context()
	// Two trusts send the same Patient ID without an issuer; the archive
	// gives each the issuer of its sender.
	for i, issuer := range []string{"RXH", "RYJ"} {
		in := instance("1.9.1."+string(rune('1'+i)), "1.9.2."+string(rune('1'+i)), "1.9.3."+string(rune('1'+i)),
			base.Add(time.Duration(i)*time.Second), header(t, tag.PatientID, "123", tag.PatientName, "Same^Id"))
		in.Amended = issuerAmendment(issuer)
		put(t, db, in)
	}
	if got, want := studiesOf(t, db, tag.PatientID, "123"), []string{"1.9.3.1 123^RXH", "1.9.3.2 123^RYJ"}; !slices.Equal(got, want) {
		t.Errorf("studies of 123 = %q, want %q", got, want)
	}
	getPatient(t, db, "123", "RXH")
	getPatient(t, db, "123", "RYJ")
	got, err := db.Instance(ctx, "1.9.1.1")
	if err != nil || got.Amended.String(tag.IssuerOfPatientID) != "RXH" {
		t.Fatalf("Instance(1.9.1.1) = %+v, %v; want it amended with issuer RXH", got, err)
	}
	for in, err := range db.FindInstances(ctx, &index.Query{Level: index.StudyLevel, Identifier: header(t, tag.StudyInstanceUID, "1.9.3.2")}) {
		if err != nil || in.Amended.String(tag.IssuerOfPatientID) != "RYJ" {
			t.Errorf("FindInstances = %+v, %v; want it amended with issuer RYJ", in, err)
		}
	}
	// A new version of an instance keeps its amendments.
	again := instance("1.9.1.1", "1.9.2.1", "1.9.3.1", base.Add(time.Minute), header(t, tag.PatientID, "123", tag.PatientName, "Same^Id"))
	put(t, db, again)
	if got, err := db.Instance(ctx, "1.9.1.1"); err != nil || got.Amended.String(tag.IssuerOfPatientID) != "RXH" {
		t.Errorf("Instance(1.9.1.1) after a new version = %+v, %v; want it still amended with issuer RXH", got, err)
	}
	checkCounts(t, db, index.Counts{Patients: 2, Studies: 2, Series: 2, Instances: 2})
}

func testLinks(t *testing.T, db *sqlindex.DB) {
	ctx := t.Context()
	const number = "9434765919"
	for i, p := range []struct{ id, issuer, nhs string }{
		{"L1", "RXH", number},   // NHS number in Other Patient IDs Sequence
		{number, "NHS", number}, // NHS number as the Patient ID
		{"L3", "RYJ", ""},       // an invalid one, which the archive does not pass on
		{"L4", "RAL", ""},
	} {
		in := instance("1.8.1."+string(rune('1'+i)), "1.8.2."+string(rune('1'+i)), "1.8.3."+string(rune('1'+i)),
			base, patientHeader(t, p.id, p.issuer, "Linked^Person"))
		if _, err := db.Put(ctx, &index.PutRequest{Instance: in, NHSNumber: p.nhs}); err != nil {
			t.Fatal(err)
		}
	}
	byNHS := func(issuer string) []string {
		return studiesOf(t, db, tag.PatientID, number, tag.IssuerOfPatientID, issuer)
	}
	want := []string{"1.8.3.1 L1^RXH", "1.8.3.2 " + number + "^NHS"}
	for _, issuer := range []string{"NHS", "2.16.840.1.113883.2.1.4.1"} {
		if got := byNHS(issuer); !slices.Equal(got, want) {
			t.Errorf("studies of NHS number by issuer %s = %q, want %q", issuer, got, want)
		}
	}
	// Without an NHS issuer, the Patient ID is matched as it is.
	if got := studiesOf(t, db, tag.PatientID, number); !slices.Equal(got, want[1:]) {
		t.Errorf("studies of Patient ID %s = %q, want %q", number, got, want[1:])
	}

	if err := db.Link(ctx, index.PatientKey{ID: "L1", Issuer: "RXH"}, index.PatientKey{ID: "L3", Issuer: "RYJ"}); err != nil {
		t.Fatal(err)
	}
	want = []string{"1.8.3.1 L1^RXH", "1.8.3.2 " + number + "^NHS", "1.8.3.3 L3^RYJ"}
	if got := byNHS("NHS"); !slices.Equal(got, want) {
		t.Errorf("after linking L3: %q, want %q", got, want)
	}
	person, err := db.Person(ctx, index.PatientKey{ID: "L3", Issuer: "RYJ"})
	if err != nil {
		t.Fatal(err)
	}
	var keys []string
	for _, p := range person.Patients {
		keys = append(keys, p.String())
		if len(p.Studies) != 1 {
			t.Errorf("patient %s has %d studies, want 1", p, len(p.Studies))
		}
	}
	slices.Sort(keys)
	if wantKeys := []string{number + "^NHS", "L1^RXH", "L3^RYJ"}; person.NHSNumber != number || !slices.Equal(keys, wantKeys) {
		t.Errorf("Person(L3^RYJ) = %s, %q; want %s, %q", person.NHSNumber, keys, number, wantKeys)
	}

	if err := db.Unlink(ctx, index.PatientKey{ID: "L1", Issuer: "RXH"}); err != nil {
		t.Fatal(err)
	}
	want = []string{"1.8.3.2 " + number + "^NHS", "1.8.3.3 L3^RYJ"}
	if got := byNHS("NHS"); !slices.Equal(got, want) {
		t.Errorf("after unlinking L1: %q, want %q", got, want)
	}
	// An instance that comes later with the NHS number leaves a patient
	// unlinked by hand alone.
	later := instance("1.8.1.9", "1.8.2.1", "1.8.3.1", base.Add(time.Hour), patientHeader(t, "L1", "RXH", "Linked^Person"))
	if _, err := db.Put(ctx, &index.PutRequest{Instance: later, NHSNumber: number}); err != nil {
		t.Fatal(err)
	}
	if got := byNHS("NHS"); !slices.Equal(got, want) {
		t.Errorf("after a new instance of L1: %q, want %q", got, want)
	}

	// Two different NHS numbers are two people.
	other := instance("1.8.1.8", "1.8.2.8", "1.8.3.8", base, patientHeader(t, "L8", "RXH", "Other^Person"))
	if _, err := db.Put(ctx, &index.PutRequest{Instance: other, NHSNumber: "4010232137"}); err != nil {
		t.Fatal(err)
	}
	if err := db.Link(ctx, index.PatientKey{ID: "L8", Issuer: "RXH"}, index.PatientKey{ID: number, Issuer: "NHS"}); err == nil {
		t.Error("Link of two NHS numbers succeeded")
	}
	if _, err := db.Person(ctx, index.PatientKey{ID: "nobody", Issuer: "X"}); err == nil {
		t.Error("Person of an unknown patient succeeded")
	}
}
