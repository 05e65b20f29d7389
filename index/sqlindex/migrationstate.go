package sqlindex

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"iter"
	"strconv"
	"strings"
	"time"

	"github.com/pacsd/pacsd/migrate"
)

// MigrationState keeps the state of migrations and imports (package
// migrate) in the index's database, in the tables of migration 0005, so
// that a migration goes on from any process that opens the same index.
type MigrationState struct{ db *DB }

// MigrationState returns the migrations' state kept in db.
func (db *DB) MigrationState() *MigrationState { return &MigrationState{db} }

var _ migrate.State = (*MigrationState)(nil)

// studyBatch is how many study rows one transaction of AddStudies writes.
const studyBatch = 500

const migrationColumns = `pk, source, kind, started_at, owner, running, heartbeat_at, waiting, finished, time_window`

func scanMigration(sc interface{ Scan(...any) error }) (*migrate.Migration, error) {
	var m migrate.Migration
	var pk, started, heartbeat int64
	var running, waiting, finished int
	if err := sc.Scan(&pk, &m.Source, &m.Kind, &started, &m.Owner, &running, &heartbeat, &waiting, &finished, &m.Window); err != nil {
		return nil, err
	}
	m.ID = "m" + strconv.FormatInt(pk, 10)
	m.Started, m.Heartbeat = fromMicros(started), fromMicros(heartbeat)
	m.Running, m.Waiting, m.Finished = running != 0, waiting != 0, finished != 0
	return &m, nil
}

// migrationPK reads the row key of a migration ID, "m" and a number.
func migrationPK(id string) (int64, error) {
	n, err := strconv.ParseInt(strings.TrimPrefix(id, "m"), 10, 64)
	if err != nil || !strings.HasPrefix(id, "m") {
		return 0, fmt.Errorf("migration %q: %w", id, migrate.ErrNotFound)
	}
	return n, nil
}

func flag(b bool) int {
	if b {
		return 1
	}
	return 0
}

// Begin implements migrate.State.
func (s *MigrationState) Begin(ctx context.Context, source, kind string) (*migrate.Migration, error) {
	var m *migrate.Migration
	err := s.db.write(ctx, func(tx *sql.Tx) error {
		if _, err := s.db.exec(ctx, tx, `INSERT INTO migration (source, kind, started_at) VALUES (?, ?, ?) ON CONFLICT (source) DO NOTHING`,
			source, kind, micros(s.db.now())); err != nil {
			return err
		}
		var err error
		m, err = scanMigration(s.db.queryRow(ctx, tx, `SELECT `+migrationColumns+` FROM migration WHERE source = ?`, source))
		return err
	})
	if err != nil {
		return nil, fmt.Errorf("index: begin migration from %s: %w", source, err)
	}
	return m, nil
}

// Migrations implements migrate.State.
func (s *MigrationState) Migrations(ctx context.Context) ([]*migrate.Migration, error) {
	rows, err := s.db.query(ctx, s.db.db, `SELECT `+migrationColumns+` FROM migration ORDER BY started_at DESC, pk DESC`)
	if err != nil {
		return nil, fmt.Errorf("index: migrations: %w", err)
	}
	defer rows.Close()
	var out []*migrate.Migration
	for rows.Next() {
		m, err := scanMigration(rows)
		if err != nil {
			return nil, fmt.Errorf("index: migrations: %w", err)
		}
		out = append(out, m)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("index: migrations: %w", err)
	}
	return out, nil
}

// Migration implements migrate.State.
func (s *MigrationState) Migration(ctx context.Context, id string) (*migrate.Migration, error) {
	pk, err := migrationPK(id)
	if err != nil {
		return nil, err
	}
	m, err := scanMigration(s.db.queryRow(ctx, s.db.db, `SELECT `+migrationColumns+` FROM migration WHERE pk = ?`, pk))
	if errors.Is(err, sql.ErrNoRows) {
		return nil, fmt.Errorf("migration %s: %w", id, migrate.ErrNotFound)
	}
	if err != nil {
		return nil, fmt.Errorf("index: migration %s: %w", id, err)
	}
	return m, nil
}

