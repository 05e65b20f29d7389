package sqlindex

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/pacsd/pacsd/index"
)

// Deletion, rejection and retention move instances out of the instance
// table, in one transaction, into trash (migration 0008): every query and
// retrieval reads the instance table, so they stop seeing them at once,
// and the aggregates of the series, studies and patients they leave are
// recomputed as for any change. The trash keeps each removed instance's
// record, keyed by its object, until the object is purged: the object is
// then accounted for, neither an orphan nor an instance to reindex.
//
// A purge claims the rows it will purge (purging = 1), deletes their
// objects, then their rows; a restore brings back only rows no purge has
// claimed, and re-puts each instance with PutRequest.Untrash, whose step
// deletes the row in the put's transaction or refuses the put if a purge
// has claimed it meanwhile. A crash mid-purge leaves claimed rows whose
// objects may be gone; the next purge claims and finishes them.

// trashColumns are the columns of a trash row, in the order trashRow
// reads them.
const trashColumns = `object_key, sop_instance_uid, study_instance_uid, series_instance_uid, sop_class_uid,
	size, sha256, transfer_syntax_uid, calling_ae, called_ae, source, principal, received_at, removed_at, cause, purge`

func scanTrashed(row scanner) (*index.Trashed, error) {
	var t index.Trashed
	var recv, removed, purge int64
	err := row.Scan(&t.Key, &t.SOPInstanceUID, &t.StudyInstanceUID, &t.SeriesInstanceUID, &t.SOPClassUID,
		&t.Size, &t.SHA256, &t.TransferSyntaxUID, &t.CallingAE, &t.CalledAE, &t.Source, &t.Principal, &recv, &removed, &t.Cause, &purge)
	if err != nil {
		return nil, err
	}
	t.ReceivedAt, t.RemovedAt, t.Purge = fromMicros(recv), fromMicros(removed), purge != 0
	return &t, nil
}

// where is a condition on the instances of the hierarchy joined as in
// selectInstance, with its arguments.
type where struct {
	cond string
	args []any
}

func selectionWhere(s index.Selection) where {
	w := where{cond: "st.study_instance_uid = ?", args: []any{s.StudyInstanceUID}}
	if s.SeriesInstanceUID != "" {
		w.cond += " AND se.series_instance_uid = ?"
		w.args = append(w.args, s.SeriesInstanceUID)
	}
	if s.SOPInstanceUID != "" {
		w.cond += " AND i.sop_instance_uid = ?"
		w.args = append(w.args, s.SOPInstanceUID)
	}
	return w
}

func checkSelection(s index.Selection) error {
	switch {
	case s.StudyInstanceUID == "":
		return errors.New("no Study Instance UID")
	case s.SOPInstanceUID != "" && s.SeriesInstanceUID == "":
		return errors.New("an instance needs its Series Instance UID")
	}
	return nil
}

