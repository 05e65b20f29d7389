package index

import (
	"cmp"
	"context"
	"database/sql"
	"errors"
	"fmt"
	"iter"
	"slices"
	"strings"
	"time"

	"github.com/pacsd/pacsd/dicom"
	"github.com/pacsd/pacsd/dicom/tag"
)

// Instance returns the record of the instance with the given SOP Instance
// UID, its Header nil, or ErrNotFound.
func (db *DB) Instance(ctx context.Context, sopInstanceUID string) (*Instance, error) {
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
func (db *DB) Instances(ctx context.Context) iter.Seq2[*Instance, error] {
	return func(yield func(*Instance, error) bool) {
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
// ErrNotFound.
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

// Patient is a patient as the index keeps it.
type Patient struct {
	PatientID         string
	IssuerOfPatientID string
	// Attributes holds the patient's attributes, as the latest instance
	// received carried them; absent and empty attributes are left out.
	Attributes *dicom.Dataset
	// Search holds, by tag, the values queries match against where they
	// differ from Attributes: the normalized form of each PN attribute.
	Search map[tag.Tag]string

	NumberOfPatientRelatedStudies   int
	NumberOfPatientRelatedSeries    int
	NumberOfPatientRelatedInstances int
	// UpdatedAt is when the row last changed, by the DB's clock.
	UpdatedAt time.Time
}

// Patient returns the patient with the given Patient ID and Issuer of
// Patient ID, or ErrNotFound. Patients without a Patient ID are found
// through their study, with StudyPatient.
func (db *DB) Patient(ctx context.Context, patientID, issuerOfPatientID string) (*Patient, error) {
	if patientID == "" {
		return nil, fmt.Errorf("index: patient without a Patient ID: %w; look it up by study", ErrNotFound)
	}
	return db.patient(ctx, `p.patient_id = ? AND p.issuer_of_patient_id = ? AND p.unidentified_study = ''`,
		patientID+" (issuer "+issuerOfPatientID+")", patientID, issuerOfPatientID)
}

// StudyPatient returns the patient of a study, or ErrNotFound.
func (db *DB) StudyPatient(ctx context.Context, studyInstanceUID string) (*Patient, error) {
	return db.patient(ctx, `p.pk = (SELECT patient_fk FROM study WHERE study_instance_uid = ?)`,
		"of study "+studyInstanceUID, studyInstanceUID)
}

func (db *DB) patient(ctx context.Context, where, key string, args ...any) (*Patient, error) {
	sc := newScanned(patientColumns)
	var p Patient
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

// Study is a study as the index keeps it.
type Study struct {
	StudyInstanceUID string
	// PatientID and IssuerOfPatientID identify the study's patient.
	PatientID         string
	IssuerOfPatientID string
	// Attributes holds the study's attributes, as the latest instance
	// received carried them; absent and empty attributes are left out.
	// The patient's are in its Patient.
	Attributes *dicom.Dataset
	// Search holds, by tag, the normalized form of each PN attribute.
	Search map[tag.Tag]string

	// ModalitiesInStudy and SOPClassesInStudy are sorted.
	ModalitiesInStudy             []string
	SOPClassesInStudy             []string
	NumberOfStudyRelatedSeries    int
	NumberOfStudyRelatedInstances int
	// UpdatedAt is when the row last changed, by the DB's clock.
	UpdatedAt time.Time
}

// Study returns the study with the given Study Instance UID, or
// ErrNotFound.
func (db *DB) Study(ctx context.Context, studyInstanceUID string) (*Study, error) {
	sc := newScanned(studyColumns)
	var s Study
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

// Series is a series as the index keeps it.
type Series struct {
	SeriesInstanceUID string
	// StudyInstanceUID identifies the series' study.
	StudyInstanceUID string
	// Attributes holds the series' attributes, as the latest instance
	// received carried them; absent and empty attributes are left out.
	Attributes *dicom.Dataset
	// Search holds, by tag, the values queries match against where they
	// differ from Attributes: the normalized form of each PN attribute,
	// and the Scheduled Procedure Step IDs and Requested Procedure IDs
	// of every item of the Request Attributes Sequence, joined by
	// backslashes.
	Search map[tag.Tag]string

	NumberOfSeriesRelatedInstances int
	// UpdatedAt is when the row last changed, by the DB's clock.
	UpdatedAt time.Time
}

// Series returns the series with the given Series Instance UID, or
// ErrNotFound.
func (db *DB) Series(ctx context.Context, seriesInstanceUID string) (*Series, error) {
	sc := newScanned(seriesColumns)
	var s Series
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

// Counts are the numbers of rows at each level.
type Counts struct {
	Patients, Studies, Series, Instances int
}

// Counts returns how many patients, studies, series and instances the
// index holds.
func (db *DB) Counts(ctx context.Context) (Counts, error) {
	var c Counts
	err := db.queryRow(ctx, db.db, `SELECT
	(SELECT COUNT(*) FROM patient), (SELECT COUNT(*) FROM study),
	(SELECT COUNT(*) FROM series), (SELECT COUNT(*) FROM instance)`).Scan(&c.Patients, &c.Studies, &c.Series, &c.Instances)
	if err != nil {
		return Counts{}, fmt.Errorf("index: count: %w", err)
	}
	return c, nil
}

func notFound(what, id string, err error) error {
	if errors.Is(err, sql.ErrNoRows) {
		err = ErrNotFound
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

// Metadata returns the metadata document kept with an instance (see
// Instance.Metadata). It returns an error wrapping ErrNotFound when the
// instance has none, or is not indexed.
func (db *DB) Metadata(ctx context.Context, sopInstanceUID string) ([]byte, error) {
	var doc []byte
	err := db.queryRow(ctx, db.db, `SELECT m.document FROM instance_metadata m JOIN instance i ON i.pk = m.instance_fk
WHERE i.sop_instance_uid = ?`, sopInstanceUID).Scan(&doc)
	if errors.Is(err, sql.ErrNoRows) {
		return nil, fmt.Errorf("index: metadata of %s: %w", sopInstanceUID, ErrNotFound)
	}
	if err != nil {
		return nil, fmt.Errorf("index: metadata of %s: %w", sopInstanceUID, err)
	}
	return doc, nil
}
