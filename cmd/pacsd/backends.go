package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"iter"
	"log/slog"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"time"

	"github.com/pacsd/pacsd/index/postgres"
	"github.com/pacsd/pacsd/index/sqlindex"
	"github.com/pacsd/pacsd/index/sqlite"
	"github.com/pacsd/pacsd/storage"
	"github.com/pacsd/pacsd/storage/file"
	"github.com/pacsd/pacsd/storage/s3"
	"github.com/pacsd/pacsd/storage/spool"
)

// The storage URL (--storage) is one of
//
//	file:///PATH, or a bare PATH
//	s3://BUCKET[/PREFIX]?endpoint=HOST:PORT&secure=BOOL&region=REGION&prefix=PREFIX
//	    &part_size=SIZE&max_retries=N&stall_timeout=DURATION
//	    &ack=direct|spool&spool_dir=PATH
//
// s3:// takes its credentials from AWS_ACCESS_KEY_ID and
// AWS_SECRET_ACCESS_KEY (see s3.ParseURL), or else from the config file's
// s3_access_key_id and s3_secret_access_key, and creates the bucket if it is
// missing. ack says when a C-STORE is acknowledged:
//
//   - direct (the default): once S3 has confirmed the object. While S3 is
//     unreachable, C-STOREs fail with 0xA700 and the sender retries later.
//   - spool: once the object is fsynced into a spool directory on local
//     disk (spool_dir, by default DATA/spool), from which it is uploaded
//     in the background; see package spool.
//
// Direct is the default because naming a bucket says where acknowledged
// images are to be: the spool makes the local disk their only copy for a
// while, which is only safe on a data directory chosen for durability,
// and a container's scratch space is not. The spool is for operators who
// have such a disk and want intake to go on through an outage of S3.
const (
	ackDirect = "direct"
	ackSpool  = "spool"
)

// spoolRetries is how many attempts the spool's S3 client makes of a
// request: the spool retries failed uploads itself, after pauses.
const spoolRetries = 2

// closeFunc releases a store; for a spool it waits, up to ctx, for the
// uploads in progress.
type closeFunc func(ctx context.Context) error

// openStorage opens the object storage that s names, for serve and
// retrieve, which write to it; s3Env gives the credentials of a bucket. A
// spool's uploader runs until the store is closed: uploads go on while
// associations drain at shutdown, and those that the close cuts short
// leave their objects in the spool for the next start.
func openStorage(ctx context.Context, s *storeSettings, s3Env func(string) string, log *slog.Logger) (storage.Store, closeFunc, error) {
	return openBackend(ctx, s.Storage, s3Env, log, false)
}

// openStorageReadOnly opens the object storage that s names for the
// maintenance commands, which only read: a spool is opened read-only,
// uploading nothing and leaving its lock to a running pacsd serve. The
// caller calls the returned function when done.
func openStorageReadOnly(ctx context.Context, s *storeSettings, s3Env func(string) string, log *slog.Logger) (storage.Store, closeFunc, error) {
	return openBackend(ctx, s.Storage, s3Env, log, true)
}

func openBackend(ctx context.Context, u string, s3Env func(string) string, log *slog.Logger, readOnly bool) (storage.Store, closeFunc, error) {
	if strings.HasPrefix(u, "s3://") {
		return openS3(ctx, u, s3Env, log, readOnly)
	}
	root, err := pathOf(u, "file")
	if err != nil {
		return nil, nil, fmt.Errorf("storage: %w (or s3://)", err)
	}
	if !readOnly {
		if err := os.MkdirAll(root, 0o755); err != nil {
			return nil, nil, fmt.Errorf("storage: %w", err)
		}
	}
	fst, err := file.New(root)
	if err != nil {
		return nil, nil, fmt.Errorf("storage: %w", err)
	}
	if readOnly {
		return fst, func(context.Context) error { return fst.Close() }, nil
	}
	// Temporary files left by a crash mid-write are removed in the
	// background, as an archive of millions of files must not delay
	// start; closing the store stops the clean-up and waits for it.
	cleanCtx, stopClean := context.WithCancel(context.WithoutCancel(ctx))
	cleaned := make(chan struct{})
	go func() {
		defer close(cleaned)
		n, err := fst.Clean(cleanCtx, time.Hour)
		switch {
		case err != nil && cleanCtx.Err() == nil:
			log.Warn("storage clean-up failed", "err", err)
		case n > 0:
			log.Info("removed temporary files left by an interrupted write", "files", n)
		}
	}()
	return fst, func(context.Context) error {
		stopClean()
		<-cleaned
		return fst.Close()
	}, nil
}