// Claim implements migrate.State with one conditional update, which of
// two processes only one wins.
func (s *MigrationState) Claim(ctx context.Context, id, prev, owner string, now time.Time) error {
	pk, err := migrationPK(id)
	if err != nil {
		return err
	}
	var n int64
	err = s.db.write(ctx, func(tx *sql.Tx) error {
		res, err := s.db.exec(ctx, tx, `UPDATE migration SET owner = ?, running = ?, heartbeat_at = ? WHERE pk = ? AND owner = ?`,
			owner, flag(owner != ""), micros(now), pk, prev)
		if err != nil {
			return err
		}
		n, err = res.RowsAffected()
		return err
	})
	if err != nil {
		return fmt.Errorf("index: claim migration %s: %w", id, err)
	}
	if n == 0 {
		m, err := s.Migration(ctx, id)
		if err != nil {
			return err
		}
		return fmt.Errorf("%w: %s", migrate.ErrClaimed, m.Owner)
	}
	return nil
}

// Update implements migrate.State.
func (s *MigrationState) Update(ctx context.Context, m *migrate.Migration) error {
	pk, err := migrationPK(m.ID)
	if err != nil {
		return err
	}
	var n int64
	err = s.db.write(ctx, func(tx *sql.Tx) error {
		res, err := s.db.exec(ctx, tx, `UPDATE migration SET running = ?, heartbeat_at = ?, waiting = ?, finished = ?, time_window = ? WHERE pk = ?`,
			flag(m.Running), micros(m.Heartbeat), flag(m.Waiting), flag(m.Finished), m.Window, pk)
		if err != nil {
			return err
		}
		n, err = res.RowsAffected()
		return err
	})
	if err != nil {
		return fmt.Errorf("index: update migration %s: %w", m.ID, err)
	}
	if n == 0 {
		return fmt.Errorf("migration %s: %w", m.ID, migrate.ErrNotFound)
	}
	return nil
}

const migrationStudyColumns = `study_instance_uid, patient_id, issuer_of_patient_id, patient_name, patient_birth_date, study_date, study_time,
	accession_number, modalities, instances_source, instances_here, bytes, state, attempts, last_error, priority, updated_at`

func migrationStudyArgs(pk int64, st *migrate.Study, now time.Time) []any {
	return []any{pk, st.StudyInstanceUID, st.PatientID, st.IssuerOfPatientID, st.PatientName, st.PatientBirthDate, st.StudyDate, st.StudyTime,
		st.AccessionNumber, st.Modalities, st.InstancesAtSource, st.InstancesHere, st.Bytes, string(st.State), st.Attempts, st.LastError,
		flag(st.Priority), micros(now)}
}

func scanMigrationStudy(sc interface{ Scan(...any) error }) (*migrate.Study, error) {
	var st migrate.Study
	var state string
	var priority int
	var updated int64
	if err := sc.Scan(&st.StudyInstanceUID, &st.PatientID, &st.IssuerOfPatientID, &st.PatientName, &st.PatientBirthDate, &st.StudyDate,
		&st.StudyTime, &st.AccessionNumber, &st.Modalities, &st.InstancesAtSource, &st.InstancesHere, &st.Bytes, &state, &st.Attempts,
		&st.LastError, &priority, &updated); err != nil {
		return nil, err
	}
	st.State, st.Priority, st.Updated = migrate.StudyState(state), priority != 0, fromMicros(updated)
	return &st, nil
}

