package index

import (
	"errors"
	"time"

	"github.com/pacsd/pacsd/dicom"
)

var (
	// ErrNotFound reports that no instance, series, study or patient has
	// the identifier asked for.
	ErrNotFound = errors.New("index: not found")

	// ErrInvalidQuery reports a query the index refuses: an unknown
	// level, a unique key missing or out of place, a malformed range, a
	// wild card in a UID, and so on. The error that wraps it says which.
	ErrInvalidQuery = errors.New("index: invalid query")
)

// Instance is the archive's record of one stored instance.
type Instance struct {
	SOPInstanceUID    string
	SOPClassUID       string
	SeriesInstanceUID string
	StudyInstanceUID  string

	// Key is where the object is in storage. An object, once written,
	// never changes: a new version of the instance gets a key of its
	// own, so a record always describes the bytes its key names.
	Key string
	// Size is the object's length in bytes.
	Size int64
	// SHA256 is the object's SHA-256 digest, in lower-case hexadecimal.
	SHA256            string
	TransferSyntaxUID string

	// CallingAE and CalledAE record who sent the instance to whom.
	CallingAE string
	CalledAE  string
	// Source names the way the instance came in ("dimse", "stow", and
	// so on; see archive), and Principal who sent it when the sender
	// signed in. Together with CallingAE they tell whether a resent
	// instance comes from the same sender. Empty when unknown.
	Source    string
	Principal string
	// ReceivedAt is when the archive received the instance. The index
	// keeps it to the microsecond, in UTC; the index uses its own clock
	// when it is zero.
	ReceivedAt time.Time

	// Header is the instance's decoded header, from which the index
	// takes the attributes of the patient, study, series and instance.
	// It may be nil, or partial when the header could not be read to
	// its end: what it lacks is indexed as empty. Records read back from
	// the index leave it nil.
	Header *dicom.Dataset

	// Metadata, when not nil, is a document the index keeps with the
	// instance for the archive, opaque to the index: what DICOMweb serves
	// of the instance without reading its object. Recording a new
	// version of an instance replaces the document, or drops it when
	// Metadata is nil. Records read back from the index leave it nil.
	Metadata []byte

	// Amended, when not nil, holds the attributes the archive serves in
	// place of those of the stored object, which is never rewritten: the
	// issuer of patient ID given to an instance that came without one,
	// the values of corrections. The index indexes the instance as if
	// its header held them, and records read back carry them, so that
	// every way out can rewrite the data set it serves (see archive).
	Amended *dicom.Dataset
	// AmendedAt is when Amended took the values it holds: the time of
	// the latest correction of the instance. It is zero when the index
	// does not know it, for an issuer given at ingest, whose time is
	// ReceivedAt. Records read back carry it.
	AmendedAt time.Time
}
