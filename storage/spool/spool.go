package spool

import (
	"context"
	"crypto/sha256"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"iter"
	"log/slog"
	"os"
	"sync"
	"sync/atomic"
	"time"

	"github.com/pacsd/pacsd/internal/keylock"
	"github.com/pacsd/pacsd/storage"
	"github.com/pacsd/pacsd/storage/file"
)

var _ storage.Store = (*Store)(nil)

var (
	// ErrLocked reports a spool directory that another process holds.
	ErrLocked = errors.New("spool: directory in use by another process")
	// ErrReadOnly reports a Put or Delete on a read-only Store.
	ErrReadOnly = errors.New("spool: read-only")
	// ErrClosed reports the use of a Store after Close.
	ErrClosed = errors.New("spool: closed")
)

// Defaults of Config.
const (
	DefaultWorkers        = 4
	DefaultMinBackoff     = time.Second
	DefaultMaxBackoff     = time.Minute
	DefaultRescanInterval = time.Minute
)

// queueSize bounds the keys of recent Puts held for the uploader. Beyond
// it a Put only asks for a walk of the spool directory, which finds every
// object, so the queue is a shortcut, never the only record of one.
const queueSize = 4096

// Config configures a Store.
type Config struct {
	// Dir is the spool directory. New creates it if it does not exist.
	Dir string
	// Remote is where objects go: an S3 bucket in pacsd. It should fail
	// rather than wait long when it is unreachable (few retries): the
	// uploader retries on its own, with pauses.
	Remote storage.Store
	// Workers is how many uploads run at once; DefaultWorkers if zero.
	Workers int
	// MinBackoff and MaxBackoff bound the pause after a failed upload;
	// DefaultMinBackoff and DefaultMaxBackoff if zero.
	MinBackoff, MaxBackoff time.Duration
	// RescanInterval is how often the uploader walks the spool directory
	// when it has nothing else to do, for objects it was not told of;
	// DefaultRescanInterval if zero.
	RescanInterval time.Duration
	// ReadOnly opens the spool without locking it and without uploading:
	// Put and Delete fail with ErrReadOnly. Reads see the spool and the
	// remote as a writing Store does.
	ReadOnly bool
	// Logger receives a record of every failed upload and of each walk
	// that finds objects; nothing is logged if nil.
	Logger *slog.Logger
}

// Stats counts what the uploader has done since New.
type Stats struct {
	// Uploaded counts the objects copied to the remote, verified and
	// removed from the spool.
	Uploaded int64
	// Failures counts the upload attempts that failed.
	Failures int64
	// LastError is the error of the latest failed attempt, nil if there
	// has been none or an upload has succeeded since.
	LastError error
}

// Store is the spool. Its methods are safe for concurrent use. Create it
// with New and Close it when done.
type Store struct {
	cfg    Config
	local  *file.Store
	remote storage.Store
	log    *slog.Logger
	unlock func() error // releases the directory lock; nil if read-only

	// keys serializes, per key, a Put's write to the spool, a Delete,
	// and the uploader's removal of the spool copy, so that the removal
	// can never take a newer object that a Put is committing.
	keys keylock.Map

	queue  chan string   // keys of recent Puts, for the dispatcher
	wake   chan struct{} // capacity 1: the dispatcher has something to do
	rescan atomic.Bool   // the dispatcher should walk the spool directory
	tasks  chan *flight  // dispatcher to workers
	stop   chan struct{} // closed by Close
	run    context.Context
	cancel context.CancelFunc
	wg     sync.WaitGroup
	closed atomic.Bool

	closeOnce sync.Once
	closeErr  error

	mu sync.Mutex
	// inflight holds the upload of each key being uploaded.
	inflight map[string]*flight
	// again marks keys handed to the dispatcher while being uploaded;
	// they are uploaded again afterwards.
	again map[string]bool
	// blocked counts the Deletes of each key in progress; no upload of
	// the key starts meanwhile.
	blocked map[string]int
	// listing counts the Lists in progress. While any runs, uploaded
	// objects keep their spool copies (see deferred), so that an object
	// moving from the spool to the remote cannot slip between the two
	// listings List merges.
	listing int
	// deferred holds the uploaded objects whose spool copies are to be
	// removed once no List runs, with the identity of the file uploaded.
	deferred map[string]fs.FileInfo
	// backlog is what the spool holds not uploaded yet, kept as it
	// changes so that Backlog need not walk the directory.
	backlog backlog
	// changed is closed, and replaced, whenever an upload attempt ends.
	changed chan struct{}
	stats   Stats
	// backoff is the pause after the latest failure; retryAt is when
	// uploads may go on.
	backoff time.Duration
	retryAt time.Time
}