// AddStudies implements migrate.State, a few hundred rows a transaction.
func (s *MigrationState) AddStudies(ctx context.Context, id string, studies []*migrate.Study) error {
	pk, err := migrationPK(id)
	if err != nil {
		return err
	}
	const q = `INSERT INTO migration_study (migration_fk, ` + migrationStudyColumns + `)
VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, 0, 0, 'pending', 0, '', ?, ?)
ON CONFLICT (migration_fk, study_instance_uid) DO UPDATE SET
	patient_id = excluded.patient_id, issuer_of_patient_id = excluded.issuer_of_patient_id,
	patient_name = excluded.patient_name, patient_birth_date = excluded.patient_birth_date,
	study_date = excluded.study_date, study_time = excluded.study_time, accession_number = excluded.accession_number,
	modalities = excluded.modalities, priority = excluded.priority, updated_at = excluded.updated_at,
	instances_source = CASE WHEN migration_study.state = 'pending' THEN excluded.instances_source ELSE migration_study.instances_source END`
	for len(studies) > 0 {
		batch := studies[:min(len(studies), studyBatch)]
		studies = studies[len(batch):]
		err := s.db.write(ctx, func(tx *sql.Tx) error {
			now := micros(s.db.now())
			for _, st := range batch {
				if _, err := s.db.exec(ctx, tx, q, pk, st.StudyInstanceUID, st.PatientID, st.IssuerOfPatientID, st.PatientName,
					st.PatientBirthDate, st.StudyDate, st.StudyTime, st.AccessionNumber, st.Modalities, st.InstancesAtSource,
					flag(st.Priority), now); err != nil {
					return err
				}
			}
			return nil
		})
		if err != nil {
			return fmt.Errorf("index: add studies to migration %s: %w", id, err)
		}
	}
	return nil
}

// Study implements migrate.State.
func (s *MigrationState) Study(ctx context.Context, id, study string) (*migrate.Study, error) {
	pk, err := migrationPK(id)
	if err != nil {
		return nil, err
	}
	st, err := scanMigrationStudy(s.db.queryRow(ctx, s.db.db, `SELECT `+migrationStudyColumns+` FROM migration_study WHERE migration_fk = ? AND study_instance_uid = ?`, pk, study))
	if errors.Is(err, sql.ErrNoRows) {
		return nil, fmt.Errorf("study %s: %w", study, migrate.ErrNotFound)
	}
	if err != nil {
		return nil, fmt.Errorf("index: migration %s, study %s: %w", id, study, err)
	}
	return st, nil
}

// PutStudy implements migrate.State.
func (s *MigrationState) PutStudy(ctx context.Context, id string, st *migrate.Study) error {
	pk, err := migrationPK(id)
	if err != nil {
		return err
	}
	if !st.State.Valid() {
		return fmt.Errorf("index: study %s: state %q", st.StudyInstanceUID, st.State)
	}
	err = s.db.write(ctx, func(tx *sql.Tx) error {
		_, err := s.db.exec(ctx, tx, `INSERT INTO migration_study (migration_fk, `+migrationStudyColumns+`)
VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)
ON CONFLICT (migration_fk, study_instance_uid) DO UPDATE SET
	patient_id = excluded.patient_id, issuer_of_patient_id = excluded.issuer_of_patient_id,
	patient_name = excluded.patient_name, patient_birth_date = excluded.patient_birth_date,
	study_date = excluded.study_date, study_time = excluded.study_time, accession_number = excluded.accession_number,
	modalities = excluded.modalities, instances_source = excluded.instances_source, instances_here = excluded.instances_here,
	bytes = excluded.bytes, state = excluded.state, attempts = excluded.attempts, last_error = excluded.last_error,
	priority = excluded.priority, updated_at = excluded.updated_at`, migrationStudyArgs(pk, st, s.db.now())...)
		return err
	})
	if err != nil {
		return fmt.Errorf("index: migration %s, study %s: %w", id, st.StudyInstanceUID, err)
	}
	return nil
}

