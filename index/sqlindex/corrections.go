package sqlindex

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/pacsd/pacsd/dicom"
	"github.com/pacsd/pacsd/dicom/tag"
	"github.com/pacsd/pacsd/index"
)

// Corrections change what the index says of a study and what the archive
// serves of its instances, never the stored objects: the study's and its
// patient's rows take the new values, each instance's amendment (see
// index.Instance.Amended) takes them too, and a row of correction keeps
// the values before and after, for the record and for Undo.

// Correctable are the attributes a correction of a study may change:
// those of its patient and the study's own that people get wrong.
var Correctable = []tag.Tag{
	tag.PatientName, tag.PatientID, tag.IssuerOfPatientID, tag.PatientBirthDate, tag.PatientSex,
	tag.OtherPatientIDsSequence, tag.AccessionNumber, tag.StudyDescription, tag.ReferringPhysicianName,
	tag.StudyDate, tag.StudyTime,
}

// patientLevel reports whether t is an attribute of the patient's row.
func patientLevel(t tag.Tag) bool {
	return slices.ContainsFunc(patientColumns, func(c column) bool { return c.tag == t && c.in == 0 })
}

// studyRows are a study's row and its patient's, as a correction reads
// them.
type studyRows struct {
	study, patient         int64
	studyAt, patientAt     int64
	studyAttrs, patientAtt *dicom.Dataset
}

// readStudy reads the rows of a study and its patient in tx.
func (db *DB) readStudy(ctx context.Context, tx *sql.Tx, uid string) (*studyRows, error) {
	r := &studyRows{}
	st := newScanned(studyColumns)
	err := db.queryRow(ctx, tx, `SELECT pk, patient_fk, attrs_received_at, `+strings.Join(names(studyColumns, true), ", ")+
		` FROM study WHERE study_instance_uid = ?`, uid).Scan(append([]any{&r.study, &r.patient, &r.studyAt}, st.dest...)...)
	if err != nil {
		return nil, notFound("study", uid, err)
	}
	if r.studyAttrs, _, err = st.dataset(); err != nil {
		return nil, err
	}
	pt := newScanned(patientColumns)
	err = db.queryRow(ctx, tx, `SELECT attrs_received_at, `+strings.Join(names(patientColumns, true), ", ")+
		` FROM patient WHERE pk = ?`, r.patient).Scan(append([]any{&r.patientAt}, pt.dest...)...)
	if err != nil {
		return nil, fmt.Errorf("patient of study %s: %w", uid, err)
	}
	if r.patientAtt, _, err = pt.dataset(); err != nil {
		return nil, err
	}
	return r, nil
}

// served returns the value the rows give attribute t, as an element.
func (r *studyRows) served(t tag.Tag) dicom.Element {
	src := r.studyAttrs
	if patientLevel(t) {
		src = r.patientAtt
	}
	if e, ok := src.Find(t); ok {
		return *e
	}
	return dicom.Element{Tag: t, VR: vr(t)}
}

// lockStudies takes the locks of the studies given, of the series given,
// and of every row related to them, as a put does (see lock.go), and of
// the patients named.
func (db *DB) lockStudies(ctx context.Context, tx *sql.Tx, locks *[]int64, studies, series []string) error {
	held, err := db.lockRows(ctx, tx, *locks)
	if err != nil {
		return err
	}
	return db.lockRelated(ctx, tx, &held, locks, func() ([]int64, error) {
		var all []int64
		for _, s := range series {
			ks, err := db.relatedLocks(ctx, tx, "", s, "")
			if err != nil {
				return nil, err
			}
			all = append(all, ks...)
		}
		for _, s := range studies {
			ks, err := db.relatedLocks(ctx, tx, "", "", s)
			if err != nil {
				return nil, err
			}
			all = append(all, ks...)
		}
		return all, nil
	})
}

// checkCorrection checks what a correction asks to change.
func checkCorrection(c *index.Correction) error {
	if c == nil || strings.TrimSpace(c.Reason) == "" {
		return fmt.Errorf("%w: a correction needs a reason", index.ErrInvalidCorrection)
	}
	if c.After == nil || len(c.After.Elements) == 0 {
		return fmt.Errorf("%w: nothing to correct", index.ErrInvalidCorrection)
	}
	for _, e := range c.After.Elements {
		if !slices.Contains(Correctable, e.Tag) {
			return fmt.Errorf("%w: %s cannot be corrected", index.ErrInvalidCorrection, e.Tag)
		}
	}
	if id, ok := c.After.Find(tag.PatientID); ok && strings.TrimSpace(strings.Join(id.Values, "")) == "" {
		return fmt.Errorf("%w: Patient ID cannot be made empty", index.ErrInvalidCorrection)
	}
	return nil
}

