package file

import (
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"math/rand/v2"
	"os"
	"path"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"

	"github.com/pacsd/pacsd/storage"
)

var _ storage.Store = (*Store)(nil)

// Store is a storage.Store on a local filesystem. Its methods are safe for
// concurrent use. Create it with New and Close it when done.
type Store struct {
	root     *os.Root
	fileMode fs.FileMode
	dirMode  fs.FileMode

	// inflight holds the names of the temporary files of Puts in
	// progress, so that Clean never removes one from under its Put.
	inflight sync.Map // string → struct{}

	// unsynced counts, per directory, the Puts that may be creating that
	// directory and have not yet made its entry in its parent durable. A
	// Put that finds a directory already there cannot otherwise know
	// whether its creator has fsynced the parent yet, and must not return
	// before that has happened; see syncAncestors.
	mu        sync.Mutex
	unsynced  map[string]int
	nunsynced atomic.Int64 // sum of unsynced, read without mu
}

// Option configures a Store.
type Option func(*Store)

// WithFileMode sets the permission bits of the files Put creates, before
// the umask. Only the bits in 0o777 are allowed.
func WithFileMode(mode fs.FileMode) Option {
	return func(s *Store) { s.fileMode = mode }
}

// WithDirMode sets the permission bits of the directories Put creates,
// before the umask. Only the bits in 0o777 are allowed.
func WithDirMode(mode fs.FileMode) Option {
	return func(s *Store) { s.dirMode = mode }
}

// New returns a Store keeping its objects below root, which must be an
// existing directory: New does not create it, so that a mistyped path
// fails loudly instead of starting an empty archive somewhere else.
func New(root string, opts ...Option) (*Store, error) {
	s := &Store{
		fileMode: 0o644,
		dirMode:  0o755,
		unsynced: make(map[string]int),
	}
	for _, opt := range opts {
		opt(s)
	}
	if s.fileMode&^fs.ModePerm != 0 {
		return nil, fmt.Errorf("file: file mode %v has bits other than permissions", s.fileMode)
	}
	if s.dirMode&^fs.ModePerm != 0 {
		return nil, fmt.Errorf("file: directory mode %v has bits other than permissions", s.dirMode)
	}
	r, err := os.OpenRoot(root)
	if err != nil {
		return nil, fmt.Errorf("file: %w", err)
	}
	s.root = r
	return s, nil
}

// Close releases the root directory. Objects already open stay usable.
func (s *Store) Close() error {
	return s.root.Close()
}

// Put implements storage.Store. See the package documentation for how it
// makes the object durable.
func (s *Store) Put(ctx context.Context, key string, r io.Reader, size int64) (storage.Info, error) {
	if err := storage.ValidKey(key); err != nil {
		return storage.Info{}, fmt.Errorf("file: put: %w", err)
	}
	if size < -1 {
		return storage.Info{}, fmt.Errorf("file: put %s: invalid size %d", key, size)
	}
	if err := ctx.Err(); err != nil {
		return storage.Info{}, fmt.Errorf("file: put %s: %w", key, err)
	}
	info, err := s.put(ctx, key, r, size)
	if err != nil {
		return storage.Info{}, fmt.Errorf("file: put %s: %w", key, err)
	}
	return info, nil
}

