package archive

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"iter"
	"path/filepath"
	"slices"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/pacsd/pacsd/dicom"
	"github.com/pacsd/pacsd/dicom/tag"
	"github.com/pacsd/pacsd/dicom/uid"
	"github.com/pacsd/pacsd/index"
	"github.com/pacsd/pacsd/index/postgres"
	"github.com/pacsd/pacsd/index/sqlindex"
	"github.com/pacsd/pacsd/index/sqlite"
	"github.com/pacsd/pacsd/internal/testpeer"
	"github.com/pacsd/pacsd/storage"
	"github.com/pacsd/pacsd/storage/mem"
)

// openDB opens an empty index of one engine for a test.
type openDB func(t *testing.T) *sqlindex.DB

func openSQLite(t *testing.T) *sqlindex.DB {
	db, err := sqlite.Open(t.Context(), filepath.Join(t.TempDir(), "index.db"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { db.Close() })
	return db
}

func openPostgres(pg *testpeer.Postgres) openDB {
	return func(t *testing.T) *sqlindex.DB {
		db, err := postgres.Open(t.Context(), pg.NewDatabaseT(t))
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { db.Close() })
		return db
	}
}

// TestRebuildFromRecords deletes, restores, purges, corrects, undoes,
// moves a series, links and unlinks, over instances given their issuer
// by their sender, then rebuilds an empty index from the bucket alone:
// it must show what the first one showed, and Verify must find both
// clean. On SQLite and PostgreSQL.
func TestRebuildFromRecords(t *testing.T) {
	t.Run("sqlite", func(t *testing.T) { testRebuild(t, openSQLite) })
	t.Run("postgres", func(t *testing.T) {
		testRebuild(t, openPostgres(testpeer.StartPostgresT(t)))
	})
}

func putFrom(t *testing.T, svc *Service, d *ds, sop, ae string) {
	t.Helper()
	_, err := svc.Store(t.Context(), &StoreRequest{
		SOPClassUID: uid.CTImageStorage, SOPInstanceUID: sop, TransferSyntaxUID: uid.ExplicitVRLittleEndian,
		CallingAE: ae, CalledAE: "PACSD", Source: SourceDIMSE, Dataset: bytes.NewReader(d.b.Bytes()),
	})
	if err != nil {
		t.Fatalf("store %s from %s: %v", sop, ae, err)
	}
}

// purgedReason is the reason of the deletion the scenario purges.
const purgedReason = "wrong image, purged"

// scenarioSOPs, scenarioStudies and scenarioPatients are what a
// snapshot looks at.
var (
	scenarioSOPs     = []string{"1.2.3.4.1", "1.2.3.4.2", "1.2.3.5.1", "1.2.9.4.1", "1.2.8.4.1", "1.2.8.4.2", "1.2.7.4.1"}
	scenarioStudies  = []string{"1.2.3", "1.2.9", "1.2.8", "1.2.7"}
	scenarioPatients = []index.PatientKey{{ID: "P1", Issuer: "RXH"}, {ID: "P1", Issuer: "RYJ"}, {ID: "P7", Issuer: "X"}, {ID: "P8", Issuer: "Y"}}
)