// Correct changes the attributes c.After holds of study c.Study: its
// patient's (Patient ID and issuer refile the study under another
// patient, created when new) and its own. c.Reason is required. It
// returns the correction as recorded, with its ID, time and the values
// before.
func (db *DB) Correct(ctx context.Context, c *index.Correction) (*index.Correction, error) {
	if err := checkCorrection(c); err != nil {
		return nil, err
	}
	var out *index.Correction
	locks := []int64{studyLock(c.Study)}
	err := db.writeRecorded(ctx, func(tx *sql.Tx, f *feed) error {
		if err := db.lockStudies(ctx, tx, &locks, []string{c.Study}, nil); err != nil {
			return err
		}
		if err := db.claimRecord(ctx, tx, c.Record, micros(db.now())); err != nil {
			return err
		}
		rec, err := db.correct(ctx, tx, c, &locks, f)
		out = rec
		return err
	})
	if err != nil {
		return nil, fmt.Errorf("index: correct study %s: %w", c.Study, err)
	}
	return out, nil
}

func (db *DB) correct(ctx context.Context, tx *sql.Tx, c *index.Correction, locks *[]int64, f *feed) (*index.Correction, error) {
	rows, err := db.readStudy(ctx, tx, c.Study)
	if err != nil {
		return nil, err
	}
	rec := *c
	rec.Time = correctionTime(c, db.now())
	rec.Before = &dicom.Dataset{}
	rec.After = &dicom.Dataset{}
	var patientChange, studyChange dicom.Dataset
	for _, e := range c.After.Elements {
		e.VR = cmpOr(e.VR, vr(e.Tag))
		rec.Before.Elements = append(rec.Before.Elements, rows.served(e.Tag))
		rec.After.Elements = append(rec.After.Elements, e)
		if patientLevel(e.Tag) {
			patientChange.Elements = append(patientChange.Elements, e)
		} else {
			studyChange.Elements = append(studyChange.Elements, e)
		}
	}
	now := micros(db.now())
	r := refresh{now: now}
	patient := rows.patient
	if len(patientChange.Elements) > 0 {
		attrs := index.Overlay(rows.patientAtt, &patientChange)
		if patient, err = db.refile(ctx, tx, rows, attrs, locks, now); err != nil {
			return nil, err
		}
		r.add(0, 0, rows.patient)
		r.add(0, 0, patient)
	}
	studyAttrs := index.Overlay(rows.studyAttrs, &studyChange)
	if err := db.rewriteRow(ctx, tx, db.stmt.study, rows.study, patient, studyAttrs, rows.studyAt, now); err != nil {
		return nil, err
	}
	if err := db.amendInstances(ctx, tx, `se.study_fk = ?`, []any{rows.study}, rec.After, rec.Time, f); err != nil {
		return nil, err
	}
	if err := r.run(ctx, db, tx); err != nil {
		return nil, err
	}
	if err := db.recordCorrection(ctx, tx, &rec); err != nil {
		return nil, err
	}
	return &rec, nil
}

// correctionTime is the time of a correction: the one it was asked
// with, when replayed from its record, else now.
func correctionTime(c *index.Correction, now time.Time) time.Time {
	if !c.Time.IsZero() {
		return c.Time.UTC()
	}
	return now.UTC()
}

func cmpOr(a, b string) string {
	if a != "" {
		return a
	}
	return b
}

// refile writes the patient attributes attrs for the study of rows: to
// its patient's row when the key is the same, to the row of the patient
// the key names otherwise, created if need be, the study moving to it.
// It returns the pk of the study's patient.
func (db *DB) refile(ctx context.Context, tx *sql.Tx, rows *studyRows, attrs *dicom.Dataset, locks *[]int64, now int64) (int64, error) {
	id, issuer := cleanText(attrs.String(tag.PatientID)), cleanText(attrs.String(tag.IssuerOfPatientID))
	if id == rows.patientAtt.String(tag.PatientID) && issuer == rows.patientAtt.String(tag.IssuerOfPatientID) {
		return rows.patient, db.rewriteRow(ctx, tx, db.stmt.patient, rows.patient, 0, attrs, rows.patientAt, now)
	}
	if db.dialect == PostgreSQL {
		k := patientLock(id, issuer, "")
		if ok, err := db.tryLockRows(ctx, tx, []int64{k}); err != nil {
			return 0, err
		} else if !ok {
			*locks = append(*locks, k)
			return 0, errRelock
		}
	}
	vals, err := values(patientColumns, attrs, false)
	if err != nil {
		return 0, err
	}
	pk, _, err := db.upsert(ctx, tx, db.stmt.patient, []any{id, issuer, ""}, 0, vals, nameValues(db.stmt.patient, attrs), rows.patientAt, now)
	if err != nil {
		return 0, err
	}
	// upsert keeps a newer row's attributes; a correction's are the
	// latest word whatever the instances' times.
	return pk, db.rewriteRow(ctx, tx, db.stmt.patient, pk, 0, attrs, rows.patientAt, now)
}

