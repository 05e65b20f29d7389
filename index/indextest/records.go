package indextest

import (
	"errors"
	"testing"
	"time"

	"github.com/pacsd/pacsd/dicom"
	"github.com/pacsd/pacsd/dicom/tag"
	"github.com/pacsd/pacsd/index"
	"github.com/pacsd/pacsd/index/sqlindex"
)

// testRecords checks what the index does with the records in storage of
// its changes (package archive, Journal): each record is applied once,
// in the change's transaction, whatever the change; a removal takes only
// the objects its record names, at its time; a correction keeps its
// record and time; links by hand are logged for the audit trail.
func testRecords(t *testing.T, db *sqlindex.DB) {
	ctx := t.Context()
	h := patientHeader(t, "P", "RXH", "Doe^Jane")
	a := instance("1.2.3.1", "1.2.3.100", "1.2.3", base, h)
	b := instance("1.2.3.2", "1.2.3.100", "1.2.3", base, h)
	put(t, db, a)
	put(t, db, b)

	keys, err := db.SelectionKeys(ctx, index.Selection{StudyInstanceUID: "1.2.3"})
	if err != nil || len(keys) != 2 {
		t.Fatalf("SelectionKeys = %v, %v", keys, err)
	}
	at := time.Date(2025, 1, 2, 3, 4, 5, 6000, time.UTC)
	// The record names a only: b arrived after the record was written.
	removal := index.Removal{Selection: index.Selection{StudyInstanceUID: "1.2.3"}, Reason: "test", Keys: []string{a.Key}, Record: "r/delete", Time: at}
	removed, err := db.Remove(ctx, removal)
	if err != nil || len(removed) != 1 || removed[0].Key != a.Key {
		t.Fatalf("Remove by record = %+v, %v; want a only", removed, err)
	}
	if _, err := db.Instance(ctx, b.SOPInstanceUID); err != nil {
		t.Errorf("instance the record does not name removed: %v", err)
	}
	if tr, err := db.Trash(ctx, "1.2.3"); err != nil || len(tr) != 1 || !tr[0].RemovedAt.Equal(at) {
		t.Errorf("trash = %+v, %v; want a removed at the record's time %v", tr, err, at)
	}
	if _, err := db.Remove(ctx, removal); !errors.Is(err, index.ErrApplied) {
		t.Errorf("Remove of a record applied = %v, want ErrApplied", err)
	}
	if ok, outcome, err := db.Applied(ctx, "r/delete"); !ok || outcome != "" || err != nil {
		t.Errorf("Applied = %v, %q, %v", ok, outcome, err)
	}
	if ok, _, err := db.Applied(ctx, "r/none"); ok || err != nil {
		t.Errorf("Applied of a record never seen = %v, %v", ok, err)
	}
	if err := db.MarkApplied(ctx, "r/refused", "study gone"); err != nil {
		t.Fatal(err)
	}
	if ok, outcome, err := db.Applied(ctx, "r/refused"); !ok || outcome != "study gone" || err != nil {
		t.Errorf("Applied of a record refused = %v, %q, %v", ok, outcome, err)
	}

	after := &dicom.Dataset{Elements: []dicom.Element{{Tag: tag.PatientName, VR: "PN", Values: []string{"Roe^Richard"}}}}
	c, err := db.Correct(ctx, &index.Correction{Study: "1.2.3", After: after, Reason: "misspelt", Principal: "carol", Record: "r/correct", Time: at})
	if err != nil || !c.Time.Equal(at) || c.Record != "r/correct" {
		t.Fatalf("Correct by record = %+v, %v", c, err)
	}
	if _, err := db.Correct(ctx, &index.Correction{Study: "1.2.3", After: after, Reason: "misspelt", Record: "r/correct"}); !errors.Is(err, index.ErrApplied) {
		t.Errorf("Correct of a record applied = %v, want ErrApplied", err)
	}
	if got, err := db.CorrectionByRecord(ctx, "r/correct"); err != nil || got.ID != c.ID {
		t.Errorf("CorrectionByRecord = %+v, %v; want %d", got, err, c.ID)
	}
	u, err := db.UndoCorrection(ctx, &index.Correction{Undoes: c.ID, Reason: "no", Record: "r/undo", Time: at.Add(time.Second)})
	if err != nil || u.Undoes != c.ID || u.Record != "r/undo" {
		t.Fatalf("UndoCorrection = %+v, %v", u, err)
	}
	if list, err := db.Corrections(ctx, "1.2.3"); err != nil || len(list) != 2 || list[0].UndoneBy != u.ID {
		t.Errorf("Corrections = %+v, %v", list, err)
	}

	p1, p2 := index.PatientKey{ID: "P", Issuer: "RXH"}, index.PatientKey{ID: "Q", Issuer: "RYJ"}
	if err := db.LinkPatients(ctx, index.Link{Patients: []index.PatientKey{p1, p2}, Record: "r/link", Principal: "frank", Time: at}); err != nil {
		t.Fatal(err)
	}
	if err := db.LinkPatients(ctx, index.Link{Patients: []index.PatientKey{p1, p2}, Record: "r/link"}); !errors.Is(err, index.ErrApplied) {
		t.Errorf("LinkPatients of a record applied = %v, want ErrApplied", err)
	}
	if err := db.LinkPatients(ctx, index.Link{Patients: []index.PatientKey{p2}, Unlink: true, Principal: "frank"}); err != nil {
		t.Fatal(err)
	}
	events, err := db.UnauditedLinks(ctx, 10)
	if err != nil || len(events) != 2 || events[0].Action != index.ActionLink || events[1].Action != index.ActionUnlink ||
		events[0].Principal != "frank" || !events[0].Time.Equal(at) || len(events[0].Patients) != 2 || events[0].Patients[1] != p2 {
		t.Fatalf("UnauditedLinks = %+v, %v", events, err)
	}
	if err := db.MarkLinksAudited(ctx, []int64{events[0].ID}); err != nil {
		t.Fatal(err)
	}
	if rest, err := db.UnauditedLinks(ctx, 10); err != nil || len(rest) != 1 || rest[0].ID != events[1].ID {
		t.Errorf("UnauditedLinks after marking one = %+v, %v", rest, err)
	}
}
