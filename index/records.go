package index

import (
	"time"

	"github.com/pacsd/pacsd/dicom"
	"github.com/pacsd/pacsd/dicom/tag"
)

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

// Counts are the numbers of rows at each level.
type Counts struct {
	Patients, Studies, Series, Instances int
}
