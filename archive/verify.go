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
	"path"
	"strings"
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
// Information names, or failing that the instance its key names
// (STUDY/SERIES/INSTANCE.dcm), if that record points to its key; any
// other object is an orphan. Verify stops with an error, and an
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
	if sop, ok := strings.CutSuffix(path.Base(key), ".dcm"); ok && sop != "" && (len(candidates) == 0 || candidates[0] != sop) {
		candidates = append(candidates, sop)
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
	detail := "no index record points to it"
	if elsewhere != nil {
		detail = fmt.Sprintf("instance %s is indexed with the object %s", elsewhere.SOPInstanceUID, elsewhere.Key)
	}
	problem(Problem{Kind: Orphan, Key: key, Detail: detail})
	return size, nil
}
