package archive

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"slices"
	"sync/atomic"
	"testing"
	"time"

	"github.com/pacsd/pacsd/dicom/tag"
	"github.com/pacsd/pacsd/dicom/uid"
	"github.com/pacsd/pacsd/index"
	"github.com/pacsd/pacsd/storage"
)

// failingDeletes is a store whose Delete fails once n deletes have
// succeeded, as a purge cut short by a crash or by storage going away.
type failingDeletes struct {
	storage.Store
	left atomic.Int64
}

var errStorageGone = errors.New("storage gone")

func (f *failingDeletes) Delete(ctx context.Context, key string) error {
	if f.left.Add(-1) < 0 {
		return fmt.Errorf("%w: %w", storage.ErrUnavailable, errStorageGone)
	}
	return f.Store.Delete(ctx, key)
}

// TestPurgeCutShort deletes a study, purges with a store that stops
// deleting half-way, and checks that Verify finds nothing wrong at any
// point and that the next purge finishes the work.
func TestPurgeCutShort(t *testing.T) {
	ctx := t.Context()
	f := newFixture(t, Config{})
	const n = 10
	for i := range n {
		sop := fmt.Sprintf("1.2.3.4.%d", i+1)
		if _, err := f.put(instance("1.2.3", "1.2.3.4", sop), sop); err != nil {
			t.Fatal(err)
		}
	}
	verify := func(step string) {
		t.Helper()
		res, err := Verify(ctx, f.store, f.db, func(p Problem) { t.Errorf("%s: verify: %v", step, p) })
		if err != nil || res.Problems != 0 {
			t.Errorf("%s: verify: %+v, %v", step, res, err)
		}
	}
	failing := &failingDeletes{Store: f.store}
	failing.left.Store(4)
	trash := &Trash{Store: failing, Index: f.db}
	if _, err := trash.Delete(ctx, index.Removal{Selection: index.Selection{StudyInstanceUID: "1.2.3"}, Reason: "test"}); err != nil {
		t.Fatal(err)
	}
	verify("deleted")
	if _, err := trash.Restore(ctx, "1.2.3.9", "", ""); !errors.Is(err, index.ErrNotFound) {
		t.Errorf("Restore of a study not in the trash = %v", err)
	}
	res, err := trash.Purge(ctx, time.Now(), "test")
	if !errors.Is(err, errStorageGone) || res.Objects != 4 {
		t.Fatalf("cut-short Purge = %+v, %v; want 4 objects and the storage error", res, err)
	}
	verify("purge cut short")
	if objs := f.objects(t); len(objs) != n-4 {
		t.Errorf("%d objects left, want %d", len(objs), n-4)
	}
	if keys, err := recordKeys(ctx, f.store); err != nil || len(keys) != 1 {
		t.Errorf("records after a purge cut short: %v, %v; want the deletion's", keys, err)
	}
	// An index rebuilt now has in its trash what is left of the study.
	rebuilt := openSQLite(t)
	if _, err := Reindex(ctx, f.store, rebuilt, nil); err != nil {
		t.Fatal(err)
	}
	trashKeys := func(db interface {
		Trash(context.Context, string) ([]index.Trashed, error)
	}) []string {
		rows, err := db.Trash(ctx, "")
		if err != nil {
			t.Fatal(err)
		}
		var keys []string
		for _, r := range rows {
			keys = append(keys, r.Key)
		}
		slices.Sort(keys)
		return keys
	}
	if got, want := trashKeys(rebuilt), trashKeys(f.db); !slices.Equal(got, want) || len(got) != n-4 {
		t.Errorf("rebuilt trash %v, want %v", got, want)
	}
	verifyClean(t, "rebuilt after a purge cut short", f.store, rebuilt)
	// What a purge claimed and did not finish is no longer restorable.
	if restored, err := trash.Restore(ctx, "1.2.3", "", ""); len(restored) != 0 {
		t.Errorf("Restore after a claim restored %d instances (%v)", len(restored), err)
	}
	failing.left.Store(1 << 30)
	if res, err := trash.Purge(ctx, time.Now(), "test"); err != nil || res.Objects != n-4 {
		t.Fatalf("second Purge = %+v, %v", res, err)
	}
	if objs := f.objects(t); len(objs) != 0 {
		t.Errorf("objects left after the purge: %v", objs)
	}
	// The deletion's record goes once every object it names is gone.
	if keys, err := recordKeys(ctx, f.store); err != nil || len(keys) != 0 {
		t.Errorf("records after the purge: %v, %v; want none", keys, err)
	}
	verify("purged")
	events, _ := f.db.Events(ctx, "")
	if len(events) != 3 || events[1].Action != index.ActionPurge || events[1].Instances != 4 || events[2].Instances != n-4 {
		t.Errorf("removal log = %+v", events)
	}
}