// openS3 opens an s3:// storage URL, with the spool in front if it says
// ack=spool; getenv gives the credentials.
func openS3(ctx context.Context, u string, getenv func(string) string, log *slog.Logger, readOnly bool) (storage.Store, closeFunc, error) {
	// The parameters of the spool are taken out before s3.ParseURL sees
	// the rest; what does not parse is left for it to explain, without
	// quoting the query.
	parsed, err := url.Parse(u)
	var q url.Values
	if err == nil {
		q, err = url.ParseQuery(parsed.RawQuery)
	}
	if err != nil {
		if _, perr := s3.ParseURL(u, getenv); perr != nil {
			err = perr
		}
		return nil, nil, fmt.Errorf("storage: %w", err)
	}
	for _, name := range []string{"ack", "spool_dir"} {
		if len(q[name]) > 1 {
			return nil, nil, fmt.Errorf("storage: parameter %s given %d times", name, len(q[name]))
		}
	}
	ack, spoolDir := q.Get("ack"), q.Get("spool_dir")
	q.Del("ack")
	q.Del("spool_dir")
	parsed.RawQuery = q.Encode()
	cfg, err := s3.ParseURL(parsed.String(), getenv)
	if err != nil {
		return nil, nil, fmt.Errorf("storage: %w", err)
	}
	noop := func(context.Context) error { return nil }
	switch ack {
	case "", ackDirect:
		if spoolDir != "" {
			return nil, nil, errors.New("storage: spool_dir is only for ack=spool")
		}
		st, err := s3.New(ctx, cfg)
		if err != nil {
			return nil, nil, fmt.Errorf("storage: %w", err)
		}
		return st, noop, nil
	case ackSpool:
		if spoolDir == "" {
			return nil, nil, errors.New("storage: ack=spool needs spool_dir, the spool directory (DATA/spool by default)")
		}
		if cfg.MaxRetries == 0 {
			cfg.MaxRetries = spoolRetries
		}
		var remote storage.Store
		st, err := s3.New(ctx, cfg)
		switch {
		case err == nil:
			remote = st
		case errors.Is(err, storage.ErrUnavailable) && !readOnly:
			// Taking in images while S3 is out is what the spool is
			// for, also when pacsd starts during the outage. A wrong
			// endpoint looks the same, so say so loudly.
			log.Warn("S3 is unreachable; starting anyway, into the spool, and uploading once it answers", "err", err)
			remote = &lateS3{cfg: cfg}
		default:
			return nil, nil, fmt.Errorf("storage: %w", err)
		}
		if _, err := os.Stat(spoolDir); readOnly && errors.Is(err, fs.ErrNotExist) {
			// Nothing was ever spooled here: the bucket is all there is.
			return remote, noop, nil
		}
		sp, err := spool.New(spool.Config{Dir: spoolDir, Remote: remote, ReadOnly: readOnly, Logger: log.With("component", "spool")})
		if err != nil {
			return nil, nil, fmt.Errorf("storage: %w", err)
		}
		return sp, sp.Close, nil
	}
	return nil, nil, fmt.Errorf("storage: ack=%q is not %s or %s", ack, ackDirect, ackSpool)
}

// lateS3 is the S3 Store of a spool whose server could not be reached
// at start: every call first tries to create it, until that succeeds.
type lateS3 struct {
	cfg s3.Config

	mu sync.Mutex
	st *s3.Store
}

var _ storage.Store = (*lateS3)(nil)

func (l *lateS3) store(ctx context.Context) (*s3.Store, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.st != nil {
		return l.st, nil
	}
	st, err := s3.New(ctx, l.cfg)
	if err != nil {
		return nil, err
	}
	l.st = st
	return st, nil
}

func (l *lateS3) Put(ctx context.Context, key string, r io.Reader, size int64) (storage.Info, error) {
	st, err := l.store(ctx)
	if err != nil {
		return storage.Info{}, err
	}
	return st.Put(ctx, key, r, size)
}

func (l *lateS3) Open(ctx context.Context, key string) (storage.Object, error) {
	st, err := l.store(ctx)
	if err != nil {
		return nil, err
	}
	return st.Open(ctx, key)
}

