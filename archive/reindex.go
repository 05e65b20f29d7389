package archive

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"iter"
	"sync"
	"time"

	"github.com/pacsd/pacsd/dicom"
	"github.com/pacsd/pacsd/dicom/uid"
	"github.com/pacsd/pacsd/index"
	"github.com/pacsd/pacsd/nhs"
	"github.com/pacsd/pacsd/storage"
)

// Indexer is what Reindex needs of the index.
type Indexer interface {
	Put(ctx context.Context, req *index.PutRequest) (*index.Change, error)
}

// Progress is Reindex's account of its work, given to its progress
// function after every object and returned at the end.
type Progress struct {
	// Objects counts the objects indexed, Failed those that could not
	// be. Superseded counts the objects that hold an earlier version of
	// an instance than another object: the index names the latest, and
	// Verify reports the others as orphans.
	Objects, Failed, Superseded int
	// Bytes counts the bytes read.
	Bytes int64
	// Elapsed is the time since Reindex started.
	Elapsed time.Duration
	// Key is the object just handled and Err, when not nil, why it
	// could not be indexed; both are empty in the final Progress.
	Key string
	Err error
	// Records counts the records of deletions, restores, corrections
	// and links replayed once the objects are indexed, Refused those the
	// index refused (see ReplayRecords); both are set in the final
	// Progress only.
	Records, Refused int
}

// scanWorkers is how many objects Reindex and Verify read at once: a
// remote store answers each read after a round trip, and a few reads in
// parallel keep it busy. Each holds at most one header in memory (see
// dicom.Limits).
const scanWorkers = 8

// Reindex rebuilds the index from storage, for an index that was lost or
// is suspected wrong: it lists every object, reads each whole (its File
// Meta Information, the header up to Pixel Data, and the rest of the
// bytes only to hash them) and puts into the index the same record Store
// made when the instance arrived. Who sent the instance to whom comes
// from the File Meta Information Store wrote (an instance with a sending
// AE title came by DIMSE, one without by STOW-RS; who signed in to send
// it is not kept in the object); when it arrived, from the version in
// its key, or for an object without one from its modification time,
// which is when Store wrote it.
//
// When several objects hold versions of one instance (see Key), the
// latest version wins, whatever the order storage lists them in; of two
// objects without versions, the one written last. Reindex only adds and
// replaces records: records of instances whose objects are gone stay,
// and Verify reports them. An object that cannot be
// indexed (not Part-10, unreadable header, UIDs that disagree) is counted
// in Progress.Failed and reported to progress with its error, and
// Reindex goes on. It stops with an error only when storage cannot be
// listed or ctx ends. progress, if not nil, is called from one goroutine
// at a time.
func Reindex(ctx context.Context, store storage.Store, idx Indexer, progress func(Progress)) (Progress, error) {
	start := time.Now()
	var (
		mu sync.Mutex
		p  Progress
	)
	book, err := loadIssuers(ctx, store)
	if err != nil {
		return p, fmt.Errorf("archive: reindex: %w", err)
	}
	err = forEach(ctx, scanWorkers, store.List(ctx, ""), func(ctx context.Context, info storage.Info) error {
		if IsRecord(info.Key) {
			return nil
		}
		n, indexed, superseded, err := reindexObject(ctx, store, idx, book, info)
		if ctx.Err() != nil {
			return ctx.Err()
		}
		mu.Lock()
		defer mu.Unlock()
		if err != nil {
			p.Failed++
		}
		if indexed {
			p.Objects++
		}
		if superseded {
			p.Superseded++
		}
		p.Bytes += n
		p.Elapsed = time.Since(start)
		p.Key, p.Err = info.Key, err
		if progress != nil {
			progress(p)
		}
		return nil
	})
	if err == nil {
		// What was decided after the instances arrived, in the order it
		// was decided.
		if ri, ok := idx.(ReplayIndex); ok {
			var r ReplayResult
			r, err = ReplayRecords(ctx, store, ri, nil)
			mu.Lock()
			p.Records, p.Refused = r.Applied, r.Refused
			mu.Unlock()
		}
	}
	mu.Lock()
	defer mu.Unlock()
	p.Key, p.Err = "", nil
	p.Elapsed = time.Since(start)
	if err != nil {
		return p, fmt.Errorf("archive: reindex: %w", err)
	}
	return p, nil
}