func testRebuild(t *testing.T, open openDB) {
	ctx := t.Context()
	store := mem.New()
	db := open(t)
	svc := New(Config{Store: store, Index: db, AETitle: "PACSD",
		Issuers: IssuerPolicy{ByAE: map[string]string{"CT01": "RXH"}, Default: "RYJ"}})
	putFrom(t, svc, instance("1.2.3", "1.2.3.4", "1.2.3.4.1"), "1.2.3.4.1", "CT01")
	putFrom(t, svc, instance("1.2.3", "1.2.3.4", "1.2.3.4.2"), "1.2.3.4.2", "CT01")
	putFrom(t, svc, instance("1.2.3", "1.2.3.5", "1.2.3.5.1"), "1.2.3.5.1", "CT01")
	putFrom(t, svc, instance("1.2.9", "1.2.9.4", "1.2.9.4.1"), "1.2.9.4.1", "MR02")
	putFrom(t, svc, instance("1.2.8", "1.2.8.4", "1.2.8.4.1"), "1.2.8.4.1", "CT01")
	putFrom(t, svc, instance("1.2.8", "1.2.8.4", "1.2.8.4.2"), "1.2.8.4.2", "CT01")
	if p, err := db.StudyPatient(ctx, "1.2.9"); err != nil || p.IssuerOfPatientID != "RYJ" {
		t.Fatalf("patient of a study from MR02: %+v, %v; want the default issuer RYJ", p, err)
	}

	trash := &Trash{Store: store, Index: db}
	journal := &Journal{Store: store, Index: db}
	step := func(what string, err error) {
		t.Helper()
		if err != nil {
			t.Fatalf("%s: %v", what, err)
		}
	}
	_, err := trash.Delete(ctx, index.Removal{Selection: index.Selection{StudyInstanceUID: "1.2.8", SeriesInstanceUID: "1.2.8.4",
		SOPInstanceUID: "1.2.8.4.1"}, Reason: purgedReason, Principal: "alice"})
	step("delete an instance", err)
	_, err = trash.Purge(ctx, time.Now(), "alice")
	step("purge", err)
	_, err = trash.Delete(ctx, index.Removal{Selection: index.Selection{StudyInstanceUID: "1.2.8", SeriesInstanceUID: "1.2.8.4",
		SOPInstanceUID: "1.2.8.4.2"}, Reason: "wrong image too", Principal: "alice"})
	step("delete another", err)
	_, err = trash.Delete(ctx, index.Removal{Selection: index.Selection{StudyInstanceUID: "1.2.3", SeriesInstanceUID: "1.2.3.5"},
		Reason: "test series", Principal: "bob"})
	step("delete a series", err)
	_, err = trash.Restore(ctx, "1.2.3", "deleted by mistake", "bob")
	step("restore", err)
	// Deleted, then sent again: the new version is live, the old one in
	// the trash.
	putFrom(t, svc, instance("1.2.7", "1.2.7.4", "1.2.7.4.1"), "1.2.7.4.1", "CT01")
	_, err = trash.Delete(ctx, index.Removal{Selection: index.Selection{StudyInstanceUID: "1.2.7"}, Reason: "sent again", Principal: "bob"})
	step("delete a study", err)
	putFrom(t, svc, instance("1.2.7", "1.2.7.4", "1.2.7.4.1"), "1.2.7.4.1", "CT01")
	name := &dicom.Dataset{Elements: []dicom.Element{{Tag: tag.PatientName, VR: "PN", Values: []string{"Roe^Richard"}}}}
	_, err = journal.Correct(ctx, &index.Correction{Study: "1.2.3", After: name, Reason: "misspelt", Principal: "carol"})
	step("correct", err)
	desc := &dicom.Dataset{Elements: []dicom.Element{{Tag: tag.StudyDescription, VR: "LO", Values: []string{"CHEST"}}}}
	c, err := journal.Correct(ctx, &index.Correction{Study: "1.2.9", After: desc, Reason: "description", Principal: "carol"})
	step("correct another", err)
	_, err = journal.Undo(ctx, c.ID, "not this one", "dave")
	step("undo", err)
	_, err = journal.MoveSeries(ctx, &index.Correction{Series: "1.2.3.5", Target: "1.2.9", Reason: "wrong patient", Principal: "erin"})
	step("move a series", err)
	step("link", journal.LinkPatients(ctx, index.Link{Patients: scenarioPatients[:2], Principal: "frank"}))
	step("link others", journal.LinkPatients(ctx, index.Link{Patients: scenarioPatients[2:], Principal: "frank"}))
	step("unlink", journal.LinkPatients(ctx, index.Link{Patients: scenarioPatients[3:], Unlink: true, Principal: "frank"}))
	// A change the index refuses leaves no record.
	if _, err := journal.Correct(ctx, &index.Correction{Study: "1.2.777", After: name, Reason: "no such study"}); !errors.Is(err, index.ErrNotFound) {
		t.Errorf("correction of a study that does not exist: %v", err)
	}

	want := snapshot(t, db)
	verifyClean(t, "original", store, db)

	rebuilt := open(t)
	p, err := Reindex(ctx, store, rebuilt, func(p Progress) {
		if p.Err != nil {
			t.Errorf("reindex: %v", p.Err)
		}
	})
	if err != nil || p.Failed != 0 || p.Refused != 0 {
		t.Fatalf("Reindex = %+v, %v", p, err)
	}
	if got := snapshot(t, rebuilt); got != want {
		t.Errorf("rebuilt index shows\n%s\nthe original showed\n%s", got, want)
	}
	verifyClean(t, "rebuilt", store, rebuilt)
	// Replaying again changes nothing.
	if res, err := ReplayRecords(ctx, store, rebuilt, nil); err != nil || res.Applied != 0 {
		t.Errorf("second replay = %+v, %v; want nothing applied", res, err)
	}
	if got := snapshot(t, rebuilt); got != want {
		t.Errorf("after a second replay the index shows\n%s", got)
	}
}

