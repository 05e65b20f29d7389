package archive

import (
	"bufio"
	"bytes"
	"context"
	"crypto/sha256"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"slices"
	"strings"
	"sync/atomic"
	"time"

	"github.com/pacsd/pacsd/dicom"
	"github.com/pacsd/pacsd/dicom/tag"
	"github.com/pacsd/pacsd/dicom/uid"
	"github.com/pacsd/pacsd/index"
	"github.com/pacsd/pacsd/internal/keylock"
	"github.com/pacsd/pacsd/nhs"
	"github.com/pacsd/pacsd/storage"
)

// Errors of Store. Front doors map them onto their protocol's statuses;
// the wrapping error's text says what exactly was wrong.
var (
	// ErrInvalid reports a data set the archive cannot file: not DICOM,
	// no or invalid identifying UIDs, an unknown transfer syntax, or a
	// data set that ends before its last element does (it then also
	// wraps dicom.ErrTruncated).
	ErrInvalid = errors.New("archive: data set cannot be understood")
	// ErrMismatch reports a data set whose SOP Class or SOP Instance UID
	// differs from what the sender declared for it.
	ErrMismatch = errors.New("archive: data set does not match its declaration")
	// ErrDuplicate reports an instance already archived that the
	// duplicate policy does not let the new one replace.
	ErrDuplicate = errors.New("archive: instance already archived")
	// ErrUnavailable reports that storage or the index failed: the
	// instance is not archived and the sender should try again.
	ErrUnavailable = errors.New("archive: storage unavailable")
	// ErrIncomplete is the warning of an instance archived whole whose
	// header could not be read to its end.
	ErrIncomplete = errors.New("archive: header could not be read to its end")
	// ErrRefused reports an instance of a patient the sender may not
	// store: its Issuer of Patient ID is not among StoreRequest.Issuers.
	ErrRefused = errors.New("archive: not authorized for this patient's issuer")
)

// Index is what the archive needs of the index.
type Index interface {
	// PreparePut prepares the recording of an instance, for Commit once
	// its object is durable; see index.Pending.
	PreparePut(ctx context.Context, req *index.PutRequest) (index.Pending, error)
	Instance(ctx context.Context, sopInstanceUID string) (*index.Instance, error)
	// Metadata returns the document kept with the version of an
	// instance in names (see index.Instance.Metadata), or an error
	// wrapping index.ErrNotFound.
	Metadata(ctx context.Context, in *index.Instance) ([]byte, error)
}

// Observer hears how the archive's work goes, for metrics; a
// *metrics.Registry is one. Its methods must be quick and safe for
// concurrent use.
type Observer interface {
	// ObserveStored counts an instance archived from source (see
	// StoreRequest.Source), sent by callingAE, with an object of bytes.
	ObserveStored(source, callingAE string, bytes int64)
	// ObserveStoragePut records the write of an object to backend,
	// until durable, that took d and failed with err if not nil.
	ObserveStoragePut(backend string, d time.Duration, err error)
	// ObserveStorageGet records the opening of an object.
	ObserveStorageGet(backend string, d time.Duration, err error)
	// ObserveIndexCommit records the commit of an instance's record.
	ObserveIndexCommit(d time.Duration, err error)
}

// Sources of instances: how they came in (StoreRequest.Source).
const (
	SourceDIMSE = "dimse"
	SourceSTOW  = "stow"
)