// backlog is a running count of the objects in the spool directory not
// uploaded yet: their sizes by key, and the sum. Every change of a file
// in the directory happens under the lock of its key, by this process
// alone (the directory is locked), and updates the count there; New
// counts what the directory holds at start.
type backlog struct {
	sizes map[string]int64
	bytes int64
}

// set records the object under key, of size bytes, replacing any before.
func (b *backlog) set(key string, size int64) {
	b.remove(key)
	b.sizes[key] = size
	b.bytes += size
}

// remove forgets the object under key.
func (b *backlog) remove(key string) {
	if old, ok := b.sizes[key]; ok {
		b.bytes -= old
		delete(b.sizes, key)
	}
}

// flight is one upload attempt of a key.
type flight struct {
	key    string
	ctx    context.Context
	cancel context.CancelFunc
	done   chan struct{} // closed when the attempt is over
}

// New opens the spool in cfg.Dir, creating the directory if need be, and
// unless cfg.ReadOnly locks it and starts uploading what it holds.
func New(cfg Config) (*Store, error) {
	if cfg.Dir == "" {
		return nil, errors.New("spool: no directory")
	}
	if cfg.Remote == nil {
		return nil, errors.New("spool: no remote")
	}
	if cfg.Workers < 0 || cfg.MinBackoff < 0 || cfg.MaxBackoff < 0 || cfg.RescanInterval < 0 {
		return nil, errors.New("spool: negative workers, backoff or rescan interval")
	}
	if cfg.Workers == 0 {
		cfg.Workers = DefaultWorkers
	}
	if cfg.MinBackoff == 0 {
		cfg.MinBackoff = DefaultMinBackoff
	}
	if cfg.MaxBackoff == 0 {
		cfg.MaxBackoff = DefaultMaxBackoff
	}
	cfg.MaxBackoff = max(cfg.MaxBackoff, cfg.MinBackoff)
	if cfg.RescanInterval == 0 {
		cfg.RescanInterval = DefaultRescanInterval
	}
	log := cfg.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	if !cfg.ReadOnly {
		if err := os.MkdirAll(cfg.Dir, 0o755); err != nil {
			return nil, fmt.Errorf("spool: %w", err)
		}
	}
	s := &Store{
		cfg:      cfg,
		remote:   cfg.Remote,
		log:      log,
		queue:    make(chan string, queueSize),
		wake:     make(chan struct{}, 1),
		tasks:    make(chan *flight),
		stop:     make(chan struct{}),
		inflight: make(map[string]*flight),
		again:    make(map[string]bool),
		blocked:  make(map[string]int),
		deferred: make(map[string]fs.FileInfo),
		backlog:  backlog{sizes: make(map[string]int64)},
		changed:  make(chan struct{}),
	}
	s.run, s.cancel = context.WithCancel(context.Background())
	if !cfg.ReadOnly {
		unlock, err := lockDir(cfg.Dir)
		switch {
		case errors.Is(err, ErrLocked):
			return nil, fmt.Errorf("%w: %s", ErrLocked, cfg.Dir)
		case err != nil:
			return nil, fmt.Errorf("spool: %s: %w", cfg.Dir, err)
		}
		s.unlock = unlock
	}
	local, err := file.New(cfg.Dir)
	if err != nil {
		if s.unlock != nil {
			s.unlock()
		}
		return nil, fmt.Errorf("spool: %w", err)
	}
	s.local = local
	if !cfg.ReadOnly {
		if err := s.count(); err != nil {
			local.Close()
			s.unlock()
			return nil, err
		}
		s.rescan.Store(true)
		s.wg.Add(1 + cfg.Workers)
		go s.dispatch()
		for range cfg.Workers {
			go s.work()
		}
	}
	return s, nil
}