// reindexObject indexes one object. It returns the bytes it read,
// whether it indexed the object, and whether an object was superseded:
// this one, when the index holds a later version of its instance, or the
// one the record named before.
func reindexObject(ctx context.Context, store storage.Store, idx Indexer, book issuerBook, info storage.Info) (n int64, indexed, superseded bool, err error) {
	if tk, ok := idx.(trashKeeper); ok {
		switch trashed, err := tk.Trashed(ctx, info.Key); {
		case err != nil:
			return 0, false, false, fmt.Errorf("archive: reindex %s: index: %w", info.Key, err)
		case trashed:
			return 0, false, false, nil
		}
	}
	in, n, err := readInstance(ctx, store, info, dicom.Limits{})
	if err != nil {
		return n, false, false, fmt.Errorf("archive: reindex %s: %w", info.Key, err)
	}
	// An object Compress wrote describes its original (compress.go).
	original, err := recoverOriginal(ctx, store, in)
	if errors.Is(err, errOriginalKept) {
		return n, false, true, nil
	}
	if err != nil {
		return n, false, false, fmt.Errorf("archive: reindex %s: %w", info.Key, err)
	}
	// A rejection note rebuilds the rejections it made, and hides what
	// it names for good: the policy it was applied under is not in the
	// bucket, and hiding loses nothing.
	if rj, ok := idx.(rejectionIndex); ok {
		if note, ok := rejectionNote(dicom.Identity{SOPClassUID: in.SOPClassUID, SOPInstanceUID: in.SOPInstanceUID}, in.Header); ok {
			note.Principal = "reindex"
			if _, err := rj.Reject(ctx, note); err != nil {
				return n, false, false, fmt.Errorf("archive: reindex %s: %w", info.Key, err)
			}
		}
	}
	// The issuer it was given at ingest, and the NHS number that links
	// its patient, as Store found them.
	in.Amended = book.amendment(in.Header, in.CallingAE, in.ReceivedAt)
	put := &index.PutRequest{Instance: in, Original: original, Check: func(current *index.Instance) error {
		if current != nil && current.Key != in.Key && later(current, in) {
			return errSuperseded
		}
		return nil
	}}
	put.NHSNumber = nhsNumber(nhsIssuersOf(idx), index.Overlay(in.Header, in.Amended), nil)
	ch, err := idx.Put(ctx, put)
	switch {
	case errors.Is(err, errSuperseded):
		return n, false, true, nil
	case errors.Is(err, index.ErrRejected):
		// Named by a rejection note indexed before it: its object
		// goes to the trash, hidden, as it went when the note came.
		if rj, ok := idx.(rejectionIndex); ok {
			if _, err := rj.HideRejected(ctx, in); err != nil {
				return n, false, false, fmt.Errorf("archive: reindex %s: %w", info.Key, err)
			}
			return n, false, false, nil
		}
		return n, false, false, fmt.Errorf("archive: reindex %s: %w", info.Key, err)
	case err != nil:
		return n, false, false, fmt.Errorf("archive: reindex %s: index: %w", info.Key, err)
	}
	return n, true, ch.Previous != nil && ch.Previous.Key != in.Key, nil
}

// rejectionIndex is an index that keeps rejections (sqlindex.DB):
// Reindex rebuilds them from the rejection notes in storage.
type rejectionIndex interface {
	Rejecter
	HideRejected(ctx context.Context, in *index.Instance) (bool, error)
}

// later reports whether a is a later version of an instance than b: by
// the versions of their keys, or the time they were received when their
// keys have none.
func later(a, b *index.Instance) bool {
	la, _ := ParseKey(a.Key)
	lb, _ := ParseKey(b.Key)
	if la.Version != lb.Version {
		return la.Version > lb.Version
	}
	return a.ReceivedAt.After(b.ReceivedAt)
}