func verifyClean(t *testing.T, what string, store storage.Store, db *sqlindex.DB) {
	t.Helper()
	res, err := Verify(t.Context(), store, db, func(p Problem) { t.Errorf("%s: verify: %v", what, p) })
	if err != nil || res.Problems != 0 {
		t.Errorf("%s: verify = %+v, %v", what, res, err)
	}
}

// snapshot writes what an index shows of the scenario: the QIDO-RS
// results at the study and image levels, the instances and their
// objects and amendments, the trash, the corrections (IDs as positions)
// and the persons.
func snapshot(t *testing.T, db *sqlindex.DB) string {
	t.Helper()
	ctx := t.Context()
	var b strings.Builder
	find := func(level index.Level, tags ...tag.Tag) {
		q := &index.Query{Level: level, Identifier: &dicom.Dataset{}}
		for _, tg := range tags {
			q.Identifier.Elements = append(q.Identifier.Elements, dicom.Element{Tag: tg, VR: vrOf(tg)})
		}
		var rows []string
		for ds, err := range db.Find(ctx, q) {
			if err != nil {
				t.Fatalf("find: %v", err)
			}
			j, err := ds.MarshalJSON()
			if err != nil {
				t.Fatal(err)
			}
			rows = append(rows, string(j))
		}
		slices.Sort(rows)
		fmt.Fprintf(&b, "find %v:\n  %s\n", level, strings.Join(rows, "\n  "))
	}
	find(index.StudyLevel, tag.StudyInstanceUID, tag.PatientName, tag.PatientID, tag.IssuerOfPatientID, tag.StudyDescription,
		tag.NumberOfStudyRelatedInstances)
	find(index.ImageLevel, tag.StudyInstanceUID, tag.SeriesInstanceUID, tag.SOPInstanceUID)
	for _, sop := range scenarioSOPs {
		in, err := db.Instance(ctx, sop)
		switch {
		case errors.Is(err, index.ErrNotFound):
			fmt.Fprintf(&b, "instance %s: none\n", sop)
		case err != nil:
			t.Fatal(err)
		default:
			amended, _ := json.Marshal(in.Amended)
			fmt.Fprintf(&b, "instance %s: study %s key %s amended %s\n", sop, in.StudyInstanceUID, in.Key, amended)
		}
	}
	trash, err := db.Trash(ctx, "")
	if err != nil {
		t.Fatal(err)
	}
	for _, tr := range trash {
		fmt.Fprintf(&b, "trash %s: %s purge=%v removed %v\n", tr.Key, tr.Cause, tr.Purge, tr.RemovedAt)
	}
	ids := map[int64]int{}
	var corrections []*index.Correction
	for _, st := range scenarioStudies {
		list, err := db.Corrections(ctx, st)
		if err != nil {
			t.Fatal(err)
		}
		for _, c := range list {
			if _, ok := ids[c.ID]; !ok {
				ids[c.ID] = len(ids) + 1
				corrections = append(corrections, c)
			}
		}
	}
	slices.SortFunc(corrections, func(a, b *index.Correction) int { return a.Time.Compare(b.Time) })
	for _, c := range corrections {
		before, _ := c.Before.MarshalJSON()
		after, _ := c.After.MarshalJSON()
		fmt.Fprintf(&b, "correction #%d: study %s series %s target %s reason %q by %s at %v before %s after %s undoes #%d undone by #%d\n",
			ids[c.ID], c.Study, c.Series, c.Target, c.Reason, c.Principal, c.Time, before, after, ids[c.Undoes], ids[c.UndoneBy])
	}
	for _, k := range scenarioPatients {
		p, err := db.Person(ctx, k)
		if errors.Is(err, index.ErrNotFound) {
			fmt.Fprintf(&b, "person of %s: none\n", k)
			continue
		}
		if err != nil {
			t.Fatal(err)
		}
		var members []string
		for _, pp := range p.Patients {
			members = append(members, fmt.Sprintf("%s manual=%v studies=%d", pp.PatientKey, pp.Manual, len(pp.Studies)))
		}
		fmt.Fprintf(&b, "person of %s: nhs %q %v\n", k, p.NHSNumber, members)
	}
	events, err := db.Events(ctx, "")
	if err != nil {
		t.Fatal(err)
	}
	for _, e := range events {
		// A purge is not replayed, and the record of a deletion goes
		// with the last of its objects: the log of a rebuilt index
		// lacks them.
		if e.Action == index.ActionPurge || e.Reason == purgedReason {
			continue
		}
		fmt.Fprintf(&b, "event %s %s/%s/%s %d %q by %s\n", e.Action, e.StudyInstanceUID, e.SeriesInstanceUID, e.SOPInstanceUID,
			e.Instances, e.Reason, e.Principal)
	}
	return b.String()
}