// rewriteRow writes attrs to the row pk of lv, under parent.
func (db *DB) rewriteRow(ctx context.Context, tx *sql.Tx, lv *level, pk, parent int64, attrs *dicom.Dataset, at, now int64) error {
	vals, err := values(lv.attrs, attrs, false)
	if err != nil {
		return err
	}
	args := slices.Concat(parentArg(lv, parent), vals, []any{at, now, pk})
	if _, err := db.exec(ctx, tx, lv.update, args...); err != nil {
		return fmt.Errorf("update %s: %w", lv.name, err)
	}
	return db.writeNames(ctx, tx, lv, pk, nameValues(lv, attrs), true)
}

// amendInstances lays amend over the amendments of the instances a
// condition on the series (alias se) selects. Instances of one study
// mostly share their amendment, so it updates them by distinct
// amendment. at, the correction's time, becomes their amended_at.
func (db *DB) amendInstances(ctx context.Context, tx *sql.Tx, cond string, args []any, amend *dicom.Dataset, at time.Time, f *feed) error {
	rows, err := db.query(ctx, tx, `SELECT DISTINCT i.amended FROM instance i JOIN series se ON se.pk = i.series_fk WHERE `+cond, args...)
	if err != nil {
		return fmt.Errorf("read amendments: %w", err)
	}
	var docs []string
	for rows.Next() {
		var d string
		if err := rows.Scan(&d); err != nil {
			rows.Close()
			return fmt.Errorf("read amendments: %w", err)
		}
		docs = append(docs, d)
	}
	rows.Close()
	if err := rows.Err(); err != nil {
		return fmt.Errorf("read amendments: %w", err)
	}
	for _, d := range docs {
		old, err := parseAmended(d)
		if err != nil {
			return err
		}
		doc, err := formatAmended(index.Overlay(old, amend))
		if err != nil {
			return err
		}
		_, err = db.exec(ctx, tx, `UPDATE instance SET amended = ?, amended_at = ? WHERE amended = ? AND series_fk IN (SELECT se.pk FROM series se WHERE `+cond+`)`,
			append([]any{doc, micros(at), d}, args...)...)
		if err != nil {
			return fmt.Errorf("amend instances: %w", err)
		}
	}
	// The change feed tells followers of every instance corrected.
	rows, err = db.query(ctx, tx, `SELECT i.study_instance_uid, se.series_instance_uid, i.sop_instance_uid
FROM instance i JOIN series se ON se.pk = i.series_fk WHERE `+cond+` ORDER BY i.pk`, args...)
	if err != nil {
		return fmt.Errorf("read instances corrected: %w", err)
	}
	defer rows.Close()
	for rows.Next() {
		var study, series, sop string
		if err := rows.Scan(&study, &series, &sop); err != nil {
			return fmt.Errorf("read instances corrected: %w", err)
		}
		f.add(index.Corrected, study, series, sop)
	}
	return rows.Err()
}

func (db *DB) recordCorrection(ctx context.Context, tx *sql.Tx, c *index.Correction) error {
	before, err := c.Before.MarshalJSON()
	if err != nil {
		return err
	}
	after, err := c.After.MarshalJSON()
	if err != nil {
		return err
	}
	err = db.queryRow(ctx, tx, `INSERT INTO correction (study, series, target, reason, principal, at, before, after, undoes, record_key)
VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?) RETURNING id`,
		c.Study, c.Series, c.Target, c.Reason, c.Principal, micros(c.Time), string(before), string(after), c.Undoes, c.Record).Scan(&c.ID)
	if err != nil {
		return fmt.Errorf("record correction: %w", err)
	}
	if c.Undoes != 0 {
		if _, err := db.exec(ctx, tx, `UPDATE correction SET undone_by = ? WHERE id = ?`, c.ID, c.Undoes); err != nil {
			return fmt.Errorf("record correction: %w", err)
		}
	}
	return nil
}

