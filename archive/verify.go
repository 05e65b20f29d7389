package archive

import (
	"bufio"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"iter"
	"sync"
	"time"

	"github.com/pacsd/pacsd/dicom"
	"github.com/pacsd/pacsd/index"
	"github.com/pacsd/pacsd/storage"
)

// Catalog is what Verify needs of the index.
type Catalog interface {
	Instance(ctx context.Context, sopInstanceUID string) (*index.Instance, error)
	Instances(ctx context.Context) iter.Seq2[*index.Instance, error]
}

// ProblemKind says what is wrong between the index and storage.
type ProblemKind int

const (
	// Missing is an indexed instance whose object is not in storage.
	Missing ProblemKind = iota + 1
	// Orphan is an object in storage that no index record points to.
	Orphan
	// SizeMismatch is an object whose length differs from its record's.
	SizeMismatch
	// HashMismatch is an object of the recorded length whose SHA-256
	// differs from its record's: its bytes have changed.
	HashMismatch
	// Unreadable is an object that storage lists but fails to read.
	Unreadable
)

func (k ProblemKind) String() string {
	switch k {
	case Missing:
		return "missing"
	case Orphan:
		return "orphan"
	case SizeMismatch:
		return "size"
	case HashMismatch:
		return "sha256"
	case Unreadable:
		return "unreadable"
	}
	return fmt.Sprintf("ProblemKind(%d)", int(k))
}

// Problem is one disagreement between the index and storage.
type Problem struct {
	Kind ProblemKind
	// Key is the object's key in storage.
	Key string
	// SOPInstanceUID is the instance of the index record involved, if
	// there is one.
	SOPInstanceUID string
	// Detail says what exactly is wrong.
	Detail string
}

func (p Problem) String() string {
	s := fmt.Sprintf("%-10s %s", p.Kind, p.Key)
	if p.SOPInstanceUID != "" {
		s += " (instance " + p.SOPInstanceUID + ")"
	}
	return s + ": " + p.Detail
}

// VerifyResult sums up a Verify.
type VerifyResult struct {
	// Objects counts the objects read from storage, Bytes their bytes.
	Objects int
	Bytes   int64
	// Records counts the index records checked.
	Records int
	// Problems counts the problems reported.
	Problems int
	Elapsed  time.Duration
}

// Verify compares the index with storage and reports every disagreement
// to report, one call at a time: indexed instances whose objects are
// missing, objects no record points to (orphans), and objects whose length
// or SHA-256 differs from their record's. It reads every object whole, to
// hash it, and checks that every record's object exists.
//
// An object belongs to the record of the instance its File Meta
// Information names, or failing that the instance its key names (see
// Key), if that record points to its key; any other object is an orphan:
// an earlier version of an instance left by a replace that did not get
// to delete it, or the object of a store that did not get to record it.
// Repair removes the first kind and records the second. Verify stops with an error, and an
// incomplete result, only if storage or the index cannot be read at all
// (listing fails, storage is unavailable) or ctx ends; an object that
// fails to read is reported as Unreadable. Objects stored or deleted
// while Verify runs may be reported, so verify a quiet archive.
func Verify(ctx context.Context, store storage.Store, idx Catalog, report func(Problem)) (VerifyResult, error) {
	start := time.Now()
	var (
		mu  sync.Mutex
		res VerifyResult
	)
	problem := func(p Problem) {
		mu.Lock()
		defer mu.Unlock()
		res.Problems++
		if report != nil {
			report(p)
		}
	}
	// Every object against its record.
	err := forEach(ctx, scanWorkers, store.List(ctx, ""), func(ctx context.Context, info storage.Info) error {
		if IsRecord(info.Key) {
			return nil // the archive's own records (see Record), not instances
		}
		n, err := verifyObject(ctx, store, idx, info.Key, problem)
		mu.Lock()
		res.Objects++
		res.Bytes += n
		mu.Unlock()
		return err
	})
	if err != nil {
		res.Elapsed = time.Since(start)
		return res, fmt.Errorf("archive: verify: %w", err)
	}
	// Every record against storage.
	err = forEach(ctx, scanWorkers, idx.Instances(ctx), func(ctx context.Context, in *index.Instance) error {
		mu.Lock()
		res.Records++
		mu.Unlock()
		_, err := store.Stat(ctx, in.Key)
		switch {
		case errors.Is(err, storage.ErrNotFound):
			problem(Problem{Kind: Missing, Key: in.Key, SOPInstanceUID: in.SOPInstanceUID, Detail: "indexed, but storage has no object"})
		case err != nil:
			return fmt.Errorf("stat %s: %w", in.Key, err)
		}
		return nil
	})
	res.Elapsed = time.Since(start)
	if err != nil {
		return res, fmt.Errorf("archive: verify: %w", err)
	}
	return res, nil
}