func (s *Store) put(ctx context.Context, key string, r io.Reader, size int64) (storage.Info, error) {
	dir := path.Dir(key)
	f, tmp, err := s.createTemp(dir)
	if err != nil {
		return storage.Info{}, err
	}
	defer s.inflight.Delete(tmp)

	committed, closed := false, false
	defer func() {
		if !closed {
			f.Close()
		}
		if !committed {
			// The temporary file is invisible, so there is nothing to
			// undo but the clutter; a failure here leaves work for Clean.
			s.root.Remove(tmp)
			s.prune(dir)
		}
	}()

	n, err := copyContext(ctx, writeback(f), storage.ExactReader(r, size))
	if err != nil {
		return storage.Info{}, err
	}
	if err := f.Sync(); err != nil {
		return storage.Info{}, err
	}
	fi, err := f.Stat()
	if err != nil {
		return storage.Info{}, err
	}
	closed = true
	if err := f.Close(); err != nil {
		return storage.Info{}, err
	}
	// This is the last point at which cancelling can keep the object from
	// appearing. After the rename the object is visible, and Put goes on
	// to make it durable whatever ctx says.
	if err := ctx.Err(); err != nil {
		return storage.Info{}, err
	}
	if err := s.root.Rename(tmp, key); err != nil {
		return storage.Info{}, err
	}
	committed = true

	// A failure from here on leaves the new object visible but perhaps not
	// durable. It can only come from the filesystem failing a directory
	// fsync, after which the caller should treat the store as broken.
	if err := s.syncDir(dir); err != nil {
		return storage.Info{}, err
	}
	if err := s.syncAncestors(dir); err != nil {
		return storage.Info{}, err
	}
	return storage.Info{Key: key, Size: n, ModTime: fi.ModTime()}, nil
}

// maxAttempts bounds the retries of createTemp. Each retry follows either
// a collision of 64 random bits or a Delete pruning the directory between
// its creation and the creation of the temporary file; needing more than a
// few means something else is wrong.
const maxAttempts = 32

// createTemp creates a new temporary file in dir, creating dir first if it
// is missing, and records it in s.inflight; the caller must remove it from
// there when done. The name is recorded before the file exists, so that a
// concurrent Clean cannot catch the file in between.
func (s *Store) createTemp(dir string) (*os.File, string, error) {
	for attempt := 1; ; attempt++ {
		name := path.Join(dir, tempName())
		s.inflight.Store(name, struct{}{})
		f, err := s.root.OpenFile(name, os.O_WRONLY|os.O_CREATE|os.O_EXCL, s.fileMode)
		if err == nil {
			return f, name, nil
		}
		s.inflight.Delete(name)
		switch {
		case attempt == maxAttempts:
			return nil, "", err
		case errors.Is(err, fs.ErrExist):
			// A name collision; draw another.
		case errors.Is(err, fs.ErrNotExist) && dir != ".":
			// The directory is missing, or a concurrent Delete pruned it
			// after we made it: (re)create it and try again.
			if err := s.mkdirAll(dir); err != nil && !errors.Is(err, fs.ErrNotExist) {
				return nil, "", err
			}
		default:
			return nil, "", err
		}
	}
}

// tempPrefix begins the name of every temporary file. The '~' keeps the
// name out of the key alphabet.
const tempPrefix = ".put~"

// tempName returns a fresh temporary file name.
func tempName() string {
	return fmt.Sprintf("%s%016x", tempPrefix, rand.Uint64())
}

// isTempName reports whether name is one that tempName returns.
func isTempName(name string) bool {
	hex, ok := strings.CutPrefix(name, tempPrefix)
	if !ok || len(hex) != 16 {
		return false
	}
	for i := 0; i < len(hex); i++ {
		c := hex[i]
		if !('0' <= c && c <= '9' || 'a' <= c && c <= 'f') {
			return false
		}
	}
	return true
}

// mkdirAll creates dir and any missing parents. Each directory it creates
// has its entry made durable, by an fsync of its parent, before mkdirAll
// moves on, so a file later made durable inside it cannot be lost with
// the directory. It works upwards from dir because usually only the last
// level or two are missing.
func (s *Store) mkdirAll(dir string) error {
	s.markUnsynced(dir)
	defer s.unmarkUnsynced(dir)

	parent := path.Dir(dir)
	err := s.root.Mkdir(dir, s.dirMode)
	if errors.Is(err, fs.ErrNotExist) && parent != "." {
		if err := s.mkdirAll(parent); err != nil {
			return err
		}
		err = s.root.Mkdir(dir, s.dirMode)
	}
	switch {
	case errors.Is(err, fs.ErrExist):
		// Someone else made it, and is responsible for its durability
		// (see syncAncestors). If it is not a directory, creating the
		// temporary file inside it fails with a clear error.
		return nil
	case err != nil:
		return err
	}
	return s.syncDir(parent)
}

