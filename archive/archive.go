// Package archive is the one service both front doors of pacsd call: DIMSE
// and DICOMweb hand it the data sets they receive, and it keeps them —
// the received bytes unchanged, behind File Meta Information of its own, in
// object storage — and records them in the index.
//
// The order of its work is what makes an acknowledgement safe: an instance
// is reported stored only once its object is durable and its index row is
// committed; an index row never exists without its object.
package archive

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"time"

	"github.com/pacsd/pacsd/dicom"
	"github.com/pacsd/pacsd/dicom/uid"
	"github.com/pacsd/pacsd/index"
	"github.com/pacsd/pacsd/internal/keylock"
	"github.com/pacsd/pacsd/storage"
)

// Errors of Store. Front doors map them onto their protocol's statuses;
// the wrapping error's text says what exactly was wrong.
var (
	// ErrInvalid reports a data set the archive cannot file: not DICOM,
	// no or invalid identifying UIDs, an unknown transfer syntax.
	ErrInvalid = errors.New("archive: data set cannot be understood")
	// ErrMismatch reports a data set whose SOP Class or SOP Instance UID
	// differs from what the sender declared for it.
	ErrMismatch = errors.New("archive: data set does not match its declaration")
	// ErrDuplicate reports an instance already archived, under the
	// DuplicateReject policy.
	ErrDuplicate = errors.New("archive: instance already archived")
	// ErrUnavailable reports that storage or the index failed: the
	// instance is not archived and the sender should try again.
	ErrUnavailable = errors.New("archive: storage unavailable")
	// ErrIncomplete is the warning of an instance archived whole whose
	// header could not be read to its end.
	ErrIncomplete = errors.New("archive: header could not be read to its end")
)

// Index is what the archive needs of the index.
type Index interface {
	// PreparePut does the work of indexing an instance but commit; see
	// index.Pending.
	PreparePut(ctx context.Context, in *index.Instance) (*index.Pending, error)
	Instance(ctx context.Context, sopInstanceUID string) (*index.Instance, error)
	// Metadata returns the document kept with an instance (see
	// index.Instance.Metadata), or an error wrapping index.ErrNotFound.
	Metadata(ctx context.Context, sopInstanceUID string) ([]byte, error)
}

// DuplicatePolicy says what to do with an instance whose SOP Instance UID is
// already archived.
type DuplicatePolicy int

const (
	// DuplicateReplace stores the new instance in place of the old one
	// and logs it; equipment resends corrected instances with the same
	// UID, and the latest is what a reader expects to see.
	DuplicateReplace DuplicatePolicy = iota
	// DuplicateKeep keeps the archived instance, discards the new one and
	// reports success.
	DuplicateKeep
	// DuplicateReject refuses the new instance with ErrDuplicate.
	DuplicateReject
)

// ParseDuplicatePolicy reads "replace", "keep" or "reject".
func ParseDuplicatePolicy(s string) (DuplicatePolicy, error) {
	switch s {
	case "replace", "":
		return DuplicateReplace, nil
	case "keep":
		return DuplicateKeep, nil
	case "reject":
		return DuplicateReject, nil
	}
	return 0, fmt.Errorf("archive: duplicate policy %q is not replace, keep or reject", s)
}

func (p DuplicatePolicy) String() string {
	return [...]string{"replace", "keep", "reject"}[p]
}

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
	Logger *slog.Logger
	// Now is the clock; time.Now when nil.
	Now func() time.Time
}

// Service archives instances. It is safe for concurrent use.
type Service struct {
	cfg   Config
	log   *slog.Logger
	now   func() time.Time
	locks keylock.Map
}

