package s3_test

import (
	"bytes"
	"crypto/sha256"
	"errors"
	"testing"
	"time"

	"github.com/pacsd/pacsd/internal/testpeer"
	"github.com/pacsd/pacsd/storage"
)

// TestUnavailable checks that while the server is down every operation
// fails with an error wrapping storage.ErrUnavailable, which the archive
// turns into a temporary failure for the sender, within a bound set by
// MaxRetries rather than hanging, and that the Store serves again once the
// server is back.
func TestUnavailable(t *testing.T) {
	t.Parallel()
	forEachServer(t, func(t *testing.T, srv *testpeer.S3Server) {
		ctx := t.Context()
		for _, retries := range []int{0, 2} {
			cfg := config(srv, freshBucket())
			cfg.MaxRetries = retries
			s := newStore(t, cfg)
			put(t, s, "kept", []byte("kept"))
			if err := srv.Stop(); err != nil {
				t.Fatal(err)
			}
			data := bytes.Repeat([]byte("x"), 64<<10)
			ops := []struct {
				name string
				run  func() error
			}{
				{"Put of known size", func() error {
					_, err := s.Put(ctx, "down/known", bytes.NewReader(data), int64(len(data)))
					return err
				}},
				{"Put of unknown size", func() error {
					_, err := s.Put(ctx, "down/unknown", bytes.NewReader(data), -1)
					return err
				}},
				{"Stat", func() error { _, err := s.Stat(ctx, "kept"); return err }},
				{"Open", func() error {
					obj, err := s.Open(ctx, "kept")
					if err == nil {
						obj.Close()
					}
					return err
				}},
				{"Delete", func() error { return s.Delete(ctx, "kept") }},
				{"List", func() error {
					for _, err := range s.List(ctx, "") {
						return err
					}
					return errors.New("List yielded nothing")
				}},
			}
			if retries == 0 {
				// minio-go's default is slow to give up; the archive's
				// own path, a Put of unknown size, is enough to bound it.
				ops = ops[1:2]
			}
			for _, op := range ops {
				start := time.Now()
				err := op.run()
				took := time.Since(start)
				if !errors.Is(err, storage.ErrUnavailable) || errors.Is(err, storage.ErrNotFound) {
					t.Errorf("MaxRetries %d: %s while the server is down: %v, want an error wrapping %v", retries, op.name, err, storage.ErrUnavailable)
				}
				// minio-go's pauses between attempts grow to a second, so
				// its default of 10 attempts takes about 8 s at most.
				if limit := 15 * time.Second; took > limit {
					t.Errorf("MaxRetries %d: %s took %v to fail, more than %v", retries, op.name, took, limit)
				}
				t.Logf("MaxRetries %d: %s failed in %v", retries, op.name, took.Round(time.Millisecond))
			}
			if err := srv.Restart(ctx); err != nil {
				t.Fatal(err)
			}
			if sum, n := readSum(t, s, "kept"); n != 4 || sum != sha256.Sum256([]byte("kept")) {
				t.Errorf("after the restart the object reads back as %d other bytes", n)
			}
			put(t, s, "after", []byte("after"))
		}
	})
}