// Config configures a Service.
type Config struct {
	Store storage.Store
	Index Index
	// AETitle is the archive's own AE title, written to File Meta
	// Information as the AE that wrote the object.
	AETitle    string
	Duplicates DuplicatePolicy
	// Limits bound the memory one instance's header may take.
	Limits dicom.Limits
	// CommitTimeout bounds the work left once an object is durable:
	// recording it in the index and deleting the version it replaces.
	// That work goes on when the request is cancelled, since the object
	// is already written. DefaultCommitTimeout when zero.
	CommitTimeout time.Duration
	Logger        *slog.Logger
	// Now is the clock; time.Now when nil.
	Now func() time.Time
	// Forwarder, when not nil, decides where each instance stored is
	// forwarded; its tasks are written in the instance's transaction.
	Forwarder Forwarder
	// Observer, if set, hears of the archive's storage operations,
	// commits and instances stored. Backend names Store for it: file,
	// s3 or spool.
	Observer Observer
	Backend  string
	// Rejections, when not nil, applies the IHE IOCM rejection notes the
	// archive receives: the instances a note references are hidden
	// before the note is acknowledged, and refused when they arrive
	// again. RejectionPurge puts them in the trash, to be purged in its
	// time, rather than hide them for good.
	Rejections     Rejecter
	RejectionPurge bool
	// Issuers gives an issuer of patient ID to instances without one.
	Issuers IssuerPolicy
	// NHSIssuers are the issuers of patient ID that name the NHS;
	// nhs.DefaultIssuers when nil.
	NHSIssuers nhs.Issuers
	// Codecs, when not nil, re-encodes pixel data for Compress and
	// decodes it to rebuild the originals of compressed instances (see
	// compress.go).
	Codecs Codecs
}

// Forwarder decides, as an instance is stored, where it is to be
// forwarded (package route): the tasks are recorded in the same
// transaction as the instance, so that an instance acknowledged to its
// sender always has them.
type Forwarder interface {
	// Forward returns the destinations in is for, given who sent it to
	// whom and how it came in. It must be quick and must not block.
	Forward(in *index.Instance, callingAE, calledAE, source string) []index.Forward
	// Queued is told, once an instance is recorded, the destinations
	// it was queued for.
	Queued(fs []index.Forward)
}

// DefaultCommitTimeout is Config.CommitTimeout's default.
const DefaultCommitTimeout = time.Minute

// deleteTimeout bounds the deletion of the version a store replaced.
const deleteTimeout = 10 * time.Second

// Service archives instances. It is safe for concurrent use.
type Service struct {
	cfg      Config
	log      *slog.Logger
	now      func() time.Time
	locks    keylock.Map
	versions versions
	obs      Observer
	edits    editCache
	// started is when the Service was made, from which its issuer
	// records (see recordIssuer) hold.
	started time.Time
	issuers issuerLedger
}

// nopObserver is the Observer of a Service given none.
type nopObserver struct{}

func (nopObserver) ObserveStored(string, string, int64)            {}
func (nopObserver) ObserveStoragePut(string, time.Duration, error) {}
func (nopObserver) ObserveStorageGet(string, time.Duration, error) {}
func (nopObserver) ObserveIndexCommit(time.Duration, error)        {}

// New returns a Service.
func New(cfg Config) *Service {
	s := &Service{cfg: cfg, log: cfg.Logger, now: cfg.Now, obs: cfg.Observer}
	if s.obs == nil {
		s.obs = nopObserver{}
	}
	if s.log == nil {
		s.log = slog.New(slog.DiscardHandler)
	}
	if s.now == nil {
		s.now = time.Now
	}
	s.started = s.now().UTC().Truncate(time.Microsecond)
	if s.cfg.CommitTimeout <= 0 {
		s.cfg.CommitTimeout = DefaultCommitTimeout
	}
	return s
}

// StoreRequest is one data set to archive.
type StoreRequest struct {
	// SOPClassUID and SOPInstanceUID are what the sender declared the
	// data set to be (the C-STORE command's affected UIDs, or a Part-10
	// file's File Meta Information); empty when it declared nothing.
	SOPClassUID    string
	SOPInstanceUID string
	// StudyInstanceUID, when set, is the study the data set must belong
	// to (a STOW-RS request to /studies/{study}).
	StudyInstanceUID string
	// TransferSyntaxUID is the encoding of Dataset.
	TransferSyntaxUID string
	// CallingAE and CalledAE record who sent the instance to whom.
	CallingAE string
	CalledAE  string
	// Source is how the instance came in: SourceDIMSE, SourceSTOW, or
	// another name a front door chooses. Principal names who signed in
	// to send it, empty when nobody did. The duplicate policy
	// DuplicateSameSourceAndSeries compares Source, CallingAE and
	// Principal with those of the archived instance.
	Source    string
	Principal string
	// Issuers, when not nil, are the issuers of patient IDs whose
	// patients the sender may store (per-trust access): an instance whose
	// Issuer of Patient ID is not one of them is refused with ErrRefused
	// before storage commits it. nil allows every patient. A copy of an
	// instance the archive already holds and keeps (Result.Kept) is not
	// read to its end, where the issuer is checked: the caller checks
	// the kept instance's patient.
	Issuers []string
	// Dataset is the data set, without File Meta Information. Store
	// reads it as it arrives and stops reading when it fails; the caller
	// discards whatever it leaves unread.
	Dataset io.Reader
}