// TestRestoreReadsTheObject deletes a series and restores it: the
// records come back from the objects, as the store made them.
func TestRestoreReadsTheObject(t *testing.T) {
	ctx := t.Context()
	f := newFixture(t, Config{})
	res, err := f.put(instance("1.2.3", "1.2.3.4", "1.2.3.4.5"), "1.2.3.4.5")
	if err != nil {
		t.Fatal(err)
	}
	trash := &Trash{Store: f.store, Index: f.db}
	if _, err := trash.Delete(ctx, index.Removal{Selection: index.Selection{StudyInstanceUID: "1.2.3", SeriesInstanceUID: "1.2.3.4"},
		Reason: "test"}); err != nil {
		t.Fatal(err)
	}
	if _, err := f.db.Instance(ctx, "1.2.3.4.5"); !errors.Is(err, index.ErrNotFound) {
		t.Fatalf("deleted instance still found: %v", err)
	}
	restored, err := trash.Restore(ctx, "1.2.3", "undo", "alice")
	if err != nil || len(restored) != 1 {
		t.Fatalf("Restore = %d, %v", len(restored), err)
	}
	got, err := f.db.Instance(ctx, "1.2.3.4.5")
	if err != nil || got.Key != res.Instance.Key || got.SHA256 != res.Instance.SHA256 || got.CallingAE != "MODALITY" ||
		!got.ReceivedAt.Equal(res.Instance.ReceivedAt) {
		t.Errorf("restored record %+v, %v; stored %+v", got, err, res.Instance)
	}
	if _, err := f.db.Metadata(ctx, got); err != nil {
		t.Errorf("restored instance has no metadata: %v", err)
	}
}

// rejectionNoteData builds an IOCM rejection note naming sops of series
// 1.2.3.4 of study 1.2.3.
func rejectionNoteData(note, code string, sops ...string) *ds {
	var refs ds
	for _, s := range sops {
		var it ds
		it.str(tag.ReferencedSOPClassUID, "UI", uid.CTImageStorage).str(tag.ReferencedSOPInstanceUID, "UI", s)
		refs.item(&it)
	}
	var series, seriesSeq, study, studySeq, title, titleSeq ds
	series.str(tag.SeriesInstanceUID, "UI", "1.2.3.4").el(tag.ReferencedSOPSequence, "SQ", refs.b.Bytes())
	seriesSeq.item(&series)
	study.str(tag.StudyInstanceUID, "UI", "1.2.3").el(tag.ReferencedSeriesSequence, "SQ", seriesSeq.b.Bytes())
	studySeq.item(&study)
	title.str(tag.CodeValue, "SH", code).str(tag.CodingSchemeDesignator, "SH", "DCM")
	titleSeq.item(&title)
	d := &ds{}
	d.str(tag.SOPClassUID, "UI", uid.KeyObjectSelectionDocumentStorage).str(tag.SOPInstanceUID, "UI", note).
		str(tag.Modality, "CS", "KO").str(tag.PatientID, "LO", "P1").
		str(tag.StudyInstanceUID, "UI", "1.2.3").str(tag.SeriesInstanceUID, "UI", "1.2.3.99").
		el(tag.ConceptNameCodeSequence, "SQ", titleSeq.b.Bytes()).
		el(tag.CurrentRequestedProcedureEvidenceSequence, "SQ", studySeq.b.Bytes())
	return d
}

// item appends it as a sequence item of defined length.
func (d *ds) item(it *ds) {
	d.b.Write([]byte{0xfe, 0xff, 0x00, 0xe0})
	n := it.b.Len()
	d.b.Write([]byte{byte(n), byte(n >> 8), byte(n >> 16), byte(n >> 24)})
	d.b.Write(it.b.Bytes())
}