// Remove takes the instances r selects out of the archive's view and
// into the trash, in one transaction, and records the removal in the
// log. It returns the records removed, or an error wrapping
// index.ErrNotFound when r selects none.
func (db *DB) Remove(ctx context.Context, r index.Removal) ([]index.Instance, error) {
	if err := checkSelection(r.Selection); err != nil {
		return nil, fmt.Errorf("index: remove: %w", err)
	}
	if r.Reason == "" {
		return nil, errors.New("index: remove: a reason is required")
	}
	cause, action := index.CauseDeleted, index.ActionDelete
	if r.Cause == index.CauseExpired {
		cause, action = index.CauseExpired, index.ActionExpire
	}
	locks := []int64{studyLock(r.StudyInstanceUID)}
	if r.SeriesInstanceUID != "" {
		locks = append(locks, seriesLock(r.SeriesInstanceUID))
	}
	if r.SOPInstanceUID != "" {
		locks = append(locks, instanceLock(r.SOPInstanceUID))
	}
	var removed []*stored
	err := db.writeRecorded(ctx, func(tx *sql.Tx, f *feed) error {
		held, err := db.lockRows(ctx, tx, locks)
		if err != nil {
			return err
		}
		err = db.lockRelated(ctx, tx, &held, &locks, func() ([]int64, error) {
			return db.relatedLocks(ctx, tx, r.SOPInstanceUID, r.SeriesInstanceUID, r.StudyInstanceUID)
		})
		if err != nil {
			return err
		}
		now := micros(db.now())
		if !r.Time.IsZero() {
			now = micros(r.Time)
		}
		if err := db.claimRecord(ctx, tx, r.Record, now); err != nil {
			return err
		}
		ev, err := db.logEvent(ctx, tx, index.Event{Action: action, StudyInstanceUID: r.StudyInstanceUID, SeriesInstanceUID: r.SeriesInstanceUID,
			SOPInstanceUID: r.SOPInstanceUID, Reason: r.Reason, Principal: r.Principal}, now)
		if err != nil {
			return err
		}
		removed = nil
		// The objects a record names, a chunk at a time, within the
		// engines' limits on parameters.
		for chunk := range slices.Chunk(r.Keys, removeChunk) {
			w := selectionWhere(r.Selection)
			w.cond += " AND i.object_key IN (" + params(len(chunk)) + ")"
			for _, k := range chunk {
				w.args = append(w.args, k)
			}
			rm, err := db.remove(ctx, tx, w, cause, true, ev, now)
			if err != nil {
				return err
			}
			removed = append(removed, rm...)
		}
		if len(r.Keys) == 0 {
			removed, err = db.remove(ctx, tx, selectionWhere(r.Selection), cause, true, ev, now)
			if err != nil {
				return err
			}
		}
		if len(removed) == 0 {
			return index.ErrNotFound
		}
		feedRemoved(f, removed)
		return db.countEvent(ctx, tx, ev, len(removed))
	})
	if err != nil {
		return nil, fmt.Errorf("index: remove %s: %w", r.Selection.Describe(), err)
	}
	out := make([]index.Instance, len(removed))
	for i, s := range removed {
		out[i] = s.Instance
	}
	return out, nil
}

// removeChunk is how many objects of a removal's record one statement
// names.
const removeChunk = 1000

// feedRemoved records in the change feed that the instances left the
// index (deleted, expired or rejected).
func feedRemoved(f *feed, removed []*stored) {
	for _, s := range removed {
		f.add(index.Deleted, s.Instance.StudyInstanceUID, s.Instance.SeriesInstanceUID, s.Instance.SOPInstanceUID)
	}
}

// remove moves the instances w selects to the trash and returns their
// records. The caller holds the locks of their rows.
func (db *DB) remove(ctx context.Context, tx *sql.Tx, w where, cause string, purge bool, event, now int64) ([]*stored, error) {
	rows, err := db.query(ctx, tx, selectInstance+" WHERE "+w.cond, w.args...)
	if err != nil {
		return nil, fmt.Errorf("read instances: %w", err)
	}
	var removed []*stored
	for rows.Next() {
		s, err := scanInstance(rows)
		if err != nil {
			rows.Close()
			return nil, fmt.Errorf("read instances: %w", err)
		}
		removed = append(removed, s)
	}
	rows.Close()
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("read instances: %w", err)
	}
	if len(removed) == 0 {
		return nil, nil
	}
	p := int64(0)
	if purge {
		p = 1
	}
	from := ` FROM instance i JOIN series se ON se.pk = i.series_fk JOIN study st ON st.pk = se.study_fk WHERE ` + w.cond
	args := slices.Concat([]any{now, cause, p, event}, w.args)
	if _, err := db.exec(ctx, tx, `INSERT INTO trash (object_key, sop_instance_uid, study_instance_uid, series_instance_uid, sop_class_uid,
	size, sha256, transfer_syntax_uid, calling_ae, called_ae, source, principal, received_at, removed_at, cause, purge, event_id)
SELECT i.object_key, i.sop_instance_uid, st.study_instance_uid, se.series_instance_uid, i.sop_class_uid,
	i.size, i.sha256, i.transfer_syntax_uid, i.calling_ae, i.called_ae, i.source, i.principal, i.received_at, ?, ?, ?, ?`+from, args...); err != nil {
		return nil, fmt.Errorf("move to trash: %w", err)
	}
	if _, err := db.exec(ctx, tx, `DELETE FROM instance WHERE pk IN (SELECT i.pk`+from+`)`, w.args...); err != nil {
		return nil, fmt.Errorf("delete instances: %w", err)
	}
	r := refresh{now: now}
	var series []int64
	for _, s := range removed {
		r.add(s.series, s.study, s.patient)
		series = addPK(series, s.series)
	}
	// The SOP class counts of each series the instances left are
	// counted again from the instances it keeps: one statement per
	// series rather than one per instance.
	for _, se := range series {
		if _, err := db.exec(ctx, tx, `DELETE FROM series_sop_class WHERE series_fk = ?`, se); err != nil {
			return nil, fmt.Errorf("count SOP classes: %w", err)
		}
		if _, err := db.exec(ctx, tx, `INSERT INTO series_sop_class (series_fk, sop_class_uid, number_of_instances)
SELECT series_fk, sop_class_uid, COUNT(*) FROM instance WHERE series_fk = ? GROUP BY series_fk, sop_class_uid`, se); err != nil {
			return nil, fmt.Errorf("count SOP classes: %w", err)
		}
	}
	if err := r.run(ctx, db, tx); err != nil {
		return nil, err
	}
	return removed, nil
}

