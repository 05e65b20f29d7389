package migrate

import (
	"bufio"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"hash"
	"io"
	"strings"

	"github.com/pacsd/pacsd/dicom"
	"github.com/pacsd/pacsd/dicom/tag"
	"github.com/pacsd/pacsd/index"
	"github.com/pacsd/pacsd/route"
	"github.com/pacsd/pacsd/storage"
)

// Archive is what a migration needs of pacsd's archive service (package
// archive, which cmd/pacsd adapts to it).
type Archive interface {
	// Store archives one data set, reading it from req.Dataset, and
	// returns the record of the instance stored, with its Header, once it
	// is durable. An instance already archived is refused, with an error
	// wrapping ErrConflict; a data set the archive cannot keep (not
	// DICOM enough, not whole, not what was declared), with an error
	// wrapping ErrRefused.
	Store(ctx context.Context, req *StoreRequest) (*index.Instance, error)
	// Open opens the object of an archived instance, File Meta
	// Information first.
	Open(ctx context.Context, in *index.Instance) (storage.Object, error)
}

// StoreRequest is one data set for Archive.Store.
type StoreRequest struct {
	// SOPClassUID and SOPInstanceUID are what the source declared; empty
	// when it declared nothing.
	SOPClassUID    string
	SOPInstanceUID string
	// TransferSyntaxUID is the encoding of Dataset.
	TransferSyntaxUID string
	// CallingAE and CalledAE record who sent the instance to whom;
	// Source is SourceMigrate or SourceImport.
	CallingAE, CalledAE string
	Source              string
	// Dataset is the data set, without File Meta Information.
	Dataset io.Reader
}

// ErrRefused reports a data set the archive cannot keep.
var ErrRefused = errors.New("migrate: the archive refuses this data set")

// Index is what a migration reads of pacsd's index.
type Index interface {
	// Instance returns the record of an archived instance, or an error
	// wrapping index.ErrNotFound.
	Instance(ctx context.Context, sopInstanceUID string) (*index.Instance, error)
	// Patient returns a patient the index holds, or an error wrapping
	// index.ErrNotFound.
	Patient(ctx context.Context, patientID, issuerOfPatientID string) (*index.Patient, error)
}

// How the archive records that an instance came in (its Source), so that
// routing rules and reports can tell migrated and imported instances.
const (
	SourceMigrate = "migrate"
	SourceImport  = "import"
)

// ErrConflict reports an instance whose SOP Instance UID pacsd already
// holds with other content. The migration keeps what pacsd holds and
// reports the study in conflict.
var ErrConflict = errors.New("migrate: pacsd holds this SOP Instance UID with other content")

// keeper keeps the instances a migration or an import receives.
type keeper struct {
	archive Archive
	index   Index
	// aeTitle is pacsd's, recorded as the AE the instances were sent to.
	aeTitle string
	// source is how the archive records that they came in: SourceMigrate
	// or SourceImport.
	source  string
	limiter *route.Limiter
	// received counts the bytes of data sets read, for progress.
	received func(n int64)
}

// kept is what keep made of one instance.
type kept struct {
	sopInstanceUID   string
	studyInstanceUID string
	// identical is set when pacsd already held the same data set.
	identical bool
	// bytes is the length of the data set received.
	bytes int64
	// sha256 is the data set's digest, hexadecimal.
	sha256 string
	// patient holds the patient attributes of a newly stored instance,
	// and the others its study attributes.
	patient                                   *patient
	studyDate, studyTime, accession, modality string
}

// keep stores one instance unless pacsd holds it already: a copy of the
// same data set is taken as kept, other content is ErrConflict. For an
// exact copy of the source's file it then reads the data set back from
// storage and compares digests.
func (k *keeper) keep(ctx context.Context, in *Incoming) (*kept, error) {
	sum := sha256.New()
	body := &countingReader{r: k.limiter.Reader(ctx, in.Dataset), count: k.received}
	data := io.TeeReader(body, sum)
	if in.SOPInstanceUID != "" {
		prev, err := k.index.Instance(ctx, in.SOPInstanceUID)
		switch {
		case err == nil:
			return k.compare(ctx, prev, in, data, sum, body)
		case !errors.Is(err, index.ErrNotFound):
			return nil, fmt.Errorf("migrate: index: %w", err)
		}
	}
	rec, err := k.archive.Store(ctx, &StoreRequest{
		SOPClassUID:       in.SOPClassUID,
		SOPInstanceUID:    in.SOPInstanceUID,
		TransferSyntaxUID: in.TransferSyntaxUID,
		CallingAE:         in.CallingAE,
		CalledAE:          k.aeTitle,
		Source:            k.source,
		Dataset:           data,
	})
	if err != nil {
		return nil, err
	}
	// The archive stops reading at the end of the data set; what it
	// left (nothing, for a well-formed one) belongs to the digest too.
	io.Copy(sum, body)
	got := &kept{
		sopInstanceUID:   rec.SOPInstanceUID,
		studyInstanceUID: rec.StudyInstanceUID,
		bytes:            body.n,
		sha256:           hex.EncodeToString(sum.Sum(nil)),
		patient:          patientOf(rec.Header),
	}
	if h := rec.Header; h != nil {
		got.studyDate, got.studyTime = h.First(tag.StudyDate), h.First(tag.StudyTime)
		got.accession, got.modality = h.First(tag.AccessionNumber), h.First(tag.Modality)
	}
	if in.Exact {
		stored, err := k.datasetSHA256(ctx, rec)
		if err != nil {
			return nil, fmt.Errorf("migrate: read back %s: %w", got.sopInstanceUID, err)
		}
		if stored != got.sha256 {
			return nil, fmt.Errorf("migrate: %s: the data set read back has SHA-256 %s, the source's %s", got.sopInstanceUID, stored, got.sha256)
		}
	}
	return got, nil
}

