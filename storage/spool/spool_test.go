package spool_test

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"iter"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/pacsd/pacsd/storage"
	"github.com/pacsd/pacsd/storage/mem"
	"github.com/pacsd/pacsd/storage/spool"
	"github.com/pacsd/pacsd/storage/storagetest"
)

// newSpool opens a spool on dir over remote with short pauses, closed
// when the test ends.
func newSpool(t testing.TB, dir string, remote storage.Store) *spool.Store {
	t.Helper()
	s, err := spool.New(spool.Config{
		Dir:            dir,
		Remote:         remote,
		MinBackoff:     10 * time.Millisecond,
		MaxBackoff:     200 * time.Millisecond,
		RescanInterval: time.Second,
	})
	if err != nil {
		t.Fatalf("New: %v", err)
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		if err := s.Close(ctx); err != nil && !errors.Is(err, context.DeadlineExceeded) {
			t.Errorf("Close: %v", err)
		}
	})
	return s
}

// TestStore runs the conformance suite on a spool over an in-memory
// remote, with the uploader moving objects while the suite works.
func TestStore(t *testing.T) {
	storagetest.Run(t, func(t *testing.T) storage.Store {
		return newSpool(t, t.TempDir(), mem.New())
	})
}

// TestStoreNoUpload runs the suite while every upload fails, so that
// every object is read from the spool.
func TestStoreNoUpload(t *testing.T) {
	storagetest.Run(t, func(t *testing.T) storage.Store {
		r := newRemote()
		r.failPuts.Store(true)
		return newSpool(t, t.TempDir(), r)
	})
}

// remote is an in-memory remote whose Puts can be made to fail, to wait
// at a gate, or to store other bytes than they were given.
type remote struct {
	*mem.Store
	failPuts atomic.Bool
	corrupt  atomic.Bool
	puts     atomic.Int64

	mu      sync.Mutex
	gate    chan struct{} // if not nil, Puts wait for it to close
	entered chan string   // if not nil, receives the key of each Put at the gate
}

func newRemote() *remote { return &remote{Store: mem.New()} }

var errDown = fmt.Errorf("test remote down: %w", storage.ErrUnavailable)

func (r *remote) Put(ctx context.Context, key string, rd io.Reader, size int64) (storage.Info, error) {
	r.puts.Add(1)
	r.mu.Lock()
	gate, entered := r.gate, r.entered
	r.mu.Unlock()
	if gate != nil {
		if entered != nil {
			entered <- key
		}
		select {
		case <-gate:
		case <-ctx.Done():
			return storage.Info{}, ctx.Err()
		}
	}
	if r.failPuts.Load() {
		return storage.Info{}, errDown
	}
	if r.corrupt.Load() {
		b, err := io.ReadAll(rd)
		if err != nil {
			return storage.Info{}, err
		}
		b[len(b)/2] ^= 1
		return r.Store.Put(ctx, key, bytes.NewReader(b), int64(len(b)))
	}
	return r.Store.Put(ctx, key, rd, size)
}

// block makes Puts wait until the returned function is called, and
// reports each key that waits on the returned channel.
func (r *remote) block() (entered <-chan string, release func()) {
	gate, ch := make(chan struct{}), make(chan string, 100)
	r.mu.Lock()
	r.gate, r.entered = gate, ch
	r.mu.Unlock()
	return ch, sync.OnceFunc(func() {
		r.mu.Lock()
		r.gate, r.entered = nil, nil
		r.mu.Unlock()
		close(gate)
	})
}

func put(t testing.TB, s storage.Store, key string, data []byte) {
	t.Helper()
	if _, err := s.Put(t.Context(), key, bytes.NewReader(data), int64(len(data))); err != nil {
		t.Fatalf("Put %s: %v", key, err)
	}
}

func read(t testing.TB, s storage.Store, key string) []byte {
	t.Helper()
	obj, err := s.Open(t.Context(), key)
	if err != nil {
		t.Fatalf("Open %s: %v", key, err)
	}
	defer obj.Close()
	b, err := io.ReadAll(obj)
	if err != nil {
		t.Fatalf("reading %s: %v", key, err)
	}
	return b
}

