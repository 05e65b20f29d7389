package sqlindex

import (
	"github.com/pacsd/pacsd/dicom"
	"github.com/pacsd/pacsd/index"

	"context"
	"database/sql"
	"errors"
	"fmt"
	"slices"
	"strings"

	"github.com/pacsd/pacsd/dicom/tag"
)

// statements are the SQL statements built from the column lists, once per
// DB.
type statements struct {
	patient, study, series *level
	insertInstance         string
	updateInstance         string
}

func newStatements() *statements {
	cols := slices.Concat(instanceRecord, names(instanceColumns, false))
	return &statements{
		patient:        newLevel(patientTable, ""),
		study:          newLevel(studyTable, "patient_fk"),
		series:         newLevel(seriesTable, "study_fk"),
		insertInstance: "INSERT INTO instance (" + strings.Join(cols, ", ") + ") VALUES (" + params(len(cols)) + ") RETURNING pk",
		updateInstance: "UPDATE instance SET " + strings.Join(cols, " = ?, ") + " = ? WHERE pk = ?",
	}
}

// Put records an instance as req asks (see index.PutRequest), in one
// transaction: if it fails, nothing of it is recorded. It is PreparePut
// and Commit together.
//
// An instance put again under other parents leaves its old ones: their
// aggregates lose it, and those left empty are deleted. See the package
// documentation for which instance's attributes a patient, study or
// series shows.
func (db *DB) Put(ctx context.Context, req *index.PutRequest) (*index.Change, error) {
	p, err := db.PreparePut(ctx, req)
	if err != nil {
		return nil, err
	}
	return p.Commit(ctx)
}

// PreparePut checks req and computes the rows it will write, without
// touching the database; see index.Pending. Its Commit waits for the
// DB's committer, which writes the puts of concurrent Commits in one
// transaction (see committer).
func (db *DB) PreparePut(ctx context.Context, req *index.PutRequest) (index.Pending, error) {
	if req == nil {
		return nil, errors.New("index: put: nil request")
	}
	in := req.Instance
	if err := checkUIDs(in); err != nil {
		return nil, err
	}
	if err := ctx.Err(); err != nil {
		return nil, fmt.Errorf("index: put %s: %w", in.SOPInstanceUID, err)
	}
	received := in.ReceivedAt
	if received.IsZero() {
		received = db.now()
	}
	p := &prepared{req: req, recv: micros(received)}
	if err := db.rows(p, in.Amended); err != nil {
		return nil, fmt.Errorf("index: put %s: %w", in.SOPInstanceUID, err)
	}
	p.locks = []int64{instanceLock(in.SOPInstanceUID), seriesLock(in.SeriesInstanceUID), studyLock(p.study), patientLock(p.patientKey[0], p.patientKey[1], p.patientKey[2])}
	return &pending{db: db, p: p}, nil
}

// rows computes the values of the rows of p's instance, indexed as it is
// served: its header with amended over it.
func (db *DB) rows(p *prepared, amended *dicom.Dataset) error {
	in := p.req.Instance
	h := index.Overlay(in.Header, amended)
	p.amended = amended
	p.study = in.StudyInstanceUID
	if v := h.String(tag.StudyInstanceUID); amended != nil && v != "" {
		p.study = v // moved to another study
	}
	// Instances without a Patient ID are filed under a patient of their
	// own study: merging every unidentified patient into one would put
	// unrelated people's studies together.
	patientID, issuer, unidentified := cleanText(h.String(tag.PatientID)), cleanText(h.String(tag.IssuerOfPatientID)), ""
	if patientID == "" {
		unidentified = p.study
	}
	p.patientKey = []string{patientID, issuer, unidentified}
	for i, cols := range [][]column{patientColumns, studyColumns, seriesColumns, instanceColumns} {
		var err error
		if p.attrs[i], err = values(cols, h, false); err != nil {
			return err
		}
	}
	for i, lv := range []*level{db.stmt.patient, db.stmt.study, db.stmt.series} {
		p.names[i] = nameValues(lv, h)
	}
	return nil
}

