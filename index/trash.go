package index

import (
	"errors"
	"time"
)

// ErrRejected reports an instance whose SOP Instance UID a rejection
// note (IHE IOCM) named: the archive refuses it for good.
var ErrRejected = errors.New("index: instance rejected")

// Causes of an instance's removal (Trashed.Cause).
const (
	// CauseDeleted is a deletion asked for by a user.
	CauseDeleted = "deleted"
	// CauseRejected is a rejection note naming the instance.
	CauseRejected = "rejected"
	// CauseExpired is a retention rule whose period has ended.
	CauseExpired = "expired"
)

// Actions of the removal log (Event.Action).
const (
	ActionDelete  = "delete"
	ActionRestore = "restore"
	ActionPurge   = "purge"
	ActionReject  = "reject"
	ActionExpire  = "expire"
)

// Selection names the instances of a study, of one of its series, or one
// instance. StudyInstanceUID is required; SOPInstanceUID, when set,
// requires SeriesInstanceUID.
type Selection struct {
	StudyInstanceUID  string
	SeriesInstanceUID string
	SOPInstanceUID    string
}

// Describe names what s selects, for messages: "study UID", "series UID"
// or "instance UID".
func (s Selection) Describe() string {
	switch {
	case s.SOPInstanceUID != "":
		return "instance " + s.SOPInstanceUID
	case s.SeriesInstanceUID != "":
		return "series " + s.SeriesInstanceUID
	}
	return "study " + s.StudyInstanceUID
}

// Removal asks for the instances of a selection to leave the archive's
// view at once: every query and retrieval stops seeing them in the
// transaction that removes them. Their objects stay in storage, in the
// trash, until it is purged.
type Removal struct {
	Selection
	// Cause is CauseDeleted or CauseExpired.
	Cause string
	// Reason says why; it is required.
	Reason string
	// Principal names who asked.
	Principal string
	// Keys, when not empty, restrict the removal to the instances
	// recorded with these objects: those its record in storage names.
	Keys []string
	// Record is the key of the removal's record in storage, "" for
	// none; the index applies a record once (ErrApplied). Time is when
	// the removal was asked for, the index's clock when zero.
	Record string
	Time   time.Time
}

// Rejection is a rejection note (IHE IOCM Key Object Selection) to
// apply: the instances it references are hidden, and refused when they
// arrive again.
type Rejection struct {
	// Code is the note's Concept Name code value (113001, 113037,
	// 113038 or 113039).
	Code string
	// Note is the SOP Instance UID of the note itself.
	Note string
	// Instances are the instances the note references.
	Instances []Selection
	// Purge puts the instances in the trash, purged in its time; when
	// false they are kept hidden for good (the policy "hide").
	Purge     bool
	Principal string
}

// Trashed is the record of an instance removed from the archive's view,
// whose object storage still holds.
type Trashed struct {
	Instance
	RemovedAt time.Time
	// Cause is one of the Cause constants.
	Cause string
	// Purge is true for the trash proper, which is purged after its
	// days; false for an instance hidden for good.
	Purge bool
}

// Event is an entry of the removal log: a deletion, restore, purge,
// rejection or expiry, with who asked for it and why.
type Event struct {
	ID int64 `json:"id"`
	// Action is one of the Action constants.
	Action            string    `json:"action"`
	StudyInstanceUID  string    `json:"study,omitempty"`
	SeriesInstanceUID string    `json:"series,omitempty"`
	SOPInstanceUID    string    `json:"instance,omitempty"`
	Instances         int       `json:"instances"`
	Reason            string    `json:"reason"`
	Principal         string    `json:"principal"`
	Time              time.Time `json:"time"`
	// The patient of the study when the entry was made.
	PatientID         string `json:"patient_id,omitempty"`
	IssuerOfPatientID string `json:"issuer_of_patient_id,omitempty"`
	PatientName       string `json:"patient_name,omitempty"`
}
