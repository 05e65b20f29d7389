package sqlindex

import (
	"github.com/pacsd/pacsd/index"

	"cmp"
	"context"
	"database/sql"
	"errors"
	"fmt"
	"iter"
	"slices"
	"strings"

	"github.com/pacsd/pacsd/dicom"
	"github.com/pacsd/pacsd/dicom/tag"
)

// Instance returns the record of the instance with the given SOP Instance
// UID, its Header nil, or index.ErrNotFound.
func (db *DB) Instance(ctx context.Context, sopInstanceUID string) (*index.Instance, error) {
	s, err := db.lookup(ctx, db.db, sopInstanceUID)
	if err != nil {
		return nil, fmt.Errorf("index: instance %s: %w", sopInstanceUID, err)
	}
	return &s.Instance, nil
}

// Instances yields the record of every instance, Header nil, in the order
// they were first indexed. It reads them in batches as the loop asks for
// them, so the set may be of any size, and holds no connection or
// snapshot while the loop body runs: the body may put and delete.
// Instances put or deleted while the loop runs may or may not be seen;
// none is seen twice.
func (db *DB) Instances(ctx context.Context) iter.Seq2[*index.Instance, error] {
	return func(yield func(*index.Instance, error) bool) {
		var after int64
		for {
			batch, err := db.instancesAfter(ctx, after)
			if err != nil {
				yield(nil, fmt.Errorf("index: list instances: %w", err))
				return
			}
			for _, s := range batch {
				if !yield(&s.Instance, nil) {
					return
				}
			}
			if len(batch) < instancesBatch {
				return
			}
			after = batch[len(batch)-1].pk
		}
	}
}

// instancesBatch is how many records Instances reads at a time.
const instancesBatch = 256

func (db *DB) instancesAfter(ctx context.Context, after int64) ([]*stored, error) {
	rows, err := db.query(ctx, db.db, selectInstance+` WHERE i.pk > ? ORDER BY i.pk LIMIT ?`, after, instancesBatch)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	batch := make([]*stored, 0, instancesBatch)
	for rows.Next() {
		s, err := scanInstance(rows)
		if err != nil {
			return nil, err
		}
		batch = append(batch, s)
	}
	return batch, rows.Err()
}

// InstanceAttributes returns the attributes of an instance's own level
// that the index keeps, as the instance's header carried them, or
// index.ErrNotFound.
func (db *DB) InstanceAttributes(ctx context.Context, sopInstanceUID string) (*dicom.Dataset, error) {
	sc := newScanned(instanceColumns)
	var class string
	err := db.queryRow(ctx, db.db, `SELECT sop_class_uid, `+strings.Join(names(instanceColumns, true), ", ")+
		` FROM instance WHERE sop_instance_uid = ?`, sopInstanceUID).Scan(append([]any{&class}, sc.dest...)...)
	if err != nil {
		return nil, notFound("instance", sopInstanceUID, err)
	}
	ds, _, err := sc.dataset()
	if err != nil {
		return nil, fmt.Errorf("index: instance %s: %w", sopInstanceUID, err)
	}
	ds.Elements = append(ds.Elements,
		dicom.Element{Tag: tag.SOPClassUID, VR: "UI", Values: []string{class}},
		dicom.Element{Tag: tag.SOPInstanceUID, VR: "UI", Values: []string{sopInstanceUID}})
	slices.SortStableFunc(ds.Elements, func(a, b dicom.Element) int { return cmp.Compare(a.Tag, b.Tag) })
	return ds, nil
}

// Patient returns the patient with the given Patient ID and Issuer of
// Patient ID, or index.ErrNotFound. Patients without a Patient ID are found
// through their study, with StudyPatient.
func (db *DB) Patient(ctx context.Context, patientID, issuerOfPatientID string) (*index.Patient, error) {
	if patientID == "" {
		return nil, fmt.Errorf("index: patient without a Patient ID: %w; look it up by study", index.ErrNotFound)
	}
	return db.patient(ctx, `p.patient_id = ? AND p.issuer_of_patient_id = ? AND p.unidentified_study = ''`,
		patientID+" (issuer "+issuerOfPatientID+")", patientID, issuerOfPatientID)
}

// StudyPatient returns the patient of a study, or index.ErrNotFound.
func (db *DB) StudyPatient(ctx context.Context, studyInstanceUID string) (*index.Patient, error) {
	return db.patient(ctx, `p.pk = (SELECT patient_fk FROM study WHERE study_instance_uid = ?)`,
		"of study "+studyInstanceUID, studyInstanceUID)
}

func (db *DB) patient(ctx context.Context, where, key string, args ...any) (*index.Patient, error) {
	sc := newScanned(patientColumns)
	var p index.Patient
	var updated int64
	err := db.queryRow(ctx, db.db, `SELECT p.number_of_patient_related_studies, p.number_of_patient_related_series,
	p.number_of_patient_related_instances, p.updated_at, `+prefixed("p.", names(patientColumns, true))+`
FROM patient p WHERE `+where, args...).Scan(append([]any{
		&p.NumberOfPatientRelatedStudies, &p.NumberOfPatientRelatedSeries, &p.NumberOfPatientRelatedInstances, &updated,
	}, sc.dest...)...)
	if err != nil {
		return nil, notFound("patient", key, err)
	}
	if p.Attributes, p.Search, err = sc.dataset(); err != nil {
		return nil, fmt.Errorf("index: patient %s: %w", key, err)
	}
	p.PatientID = p.Attributes.String(tag.PatientID)
	p.IssuerOfPatientID = p.Attributes.String(tag.IssuerOfPatientID)
	p.UpdatedAt = fromMicros(updated)
	return &p, nil
}