func vrOf(t tag.Tag) string {
	switch t {
	case tag.PatientName:
		return "PN"
	case tag.StudyInstanceUID, tag.SeriesInstanceUID, tag.SOPInstanceUID:
		return "UI"
	case tag.NumberOfStudyRelatedInstances:
		return "IS"
	}
	return "LO"
}

// faultyIndex is an index whose changes fail at an armed step: before
// the change (refused), after it (made, then the answer lost), or with
// a crash after the record is written (nothing of the index answers
// again, as if the process had died).
type faultyIndex struct {
	*sqlindex.DB
	fault string
	dead  atomic.Bool
}

const (
	faultBefore = "index fails, change not made"
	faultAfter  = "index makes the change, then fails"
	faultCrash  = "process dies after the record"
)

func (f *faultyIndex) around(fn func() error) error {
	switch f.fault {
	case faultBefore:
		return errInjected
	case faultCrash:
		f.dead.Store(true)
		return errInjected
	case faultAfter:
		if err := fn(); err != nil {
			return err
		}
		return errInjected
	}
	return fn()
}

func (f *faultyIndex) Applied(ctx context.Context, key string) (bool, string, error) {
	if f.dead.Load() {
		return false, "", errInjected
	}
	return f.DB.Applied(ctx, key)
}

func (f *faultyIndex) Remove(ctx context.Context, r index.Removal) (out []index.Instance, err error) {
	return out, f.around(func() error { out, err = f.DB.Remove(ctx, r); return err })
}

func (f *faultyIndex) Correct(ctx context.Context, c *index.Correction) (out *index.Correction, err error) {
	return out, f.around(func() error { out, err = f.DB.Correct(ctx, c); return err })
}

func (f *faultyIndex) MoveSeries(ctx context.Context, c *index.Correction) (out *index.Correction, err error) {
	return out, f.around(func() error { out, err = f.DB.MoveSeries(ctx, c); return err })
}

func (f *faultyIndex) UndoCorrection(ctx context.Context, c *index.Correction) (out *index.Correction, err error) {
	return out, f.around(func() error { out, err = f.DB.UndoCorrection(ctx, c); return err })
}

func (f *faultyIndex) Put(ctx context.Context, req *index.PutRequest) (out *index.Change, err error) {
	return out, f.around(func() error { out, err = f.DB.Put(ctx, req); return err })
}