// MoveSeries files a series under another study, which may be another
// patient's: the wrong-patient fix. Its instances are served with the
// target study's UID and its patient's and study's correctable
// attributes. A study left without series is removed from the index, its
// values kept in the correction for Undo.
func (db *DB) MoveSeries(ctx context.Context, c *index.Correction) (*index.Correction, error) {
	if c == nil || strings.TrimSpace(c.Reason) == "" {
		return nil, fmt.Errorf("%w: a correction needs a reason", index.ErrInvalidCorrection)
	}
	var out *index.Correction
	locks := []int64{seriesLock(c.Series), studyLock(c.Target)}
	err := db.writeRecorded(ctx, func(tx *sql.Tx, f *feed) error {
		if err := db.lockStudies(ctx, tx, &locks, []string{c.Target}, []string{c.Series}); err != nil {
			return err
		}
		if err := db.claimRecord(ctx, tx, c.Record, micros(db.now())); err != nil {
			return err
		}
		rec, err := db.moveSeries(ctx, tx, c, f)
		out = rec
		return err
	})
	if err != nil {
		return nil, fmt.Errorf("index: move series %s to %s: %w", c.Series, c.Target, err)
	}
	return out, nil
}

func (db *DB) moveSeries(ctx context.Context, tx *sql.Tx, c *index.Correction, f *feed) (*index.Correction, error) {
	var seriesPK int64
	var from string
	err := db.queryRow(ctx, tx, `SELECT se.pk, st.study_instance_uid FROM series se JOIN study st ON st.pk = se.study_fk
WHERE se.series_instance_uid = ?`, c.Series).Scan(&seriesPK, &from)
	if err != nil {
		return nil, notFound("series", c.Series, err)
	}
	if from == c.Target {
		return nil, fmt.Errorf("%w: series %s is already in study %s", index.ErrInvalidCorrection, c.Series, c.Target)
	}
	src, err := db.readStudy(ctx, tx, from)
	if err != nil {
		return nil, err
	}
	dst, err := db.readStudy(ctx, tx, c.Target)
	if err != nil {
		return nil, err
	}
	rec := *c
	rec.Study = from
	rec.Time = correctionTime(c, db.now())
	rec.Before, rec.After = &dicom.Dataset{}, &dicom.Dataset{}
	for _, t := range append([]tag.Tag{tag.StudyInstanceUID}, Correctable...) {
		b, a := src.served(t), dst.served(t)
		if t == tag.StudyInstanceUID {
			b.Values, a.Values = []string{from}, []string{c.Target}
		}
		rec.Before.Elements = append(rec.Before.Elements, b)
		rec.After.Elements = append(rec.After.Elements, a)
	}
	if _, err := db.exec(ctx, tx, `UPDATE series SET study_fk = ? WHERE pk = ?`, dst.study, seriesPK); err != nil {
		return nil, fmt.Errorf("move series: %w", err)
	}
	if _, err := db.exec(ctx, tx, `UPDATE instance SET study_instance_uid = ? WHERE series_fk = ?`, c.Target, seriesPK); err != nil {
		return nil, fmt.Errorf("move series: %w", err)
	}
	if err := db.amendInstances(ctx, tx, `se.pk = ?`, []any{seriesPK}, rec.After, rec.Time, f); err != nil {
		return nil, err
	}
	r := refresh{now: micros(db.now())}
	r.add(0, src.study, src.patient)
	r.add(0, dst.study, dst.patient)
	if err := r.run(ctx, db, tx); err != nil {
		return nil, err
	}
	if err := db.recordCorrection(ctx, tx, &rec); err != nil {
		return nil, err
	}
	return &rec, nil
}

// Corrections returns the corrections of a study, as the study corrected
// or the study a series moved from or to, oldest first.
func (db *DB) Corrections(ctx context.Context, study string) ([]*index.Correction, error) {
	out, err := db.corrections(ctx, ` WHERE study = ? OR target = ? ORDER BY id`, study, study)
	if err != nil {
		return nil, fmt.Errorf("index: corrections of %s: %w", study, err)
	}
	return out, nil
}

// corrections returns the corrections that the WHERE and ORDER clauses
// of rest select.
func (db *DB) corrections(ctx context.Context, rest string, args ...any) ([]*index.Correction, error) {
	rows, err := db.query(ctx, db.db, selectCorrection+rest, args...)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	var out []*index.Correction
	for rows.Next() {
		c, err := scanCorrection(rows)
		if err != nil {
			return nil, err
		}
		out = append(out, c)
	}
	return out, rows.Err()
}