// Result describes an archived instance.
type Result struct {
	Instance *index.Instance
	// Replaced is the instance this one replaced, if any.
	Replaced *index.Instance
	// Kept is true when the archive kept the instance it held and
	// discarded the new copy: under DuplicateKeep, or when a copy that
	// another node received later was recorded first. Instance is then
	// the record kept.
	Kept bool
	// Warning, when not nil, says what was not quite right about an
	// instance that is nevertheless archived whole; it wraps
	// ErrIncomplete.
	Warning error
}

// Store archives one data set. It reads the identifying UIDs, checks the
// duplicate policy, writes a Part-10 object (its own File Meta
// Information followed by the data set's bytes exactly as received) to
// storage under a key of its own (see Key), then records it in the
// index, and deletes the version it replaces, if any. It returns only
// once the object is durable and its record committed, or with an error
// wrapping one of the errors above and nothing recorded.
//
// At no moment does the index name an object that is not whole in
// storage: a failure or crash before the record is committed leaves the
// record of the version replaced, with its object; one after leaves the
// new record and at worst the old object, which Verify then reports as
// an orphan. Once the object is durable, the rest is done even if ctx is
// cancelled, within Config.CommitTimeout.
func (s *Service) Store(ctx context.Context, req *StoreRequest) (*Result, error) {
	start := time.Now()
	ts, ok := uid.LookupTransferSyntax(req.TransferSyntaxUID)
	if !ok {
		return nil, fmt.Errorf("%w: transfer syntax %q is unknown", ErrInvalid, req.TransferSyntaxUID)
	}
	sc := dicom.NewScanner(sourceReader{req.Dataset}, ts, s.cfg.Limits)
	defer sc.Close()
	id, err := sc.Identify()
	switch {
	case errors.Is(err, dicom.ErrTooLarge):
		return nil, fmt.Errorf("%w: %v", ErrInvalid, err)
	case errors.Is(err, dicom.ErrMalformed):
		return nil, fmt.Errorf("%w: %w", ErrInvalid, err)
	case err != nil:
		return nil, fmt.Errorf("archive: read data set: %w", err)
	}
	if err := s.check(req, id); err != nil {
		return nil, err
	}

	// Stores of one instance on this node take turns, so that their
	// versions are recorded in the order they were made.
	unlock, err := s.locks.LockContext(ctx, id.SOPInstanceUID)
	if err != nil {
		return nil, fmt.Errorf("archive: store %s: %w", id.SOPInstanceUID, err)
	}
	defer unlock()
	d := &decision{policy: s.cfg.Duplicates, req: req, id: id}
	if s.cfg.Duplicates != DuplicateReplace {
		// Decided now, to spare storage a copy it would discard, and
		// again when the record is written, against what the index
		// holds then.
		prev, err := s.cfg.Index.Instance(ctx, id.SOPInstanceUID)
		switch {
		case errors.Is(err, index.ErrNotFound):
		case err != nil:
			return nil, fmt.Errorf("%w: index: %v", ErrUnavailable, err)
		default:
			switch err := d.check(prev); {
			case errors.Is(err, errKeep):
				s.log.Info("duplicate instance kept, new copy discarded", "sop_instance_uid", id.SOPInstanceUID, "calling_ae", req.CallingAE)
				return &Result{Instance: prev, Kept: true}, nil
			case err != nil && s.cfg.Duplicates == DuplicateSameSourceAndSeries:
				// A copy of exactly what is archived changes nothing,
				// whoever sends it: a C-MOVE back to the archive, another
				// archive forwarding what it got from here.
				same, serr := s.identical(ctx, prev, ts, sc)
				if serr != nil {
					return nil, serr
				}
				if same {
					s.log.Info("identical copy of an archived instance, nothing to store", "sop_instance_uid", id.SOPInstanceUID,
						"calling_ae", req.CallingAE, "source", req.Source)
					return &Result{Instance: prev, Kept: true}, nil
				}
				s.conflict(req, id, err)
				return nil, err
			case err != nil:
				s.conflict(req, id, err)
				return nil, err
			}
		}
	}

	version := s.versions.next(s.now())
	receivedAt, _ := versionTime(version)
	key := Key(id.StudyInstanceUID, id.SeriesInstanceUID, id.SOPInstanceUID, version)
	d.key = key
	meta := dicom.AppendFileMeta(nil, dicom.FileMeta{
		MediaStorageSOPClassUID:         id.SOPClassUID,
		MediaStorageSOPInstanceUID:      id.SOPInstanceUID,
		TransferSyntaxUID:               ts.UID,
		ImplementationClassUID:          dicom.ImplementationClassUID,
		ImplementationVersionName:       dicom.ImplementationVersionName,
		SourceApplicationEntityTitle:    s.cfg.AETitle,
		SendingApplicationEntityTitle:   req.CallingAE,
		ReceivingApplicationEntityTitle: req.CalledAE,
	})
	// The object is hashed and its record prepared while storage makes
	// it durable: as soon as its last byte has been read, and the data
	// set found whole, a goroutine prepares the record, which the index
	// writes once Put has returned, that is once the object is durable.
	sum := newHasher()
	defer sum.close()
	prepared := make(chan preparedPut, 1)
	body := &endReader{r: io.TeeReader(io.MultiReader(bytes.NewReader(meta), bytes.NewReader(sc.Prefix()), sc.Rest()), sum)}
	var received atomic.Int64 // when the last byte was read, in ns after start
	body.atEnd = func(size int64) error {
		received.Store(int64(time.Since(start)))
		h := sc.Header()
		// Refused before storage commits: nothing is stored.
		if errors.Is(h.Err, dicom.ErrTruncated) {
			return &refusedError{fmt.Errorf("%w: %w", ErrInvalid, h.Err)}
		}
		if err := checkIssuer(req.Issuers, id, h.Dataset); err != nil {
			return &refusedError{err}
		}
		go func() {
			in := instanceRecord(id, key, size, sum.Sum(), ts, req.CallingAE, req.CalledAE, receivedAt, h, int64(len(meta)))
			in.Source, in.Principal = req.Source, req.Principal
			// The object may become durable whatever happens to the
			// request now; its record must be ready then.
			put := &index.PutRequest{Instance: in, Check: d.check}
			s.identify(in, put, req.CallingAE)
			if s.cfg.Forwarder != nil {
				put.Forward = s.cfg.Forwarder.Forward(in, req.CallingAE, req.CalledAE, req.Source)
			}
			// The issuer given must be in storage before the record is.
			if err := s.recordIssuer(context.WithoutCancel(ctx), req.CallingAE, in.Header); err != nil {
				prepared <- preparedPut{in: in, header: h, err: err}
				return
			}
			p, err := s.cfg.Index.PreparePut(context.WithoutCancel(ctx), put)
			prepared <- preparedPut{in, h, p, err, put.Forward}
		}()
		return nil
	}
	putStart := time.Now()
	info, err := s.cfg.Store.Put(ctx, key, body, -1)
	durable := time.Since(start)
	if err != nil {
		if body.prepared.Load() {
			if r := <-prepared; r.pending != nil {
				r.pending.Rollback()
			}
		}
		var re *refusedError
		switch {
		case errors.As(err, &re):
			return nil, re.err
		case ctx.Err() != nil || errors.Is(err, storage.ErrInvalidKey):
			return nil, fmt.Errorf("archive: store %s: %w", key, err)
		case isSourceError(err):
			return nil, fmt.Errorf("archive: read data set: %w", err)
		}
		// Storage failed, not the sender.
		s.obs.ObserveStoragePut(s.cfg.Backend, time.Since(putStart), err)
		// Storage may have kept the object all the same; no one else
		// writes this key, and no record names it.
		dctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), s.cfg.CommitTimeout)
		s.discard(dctx, key)
		cancel()
		return nil, fmt.Errorf("%w: store %s: %v", ErrUnavailable, key, err)
	}

	s.obs.ObserveStoragePut(s.cfg.Backend, time.Since(putStart), nil)
	// The object is durable: what is left must not stop halfway because
	// the sender went away.
	fctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), s.cfg.CommitTimeout)
	defer cancel()
	r := <-prepared // Put read the object to its end
	in, h := r.in, r.header
	if r.err == nil && info.Size != in.Size {
		r.pending.Rollback()
		r.err = fmt.Errorf("storage kept %d bytes of %d", info.Size, in.Size)
	}
	if r.err == nil {
		// A rejection note takes effect before it is recorded, so that a
		// note acknowledged has hidden what it names; one that fails is
		// sent again, and applying it again changes nothing.
		if note, ok := rejectionNote(id, h.Dataset); ok && s.cfg.Rejections != nil {
			if r.err = s.reject(fctx, req, note); r.err != nil {
				r.pending.Rollback()
			}
		}
	}
	var ch *index.Change
	if r.err == nil {
		commitStart := time.Now()
		ch, r.err = r.pending.Commit(fctx)
		var failed error
		if r.err != nil && !errors.Is(r.err, errKeep) && !errors.Is(r.err, errSuperseded) && !errors.Is(r.err, ErrDuplicate) {
			failed = r.err
		}
		s.obs.ObserveIndexCommit(time.Since(commitStart), failed)
	}
	indexed := time.Since(start)
	switch {
	case r.err == nil:
	case errors.Is(r.err, errKeep), errors.Is(r.err, errSuperseded):
		s.discard(fctx, key)
		kept := d.current
		if errors.Is(r.err, errKeep) {
			s.log.Info("duplicate instance kept, new copy discarded", "sop_instance_uid", id.SOPInstanceUID, "calling_ae", req.CallingAE)
		} else {
			s.log.Info("instance superseded by a later copy stored meanwhile", "sop_instance_uid", id.SOPInstanceUID, "kept_key", kept.Key)
		}
		return &Result{Instance: kept, Kept: true}, nil
	case errors.Is(r.err, index.ErrRejected):
		s.discard(fctx, key)
		s.log.Warn("rejected instance refused", "sop_instance_uid", id.SOPInstanceUID, "calling_ae", req.CallingAE, "source", req.Source)
		return nil, fmt.Errorf("%w: %s was rejected by a rejection note", ErrRejected, id.SOPInstanceUID)
	case errors.Is(r.err, ErrDuplicate):
		s.discard(fctx, key)
		s.conflict(req, id, r.err)
		return nil, r.err
	default:
		if s.committed(fctx, key, id.SOPInstanceUID) {
			// The commit reported a failure but took place; the
			// version it replaced, if any, is left for Verify.
			ch = &index.Change{Instance: in}
			break
		}
		return nil, fmt.Errorf("%w: index %s: %v", ErrUnavailable, id.SOPInstanceUID, r.err)
	}
	if len(r.forward) > 0 {
		s.cfg.Forwarder.Queued(r.forward)
	}
	res := &Result{Instance: in, Replaced: ch.Previous}
	if old := ch.Previous; old != nil {
		s.log.Info("instance replaced", "sop_instance_uid", id.SOPInstanceUID, "old_key", old.Key, "old_sha256", old.SHA256,
			"calling_ae", req.CallingAE)
		if old.Key != key {
			// The sender is told only once this is over: an old version
			// that storage is slow to delete (a spool waits for its
			// upload to end) is left as an orphan rather than hold the
			// response.
			dctx, cancel := context.WithTimeout(fctx, deleteTimeout)
			if err := s.cfg.Store.Delete(dctx, old.Key); err != nil {
				s.log.Error("old version of a replaced instance not deleted; verify reports it as an orphan", "key", old.Key, "err", err)
			}
			cancel()
		}
	}
	if h.Err != nil {
		res.Warning = fmt.Errorf("%w: %v", ErrIncomplete, h.Err)
	}
	s.obs.ObserveStored(req.Source, req.CallingAE, in.Size)
	// Where the time went: receiving the data set (from the network,
	// through the header decoder, into storage's buffers), making the
	// object durable, and committing its record.
	total := time.Since(start)
	recv := time.Duration(received.Load())
	s.log.Info("instance stored", "sop_instance_uid", id.SOPInstanceUID, "sop_class", uid.Name(id.SOPClassUID),
		"study_instance_uid", id.StudyInstanceUID, "bytes", info.Size, "transfer_syntax", ts.Name,
		"calling_ae", req.CallingAE, "duration", total, "receive", recv, "sync", durable-recv, "index", indexed-durable,
		"warning", res.Warning)
	return res, nil
}