// verifyObject checks one object against its record and returns the
// bytes it read. It returns an error only when verifying cannot go on.
func verifyObject(ctx context.Context, store storage.Store, idx Catalog, key string, problem func(Problem)) (int64, error) {
	obj, err := store.Open(ctx, key)
	switch {
	case errors.Is(err, storage.ErrNotFound):
		return 0, nil // deleted since it was listed
	case err != nil && (errors.Is(err, storage.ErrUnavailable) || ctx.Err() != nil):
		return 0, fmt.Errorf("open %s: %w", key, err)
	case err != nil:
		problem(Problem{Kind: Unreadable, Key: key, Detail: err.Error()})
		return 0, nil
	}
	defer obj.Close()
	h := sha256.New()
	src := &countingReader{r: io.TeeReader(ctxReader{ctx, obj}, h)}
	br := bufio.NewReaderSize(src, 64<<10)
	meta, _, metaErr := dicom.ReadFileMeta(br)
	if _, err := io.Copy(io.Discard, br); err != nil {
		if errors.Is(err, storage.ErrUnavailable) || ctx.Err() != nil {
			return src.n, fmt.Errorf("read %s: %w", key, err)
		}
		problem(Problem{Kind: Unreadable, Key: key, Detail: err.Error()})
		return src.n, nil
	}
	size, sum := src.n, hex.EncodeToString(h.Sum(nil))

	var candidates []string
	if metaErr == nil && meta.MediaStorageSOPInstanceUID != "" {
		candidates = append(candidates, meta.MediaStorageSOPInstanceUID)
	}
	if loc, ok := ParseKey(key); ok && (len(candidates) == 0 || candidates[0] != loc.SOPInstanceUID) {
		candidates = append(candidates, loc.SOPInstanceUID)
	}
	var elsewhere *index.Instance
	for _, sop := range candidates {
		in, err := idx.Instance(ctx, sop)
		switch {
		case errors.Is(err, index.ErrNotFound):
			continue
		case err != nil:
			return size, fmt.Errorf("index: %w", err)
		case in.Key != key:
			elsewhere = in
			continue
		case in.Size != size:
			problem(Problem{Kind: SizeMismatch, Key: key, SOPInstanceUID: sop,
				Detail: fmt.Sprintf("object is %d bytes, the index says %d", size, in.Size)})
		case in.SHA256 != sum:
			problem(Problem{Kind: HashMismatch, Key: key, SOPInstanceUID: sop,
				Detail: fmt.Sprintf("object's SHA-256 is %s, the index says %s", sum, in.SHA256)})
		}
		return size, nil
	}
	if tk, ok := idx.(trashKeeper); ok {
		switch trashed, err := tk.Trashed(ctx, key); {
		case err != nil:
			return size, fmt.Errorf("index: %w", err)
		case trashed:
			return size, nil // a deleted or rejected instance's, until it is purged
		}
	}
	p := Problem{Kind: Orphan, Key: key, Detail: "no index record points to it"}
	if len(candidates) > 0 {
		p.SOPInstanceUID = candidates[0]
	}
	if elsewhere != nil {
		p.SOPInstanceUID = elsewhere.SOPInstanceUID
		p.Detail = fmt.Sprintf("instance %s is indexed with the object %s", elsewhere.SOPInstanceUID, elsewhere.Key)
	}
	problem(p)
	return size, nil
}

// trashKeeper is an index that keeps the objects of deleted and
// rejected instances in a trash until they are purged (see Trash):
// Verify counts those objects as accounted for, and Reindex and Repair
// never bring them back.
type trashKeeper interface {
	Trashed(ctx context.Context, key string) (bool, error)
}