// Studies implements migrate.State, reading a page of rows at a time.
func (s *MigrationState) Studies(ctx context.Context, id string, f migrate.StudyFilter) iter.Seq2[*migrate.Study, error] {
	return func(yield func(*migrate.Study, error) bool) {
		pk, err := migrationPK(id)
		if err != nil {
			yield(nil, err)
			return
		}
		where := `migration_fk = ? AND study_instance_uid > ?`
		args := []any{pk, f.After}
		if len(f.States) > 0 {
			where += ` AND state IN (?` + strings.Repeat(", ?", len(f.States)-1) + `)`
			for _, st := range f.States {
				args = append(args, string(st))
			}
		}
		left := f.Limit
		for {
			page := s.db.batch
			if f.Limit > 0 {
				page = min(page, left)
			}
			rows, err := s.db.query(ctx, s.db.db, `SELECT `+migrationStudyColumns+` FROM migration_study WHERE `+where+
				` ORDER BY study_instance_uid LIMIT `+strconv.Itoa(page), args...)
			if err != nil {
				yield(nil, fmt.Errorf("index: studies of migration %s: %w", id, err))
				return
			}
			var list []*migrate.Study
			for rows.Next() {
				st, err := scanMigrationStudy(rows)
				if err != nil {
					rows.Close()
					yield(nil, fmt.Errorf("index: studies of migration %s: %w", id, err))
					return
				}
				list = append(list, st)
			}
			err = rows.Err()
			rows.Close()
			if err != nil {
				yield(nil, fmt.Errorf("index: studies of migration %s: %w", id, err))
				return
			}
			for _, st := range list {
				if !yield(st, nil) {
					return
				}
			}
			left -= len(list)
			if len(list) < page || (f.Limit > 0 && left <= 0) {
				return
			}
			args[1] = list[len(list)-1].StudyInstanceUID
		}
	}
}

// PatientStudies implements migrate.State.
func (s *MigrationState) PatientStudies(ctx context.Context, id, patientID, issuer string) ([]*migrate.Study, error) {
	pk, err := migrationPK(id)
	if err != nil {
		return nil, err
	}
	rows, err := s.db.query(ctx, s.db.db, `SELECT `+migrationStudyColumns+` FROM migration_study
WHERE migration_fk = ? AND patient_id = ? AND issuer_of_patient_id = ? ORDER BY study_instance_uid`, pk, patientID, issuer)
	if err != nil {
		return nil, fmt.Errorf("index: studies of patient %s: %w", patientID, err)
	}
	defer rows.Close()
	var out []*migrate.Study
	for rows.Next() {
		st, err := scanMigrationStudy(rows)
		if err != nil {
			return nil, fmt.Errorf("index: studies of patient %s: %w", patientID, err)
		}
		out = append(out, st)
	}
	return out, rows.Err()
}

// Totals implements migrate.State.
func (s *MigrationState) Totals(ctx context.Context, id string) (migrate.Totals, error) {
	t := migrate.Totals{ByState: map[migrate.StudyState]int{}}
	pk, err := migrationPK(id)
	if err != nil {
		return t, err
	}
	rows, err := s.db.query(ctx, s.db.db, `SELECT state, COUNT(*), COALESCE(SUM(instances_source), 0), COALESCE(SUM(instances_here), 0),
	COALESCE(SUM(bytes), 0) FROM migration_study WHERE migration_fk = ? GROUP BY state`, pk)
	if err != nil {
		return t, fmt.Errorf("index: totals of migration %s: %w", id, err)
	}
	defer rows.Close()
	for rows.Next() {
		var state string
		var n, src, here int
		var bytes int64
		if err := rows.Scan(&state, &n, &src, &here, &bytes); err != nil {
			return t, fmt.Errorf("index: totals of migration %s: %w", id, err)
		}
		t.ByState[migrate.StudyState(state)] = n
		t.Studies += n
		t.InstancesAtSource += src
		t.InstancesHere += here
		t.Bytes += bytes
	}
	return t, rows.Err()
}

// Progress implements migrate.State.
func (s *MigrationState) Progress(ctx context.Context, id string, since time.Time) (int, int64, error) {
	pk, err := migrationPK(id)
	if err != nil {
		return 0, 0, err
	}
	var n int
	var bytes int64
	err = s.db.queryRow(ctx, s.db.db, `SELECT COUNT(*), COALESCE(SUM(bytes), 0) FROM migration_study
WHERE migration_fk = ? AND state = 'verified' AND updated_at >= ?`, pk, micros(since)).Scan(&n, &bytes)
	if err != nil {
		return 0, 0, fmt.Errorf("index: progress of migration %s: %w", id, err)
	}
	return n, bytes, nil
}