// prepared is a put checked, with the values of its rows computed.
type prepared struct {
	req  *index.PutRequest
	recv int64
	// study is the Study Instance UID the instance is filed under, and
	// amended its amendments (see rows).
	study      string
	amended    *dicom.Dataset
	patientKey []string
	attrs      [4][]any    // patient, study, series, instance
	names      [3][]string // patient, study, series
	// locks are the locks of the rows the put changes (see lock.go):
	// those known from the request, and those found related to them by
	// earlier attempts of its transaction.
	locks []int64
}

// pending implements index.Pending.
type pending struct {
	db    *DB
	p     *prepared
	ended bool
}

func (p *pending) Commit(ctx context.Context) (*index.Change, error) {
	sop := p.p.req.Instance.SOPInstanceUID
	if p.ended {
		return nil, fmt.Errorf("index: put %s: already ended", sop)
	}
	p.ended = true
	ch, err := p.db.commits.commit(ctx, p.p)
	if err != nil {
		return nil, fmt.Errorf("index: put %s: %w", sop, err)
	}
	return ch, nil
}

func (p *pending) Rollback() { p.ended = true }

// putWrite is a put being written: what its steps know of it.
type putWrite struct {
	req    *index.PutRequest
	change *index.Change
	// The pks of the instance row and of its series, study and patient.
	instance, series, study, patient int64
	// previous is the row replaced, nil for a new instance.
	previous *stored
	// feed collects the change events of the put's transaction.
	feed *feed
}

// putStep is a write of a put after its instance row, in the put's
// transaction. Features that record something with every instance (a
// routing task, an event of the change feed) add a step to DB.steps in
// New; a step that fails fails the put.
type putStep func(ctx context.Context, tx *sql.Tx, w *putWrite) error

// put writes p in tx, after taking the locks of the rows it changes that
// held lacks (see lockRelated), then runs the DB's steps. It adds the
// rows whose aggregates it changed to refreshed, for the caller to
// recompute before committing, and its change to f, for the caller to
// write last (see writeFeed), if the put succeeds.
func (db *DB) put(ctx context.Context, tx *sql.Tx, p *prepared, held *[]int64, refreshed *refresh, f *feed) (*index.Change, error) {
	in := p.req.Instance
	err := db.lockRelated(ctx, tx, held, &p.locks, func() ([]int64, error) {
		return db.relatedLocks(ctx, tx, in.SOPInstanceUID, in.SeriesInstanceUID, in.StudyInstanceUID)
	})
	if err != nil {
		return nil, err
	}
	old, err := db.lookup(ctx, tx, in.SOPInstanceUID)
	if err != nil && !errors.Is(err, index.ErrNotFound) {
		return nil, err
	}
	if p.req.Check != nil {
		var current *index.Instance
		if old != nil {
			c := old.Instance
			current = &c
		}
		if err := p.req.Check(current); err != nil {
			return nil, err
		}
	}
	if err := db.inheritAmendments(ctx, tx, p, old); err != nil {
		return nil, err
	}
	recv, attrs := p.recv, p.attrs
	now := micros(db.now())
	patient, _, err := db.upsert(ctx, tx, db.stmt.patient, []any{p.patientKey[0], p.patientKey[1], p.patientKey[2]}, 0, attrs[0], p.names[0], recv, now)
	if err != nil {
		return nil, err
	}
	study, studyPatient, err := db.upsert(ctx, tx, db.stmt.study, []any{p.study}, patient, attrs[1], p.names[1], recv, now)
	if err != nil {
		return nil, err
	}
	series, seriesStudy, err := db.upsert(ctx, tx, db.stmt.series, []any{in.SeriesInstanceUID}, study, attrs[2], p.names[2], recv, now)
	if err != nil {
		return nil, err
	}

	row := append([]any{series, in.SOPInstanceUID, in.SOPClassUID, p.study, in.SeriesInstanceUID,
		in.Key, in.Size, in.SHA256, in.TransferSyntaxUID,
		in.CallingAE, in.CalledAE, in.Source, in.Principal, recv, now}, attrs[3]...)
	written := *in
	written.ReceivedAt = fromMicros(recv)
	written.StudyInstanceUID, written.Amended = p.study, p.amended
	w := &putWrite{req: p.req, change: &index.Change{Kind: index.Created, Instance: &written},
		series: series, study: study, patient: patient, previous: old, feed: f}
	r := refresh{now: now}
	if old != nil {
		if err := db.removeSOPClass(ctx, tx, old.series, old.SOPClassUID); err != nil {
			return nil, err
		}
		if _, err := db.exec(ctx, tx, db.stmt.updateInstance, append(row, old.pk)...); err != nil {
			return nil, fmt.Errorf("update instance: %w", err)
		}
		r.add(old.series, old.study, old.patient)
		prev := old.Instance
		w.change.Kind, w.change.Previous, w.instance = index.Replaced, &prev, old.pk
	} else if err := db.queryRow(ctx, tx, db.stmt.insertInstance, row...).Scan(&w.instance); err != nil {
		return nil, fmt.Errorf("insert instance: %w", err)
	}
	if err := db.addSOPClass(ctx, tx, series, in.SOPClassUID); err != nil {
		return nil, err
	}
	r.add(series, study, patient)
	r.add(0, seriesStudy, studyPatient)
	for _, step := range db.steps {
		if err := step(ctx, tx, w); err != nil {
			return nil, err
		}
	}
	// The aggregates of the rows the put touched are recomputed once per
	// transaction, after all its puts (see committer).
	refreshed.merge(&r)
	return w.change, nil
}