func (s *Store) markUnsynced(dir string) {
	s.mu.Lock()
	s.unsynced[dir]++
	s.mu.Unlock()
	s.nunsynced.Add(1)
}

func (s *Store) unmarkUnsynced(dir string) {
	s.mu.Lock()
	if s.unsynced[dir]--; s.unsynced[dir] == 0 {
		delete(s.unsynced, dir)
	}
	s.mu.Unlock()
	s.nunsynced.Add(-1)
}

// syncAncestors makes durable the entries of dir and its ancestors that
// another Put may have created without having fsynced their parents yet.
// A Put that found its directory in place relies on it: the directory
// entry it depends on might otherwise still be only in memory when it
// returns. Directories are marked before they are created, so a Put that
// saw one existing sees its mark until the creator's fsync is done.
func (s *Store) syncAncestors(dir string) error {
	if s.nunsynced.Load() == 0 {
		return nil
	}
	for d := dir; d != "."; d = path.Dir(d) {
		s.mu.Lock()
		n := s.unsynced[d]
		s.mu.Unlock()
		if n > 0 {
			if err := s.syncDir(path.Dir(d)); err != nil {
				return err
			}
		}
	}
	return nil
}

// syncDir fsyncs the directory dir, making the entries in it durable.
func (s *Store) syncDir(dir string) error {
	d, err := s.root.Open(dir)
	if err != nil {
		return err
	}
	err = d.Sync()
	if cerr := d.Close(); err == nil {
		err = cerr
	}
	return err
}

// bufSize is the size of Put's copy buffer. Put is the ingest hot path,
// and large writes keep the number of system calls per object low.
const bufSize = 256 << 10

var bufPool = sync.Pool{New: func() any { return new([bufSize]byte) }}

// copyContext copies src to dst in chunks of bufSize, checking ctx before
// each. It neither uses src's WriteTo nor dst's ReadFrom, which would copy
// without looking at ctx and with buffers of their own choosing.
func copyContext(ctx context.Context, dst io.Writer, src io.Reader) (int64, error) {
	buf := bufPool.Get().(*[bufSize]byte)
	defer bufPool.Put(buf)
	var n int64
	for {
		if err := ctx.Err(); err != nil {
			return n, err
		}
		nr, rerr := storage.Fill(src, buf[:])
		if nr > 0 {
			nw, werr := dst.Write(buf[:nr])
			n += int64(nw)
			if werr != nil {
				return n, werr
			}
		}
		if rerr == io.EOF {
			return n, nil
		}
		if rerr != nil {
			return n, rerr
		}
	}
}

// Open implements storage.Store. The Object it returns reads the file it
// opened even if the key is replaced or deleted meanwhile.
func (s *Store) Open(ctx context.Context, key string) (storage.Object, error) {
	if err := storage.ValidKey(key); err != nil {
		return nil, fmt.Errorf("file: open: %w", err)
	}
	if err := ctx.Err(); err != nil {
		return nil, fmt.Errorf("file: open %s: %w", key, err)
	}
	f, err := s.root.Open(key)
	if err != nil {
		if notFound(err) {
			return nil, fmt.Errorf("file: open %s: %w", key, storage.ErrNotFound)
		}
		return nil, fmt.Errorf("file: open %s: %w", key, err)
	}
	fi, err := f.Stat()
	if err != nil {
		f.Close()
		return nil, fmt.Errorf("file: open %s: %w", key, err)
	}
	if !fi.Mode().IsRegular() {
		f.Close()
		return nil, fmt.Errorf("file: open %s: %w", key, storage.ErrNotFound)
	}
	return &object{File: f, size: fi.Size()}, nil
}