// reject applies a rejection note received.
func (s *Service) reject(ctx context.Context, req *StoreRequest, note index.Rejection) error {
	note.Purge = s.cfg.RejectionPurge
	note.Principal = req.Principal
	if note.Principal == "" {
		note.Principal = req.CallingAE
	}
	removed, err := s.cfg.Rejections.Reject(ctx, note)
	if err != nil {
		return fmt.Errorf("apply rejection note: %w", err)
	}
	s.log.Info("rejection note applied", "note", note.Note, "code", note.Code, "title", rejectionCodes[note.Code],
		"references", len(note.Instances), "hidden", len(removed), "purge", note.Purge, "calling_ae", req.CallingAE)
	return nil
}

// identical reports whether the data set sc reads, to its end, is byte
// for byte the data set of the archived instance in, in the same
// transfer syntax. It reads both whole; only resent instances the
// duplicate policy would refuse get here.
func (s *Service) identical(ctx context.Context, in *index.Instance, ts uid.TransferSyntax, sc *dicom.Scanner) (bool, error) {
	if in.TransferSyntaxUID != ts.UID {
		return false, nil
	}
	received := sha256.New()
	received.Write(sc.Prefix())
	if _, err := io.Copy(received, sc.Rest()); err != nil {
		return false, fmt.Errorf("archive: read data set: %w", err)
	}
	if h := sc.Header(); errors.Is(h.Err, dicom.ErrTruncated) {
		return false, fmt.Errorf("%w: %w", ErrInvalid, h.Err)
	}
	obj, err := s.Open(ctx, in)
	if err != nil {
		return false, err
	}
	defer obj.Close()
	br := bufio.NewReaderSize(obj, 64<<10)
	if _, _, err := dicom.ReadFileMeta(br); err != nil {
		return false, nil
	}
	stored := sha256.New()
	if _, err := io.Copy(stored, br); err != nil {
		return false, fmt.Errorf("%w: read %s: %v", ErrUnavailable, in.Key, err)
	}
	return bytes.Equal(received.Sum(nil), stored.Sum(nil)), nil
}