// logEvent writes e to the removal log, with the patient of its study
// as the index holds it now, and returns its ID.
func (db *DB) logEvent(ctx context.Context, q querier, e index.Event, now int64) (int64, error) {
	if e.StudyInstanceUID != "" && e.PatientID == "" {
		err := db.queryRow(ctx, q, `SELECT p.patient_id, p.issuer_of_patient_id, p.patient_name FROM study st
JOIN patient p ON p.pk = st.patient_fk WHERE st.study_instance_uid = ?`, e.StudyInstanceUID).Scan(&e.PatientID, &e.IssuerOfPatientID, &e.PatientName)
		if err != nil && !errors.Is(err, sql.ErrNoRows) {
			return 0, fmt.Errorf("record %s: %w", e.Action, err)
		}
	}
	var id int64
	err := db.queryRow(ctx, q, `INSERT INTO removal_event (action, study_instance_uid, series_instance_uid, sop_instance_uid,
	instances, reason, principal, at, patient_id, issuer_of_patient_id, patient_name) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?) RETURNING id`,
		e.Action, e.StudyInstanceUID, e.SeriesInstanceUID, e.SOPInstanceUID, e.Instances, e.Reason, e.Principal, now,
		e.PatientID, e.IssuerOfPatientID, e.PatientName).Scan(&id)
	if err != nil {
		return 0, fmt.Errorf("record %s: %w", e.Action, err)
	}
	return id, nil
}

func (db *DB) countEvent(ctx context.Context, tx *sql.Tx, id int64, n int) error {
	if _, err := db.exec(ctx, tx, `UPDATE removal_event SET instances = ? WHERE id = ?`, n, id); err != nil {
		return fmt.Errorf("record removal: %w", err)
	}
	return nil
}

// RecordEvent writes e to the removal log, its time the DB's clock's, and
// returns its ID: the archive records restores and purges, which it
// carries out instance by instance, once they are over.
func (db *DB) RecordEvent(ctx context.Context, e index.Event) (int64, error) {
	id, err := db.logEvent(ctx, db.db, e, micros(db.now()))
	if err != nil {
		return 0, fmt.Errorf("index: %w", err)
	}
	return id, nil
}

const selectEvent = `SELECT id, action, study_instance_uid, series_instance_uid, sop_instance_uid, instances, reason, principal, at,
	patient_id, issuer_of_patient_id, patient_name FROM removal_event`

// Events returns the removal log, oldest first: all of it when study is
// empty, else the entries of that study.
func (db *DB) Events(ctx context.Context, study string) ([]index.Event, error) {
	if study != "" {
		return db.events(ctx, selectEvent+` WHERE study_instance_uid = ? ORDER BY id`, study)
	}
	return db.events(ctx, selectEvent+` ORDER BY id`)
}

