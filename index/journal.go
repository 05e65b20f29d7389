package index

import (
	"errors"
	"time"
)

// ErrApplied reports a change whose record in storage (see Removal.Record,
// Correction.Record, Link.Record) the index has applied already: the
// change was made, by this call's earlier attempt or by a replay of the
// record, and is not made twice.
var ErrApplied = errors.New("index: record applied already")

// Actions of the link log (LinkEvent.Action).
const (
	ActionLink   = "link"
	ActionUnlink = "unlink"
)

// Link links local patients by hand as one person, or unlinks each of
// them (Unlink), as the record Record in storage says; see
// Correction.Record.
type Link struct {
	Patients []PatientKey
	Unlink   bool
	// Record is the key of the change's record in storage, "" for none;
	// the index applies a record once (ErrApplied).
	Record    string
	Principal string
	// Time is when the change was asked for; the index's clock when
	// zero.
	Time time.Time
}

// LinkEvent is an entry of the link log: a link or unlink made by hand,
// for the audit trail.
type LinkEvent struct {
	ID        int64
	Action    string
	Patients  []PatientKey
	Principal string
	Time      time.Time
}