// New returns a Service.
func New(cfg Config) *Service {
	s := &Service{cfg: cfg, log: cfg.Logger, now: cfg.Now}
	if s.log == nil {
		s.log = slog.New(slog.DiscardHandler)
	}
	if s.now == nil {
		s.now = time.Now
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
	// Kept is true when, under DuplicateKeep, the instance was already
	// archived and the new copy was discarded.
	Kept bool
	// Warning, when not nil, says what was not quite right about an
	// instance that is nevertheless archived whole; it wraps
	// ErrIncomplete.
	Warning error
}

// Store archives one data set: it reads the identifying UIDs, writes a
// Part-10 object (its own File Meta Information followed by the data set's
// bytes exactly as received) to storage, then commits the index row. It
// returns only once both are durable, or with an error wrapping one of
// the errors above and nothing committed.
func (s *Service) Store(ctx context.Context, req *StoreRequest) (*Result, error) {
	start := s.now()
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
		return nil, fmt.Errorf("%w: %v", ErrInvalid, err)
	case err != nil:
		return nil, fmt.Errorf("archive: read data set: %w", err)
	}
	if err := s.check(req, id); err != nil {
		return nil, err
	}

	unlock := s.locks.Lock(id.SOPInstanceUID)
	defer unlock()
	if s.cfg.Duplicates != DuplicateReplace {
		prev, err := s.cfg.Index.Instance(ctx, id.SOPInstanceUID)
		switch {
		case err == nil && s.cfg.Duplicates == DuplicateReject:
			return nil, fmt.Errorf("%w: %s (study %s)", ErrDuplicate, id.SOPInstanceUID, prev.StudyInstanceUID)
		case err == nil:
			s.log.Info("duplicate instance kept, new copy discarded", "sop_instance_uid", id.SOPInstanceUID, "calling_ae", req.CallingAE)
			return &Result{Instance: prev, Kept: true}, nil
		case !errors.Is(err, index.ErrNotFound):
			return nil, fmt.Errorf("%w: index: %v", ErrUnavailable, err)
		}
	}

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
	key := Key(id.StudyInstanceUID, id.SeriesInstanceUID, id.SOPInstanceUID)
	// The object is hashed and indexed while storage makes it durable:
	// as soon as its last byte has been read, a goroutine prepares the
	// index transaction, which is committed only once Put has returned,
	// that is once the object is durable.
	sum := newHasher()
	defer sum.close()
	prepared := make(chan preparedPut, 1)
	body := &endReader{r: io.TeeReader(io.MultiReader(bytes.NewReader(meta), bytes.NewReader(sc.Prefix()), sc.Rest()), sum)}
	body.atEnd = func(size int64) {
		go func() {
			h := sc.Header()
			in := instanceRecord(id, key, size, sum.Sum(), ts, req.CallingAE, req.CalledAE, s.now(), h, int64(len(meta)))
			p, err := s.cfg.Index.PreparePut(ctx, in)
			prepared <- preparedPut{in, h, p, err}
		}()
	}
	info, err := s.cfg.Store.Put(ctx, key, body, -1)
	if err != nil {
		if body.ended {
			if r := <-prepared; r.pending != nil {
				r.pending.Rollback()
			}
		}
		if ctx.Err() != nil || errors.Is(err, storage.ErrInvalidKey) {
			return nil, fmt.Errorf("archive: store %s: %w", key, err)
		}
		if isSourceError(err) {
			return nil, fmt.Errorf("archive: read data set: %w", err)
		}
		return nil, fmt.Errorf("%w: store %s: %v", ErrUnavailable, key, err)
	}
	r := <-prepared // Put read the object to its end
	in, h := r.in, r.header
	if r.err == nil && info.Size != in.Size {
		r.pending.Rollback()
		r.err = fmt.Errorf("storage kept %d bytes of %d", info.Size, in.Size)
	}
	var replaced *index.Instance
	if r.err == nil {
		replaced, r.err = r.pending.Commit()
	}
	if r.err != nil {
		s.forget(key, id.SOPInstanceUID)
		return nil, fmt.Errorf("%w: index %s: %v", ErrUnavailable, id.SOPInstanceUID, r.err)
	}
	res := &Result{Instance: in, Replaced: replaced}
	if replaced != nil {
		s.log.Info("instance replaced", "sop_instance_uid", id.SOPInstanceUID, "old_key", replaced.Key, "old_sha256", replaced.SHA256, "calling_ae", req.CallingAE)
		if replaced.Key != key {
			if err := s.cfg.Store.Delete(ctx, replaced.Key); err != nil {
				s.log.Error("old object of a replaced instance not deleted", "key", replaced.Key, "err", err)
			}
		}
	}
	if h.Err != nil {
		res.Warning = fmt.Errorf("%w: %v", ErrIncomplete, h.Err)
	}
	s.log.Info("instance stored", "sop_instance_uid", id.SOPInstanceUID, "sop_class", uid.Name(id.SOPClassUID),
		"study_instance_uid", id.StudyInstanceUID, "bytes", info.Size, "transfer_syntax", ts.Name,
		"calling_ae", req.CallingAE, "duration", s.now().Sub(start), "warning", res.Warning)
	return res, nil
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

// forget removes an object whose index row could not be committed, unless
// an earlier version of the instance is indexed under the same key: that
// row must keep an object to point to.
func (s *Service) forget(key, sopInstanceUID string) {
	// The request's context may be what failed; cleaning up must not.
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if prev, err := s.cfg.Index.Instance(ctx, sopInstanceUID); err == nil && prev.Key == key {
		s.log.Error("instance replaced in storage but not in the index; its object and row differ until it is sent again", "key", key)
		return
	} else if err != nil && !errors.Is(err, index.ErrNotFound) {
		s.log.Error("object left without index row", "key", key, "err", err)
		return
	}
	if err := s.cfg.Store.Delete(ctx, key); err != nil {
		s.log.Error("object left without index row", "key", key, "err", err)
	}
}

type preparedPut struct {
	in      *index.Instance
	header  dicom.Header
	pending *index.Pending
	err     error
}

// endReader counts what is read through it and calls atEnd, once, with
// the count when its reader reports the end.
type endReader struct {
	r     io.Reader
	n     int64
	ended bool
	atEnd func(size int64)
}

func (e *endReader) Read(p []byte) (int, error) {
	n, err := e.r.Read(p)
	e.n += int64(n)
	if err == io.EOF && !e.ended {
		e.ended = true
		e.atEnd(e.n)
	}
	return n, err
}

// Key is where the object of an instance is kept: a path a person or
// another program can browse, study by series by instance. The UIDs must
// have passed uid.Valid.
func Key(study, series, instance string) string {
	return study + "/" + series + "/" + instance + ".dcm"
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
// dicom.Transcode converts between. It returns the object's File Meta
// Information as stored. The caller closes the reader, which stops a
// conversion in progress.
func (s *Service) OpenDataset(ctx context.Context, in *index.Instance, ts string) (dicom.FileMeta, io.ReadCloser, error) {
	if ts != in.TransferSyntaxUID && !(dicom.Transcodable(in.TransferSyntaxUID) && dicom.Transcodable(ts)) {
		return dicom.FileMeta{}, nil, fmt.Errorf("archive: %s stored in %s: %w to %s", in.SOPInstanceUID,
			uid.Name(in.TransferSyntaxUID), dicom.ErrUnsupported, uid.Name(ts))
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
	if ts == in.TransferSyntaxUID {
		return fm, &datasetReader{Reader: br, close: obj.Close}, nil
	}
	from, _ := uid.LookupTransferSyntax(in.TransferSyntaxUID)
	to, _ := uid.LookupTransferSyntax(ts)
	pr, pw := io.Pipe()
	done := make(chan struct{})
	go func() {
		defer close(done)
		pw.CloseWithError(dicom.Transcode(pw, br, from, to))
	}()
	return fm, &datasetReader{Reader: pr, close: func() error {
		pr.Close() // ends the conversion at its next write
		<-done
		return obj.Close()
	}}, nil
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
	obj, err := s.cfg.Store.Open(ctx, in.Key)
	if err != nil {
		if errors.Is(err, storage.ErrNotFound) {
			return nil, fmt.Errorf("archive: object of %s: %w", in.SOPInstanceUID, err)
		}
		return nil, fmt.Errorf("%w: open %s: %v", ErrUnavailable, in.Key, err)
	}
	return obj, nil
}
