package sqlindex

import (
	"context"
	"database/sql"
	"encoding/json"
	"errors"
	"fmt"

	"github.com/pacsd/pacsd/index"
)

// Records in storage (migration 0011). The archive writes a record of
// every deletion, restore, correction and link by hand to storage before
// it asks the index to make the change; the change's transaction adds
// the record's key to applied_record, so that the index applies a
// record once, whether the change comes from its request or from a
// replay of the records after a crash or into a rebuilt index.

// claimRecord adds key to the records applied, in the transaction of
// the change it makes, or fails with index.ErrApplied if it is there
// already. An empty key claims nothing.
func (db *DB) claimRecord(ctx context.Context, tx *sql.Tx, key string, now int64) error {
	if key == "" {
		return nil
	}
	res, err := db.exec(ctx, tx, `INSERT INTO applied_record (record_key, applied_at) VALUES (?, ?) ON CONFLICT (record_key) DO NOTHING`, key, now)
	if err != nil {
		return fmt.Errorf("claim record %s: %w", key, err)
	}
	if n, err := res.RowsAffected(); err != nil {
		return fmt.Errorf("claim record %s: %w", key, err)
	} else if n == 0 {
		return fmt.Errorf("%w: %s", index.ErrApplied, key)
	}
	return nil
}

// Applied reports whether the index has applied the record under key,
// and if it did not make its change, why (outcome).
func (db *DB) Applied(ctx context.Context, key string) (applied bool, outcome string, err error) {
	err = db.queryRow(ctx, db.db, `SELECT outcome FROM applied_record WHERE record_key = ?`, key).Scan(&outcome)
	switch {
	case errors.Is(err, sql.ErrNoRows):
		return false, "", nil
	case err != nil:
		return false, "", fmt.Errorf("index: record %s: %w", key, err)
	}
	return true, outcome, nil
}

// MarkApplied records that the record under key is applied: a change
// made in several transactions (a restore), or one that cannot be made
// (outcome says why), which a replay then leaves alone.
func (db *DB) MarkApplied(ctx context.Context, key, outcome string) error {
	err := db.write(ctx, func(tx *sql.Tx) error {
		_, err := db.exec(ctx, tx, `INSERT INTO applied_record (record_key, applied_at, outcome) VALUES (?, ?, ?)
ON CONFLICT (record_key) DO NOTHING`, key, micros(db.now()), outcome)
		return err
	})
	if err != nil {
		return fmt.Errorf("index: mark record %s applied: %w", key, err)
	}
	return nil
}

// SelectionKeys returns the objects of the instances s selects, for the
// record of their removal.
func (db *DB) SelectionKeys(ctx context.Context, s index.Selection) ([]string, error) {
	if err := checkSelection(s); err != nil {
		return nil, fmt.Errorf("index: %w", err)
	}
	w := selectionWhere(s)
	rows, err := db.query(ctx, db.db, `SELECT i.object_key FROM instance i JOIN series se ON se.pk = i.series_fk
JOIN study st ON st.pk = se.study_fk WHERE `+w.cond+` ORDER BY i.object_key`, w.args...)
	if err != nil {
		return nil, fmt.Errorf("index: objects of %s: %w", s.Describe(), err)
	}
	defer rows.Close()
	var out []string
	for rows.Next() {
		var k string
		if err := rows.Scan(&k); err != nil {
			return nil, fmt.Errorf("index: objects of %s: %w", s.Describe(), err)
		}
		out = append(out, k)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("index: objects of %s: %w", s.Describe(), err)
	}
	return out, nil
}

// CorrectionByRecord returns the correction made from the record under
// key, or index.ErrNotFound.
func (db *DB) CorrectionByRecord(ctx context.Context, key string) (*index.Correction, error) {
	c, err := scanCorrection(db.queryRow(ctx, db.db, selectCorrection+` WHERE record_key = ? AND record_key <> ''`, key))
	if errors.Is(err, sql.ErrNoRows) {
		return nil, fmt.Errorf("index: correction of record %s: %w", key, index.ErrNotFound)
	}
	if err != nil {
		return nil, fmt.Errorf("index: correction of record %s: %w", key, err)
	}
	return c, nil
}

