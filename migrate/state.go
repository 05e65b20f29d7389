package migrate

import (
	"context"
	"errors"
	"iter"
	"time"
)

// Errors of a State.
var (
	// ErrNotFound reports a migration, study or file the State does not
	// hold.
	ErrNotFound = errors.New("migrate: not found")
	// ErrClaimed reports a migration that another process is running.
	ErrClaimed = errors.New("migrate: migration is being run by another process")
)

// StudyState is where a study is in its migration.
type StudyState string

// The states of a study; see the package documentation.
const (
	Pending  StudyState = "pending"
	Done     StudyState = "done"
	Verified StudyState = "verified"
	Failed   StudyState = "failed"
	Conflict StudyState = "conflict"
)

// StudyStates lists the states in the order reports give them.
var StudyStates = []StudyState{Pending, Done, Verified, Failed, Conflict}

// Valid reports whether s is one of the states above.
func (s StudyState) Valid() bool {
	switch s {
	case Pending, Done, Verified, Failed, Conflict:
		return true
	}
	return false
}

// Kinds of migration: where the studies come from.
const (
	KindDIMSE    = "dimse"
	KindDICOMweb = "dicomweb"
	KindImport   = "import"
)

// Migration is one migration: every run from one source, or every
// import, recorded together.
type Migration struct {
	// ID names the migration; the State chooses it.
	ID string
	// Source is the remote AE title or DICOMweb URL the studies come
	// from, or "import".
	Source string
	// Kind is KindDIMSE, KindDICOMweb or KindImport.
	Kind string
	// Started is when the migration was first begun.
	Started time.Time
	// Running says whether a process is migrating: Owner names it, and
	// Heartbeat is the last time it said it was alive. A process that
	// died leaves Running set and its heartbeat growing old.
	Running   bool
	Owner     string
	Heartbeat time.Time
	// Waiting is set while the run waits for its time window to open.
	Waiting bool
	// Finished is set once a run has worked through every study it
	// found, whatever their end states.
	Finished bool
	// Window is the run's time window ("19:00-07:00"), empty for any
	// time.
	Window string
}

// Study is the record of one study of a migration: the columns of the
// report.
type Study struct {
	StudyInstanceUID string
	// Patient and study attributes as the source answered them when
	// the study was discovered (or, for an import, as the first file of
	// the study carried them).
	PatientID         string
	IssuerOfPatientID string
	PatientName       string
	PatientBirthDate  string
	StudyDate         string
	StudyTime         string
	AccessionNumber   string
	// Modalities are the Modalities in Study, joined by backslashes.
	Modalities string
	// InstancesAtSource is how many instances the source holds of the
	// study: the number its IMAGE-level query listed, or the discovery
	// answer's Number of Study Related Instances before that; 0 when
	// unknown. InstancesHere is how many of those pacsd holds.
	InstancesAtSource int
	InstancesHere     int
	// Bytes is how many bytes of the study's data sets were received.
	Bytes int64
	State StudyState
	// Attempts counts the retrievals of the study.
	Attempts int
	// LastError says why the study is failed or in conflict, or what
	// went wrong in its last attempt.
	LastError string
	// Priority studies are migrated first (--priority-file).
	Priority bool
	// Updated is when the row last changed.
	Updated time.Time
}

// FileState is what an import made of one file.
type FileState string

// The states of an imported file.
const (
	// FileVerified: stored, and the data set read back from pacsd has
	// the file's SHA-256.
	FileVerified FileState = "verified"
	// FileRejected: not a DICOM instance pacsd can keep (not DICOM,
	// truncated, no identifying UIDs); Reason says which.
	FileRejected FileState = "rejected"
	// FileFailed: a DICOM instance that could not be stored or
	// verified; the next import tries again.
	FileFailed FileState = "failed"
	// FileConflict: pacsd holds the SOP Instance UID with other
	// content.
	FileConflict FileState = "conflict"
)

// File is the record of one file an import read.
type File struct {
	Path string
	// Size and ModTime are the file's when it was read: a file that
	// changed since is read again. A State keeps ModTime to the
	// microsecond.
	Size    int64
	ModTime time.Time
	// SOPInstanceUID and StudyInstanceUID are empty for a file that is
	// not DICOM.
	SOPInstanceUID   string
	StudyInstanceUID string
	// SHA256 is the data set's digest, in lower-case hexadecimal.
	SHA256 string
	State  FileState
	Reason string
}

// Totals sum the studies of a migration.
type Totals struct {
	Studies int
	// ByState counts the studies in each state.
	ByState           map[StudyState]int
	InstancesAtSource int
	InstancesHere     int
	Bytes             int64
}

// StudyFilter selects studies.
type StudyFilter struct {
	// States, when not empty, are the states to list.
	States []StudyState
	// After lists the studies whose UIDs sort after it: the cursor of
	// the next page.
	After string
	// Limit is the most studies to list; 0 for all.
	Limit int
}

// State keeps the migrations and their studies. Every method is safe for
// concurrent use and, where a migration runs on a shared database, for
// use by several processes: one process runs a migration at a time (see
// Claim), others read.
type State interface {
	// Begin returns the migration from source, recording a new one of
	// kind when there is none.
	Begin(ctx context.Context, source, kind string) (*Migration, error)
	// Migrations returns every migration, most recently started first.
	Migrations(ctx context.Context) ([]*Migration, error)
	// Migration returns the migration id, or an error wrapping
	// ErrNotFound.
	Migration(ctx context.Context, id string) (*Migration, error)
	// Claim makes owner the process running migration id, if the
	// process running it now is prev ("" for none): a compare and swap,
	// so that of two processes claiming at once, one wins. It returns an
	// error wrapping ErrClaimed when the owner is not prev. Claiming
	// with owner "" releases the migration.
	Claim(ctx context.Context, id, prev, owner string, now time.Time) error
	// Update writes the fields of m other than ID, Source, Kind, Started
	// and Owner.
	Update(ctx context.Context, m *Migration) error

	// AddStudies records discovered studies as pending. A study already
	// recorded keeps its state, counts and attempts; its attributes and
	// priority are updated.
	AddStudies(ctx context.Context, id string, studies []*Study) error
	// Study returns one study of migration id, or an error wrapping
	// ErrNotFound.
	Study(ctx context.Context, id, studyInstanceUID string) (*Study, error)
	// PutStudy records s, added or updated.
	PutStudy(ctx context.Context, id string, s *Study) error
	// Studies lists the studies of migration id that f selects, by
	// Study Instance UID.
	Studies(ctx context.Context, id string, f StudyFilter) iter.Seq2[*Study, error]
	// PatientStudies lists the studies of migration id of one patient.
	PatientStudies(ctx context.Context, id, patientID, issuer string) ([]*Study, error)
	// Totals sums the studies of migration id.
	Totals(ctx context.Context, id string) (Totals, error)
	// Progress sums the studies of migration id verified since t and
	// the bytes they brought: the rates of a running migration.
	Progress(ctx context.Context, id string, since time.Time) (studies int, bytes int64, err error)

	// PutFile records what an import made of a file.
	PutFile(ctx context.Context, id string, f *File) error
	// File returns the record of the file at path, or an error wrapping
	// ErrNotFound.
	File(ctx context.Context, id, path string) (*File, error)
	// Files lists the files of migration id, by path; with states,
	// only those in one of them.
	Files(ctx context.Context, id string, states ...FileState) iter.Seq2[*File, error]
}