// conflict logs a duplicate refused by the policy.
func (s *Service) conflict(req *StoreRequest, id dicom.Identity, err error) {
	s.log.Warn("duplicate instance refused", "sop_instance_uid", id.SOPInstanceUID, "study_instance_uid", id.StudyInstanceUID,
		"series_instance_uid", id.SeriesInstanceUID, "calling_ae", req.CallingAE, "source", req.Source, "policy", s.cfg.Duplicates.String(), "err", err)
}

// check validates the identity of a data set against its declaration.
func (s *Service) check(req *StoreRequest, id dicom.Identity) error {
	for _, f := range []struct{ name, v string }{
		{"SOP Class UID", id.SOPClassUID},
		{"SOP Instance UID", id.SOPInstanceUID},
		{"Study Instance UID", id.StudyInstanceUID},
		{"Series Instance UID", id.SeriesInstanceUID},
	} {
		if f.v == "" {
			return fmt.Errorf("%w: the data set has no %s", ErrInvalid, f.name)
		}
		if err := uid.Valid(f.v); err != nil {
			return fmt.Errorf("%w: %s: %v", ErrInvalid, f.name, err)
		}
	}
	if req.SOPClassUID != "" && req.SOPClassUID != id.SOPClassUID {
		return fmt.Errorf("%w: SOP Class UID is %s in the data set, %s in the request", ErrMismatch, id.SOPClassUID, req.SOPClassUID)
	}
	if req.SOPInstanceUID != "" && req.SOPInstanceUID != id.SOPInstanceUID {
		return fmt.Errorf("%w: SOP Instance UID is %s in the data set, %s in the request", ErrMismatch, id.SOPInstanceUID, req.SOPInstanceUID)
	}
	if req.StudyInstanceUID != "" && req.StudyInstanceUID != id.StudyInstanceUID {
		return fmt.Errorf("%w: Study Instance UID is %s in the data set, %s in the request", ErrMismatch, id.StudyInstanceUID, req.StudyInstanceUID)
	}
	return nil
}