// LinkPatients links the patients of l by hand, or unlinks them, and
// writes the change to the link log, in one transaction; see Link and
// Unlink.
func (db *DB) LinkPatients(ctx context.Context, l index.Link) error {
	action := index.ActionLink
	if l.Unlink {
		action = index.ActionUnlink
	} else if len(l.Patients) < 2 {
		return fmt.Errorf("%w: link needs two patients or more", index.ErrLink)
	}
	names := make([]string, len(l.Patients))
	for i, k := range l.Patients {
		names[i] = k.String()
	}
	doc, err := json.Marshal(names)
	if err != nil {
		return err
	}
	err = db.write(ctx, func(tx *sql.Tx) error {
		now := micros(db.now())
		if !l.Time.IsZero() {
			now = micros(l.Time)
		}
		if err := db.claimRecord(ctx, tx, l.Record, now); err != nil {
			return err
		}
		if l.Unlink {
			err = db.unlink(ctx, tx, l.Patients)
		} else {
			err = db.link(ctx, tx, l.Patients)
		}
		if err != nil {
			return err
		}
		_, err := db.exec(ctx, tx, `INSERT INTO link_event (action, patients, principal, at) VALUES (?, ?, ?, ?)`,
			action, string(doc), l.Principal, now)
		return err
	})
	if err != nil {
		return fmt.Errorf("index: %s %v: %w", action, l.Patients, err)
	}
	return nil
}

// UnauditedLinks returns up to limit entries of the link log not yet in
// the audit trail, oldest first; MarkLinksAudited marks them once they
// are.
func (db *DB) UnauditedLinks(ctx context.Context, limit int) ([]index.LinkEvent, error) {
	rows, err := db.query(ctx, db.db, `SELECT id, action, patients, principal, at FROM link_event WHERE audited = 0 ORDER BY id LIMIT ?`, limit)
	if err != nil {
		return nil, fmt.Errorf("index: link log: %w", err)
	}
	defer rows.Close()
	var out []index.LinkEvent
	for rows.Next() {
		var e index.LinkEvent
		var doc string
		var at int64
		if err := rows.Scan(&e.ID, &e.Action, &doc, &e.Principal, &at); err != nil {
			return nil, fmt.Errorf("index: link log: %w", err)
		}
		var names []string
		if err := json.Unmarshal([]byte(doc), &names); err != nil {
			return nil, fmt.Errorf("index: link log entry %d: %w", e.ID, err)
		}
		for _, n := range names {
			k, err := index.ParsePatientKey(n)
			if err != nil {
				return nil, fmt.Errorf("index: link log entry %d: %w", e.ID, err)
			}
			e.Patients = append(e.Patients, k)
		}
		e.Time = fromMicros(at)
		out = append(out, e)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("index: link log: %w", err)
	}
	return out, nil
}

// MarkLinksAudited marks entries of the link log as written to the audit
// trail.
func (db *DB) MarkLinksAudited(ctx context.Context, ids []int64) error {
	if err := db.markAudited(ctx, "link_event", ids); err != nil {
		return fmt.Errorf("index: mark links audited: %w", err)
	}
	return nil
}

// TrashObject records in the trash the object of an instance that a
// rebuild of the index finds and whose deletion record names it, but
// that is not the instance's indexed version (a newer one arrived after
// the deletion): its object stays accounted for, and purged in its time,
// as in the index that deleted it. A row already there is left alone.
func (db *DB) TrashObject(ctx context.Context, t index.Trashed) error {
	purge := 0
	if t.Purge {
		purge = 1
	}
	err := db.write(ctx, func(tx *sql.Tx) error {
		_, err := db.exec(ctx, tx, `INSERT INTO trash (object_key, sop_instance_uid, study_instance_uid, series_instance_uid, sop_class_uid,
	size, sha256, transfer_syntax_uid, calling_ae, called_ae, source, principal, received_at, removed_at, cause, purge, event_id)
VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, 0) ON CONFLICT (object_key) DO NOTHING`,
			t.Key, t.SOPInstanceUID, t.StudyInstanceUID, t.SeriesInstanceUID, t.SOPClassUID, t.Size, t.SHA256,
			t.TransferSyntaxUID, t.CallingAE, t.CalledAE, t.Source, t.Principal, micros(t.ReceivedAt), micros(t.RemovedAt), t.Cause, purge)
		return err
	})
	if err != nil {
		return fmt.Errorf("index: trash %s: %w", t.Key, err)
	}
	return nil
}