func (f *faultyIndex) Restorable(ctx context.Context, study string) ([]index.Trashed, error) {
	if f.dead.Load() {
		return nil, errInjected
	}
	return f.DB.Restorable(ctx, study)
}

func (f *faultyIndex) MarkApplied(ctx context.Context, key, outcome string) error {
	if f.dead.Load() {
		return errInjected
	}
	return f.DB.MarkApplied(ctx, key, outcome)
}

func (f *faultyIndex) LinkPatients(ctx context.Context, l index.Link) error {
	return f.around(func() error { return f.DB.LinkPatients(ctx, l) })
}

// recordFaults is a store whose writes of records fail when armed, and
// whose writes and deletes all fail once its process is dead.
type recordFaults struct {
	storage.Store
	failRecords bool
	dead        *atomic.Bool
}

func (s *recordFaults) Put(ctx context.Context, key string, r io.Reader, size int64) (storage.Info, error) {
	if s.dead.Load() || s.failRecords && IsRecord(key) {
		return storage.Info{}, errInjected
	}
	return s.Store.Put(ctx, key, r, size)
}

func (s *recordFaults) Delete(ctx context.Context, key string) error {
	if s.dead.Load() {
		return errInjected
	}
	return s.Store.Delete(ctx, key)
}

// TestRecordFaults makes each kind of recorded change fail at each step
// — the record's write, the index before and after the change, a crash
// between the record and the index — then restarts (ReplayRecords) and
// checks that the index and an index rebuilt from the bucket agree, and
// whether the change took place: never when the record failed or the
// index refused it, always when the index made it or the record was
// durable when the process died.
func TestRecordFaults(t *testing.T) {
	changes := []struct {
		name string
		// setup, if not nil, prepares the change without faults.
		setup func(ctx context.Context, tr *Trash, j *Journal) error
		do    func(ctx context.Context, tr *Trash, j *Journal) error
		// made reports whether the change shows in db.
		made func(t *testing.T, db *sqlindex.DB) bool
	}{
		{"delete", nil, func(ctx context.Context, tr *Trash, _ *Journal) error {
			_, err := tr.Delete(ctx, index.Removal{Selection: index.Selection{StudyInstanceUID: "1.2.3", SeriesInstanceUID: "1.2.3.4"}, Reason: "test"})
			return err
		}, func(t *testing.T, db *sqlindex.DB) bool {
			_, err := db.Instance(t.Context(), "1.2.3.4.1")
			return errors.Is(err, index.ErrNotFound)
		}},
		{"correct", nil, func(ctx context.Context, _ *Trash, j *Journal) error {
			_, err := j.Correct(ctx, &index.Correction{Study: "1.2.3", Reason: "test",
				After: &dicom.Dataset{Elements: []dicom.Element{{Tag: tag.PatientName, VR: "PN", Values: []string{"Roe^Richard"}}}}})
			return err
		}, func(t *testing.T, db *sqlindex.DB) bool {
			p, err := db.StudyPatient(t.Context(), "1.2.3")
			return err == nil && p.Attributes.String(tag.PatientName) == "Roe^Richard"
		}},
		{"move", nil, func(ctx context.Context, _ *Trash, j *Journal) error {
			_, err := j.MoveSeries(ctx, &index.Correction{Series: "1.2.3.5", Target: "1.2.9", Reason: "test"})
			return err
		}, func(t *testing.T, db *sqlindex.DB) bool {
			in, err := db.Instance(t.Context(), "1.2.3.5.1")
			return err == nil && in.StudyInstanceUID == "1.2.9"
		}},
		{"link", nil, func(ctx context.Context, _ *Trash, j *Journal) error {
			return j.LinkPatients(ctx, index.Link{Patients: scenarioPatients[:2]})
		}, func(t *testing.T, db *sqlindex.DB) bool {
			p, err := db.Person(t.Context(), scenarioPatients[0])
			return err == nil && len(p.Patients) == 2
		}},
		{"restore", func(ctx context.Context, tr *Trash, _ *Journal) error {
			_, err := tr.Delete(ctx, index.Removal{Selection: index.Selection{StudyInstanceUID: "1.2.3", SeriesInstanceUID: "1.2.3.4"}, Reason: "test"})
			return err
		}, func(ctx context.Context, tr *Trash, _ *Journal) error {
			_, err := tr.Restore(ctx, "1.2.3", "test", "")
			return err
		}, func(t *testing.T, db *sqlindex.DB) bool {
			_, err := db.Instance(t.Context(), "1.2.3.4.1")
			return err == nil
		}},
		{"undo", func(ctx context.Context, _ *Trash, j *Journal) error {
			_, err := j.Correct(ctx, &index.Correction{Study: "1.2.3", Reason: "test",
				After: &dicom.Dataset{Elements: []dicom.Element{{Tag: tag.PatientName, VR: "PN", Values: []string{"Roe^Richard"}}}}})
			return err
		}, func(ctx context.Context, _ *Trash, j *Journal) error {
			list, err := j.Index.(*faultyIndex).Corrections(ctx, "1.2.3")
			if err != nil {
				return err
			}
			_, err = j.Undo(ctx, list[0].ID, "test", "")
			return err
		}, func(t *testing.T, db *sqlindex.DB) bool {
			p, err := db.StudyPatient(t.Context(), "1.2.3")
			return err == nil && p.Attributes.String(tag.PatientName) == "Doe^Jane"
		}},
	}
	for _, ch := range changes {
		for _, fault := range []string{"record write fails", faultBefore, faultAfter, faultCrash} {
			t.Run(ch.name+"/"+fault, func(t *testing.T) {
				ctx := t.Context()
				base := mem.New()
				db := openSQLite(t)
				svc := New(Config{Store: base, Index: db, AETitle: "PACSD", Issuers: IssuerPolicy{Default: "RXH"}})
				putFrom(t, svc, instance("1.2.3", "1.2.3.4", "1.2.3.4.1"), "1.2.3.4.1", "CT01")
				putFrom(t, svc, instance("1.2.3", "1.2.3.5", "1.2.3.5.1"), "1.2.3.5.1", "CT01")
				putFrom(t, svc, instance("1.2.9", "1.2.9.4", "1.2.9.4.1"), "1.2.9.4.1", "CT01")
				if ch.setup != nil {
					if err := ch.setup(ctx, &Trash{Store: base, Index: db}, &Journal{Store: base, Index: db}); err != nil {
						t.Fatal(err)
					}
				}
				fi := &faultyIndex{DB: db}
				st := &recordFaults{Store: base, dead: &fi.dead}
				if fault == "record write fails" {
					st.failRecords = true
				} else {
					fi.fault = fault
				}
				err := ch.do(ctx, &Trash{Store: st, Index: fi}, &Journal{Store: st, Index: fi})
				if err == nil {
					t.Fatal("the change succeeded despite the fault")
				}
				// Restart: the records a crash kept from the index are
				// applied.
				if _, err := ReplayRecords(ctx, base, db, nil); err != nil {
					t.Fatalf("replay: %v", err)
				}
				wantMade := fault == faultAfter || fault == faultCrash
				if made := ch.made(t, db); made != wantMade {
					t.Errorf("after the restart, change made = %v, want %v", made, wantMade)
				}
				want := snapshot(t, db)
				verifyClean(t, "after the restart", base, db)
				rebuilt := openSQLite(t)
				if _, err := Reindex(ctx, base, rebuilt, nil); err != nil {
					t.Fatal(err)
				}
				if got := snapshot(t, rebuilt); got != want {
					t.Errorf("rebuilt index shows\n%s\nthe index showed\n%s", got, want)
				}
			})
		}
	}
}