// readInstance reads the object info names whole and returns the index
// record of its instance, as Store built it when the instance arrived,
// and the number of bytes read.
func readInstance(ctx context.Context, store storage.Store, info storage.Info, lim dicom.Limits) (*index.Instance, int64, error) {
	obj, err := store.Open(ctx, info.Key)
	if err != nil {
		return nil, 0, err
	}
	defer obj.Close()
	sum := newHasher()
	defer sum.close()
	src := &countingReader{r: io.TeeReader(ctxReader{ctx, obj}, sum)}
	br := bufio.NewReaderSize(src, 64<<10)
	meta, dataStart, err := dicom.ReadFileMeta(br)
	if err != nil {
		return nil, src.n, fmt.Errorf("%w: %w", ErrInvalid, err)
	}
	ts, ok := uid.LookupTransferSyntax(meta.TransferSyntaxUID)
	if !ok {
		return nil, src.n, fmt.Errorf("%w: transfer syntax %q is unknown", ErrInvalid, meta.TransferSyntaxUID)
	}
	sc := dicom.NewScanner(br, ts, lim)
	defer sc.Close()
	id, err := sc.Identify()
	switch {
	case errors.Is(err, dicom.ErrTooLarge), errors.Is(err, dicom.ErrMalformed):
		return nil, src.n, fmt.Errorf("%w: %v", ErrInvalid, err)
	case err != nil:
		return nil, src.n, err
	}
	// The checks Store made of the data set against its sender's
	// declaration, here the File Meta Information Store wrote.
	decl := &StoreRequest{SOPClassUID: meta.MediaStorageSOPClassUID, SOPInstanceUID: meta.MediaStorageSOPInstanceUID}
	if err := (&Service{}).check(decl, id); err != nil {
		return nil, src.n, err
	}
	if _, err := io.Copy(io.Discard, sc.Rest()); err != nil {
		return nil, src.n, err
	}
	h := sc.Header()
	received := info.ModTime
	if loc, ok := ParseKey(info.Key); ok && loc.Version != "" {
		received, _ = versionTime(loc.Version)
	}
	in := instanceRecord(id, info.Key, src.n, sum.Sum(), ts, meta.SendingApplicationEntityTitle,
		meta.ReceivingApplicationEntityTitle, received, h, dataStart)
	in.Source = SourceSTOW
	if in.CallingAE != "" {
		in.Source = SourceDIMSE
	}
	return in, src.n, nil
}

// instanceRecord is the index record of an archived instance, as Store
// builds it once the object's last byte is read and as Reindex rebuilds
// it from the object; dataStart is the length of the File Meta
// Information before the data set.
func instanceRecord(id dicom.Identity, key string, size int64, sha256 string, ts uid.TransferSyntax, callingAE, calledAE string, receivedAt time.Time, h dicom.Header, dataStart int64) *index.Instance {
	return &index.Instance{
		SOPInstanceUID:    id.SOPInstanceUID,
		SOPClassUID:       id.SOPClassUID,
		SeriesInstanceUID: id.SeriesInstanceUID,
		StudyInstanceUID:  id.StudyInstanceUID,
		Key:               key,
		Size:              size,
		SHA256:            sha256,
		TransferSyntaxUID: ts.UID,
		CallingAE:         callingAE,
		CalledAE:          calledAE,
		ReceivedAt:        receivedAt.UTC(),
		Header:            h.Dataset,
		Metadata:          ingestMetadata(h, dataStart, ts),
	}
}

// countingReader counts the bytes read through it.
type countingReader struct {
	r io.Reader
	n int64
}

func (c *countingReader) Read(p []byte) (int, error) {
	n, err := c.r.Read(p)
	c.n += int64(n)
	return n, err
}

// ctxReader fails once ctx is done, so that reading a large object from
// a store whose reads do not watch ctx (a file) stops when asked to.
type ctxReader struct {
	ctx context.Context
	r   io.Reader
}

func (c ctxReader) Read(p []byte) (int, error) {
	if err := c.ctx.Err(); err != nil {
		return 0, err
	}
	return c.r.Read(p)
}

// forEach calls fn for each item seq yields, on n goroutines at once,
// until seq ends; it stops early and returns the error if seq yields one,
// fn returns one, or ctx ends.
func forEach[T any](ctx context.Context, n int, seq iter.Seq2[T, error], fn func(context.Context, T) error) error {
	ctx, cancel := context.WithCancelCause(ctx)
	defer cancel(nil)
	items := make(chan T)
	var wg sync.WaitGroup
	for range n {
		wg.Go(func() {
			for it := range items {
				if ctx.Err() != nil {
					continue
				}
				if err := fn(ctx, it); err != nil {
					cancel(err)
				}
			}
		})
	}
	var err error
	for it, e := range seq {
		if e != nil {
			err = e
			break
		}
		select {
		case items <- it:
		case <-ctx.Done():
		}
		if ctx.Err() != nil {
			break
		}
	}
	close(items)
	wg.Wait()
	if err != nil {
		return err
	}
	return context.Cause(ctx)
}

// nhsIssuersOf returns the NHS issuers idx was configured with, when it
// says, so that a rebuild links the patients serve linked; else the
// defaults.
func nhsIssuersOf(idx Indexer) nhs.Issuers {
	if n, ok := idx.(interface{ NHSIssuers() nhs.Issuers }); ok {
		return n.NHSIssuers()
	}
	return nhs.DefaultIssuers
}