// Unaudited returns up to limit entries of the removal log not yet in
// the audit trail, oldest first; MarkAudited marks them once they are.
// Nodes sharing the index may both record an entry: the audit trail has
// it at least once.
func (db *DB) Unaudited(ctx context.Context, limit int) ([]index.Event, error) {
	return db.events(ctx, selectEvent+` WHERE audited = 0 ORDER BY audited, id LIMIT ?`, limit)
}

// MarkAudited marks entries of the removal log as written to the audit
// trail.
func (db *DB) MarkAudited(ctx context.Context, ids []int64) error {
	if err := db.markAudited(ctx, "removal_event", ids); err != nil {
		return fmt.Errorf("index: mark audited: %w", err)
	}
	return nil
}

// markAudited sets the audited flag of the rows of table with these ids:
// the log entries that serve has written to the audit trail.
func (db *DB) markAudited(ctx context.Context, table string, ids []int64) error {
	if len(ids) == 0 {
		return nil
	}
	args := make([]any, len(ids))
	for i, id := range ids {
		args[i] = id
	}
	return db.write(ctx, func(tx *sql.Tx) error {
		_, err := db.exec(ctx, tx, `UPDATE `+table+` SET audited = 1 WHERE id IN (`+strings.TrimSuffix(strings.Repeat("?, ", len(ids)), ", ")+`)`, args...)
		return err
	})
}

func (db *DB) events(ctx context.Context, query string, args ...any) ([]index.Event, error) {
	rows, err := db.query(ctx, db.db, query, args...)
	if err != nil {
		return nil, fmt.Errorf("index: removal log: %w", err)
	}
	defer rows.Close()
	var out []index.Event
	for rows.Next() {
		var e index.Event
		var at int64
		if err := rows.Scan(&e.ID, &e.Action, &e.StudyInstanceUID, &e.SeriesInstanceUID, &e.SOPInstanceUID,
			&e.Instances, &e.Reason, &e.Principal, &at, &e.PatientID, &e.IssuerOfPatientID, &e.PatientName); err != nil {
			return nil, fmt.Errorf("index: removal log: %w", err)
		}
		e.Time = fromMicros(at)
		out = append(out, e)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("index: removal log: %w", err)
	}
	return out, nil
}

// Trash returns the instances of a study in the trash or hidden, all of
// them when study is empty.
func (db *DB) Trash(ctx context.Context, study string) ([]index.Trashed, error) {
	q := `SELECT ` + trashColumns + ` FROM trash`
	var args []any
	if study != "" {
		q += ` WHERE study_instance_uid = ?`
		args = append(args, study)
	}
	return db.trashRows(ctx, db.db, q+` ORDER BY removed_at, object_key`, args...)
}

func (db *DB) trashRows(ctx context.Context, q querier, query string, args ...any) ([]index.Trashed, error) {
	rows, err := db.query(ctx, q, query, args...)
	if err != nil {
		return nil, fmt.Errorf("index: read trash: %w", err)
	}
	defer rows.Close()
	var out []index.Trashed
	for rows.Next() {
		t, err := scanTrashed(rows)
		if err != nil {
			return nil, fmt.Errorf("index: read trash: %w", err)
		}
		out = append(out, *t)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("index: read trash: %w", err)
	}
	return out, nil
}

// Restorable returns what a restore of a study brings back: the
// instances it has in the trash, deleted or expired, that no purge has
// claimed and that the index does not hold a newer version of. The
// archive re-puts each with PutRequest.Untrash.
func (db *DB) Restorable(ctx context.Context, study string) ([]index.Trashed, error) {
	return db.trashRows(ctx, db.db, `SELECT `+trashColumns+` FROM trash t
WHERE t.study_instance_uid = ? AND t.purge = 1 AND t.purging = 0 AND t.cause <> ?
	AND NOT EXISTS (SELECT 1 FROM instance i WHERE i.sop_instance_uid = t.sop_instance_uid)
ORDER BY t.received_at, t.object_key`, study, index.CauseRejected)
}

