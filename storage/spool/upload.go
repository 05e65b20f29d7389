package spool

import (
	"context"
	"crypto/sha256"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"time"

	"github.com/pacsd/pacsd/storage"
)

// enqueue tells the uploader of a key that a Put wrote.
func (s *Store) enqueue(key string) {
	select {
	case s.queue <- key:
	default:
		// The walk of the spool directory will find it.
		s.rescan.Store(true)
	}
	s.poke()
}

// poke wakes the dispatcher if it is waiting.
func (s *Store) poke() {
	select {
	case s.wake <- struct{}{}:
	default:
	}
}

// dispatch hands keys to the workers until Close: the keys Puts queue,
// and every key in the spool directory when it walks it.
func (s *Store) dispatch() {
	defer s.wg.Done()
	defer close(s.tasks)
	// The directory is locked, so no other process is writing to it:
	// every temporary file in it was left by a crash.
	if n, err := s.local.Clean(s.run, 0); err != nil && s.run.Err() == nil {
		s.log.Warn("spool: removing temporary files left by a crash failed", "dir", s.cfg.Dir, "err", err)
	} else if n > 0 {
		s.log.Info("spool: removed temporary files left by a crash", "dir", s.cfg.Dir, "files", n)
	}
	tick := time.NewTicker(s.cfg.RescanInterval)
	defer tick.Stop()
	first := true
	for {
		if s.rescan.Swap(false) {
			if !s.walk(first) {
				return
			}
			first = false
			continue
		}
		s.releaseDeferred()
		select {
		case <-s.stop:
			return
		case key := <-s.queue:
			if !s.send(key) {
				return
			}
		case <-s.wake:
		case <-tick.C:
			s.rescan.Store(true)
		}
	}
}

// walk hands every object of the spool directory to the workers. It
// returns false if the Store is closing.
func (s *Store) walk(first bool) bool {
	if !s.pause() {
		return false
	}
	// Keys queued before the walk are objects it finds.
	for drained := false; !drained; {
		select {
		case <-s.queue:
		default:
			drained = true
		}
	}
	n := 0
	for info, err := range s.local.List(s.run, "") {
		if err != nil {
			if s.run.Err() != nil {
				return false
			}
			s.failed(fmt.Errorf("spool: walking %s: %w", s.cfg.Dir, err))
			return true
		}
		n++
		if !s.send(info.Key) {
			return false
		}
	}
	switch {
	case first && n > 0:
		s.log.Info("spool: uploading objects left from before", "dir", s.cfg.Dir, "objects", n)
	case n > 0:
		s.log.Debug("spool: walked the spool", "dir", s.cfg.Dir, "objects", n)
	}
	return true
}

// pause waits until uploads may go on after a failure: until the pause
// is over and, until an upload succeeds again, until no other upload is
// under way, so that a remote that is down sees one attempt per pause,
// not one per worker. It returns false if the Store is closing.
func (s *Store) pause() bool {
	for {
		s.mu.Lock()
		wait := time.Until(s.retryAt)
		probing := s.backoff > 0 && len(s.inflight) > 0
		changed := s.changed
		s.mu.Unlock()
		if wait <= 0 && !probing {
			return true
		}
		if wait <= 0 {
			wait = time.Hour // only the end of the upload under way
		}
		t := time.NewTimer(wait)
		select {
		case <-t.C:
		case <-changed:
		case <-s.stop:
			t.Stop()
			return false
		}
		t.Stop()
	}
}

// send hands key to a worker, unless it is being uploaded already (it is
// then uploaded again afterwards), being deleted, or uploaded and only
// waiting for its spool copy to go. It returns false if the Store is
// closing.
func (s *Store) send(key string) bool {
	if !s.pause() {
		return false
	}
	s.mu.Lock()
	if s.inflight[key] != nil {
		s.again[key] = true
		s.mu.Unlock()
		return true
	}
	_, deferred := s.deferred[key]
	if s.blocked[key] > 0 || deferred {
		s.mu.Unlock()
		return true
	}
	ctx, cancel := context.WithCancel(s.run)
	f := &flight{key: key, ctx: ctx, cancel: cancel, done: make(chan struct{})}
	s.inflight[key] = f
	s.mu.Unlock()
	select {
	case s.tasks <- f:
		return true
	case <-s.stop:
		cancel()
		s.mu.Lock()
		delete(s.inflight, key)
		close(f.done)
		s.mu.Unlock()
		return false
	}
}

// work uploads what the dispatcher hands it.
func (s *Store) work() {
	defer s.wg.Done()
	for f := range s.tasks {
		s.attempt(f)
	}
}

// attempt runs one upload and records its outcome.
func (s *Store) attempt(f *flight) {
	start := time.Now()
	uploaded, err := s.upload(f.ctx, f.key)
	// Cancelled by a Delete of the key or by Close: neither is a failure
	// of the remote.
	cancelled := err != nil && f.ctx.Err() != nil
	f.cancel()
	s.mu.Lock()
	delete(s.inflight, f.key)
	close(f.done)
	again := s.again[f.key]
	delete(s.again, f.key)
	if uploaded && err == nil {
		s.stats.Uploaded++
		s.stats.LastError = nil
		s.backoff, s.retryAt = 0, time.Time{}
	}
	close(s.changed)
	s.changed = make(chan struct{})
	s.mu.Unlock()
	switch {
	case err != nil && !cancelled:
		s.failed(err)
	case uploaded && err == nil:
		s.log.Debug("spool: uploaded", "key", f.key, "duration", time.Since(start))
	}
	if again {
		s.enqueue(f.key)
	}
}

