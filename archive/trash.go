package archive

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/pacsd/pacsd/dicom"
	"github.com/pacsd/pacsd/dicom/tag"
	"github.com/pacsd/pacsd/dicom/uid"
	"github.com/pacsd/pacsd/index"
	"github.com/pacsd/pacsd/storage"
)

// ErrRejected reports an instance that a rejection note (IHE IOCM) has
// named: the archive refuses it for good.
var ErrRejected = errors.New("archive: instance rejected")

// TrashIndex is what Trash needs of the index.
type TrashIndex interface {
	// Remove takes the instances of a selection out of every query and
	// retrieval at once, into the trash; see index.Removal.
	Remove(ctx context.Context, r index.Removal) ([]index.Instance, error)
	// Restorable lists what a restore of a study brings back.
	Restorable(ctx context.Context, study string) ([]index.Trashed, error)
	// ClaimPurge claims up to limit instances of the trash removed at or
	// before before, for their objects to be deleted; Purged forgets
	// them once they are.
	ClaimPurge(ctx context.Context, before time.Time, limit int) ([]index.Trashed, error)
	Purged(ctx context.Context, keys []string) error
	RecordEvent(ctx context.Context, e index.Event) (int64, error)
	Put(ctx context.Context, req *index.PutRequest) (*index.Change, error)
	// SelectionKeys lists the objects of the instances a selection
	// selects, for the record of their removal.
	SelectionKeys(ctx context.Context, s index.Selection) ([]string, error)
	// Trashed reports whether the trash accounts for an object.
	Trashed(ctx context.Context, key string) (bool, error)
	Recorder
}

// Trash deletes, restores and purges instances. Deleting hides them at
// once from every query and retrieval, in one index transaction, and
// leaves their objects in storage; restoring reads each object back and
// records it again; purging deletes the objects of the trash once the
// index has claimed them, so that at no moment does a live record name a
// deleted object. A crash mid-purge leaves claimed rows, which the next
// purge finishes. Deletions and restores are recorded in storage first
// (see Record): a delete record names the objects it removes, and is
// deleted by the purge that deletes the last of them. It is safe for
// concurrent use.
type Trash struct {
	Store  storage.Store
	Index  TrashIndex
	Logger *slog.Logger
	// Limits bound the memory of one header read back by a restore.
	Limits dicom.Limits
	// Now is the clock of the records; time.Now when nil.
	Now func() time.Time

	versions versions
}

func (t *Trash) now() time.Time {
	if t.Now != nil {
		return t.Now().UTC()
	}
	return time.Now().UTC()
}

func (t *Trash) log() *slog.Logger {
	if t.Logger != nil {
		return t.Logger
	}
	return slog.New(slog.DiscardHandler)
}

// Delete hides the instances r selects and moves them to the trash. It
// returns their records, or an error wrapping index.ErrNotFound when r
// selects none.
func (t *Trash) Delete(ctx context.Context, r index.Removal) ([]index.Instance, error) {
	if strings.TrimSpace(r.Reason) == "" {
		return nil, errors.New("archive: delete: a reason is required")
	}
	keys, err := t.Index.SelectionKeys(ctx, r.Selection)
	if err != nil {
		return nil, err
	}
	if len(keys) == 0 {
		return nil, fmt.Errorf("archive: delete %s: %w", r.Selection.Describe(), index.ErrNotFound)
	}
	cause := r.Cause
	if cause == "" {
		cause = index.CauseDeleted
	}
	rec := &Record{Kind: RecordDelete, Time: t.now(), Study: r.StudyInstanceUID, Series: r.SeriesInstanceUID, Instance: r.SOPInstanceUID,
		Cause: cause, Keys: keys, Reason: r.Reason, Principal: r.Principal}
	key, err := recordWriter{t.Store, &t.versions}.write(ctx, rec)
	if err != nil {
		return nil, err
	}
	r.Keys, r.Record, r.Time = keys, key, rec.Time
	removed, err := t.Index.Remove(ctx, r)
	if err := settle(ctx, t.Store, t.Index, t.log(), key, err); err != nil {
		return nil, err
	}
	t.log().Info("instances moved to the trash", "study_instance_uid", r.StudyInstanceUID, "series_instance_uid", r.SeriesInstanceUID,
		"sop_instance_uid", r.SOPInstanceUID, "instances", len(removed), "cause", r.Cause, "reason", r.Reason, "principal", r.Principal)
	return removed, nil
}

