package sqlindex

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"time"

	"github.com/pacsd/pacsd/index"
)

// Archive compression (package recompress), in the tables
// instance_original and compress_claim (migration 0012). A put's
// index.PutRequest.Original is written by putOriginal in the put's own
// transaction, so that the record naming a re-encoded object always
// says what the original was. Compressions is the rest: which instances
// are due, who works on which, and which were skipped, and why.
//
// A claim is a lease: a node claims instances for a while and renews
// nothing; one that dies lets its leases run out, and another node
// takes the instances. PostgreSQL's INSERT … ON CONFLICT DO UPDATE …
// WHERE takes the row lock, so that of two nodes claiming one instance
// at once, one claims it and the other finds it taken; SQLite's one
// writer at a time does the same for the processes of one node.

// Compressions is the state of archive compression kept in the index.
type Compressions struct{ db *DB }

// Compressions returns the state of archive compression kept in db.
func (db *DB) Compressions() *Compressions { return &Compressions{db: db} }

// Instance returns the record of an instance (see DB.Instance).
func (c *Compressions) Instance(ctx context.Context, sopInstanceUID string) (*index.Instance, error) {
	return c.db.Instance(ctx, sopInstanceUID)
}

// putOriginal records the original of a re-encoded object, and forgets
// the originals of the instance's other objects.
func (db *DB) putOriginal(ctx context.Context, tx *sql.Tx, w *putWrite) error {
	in := w.req.Instance
	// A new instance has no other object; rows of an instance removed
	// before describe objects no record names, and go with its next
	// version.
	if w.previous != nil {
		if _, err := db.exec(ctx, tx, `DELETE FROM instance_original WHERE sop_instance_uid = ? AND object_key <> ?`, in.SOPInstanceUID, in.Key); err != nil {
			return fmt.Errorf("forget originals: %w", err)
		}
	}
	o := w.req.Original
	if o == nil {
		return nil
	}
	at := o.CompressedAt
	if at.IsZero() {
		at = db.now()
	}
	_, err := db.exec(ctx, tx, `INSERT INTO instance_original (object_key, sop_instance_uid, sha256, transfer_syntax_uid, size, compressed_at)
VALUES (?, ?, ?, ?, ?, ?)
ON CONFLICT (object_key) DO UPDATE SET sha256 = excluded.sha256, transfer_syntax_uid = excluded.transfer_syntax_uid, size = excluded.size`,
		in.Key, in.SOPInstanceUID, o.SHA256, o.TransferSyntaxUID, o.Size, micros(at))
	if err != nil {
		return fmt.Errorf("record original: %w", err)
	}
	return nil
}

// Original returns the original of the re-encoded object under key, or
// an error wrapping index.ErrNotFound when the object is not one.
func (c *Compressions) Original(ctx context.Context, key string) (*index.Original, error) {
	o := &index.Original{Key: key}
	var at int64
	err := c.db.queryRow(ctx, c.db.db, `SELECT sha256, transfer_syntax_uid, size, compressed_at FROM instance_original WHERE object_key = ?`, key).
		Scan(&o.SHA256, &o.TransferSyntaxUID, &o.Size, &at)
	switch {
	case errors.Is(err, sql.ErrNoRows):
		return nil, fmt.Errorf("index: original of %s: %w", key, index.ErrNotFound)
	case err != nil:
		return nil, fmt.Errorf("index: original of %s: %w", key, err)
	}
	o.CompressedAt = fromMicros(at)
	return o, nil
}