// RepairIndex is what Repair needs of the index.
type RepairIndex interface {
	Instance(ctx context.Context, sopInstanceUID string) (*index.Instance, error)
	Put(ctx context.Context, req *index.PutRequest) (*index.Change, error)
}

// Repaired says what Repair did with an orphan.
type Repaired int

const (
	// Left is an orphan Repair left as it was: too recent to be sure no
	// store is still under way with it, or no longer an orphan.
	Left Repaired = iota
	// Deleted is an orphan of an instance indexed with another object,
	// deleted.
	Deleted
	// Indexed is an orphan of an instance the index did not know,
	// recorded, as Reindex would.
	Indexed
)

func (r Repaired) String() string {
	return [...]string{"left", "deleted", "indexed"}[r]
}

// Repair repairs the orphans Verify reported, calling report with what
// it did with each. An orphan of an instance the index records with
// another object (an earlier version a replace did not delete, a later
// one whose store failed before its record was committed, a copy the
// duplicate policy refused) is deleted: the index names the instance's
// object, and the orphan was never acknowledged as it. An orphan of an
// instance the index does not know at all is recorded instead, as
// Reindex would, the latest version first: it may be all that is left of
// an acknowledged instance whose record was lost with the index, and
// deleting it could lose an image. Repair checks again that the index
// does not name an object before deleting it, and leaves alone objects
// written less than minAge ago, which a store may still be about to
// record. Problems other than orphans are left to the operator.
//
// Repair stops with an error only when storage or the index fails.
func Repair(ctx context.Context, store storage.Store, idx RepairIndex, problems []Problem, minAge time.Duration, report func(Problem, Repaired)) error {
	var orphans []Problem
	for _, p := range problems {
		if p.Kind == Orphan {
			orphans = append(orphans, p)
		}
	}
	ready := func(p Problem) (storage.Info, bool, error) {
		info, err := store.Stat(ctx, p.Key)
		switch {
		case errors.Is(err, storage.ErrNotFound):
			return info, false, nil
		case err != nil:
			return info, false, fmt.Errorf("archive: repair %s: %w", p.Key, err)
		}
		return info, time.Since(info.ModTime) >= minAge, nil
	}
	recorded := func(p Problem) (*index.Instance, error) {
		if p.SOPInstanceUID == "" {
			return nil, nil
		}
		in, err := idx.Instance(ctx, p.SOPInstanceUID)
		if errors.Is(err, index.ErrNotFound) {
			return nil, nil
		}
		if err != nil {
			return nil, fmt.Errorf("archive: repair %s: %w", p.Key, err)
		}
		return in, nil
	}
	if len(orphans) == 0 {
		return nil
	}
	book, err := loadIssuers(ctx, store)
	if err != nil {
		return fmt.Errorf("archive: repair: %w", err)
	}
	// First the orphans of instances the index does not know: recording
	// them all, latest version winning, leaves the others orphans of a
	// known instance.
	done := make([]bool, len(orphans))
	for i, p := range orphans {
		in, err := recorded(p)
		if err != nil {
			return err
		}
		if in != nil {
			continue
		}
		info, ok, err := ready(p)
		if err != nil {
			return err
		}
		if !ok {
			done[i] = true
			report(p, Left)
			continue
		}
		_, indexed, _, err := reindexObject(ctx, store, idx, book, info)
		if err != nil && (errors.Is(err, storage.ErrUnavailable) || ctx.Err() != nil) {
			return err
		}
		if indexed {
			done[i] = true
			report(p, Indexed)
		}
	}
	// Then the orphans of instances recorded with another object.
	for i, p := range orphans {
		if done[i] {
			continue
		}
		in, err := recorded(p)
		if err != nil {
			return err
		}
		if in == nil || in.Key == p.Key {
			report(p, Left) // unreadable, or recorded meanwhile
			continue
		}
		if _, ok, err := ready(p); err != nil {
			return err
		} else if !ok {
			report(p, Left)
			continue
		}
		if err := store.Delete(ctx, p.Key); err != nil {
			return fmt.Errorf("archive: repair %s: %w", p.Key, err)
		}
		report(p, Deleted)
	}
	return nil
}