// Close stops the uploader and releases the spool directory. Uploads in
// progress may finish until ctx ends; then they are cancelled, which
// leaves their objects in the spool for the next Store opened on it.
// Close returns an error wrapping ctx.Err() if it had to cancel uploads.
// After Close every method fails with ErrClosed, except the reading of
// Objects already open.
func (s *Store) Close(ctx context.Context) error {
	s.closeOnce.Do(func() {
		close(s.stop)
		done := make(chan struct{})
		go func() {
			s.wg.Wait()
			close(done)
		}()
		select {
		case <-done:
		case <-ctx.Done():
			s.cancel()
			<-done
			s.closeErr = fmt.Errorf("spool: close: uploads in progress cancelled: %w", ctx.Err())
		}
		s.cancel()
		// From here on methods fail before touching the directory; one
		// that checked just before fails on the closed directory
		// instead, which for a Put means an error, never a loss.
		s.closed.Store(true)
		if err := s.local.Close(); err != nil {
			s.closeErr = fmt.Errorf("spool: close: %w", err)
		}
		if s.unlock != nil {
			if err := s.unlock(); err != nil && s.closeErr == nil {
				s.closeErr = fmt.Errorf("spool: close: %w", err)
			}
		}
		s.mu.Lock()
		close(s.changed)
		s.changed = make(chan struct{})
		s.mu.Unlock()
	})
	return s.closeErr
}

// check is what every method does first.
func (s *Store) check(ctx context.Context, op, key string) error {
	if err := storage.ValidKey(key); err != nil {
		return fmt.Errorf("spool: %s: %w", op, err)
	}
	if s.closed.Load() {
		return fmt.Errorf("spool: %s %s: %w", op, key, ErrClosed)
	}
	if err := ctx.Err(); err != nil {
		return fmt.Errorf("spool: %s %s: %w", op, key, err)
	}
	return nil
}

// Put implements storage.Store: it returns once the object is durable in
// the spool, and the uploader copies it to the remote afterwards.
func (s *Store) Put(ctx context.Context, key string, r io.Reader, size int64) (storage.Info, error) {
	if err := s.check(ctx, "put", key); err != nil {
		return storage.Info{}, err
	}
	if s.cfg.ReadOnly {
		return storage.Info{}, fmt.Errorf("spool: put %s: %w", key, ErrReadOnly)
	}
	unlock := s.keys.Lock(key)
	info, err := s.local.Put(ctx, key, r, size)
	// Whether or not the Put failed, the key may now hold a new object,
	// which is not uploaded yet.
	s.mu.Lock()
	delete(s.deferred, key)
	if err == nil {
		s.backlog.set(key, info.Size)
	}
	s.mu.Unlock()
	if err != nil {
		s.recount(key)
	}
	unlock()
	s.enqueue(key)
	if err != nil {
		return storage.Info{}, fmt.Errorf("spool: %w", err)
	}
	return info, nil
}

// Open implements storage.Store, from the spool if the object is there
// and from the remote otherwise.
func (s *Store) Open(ctx context.Context, key string) (storage.Object, error) {
	if err := s.check(ctx, "open", key); err != nil {
		return nil, err
	}
	obj, err := s.local.Open(ctx, key)
	if err == nil || !errors.Is(err, storage.ErrNotFound) {
		return obj, wrap(err)
	}
	// Not in the spool: never put, or uploaded and removed, in which
	// case the remote has it, since removal follows the upload.
	obj, err = s.remote.Open(ctx, key)
	return obj, wrap(err)
}

// Stat implements storage.Store, as Open does.
func (s *Store) Stat(ctx context.Context, key string) (storage.Info, error) {
	if err := s.check(ctx, "stat", key); err != nil {
		return storage.Info{}, err
	}
	info, err := s.local.Stat(ctx, key)
	if err == nil || !errors.Is(err, storage.ErrNotFound) {
		return info, wrap(err)
	}
	info, err = s.remote.Stat(ctx, key)
	return info, wrap(err)
}

// Delete implements storage.Store. It waits for an upload of the key in
// progress to end, so that the upload cannot put back what Delete
// removes, then deletes the object from the remote and from the spool,
// in that order: if the remote fails, the object is still there as a
// whole, and Delete can be retried. It lets the upload end rather than
// cancel it: an S3 server that has a PUT's whole body finishes it even
// when the client gives up, possibly after a DELETE sent meanwhile, and
// the object would be back. No new upload of the key starts while
// Delete runs.
func (s *Store) Delete(ctx context.Context, key string) error {
	if err := s.check(ctx, "delete", key); err != nil {
		return err
	}
	if s.cfg.ReadOnly {
		return fmt.Errorf("spool: delete %s: %w", key, ErrReadOnly)
	}
	s.mu.Lock()
	s.blocked[key]++
	f := s.inflight[key]
	s.mu.Unlock()
	defer func() {
		s.mu.Lock()
		if s.blocked[key]--; s.blocked[key] == 0 {
			delete(s.blocked, key)
		}
		s.mu.Unlock()
	}()
	if f != nil {
		select {
		case <-f.done:
		case <-ctx.Done():
			return fmt.Errorf("spool: delete %s: waiting for its upload to end: %w", key, ctx.Err())
		}
	}
	unlock := s.keys.Lock(key)
	defer unlock()
	if err := s.remote.Delete(ctx, key); err != nil {
		return fmt.Errorf("spool: delete %s from the remote: %w", key, err)
	}
	if err := s.local.Delete(ctx, key); err != nil {
		s.recount(key)
		return fmt.Errorf("spool: %w", err)
	}
	s.mu.Lock()
	delete(s.deferred, key)
	s.backlog.remove(key)
	s.mu.Unlock()
	return nil
}

