package index

import (
	"cmp"
	"errors"
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/pacsd/pacsd/dicom"
)

// PatientKey identifies a local patient: a Patient ID within the
// namespace of its issuer.
type PatientKey struct {
	ID, Issuer string
}

// String writes k as ID^ISSUER, the form the API and the command line
// take.
func (k PatientKey) String() string { return k.ID + "^" + k.Issuer }

// ParsePatientKey reads ID^ISSUER; the issuer may be empty ("ID^" or
// "ID"), the ID may not.
func ParsePatientKey(s string) (PatientKey, error) {
	id, issuer, _ := strings.Cut(s, "^")
	k := PatientKey{ID: strings.TrimSpace(id), Issuer: strings.TrimSpace(issuer)}
	if k.ID == "" {
		return PatientKey{}, fmt.Errorf("%w: patient %q has no Patient ID; write ID^ISSUER", ErrInvalidQuery, s)
	}
	return k, nil
}

// Person is one person as the index knows them: the local patients
// linked to each other, automatically through a valid NHS number they
// share, or by hand.
type Person struct {
	// NHSNumber is the person's NHS number, empty when none is known.
	NHSNumber string
	// Patients are the linked local patients, each with the studies
	// filed under it. A patient linked by hand but without studies yet
	// is listed without them.
	Patients []*PersonPatient
}

// PersonPatient is one local patient of a Person.
type PersonPatient struct {
	PatientKey
	// Manual is true when the patient was linked or unlinked by hand,
	// which automatic linking then leaves alone.
	Manual  bool
	Studies []*Study
}

// ErrLink reports patients that cannot be linked: they carry different
// NHS numbers, or there are fewer than two of them.
var ErrLink = errors.New("index: patients cannot be linked")

// ErrInvalidCorrection reports a correction the index refuses: no
// reason, an attribute that cannot be corrected, an undo of an undo.
var ErrInvalidCorrection = errors.New("index: invalid correction")

// Correction is a change of the attributes the archive serves of a
// study's instances, or a series moved to another study, recorded with
// who made it, when and why. The stored objects never change: the
// archive rewrites what it serves (see Instance.Amended).
type Correction struct {
	ID int64
	// Study is the study corrected, or the study a series moved from.
	Study string
	// Series and Target, for a move, are the series moved and the study
	// it moved to.
	Series, Target string
	// Reason says why; a correction without one is refused.
	Reason    string
	Principal string
	Time      time.Time
	// Before and After hold the attributes changed, as they were and as
	// they became; an attribute absent before is empty in Before.
	Before, After *dicom.Dataset
	// Undoes is the correction this one reverts, 0 for none; UndoneBy
	// the correction that reverted this one.
	Undoes, UndoneBy int64
	// Record is the key of the correction's record in storage, "" for
	// none, from which a rebuilt index makes it again; the index
	// applies a record once (ErrApplied). A correction asked for with a
	// Time keeps it (a replay); one without takes the index's clock.
	Record string
}

// Overlay returns h with the elements of amended in place of its own of
// the same tags, and those it lacks added, in tag order; h itself is not
// changed. Either may be nil.
func Overlay(h, amended *dicom.Dataset) *dicom.Dataset {
	if amended == nil || len(amended.Elements) == 0 {
		return h
	}
	out := &dicom.Dataset{}
	if h != nil {
		out.Elements = make([]dicom.Element, 0, len(h.Elements)+len(amended.Elements))
		for _, e := range h.Elements {
			if _, ok := amended.Find(e.Tag); !ok {
				out.Elements = append(out.Elements, e)
			}
		}
	}
	out.Elements = append(out.Elements, amended.Elements...)
	slices.SortStableFunc(out.Elements, func(a, b dicom.Element) int { return cmp.Compare(a.Tag, b.Tag) })
	return out
}