const migrationFileColumns = `path, size, mod_time, sop_instance_uid, study_instance_uid, sha256, state, reason`

// PutFile implements migrate.State.
func (s *MigrationState) PutFile(ctx context.Context, id string, f *migrate.File) error {
	pk, err := migrationPK(id)
	if err != nil {
		return err
	}
	err = s.db.write(ctx, func(tx *sql.Tx) error {
		_, err := s.db.exec(ctx, tx, `INSERT INTO migration_file (migration_fk, `+migrationFileColumns+`) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)
ON CONFLICT (migration_fk, path) DO UPDATE SET size = excluded.size, mod_time = excluded.mod_time,
	sop_instance_uid = excluded.sop_instance_uid, study_instance_uid = excluded.study_instance_uid, sha256 = excluded.sha256,
	state = excluded.state, reason = excluded.reason`,
			pk, f.Path, f.Size, micros(f.ModTime), f.SOPInstanceUID, f.StudyInstanceUID, f.SHA256, string(f.State), f.Reason)
		return err
	})
	if err != nil {
		return fmt.Errorf("index: file %s: %w", f.Path, err)
	}
	return nil
}

func scanMigrationFile(sc interface{ Scan(...any) error }) (*migrate.File, error) {
	var f migrate.File
	var mod int64
	var state string
	if err := sc.Scan(&f.Path, &f.Size, &mod, &f.SOPInstanceUID, &f.StudyInstanceUID, &f.SHA256, &state, &f.Reason); err != nil {
		return nil, err
	}
	f.ModTime, f.State = fromMicros(mod), migrate.FileState(state)
	return &f, nil
}

// File implements migrate.State.
func (s *MigrationState) File(ctx context.Context, id, path string) (*migrate.File, error) {
	pk, err := migrationPK(id)
	if err != nil {
		return nil, err
	}
	f, err := scanMigrationFile(s.db.queryRow(ctx, s.db.db, `SELECT `+migrationFileColumns+` FROM migration_file WHERE migration_fk = ? AND path = ?`, pk, path))
	if errors.Is(err, sql.ErrNoRows) {
		return nil, fmt.Errorf("file %s: %w", path, migrate.ErrNotFound)
	}
	if err != nil {
		return nil, fmt.Errorf("index: file %s: %w", path, err)
	}
	return f, nil
}

// Files implements migrate.State, reading a page of rows at a time.
func (s *MigrationState) Files(ctx context.Context, id string, states ...migrate.FileState) iter.Seq2[*migrate.File, error] {
	return func(yield func(*migrate.File, error) bool) {
		pk, err := migrationPK(id)
		if err != nil {
			yield(nil, err)
			return
		}
		where := `migration_fk = ? AND path > ?`
		args := []any{pk, ""}
		if len(states) > 0 {
			where += ` AND state IN (?` + strings.Repeat(", ?", len(states)-1) + `)`
			for _, st := range states {
				args = append(args, string(st))
			}
		}
		for {
			rows, err := s.db.query(ctx, s.db.db, `SELECT `+migrationFileColumns+` FROM migration_file WHERE `+where+
				` ORDER BY path LIMIT `+strconv.Itoa(s.db.batch), args...)
			if err != nil {
				yield(nil, fmt.Errorf("index: files of migration %s: %w", id, err))
				return
			}
			var list []*migrate.File
			for rows.Next() {
				f, err := scanMigrationFile(rows)
				if err != nil {
					rows.Close()
					yield(nil, fmt.Errorf("index: files of migration %s: %w", id, err))
					return
				}
				list = append(list, f)
			}
			err = rows.Err()
			rows.Close()
			if err != nil {
				yield(nil, fmt.Errorf("index: files of migration %s: %w", id, err))
				return
			}
			for _, f := range list {
				if !yield(f, nil) {
					return
				}
			}
			if len(list) < s.db.batch {
				return
			}
			args[1] = list[len(list)-1].Path
		}
	}
}
