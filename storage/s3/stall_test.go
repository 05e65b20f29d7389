package s3_test

import (
	"bytes"
	"errors"
	"io"
	"net"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/pacsd/pacsd/internal/testpeer"
	"github.com/pacsd/pacsd/storage"
	"github.com/pacsd/pacsd/storage/s3"
)

// freezer is a TCP proxy in front of an S3 server that can stop passing
// bytes in either direction, on the connections it has and on new ones,
// as a server that hangs does: connections stay open, nothing moves.
type freezer struct {
	ln     net.Listener
	target string
	frozen atomic.Bool

	mu    sync.Mutex
	conns []net.Conn
	wg    sync.WaitGroup
}

func newFreezer(t *testing.T, target string) *freezer {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	f := &freezer{ln: ln, target: target}
	f.wg.Go(f.serve)
	t.Cleanup(f.close)
	return f
}

func (f *freezer) addr() string { return f.ln.Addr().String() }

func (f *freezer) serve() {
	for {
		c, err := f.ln.Accept()
		if err != nil {
			return
		}
		up, err := net.Dial("tcp", f.target)
		if err != nil {
			c.Close()
			continue
		}
		f.mu.Lock()
		f.conns = append(f.conns, c, up)
		f.mu.Unlock()
		f.wg.Go(func() { f.pipe(up, c) })
		f.wg.Go(func() { f.pipe(c, up) })
	}
}

// pipe copies src to dst. A chunk read while the proxy is frozen is
// held until it thaws and then dropped with the connection, as a server
// that hung never processes what it took in; passing it on late would
// let a request the client gave up on complete after all.
func (f *freezer) pipe(dst, src net.Conn) {
	defer dst.Close()
	defer src.Close()
	buf := make([]byte, 32<<10)
	for {
		n, err := src.Read(buf)
		if n > 0 && f.frozen.Load() {
			for f.frozen.Load() {
				time.Sleep(10 * time.Millisecond)
			}
			return
		}
		if n > 0 {
			if _, werr := dst.Write(buf[:n]); werr != nil {
				return
			}
		}
		if err != nil {
			return
		}
	}
}

func (f *freezer) close() {
	f.frozen.Store(false)
	f.ln.Close()
	f.mu.Lock()
	for _, c := range f.conns {
		c.Close()
	}
	f.mu.Unlock()
	f.wg.Wait()
}

// TestStall checks that while the server hangs, taking requests and
// answering nothing, every operation fails with storage.ErrUnavailable
// within a bound set by StallTimeout and MaxRetries, and that the same
// Store works again once the server moves.
func TestStall(t *testing.T) {
	t.Parallel()
	srv := testpeer.StartMinIOT(t)
	proxy := newFreezer(t, srv.Endpoint)
	cfg := config(srv, freshBucket())
	cfg.Endpoint = proxy.addr()
	cfg.MaxRetries = 2
	const stall = 500 * time.Millisecond
	cfg.StallTimeout = stall
	s := newStore(t, cfg)
	ctx := t.Context()
	put(t, s, "kept", []byte("kept"))

	proxy.frozen.Store(true)
	// The single PUT is larger than what loopback buffers hold, so that
	// it is stuck mid-body, not waiting for the answer.
	data := bytes.Repeat([]byte("x"), 2*s3.DefaultPartSize)
	single := data[:s3.DefaultPartSize]
	ops := []struct {
		name string
		run  func() error
	}{
		{"Put of known size, one request", func() error {
			_, err := s.Put(ctx, "stall/single", bytes.NewReader(single), int64(len(single)))
			return err
		}},
		{"Put of known size, multipart", func() error {
			_, err := s.Put(ctx, "stall/multipart", bytes.NewReader(data), int64(len(data)))
			return err
		}},
		{"Put of unknown size", func() error {
			_, err := s.Put(ctx, "stall/unknown", bytes.NewReader(data[:64<<10]), -1)
			return err
		}},
		{"Stat", func() error { _, err := s.Stat(ctx, "kept"); return err }},
		{"Open", func() error {
			obj, err := s.Open(ctx, "kept")
			if err == nil {
				_, err = io.ReadAll(obj)
				obj.Close()
			}
			return err
		}},
	}
	for _, op := range ops {
		start := time.Now()
		err := op.run()
		took := time.Since(start)
		if !errors.Is(err, storage.ErrUnavailable) {
			t.Errorf("%s while the server hangs: %v, want an error wrapping %v", op.name, err, storage.ErrUnavailable)
		}
		// Two attempts of one stall each, minio-go's pause between
		// them, and a generous margin for a loaded machine.
		if limit := 2*stall + 5*time.Second; took > limit {
			t.Errorf("%s took %v to fail, more than %v", op.name, took, limit)
		}
		t.Logf("%s failed in %v: %v", op.name, took.Round(time.Millisecond), err)
	}

	proxy.frozen.Store(false)
	put(t, s, "after", []byte("after"))
	if _, err := s.Stat(ctx, "kept"); err != nil {
		t.Errorf("Stat after the server moves again: %v", err)
	}
	for _, key := range []string{"stall/single", "stall/multipart", "stall/unknown"} {
		if _, err := s.Stat(ctx, key); !errors.Is(err, storage.ErrNotFound) {
			t.Errorf("Stat %s, whose Put failed: %v, want %v", key, err, storage.ErrNotFound)
		}
	}
}

// TestStallTimeoutDoesNotLimitSlowProgress checks that a Put whose body
// moves slowly but steadily, and so takes many times StallTimeout, is not
// cut off: the timeout is on silence, not on the length of a request.
func TestStallTimeoutDoesNotLimitSlowProgress(t *testing.T) {
	t.Parallel()
	srv := testpeer.StartMinIOT(t)
	cfg := config(srv, freshBucket())
	// A pause of a fifth of the stall timeout leaves a loaded machine
	// (the tests run with -race, several packages at once) room to be
	// late without the timeout taking the Put for stalled.
	cfg.StallTimeout = time.Second
	s := newStore(t, cfg)
	const n = 1 << 20
	r := &slowReader{r: newGen(n, 7), pause: 200 * time.Millisecond, chunk: n / 30}
	start := time.Now()
	if _, err := s.Put(t.Context(), "slow", r, n); err != nil {
		t.Fatalf("slow Put: %v", err)
	}
	if took := time.Since(start); took < 5*cfg.StallTimeout {
		t.Fatalf("the slow Put took only %v; the test proves nothing", took)
	}
	if sum, size := readSum(t, s, "slow"); size != n || sum != genSum(n, 7) {
		t.Errorf("slow object reads back as %d bytes with another SHA-256", size)
	}
}

// slowReader yields r in chunks, pausing before each.
type slowReader struct {
	r     io.Reader
	pause time.Duration
	chunk int
}

func (s *slowReader) Read(p []byte) (int, error) {
	time.Sleep(s.pause)
	return s.r.Read(p[:min(len(p), s.chunk)])
}
