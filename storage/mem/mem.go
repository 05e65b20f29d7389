package mem

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"iter"
	"os"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/pacsd/pacsd/storage"
)

var _ storage.Store = (*Store)(nil)

// Store is an in-memory storage.Store. The zero value is not usable; call
// New.
type Store struct {
	mu      sync.RWMutex
	objects map[string]*entry
}

// entry is one stored object. Its data is never modified after Put
// publishes it, so readers share it without copying or locking.
type entry struct {
	data    []byte
	modTime time.Time
}

// New returns an empty Store.
func New() *Store {
	return &Store{objects: make(map[string]*entry)}
}

// chunkSize is how much Put reads between checks of its context.
const chunkSize = 32 << 10

// maxPrealloc caps how much Put allocates up front for an announced size,
// so that a wrong size from a caller cannot make it reserve gigabytes.
const maxPrealloc = 64 << 20

// Put implements storage.Store. It reads the whole object into memory and
// publishes it under key only once r has ended without error.
func (s *Store) Put(ctx context.Context, key string, r io.Reader, size int64) (storage.Info, error) {
	if err := storage.ValidKey(key); err != nil {
		return storage.Info{}, fmt.Errorf("mem: put: %w", err)
	}
	if size < -1 {
		return storage.Info{}, fmt.Errorf("mem: put %s: invalid size %d", key, size)
	}
	var buf bytes.Buffer
	if size > 0 {
		buf.Grow(int(min(size, maxPrealloc)))
	}
	src := storage.ExactReader(r, size)
	chunk := make([]byte, chunkSize)
	for {
		if err := ctx.Err(); err != nil {
			return storage.Info{}, fmt.Errorf("mem: put %s: %w", key, err)
		}
		n, err := src.Read(chunk)
		buf.Write(chunk[:n])
		if err == io.EOF {
			break
		}
		if err != nil {
			return storage.Info{}, fmt.Errorf("mem: put %s: %w", key, err)
		}
	}
	// A cancellation that arrived during the last read still wins: the
	// contract lets nothing be stored once ctx is done before the commit.
	if err := ctx.Err(); err != nil {
		return storage.Info{}, fmt.Errorf("mem: put %s: %w", key, err)
	}
	e := &entry{data: buf.Bytes(), modTime: time.Now()}
	s.mu.Lock()
	s.objects[key] = e
	s.mu.Unlock()
	return storage.Info{Key: key, Size: int64(len(e.data)), ModTime: e.modTime}, nil
}

// Open implements storage.Store.
func (s *Store) Open(ctx context.Context, key string) (storage.Object, error) {
	e, err := s.lookup(ctx, "open", key)
	if err != nil {
		return nil, err
	}
	return &object{r: bytes.NewReader(e.data)}, nil
}

// Stat implements storage.Store.
func (s *Store) Stat(ctx context.Context, key string) (storage.Info, error) {
	e, err := s.lookup(ctx, "stat", key)
	if err != nil {
		return storage.Info{}, err
	}
	return storage.Info{Key: key, Size: int64(len(e.data)), ModTime: e.modTime}, nil
}

func (s *Store) lookup(ctx context.Context, op, key string) (*entry, error) {
	if err := storage.ValidKey(key); err != nil {
		return nil, fmt.Errorf("mem: %s: %w", op, err)
	}
	if err := ctx.Err(); err != nil {
		return nil, fmt.Errorf("mem: %s %s: %w", op, key, err)
	}
	s.mu.RLock()
	e, ok := s.objects[key]
	s.mu.RUnlock()
	if !ok {
		return nil, fmt.Errorf("mem: %s %s: %w", op, key, storage.ErrNotFound)
	}
	return e, nil
}

// Delete implements storage.Store.
func (s *Store) Delete(ctx context.Context, key string) error {
	if err := storage.ValidKey(key); err != nil {
		return fmt.Errorf("mem: delete: %w", err)
	}
	if err := ctx.Err(); err != nil {
		return fmt.Errorf("mem: delete %s: %w", key, err)
	}
	s.mu.Lock()
	delete(s.objects, key)
	s.mu.Unlock()
	return nil
}

// List implements storage.Store. It takes a snapshot of the matching keys
// when the range starts and yields from it without holding the lock, so
// the loop body may call the Store.
func (s *Store) List(ctx context.Context, prefix string) iter.Seq2[storage.Info, error] {
	return func(yield func(storage.Info, error) bool) {
		if err := storage.ValidPrefix(prefix); err != nil {
			yield(storage.Info{}, fmt.Errorf("mem: list: %w", err))
			return
		}
		s.mu.RLock()
		var infos []storage.Info
		for k, e := range s.objects {
			if strings.HasPrefix(k, prefix) {
				infos = append(infos, storage.Info{Key: k, Size: int64(len(e.data)), ModTime: e.modTime})
			}
		}
		s.mu.RUnlock()
		slices.SortFunc(infos, func(a, b storage.Info) int { return strings.Compare(a.Key, b.Key) })
		for _, info := range infos {
			if err := ctx.Err(); err != nil {
				yield(storage.Info{}, fmt.Errorf("mem: list %s: %w", prefix, err))
				return
			}
			if !yield(info, nil) {
				return
			}
		}
	}
}

// object is an open object. It fails every call after Close with
// os.ErrClosed, as *os.File does, so that tests catch use after Close that
// a bare bytes.Reader would let pass.
type object struct {
	r      *bytes.Reader
	closed atomic.Bool
}

func (o *object) Read(p []byte) (int, error) {
	if o.closed.Load() {
		return 0, os.ErrClosed
	}
	return o.r.Read(p)
}

func (o *object) ReadAt(p []byte, off int64) (int, error) {
	if o.closed.Load() {
		return 0, os.ErrClosed
	}
	return o.r.ReadAt(p, off)
}

func (o *object) Seek(offset int64, whence int) (int64, error) {
	if o.closed.Load() {
		return 0, os.ErrClosed
	}
	return o.r.Seek(offset, whence)
}

func (o *object) Size() int64 { return o.r.Size() }

func (o *object) Close() error {
	if o.closed.Swap(true) {
		return os.ErrClosed
	}
	return nil
}