// TestIssuerRecordFault: when the record of the issuer a sender's
// instances are given cannot be written, the instance is refused and
// nothing of it is stored or indexed; once it can, one record serves
// every instance of that sender.
func TestIssuerRecordFault(t *testing.T) {
	ctx := t.Context()
	base := mem.New()
	var dead atomic.Bool
	st := &recordFaults{Store: base, failRecords: true, dead: &dead}
	db := openSQLite(t)
	svc := New(Config{Store: st, Index: db, AETitle: "PACSD", Issuers: IssuerPolicy{ByAE: map[string]string{"CT01": "RXH"}}})
	_, err := svc.Store(ctx, &StoreRequest{SOPClassUID: uid.CTImageStorage, SOPInstanceUID: "1.2.3.4.1", TransferSyntaxUID: uid.ExplicitVRLittleEndian,
		CallingAE: "CT01", Source: SourceDIMSE, Dataset: bytes.NewReader(instance("1.2.3", "1.2.3.4", "1.2.3.4.1").b.Bytes())})
	if !errors.Is(err, ErrUnavailable) {
		t.Fatalf("store without its issuer record = %v, want ErrUnavailable", err)
	}
	if _, err := db.Instance(ctx, "1.2.3.4.1"); !errors.Is(err, index.ErrNotFound) {
		t.Errorf("instance indexed without its issuer record: %v", err)
	}
	for info, err := range base.List(ctx, "") {
		t.Errorf("object left: %s, %v", info.Key, err)
	}
	st.failRecords = false
	for i := range 3 {
		sop := fmt.Sprintf("1.2.3.4.%d", i+1)
		putFrom(t, svc, instance("1.2.3", "1.2.3.4", sop), sop, "CT01")
	}
	n := 0
	for info, err := range base.List(ctx, issuerPrefix) {
		if err != nil {
			t.Fatal(err)
		}
		n++
		_ = info
	}
	if n != 1 {
		t.Errorf("%d issuer records for three instances of one sender, want 1", n)
	}
	// A new process with another policy records the change once.
	svc2 := New(Config{Store: base, Index: db, AETitle: "PACSD", Issuers: IssuerPolicy{ByAE: map[string]string{"CT01": "RYJ"}}})
	putFrom(t, svc2, instance("1.2.5", "1.2.5.4", "1.2.5.4.1"), "1.2.5.4.1", "CT01")
	rebuilt := openSQLite(t)
	if _, err := Reindex(ctx, base, rebuilt, nil); err != nil {
		t.Fatal(err)
	}
	for study, want := range map[string]string{"1.2.3": "RXH", "1.2.5": "RYJ"} {
		if p, err := rebuilt.StudyPatient(ctx, study); err != nil || p.IssuerOfPatientID != want {
			t.Errorf("rebuilt patient of %s: %+v, %v; want issuer %s", study, p, err, want)
		}
	}
}