// compare reads the incoming data set to its end and compares it with
// the one pacsd holds of the same instance.
func (k *keeper) compare(ctx context.Context, prev *index.Instance, in *Incoming, data io.Reader, sum hash.Hash, body *countingReader) (*kept, error) {
	if _, err := io.Copy(io.Discard, data); err != nil {
		return nil, fmt.Errorf("migrate: read data set: %w", err)
	}
	got := &kept{sopInstanceUID: prev.SOPInstanceUID, studyInstanceUID: prev.StudyInstanceUID, bytes: body.n, sha256: hex.EncodeToString(sum.Sum(nil))}
	if prev.TransferSyntaxUID != in.TransferSyntaxUID {
		return nil, fmt.Errorf("%w: %s is held in %s, the source sent %s", ErrConflict, prev.SOPInstanceUID, prev.TransferSyntaxUID, in.TransferSyntaxUID)
	}
	stored, err := k.datasetSHA256(ctx, prev)
	if err != nil {
		return nil, fmt.Errorf("migrate: read %s: %w", prev.SOPInstanceUID, err)
	}
	if stored != got.sha256 {
		return nil, fmt.Errorf("%w: %s (study %s, received from %q) differs from the source's copy", ErrConflict, prev.SOPInstanceUID, prev.StudyInstanceUID, prev.CallingAE)
	}
	got.identical = true
	return got, nil
}

// datasetSHA256 returns the SHA-256 of the data set of an archived
// instance: its object without the File Meta Information pacsd wrote.
func (k *keeper) datasetSHA256(ctx context.Context, in *index.Instance) (string, error) {
	obj, err := k.archive.Open(ctx, in)
	if err != nil {
		return "", err
	}
	defer obj.Close()
	br := bufio.NewReaderSize(obj, 64<<10)
	if _, _, err := dicom.ReadFileMeta(br); err != nil {
		return "", err
	}
	sum := sha256.New()
	if _, err := io.Copy(sum, br); err != nil {
		return "", err
	}
	return hex.EncodeToString(sum.Sum(nil)), nil
}

// countingReader counts what is read through it.
type countingReader struct {
	r     io.Reader
	n     int64
	count func(int64)
}

func (c *countingReader) Read(p []byte) (int, error) {
	n, err := c.r.Read(p)
	c.n += int64(n)
	if c.count != nil && n > 0 {
		c.count(int64(n))
	}
	return n, err
}

// patient is the identity of a patient as one instance or study gives it.
type patient struct {
	ID, Issuer, Name, BirthDate string
}

func patientOf(ds *dicom.Dataset) *patient {
	if ds == nil {
		return nil
	}
	return &patient{ID: ds.First(tag.PatientID), Issuer: ds.First(tag.IssuerOfPatientID), Name: ds.String(tag.PatientName), BirthDate: ds.First(tag.PatientBirthDate)}
}

func (p *patient) String() string {
	s := fmt.Sprintf("%q", p.Name)
	if p.BirthDate != "" {
		s += " born " + p.BirthDate
	}
	return s
}

// differs says how two records of the same patient disagree, or returns
// "" when they do not. Names are compared without regard to case or
// trailing empty components, which systems add and drop freely; a value
// one side lacks is no disagreement.
func (p *patient) differs(q *patient) string {
	var what []string
	if a, b := normalName(p.Name), normalName(q.Name); a != "" && b != "" && a != b {
		what = append(what, "name")
	}
	if p.BirthDate != "" && q.BirthDate != "" && p.BirthDate != q.BirthDate {
		what = append(what, "birth date")
	}
	return strings.Join(what, " and ")
}

// normalName returns a PN value in capitals, without trailing spaces or
// empty components.
func normalName(pn string) string {
	groups := strings.Split(strings.ToUpper(pn), "=")
	for i, g := range groups {
		comps := strings.Split(g, "^")
		for j := range comps {
			comps[j] = strings.TrimSpace(comps[j])
		}
		groups[i] = strings.TrimRight(strings.Join(comps, "^"), "^")
	}
	return strings.TrimRight(strings.Join(groups, "="), "=")
}