// Study returns the study with the given Study Instance UID, or
// index.ErrNotFound.
func (db *DB) Study(ctx context.Context, studyInstanceUID string) (*index.Study, error) {
	sc := newScanned(studyColumns)
	var s index.Study
	var modalities, classes string
	var updated int64
	err := db.queryRow(ctx, db.db, `SELECT p.patient_id, p.issuer_of_patient_id, st.modalities_in_study, st.sop_classes_in_study,
	st.number_of_study_related_series, st.number_of_study_related_instances, st.updated_at, `+
		prefixed("st.", names(studyColumns, true))+`
FROM study st JOIN patient p ON p.pk = st.patient_fk WHERE st.study_instance_uid = ?`, studyInstanceUID).Scan(append([]any{
		&s.PatientID, &s.IssuerOfPatientID, &modalities, &classes,
		&s.NumberOfStudyRelatedSeries, &s.NumberOfStudyRelatedInstances, &updated,
	}, sc.dest...)...)
	if err != nil {
		return nil, notFound("study", studyInstanceUID, err)
	}
	if s.Attributes, s.Search, err = sc.dataset(); err != nil {
		return nil, fmt.Errorf("index: study %s: %w", studyInstanceUID, err)
	}
	s.StudyInstanceUID = studyInstanceUID
	s.ModalitiesInStudy = split(modalities)
	s.SOPClassesInStudy = split(classes)
	s.UpdatedAt = fromMicros(updated)
	return &s, nil
}

// Series returns the series with the given Series Instance UID, or
// index.ErrNotFound.
func (db *DB) Series(ctx context.Context, seriesInstanceUID string) (*index.Series, error) {
	sc := newScanned(seriesColumns)
	var s index.Series
	var updated int64
	err := db.queryRow(ctx, db.db, `SELECT st.study_instance_uid, se.number_of_series_related_instances, se.updated_at, `+
		prefixed("se.", names(seriesColumns, true))+`
FROM series se JOIN study st ON st.pk = se.study_fk WHERE se.series_instance_uid = ?`, seriesInstanceUID).Scan(append([]any{
		&s.StudyInstanceUID, &s.NumberOfSeriesRelatedInstances, &updated,
	}, sc.dest...)...)
	if err != nil {
		return nil, notFound("series", seriesInstanceUID, err)
	}
	if s.Attributes, s.Search, err = sc.dataset(); err != nil {
		return nil, fmt.Errorf("index: series %s: %w", seriesInstanceUID, err)
	}
	s.SeriesInstanceUID = seriesInstanceUID
	s.UpdatedAt = fromMicros(updated)
	return &s, nil
}

// Counts returns how many patients, studies, series and instances the
// index holds.
func (db *DB) Counts(ctx context.Context) (index.Counts, error) {
	var c index.Counts
	err := db.queryRow(ctx, db.db, `SELECT
	(SELECT COUNT(*) FROM patient), (SELECT COUNT(*) FROM study),
	(SELECT COUNT(*) FROM series), (SELECT COUNT(*) FROM instance)`).Scan(&c.Patients, &c.Studies, &c.Series, &c.Instances)
	if err != nil {
		return index.Counts{}, fmt.Errorf("index: count: %w", err)
	}
	return c, nil
}

func notFound(what, id string, err error) error {
	if errors.Is(err, sql.ErrNoRows) {
		err = index.ErrNotFound
	}
	return fmt.Errorf("index: %s %s: %w", what, id, err)
}

func prefixed(p string, cols []string) string {
	out := make([]string, len(cols))
	for i, c := range cols {
		out[i] = p + c
	}
	return strings.Join(out, ", ")
}

func split(v string) []string {
	if v == "" {
		return nil
	}
	return strings.Split(v, `\`)
}

// Metadata returns the metadata document kept with the version of an
// instance that in records (see index.Instance.Metadata): the document of
// the instance with in's SOP Instance UID, if its record still names the
// object in.Key. A document describes where things lie in one object, and
// must never be paired with the bytes of another version. It returns an
// error wrapping index.ErrNotFound when the instance has no document, is
// not indexed, or is indexed with another object now.
func (db *DB) Metadata(ctx context.Context, in *index.Instance) ([]byte, error) {
	var doc []byte
	err := db.queryRow(ctx, db.db, `SELECT m.document FROM instance_metadata m JOIN instance i ON i.pk = m.instance_fk
WHERE i.sop_instance_uid = ? AND i.object_key = ?`, in.SOPInstanceUID, in.Key).Scan(&doc)
	if errors.Is(err, sql.ErrNoRows) {
		return nil, fmt.Errorf("index: metadata of %s in %s: %w", in.SOPInstanceUID, in.Key, index.ErrNotFound)
	}
	if err != nil {
		return nil, fmt.Errorf("index: metadata of %s: %w", in.SOPInstanceUID, err)
	}
	return doc, nil
}