// ClaimPurge claims for purging up to limit instances of the trash
// removed at or before before, oldest first, and returns them: those a
// purge claimed before and did not finish come first. The caller deletes
// their objects, then calls Purged.
func (db *DB) ClaimPurge(ctx context.Context, before time.Time, limit int) ([]index.Trashed, error) {
	var out []index.Trashed
	err := db.write(ctx, func(tx *sql.Tx) error {
		var err error
		out, err = db.trashRows(ctx, tx, `SELECT `+trashColumns+` FROM trash
WHERE purge = 1 AND removed_at <= ? ORDER BY purging DESC, removed_at, object_key LIMIT ?`, micros(before), limit)
		if err != nil {
			return err
		}
		for _, t := range out {
			if _, err := db.exec(ctx, tx, `UPDATE trash SET purging = 1 WHERE object_key = ?`, t.Key); err != nil {
				return fmt.Errorf("claim %s: %w", t.Key, err)
			}
		}
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("index: claim purge: %w", err)
	}
	return out, nil
}

// Purged forgets the trash rows of objects a purge has deleted.
func (db *DB) Purged(ctx context.Context, keys []string) error {
	err := db.write(ctx, func(tx *sql.Tx) error {
		for _, k := range keys {
			if _, err := db.exec(ctx, tx, `DELETE FROM trash WHERE object_key = ? AND purging = 1`, k); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		return fmt.Errorf("index: purged: %w", err)
	}
	return nil
}

// Trashed reports whether the trash accounts for the object under key.
func (db *DB) Trashed(ctx context.Context, key string) (bool, error) {
	var n int
	err := db.queryRow(ctx, db.db, `SELECT COUNT(*) FROM trash WHERE object_key = ?`, key).Scan(&n)
	if err != nil {
		return false, fmt.Errorf("index: trash %s: %w", key, err)
	}
	return n > 0, nil
}

// Reject applies a rejection note in one transaction: it records the
// UIDs it references, so that Put refuses them from now on, and removes
// those of them the archive holds, as r.Purge says. It returns the
// records removed. Applying a note again changes nothing.
func (db *DB) Reject(ctx context.Context, r index.Rejection) ([]index.Instance, error) {
	if len(r.Instances) == 0 {
		return nil, nil
	}
	var locks []int64
	for _, s := range r.Instances {
		if s.SOPInstanceUID == "" {
			return nil, errors.New("index: reject: a reference has no SOP Instance UID")
		}
		locks = append(locks, instanceLock(s.SOPInstanceUID))
	}
	var removed []*stored
	err := db.writeRecorded(ctx, func(tx *sql.Tx, f *feed) error {
		removed = nil
		held, err := db.lockRows(ctx, tx, locks)
		if err != nil {
			return err
		}
		err = db.lockRelated(ctx, tx, &held, &locks, func() ([]int64, error) {
			var keys []int64
			for _, s := range r.Instances {
				k, err := db.relatedLocks(ctx, tx, s.SOPInstanceUID, "", "")
				if err != nil {
					return nil, err
				}
				keys = append(keys, k...)
			}
			return keys, nil
		})
		if err != nil {
			return err
		}
		now := micros(db.now())
		first := r.Instances[0]
		ev, err := db.logEvent(ctx, tx, index.Event{Action: index.ActionReject, StudyInstanceUID: first.StudyInstanceUID,
			SOPInstanceUID: r.Note, Reason: "rejection note " + r.Note + " (" + r.Code + ")", Principal: r.Principal}, now)
		if err != nil {
			return err
		}
		for _, s := range r.Instances {
			if _, err := db.exec(ctx, tx, `INSERT INTO rejected (sop_instance_uid, study_instance_uid, series_instance_uid, code,
	note_sop_instance_uid, rejected_at) VALUES (?, ?, ?, ?, ?, ?) ON CONFLICT (sop_instance_uid) DO NOTHING`,
				s.SOPInstanceUID, s.StudyInstanceUID, s.SeriesInstanceUID, r.Code, r.Note, now); err != nil {
				return fmt.Errorf("record rejection: %w", err)
			}
			rm, err := db.remove(ctx, tx, where{cond: "i.sop_instance_uid = ?", args: []any{s.SOPInstanceUID}},
				index.CauseRejected, r.Purge, ev, now)
			if err != nil {
				return err
			}
			removed = append(removed, rm...)
		}
		feedRemoved(f, removed)
		return db.countEvent(ctx, tx, ev, len(removed))
	})
	if err != nil {
		return nil, fmt.Errorf("index: reject (note %s): %w", r.Note, err)
	}
	out := make([]index.Instance, len(removed))
	for i, s := range removed {
		out[i] = s.Instance
	}
	return out, nil
}

// Rejected reports whether a rejection note has named the instance, and
// the note's code.
func (db *DB) Rejected(ctx context.Context, sopInstanceUID string) (code string, ok bool, err error) {
	err = db.queryRow(ctx, db.db, `SELECT code FROM rejected WHERE sop_instance_uid = ?`, sopInstanceUID).Scan(&code)
	switch {
	case errors.Is(err, sql.ErrNoRows):
		return "", false, nil
	case err != nil:
		return "", false, fmt.Errorf("index: rejected %s: %w", sopInstanceUID, err)
	}
	return code, true, nil
}

// putTrash is the put step of rejection and restore: it refuses an
// instance a rejection note has named, and takes the instance of a
// restore (PutRequest.Untrash) out of the trash, or refuses it if a
// purge has claimed its object meanwhile.
func (db *DB) putTrash(ctx context.Context, tx *sql.Tx, w *putWrite) error {
	in := w.req.Instance
	var code string
	err := db.queryRow(ctx, tx, `SELECT code FROM rejected WHERE sop_instance_uid = ?`, in.SOPInstanceUID).Scan(&code)
	switch {
	case err == nil:
		return fmt.Errorf("%w by a rejection note (%s)", index.ErrRejected, code)
	case !errors.Is(err, sql.ErrNoRows):
		return fmt.Errorf("read rejections: %w", err)
	}
	if !w.req.Untrash {
		return nil
	}
	res, err := db.exec(ctx, tx, `DELETE FROM trash WHERE object_key = ? AND purging = 0`, in.Key)
	if err != nil {
		return fmt.Errorf("take out of the trash: %w", err)
	}
	if n, err := res.RowsAffected(); err != nil || n != 1 {
		return fmt.Errorf("%w: %s is no longer in the trash", index.ErrNotFound, in.Key)
	}
	return nil
}

// HideRejected records in the trash, hidden for good, an instance whose
// object a rebuild of the index finds and that a rejection note has
// named, so that its object stays accounted for. It reports whether the
// instance is rejected; one that is not is left alone.
func (db *DB) HideRejected(ctx context.Context, in *index.Instance) (bool, error) {
	var rejected bool
	err := db.write(ctx, func(tx *sql.Tx) error {
		var n int
		if err := db.queryRow(ctx, tx, `SELECT COUNT(*) FROM rejected WHERE sop_instance_uid = ?`, in.SOPInstanceUID).Scan(&n); err != nil {
			return err
		}
		if rejected = n > 0; !rejected {
			return nil
		}
		_, err := db.exec(ctx, tx, `INSERT INTO trash (object_key, sop_instance_uid, study_instance_uid, series_instance_uid, sop_class_uid,
	size, sha256, transfer_syntax_uid, calling_ae, called_ae, source, principal, received_at, removed_at, cause, purge, event_id)
VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, 0, 0) ON CONFLICT (object_key) DO NOTHING`,
			in.Key, in.SOPInstanceUID, in.StudyInstanceUID, in.SeriesInstanceUID, in.SOPClassUID, in.Size, in.SHA256,
			in.TransferSyntaxUID, in.CallingAE, in.CalledAE, in.Source, in.Principal, micros(in.ReceivedAt), micros(db.now()), index.CauseRejected)
		return err
	})
	if err != nil {
		return false, fmt.Errorf("index: hide rejected %s: %w", in.SOPInstanceUID, err)
	}
	return rejected, nil
}