func TestRejectionNote(t *testing.T) {
	for _, tt := range []struct {
		code   string
		purge  bool
		hidden bool
	}{
		{"113001", false, true},
		{"113039", true, true},
		{"113000", false, false}, // Of Interest: a key object note, not a rejection
	} {
		t.Run(fmt.Sprint(tt.code, tt.purge), func(t *testing.T) {
			ctx := t.Context()
			f := newFixture(t, Config{})
			f.svc.cfg.Rejections, f.svc.cfg.RejectionPurge = f.db, tt.purge
			for _, sop := range []string{"1.2.3.4.5", "1.2.3.4.6"} {
				if _, err := f.put(instance("1.2.3", "1.2.3.4", sop), sop); err != nil {
					t.Fatal(err)
				}
			}
			note := rejectionNoteData("1.2.3.99.1", tt.code, "1.2.3.4.5")
			if _, err := f.svc.Store(ctx, &StoreRequest{TransferSyntaxUID: uid.ExplicitVRLittleEndian, CallingAE: "MODALITY",
				Source: SourceDIMSE, Dataset: bytes.NewReader(note.b.Bytes())}); err != nil {
				t.Fatalf("Store(note): %v", err)
			}
			if _, err := f.db.Instance(ctx, "1.2.3.99.1"); err != nil {
				t.Errorf("the note itself is not archived: %v", err)
			}
			_, err := f.db.Instance(ctx, "1.2.3.4.5")
			trashed, _ := f.db.Trash(ctx, "1.2.3")
			if hidden := errors.Is(err, index.ErrNotFound); hidden != tt.hidden || (len(trashed) == 1) != tt.hidden {
				t.Fatalf("referenced instance hidden = %v (%d in the trash), want %v", hidden, len(trashed), tt.hidden)
			}
			if _, err := f.db.Instance(ctx, "1.2.3.4.6"); err != nil {
				t.Errorf("an instance the note does not name is gone: %v", err)
			}
			before := len(f.objects(t))
			_, err = f.put(instance("1.2.3", "1.2.3.4", "1.2.3.4.5"), "1.2.3.4.5")
			if tt.hidden != errors.Is(err, ErrRejected) {
				t.Errorf("resending a rejected instance: %v", err)
			}
			if tt.hidden && len(f.objects(t)) != before {
				t.Errorf("a refused instance left an object")
			}
			claimed, _ := f.db.ClaimPurge(ctx, time.Now(), 10)
			if (len(claimed) == 1) != (tt.hidden && tt.purge) {
				t.Errorf("purge claims %d rejected instances under purge=%v", len(claimed), tt.purge)
			}
		})
	}
}

// TestReindexRebuildsRejections rebuilds the index of an archive that
// received a rejection note from storage alone: the rejected instance
// stays hidden, is refused again, and Verify finds every object
// accounted for.
func TestReindexRebuildsRejections(t *testing.T) {
	ctx := t.Context()
	f := newFixture(t, Config{})
	f.svc.cfg.Rejections = f.db
	for _, sop := range []string{"1.2.3.4.5", "1.2.3.4.6"} {
		if _, err := f.put(instance("1.2.3", "1.2.3.4", sop), sop); err != nil {
			t.Fatal(err)
		}
	}
	note := rejectionNoteData("1.2.3.99.1", "113037", "1.2.3.4.5")
	if _, err := f.svc.Store(ctx, &StoreRequest{TransferSyntaxUID: uid.ExplicitVRLittleEndian, Source: SourceSTOW,
		Dataset: bytes.NewReader(note.b.Bytes())}); err != nil {
		t.Fatal(err)
	}
	// Twice, so that the note and the instance it names come in either
	// order.
	for round := range 2 {
		fresh := openIndex(t)
		p, err := Reindex(ctx, f.store, fresh, nil)
		// The rejected instance counts as indexed when it comes before
		// the note, which then hides it.
		if err != nil || p.Failed != 0 || p.Objects < 2 || p.Objects > 3 {
			t.Fatalf("round %d: Reindex = %+v, %v; want 2 or 3 objects indexed, none failed", round, p, err)
		}
		if _, err := fresh.Instance(ctx, "1.2.3.4.5"); !errors.Is(err, index.ErrNotFound) {
			t.Errorf("round %d: the rejected instance is back: %v", round, err)
		}
		if _, ok, _ := fresh.Rejected(ctx, "1.2.3.4.5"); !ok {
			t.Errorf("round %d: the rejection is not rebuilt", round)
		}
		res, err := Verify(ctx, f.store, fresh, func(p Problem) { t.Errorf("round %d: verify: %v", round, p) })
		if err != nil || res.Problems != 0 {
			t.Errorf("round %d: verify: %+v, %v", round, res, err)
		}
	}
}
