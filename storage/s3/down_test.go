package s3_test

import (
	"bytes"
	"crypto/sha256"
	"errors"
	"io"
	"strings"
	"testing"
	"time"

	"github.com/pacsd/pacsd/internal/testpeer"
	"github.com/pacsd/pacsd/storage"
	"github.com/pacsd/pacsd/storage/s3"
)

// pausingReader yields r, but after pauseAt bytes closes paused and waits
// for resume before it goes on.
type pausingReader struct {
	r       io.Reader
	pauseAt int64
	paused  chan struct{}
	resume  chan struct{}
	n       int64
}

func newPausingReader(r io.Reader, pauseAt int64) *pausingReader {
	return &pausingReader{r: r, pauseAt: pauseAt, paused: make(chan struct{}), resume: make(chan struct{})}
}

func (p *pausingReader) Read(b []byte) (int, error) {
	if p.n == p.pauseAt {
		close(p.paused)
		<-p.resume
		p.n++ // never pause again
	}
	if p.n < p.pauseAt {
		b = b[:min(int64(len(b)), p.pauseAt-p.n)]
	}
	n, err := p.r.Read(b)
	p.n += int64(n)
	return n, err
}

// TestServerDown checks that a Put during which the server dies fails and
// leaves nothing visible, that every operation fails while the server is
// down, none of them with ErrNotFound, and that the same Store works again
// once the server is back.
func TestServerDown(t *testing.T) {
	t.Parallel()
	forEachServer(t, func(t *testing.T, srv *testpeer.S3Server) {
		cfg := config(srv, freshBucket())
		cfg.PartSize = s3.MinPartSize
		// Fewer retries than the default keep a failing request from
		// waiting several seconds for a server that is gone.
		cfg.MaxRetries = 2
		s := newStore(t, cfg)
		ctx := t.Context()
		before := bytes.Repeat([]byte("before"), 100<<10)
		put(t, s, "before", before)

		restart := func() {
			t.Helper()
			if err := srv.Restart(ctx); err != nil {
				t.Fatal(err)
			}
		}
		// crash starts a Put of r, kills the server once r has paused, lets
		// r go on and returns the Put's error.
		crash := func(key string, r *pausingReader, size int64) error {
			t.Helper()
			errc := make(chan error, 1)
			go func() {
				_, err := s.Put(ctx, key, r, size)
				errc <- err
			}()
			select {
			case <-r.paused:
			case err := <-errc:
				t.Fatalf("Put %s ended before its reader paused: %v", key, err)
			}
			// SIGKILL, as a crash or power cut would end the server: a
			// clean shutdown would wait for the request in progress.
			if err := srv.Process().Kill(); err != nil {
				t.Fatal(err)
			}
			close(r.resume)
			return <-errc
		}

		// A multipart upload whose server dies after two parts.
		const ps = s3.MinPartSize
		err := crash("mid/multipart", newPausingReader(newGen(3*ps, 1), 2*ps+ps/2), -1)
		if err == nil {
			t.Errorf("multipart Put during which the server died succeeded")
		} else if !strings.Contains(err.Error(), "abort") {
			t.Errorf("multipart Put failed with %v, which does not say the upload could not be aborted", err)
		}
		restart()
		// A single streaming PUT whose server dies in the middle of the
		// body.
		if err := crash("mid/single", newPausingReader(newGen(1<<20, 2), 256<<10), 1<<20); err == nil {
			t.Errorf("Put during which the server died succeeded")
		}
		restart()
		for _, key := range []string{"mid/multipart", "mid/single"} {
			if _, err := s.Stat(ctx, key); !errors.Is(err, storage.ErrNotFound) {
				t.Errorf("Stat %s after the crash: %v, want %v", key, err, storage.ErrNotFound)
			}
		}
		for info, err := range s.List(ctx, "mid/") {
			t.Errorf("List after the crash yielded %+v, %v", info, err)
		}
		// The upload that could not be aborted stays on the server,
		// invisible: the package documentation asks for a lifecycle rule.
		t.Logf("incomplete uploads after the crash: %q", incompleteUploads(t, srv, cfg.Bucket))

		// While the server is down, everything fails, quickly, and
		// nothing says an object is missing.
		if err := srv.Stop(); err != nil {
			t.Fatal(err)
		}
		start := time.Now()
		down := func(op string, err error) {
			t.Helper()
			if err == nil || errors.Is(err, storage.ErrNotFound) {
				t.Errorf("%s while the server is down: %v, want an error other than %v", op, err, storage.ErrNotFound)
			}
		}
		_, err = s.Put(ctx, "down/known", bytes.NewReader(before), int64(len(before)))
		down("Put of known size", err)
		_, err = s.Put(ctx, "down/unknown", bytes.NewReader(before), -1)
		down("Put of unknown size", err)
		_, err = s.Put(ctx, "down/multipart", newGen(2*ps+1, 3), -1)
		down("multipart Put", err)
		_, err = s.Stat(ctx, "before")
		down("Stat", err)
		_, err = s.Stat(ctx, "missing")
		down("Stat of a missing key", err)
		obj, err := s.Open(ctx, "before")
		down("Open", err)
		if err == nil {
			obj.Close()
		}
		down("Delete", s.Delete(ctx, "before"))
		var listed bool
		for _, err := range s.List(ctx, "") {
			down("List", err)
			listed = true
		}
		if !listed {
			t.Errorf("List while the server is down yielded nothing, not even an error")
		}
		t.Logf("%d operations failed in %v while the server was down", 9, time.Since(start).Round(time.Millisecond))

		// Back up: the same Store works, and the object put before is
		// intact.
		restart()
		if sum, n := readSum(t, s, "before"); n != int64(len(before)) || sum != sha256.Sum256(before) {
			t.Errorf("the object put before the server went down reads back as %d other bytes", n)
		}
		put(t, s, "after", []byte("after"))
		if _, err := s.Put(ctx, "after-multipart", newGen(2*ps+1, 4), -1); err != nil {
			t.Errorf("multipart Put after the restart: %v", err)
		}
		var keys []string
		for info, err := range s.List(ctx, "") {
			if err != nil {
				t.Fatal(err)
			}
			keys = append(keys, info.Key)
		}
		if want := "after after-multipart before"; strings.Join(keys, " ") != want {
			t.Errorf("List after the restart = %q, want %q", keys, want)
		}
	})
}