// List implements storage.Store, merging the listings of the spool and
// the remote; an object in both is yielded once, as the spool has it,
// since the spool's copy is the newer one if they differ.
func (s *Store) List(ctx context.Context, prefix string) iter.Seq2[storage.Info, error] {
	return func(yield func(storage.Info, error) bool) {
		if err := storage.ValidPrefix(prefix); err != nil {
			yield(storage.Info{}, fmt.Errorf("spool: list: %w", err))
			return
		}
		if s.closed.Load() {
			yield(storage.Info{}, fmt.Errorf("spool: list %q: %w", prefix, ErrClosed))
			return
		}
		if err := ctx.Err(); err != nil {
			yield(storage.Info{}, fmt.Errorf("spool: list %q: %w", prefix, err))
			return
		}
		s.mu.Lock()
		s.listing++
		s.mu.Unlock()
		defer func() {
			s.mu.Lock()
			s.listing--
			release := s.listing == 0 && len(s.deferred) > 0
			s.mu.Unlock()
			if release {
				s.poke()
			}
		}()
		nextL, stopL := iter.Pull2(s.local.List(ctx, prefix))
		defer stopL()
		nextR, stopR := iter.Pull2(s.remote.List(ctx, prefix))
		defer stopR()
		l, lerr, lok := nextL()
		r, rerr, rok := nextR()
		for lok || rok {
			if lok && lerr != nil {
				yield(storage.Info{}, fmt.Errorf("spool: %w", lerr))
				return
			}
			if rok && rerr != nil {
				yield(storage.Info{}, fmt.Errorf("spool: remote: %w", rerr))
				return
			}
			var info storage.Info
			switch {
			case lok && (!rok || l.Key < r.Key):
				info = l
				l, lerr, lok = nextL()
			case !lok || r.Key < l.Key:
				info = r
				r, rerr, rok = nextR()
			default:
				info = l
				l, lerr, lok = nextL()
				r, rerr, rok = nextR()
			}
			if !yield(info, nil) {
				return
			}
		}
	}
}

// Uploaded reports whether the object under key is in the remote: true
// once the latest object Put under key has been uploaded and verified,
// false while it is only in the spool. It returns an error wrapping
// storage.ErrNotFound if there is no object under key at all.
func (s *Store) Uploaded(ctx context.Context, key string) (bool, error) {
	if err := s.check(ctx, "uploaded", key); err != nil {
		return false, err
	}
	s.mu.Lock()
	_, done := s.deferred[key]
	s.mu.Unlock()
	if done {
		return true, nil
	}
	_, err := s.local.Stat(ctx, key)
	if err == nil {
		return false, nil
	}
	if !errors.Is(err, storage.ErrNotFound) {
		return false, fmt.Errorf("spool: uploaded: %w", err)
	}
	if _, err := s.remote.Stat(ctx, key); err != nil {
		return false, fmt.Errorf("spool: uploaded: %w", err)
	}
	return true, nil
}

// Pending returns how many objects the spool holds that are not uploaded
// yet, as Backlog does.
func (s *Store) Pending(ctx context.Context) (int, error) {
	n, _, err := s.Backlog(ctx)
	if err != nil {
		return n, fmt.Errorf("spool: pending: %w", errors.Unwrap(err))
	}
	return n, nil
}