// checkUIDs checks the record of in: the three UIDs are there, and no
// field holds what a database may not keep as text (see cleanText). The
// record names the object in storage, so it is refused rather than
// changed.
func checkUIDs(in *index.Instance) error {
	if in == nil {
		return errors.New("index: put: nil instance")
	}
	for _, f := range []struct{ name, v string }{
		{"SOP Instance UID", in.SOPInstanceUID},
		{"Series Instance UID", in.SeriesInstanceUID},
		{"Study Instance UID", in.StudyInstanceUID},
	} {
		if f.v == "" {
			return fmt.Errorf("index: put: instance has no %s", f.name)
		}
	}
	for _, f := range []struct{ name, v string }{
		{"SOP Instance UID", in.SOPInstanceUID},
		{"Series Instance UID", in.SeriesInstanceUID},
		{"Study Instance UID", in.StudyInstanceUID},
		{"SOP Class UID", in.SOPClassUID},
		{"key", in.Key},
		{"SHA-256", in.SHA256},
		{"Transfer Syntax UID", in.TransferSyntaxUID},
		{"calling AE", in.CallingAE},
		{"called AE", in.CalledAE},
		{"source", in.Source},
		{"principal", in.Principal},
	} {
		if !validText(f.v) {
			return fmt.Errorf("index: put: the instance's %s %q is not UTF-8 text without NUL characters", f.name, f.v)
		}
	}
	return nil
}

// Delete removes the record of an instance. Its series, study and patient
// lose it from their aggregates, and are deleted when left empty. The
// change feed records the deletion.
func (db *DB) Delete(ctx context.Context, sopInstanceUID string) error {
	locks := []int64{instanceLock(sopInstanceUID)}
	err := db.writeRecorded(ctx, func(tx *sql.Tx, f *feed) error {
		held, err := db.lockRows(ctx, tx, locks)
		if err != nil {
			return err
		}
		err = db.lockRelated(ctx, tx, &held, &locks, func() ([]int64, error) {
			return db.relatedLocks(ctx, tx, sopInstanceUID, "", "")
		})
		if err != nil {
			return err
		}
		old, err := db.lookup(ctx, tx, sopInstanceUID)
		if err != nil {
			return err
		}
		if err := db.removeSOPClass(ctx, tx, old.series, old.SOPClassUID); err != nil {
			return err
		}
		if _, err := db.exec(ctx, tx, `DELETE FROM instance WHERE pk = ?`, old.pk); err != nil {
			return fmt.Errorf("delete instance: %w", err)
		}
		r := refresh{now: micros(db.now())}
		r.add(old.series, old.study, old.patient)
		f.add(index.Deleted, old.StudyInstanceUID, old.SeriesInstanceUID, old.SOPInstanceUID)
		return r.run(ctx, db, tx)
	})
	if err != nil {
		return fmt.Errorf("index: delete %s: %w", sopInstanceUID, err)
	}
	return nil
}