const selectCorrection = `SELECT id, study, series, target, reason, principal, at, before, after, undoes, undone_by, record_key FROM correction`

func scanCorrection(row scanner) (*index.Correction, error) {
	var c index.Correction
	var at int64
	var before, after string
	if err := row.Scan(&c.ID, &c.Study, &c.Series, &c.Target, &c.Reason, &c.Principal, &at, &before, &after, &c.Undoes, &c.UndoneBy, &c.Record); err != nil {
		return nil, err
	}
	c.Time = fromMicros(at)
	var err error
	if c.Before, err = dicom.ParseJSON([]byte(before)); err != nil {
		return nil, fmt.Errorf("correction %d: %w", c.ID, err)
	}
	if c.After, err = dicom.ParseJSON([]byte(after)); err != nil {
		return nil, fmt.Errorf("correction %d: %w", c.ID, err)
	}
	return &c, nil
}

// Correction returns the correction with the given ID, or
// index.ErrNotFound.
func (db *DB) Correction(ctx context.Context, id int64) (*index.Correction, error) {
	c, err := scanCorrection(db.queryRow(ctx, db.db, selectCorrection+` WHERE id = ?`, id))
	if errors.Is(err, sql.ErrNoRows) {
		return nil, fmt.Errorf("index: correction %d: %w", id, index.ErrNotFound)
	}
	if err != nil {
		return nil, fmt.Errorf("index: correction %d: %w", id, err)
	}
	return c, nil
}

// Undo reverts correction id with a correction of its own, which
// records reason and principal: the attributes it changed take their
// values before it, and a series it moved goes back to its study, made
// again if the move left it empty. A correction is undone once; an undo
// is not undone (correct again instead).
func (db *DB) Undo(ctx context.Context, id int64, reason, principal string) (*index.Correction, error) {
	return db.UndoCorrection(ctx, &index.Correction{Undoes: id, Reason: reason, Principal: principal})
}

// UndoCorrection is Undo of the correction u.Undoes, with u's reason,
// principal, record and time.
func (db *DB) UndoCorrection(ctx context.Context, u *index.Correction) (*index.Correction, error) {
	id := u.Undoes
	if strings.TrimSpace(u.Reason) == "" {
		return nil, fmt.Errorf("%w: a correction needs a reason", index.ErrInvalidCorrection)
	}
	c, err := db.Correction(ctx, id)
	if err != nil {
		return nil, err
	}
	switch {
	case c.UndoneBy != 0:
		return nil, fmt.Errorf("%w: correction %d is undone already, by %d", index.ErrInvalidCorrection, id, c.UndoneBy)
	case c.Undoes != 0:
		return nil, fmt.Errorf("%w: correction %d is an undo; correct again instead", index.ErrInvalidCorrection, id)
	}
	undo := &index.Correction{Study: c.Study, Reason: u.Reason, Principal: u.Principal, Undoes: id, Record: u.Record, Time: u.Time}
	if c.Series == "" {
		undo.After = c.Before
		return db.Correct(ctx, undo)
	}
	undo.Series, undo.Target = c.Series, c.Study
	var out *index.Correction
	locks := []int64{seriesLock(c.Series), studyLock(c.Study)}
	err = db.writeRecorded(ctx, func(tx *sql.Tx, f *feed) error {
		if err := db.lockStudies(ctx, tx, &locks, []string{c.Study}, []string{c.Series}); err != nil {
			return err
		}
		if err := db.claimRecord(ctx, tx, undo.Record, micros(db.now())); err != nil {
			return err
		}
		if err := db.remakeStudy(ctx, tx, c, &locks); err != nil {
			return err
		}
		rec, err := db.moveSeries(ctx, tx, undo, f)
		out = rec
		return err
	})
	if err != nil {
		return nil, fmt.Errorf("index: undo correction %d: %w", id, err)
	}
	return out, nil
}

