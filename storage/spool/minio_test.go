package spool_test

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"testing"
	"time"

	"github.com/pacsd/pacsd/internal/testpeer"
	"github.com/pacsd/pacsd/storage"
	"github.com/pacsd/pacsd/storage/s3"
	"github.com/pacsd/pacsd/storage/storagetest"
)

// bucketOn returns a Store on a new bucket of srv, failing fast while the
// server is down as the spool wants its remote to.
func bucketOn(t testing.TB, srv *testpeer.S3Server) *s3.Store {
	t.Helper()
	var b [8]byte
	rand.Read(b[:])
	cfg := s3.Config{
		Endpoint:  srv.Endpoint,
		Region:    srv.Region,
		Bucket:    "pacsd-spool-" + hex.EncodeToString(b[:]),
		AccessKey: srv.AccessKey,
		SecretKey: srv.SecretKey,
	}
	// The bucket is made with minio-go's patient default, which rides
	// out a server still starting up.
	if _, err := s3.New(t.Context(), cfg); err != nil {
		t.Fatal(err)
	}
	cfg.MaxRetries = 1
	st, err := s3.New(t.Context(), cfg)
	if err != nil {
		t.Fatal(err)
	}
	return st
}

// TestMinIO runs the conformance suite on a spool over MinIO.
func TestMinIO(t *testing.T) {
	t.Parallel()
	srv := testpeer.StartMinIOT(t)
	storagetest.Run(t, func(t *testing.T) storage.Store {
		return newSpool(t, t.TempDir(), bucketOn(t, srv))
	})
}

// TestMinIOOutage stops MinIO, puts objects (which must succeed, into the
// spool), restarts MinIO and checks that they all drain into the bucket
// byte for byte, and that a spool reopened after a stop during the outage
// uploads what the first one left.
func TestMinIOOutage(t *testing.T) {
	t.Parallel()
	srv := testpeer.StartMinIOT(t)
	remote := bucketOn(t, srv)
	ctx := t.Context()
	dir := t.TempDir()
	s := newSpool(t, dir, remote)

	if err := srv.Stop(); err != nil {
		t.Fatal(err)
	}
	const n = 40
	want := map[string][]byte{}
	start := time.Now()
	for i := range n {
		key := fmt.Sprintf("1.2.3/1.2.3.4/1.2.3.4.%d.dcm", i)
		// Sizes on both sides of 5 MiB, the smallest multipart part.
		size := 1000 + i*7919
		if i%10 == 0 {
			size = 6<<20 + i
		}
		data := make([]byte, size)
		rand.Read(data)
		want[key] = data
		if _, err := s.Put(ctx, key, bytes.NewReader(data), -1); err != nil {
			t.Fatalf("Put %s while MinIO is down: %v", key, err)
		}
	}
	t.Logf("%d Puts while MinIO was down took %v", n, time.Since(start).Round(time.Millisecond))
	for key, data := range want {
		if ok, err := s.Uploaded(ctx, key); ok || err != nil {
			t.Errorf("Uploaded(%s) = %t, %v while MinIO is down", key, ok, err)
		}
		if got := read(t, s, key); !bytes.Equal(got, data) {
			t.Errorf("%s reads back %d other bytes from the spool", key, len(got))
		}
	}
	// Close with some objects never uploaded; a new spool on the same
	// directory must take them over.
	cctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	s.Close(cctx)
	cancel()
	if got := len(spooled(t, dir)); got != n {
		t.Fatalf("spool holds %d objects after Close, want %d", got, n)
	}
	s2 := newSpool(t, dir, remote)
	time.Sleep(200 * time.Millisecond)

	if err := srv.Restart(ctx); err != nil {
		t.Fatal(err)
	}
	start = time.Now()
	flush(t, s2)
	t.Logf("drained %d objects in %v after MinIO came back (%+v)", n, time.Since(start).Round(time.Millisecond), s2.Stats())
	if keys := spooled(t, dir); len(keys) != 0 {
		t.Errorf("spool still holds %q", keys)
	}
	for key, data := range want {
		if got := read(t, remote, key); !bytes.Equal(got, data) {
			t.Errorf("%s: the bucket holds %d other bytes", key, len(got))
		}
		if ok, err := s2.Uploaded(ctx, key); !ok || err != nil {
			t.Errorf("Uploaded(%s) = %t, %v after the drain", key, ok, err)
		}
	}
}
