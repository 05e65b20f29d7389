package sqlindex

import (
	"context"
	"database/sql"
	"encoding/json"
	"fmt"

	"github.com/pacsd/pacsd/index"
)

// RecordExport records a study pacsd export read, for the audit trail.
func (db *DB) RecordExport(ctx context.Context, e *index.Export) error {
	if e.Time.IsZero() {
		e.Time = db.now().UTC()
	}
	classes, err := json.Marshal(e.SOPClasses)
	if err != nil {
		return fmt.Errorf("index: record export: %w", err)
	}
	err = db.write(ctx, func(tx *sql.Tx) error {
		return db.queryRow(ctx, tx, `INSERT INTO export_log (at, principal, study, destination, sop_classes, instances, deidentified, failure)
VALUES (?, ?, ?, ?, ?, ?, ?, ?) RETURNING id`,
			micros(e.Time), e.Principal, e.Study, e.Destination, string(classes), e.Instances, boolInt(e.Deidentified), e.Failure).Scan(&e.ID)
	})
	if err != nil {
		return fmt.Errorf("index: record export: %w", err)
	}
	return nil
}

func boolInt(b bool) int {
	if b {
		return 1
	}
	return 0
}

// UnauditedExports returns up to limit exports, oldest first, that have
// not reached the audit trail yet.
func (db *DB) UnauditedExports(ctx context.Context, limit int) ([]*index.Export, error) {
	rows, err := db.query(ctx, db.db, `SELECT id, at, principal, study, destination, sop_classes, instances, deidentified, failure
FROM export_log WHERE audited = 0 ORDER BY id LIMIT ?`, limit)
	if err != nil {
		return nil, fmt.Errorf("index: unaudited exports: %w", err)
	}
	defer rows.Close()
	var out []*index.Export
	for rows.Next() {
		var e index.Export
		var at int64
		var deid int
		var classes string
		if err := rows.Scan(&e.ID, &at, &e.Principal, &e.Study, &e.Destination, &classes, &e.Instances, &deid, &e.Failure); err != nil {
			return nil, fmt.Errorf("index: unaudited exports: %w", err)
		}
		if err := json.Unmarshal([]byte(classes), &e.SOPClasses); err != nil {
			return nil, fmt.Errorf("index: unaudited exports: export %d: %w", e.ID, err)
		}
		e.Time, e.Deidentified = fromMicros(at), deid != 0
		out = append(out, &e)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("index: unaudited exports: %w", err)
	}
	return out, nil
}

// MarkExportsAudited records that the exports with these ids reached the
// audit trail.
func (db *DB) MarkExportsAudited(ctx context.Context, ids []int64) error {
	if err := db.markAudited(ctx, "export_log", ids); err != nil {
		return fmt.Errorf("index: mark exports audited: %w", err)
	}
	return nil
}