// Backlog returns how many objects the spool holds that are not
// uploaded yet, and their bytes: what would be lost with the spool's disk.
// A Store that writes keeps the figure as objects come and go, counted
// from the directory when it opens, so Backlog costs the same whatever
// the spool holds and may be asked on every health check or scrape. A
// read-only Store, whose directory another process changes, walks the
// directory to count.
func (s *Store) Backlog(ctx context.Context) (objects int, bytes int64, err error) {
	if s.closed.Load() {
		return 0, 0, fmt.Errorf("spool: backlog: %w", ErrClosed)
	}
	if err := ctx.Err(); err != nil {
		return 0, 0, fmt.Errorf("spool: backlog: %w", err)
	}
	if !s.cfg.ReadOnly {
		s.mu.Lock()
		defer s.mu.Unlock()
		return len(s.backlog.sizes), s.backlog.bytes, nil
	}
	return s.walkBacklog(ctx)
}

// walkBacklog counts the backlog by walking the spool directory.
func (s *Store) walkBacklog(ctx context.Context) (objects int, bytes int64, err error) {
	for info, err := range s.local.List(ctx, "") {
		if err != nil {
			return objects, bytes, fmt.Errorf("spool: backlog: %w", err)
		}
		s.mu.Lock()
		_, done := s.deferred[info.Key]
		s.mu.Unlock()
		if !done {
			objects++
			bytes += info.Size
		}
	}
	return objects, bytes, nil
}

// count sets the backlog to what the spool directory holds, when the
// Store opens.
func (s *Store) count() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	for info, err := range s.local.List(context.Background(), "") {
		if err != nil {
			return fmt.Errorf("spool: counting the objects in %s: %w", s.cfg.Dir, err)
		}
		s.backlog.set(info.Key, info.Size)
	}
	return nil
}

// recount sets the backlog's figure of key to what the spool directory
// holds, after a change of the file that failed part way and may or may
// not have happened. The caller holds the lock of key.
func (s *Store) recount(key string) {
	info, err := s.local.Stat(context.Background(), key)
	s.mu.Lock()
	defer s.mu.Unlock()
	switch {
	case err == nil:
		if _, uploaded := s.deferred[key]; !uploaded {
			s.backlog.set(key, info.Size)
		}
	case errors.Is(err, storage.ErrNotFound):
		s.backlog.remove(key)
	default:
		// Unknown: the figure stays as it was, and is right again at
		// the next change of the key or the next start.
		s.log.Warn("spool: the backlog may be off by one object", "key", key, "err", err)
	}
}

// Flush waits until the spool holds no object still to be uploaded and
// no upload attempt is under way, or until ctx ends, when it returns an
// error wrapping ctx.Err() that says how many are left. Objects put while
// Flush waits are waited for too, so under a steady stream of Puts it may
// not return before ctx ends.
//
// An upload ends by removing the spool copy and then the directories
// left empty; Flush waits for the attempt to end, not merely for the
// copy to go, so that the spool directory is quiet when it returns.
func (s *Store) Flush(ctx context.Context) error {
	for {
		s.mu.Lock()
		changed := s.changed
		s.mu.Unlock()
		n, err := s.Pending(ctx)
		if err != nil {
			return err
		}
		s.mu.Lock()
		busy := len(s.inflight) > 0
		s.mu.Unlock()
		if n == 0 && !busy {
			return nil
		}
		if s.cfg.ReadOnly {
			return fmt.Errorf("spool: flush: %d objects not uploaded: %w", n, ErrReadOnly)
		}
		// The uploader may not know of objects another process put, or
		// be pausing after a failure: look again now and then as well.
		t := time.NewTimer(time.Second)
		select {
		case <-changed:
		case <-t.C:
		case <-ctx.Done():
			t.Stop()
			return fmt.Errorf("spool: flush: %d objects not uploaded: %w", n, ctx.Err())
		}
		t.Stop()
	}
}

// Stats returns what the uploader has done so far.
func (s *Store) Stats() Stats {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.stats
}

// wrap prefixes the package name to an error of the spool or the remote.
func wrap(err error) error {
	if err == nil {
		return nil
	}
	return fmt.Errorf("spool: %w", err)
}

// statOf returns the identity of a file the spool's file.Store opened.
func statOf(obj storage.Object) (fs.FileInfo, error) {
	st, ok := obj.(interface{ Stat() (fs.FileInfo, error) })
	if !ok {
		return nil, fmt.Errorf("spool: object of type %T has no Stat", obj)
	}
	return st.Stat()
}

// hashOf returns the SHA-256 and length of what r yields.
func hashOf(r io.Reader) ([sha256.Size]byte, int64, error) {
	h := sha256.New()
	n, err := io.Copy(h, r)
	return [sha256.Size]byte(h.Sum(nil)), n, err
}
