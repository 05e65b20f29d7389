package sqlindex

import (
	"context"
	"database/sql"
	"encoding/hex"
	"errors"
	"fmt"

	"github.com/pacsd/pacsd/audit"
	"github.com/pacsd/pacsd/deid"
)

// The index keeps two things for the security features besides the
// information model: the head of the audit journal, and the mapping of
// de-identification. Both are small writes of their own, outside the
// puts' transactions.

var (
	_ audit.HeadStore   = (*AuditHead)(nil)
	_ deid.MappingStore = (*DB)(nil)
	_ deid.Reidentifier = (*DB)(nil)
)

// AuditHead keeps the head of one audit journal in the index.
type AuditHead struct {
	db      *DB
	journal string
}

// AuditHead returns the audit.HeadStore of the journal named journal:
// each node that shares the index writes a journal of its own.
func (db *DB) AuditHead(journal string) *AuditHead { return &AuditHead{db, journal} }

// SaveHead implements audit.HeadStore: it records the journal's latest
// record, replacing the one recorded before.
func (a *AuditHead) SaveHead(ctx context.Context, h audit.Head) error {
	db := a.db
	hash := hex.EncodeToString(h.Hash[:])
	err := db.write(ctx, func(tx *sql.Tx) error {
		_, err := db.exec(ctx, tx, `INSERT INTO audit_head (journal, seq, hash, updated_at) VALUES (?, ?, ?, ?)
ON CONFLICT (journal) DO UPDATE SET seq = excluded.seq, hash = excluded.hash, updated_at = excluded.updated_at`,
			a.journal, int64(h.Seq), hash, micros(db.now()))
		return err
	})
	if err != nil {
		return fmt.Errorf("index: save audit head of %s: %w", a.journal, err)
	}
	return nil
}

// LoadHead implements audit.HeadStore; for a journal the index knows
// nothing of, it returns the zero Head.
func (a *AuditHead) LoadHead(ctx context.Context) (audit.Head, error) {
	var seq int64
	var hash string
	err := a.db.queryRow(ctx, a.db.db, `SELECT seq, hash FROM audit_head WHERE journal = ?`, a.journal).Scan(&seq, &hash)
	switch {
	case errors.Is(err, sql.ErrNoRows):
		return audit.Head{}, nil
	case err != nil:
		return audit.Head{}, fmt.Errorf("index: load audit head of %s: %w", a.journal, err)
	}
	h, err := audit.ParseHead(fmt.Sprintf("%d:%s", seq, hash))
	if err != nil {
		return audit.Head{}, fmt.Errorf("index: load audit head of %s: %w", a.journal, err)
	}
	return h, nil
}

// Record implements deid.MappingStore: it keeps each replacement with its
// original, once; a replacement already held is left as it is.
func (db *DB) Record(ctx context.Context, ms []deid.Mapping) error {
	if len(ms) == 0 {
		return nil
	}
	now := micros(db.now())
	err := db.write(ctx, func(tx *sql.Tx) error {
		for _, m := range ms {
			if _, err := db.exec(ctx, tx, `INSERT INTO deid_mapping (kind, replacement, original, recorded_at) VALUES (?, ?, ?, ?)
ON CONFLICT (kind, replacement) DO NOTHING`, string(m.Kind), m.Replacement, m.Original, now); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		return fmt.Errorf("index: record de-identification mapping: %w", err)
	}
	return nil
}

// Original implements deid.Reidentifier: the original of a replacement of
// the kind given, if the index holds it.
func (db *DB) Original(ctx context.Context, kind deid.Kind, replacement string) (string, bool, error) {
	var o string
	err := db.queryRow(ctx, db.db, `SELECT original FROM deid_mapping WHERE kind = ? AND replacement = ?`, string(kind), replacement).Scan(&o)
	switch {
	case errors.Is(err, sql.ErrNoRows):
		return "", false, nil
	case err != nil:
		return "", false, fmt.Errorf("index: re-identify: %w", err)
	}
	return o, true, nil
}
