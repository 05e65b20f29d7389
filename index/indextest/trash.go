package indextest

import (
	"errors"
	"testing"
	"time"

	"github.com/pacsd/pacsd/index"
	"github.com/pacsd/pacsd/index/sqlindex"
)

// testTrash removes instances at each level, restores, claims and
// purges, and checks what queries, counts and the removal log say at
// each step.
func testTrash(t *testing.T, db *sqlindex.DB) {
	ctx := t.Context()
	h := patientHeader(t, "P", "", "Doe^Jane")
	a := instance("1.2.3.1", "1.2.3.100", "1.2.3", base, h)
	b := instance("1.2.3.2", "1.2.3.100", "1.2.3", base, h)
	c := instance("1.2.3.3", "1.2.3.200", "1.2.3", base, h)
	other := instance("1.2.4.1", "1.2.4.100", "1.2.4", base, h)
	for _, in := range []*index.Instance{a, b, c, other} {
		put(t, db, in)
	}

	_, err := db.Remove(ctx, index.Removal{Selection: index.Selection{StudyInstanceUID: "1.2.3"}})
	if err == nil {
		t.Fatal("Remove without a reason succeeded")
	}
	last, err := db.LastChange(ctx)
	if err != nil {
		t.Fatal(err)
	}
	removed, err := db.Remove(ctx, index.Removal{Selection: index.Selection{StudyInstanceUID: "1.2.3", SeriesInstanceUID: "1.2.3.100",
		SOPInstanceUID: a.SOPInstanceUID}, Reason: "wrong image", Principal: "alice"})
	if err != nil || len(removed) != 1 || removed[0].Key != a.Key {
		t.Fatalf("Remove(instance) = %+v, %v", removed, err)
	}
	// The change feed tells of the removal.
	if ch, err := db.Changes(ctx, last, 10); err != nil || len(ch) != 1 || ch[0].Kind != index.Deleted || ch[0].SOPInstanceUID != a.SOPInstanceUID {
		t.Errorf("change feed after the removal: %+v, %v; want one deleted entry of %s", ch, err, a.SOPInstanceUID)
	}
	_, err = db.Instance(ctx, a.SOPInstanceUID)
	checkGone(t, "Instance of a removed instance", err)
	checkCounts(t, db, index.Counts{Patients: 1, Studies: 2, Series: 3, Instances: 3})
	if n := getSeries(t, db, "1.2.3.100").NumberOfSeriesRelatedInstances; n != 1 {
		t.Errorf("series has %d instances after removing one of two, want 1", n)
	}
	if ok, err := db.Trashed(ctx, a.Key); !ok || err != nil {
		t.Errorf("Trashed(%s) = %v, %v; want true", a.Key, ok, err)
	}

	if _, err := db.Remove(ctx, index.Removal{Selection: index.Selection{StudyInstanceUID: "1.2.3"}, Reason: "duplicate study"}); err != nil {
		t.Fatalf("Remove(study): %v", err)
	}
	checkCounts(t, db, index.Counts{Patients: 1, Studies: 1, Series: 1, Instances: 1})
	_, err = db.Study(ctx, "1.2.3")
	checkGone(t, "Study removed", err)
	if s := getStudy(t, db, "1.2.4"); s.NumberOfStudyRelatedInstances != 1 {
		t.Errorf("the other study has %d instances", s.NumberOfStudyRelatedInstances)
	}
	_, err = db.Remove(ctx, index.Removal{Selection: index.Selection{StudyInstanceUID: "1.2.3"}, Reason: "again"})
	if !errors.Is(err, index.ErrNotFound) {
		t.Errorf("Remove of a removed study = %v, want ErrNotFound", err)
	}

	trash, err := db.Trash(ctx, "1.2.3")
	if err != nil || len(trash) != 3 {
		t.Fatalf("Trash = %d rows, %v; want 3", len(trash), err)
	}
	restorable, err := db.Restorable(ctx, "1.2.3")
	if err != nil || len(restorable) != 3 {
		t.Fatalf("Restorable = %d rows, %v; want 3", len(restorable), err)
	}
	// A restore re-puts each instance under its key: the trash lets go
	// of it in the put's transaction.
	back := *b
	back.ReceivedAt = b.ReceivedAt
	if _, err := db.Put(ctx, &index.PutRequest{Instance: &back, Untrash: true}); err != nil {
		t.Fatalf("Put(Untrash): %v", err)
	}
	checkInstance(t, db, b)
	if ok, _ := db.Trashed(ctx, b.Key); ok {
		t.Errorf("restored instance still in the trash")
	}
	if _, err := db.Put(ctx, &index.PutRequest{Instance: &back, Untrash: true}); !errors.Is(err, index.ErrNotFound) {
		t.Errorf("second Put(Untrash) = %v, want ErrNotFound", err)
	}

	// A purge claims what is due; a restore then leaves it alone.
	claimed, err := db.ClaimPurge(ctx, time.Now().Add(time.Hour), 1)
	if err != nil || len(claimed) != 1 {
		t.Fatalf("ClaimPurge = %+v, %v", claimed, err)
	}
	restorable, _ = db.Restorable(ctx, "1.2.3")
	if len(restorable) != 1 {
		t.Errorf("Restorable after a claim = %d rows, want 1", len(restorable))
	}
	cl := claimed[0].Instance
	if _, err := db.Put(ctx, &index.PutRequest{Instance: &cl, Untrash: true}); !errors.Is(err, index.ErrNotFound) {
		t.Errorf("Put(Untrash) of a claimed instance = %v, want ErrNotFound", err)
	}
	if err := db.Purged(ctx, []string{cl.Key}); err != nil {
		t.Fatal(err)
	}
	rest, _ := db.ClaimPurge(ctx, time.Now().Add(time.Hour), 10)
	if len(rest) != 1 {
		t.Fatalf("ClaimPurge of the rest = %d rows, want 1", len(rest))
	}
	if err := db.Purged(ctx, []string{rest[0].Key}); err != nil {
		t.Fatal(err)
	}
	if trash, _ := db.Trash(ctx, ""); len(trash) != 0 {
		t.Errorf("trash after purging holds %d rows", len(trash))
	}

	events, err := db.Events(ctx, "1.2.3")
	if err != nil || len(events) != 2 {
		t.Fatalf("Events = %+v, %v; want 2", events, err)
	}
	if e := events[0]; e.Action != index.ActionDelete || e.Instances != 1 || e.Reason != "wrong image" || e.Principal != "alice" ||
		e.SOPInstanceUID != a.SOPInstanceUID || e.Time.IsZero() {
		t.Errorf("first event = %+v", e)
	}
	if e := events[1]; e.Instances != 2 || e.PatientID != "P" || e.PatientName != "Doe^Jane" {
		t.Errorf("study removal logged as %+v, want 2 instances of patient P", e)
	}
	un, err := db.Unaudited(ctx, 1)
	if err != nil || len(un) != 1 || un[0].ID != events[0].ID {
		t.Fatalf("Unaudited = %+v, %v; want the first entry", un, err)
	}
	if err := db.MarkAudited(ctx, []int64{un[0].ID}); err != nil {
		t.Fatal(err)
	}
	if un, _ := db.Unaudited(ctx, 10); len(un) != 1 || un[0].ID != events[1].ID {
		t.Errorf("Unaudited after marking the first = %+v", un)
	}
}