// committed reports whether the index records the object under key for
// the instance, after a commit that reported a failure: a database may
// fail to confirm a commit it carried out. Otherwise the object, which
// no record names, is deleted; if the index cannot say, it is left for
// Verify to find.
func (s *Service) committed(ctx context.Context, key, sopInstanceUID string) bool {
	in, err := s.cfg.Index.Instance(ctx, sopInstanceUID)
	switch {
	case err == nil && in.Key == key:
		return true
	case err != nil && !errors.Is(err, index.ErrNotFound):
		s.log.Error("object left without index record; verify reports it as an orphan", "key", key, "err", err)
		return false
	}
	s.discard(ctx, key)
	return false
}

// discard deletes an object no record names.
func (s *Service) discard(ctx context.Context, key string) {
	if err := s.cfg.Store.Delete(ctx, key); err != nil {
		s.log.Error("object left without index record; verify reports it as an orphan", "key", key, "err", err)
	}
}

type preparedPut struct {
	in      *index.Instance
	header  dicom.Header
	pending index.Pending
	err     error
	forward []index.Forward
}

// refusedError carries why a data set read to its end is refused (it is
// truncated, or of a patient the sender may not store) through storage's
// Put, which fails without storing anything when its reader fails.
type refusedError struct{ err error }

func (e *refusedError) Error() string { return e.err.Error() }
func (e *refusedError) Unwrap() error { return e.err }