// Claim takes up to limit instances received before cutoff and stored
// uncompressed (Implicit or Explicit VR Little Endian: the UIDs are
// written out, as the partial index of migration 0012 is), whose current
// object no node holds a lease on and none has skipped, for owner until
// lease from now; oldest first.
func (c *Compressions) Claim(ctx context.Context, owner string, cutoff time.Time, limit int, lease time.Duration) ([]index.CompressTask, error) {
	db := c.db
	var claimed []index.CompressTask
	err := db.write(ctx, func(tx *sql.Tx) error {
		claimed = claimed[:0]
		now := micros(db.now())
		rows, err := db.query(ctx, tx, `SELECT i.sop_instance_uid, i.object_key FROM instance i
WHERE i.transfer_syntax_uid IN ('1.2.840.10008.1.2', '1.2.840.10008.1.2.1') AND i.received_at < ?
AND NOT EXISTS (SELECT 1 FROM compress_claim c WHERE c.sop_instance_uid = i.sop_instance_uid AND c.object_key = i.object_key
  AND (c.state = 'skipped' OR c.lease_until > ?))
ORDER BY i.received_at LIMIT ?`, micros(cutoff), now, limit)
		if err != nil {
			return fmt.Errorf("find candidates: %w", err)
		}
		var found []index.CompressTask
		for rows.Next() {
			var t index.CompressTask
			if err := rows.Scan(&t.SOPInstanceUID, &t.Key); err != nil {
				rows.Close()
				return fmt.Errorf("find candidates: %w", err)
			}
			found = append(found, t)
		}
		rows.Close()
		if err := rows.Err(); err != nil {
			return fmt.Errorf("find candidates: %w", err)
		}
		until := micros(db.now().Add(lease))
		for _, t := range found {
			res, err := db.exec(ctx, tx, `INSERT INTO compress_claim (sop_instance_uid, object_key, state, reason, owner, lease_until, updated_at)
VALUES (?, ?, 'claimed', '', ?, ?, ?)
ON CONFLICT (sop_instance_uid) DO UPDATE SET object_key = excluded.object_key, state = 'claimed', reason = '',
  owner = excluded.owner, lease_until = excluded.lease_until, updated_at = excluded.updated_at
WHERE compress_claim.object_key <> excluded.object_key OR (compress_claim.state = 'claimed' AND compress_claim.lease_until <= ?)`,
				t.SOPInstanceUID, t.Key, owner, until, now, now)
			if err != nil {
				return fmt.Errorf("claim %s: %w", t.SOPInstanceUID, err)
			}
			if n, err := res.RowsAffected(); err != nil {
				return fmt.Errorf("claim %s: %w", t.SOPInstanceUID, err)
			} else if n == 1 {
				claimed = append(claimed, t)
			}
		}
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("index: claim compressions: %w", err)
	}
	return claimed, nil
}

// Renew extends owner's claim on an instance to lease from now, for a
// compression that takes longer than its lease; it fails, wrapping
// index.ErrNotFound, when owner no longer holds the claim.
func (c *Compressions) Renew(ctx context.Context, owner string, t index.CompressTask, lease time.Duration) error {
	var n int64
	err := c.db.write(ctx, func(tx *sql.Tx) error {
		now := c.db.now()
		res, err := c.db.exec(ctx, tx, `UPDATE compress_claim SET lease_until = ?, updated_at = ?
WHERE sop_instance_uid = ? AND object_key = ? AND owner = ? AND state = 'claimed'`, micros(now.Add(lease)), micros(now), t.SOPInstanceUID, t.Key, owner)
		if err != nil {
			return err
		}
		n, err = res.RowsAffected()
		return err
	})
	switch {
	case err != nil:
		return fmt.Errorf("index: renew compression claim: %w", err)
	case n == 0:
		return fmt.Errorf("index: renew compression claim on %s: %w", t.SOPInstanceUID, index.ErrNotFound)
	}
	return nil
}

// Done ends owner's claim on an instance compressed, or gone.
func (c *Compressions) Done(ctx context.Context, owner string, t index.CompressTask) error {
	return c.end(ctx, `DELETE FROM compress_claim WHERE sop_instance_uid = ? AND object_key = ? AND owner = ?`, t.SOPInstanceUID, t.Key, owner)
}

// Skip records that the version of an instance t names cannot be
// compressed, and why: no node takes it again until a new version of
// the instance is stored.
func (c *Compressions) Skip(ctx context.Context, owner string, t index.CompressTask, reason string) error {
	return c.end(ctx, `UPDATE compress_claim SET state = 'skipped', reason = ?, lease_until = 0, updated_at = ?
WHERE sop_instance_uid = ? AND object_key = ? AND owner = ?`, reason, micros(c.db.now()), t.SOPInstanceUID, t.Key, owner)
}

// Release gives up owner's claim on an instance that failed for a
// reason that may pass (storage unavailable): any node may take it again
// from retry on.
func (c *Compressions) Release(ctx context.Context, owner string, t index.CompressTask, retry time.Time) error {
	return c.end(ctx, `UPDATE compress_claim SET owner = '', lease_until = ?, updated_at = ?
WHERE sop_instance_uid = ? AND object_key = ? AND owner = ?`, micros(retry), micros(c.db.now()), t.SOPInstanceUID, t.Key, owner)
}

func (c *Compressions) end(ctx context.Context, q string, args ...any) error {
	err := c.db.write(ctx, func(tx *sql.Tx) error {
		_, err := c.db.exec(ctx, tx, q, args...)
		return err
	})
	if err != nil {
		return fmt.Errorf("index: end compression claim: %w", err)
	}
	return nil
}

// Stats sums up archive compression: the instances whose current object
// is re-encoded, with the bytes of their originals and of their objects,
// and the instances skipped.
func (c *Compressions) Stats(ctx context.Context) (index.CompressionStats, error) {
	var s index.CompressionStats
	err := c.db.queryRow(ctx, c.db.db, `SELECT COUNT(*), COALESCE(SUM(o.size), 0), COALESCE(SUM(i.size), 0) FROM instance_original o
JOIN instance i ON i.sop_instance_uid = o.sop_instance_uid AND i.object_key = o.object_key`).Scan(&s.Instances, &s.OriginalBytes, &s.StoredBytes)
	if err != nil {
		return s, fmt.Errorf("index: compression stats: %w", err)
	}
	err = c.db.queryRow(ctx, c.db.db, `SELECT COUNT(*) FROM compress_claim c
JOIN instance i ON i.sop_instance_uid = c.sop_instance_uid AND i.object_key = c.object_key WHERE c.state = 'skipped'`).Scan(&s.Skipped)
	if err != nil {
		return s, fmt.Errorf("index: compression stats: %w", err)
	}
	return s, nil
}
