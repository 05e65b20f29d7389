package sqlindex

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"hash/fnv"
	"slices"
)

// On PostgreSQL, writers run side by side, in one process or in several
// sharing the database. A Put or Delete reads the hierarchy, then changes
// it and recomputes the aggregates of the rows it touched from their
// children; two writers touching the same rows could each miss what the
// other did, both counting an instance or neither. So every write
// transaction first takes a transaction-scoped advisory lock on each row
// of the hierarchy it may change, named by the row's natural key (SOP
// Instance UID, Series Instance UID, Study Instance UID, the patient's
// identifiers), and holds them until it commits or rolls back. Writers of
// different patients do not wait for each other; writers of one patient
// take turns, as do two nodes putting the same instance.
//
// Some of those rows are known only from the database: the series,
// study and patient an instance hangs under now, the study a series
// belongs to now. A writer takes the locks it knows of first, in
// ascending order, waiting for them; then it reads the rows related to
// them and takes the locks of those, without waiting, until it has them
// all. A writer that finds one of those taken rolls back and starts
// again, taking them all in order: waiting for them out of order could
// deadlock with the writer that holds them. A transaction that writes
// the puts of several Commits (see committer) waits for the locks known
// of all of them at once, in one order, and then takes the related ones
// of each put without waiting, in the same way.
//
// SQLite takes one writer at a time, and needs none of this.

// rowLock returns the advisory lock of the row of table kind with the
// natural key given.
func rowLock(kind string, key ...string) int64 {
	h := fnv.New64a()
	h.Write([]byte(kind))
	for _, k := range key {
		h.Write([]byte{0})
		h.Write([]byte(k))
	}
	return int64(h.Sum64())
}

func instanceLock(sopInstanceUID string) int64  { return rowLock("instance", sopInstanceUID) }
func seriesLock(seriesInstanceUID string) int64 { return rowLock("series", seriesInstanceUID) }
func studyLock(studyInstanceUID string) int64   { return rowLock("study", studyInstanceUID) }

func patientLock(patientID, issuer, unidentifiedStudy string) int64 {
	return rowLock("patient", patientID, issuer, unidentifiedStudy)
}

// errRelock asks for a write transaction to be run again, taking the
// locks lockRelated found in order (see above).
var errRelock = errors.New("index: locks to take again in order")

// lockRows takes the locks keys, waiting for each, in ascending order,
// and returns them sorted: the locks a transaction holds. It takes none
// but on PostgreSQL. A transaction writing several puts (see committer)
// takes the locks known of all of them at once, so that its waiting is
// in one order too.
func (db *DB) lockRows(ctx context.Context, tx *sql.Tx, keys []int64) ([]int64, error) {
	held := sortedKeys(keys)
	if db.dialect != PostgreSQL {
		return held, nil
	}
	// The function scan of unnest yields the array's elements in order,
	// and the aggregate takes them as they come.
	if _, err := db.exec(ctx, tx, `SELECT COUNT(pg_advisory_xact_lock(k)) FROM unnest(CAST(? AS BIGINT[])) AS k`, held); err != nil {
		return nil, fmt.Errorf("lock rows: %w", err)
	}
	return held, nil
}

// lockRelated takes the locks of the rows related reports, which it
// calls until it reports none that *held lacks, without waiting for
// them. When one of those is held by another transaction, it adds them
// all to *want and returns errRelock, for the transaction to run again
// and wait for them in order.
func (db *DB) lockRelated(ctx context.Context, tx *sql.Tx, held, want *[]int64, related func() ([]int64, error)) error {
	if db.dialect != PostgreSQL {
		return nil
	}
	for {
		found, err := related()
		if err != nil {
			return err
		}
		var extra []int64
		for _, k := range found {
			if _, ok := slices.BinarySearch(*held, k); !ok {
				extra = append(extra, k)
			}
		}
		if len(extra) == 0 {
			return nil
		}
		extra = sortedKeys(extra)
		ok, err := db.tryLockRows(ctx, tx, extra)
		if err != nil {
			return err
		}
		*held = sortedKeys(append(*held, extra...))
		if !ok {
			*want = sortedKeys(append(*want, extra...))
			return errRelock
		}
	}
}

func sortedKeys(keys []int64) []int64 {
	keys = slices.Clone(keys)
	slices.Sort(keys)
	return slices.Compact(keys)
}

// tryLockRows takes the locks keys that no other transaction holds, and
// reports whether that was all of them.
func (db *DB) tryLockRows(ctx context.Context, tx *sql.Tx, keys []int64) (bool, error) {
	var ok bool
	err := db.queryRow(ctx, tx, `SELECT bool_and(pg_try_advisory_xact_lock(k)) FROM unnest(CAST(? AS BIGINT[])) AS k`, keys).Scan(&ok)
	if err != nil {
		return false, fmt.Errorf("lock rows: %w", err)
	}
	return ok, nil
}

// selectRelated reads the rows of the hierarchy a write reaches through
// the database: those above the instance, those above the series, and
// the patient of the study, as they are now.
const selectRelated = `SELECT se.series_instance_uid, st.study_instance_uid, p.patient_id, p.issuer_of_patient_id, p.unidentified_study
FROM instance i JOIN series se ON se.pk = i.series_fk JOIN study st ON st.pk = se.study_fk JOIN patient p ON p.pk = st.patient_fk
WHERE i.sop_instance_uid = ?
UNION ALL
SELECT se.series_instance_uid, st.study_instance_uid, p.patient_id, p.issuer_of_patient_id, p.unidentified_study
FROM series se JOIN study st ON st.pk = se.study_fk JOIN patient p ON p.pk = st.patient_fk
WHERE se.series_instance_uid = ?
UNION ALL
SELECT '', st.study_instance_uid, p.patient_id, p.issuer_of_patient_id, p.unidentified_study
FROM study st JOIN patient p ON p.pk = st.patient_fk
WHERE st.study_instance_uid = ?`

// relatedLocks returns the locks of the rows above the instance, the
// series and the study with the UIDs given, as the database holds them
// now. An empty UID names no row.
func (db *DB) relatedLocks(ctx context.Context, tx *sql.Tx, sop, series, study string) ([]int64, error) {
	rows, err := db.query(ctx, tx, selectRelated, sop, series, study)
	if err != nil {
		return nil, fmt.Errorf("read related rows: %w", err)
	}
	defer rows.Close()
	var keys []int64
	for rows.Next() {
		var se, st, id, issuer, unidentified string
		if err := rows.Scan(&se, &st, &id, &issuer, &unidentified); err != nil {
			return nil, fmt.Errorf("read related rows: %w", err)
		}
		if se != "" {
			keys = append(keys, seriesLock(se))
		}
		keys = append(keys, studyLock(st), patientLock(id, issuer, unidentified))
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("read related rows: %w", err)
	}
	return keys, nil
}