// stored is an instance row and where it hangs in the hierarchy.
type stored struct {
	index.Instance
	pk, series, study, patient int64
}

const selectInstance = `SELECT i.pk, i.series_fk, se.study_fk, st.patient_fk,
	i.sop_instance_uid, i.sop_class_uid, i.series_instance_uid, i.study_instance_uid,
	i.object_key, i.size, i.sha256, i.transfer_syntax_uid, i.calling_ae, i.called_ae, i.source, i.principal, i.received_at,
	i.amended, i.amended_at
FROM instance i
JOIN series se ON se.pk = i.series_fk
JOIN study st ON st.pk = se.study_fk`

type scanner interface{ Scan(dest ...any) error }

func scanInstance(row scanner) (*stored, error) {
	var s stored
	var recv, amendedAt int64
	var amended string
	err := row.Scan(&s.pk, &s.series, &s.study, &s.patient,
		&s.SOPInstanceUID, &s.SOPClassUID, &s.SeriesInstanceUID, &s.StudyInstanceUID,
		&s.Key, &s.Size, &s.SHA256, &s.TransferSyntaxUID, &s.CallingAE, &s.CalledAE, &s.Source, &s.Principal, &recv, &amended, &amendedAt)
	if err != nil {
		return nil, err
	}
	s.ReceivedAt = fromMicros(recv)
	if amendedAt != 0 {
		s.AmendedAt = fromMicros(amendedAt)
	}
	if s.Amended, err = parseAmended(amended); err != nil {
		return nil, err
	}
	return &s, nil
}

func (db *DB) lookup(ctx context.Context, q querier, sopInstanceUID string) (*stored, error) {
	s, err := scanInstance(db.queryRow(ctx, q, selectInstance+` WHERE i.sop_instance_uid = ?`, sopInstanceUID))
	switch {
	case errors.Is(err, sql.ErrNoRows):
		return nil, index.ErrNotFound
	case err != nil:
		return nil, fmt.Errorf("read instance: %w", err)
	}
	return s, nil
}

// upsert creates the row of a level identified by key, or updates it when
// recv is not older than the instance its attributes came from. It
// returns the row's pk and the parent the row had before, 0 when it is
// new. names are the values of the level's PN attributes, whose name
// keys it writes with the row, and rewrites only when they changed: most
// instances repeat the names of their series, study and patient.
func (db *DB) upsert(ctx context.Context, tx *sql.Tx, lv *level, key []any, parent int64, attrs []any, names []string, recv, now int64) (pk, oldParent int64, err error) {
	var at int64
	old := make([]string, len(lv.names))
	dest := []any{&pk, &oldParent, &at}
	for i := range old {
		dest = append(dest, &old[i])
	}
	err = db.queryRow(ctx, tx, lv.find, key...).Scan(dest...)
	switch {
	case errors.Is(err, sql.ErrNoRows):
		args := slices.Concat(key, parentArg(lv, parent), attrs, []any{recv, now})
		if err := db.queryRow(ctx, tx, lv.insert, args...).Scan(&pk); err != nil {
			return 0, 0, fmt.Errorf("insert %s: %w", lv.name, err)
		}
		return pk, 0, db.writeNames(ctx, tx, lv, pk, names, false)
	case err != nil:
		return 0, 0, fmt.Errorf("read %s: %w", lv.name, err)
	case recv < at:
		return pk, oldParent, nil
	}
	args := slices.Concat(parentArg(lv, parent), attrs, []any{recv, now, pk})
	if _, err := db.exec(ctx, tx, lv.update, args...); err != nil {
		return 0, 0, fmt.Errorf("update %s: %w", lv.name, err)
	}
	if !slices.Equal(old, names) {
		if err := db.writeNames(ctx, tx, lv, pk, names, true); err != nil {
			return 0, 0, err
		}
	}
	return pk, oldParent, nil
}