func flush(t testing.TB, s *spool.Store) {
	t.Helper()
	// Generous: a loaded machine running the tests with -race uploads
	// slowly, and a flush that is slow is no failure.
	ctx, cancel := context.WithTimeout(t.Context(), 2*time.Minute)
	defer cancel()
	if err := s.Flush(ctx); err != nil {
		t.Fatalf("Flush: %v (stats %+v)", err, s.Stats())
	}
}

// spooled returns the keys of the files in the spool directory.
func spooled(t testing.TB, dir string) []string {
	t.Helper()
	var keys []string
	err := filepath.WalkDir(dir, func(p string, d os.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if d.Type().IsRegular() {
			rel, _ := filepath.Rel(dir, p)
			keys = append(keys, filepath.ToSlash(rel))
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return keys
}

// waitFor waits up to 10 seconds for cond to hold.
func waitFor(t testing.TB, cond func() bool) {
	t.Helper()
	for deadline := time.Now().Add(10 * time.Second); !cond() && time.Now().Before(deadline); {
		time.Sleep(5 * time.Millisecond)
	}
}

func uploaded(t testing.TB, s *spool.Store, key string) bool {
	t.Helper()
	ok, err := s.Uploaded(t.Context(), key)
	if err != nil {
		t.Fatalf("Uploaded %s: %v", key, err)
	}
	return ok
}

func TestUploads(t *testing.T) {
	dir, r := t.TempDir(), newRemote()
	s := newSpool(t, dir, r)
	data := map[string][]byte{}
	for i := range 20 {
		key := fmt.Sprintf("study/series/%02d.dcm", i)
		data[key] = bytes.Repeat([]byte{byte(i)}, 1000+i)
		put(t, s, key, data[key])
	}
	flush(t, s)
	for key, want := range data {
		if got := read(t, r.Store, key); !bytes.Equal(got, want) {
			t.Errorf("%s: the remote holds %d other bytes", key, len(got))
		}
		if !uploaded(t, s, key) {
			t.Errorf("Uploaded(%s) = false after Flush", key)
		}
	}
	if keys := spooled(t, dir); len(keys) != 0 {
		t.Errorf("spool still holds %q", keys)
	}
	waitFor(t, func() bool { return s.Stats().Uploaded == 20 })
	if st := s.Stats(); st.Uploaded != 20 || st.Failures != 0 {
		t.Errorf("Stats = %+v, want 20 uploads and no failures", st)
	}
	if _, err := s.Uploaded(t.Context(), "missing"); !errors.Is(err, storage.ErrNotFound) {
		t.Errorf("Uploaded of a missing key: %v, want %v", err, storage.ErrNotFound)
	}
}

// TestRemoteDown checks that Puts succeed while the remote fails, that
// the objects are served from the spool meanwhile and are not reported
// uploaded, that the uploader does not hammer the remote, and that
// everything drains once the remote is back.
func TestRemoteDown(t *testing.T) {
	dir, r := t.TempDir(), newRemote()
	r.failPuts.Store(true)
	s := newSpool(t, dir, r)
	for i := range 10 {
		put(t, s, fmt.Sprintf("k/%d", i), []byte(fmt.Sprint("object ", i)))
	}
	time.Sleep(500 * time.Millisecond)
	for i := range 10 {
		key := fmt.Sprintf("k/%d", i)
		if got := string(read(t, s, key)); got != fmt.Sprint("object ", i) {
			t.Errorf("%s reads %q from the spool", key, got)
		}
		if uploaded(t, s, key) {
			t.Errorf("Uploaded(%s) = true while the remote is down", key)
		}
	}
	st := s.Stats()
	if st.Failures == 0 || !errors.Is(st.LastError, storage.ErrUnavailable) {
		t.Errorf("Stats while the remote is down = %+v", st)
	}
	// Pauses from 10 ms doubling to 200 ms allow about a dozen attempts
	// in half a second, not one per object per pass.
	if n := r.puts.Load(); n > 20 {
		t.Errorf("%d upload attempts in half a second while the remote is down", n)
	}
	if n, err := s.Pending(t.Context()); n != 10 || err != nil {
		t.Errorf("Pending = %d, %v; want 10", n, err)
	}
	// "object 0" to "object 9": 8 bytes each.
	if n, size, err := s.Backlog(t.Context()); n != 10 || size != 80 || err != nil {
		t.Errorf("Backlog = %d objects, %d bytes, %v; want 10 and 80", n, size, err)
	}
	r.failPuts.Store(false)
	flush(t, s)
	if n, size, err := s.Backlog(t.Context()); n != 0 || size != 0 || err != nil {
		t.Errorf("Backlog after Flush = %d objects, %d bytes, %v; want none", n, size, err)
	}
	if keys := spooled(t, dir); len(keys) != 0 {
		t.Errorf("spool still holds %q", keys)
	}
	// The counts follow the removal of the spool copy that Flush sees.
	waitFor(t, func() bool { return s.Stats().Uploaded == 10 })
	if st := s.Stats(); st.Uploaded != 10 || st.LastError != nil {
		t.Errorf("Stats after recovery = %+v", st)
	}
}

// TestRestart checks that a spool opened on the directory of one that was
// closed with objects still in it uploads them, and that a directory is
// locked while a spool has it open.
func TestRestart(t *testing.T) {
	dir, r := t.TempDir(), newRemote()
	r.failPuts.Store(true)
	s1, err := spool.New(spool.Config{Dir: dir, Remote: r, MinBackoff: time.Hour})
	if err != nil {
		t.Fatal(err)
	}
	for i := range 5 {
		put(t, s1, fmt.Sprintf("left/%d", i), []byte(fmt.Sprint("left ", i)))
	}
	if _, err := spool.New(spool.Config{Dir: dir, Remote: r}); !errors.Is(err, spool.ErrLocked) {
		t.Errorf("second New on a locked directory: %v, want %v", err, spool.ErrLocked)
	}
	if err := s1.Close(t.Context()); err != nil {
		t.Fatal(err)
	}
	if _, err := s1.Put(t.Context(), "late", strings.NewReader("x"), 1); !errors.Is(err, spool.ErrClosed) {
		t.Errorf("Put after Close: %v, want %v", err, spool.ErrClosed)
	}
	// A temporary file of a Put cut short by a crash is not an object.
	if err := os.WriteFile(filepath.Join(dir, "left", ".put~0123456789abcdef"), []byte("partial"), 0o644); err != nil {
		t.Fatal(err)
	}
	if keys := spooled(t, dir); len(keys) != 6 {
		t.Fatalf("spool holds %q after the first Store", keys)
	}
	r.failPuts.Store(false)
	s2 := newSpool(t, dir, r)
	flush(t, s2)
	for i := range 5 {
		key := fmt.Sprintf("left/%d", i)
		if got := string(read(t, r.Store, key)); got != fmt.Sprint("left ", i) {
			t.Errorf("%s: the remote holds %q", key, got)
		}
	}
	if keys := spooled(t, dir); len(keys) != 0 {
		t.Errorf("spool still holds %q", keys)
	}
}

// TestReplaceDuringUpload puts a new object under a key whose upload is
// in progress: the spool must not remove the new object when the old
// one's upload completes, and the remote must end with the new one.
func TestReplaceDuringUpload(t *testing.T) {
	dir, r := t.TempDir(), newRemote()
	entered, release := r.block()
	s := newSpool(t, dir, r)
	put(t, s, "k", []byte("old"))
	<-entered
	put(t, s, "k", []byte("new"))
	release()
	flush(t, s)
	if got := string(read(t, r.Store, "k")); got != "new" {
		t.Errorf("the remote holds %q, want the new object", got)
	}
	if got := string(read(t, s, "k")); got != "new" {
		t.Errorf("the spool serves %q, want the new object", got)
	}
}

// TestDeleteDuringUpload deletes a key whose upload is in progress: Delete
// waits for the upload to end, and the upload does not put the object
// back in the remote afterwards.
func TestDeleteDuringUpload(t *testing.T) {
	dir, r := t.TempDir(), newRemote()
	entered, release := r.block()
	defer release()
	s := newSpool(t, dir, r)
	put(t, s, "k", []byte("doomed"))
	<-entered
	deleted := make(chan error, 1)
	go func() { deleted <- s.Delete(t.Context(), "k") }()
	select {
	case err := <-deleted:
		t.Fatalf("Delete returned while the upload was under way: %v", err)
	case <-time.After(50 * time.Millisecond):
	}
	release()
	if err := <-deleted; err != nil {
		t.Fatalf("Delete: %v", err)
	}
	flush(t, s)
	for _, st := range []storage.Store{s, r.Store} {
		if _, err := st.Stat(t.Context(), "k"); !errors.Is(err, storage.ErrNotFound) {
			t.Errorf("Stat after Delete: %v, want %v", err, storage.ErrNotFound)
		}
	}
}

// TestCorruptUpload checks that an upload the remote does not store
// faithfully is never taken for done: the spool keeps its copy.
func TestCorruptUpload(t *testing.T) {
	dir, r := t.TempDir(), newRemote()
	r.corrupt.Store(true)
	s := newSpool(t, dir, r)
	put(t, s, "k", bytes.Repeat([]byte("pacsd"), 100))
	deadline := time.Now().Add(10 * time.Second)
	for s.Stats().Failures < 2 && time.Now().Before(deadline) {
		time.Sleep(10 * time.Millisecond)
	}
	if st := s.Stats(); st.Failures < 2 || !strings.Contains(fmt.Sprint(st.LastError), "SHA-256") {
		t.Fatalf("Stats = %+v, want failed verifications", st)
	}
	if uploaded(t, s, "k") {
		t.Errorf("Uploaded = true for an object the remote corrupted")
	}
	if keys := spooled(t, dir); len(keys) != 1 {
		t.Errorf("spool holds %q, want the object kept", keys)
	}
	r.corrupt.Store(false)
	flush(t, s)
	if got := read(t, r.Store, "k"); !bytes.Equal(got, bytes.Repeat([]byte("pacsd"), 100)) {
		t.Errorf("the remote holds %q", got)
	}
}

// TestListDuringUpload checks that an object uploaded while a List runs
// is listed, whichever listing it was in, and that its spool copy goes
// once the List is over.
func TestListDuringUpload(t *testing.T) {
	dir, r := t.TempDir(), newRemote()
	entered, release := r.block()
	s := newSpool(t, dir, r)
	for _, k := range []string{"a", "b", "c"} {
		put(t, s, k, []byte(k))
	}
	next, stop := iter.Pull2(s.List(t.Context(), ""))
	info, err, ok := next()
	if !ok || err != nil || info.Key != "a" {
		t.Fatalf("first of List = %+v, %v, %t", info, err, ok)
	}
	<-entered
	release()
	// Every upload completes while the List is halfway.
	deadline := time.Now().Add(10 * time.Second)
	for s.Stats().Uploaded < 3 && time.Now().Before(deadline) {
		time.Sleep(10 * time.Millisecond)
	}
	if s.Stats().Uploaded != 3 {
		t.Fatalf("Stats = %+v, want 3 uploads", s.Stats())
	}
	if !uploaded(t, s, "b") {
		t.Errorf("Uploaded(b) = false once uploaded, while its spool copy waits for the List")
	}
	var keys []string
	for {
		info, err, ok := next()
		if !ok {
			break
		}
		if err != nil {
			t.Fatal(err)
		}
		keys = append(keys, info.Key)
	}
	stop()
	if strings.Join(keys, " ") != "b c" {
		t.Errorf("List went on with %q, want b c", keys)
	}
	flush(t, s)
	deadline = time.Now().Add(10 * time.Second)
	for len(spooled(t, dir)) > 0 && time.Now().Before(deadline) {
		time.Sleep(10 * time.Millisecond)
	}
	if keys := spooled(t, dir); len(keys) != 0 {
		t.Errorf("spool still holds %q after the List", keys)
	}
}

// TestCloseCancelsUploads checks that Close waits for uploads in progress
// only as long as its context allows, and leaves their objects in the
// spool.
func TestCloseCancelsUploads(t *testing.T) {
	dir, r := t.TempDir(), newRemote()
	entered, release := r.block()
	defer release()
	s, err := spool.New(spool.Config{Dir: dir, Remote: r})
	if err != nil {
		t.Fatal(err)
	}
	put(t, s, "k", []byte("kept"))
	<-entered
	ctx, cancel := context.WithTimeout(t.Context(), 100*time.Millisecond)
	defer cancel()
	start := time.Now()
	if err := s.Close(ctx); !errors.Is(err, context.DeadlineExceeded) {
		t.Errorf("Close = %v, want %v", err, context.DeadlineExceeded)
	}
	if d := time.Since(start); d > 5*time.Second {
		t.Errorf("Close took %v", d)
	}
	if keys := spooled(t, dir); len(keys) != 1 {
		t.Errorf("spool holds %q after Close, want the object kept", keys)
	}
}

// TestReadOnly checks the read-only Store: it reads both places, writes
// nothing and uploads nothing, and does not need the lock.
func TestReadOnly(t *testing.T) {
	dir, r := t.TempDir(), newRemote()
	r.failPuts.Store(true)
	w := newSpool(t, dir, r)
	put(t, w, "spooled", []byte("in the spool"))
	put(t, r.Store, "remote", []byte("in the remote"))
	ro, err := spool.New(spool.Config{Dir: dir, Remote: r, ReadOnly: true})
	if err != nil {
		t.Fatalf("read-only New beside a writer: %v", err)
	}
	defer ro.Close(t.Context())
	if got := string(read(t, ro, "spooled")) + "," + string(read(t, ro, "remote")); got != "in the spool,in the remote" {
		t.Errorf("read-only reads %q", got)
	}
	var keys []string
	for info, err := range ro.List(t.Context(), "") {
		if err != nil {
			t.Fatal(err)
		}
		keys = append(keys, info.Key)
	}
	if strings.Join(keys, " ") != "remote spooled" {
		t.Errorf("read-only List = %q", keys)
	}
	if _, err := ro.Put(t.Context(), "x", strings.NewReader("x"), 1); !errors.Is(err, spool.ErrReadOnly) {
		t.Errorf("read-only Put: %v", err)
	}
	if err := ro.Delete(t.Context(), "spooled"); !errors.Is(err, spool.ErrReadOnly) {
		t.Errorf("read-only Delete: %v", err)
	}
}

// TestConcurrentPuts puts many objects from many goroutines, some keys
// several times, while the uploader runs, and checks that the remote ends
// with the last object of every key.
func TestConcurrentPuts(t *testing.T) {
	dir, r := t.TempDir(), newRemote()
	s := newSpool(t, dir, r)
	var wg sync.WaitGroup
	for g := range 8 {
		wg.Go(func() {
			for i := range 50 {
				key := fmt.Sprintf("g%d/k%d", g, i%10)
				data := fmt.Appendf(nil, "g%d i%d", g, i)
				if _, err := s.Put(t.Context(), key, bytes.NewReader(data), -1); err != nil {
					t.Errorf("Put: %v", err)
				}
			}
		})
	}
	wg.Wait()
	flush(t, s)
	for g := range 8 {
		for k := range 10 {
			key := fmt.Sprintf("g%d/k%d", g, k)
			want := fmt.Sprintf("g%d i%d", g, 40+k)
			if got := string(read(t, r.Store, key)); got != want {
				t.Errorf("%s: remote holds %q, want %q", key, got, want)
			}
		}
	}
	if keys := spooled(t, dir); len(keys) != 0 {
		t.Errorf("spool still holds %q", keys)
	}
}

// walked counts the backlog of the spool directory dir by walking it,
// through a read-only Store.
func walked(t testing.TB, dir string, r storage.Store) (int, int64) {
	t.Helper()
	ro, err := spool.New(spool.Config{Dir: dir, Remote: r, ReadOnly: true})
	if err != nil {
		t.Fatal(err)
	}
	defer ro.Close(t.Context())
	n, size, err := ro.Backlog(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	return n, size
}

// TestBacklog checks the running backlog against what the spool
// directory holds after each kind of change: a Put, a Put over an
// object, a Delete, an upload, and a new Store on the directory.
func TestBacklog(t *testing.T) {
	dir, r := t.TempDir(), newRemote()
	r.failPuts.Store(true)
	s, err := spool.New(spool.Config{Dir: dir, Remote: r, MinBackoff: time.Hour})
	if err != nil {
		t.Fatal(err)
	}
	check := func(step string, wantN int, wantSize int64) {
		t.Helper()
		n, size, err := s.Backlog(t.Context())
		if err != nil || n != wantN || size != wantSize {
			t.Errorf("%s: Backlog = %d objects, %d bytes, %v; want %d, %d", step, n, size, err, wantN, wantSize)
		}
		if wn, wsize := walked(t, dir, r); wn != n || wsize != size {
			t.Errorf("%s: Backlog = %d objects, %d bytes; the directory holds %d, %d", step, n, size, wn, wsize)
		}
	}
	check("empty", 0, 0)
	put(t, s, "a/1", []byte("abc"))
	put(t, s, "a/2", []byte("defgh"))
	check("two Puts", 2, 8)
	put(t, s, "a/1", []byte("0123456789"))
	check("a Put over an object", 2, 15)
	if err := s.Delete(t.Context(), "a/2"); err != nil {
		t.Fatal(err)
	}
	check("a Delete", 1, 10)
	if err := s.Delete(t.Context(), "a/2"); err != nil && !errors.Is(err, storage.ErrNotFound) {
		t.Fatal(err)
	}
	check("a Delete of nothing", 1, 10)
	put(t, s, "b", []byte("xy"))
	if err := s.Close(t.Context()); err != nil {
		t.Fatal(err)
	}

	// A new Store counts what the directory holds.
	s = newSpool(t, dir, r)
	check("a new Store", 2, 12)
	r.failPuts.Store(false)
	flush(t, s)
	check("after the uploads", 0, 0)
}

// TestBacklogConcurrent puts, replaces and deletes objects from several
// goroutines while the uploader runs and Lists hold uploaded copies
// back; once all is uploaded the backlog must be empty, and while
// uploads fail it must be what the directory holds.
func TestBacklogConcurrent(t *testing.T) {
	for _, down := range []bool{false, true} {
		t.Run(fmt.Sprintf("remote down %v", down), func(t *testing.T) {
			dir, r := t.TempDir(), newRemote()
			r.failPuts.Store(down)
			s := newSpool(t, dir, r)
			var wg sync.WaitGroup
			for g := range 4 {
				wg.Go(func() {
					for i := range 40 {
						key := fmt.Sprintf("g%d/k%d", g, i%7)
						if i%5 == 4 {
							if err := s.Delete(t.Context(), key); err != nil && !errors.Is(err, storage.ErrNotFound) {
								t.Errorf("Delete: %v", err)
							}
							continue
						}
						if _, err := s.Put(t.Context(), key, bytes.NewReader(bytes.Repeat([]byte("x"), i+1)), -1); err != nil {
							t.Errorf("Put: %v", err)
						}
					}
				})
			}
			wg.Go(func() {
				for range 20 {
					for _, err := range s.List(t.Context(), "") {
						if err != nil {
							t.Errorf("List: %v", err)
						}
					}
				}
			})
			wg.Wait()
			if down {
				n, size, err := s.Backlog(t.Context())
				if wn, wsize := walked(t, dir, r); err != nil || wn != n || wsize != size {
					t.Errorf("Backlog = %d objects, %d bytes, %v; the directory holds %d, %d", n, size, err, wn, wsize)
				}
				r.failPuts.Store(false)
			}
			flush(t, s)
			if n, size, err := s.Backlog(t.Context()); n != 0 || size != 0 || err != nil {
				t.Errorf("Backlog after Flush = %d objects, %d bytes, %v; want none", n, size, err)
			}
			if keys := spooled(t, dir); len(keys) != 0 {
				t.Errorf("spool still holds %q", keys)
			}
		})
	}
}