// IssuerError is the error of an instance refused for its patient's
// issuer; it wraps ErrRefused and says whose instance it was, for the
// audit trail.
type IssuerError struct {
	PatientID, IssuerOfPatientID, PatientName string
	StudyInstanceUID                          string
	Allowed                                   []string
}

func (e *IssuerError) Error() string {
	return fmt.Sprintf("%v: Issuer of Patient ID %q, allowed %s", ErrRefused, e.IssuerOfPatientID, strings.Join(e.Allowed, "|"))
}

func (e *IssuerError) Unwrap() error { return ErrRefused }

// checkIssuer refuses a header whose Issuer of Patient ID is not one of
// issuers, unless issuers is nil. A patient without an issuer belongs to
// no trust, and only a sender allowed every issuer may store it.
func checkIssuer(issuers []string, id dicom.Identity, ds *dicom.Dataset) error {
	if issuers == nil {
		return nil
	}
	e := &IssuerError{StudyInstanceUID: id.StudyInstanceUID, Allowed: issuers}
	if ds != nil {
		e.PatientID, e.PatientName = ds.String(tag.PatientID), ds.String(tag.PatientName)
		e.IssuerOfPatientID = strings.TrimSpace(ds.String(tag.IssuerOfPatientID))
	}
	if e.IssuerOfPatientID != "" && slices.Contains(issuers, e.IssuerOfPatientID) {
		return nil
	}
	return e
}

// endReader counts what is read through it and calls atEnd, once, with
// the count when its reader reports the end; an error atEnd returns is
// returned in place of the end.
type endReader struct {
	r        io.Reader
	n        int64
	ended    bool
	err      error       // atEnd's, returned from every Read after the end
	prepared atomic.Bool // atEnd returned nil; read after Put has returned
	atEnd    func(size int64) error
}

func (e *endReader) Read(p []byte) (int, error) {
	if e.err != nil {
		return 0, e.err
	}
	n, err := e.r.Read(p)
	e.n += int64(n)
	if err == io.EOF && !e.ended {
		e.ended = true
		if e.err = e.atEnd(e.n); e.err != nil {
			return n, e.err
		}
		e.prepared.Store(true)
	}
	return n, err
}

// isSourceError reports whether a failed Put failed because the data set
// stream did: the sender's fault or the connection's, not storage's.
func isSourceError(err error) bool {
	var se *sourceError
	return errors.As(err, &se)
}

// sourceReader marks the errors of the data set stream, so that they are
// not taken for storage failures.
type sourceReader struct{ r io.Reader }

func (s sourceReader) Read(p []byte) (int, error) {
	n, err := s.r.Read(p)
	if err != nil && err != io.EOF {
		err = &sourceError{err}
	}
	return n, err
}