// failed records a failure: uploads pause, for twice as long as after
// the previous failure in a row, and the spool is walked again then, to
// retry what failed. Failures of uploads that were already under way when
// the pause began do not lengthen it: the workers that fail together on
// an outage count as one failure.
func (s *Store) failed(err error) {
	s.mu.Lock()
	s.stats.Failures++
	s.stats.LastError = err
	if now := time.Now(); !now.Before(s.retryAt) {
		s.backoff = min(max(2*s.backoff, s.cfg.MinBackoff), s.cfg.MaxBackoff)
		s.retryAt = now.Add(s.backoff)
	}
	backoff := time.Until(s.retryAt).Round(time.Millisecond)
	s.mu.Unlock()
	s.rescan.Store(true)
	s.poke()
	s.log.Warn("spool: upload failed; the object stays in the spool and is tried again", "err", err, "retry_in", backoff)
}

// upload copies the object under key from the spool to the remote,
// verifies the copy, and removes the spool's copy. It reports whether it
// uploaded anything: the spool copy may be gone already.
func (s *Store) upload(ctx context.Context, key string) (bool, error) {
	obj, err := s.local.Open(ctx, key)
	if errors.Is(err, storage.ErrNotFound) {
		return false, nil
	}
	if err != nil {
		return false, fmt.Errorf("spool: upload: %w", err)
	}
	defer obj.Close()
	fi, err := statOf(obj)
	if err != nil {
		return false, err
	}
	size := obj.Size()
	h := sha256.New()
	info, err := s.remote.Put(ctx, key, io.TeeReader(obj, h), size)
	if err != nil {
		return false, fmt.Errorf("spool: upload %s: %w", key, err)
	}
	if info.Size != size {
		return false, fmt.Errorf("spool: upload %s: the remote stored %d bytes of %d", key, info.Size, size)
	}
	if err := s.verify(ctx, key, size, [sha256.Size]byte(h.Sum(nil))); err != nil {
		return false, err
	}
	return true, s.release(ctx, key, fi)
}

// verify reads the object under key back from the remote and checks that
// it is the size bytes whose SHA-256 is sum.
func (s *Store) verify(ctx context.Context, key string, size int64, sum [sha256.Size]byte) error {
	obj, err := s.remote.Open(ctx, key)
	if err != nil {
		return fmt.Errorf("spool: verify %s: %w", key, err)
	}
	defer obj.Close()
	got, n, err := hashOf(obj)
	if err != nil {
		return fmt.Errorf("spool: verify %s: %w", key, err)
	}
	if n != size || got != sum {
		return fmt.Errorf("spool: verify %s: the remote holds %d bytes of SHA-256 %x, but %d bytes of SHA-256 %x were sent", key, n, got, size, sum)
	}
	return nil
}

// release removes the spool copy of an uploaded object, if it is still
// the file fi that was uploaded: a Put that replaced it meanwhile has
// queued the new one. While a List runs it only notes the removal for
// later.
func (s *Store) release(ctx context.Context, key string, fi fs.FileInfo) error {
	unlock := s.keys.Lock(key)
	defer unlock()
	same, err := s.local.SameFile(key, fi)
	if err != nil {
		return fmt.Errorf("spool: uploaded %s, but: %w", key, err)
	}
	if !same {
		return nil
	}
	s.mu.Lock()
	if s.listing > 0 {
		s.deferred[key] = fi
		s.backlog.remove(key)
		s.mu.Unlock()
		return nil
	}
	s.mu.Unlock()
	// The object is safe in the remote: removing the copy is quick, and
	// not worth abandoning because Close cancels the upload now.
	if err := s.local.Delete(context.WithoutCancel(ctx), key); err != nil {
		s.recount(key)
		return fmt.Errorf("spool: uploaded %s, but removing the spool copy failed: %w", key, err)
	}
	s.mu.Lock()
	s.backlog.remove(key)
	s.mu.Unlock()
	return nil
}

// releaseDeferred removes the spool copies of uploaded objects that
// waited for the Lists in progress to end.
func (s *Store) releaseDeferred() {
	s.mu.Lock()
	if s.listing > 0 || len(s.deferred) == 0 {
		s.mu.Unlock()
		return
	}
	keys := make([]string, 0, len(s.deferred))
	for k := range s.deferred {
		keys = append(keys, k)
	}
	s.mu.Unlock()
	for _, key := range keys {
		unlock := s.keys.Lock(key)
		s.mu.Lock()
		if s.listing > 0 {
			s.mu.Unlock()
			unlock()
			return
		}
		fi, ok := s.deferred[key]
		delete(s.deferred, key)
		s.mu.Unlock()
		if ok {
			// If removal fails the object is merely uploaded once more,
			// and counts in the backlog again.
			if same, err := s.local.SameFile(key, fi); err == nil && same {
				if err := s.local.Delete(s.run, key); err != nil && s.run.Err() == nil {
					s.log.Warn("spool: removing the spool copy of an uploaded object failed", "key", key, "err", err)
				}
			}
			s.recount(key)
		}
		unlock()
	}
}