// remakeStudy makes again the study a move of a series left empty, with
// the values the move recorded, under its patient.
func (db *DB) remakeStudy(ctx context.Context, tx *sql.Tx, c *index.Correction, locks *[]int64) error {
	var pk int64
	err := db.queryRow(ctx, tx, `SELECT pk FROM study WHERE study_instance_uid = ?`, c.Study).Scan(&pk)
	if err == nil {
		return nil
	}
	if !errors.Is(err, sql.ErrNoRows) {
		return fmt.Errorf("read study %s: %w", c.Study, err)
	}
	var pAttrs, sAttrs dicom.Dataset
	for _, e := range c.Before.Elements {
		if len(e.Values) == 0 && len(e.Items) == 0 {
			continue
		}
		if patientLevel(e.Tag) {
			pAttrs.Elements = append(pAttrs.Elements, e)
		} else {
			sAttrs.Elements = append(sAttrs.Elements, e)
		}
	}
	id, issuer := cleanText(pAttrs.String(tag.PatientID)), cleanText(pAttrs.String(tag.IssuerOfPatientID))
	unidentified := ""
	if id == "" {
		unidentified = c.Study
	}
	if db.dialect == PostgreSQL {
		k := patientLock(id, issuer, unidentified)
		if ok, err := db.tryLockRows(ctx, tx, []int64{k}); err != nil {
			return err
		} else if !ok {
			*locks = append(*locks, k)
			return errRelock
		}
	}
	now := micros(db.now())
	pv, err := values(patientColumns, &pAttrs, false)
	if err != nil {
		return err
	}
	patient, _, err := db.upsert(ctx, tx, db.stmt.patient, []any{id, issuer, unidentified}, 0, pv, nameValues(db.stmt.patient, &pAttrs), 0, now)
	if err != nil {
		return err
	}
	sv, err := values(studyColumns, &sAttrs, false)
	if err != nil {
		return err
	}
	_, _, err = db.upsert(ctx, tx, db.stmt.study, []any{c.Study}, patient, sv, nameValues(db.stmt.study, &sAttrs), 0, now)
	return err
}

// inheritAmendments gives the instance of p the amendments it must be
// served with besides its own: those of the version it replaces, or, for
// a new instance of a corrected study or series, those of its siblings,
// so that corrections hold for instances received after them. They win
// over the instance's own, which come from its sender. The rows they
// name are those the instance's series and study hang under now, whose
// locks the put holds.
func (db *DB) inheritAmendments(ctx context.Context, tx *sql.Tx, p *prepared, old *stored) error {
	in := p.req.Instance
	var inherited *dicom.Dataset
	switch {
	case old != nil:
		inherited = old.Amended
	default:
		var n int
		err := db.queryRow(ctx, tx, `SELECT COUNT(*) FROM correction WHERE study = ? OR target = ?`, in.StudyInstanceUID, in.StudyInstanceUID).Scan(&n)
		if err != nil {
			return fmt.Errorf("read corrections: %w", err)
		}
		if n == 0 {
			break
		}
		var doc string
		err = db.queryRow(ctx, tx, `SELECT i.amended FROM instance i JOIN series se ON se.pk = i.series_fk
WHERE se.series_instance_uid = ? ORDER BY i.pk LIMIT 1`, in.SeriesInstanceUID).Scan(&doc)
		if errors.Is(err, sql.ErrNoRows) {
			err = db.queryRow(ctx, tx, `SELECT i.amended FROM instance i JOIN series se ON se.pk = i.series_fk
JOIN study st ON st.pk = se.study_fk WHERE st.study_instance_uid = ? ORDER BY i.pk LIMIT 1`, in.StudyInstanceUID).Scan(&doc)
		}
		if err != nil && !errors.Is(err, sql.ErrNoRows) {
			return fmt.Errorf("read amendments: %w", err)
		}
		if inherited, err = parseAmended(doc); err != nil {
			return err
		}
	}
	if inherited == nil {
		if p.amended != in.Amended {
			return db.rows(p, in.Amended) // an earlier attempt inherited
		}
		return nil
	}
	return db.rows(p, index.Overlay(in.Amended, inherited))
}

// UnauditedCorrections returns up to limit corrections, oldest first,
// that have not reached the audit trail yet.
func (db *DB) UnauditedCorrections(ctx context.Context, limit int) ([]*index.Correction, error) {
	out, err := db.corrections(ctx, ` WHERE audited = 0 ORDER BY id LIMIT ?`, limit)
	if err != nil {
		return nil, fmt.Errorf("index: unaudited corrections: %w", err)
	}
	return out, nil
}

// MarkCorrectionsAudited records that the corrections with these ids
// reached the audit trail.
func (db *DB) MarkCorrectionsAudited(ctx context.Context, ids []int64) error {
	if err := db.markAudited(ctx, "correction", ids); err != nil {
		return fmt.Errorf("index: mark corrections audited: %w", err)
	}
	return nil
}