func parentArg(lv *level, parent int64) []any {
	if lv.parent == "" {
		return nil
	}
	return []any{parent}
}

func (db *DB) addSOPClass(ctx context.Context, tx *sql.Tx, series int64, sopClass string) error {
	_, err := db.exec(ctx, tx, `INSERT INTO series_sop_class (series_fk, sop_class_uid, number_of_instances) VALUES (?, ?, 1)
ON CONFLICT (series_fk, sop_class_uid) DO UPDATE SET number_of_instances = series_sop_class.number_of_instances + 1`,
		series, sopClass)
	if err != nil {
		return fmt.Errorf("count SOP class: %w", err)
	}
	return nil
}

func (db *DB) removeSOPClass(ctx context.Context, tx *sql.Tx, series int64, sopClass string) error {
	res, err := db.exec(ctx, tx, `UPDATE series_sop_class SET number_of_instances = number_of_instances - 1
WHERE series_fk = ? AND sop_class_uid = ?`, series, sopClass)
	if err != nil {
		return fmt.Errorf("count SOP class: %w", err)
	}
	if n, err := res.RowsAffected(); err != nil || n != 1 {
		return fmt.Errorf("count SOP class: series %d has no instance of %s to remove (%d rows, %v)", series, sopClass, n, err)
	}
	if _, err := db.exec(ctx, tx, `DELETE FROM series_sop_class WHERE series_fk = ? AND sop_class_uid = ? AND number_of_instances = 0`,
		series, sopClass); err != nil {
		return fmt.Errorf("count SOP class: %w", err)
	}
	return nil
}

// refresh recomputes the aggregates of the rows a change touched, bottom
// up, and deletes those left empty. Every level's aggregates are sums
// over its children's, so each step reads a handful of rows however large
// the study.
type refresh struct {
	now                       int64
	series, studies, patients []int64
}

// merge adds the rows o names.
func (r *refresh) merge(o *refresh) {
	for _, pk := range o.series {
		r.series = addPK(r.series, pk)
	}
	for _, pk := range o.studies {
		r.studies = addPK(r.studies, pk)
	}
	for _, pk := range o.patients {
		r.patients = addPK(r.patients, pk)
	}
}

// add names rows whose aggregates may have changed; 0 names none.
func (r *refresh) add(series, study, patient int64) {
	r.series = addPK(r.series, series)
	r.studies = addPK(r.studies, study)
	r.patients = addPK(r.patients, patient)
}

func addPK(pks []int64, pk int64) []int64 {
	if pk == 0 || slices.Contains(pks, pk) {
		return pks
	}
	return append(pks, pk)
}