// Restore brings back the instances of a study that are still in the
// trash, deleted or expired (rejected ones stay hidden), and records the
// restore. It reads each object, checks it is the one the trash recorded
// and records it again, so that its metadata is as at ingest. An
// instance received again since it was deleted is left in the trash. It
// returns the records restored; what it could not restore it reports in
// the error, after restoring the rest.
func (t *Trash) Restore(ctx context.Context, study, reason, principal string) ([]index.Instance, error) {
	rows, err := t.Index.Restorable(ctx, study)
	if err != nil {
		return nil, err
	}
	if len(rows) == 0 {
		return nil, fmt.Errorf("archive: restore %s: %w: nothing in the trash", study, index.ErrNotFound)
	}
	rec := &Record{Kind: RecordRestore, Time: t.now(), Study: study, Reason: reason, Principal: principal}
	for _, tr := range rows {
		rec.Keys = append(rec.Keys, tr.Key)
	}
	key, err := recordWriter{t.Store, &t.versions}.write(ctx, rec)
	if err != nil {
		return nil, err
	}
	restored, err := t.restoreRows(ctx, rows, study, reason, principal)
	if len(restored) == 0 && err != nil {
		t.settleRestore(ctx, key, index.Event{Action: index.ActionRestore, StudyInstanceUID: study, Reason: reason, Principal: principal}, len(rows), err)
		return nil, err
	}
	if ctx.Err() == nil {
		// Restored or not, each object the record names has been tried:
		// a replay would only try again what failed here.
		if merr := t.Index.MarkApplied(context.WithoutCancel(ctx), key, ""); merr != nil {
			err = errors.Join(err, merr)
		}
	}
	return restored, err
}

// settleRestore ends a restore that restored nothing, by its account:
// the record goes if the trash still holds all it held, and is noted
// applied if the index restored some all the same (a put whose answer
// was lost). If the index cannot say, the record stays, and the next
// replay restores what is still in the trash.
func (t *Trash) settleRestore(ctx context.Context, key string, ev index.Event, rows int, cause error) {
	ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), deleteTimeout)
	defer cancel()
	still, err := t.Index.Restorable(ctx, ev.StudyInstanceUID)
	switch {
	case err != nil:
		t.log().Warn("restore failed, its record kept for the next replay", "record", key, "err", cause, "index_err", err)
	case len(still) < rows:
		ev.Instances = rows - len(still)
		if _, err := t.Index.RecordEvent(ctx, ev); err != nil {
			t.log().Error("restore not logged", "err", err)
		}
		if err := t.Index.MarkApplied(ctx, key, ""); err != nil {
			t.log().Warn("restore record not noted as applied; the next replay restores what is left", "record", key, "err", err)
		}
	default:
		if err := t.Store.Delete(ctx, key); err != nil {
			t.log().Error("record of a restore that failed not deleted; the next replay tries it again", "record", key, "err", err)
		}
	}
}

// restoreKeys replays a restore record: it restores those of the
// record's objects that are still in the trash.
func (t *Trash) restoreKeys(ctx context.Context, r *Record, key string) error {
	rows, err := t.Index.Restorable(ctx, r.Study)
	if err != nil {
		return err
	}
	rows = slices.DeleteFunc(rows, func(tr index.Trashed) bool { return !slices.Contains(r.Keys, tr.Key) })
	outcome := ""
	if _, err := t.restoreRows(ctx, rows, r.Study, r.Reason, r.Principal); err != nil {
		if ctx.Err() != nil || errors.Is(err, storage.ErrUnavailable) {
			return err
		}
		// An object that is not the one the trash recorded, or an
		// instance sent again since: as when the restore was asked for.
		outcome = err.Error()
	}
	return t.Index.MarkApplied(ctx, key, outcome)
}

