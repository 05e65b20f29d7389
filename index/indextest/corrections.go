package indextest

import (
	"errors"
	"slices"
	"testing"
	"time"

	"github.com/pacsd/pacsd/dicom"
	"github.com/pacsd/pacsd/dicom/tag"
	"github.com/pacsd/pacsd/index"
	"github.com/pacsd/pacsd/index/sqlindex"
)

func testCorrections(t *testing.T, db *sqlindex.DB) {
	ctx := t.Context()
	p1 := patientHeader(t, "P1", "RXH", "Wrong^Name")
	put(t, db, instance("1.7.1.1", "1.7.2.1", "1.7.3.1", base, with(t, p1, tag.StudyDescription, "CT HEAD")))
	put(t, db, instance("1.7.1.2", "1.7.2.1", "1.7.3.1", base, with(t, p1, tag.StudyDescription, "CT HEAD")))
	put(t, db, instance("1.7.1.3", "1.7.2.2", "1.7.3.1", base, with(t, p1, tag.StudyDescription, "CT HEAD")))
	put(t, db, instance("1.7.1.4", "1.7.2.4", "1.7.3.2", base, patientHeader(t, "P2", "RXH", "Other^Patient")))
	put(t, db, instance("1.7.1.5", "1.7.2.5", "1.7.3.3", base, patientHeader(t, "P5", "RYJ", "Third^Patient")))

	name := func(study string) string {
		t.Helper()
		p, err := db.StudyPatient(ctx, study)
		if err != nil {
			t.Fatalf("StudyPatient(%s): %v", study, err)
		}
		return p.Attributes.String(tag.PatientName) + " " + p.PatientID + "^" + p.IssuerOfPatientID
	}
	amended := func(sop string, tg tag.Tag) string {
		t.Helper()
		in, err := db.Instance(ctx, sop)
		if err != nil {
			t.Fatalf("Instance(%s): %v", sop, err)
		}
		return in.Amended.String(tg)
	}
	after := func(pairs ...any) *dicom.Dataset { return header(t, pairs...) }

	// No reason, nothing changes.
	_, err := db.Correct(ctx, &index.Correction{Study: "1.7.3.1", After: after(tag.PatientName, "Right^Name")})
	if !errors.Is(err, index.ErrInvalidCorrection) {
		t.Errorf("Correct without a reason = %v, want ErrInvalidCorrection", err)
	}
	if _, err := db.Correct(ctx, &index.Correction{Study: "1.7.3.1", Reason: "x", After: after(tag.Modality, "MR")}); !errors.Is(err, index.ErrInvalidCorrection) {
		t.Errorf("Correct of Modality = %v, want ErrInvalidCorrection", err)
	}
	if got := name("1.7.3.1"); got != "Wrong^Name P1^RXH" {
		t.Fatalf("patient = %q", got)
	}

	c1, err := db.Correct(ctx, &index.Correction{Study: "1.7.3.1", Reason: "wrong name", Principal: "alice",
		After: after(tag.PatientName, "Right^Name", tag.StudyDescription, "CT HEAD W/O")})
	if err != nil {
		t.Fatal(err)
	}
	if c1.ID == 0 || c1.Before.String(tag.PatientName) != "Wrong^Name" || c1.Before.String(tag.StudyDescription) != "CT HEAD" {
		t.Errorf("correction = %+v", c1)
	}
	if got := name("1.7.3.1"); got != "Right^Name P1^RXH" {
		t.Errorf("patient after correction = %q", got)
	}
	if got := studiesOf(t, db, tag.PatientName, "right*"); !slices.Equal(got, []string{"1.7.3.1 P1^RXH"}) {
		t.Errorf("studies of right* = %q", got)
	}
	if got := getStudy(t, db, "1.7.3.1").Attributes.String(tag.StudyDescription); got != "CT HEAD W/O" {
		t.Errorf("Study Description = %q", got)
	}
	for _, sop := range []string{"1.7.1.1", "1.7.1.2", "1.7.1.3"} {
		if got := amended(sop, tag.PatientName); got != "Right^Name" {
			t.Errorf("%s served with name %q", sop, got)
		}
		// The time of the correction, which the archive serves, to
		// the microsecond the index keeps.
		if in, err := db.Instance(ctx, sop); err != nil || !in.AmendedAt.Equal(c1.Time.Truncate(time.Microsecond)) {
			t.Errorf("%s amended at %v, want the correction's time %v (%v)", sop, in.AmendedAt, c1.Time, err)
		}
	}
	if ins := instancesOfStudy(t, db, "1.7.3.1"); len(ins) == 0 || !ins[0].AmendedAt.Equal(c1.Time.Truncate(time.Microsecond)) {
		t.Errorf("FindInstances: amended at %v, want %v", ins, c1.Time)
	}
	if in, err := db.Instance(ctx, "1.7.1.4"); err != nil || !in.AmendedAt.IsZero() {
		t.Errorf("an instance of another study amended at %v (%v), want never", in.AmendedAt, err)
	}
	// The change feed tells of each instance corrected.
	feed, err := db.Changes(ctx, 0, 1000)
	if err != nil {
		t.Fatal(err)
	}
	var corrected []string
	for _, e := range feed {
		if e.Kind == index.Corrected {
			corrected = append(corrected, e.SOPInstanceUID)
		}
	}
	slices.Sort(corrected)
	if want := []string{"1.7.1.1", "1.7.1.2", "1.7.1.3"}; !slices.Equal(corrected, want) {
		t.Errorf("change feed: corrected %q, want %q", corrected, want)
	}

	// A new Patient ID files the study under another patient.
	if _, err := db.Correct(ctx, &index.Correction{Study: "1.7.3.1", Reason: "wrong ID", After: after(tag.PatientID, "P3")}); err != nil {
		t.Fatal(err)
	}
	if got := name("1.7.3.1"); got != "Right^Name P3^RXH" {
		t.Errorf("patient after a new ID = %q", got)
	}
	if _, err := db.Patient(ctx, "P1", "RXH"); !errors.Is(err, index.ErrNotFound) {
		t.Errorf("Patient(P1) = %v, want it gone", err)
	}
	// An instance received later, as the modality still names it, is
	// filed and served as corrected.
	put(t, db, instance("1.7.1.6", "1.7.2.1", "1.7.3.1", base.Add(time.Hour), with(t, p1, tag.StudyDescription, "CT HEAD")))
	if got := name("1.7.3.1"); got != "Right^Name P3^RXH" {
		t.Errorf("patient after a later instance = %q", got)
	}
	if got := amended("1.7.1.6", tag.PatientID); got != "P3" {
		t.Errorf("later instance served with Patient ID %q", got)
	}

	// The wrong-patient fix: series 1.7.2.2 belongs to P2's study.
	mv, err := db.MoveSeries(ctx, &index.Correction{Series: "1.7.2.2", Target: "1.7.3.2", Reason: "wrong patient"})
	if err != nil {
		t.Fatal(err)
	}
	if mv.Study != "1.7.3.1" || getSeries(t, db, "1.7.2.2").StudyInstanceUID != "1.7.3.2" {
		t.Errorf("move = %+v; series in %s", mv, getSeries(t, db, "1.7.2.2").StudyInstanceUID)
	}
	if got := amended("1.7.1.3", tag.StudyInstanceUID) + " " + amended("1.7.1.3", tag.PatientID) + " " + amended("1.7.1.3", tag.PatientName); got != "1.7.3.2 P2 Other^Patient" {
		t.Errorf("moved instance served as %q", got)
	}
	if in, _ := db.Instance(ctx, "1.7.1.3"); in.StudyInstanceUID != "1.7.3.2" {
		t.Errorf("moved instance's record names study %s", in.StudyInstanceUID)
	}
	if st := getStudy(t, db, "1.7.3.2"); st.NumberOfStudyRelatedInstances != 2 {
		t.Errorf("target study has %d instances, want 2", st.NumberOfStudyRelatedInstances)
	}

	// Moving the only series of a study leaves it empty; undo makes it
	// again.
	if _, err := db.MoveSeries(ctx, &index.Correction{Series: "1.7.2.5", Target: "1.7.3.2", Reason: "wrong patient"}); err != nil {
		t.Fatal(err)
	}
	if _, err := db.Study(ctx, "1.7.3.3"); !errors.Is(err, index.ErrNotFound) {
		t.Errorf("Study(1.7.3.3) after its only series moved = %v, want ErrNotFound", err)
	}
	list, err := db.Corrections(ctx, "1.7.3.3")
	if err != nil || len(list) != 1 {
		t.Fatalf("Corrections(1.7.3.3) = %v, %v", list, err)
	}
	if _, err := db.Undo(ctx, list[0].ID, "", "bob"); !errors.Is(err, index.ErrInvalidCorrection) {
		t.Errorf("Undo without a reason = %v", err)
	}
	if _, err := db.Undo(ctx, list[0].ID, "moved by mistake", "bob"); err != nil {
		t.Fatal(err)
	}
	if got := name("1.7.3.3"); got != "Third^Patient P5^RYJ" {
		t.Errorf("study made again under %q", got)
	}
	if got := amended("1.7.1.5", tag.StudyInstanceUID); got != "1.7.3.3" {
		t.Errorf("instance moved back served in study %q", got)
	}
	if _, err := db.Undo(ctx, list[0].ID, "again", "bob"); !errors.Is(err, index.ErrInvalidCorrection) {
		t.Errorf("second Undo = %v, want ErrInvalidCorrection", err)
	}

	// Undo of the name correction brings the name back.
	if _, err := db.Undo(ctx, c1.ID, "it was right", "bob"); err != nil {
		t.Fatal(err)
	}
	if got := name("1.7.3.1"); got != "Wrong^Name P3^RXH" {
		t.Errorf("patient after undo = %q", got)
	}
	if got := amended("1.7.1.1", tag.PatientName); got != "Wrong^Name" {
		t.Errorf("instance after undo served with name %q", got)
	}
	list, err = db.Corrections(ctx, "1.7.3.1")
	if err != nil {
		t.Fatal(err)
	}
	if len(list) != 4 || list[0].UndoneBy != list[3].ID || list[3].Undoes != list[0].ID || list[0].Principal != "alice" || list[0].Reason != "wrong name" {
		t.Errorf("Corrections(1.7.3.1) = %d: %+v", len(list), list)
	}
	checkCounts(t, db, index.Counts{Patients: 3, Studies: 3, Series: 4, Instances: 6})
}

// instancesOfStudy returns the records FindInstances gives of a study.
func instancesOfStudy(t *testing.T, db *sqlindex.DB, study string) []*index.Instance {
	t.Helper()
	q := &index.Query{Level: index.StudyLevel, Identifier: &dicom.Dataset{Elements: []dicom.Element{
		{Tag: tag.StudyInstanceUID, VR: "UI", Values: []string{study}}}}}
	var out []*index.Instance
	for in, err := range db.FindInstances(t.Context(), q) {
		if err != nil {
			t.Fatal(err)
		}
		out = append(out, in)
	}
	return out
}