func (r *refresh) run(ctx context.Context, db *DB, tx *sql.Tx) error {
	for _, pk := range r.series {
		var study int64
		var n int
		err := db.queryRow(ctx, tx, `SELECT se.study_fk, (SELECT CAST(COALESCE(SUM(c.number_of_instances), 0) AS BIGINT)
	FROM series_sop_class c WHERE c.series_fk = se.pk)
FROM series se WHERE se.pk = ?`, pk).Scan(&study, &n)
		if err != nil {
			return fmt.Errorf("count series %d: %w", pk, err)
		}
		r.studies = addPK(r.studies, study)
		if n == 0 {
			_, err = db.exec(ctx, tx, `DELETE FROM series WHERE pk = ?`, pk)
		} else {
			_, err = db.exec(ctx, tx, `UPDATE series SET number_of_series_related_instances = ?, updated_at = ? WHERE pk = ?`, n, r.now, pk)
		}
		if err != nil {
			return fmt.Errorf("update series %d: %w", pk, err)
		}
	}
	for _, pk := range r.studies {
		var patient int64
		var series, instances int
		err := db.queryRow(ctx, tx, `SELECT st.patient_fk, COUNT(se.pk), CAST(COALESCE(SUM(se.number_of_series_related_instances), 0) AS BIGINT)
FROM study st LEFT JOIN series se ON se.study_fk = st.pk WHERE st.pk = ? GROUP BY st.patient_fk`, pk).Scan(&patient, &series, &instances)
		if err != nil {
			return fmt.Errorf("count study %d: %w", pk, err)
		}
		r.patients = addPK(r.patients, patient)
		if series == 0 {
			if _, err := db.exec(ctx, tx, `DELETE FROM study WHERE pk = ?`, pk); err != nil {
				return fmt.Errorf("delete study %d: %w", pk, err)
			}
			continue
		}
		modalities, err := db.distinct(ctx, tx, `SELECT DISTINCT modality FROM series WHERE study_fk = ? AND modality <> ''`, pk)
		if err != nil {
			return fmt.Errorf("modalities of study %d: %w", pk, err)
		}
		classes, err := db.distinct(ctx, tx, `SELECT DISTINCT c.sop_class_uid FROM series_sop_class c
JOIN series se ON se.pk = c.series_fk WHERE se.study_fk = ? AND c.sop_class_uid <> ''`, pk)
		if err != nil {
			return fmt.Errorf("SOP classes of study %d: %w", pk, err)
		}
		if _, err := db.exec(ctx, tx, `UPDATE study SET number_of_study_related_series = ?, number_of_study_related_instances = ?,
	modalities_in_study = ?, sop_classes_in_study = ?, updated_at = ? WHERE pk = ?`,
			series, instances, modalities, classes, r.now, pk); err != nil {
			return fmt.Errorf("update study %d: %w", pk, err)
		}
	}
	for _, pk := range r.patients {
		var studies, series, instances int
		err := db.queryRow(ctx, tx, `SELECT COUNT(*), CAST(COALESCE(SUM(number_of_study_related_series), 0) AS BIGINT),
	CAST(COALESCE(SUM(number_of_study_related_instances), 0) AS BIGINT)
FROM study WHERE patient_fk = ?`, pk).Scan(&studies, &series, &instances)
		if err != nil {
			return fmt.Errorf("count patient %d: %w", pk, err)
		}
		if studies == 0 {
			_, err = db.exec(ctx, tx, `DELETE FROM patient WHERE pk = ?`, pk)
		} else {
			_, err = db.exec(ctx, tx, `UPDATE patient SET number_of_patient_related_studies = ?, number_of_patient_related_series = ?,
	number_of_patient_related_instances = ?, updated_at = ? WHERE pk = ?`, studies, series, instances, r.now, pk)
		}
		if err != nil {
			return fmt.Errorf("update patient %d: %w", pk, err)
		}
	}
	return nil
}

// distinct returns the values of a one-column query, sorted and joined
// by backslashes as DICOM encodes multiple values.
func (db *DB) distinct(ctx context.Context, tx *sql.Tx, query string, args ...any) (string, error) {
	rows, err := db.query(ctx, tx, query, args...)
	if err != nil {
		return "", err
	}
	defer rows.Close()
	var vs []string
	for rows.Next() {
		var v string
		if err := rows.Scan(&v); err != nil {
			return "", err
		}
		vs = append(vs, v)
	}
	if err := rows.Err(); err != nil {
		return "", err
	}
	slices.Sort(vs)
	return strings.Join(vs, `\`), nil
}

// putMetadata records the metadata document of an instance just written,
// or drops the document of the instance it replaced. It is the first of
// the DB's put steps.
func (db *DB) putMetadata(ctx context.Context, tx *sql.Tx, w *putWrite) error {
	doc := w.req.Instance.Metadata
	if doc == nil {
		if w.previous == nil {
			return nil
		}
		if _, err := db.exec(ctx, tx, `DELETE FROM instance_metadata WHERE instance_fk = ?`, w.instance); err != nil {
			return fmt.Errorf("delete metadata: %w", err)
		}
		return nil
	}
	_, err := db.exec(ctx, tx, `INSERT INTO instance_metadata (instance_fk, document) VALUES (?, ?)
ON CONFLICT (instance_fk) DO UPDATE SET document = excluded.document`, w.instance, doc)
	if err != nil {
		return fmt.Errorf("put metadata: %w", err)
	}
	return nil
}