func (l *lateS3) Stat(ctx context.Context, key string) (storage.Info, error) {
	st, err := l.store(ctx)
	if err != nil {
		return storage.Info{}, err
	}
	return st.Stat(ctx, key)
}

func (l *lateS3) Delete(ctx context.Context, key string) error {
	st, err := l.store(ctx)
	if err != nil {
		return err
	}
	return st.Delete(ctx, key)
}

func (l *lateS3) List(ctx context.Context, prefix string) iter.Seq2[storage.Info, error] {
	return func(yield func(storage.Info, error) bool) {
		st, err := l.store(ctx)
		if err != nil {
			yield(storage.Info{}, err)
			return
		}
		for info, err := range st.List(ctx, prefix) {
			if !yield(info, err) {
				return
			}
		}
	}
}

// withSpoolDir returns the storage URL u with the default spool
// directory, below the data directory, added to an s3:// URL that asks
// for a spool without naming its directory. config.complete calls it, as
// it fills in the other defaults that depend on the data directory.
func withSpoolDir(u, data string) string {
	if !strings.HasPrefix(u, "s3://") {
		return u
	}
	parsed, err := url.Parse(u)
	if err != nil {
		return u // openStorage reports it
	}
	q := parsed.Query()
	if q.Get("ack") != ackSpool || q.Has("spool_dir") {
		return u
	}
	sep := "&"
	if parsed.RawQuery == "" {
		sep = "?"
	}
	return u + sep + "spool_dir=" + url.QueryEscape(filepath.Join(data, "spool"))
}

// pathOf returns the path of a file:// or sqlite:// URL; a bare path is
// taken as it is.
func pathOf(u, scheme string) (string, error) {
	if rest, ok := strings.CutPrefix(u, scheme+"://"); ok {
		return rest, nil
	}
	if strings.Contains(u, "://") {
		return "", fmt.Errorf("%q: only %s:// is supported", u, scheme)
	}
	return u, nil
}

// openIndex opens the index that u names: sqlite:///PATH (or a bare
// path), or a PostgreSQL URL, postgres://USER@HOST:PORT/DB?sslmode=...,
// whose password is best left to PGPASSWORD or a password file.
func openIndex(ctx context.Context, u string, opts ...sqlindex.Option) (*sqlindex.DB, error) {
	if strings.HasPrefix(u, "postgres://") || strings.HasPrefix(u, "postgresql://") {
		db, err := postgres.Open(ctx, u, opts...)
		if err != nil {
			return nil, fmt.Errorf("index: %w", err)
		}
		return db, nil
	}
	path, err := pathOf(u, "sqlite")
	if err != nil {
		return nil, fmt.Errorf("index: %w (or postgres://)", err)
	}
	db, err := sqlite.Open(ctx, path, opts...)
	if err != nil {
		return nil, fmt.Errorf("index: %w", err)
	}
	return db, nil
}

// maintenanceSettings are those of the maintenance commands (reindex,
// verify), which open storage read-only and the index.
type maintenanceSettings struct {
	baseSettings
	storeSettings
}

// open opens the storage read-only and the index; done closes both.
func (m *maintenanceSettings) open(ctx context.Context, p *process, opts ...sqlindex.Option) (store storage.Store, db *sqlindex.DB, done func(), err error) {
	return m.openFor(ctx, p, false, opts...)
}

// openFor opens the storage, read-only unless writable, and the index;
// done closes both. Writable storage with a spool takes the spool's lock,
// so it fails while pacsd serve runs on the same spool.
func (m *maintenanceSettings) openFor(ctx context.Context, p *process, writable bool, opts ...sqlindex.Option) (store storage.Store, db *sqlindex.DB, done func(), err error) {
	if err := complete(&m.storeSettings); err != nil {
		return nil, nil, nil, err
	}
	log, err := m.logger(p.stderr)
	if err != nil {
		return nil, nil, nil, err
	}
	openStore := openStorageReadOnly
	if writable {
		openStore = openStorage
	}
	store, closeStore, err := openStore(ctx, &m.storeSettings, m.s3Env(p.getenv), log)
	if err != nil {
		return nil, nil, nil, err
	}
	if db, err = openIndex(ctx, m.Index, opts...); err != nil {
		closeStore(context.Background())
		return nil, nil, nil, err
	}
	return store, db, func() {
		db.Close()
		closeStore(context.Background())
	}, nil
}