// restoreRows restores rows of the trash and records the restore.
func (t *Trash) restoreRows(ctx context.Context, rows []index.Trashed, study, reason, principal string) ([]index.Instance, error) {
	var restored []index.Instance
	var errs []error
	book, err := loadIssuers(ctx, t.Store)
	if err != nil {
		return nil, err
	}
	for _, tr := range rows {
		in, err := t.restore(ctx, &tr, book)
		if err != nil {
			if ctx.Err() != nil {
				return restored, err
			}
			errs = append(errs, err)
			continue
		}
		restored = append(restored, *in)
	}
	if len(restored) > 0 {
		if _, err := t.Index.RecordEvent(ctx, index.Event{Action: index.ActionRestore, StudyInstanceUID: study,
			Instances: len(restored), Reason: reason, Principal: principal}); err != nil {
			errs = append(errs, err)
		}
		t.log().Info("instances restored from the trash", "study_instance_uid", study, "instances", len(restored), "principal", principal)
	}
	return restored, errors.Join(errs...)
}

var errNewer = errors.New("archive: a newer version is archived")

func (t *Trash) restore(ctx context.Context, tr *index.Trashed, book issuerBook) (*index.Instance, error) {
	in, _, err := readInstance(ctx, t.Store, storage.Info{Key: tr.Key, ModTime: tr.ReceivedAt}, t.Limits)
	if err != nil {
		return nil, fmt.Errorf("archive: restore %s: %w", tr.SOPInstanceUID, err)
	}
	if in.SHA256 != tr.SHA256 || in.SOPInstanceUID != tr.SOPInstanceUID {
		return nil, fmt.Errorf("archive: restore %s: the object %s is not the one the trash recorded", tr.SOPInstanceUID, tr.Key)
	}
	in.CallingAE, in.CalledAE, in.Source, in.Principal, in.ReceivedAt = tr.CallingAE, tr.CalledAE, tr.Source, tr.Principal, tr.ReceivedAt
	// The issuer it was given when it arrived.
	in.Amended = book.amendment(in.Header, in.CallingAE, in.ReceivedAt)
	_, err = t.Index.Put(ctx, &index.PutRequest{Instance: in, Untrash: true, Check: func(current *index.Instance) error {
		if current != nil {
			return errNewer
		}
		return nil
	}})
	if err != nil {
		return nil, fmt.Errorf("archive: restore %s: %w", tr.SOPInstanceUID, err)
	}
	return in, nil
}

// PurgeResult sums up a purge.
type PurgeResult struct {
	// Objects counts the objects deleted, Bytes their bytes.
	Objects int
	Bytes   int64
}

// purgeBatch is how many instances a purge claims at a time, and
// purgeWorkers how many objects it deletes at once.
const (
	purgeBatch   = 256
	purgeWorkers = 8
)

// Purge deletes for good the instances of the trash removed at or
// before before: their objects, then their trash records. Instances
// hidden by a rejection note under the policy "hide" are never purged.
// It records the purge, and stops at the first batch where storage
// failed to delete an object, which the next purge tries again.
func (t *Trash) Purge(ctx context.Context, before time.Time, principal string) (PurgeResult, error) {
	var res PurgeResult
	defer func() {
		if res.Objects == 0 {
			return
		}
		// The log entry outlives a cancelled request.
		rctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 10*time.Second)
		defer cancel()
		if _, err := t.Index.RecordEvent(rctx, index.Event{Action: index.ActionPurge, Instances: res.Objects,
			Reason: "trash removed before " + before.UTC().Format(time.RFC3339), Principal: principal}); err != nil {
			t.log().Error("purge not recorded", "err", err)
		}
		t.log().Info("trash purged", "objects", res.Objects, "bytes", res.Bytes, "principal", principal)
	}()
	for {
		claimed, err := t.Index.ClaimPurge(ctx, before, purgeBatch)
		if err != nil {
			return res, fmt.Errorf("archive: purge: %w", err)
		}
		if len(claimed) == 0 {
			return res, t.sweepRecords(ctx)
		}
		done := make([]bool, len(claimed))
		errs := make([]error, len(claimed))
		var wg sync.WaitGroup
		next := make(chan int)
		for range min(purgeWorkers, len(claimed)) {
			wg.Go(func() {
				for i := range next {
					err := t.Store.Delete(ctx, claimed[i].Key)
					if err == nil || errors.Is(err, storage.ErrNotFound) {
						done[i] = true
					} else {
						errs[i] = fmt.Errorf("delete %s: %w", claimed[i].Key, err)
					}
				}
			})
		}
		for i := range claimed {
			next <- i
		}
		close(next)
		wg.Wait()
		var keys []string
		for i, ok := range done {
			if ok {
				keys = append(keys, claimed[i].Key)
				res.Objects++
				res.Bytes += claimed[i].Size
			}
		}
		if len(keys) > 0 {
			if err := t.Index.Purged(ctx, keys); err != nil {
				return res, fmt.Errorf("archive: purge: %w", err)
			}
		}
		if err := errors.Join(errs...); err != nil {
			return res, fmt.Errorf("archive: purge: %w", err)
		}
		if len(claimed) < purgeBatch {
			return res, t.sweepRecords(ctx)
		}
	}
}

