package archive

import (
	"errors"
	"fmt"
	"strconv"

	"github.com/pacsd/pacsd/dicom"
	"github.com/pacsd/pacsd/index"
)

// DuplicatePolicy says what to do with an instance whose SOP Instance UID is
// already archived.
type DuplicatePolicy int

const (
	// DuplicateSameSourceAndSeries, the default, stores the new instance
	// in place of the old one only when it comes from the same sender
	// (same Source, CallingAE and Principal) into the same study and
	// series, as equipment resends a corrected instance. A byte for
	// byte copy of the archived data set is accepted from anyone and
	// changes nothing (a C-MOVE back to the archive, another archive
	// forwarding what it has). Any other instance with a known SOP
	// Instance UID is refused with ErrDuplicate and logged as a
	// conflict: a UID that arrives under another patient's study, or
	// from another system, is a collision or a mistake, and must not
	// silently move or overwrite what was acknowledged to someone else.
	// (dcm4chee's policy of the same name.)
	DuplicateSameSourceAndSeries DuplicatePolicy = iota
	// DuplicateReplace stores the new instance in place of the old one
	// and logs it, wherever it comes from.
	DuplicateReplace
	// DuplicateKeep keeps the archived instance, discards the new one and
	// reports success.
	DuplicateKeep
	// DuplicateReject refuses the new instance with ErrDuplicate.
	DuplicateReject
)

var duplicatePolicies = [...]string{
	DuplicateSameSourceAndSeries: "same-source-and-series",
	DuplicateReplace:             "replace",
	DuplicateKeep:                "keep",
	DuplicateReject:              "reject",
}

// ParseDuplicatePolicy reads "same-source-and-series", "replace", "keep" or
// "reject"; the empty string is the default, same-source-and-series.
func ParseDuplicatePolicy(s string) (DuplicatePolicy, error) {
	if s == "" {
		return DuplicateSameSourceAndSeries, nil
	}
	for p, name := range duplicatePolicies {
		if s == name {
			return DuplicatePolicy(p), nil
		}
	}
	return 0, fmt.Errorf("archive: duplicate policy %q is not same-source-and-series, replace, keep or reject", s)
}

func (p DuplicatePolicy) String() string {
	if p >= 0 && int(p) < len(duplicatePolicies) {
		return duplicatePolicies[p]
	}
	return "DuplicatePolicy(" + strconv.Itoa(int(p)) + ")"
}

// Outcomes of a decision other than storing or refusing; Store reports
// both as a kept instance.
var (
	// errKeep: DuplicateKeep found the instance archived.
	errKeep = errors.New("archive: instance kept")
	// errSuperseded: the index records a later version of the instance
	// than the one being stored, which another node stored meanwhile.
	errSuperseded = errors.New("archive: a later version is recorded")
)

// decision applies the duplicate policy to one store, against the record
// of the instance the index holds: once before the object is written,
// and again in the index's transaction (index.PutRequest.Check).
type decision struct {
	policy DuplicatePolicy
	req    *StoreRequest
	id     dicom.Identity
	// key is the new version's, once it has one.
	key string
	// current is the record last checked against.
	current *index.Instance
}

// check returns nil when the instance may be stored over current (nil
// when the index holds none), errKeep or errSuperseded when the archived
// one stays, and an error wrapping ErrDuplicate when the store is
// refused.
func (d *decision) check(current *index.Instance) error {
	d.current = current
	if current == nil {
		return nil
	}
	if d.key != "" && newer(current.Key, d.key) {
		return errSuperseded
	}
	sop := d.id.SOPInstanceUID
	switch d.policy {
	case DuplicateReplace:
		return nil
	case DuplicateKeep:
		return errKeep
	case DuplicateReject:
		return fmt.Errorf("%w: %s (study %s)", ErrDuplicate, sop, current.StudyInstanceUID)
	}
	// The messages put first what fits in the 64 characters of a DIMSE
	// Error Comment; the response names the instance already.
	if from := sender(d.req.Source, d.req.CallingAE, d.req.Principal); from != sender(current.Source, current.CallingAE, current.Principal) {
		return fmt.Errorf("%w: sent by %s, not %s", ErrDuplicate, sender(current.Source, current.CallingAE, current.Principal), from)
	}
	switch {
	case current.StudyInstanceUID != d.id.StudyInstanceUID:
		return fmt.Errorf("%w: archived in another study, %s, not %s", ErrDuplicate, current.StudyInstanceUID, d.id.StudyInstanceUID)
	case current.SeriesInstanceUID != d.id.SeriesInstanceUID:
		return fmt.Errorf("%w: archived in another series, %s, not %s", ErrDuplicate, current.SeriesInstanceUID, d.id.SeriesInstanceUID)
	}
	return nil
}

// sender names who sent an instance, for comparing and for messages.
func sender(source, callingAE, principal string) string {
	s := source
	if s == "" {
		s = "an unknown source"
	}
	if callingAE != "" {
		s += " AE " + strconv.Quote(callingAE)
	}
	if principal != "" {
		s += " principal " + strconv.Quote(principal)
	}
	return s
}