type sourceError struct{ err error }

func (e *sourceError) Error() string { return e.err.Error() }
func (e *sourceError) Unwrap() error { return e.err }

// OpenDataset opens the data set of an indexed instance, in transfer
// syntax ts: as stored, or converted when both syntaxes are ones
// dicom.Transcode converts between, and with its amendments written
// over its header (see amend.go). It returns the object's File Meta
// Information as stored. The caller closes the reader, which stops a
// conversion in progress.
func (s *Service) OpenDataset(ctx context.Context, in *index.Instance, ts string) (dicom.FileMeta, io.ReadCloser, error) {
	if s.cfg.Codecs != nil && dicom.Transcodable(ts) && !dicom.Transcodable(in.TransferSyntaxUID) {
		// An instance Compress re-encoded, asked for uncompressed, is
		// served from its original, rebuilt byte for byte.
		if fm, r, ok, err := s.openOriginalDataset(ctx, in, ts); ok {
			return fm, r, err
		}
	}
	if ts != in.TransferSyntaxUID && !(dicom.Transcodable(in.TransferSyntaxUID) && dicom.Transcodable(ts)) {
		return dicom.FileMeta{}, nil, fmt.Errorf("archive: %s stored in %s: %w to %s", in.SOPInstanceUID,
			uid.Name(in.TransferSyntaxUID), dicom.ErrUnsupported, uid.Name(ts))
	}
	e, err := s.editOf(ctx, in)
	if err != nil {
		return dicom.FileMeta{}, nil, err
	}
	if e != nil {
		return s.openAmended(ctx, in, ts, e)
	}
	obj, err := s.Open(ctx, in)
	if err != nil {
		return dicom.FileMeta{}, nil, err
	}
	br := bufio.NewReaderSize(obj, 64<<10)
	fm, _, err := dicom.ReadFileMeta(br)
	if err != nil {
		obj.Close()
		return dicom.FileMeta{}, nil, fmt.Errorf("archive: object %s: %w", in.Key, err)
	}
	// What Compress keeps of the original is pacsd's own, not served.
	if fm.PrivateInformationCreatorUID == CompressCreatorUID {
		fm.PrivateInformationCreatorUID, fm.PrivateInformation = "", nil
	}
	if ts == in.TransferSyntaxUID {
		return fm, &datasetReader{Reader: br, close: obj.Close}, nil
	}
	return fm, transcoded(br, in.TransferSyntaxUID, ts, obj.Close), nil
}

// transcoded converts the data set read from r, in syntax from, to
// syntax to (both ones dicom.Transcode converts between) as it is read.
// Closing the reader ends the conversion, then calls closeSource.
func transcoded(r io.Reader, from, to string, closeSource func() error) io.ReadCloser {
	f, _ := uid.LookupTransferSyntax(from)
	t, _ := uid.LookupTransferSyntax(to)
	pr, pw := io.Pipe()
	done := make(chan struct{})
	go func() {
		defer close(done)
		pw.CloseWithError(dicom.Transcode(pw, r, f, t))
	}()
	return &datasetReader{Reader: pr, close: func() error {
		pr.Close() // ends the conversion at its next write
		<-done
		return closeSource()
	}}
}

// datasetReader is a data set read from an object, which Close closes.
type datasetReader struct {
	io.Reader
	close func() error
}

func (d *datasetReader) Close() error { return d.close() }

// Open opens the object of an indexed instance for reading: a Part-10
// file, File Meta Information first. The caller closes it.
func (s *Service) Open(ctx context.Context, in *index.Instance) (storage.Object, error) {
	start := time.Now()
	obj, err := s.cfg.Store.Open(ctx, in.Key)
	failed := err
	if errors.Is(err, storage.ErrNotFound) || ctx.Err() != nil {
		failed = nil // not storage's failure
	}
	s.obs.ObserveStorageGet(s.cfg.Backend, time.Since(start), failed)
	if err != nil {
		if errors.Is(err, storage.ErrNotFound) {
			return nil, fmt.Errorf("archive: object of %s: %w", in.SOPInstanceUID, err)
		}
		return nil, fmt.Errorf("%w: open %s: %v", ErrUnavailable, in.Key, err)
	}
	return obj, nil
}