// unlistable is storage that takes writes and reads but cannot list, as
// a spool in front of S3 that is down.
type unlistable struct{ storage.Store }

func (s unlistable) List(ctx context.Context, prefix string) iter.Seq2[storage.Info, error] {
	return func(yield func(storage.Info, error) bool) {
		yield(storage.Info{}, fmt.Errorf("s3 down: %w", storage.ErrUnavailable))
	}
}

// TestIssuerRecordUnlistable stores through storage that cannot list:
// the instance is accepted, with a record of its sender's issuer written
// without reading the earlier ones, and a rebuild gives it that issuer.
func TestIssuerRecordUnlistable(t *testing.T) {
	ctx := t.Context()
	base := mem.New()
	db := openSQLite(t)
	svc := New(Config{Store: unlistable{base}, Index: db, AETitle: "PACSD", Issuers: IssuerPolicy{ByAE: map[string]string{"CT01": "RXH"}}})
	putFrom(t, svc, instance("1.2.3", "1.2.3.4", "1.2.3.4.1"), "1.2.3.4.1", "CT01")
	rebuilt := openSQLite(t)
	if _, err := Reindex(ctx, base, rebuilt, nil); err != nil {
		t.Fatal(err)
	}
	if p, err := rebuilt.StudyPatient(ctx, "1.2.3"); err != nil || p.IssuerOfPatientID != "RXH" {
		t.Errorf("rebuilt patient: %+v, %v; want issuer RXH", p, err)
	}
}