// object is an open stored file. It embeds *os.File instead of forwarding
// the four methods the interface needs, so that io.Copy from an object
// still finds (*os.File).WriteTo and its zero-copy paths to sockets.
// Stored files are never written in place, so the size taken at Open
// stays true for as long as the file is open.
type object struct {
	*os.File
	size int64
}

func (o *object) Size() int64 { return o.size }

// Stat implements storage.Store.
func (s *Store) Stat(ctx context.Context, key string) (storage.Info, error) {
	if err := storage.ValidKey(key); err != nil {
		return storage.Info{}, fmt.Errorf("file: stat: %w", err)
	}
	if err := ctx.Err(); err != nil {
		return storage.Info{}, fmt.Errorf("file: stat %s: %w", key, err)
	}
	fi, err := s.root.Stat(key)
	if err != nil {
		if notFound(err) {
			return storage.Info{}, fmt.Errorf("file: stat %s: %w", key, storage.ErrNotFound)
		}
		return storage.Info{}, fmt.Errorf("file: stat %s: %w", key, err)
	}
	if !fi.Mode().IsRegular() {
		return storage.Info{}, fmt.Errorf("file: stat %s: %w", key, storage.ErrNotFound)
	}
	return storage.Info{Key: key, Size: fi.Size(), ModTime: fi.ModTime()}, nil
}

// Delete implements storage.Store. It removes the file, fsyncs its
// directory, then removes the directories the removal left empty, up to
// but excluding the root.
func (s *Store) Delete(ctx context.Context, key string) error {
	if err := storage.ValidKey(key); err != nil {
		return fmt.Errorf("file: delete: %w", err)
	}
	if err := ctx.Err(); err != nil {
		return fmt.Errorf("file: delete %s: %w", key, err)
	}
	// A directory is not an object, and removing an empty one here would
	// only race with Puts into it, so leave it be.
	fi, err := s.root.Lstat(key)
	switch {
	case notFound(err):
		return nil
	case err != nil:
		return fmt.Errorf("file: delete %s: %w", key, err)
	case fi.IsDir():
		return nil
	}
	if err := s.root.Remove(key); err != nil {
		if notFound(err) {
			return nil // a concurrent Delete got there first
		}
		return fmt.Errorf("file: delete %s: %w", key, err)
	}
	dir := path.Dir(key)
	if err := s.syncNearest(dir); err != nil {
		return fmt.Errorf("file: delete %s: %w", key, err)
	}
	s.prune(dir)
	return nil
}

// syncNearest fsyncs dir or, if a concurrent Delete has already pruned it,
// its nearest remaining ancestor, whose fsync then records the pruning and
// with it the removal that preceded it.
func (s *Store) syncNearest(dir string) error {
	for d := dir; ; d = path.Dir(d) {
		err := s.syncDir(d)
		if !notFound(err) || d == "." {
			return err
		}
	}
}

// prune removes dir and then its ancestors for as long as they are empty
// directories, stopping below the root. It gives up silently at the first
// failure, which is usually a directory that is not empty; an empty
// directory left behind costs nothing but an inode. Removal is not
// fsynced: if a crash undoes it, the empty directory does no harm.
//
// A Put that made one of these directories and has not yet created its
// temporary file in it can lose it here; createTemp then makes it again.
func (s *Store) prune(dir string) {
	for d := dir; d != "."; d = path.Dir(d) {
		// os.Root has no rmdir: check that d is a directory first, so
		// that a file under a key that clashes with a directory (which
		// the storage.Store contract leaves unsupported) is not deleted.
		fi, err := s.root.Lstat(d)
		if err != nil || !fi.IsDir() {
			return
		}
		if err := s.root.Remove(d); err != nil {
			return
		}
	}
}

// notFound reports whether err means that a path does not exist, also
// when one of its parents is a file rather than a directory.
func notFound(err error) bool {
	return errors.Is(err, fs.ErrNotExist) || errors.Is(err, syscall.ENOTDIR)
}