// testReject applies a rejection note: the instances it names leave the
// archive's view, and are refused when put again.
func testReject(t *testing.T, db *sqlindex.DB) {
	ctx := t.Context()
	h := patientHeader(t, "P", "", "Doe^Jane")
	a := instance("1.2.3.1", "1.2.3.100", "1.2.3", base, h)
	b := instance("1.2.3.2", "1.2.3.100", "1.2.3", base, h)
	put(t, db, a)
	put(t, db, b)
	r := index.Rejection{Code: "113001", Note: "1.2.3.9", Instances: []index.Selection{
		{StudyInstanceUID: "1.2.3", SeriesInstanceUID: "1.2.3.100", SOPInstanceUID: a.SOPInstanceUID},
		{StudyInstanceUID: "1.2.3", SeriesInstanceUID: "1.2.3.100", SOPInstanceUID: "1.2.3.7"}, // not arrived yet
	}}
	removed, err := db.Reject(ctx, r)
	if err != nil || len(removed) != 1 {
		t.Fatalf("Reject = %+v, %v", removed, err)
	}
	checkCounts(t, db, index.Counts{Patients: 1, Studies: 1, Series: 1, Instances: 1})
	if again, err := db.Reject(ctx, r); err != nil || len(again) != 0 {
		t.Errorf("Reject again = %+v, %v", again, err)
	}
	for _, sop := range []string{a.SOPInstanceUID, "1.2.3.7"} {
		in := instance(sop, "1.2.3.100", "1.2.3", base, h)
		in.Key += ".v2"
		if _, err := db.Put(ctx, &index.PutRequest{Instance: in}); !errors.Is(err, index.ErrRejected) {
			t.Errorf("Put(%s) after rejection = %v, want ErrRejected", sop, err)
		}
	}
	if code, ok, err := db.Rejected(ctx, "1.2.3.7"); code != "113001" || !ok || err != nil {
		t.Errorf("Rejected = %q, %v, %v", code, ok, err)
	}
	// Hidden, not in the trash: no purge takes it, no restore brings it
	// back.
	if c, _ := db.ClaimPurge(ctx, time.Now().Add(time.Hour), 10); len(c) != 0 {
		t.Errorf("ClaimPurge took %d hidden instances", len(c))
	}
	if ok, _ := db.Trashed(ctx, a.Key); !ok {
		t.Errorf("hidden instance's object not accounted for")
	}
	if rs, _ := db.Restorable(ctx, "1.2.3"); len(rs) != 0 {
		t.Errorf("Restorable returned %d rejected instances", len(rs))
	}
}