// sweepRecords deletes the delete records whose objects are all gone:
// purged, so that no rebuild can bring them back, and none of them in
// the trash any more.
func (t *Trash) sweepRecords(ctx context.Context) error {
	keys, err := recordKeys(ctx, t.Store)
	if err != nil {
		return fmt.Errorf("archive: purge: list records: %w", err)
	}
	for _, key := range keys {
		if !strings.HasSuffix(key, "_"+RecordDelete+recordSuffix) {
			continue
		}
		r, err := readRecord(ctx, t.Store, key)
		if errors.Is(err, storage.ErrNotFound) {
			continue
		}
		if err != nil {
			return fmt.Errorf("archive: purge: %w", err)
		}
		gone := true
		for _, k := range r.Keys {
			if _, err := t.Store.Stat(ctx, k); err == nil {
				gone = false
				break
			} else if !errors.Is(err, storage.ErrNotFound) {
				return fmt.Errorf("archive: purge: %w", err)
			}
		}
		if !gone {
			continue
		}
		if err := t.Store.Delete(ctx, key); err != nil {
			return fmt.Errorf("archive: purge: delete record %s: %w", key, err)
		}
	}
	return nil
}

// Rejecter applies rejection notes in the index.
type Rejecter interface {
	// Reject hides the instances a note references and refuses them
	// from then on; see index.Rejection.
	Reject(ctx context.Context, r index.Rejection) ([]index.Instance, error)
}

// rejectionCodes are the document titles of IHE IOCM rejection notes
// (DCM codes, PS3.16 CID 7011).
var rejectionCodes = map[string]string{
	"113001": "Rejected for Quality Reasons",
	"113037": "Rejected for Patient Safety Reasons",
	"113038": "Incorrect Modality Worklist Entry",
	"113039": "Data Retention Policy Expired",
}

// rejectionNote returns the rejection a data set asks for, if it is a
// Key Object Selection Document titled with a rejection code: the
// instances its Current Requested Procedure Evidence Sequence
// references.
func rejectionNote(id dicom.Identity, h *dicom.Dataset) (index.Rejection, bool) {
	if id.SOPClassUID != uid.KeyObjectSelectionDocumentStorage || h == nil {
		return index.Rejection{}, false
	}
	title := h.Items(tag.ConceptNameCodeSequence)
	if len(title) == 0 {
		return index.Rejection{}, false
	}
	code := title[0].First(tag.CodeValue)
	if _, ok := rejectionCodes[code]; !ok || title[0].First(tag.CodingSchemeDesignator) != "DCM" {
		return index.Rejection{}, false
	}
	r := index.Rejection{Code: code, Note: id.SOPInstanceUID}
	for _, st := range h.Items(tag.CurrentRequestedProcedureEvidenceSequence) {
		study := st.First(tag.StudyInstanceUID)
		for _, se := range st.Items(tag.ReferencedSeriesSequence) {
			series := se.First(tag.SeriesInstanceUID)
			for _, sop := range se.Items(tag.ReferencedSOPSequence) {
				if u := sop.First(tag.ReferencedSOPInstanceUID); u != "" && u != id.SOPInstanceUID {
					r.Instances = append(r.Instances, index.Selection{StudyInstanceUID: study, SeriesInstanceUID: series, SOPInstanceUID: u})
				}
			}
		}
	}
	return r, true
}
