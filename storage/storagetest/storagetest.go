package storagetest

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"slices"
	"strings"
	"sync"
	"testing"
	"testing/iotest"

	"github.com/pacsd/pacsd/storage"
)

// Run runs the suite as subtests of t. newStore must return an empty
// Store that stays usable until its test ends; it should register any
// cleanup with t.Cleanup. Subtests run in parallel, each on its own Store,
// so a backend on a shared service must give every Store its own
// namespace (a bucket or a key prefix of its own).
func Run(t *testing.T, newStore func(t *testing.T) storage.Store) {
	tests := []struct {
		name string
		fn   func(*testing.T, storage.Store)
	}{
		{"PutOpen", testPutOpen},
		{"SizeMismatch", testSizeMismatch},
		{"ReaderError", testReaderError},
		{"CancelDuringPut", testCancelDuringPut},
		{"CancelledContext", testCancelledContext},
		{"ReplaceIsAtomic", testReplaceIsAtomic},
		{"OpenObjectOutlivesChange", testOpenObjectOutlivesChange},
		{"ReadAt", testReadAt},
		{"Seek", testSeek},
		{"Stat", testStat},
		{"Delete", testDelete},
		{"ListOrder", testListOrder},
		{"ListPrefix", testListPrefix},
		{"ListBreak", testListBreak},
		{"InvalidKeys", testInvalidKeys},
		{"InvalidSize", testInvalidSize},
		{"ValidKeys", testValidKeys},
		{"Concurrency", testConcurrency},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			tt.fn(t, newStore(t))
		})
	}
}

func testPutOpen(t *testing.T, s storage.Store) {
	sizes := []struct {
		name string
		n    int
	}{
		{"empty", 0},
		{"small", 5},
		{"multi-MiB", 3<<20 + 17},
	}
	// Readers that hand over their bytes in unusual ways: with io.EOF
	// together with the last bytes, and in small pieces.
	readers := []struct {
		name string
		wrap func(io.Reader) io.Reader
	}{
		{"plain", func(r io.Reader) io.Reader { return r }},
		{"data-with-EOF", iotest.DataErrReader},
		{"half", iotest.HalfReader},
	}
	for _, sz := range sizes {
		data := randomBytes(sz.n, uint64(sz.n))
		for _, rd := range readers {
			for _, known := range []bool{true, false} {
				size := int64(len(data))
				if !known {
					size = -1
				}
				name := fmt.Sprintf("%s/%s/size=%d", sz.name, rd.name, size)
				t.Run(name, func(t *testing.T) {
					key := "put/" + sz.name + "/" + rd.name + fmt.Sprintf("/%t", known)
					info, err := s.Put(t.Context(), key, rd.wrap(bytes.NewReader(data)), size)
					if err != nil {
						t.Fatalf("Put: %v", err)
					}
					checkInfo(t, "Put", info, key, len(data))

					obj, err := s.Open(t.Context(), key)
					if err != nil {
						t.Fatalf("Open: %v", err)
					}
					defer obj.Close()
					if got := obj.Size(); got != int64(len(data)) {
						t.Errorf("Size() = %d, want %d", got, len(data))
					}
					got, err := io.ReadAll(obj)
					if err != nil {
						t.Fatalf("reading: %v", err)
					}
					if !bytes.Equal(got, data) {
						t.Errorf("read back %d bytes that differ from the %d put", len(got), len(data))
					}

					st, err := s.Stat(t.Context(), key)
					if err != nil {
						t.Fatalf("Stat: %v", err)
					}
					checkInfo(t, "Stat", st, key, len(data))
				})
			}
		}
	}
}

func testSizeMismatch(t *testing.T, s storage.Store) {
	data := randomBytes(100<<10, 1)
	old := []byte("the old object")
	cases := []struct {
		name string
		r    func() io.Reader
		size int64
	}{
		{"short", func() io.Reader { return bytes.NewReader(data) }, int64(len(data)) + 1},
		{"long", func() io.Reader { return bytes.NewReader(data) }, int64(len(data)) - 1},
		{"long-by-far", func() io.Reader { return bytes.NewReader(data) }, 10},
		{"zero-but-not-empty", func() io.Reader { return bytes.NewReader(data) }, 0},
		{"empty-but-not-zero", func() io.Reader { return bytes.NewReader(nil) }, 1},
		// The excess arrives in a Read of its own after exactly size
		// bytes, so only a backend that reads past size notices it.
		{"excess-in-later-read", func() io.Reader {
			return io.MultiReader(bytes.NewReader(data), bytes.NewReader([]byte{0}))
		}, int64(len(data))},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			fresh := "mismatch/" + tc.name + "/fresh"
			_, err := s.Put(t.Context(), fresh, tc.r(), tc.size)
			if !errors.Is(err, storage.ErrSizeMismatch) {
				t.Errorf("Put to a fresh key: error %v, want %v", err, storage.ErrSizeMismatch)
			}
			wantNotFound(t, s, fresh)

			existing := "mismatch/" + tc.name + "/existing"
			mustPut(t, s, existing, old)
			_, err = s.Put(t.Context(), existing, tc.r(), tc.size)
			if !errors.Is(err, storage.ErrSizeMismatch) {
				t.Errorf("Put over an existing key: error %v, want %v", err, storage.ErrSizeMismatch)
			}
			wantContent(t, s, existing, old)
			wantKeys(t, s, "mismatch/"+tc.name+"/", existing)
		})
	}
}

// errReader is the error the suite's failing readers return.
var errReader = errors.New("storagetest: reader failed")

func testReaderError(t *testing.T, s storage.Store) {
	data := randomBytes(300<<10, 2)
	old := []byte("the old object")
	cases := []struct {
		name string
		err  error
	}{
		{"custom", errReader},
		// A reader may fail with io.ErrUnexpectedEOF itself, for instance
		// a decoder of a truncated stream. A backend that reads with
		// io.ReadFull must not take it for the end of a short last chunk.
		{"unexpected-EOF", io.ErrUnexpectedEOF},
	}
	for _, tc := range cases {
		for _, size := range []int64{int64(len(data)) + 1000, -1} {
			t.Run(fmt.Sprintf("%s/size=%d", tc.name, size), func(t *testing.T) {
				r := func() io.Reader {
					return io.MultiReader(bytes.NewReader(data), iotest.ErrReader(tc.err))
				}
				prefix := fmt.Sprintf("readerr/%s/%d/", tc.name, size)
				fresh := prefix + "fresh"
				_, err := s.Put(t.Context(), fresh, r(), size)
				if !errors.Is(err, tc.err) {
					t.Errorf("Put to a fresh key: error %v, want one wrapping %v", err, tc.err)
				}
				wantNotFound(t, s, fresh)

				existing := prefix + "existing"
				mustPut(t, s, existing, old)
				_, err = s.Put(t.Context(), existing, r(), size)
				if !errors.Is(err, tc.err) {
					t.Errorf("Put over an existing key: error %v, want one wrapping %v", err, tc.err)
				}
				wantContent(t, s, existing, old)
				wantKeys(t, s, prefix, existing)
			})
		}
	}
}

// cancelReader yields data in pieces of at most 64 KiB and calls cancel
// once it has handed over cancelAt bytes, then goes on yielding, so that
// only a backend that checks its context notices.
type cancelReader struct {
	data     []byte
	off      int
	cancelAt int
	cancel   context.CancelFunc
}

func (r *cancelReader) Read(p []byte) (int, error) {
	if r.off >= r.cancelAt {
		r.cancel()
	}
	if r.off == len(r.data) {
		return 0, io.EOF
	}
	n := copy(p[:min(len(p), 64<<10)], r.data[r.off:])
	r.off += n
	return n, nil
}

func testCancelDuringPut(t *testing.T, s storage.Store) {
	data := randomBytes(8<<20, 3)
	old := []byte("the old object")
	for _, size := range []int64{int64(len(data)), -1} {
		t.Run(fmt.Sprintf("size=%d", size), func(t *testing.T) {
			prefix := fmt.Sprintf("cancel/%d/", size)
			for _, key := range []string{prefix + "fresh", prefix + "existing"} {
				if strings.HasSuffix(key, "existing") {
					mustPut(t, s, key, old)
				}
				ctx, cancel := context.WithCancel(t.Context())
				r := &cancelReader{data: data, cancelAt: 128 << 10, cancel: cancel}
				_, err := s.Put(ctx, key, r, size)
				cancel()
				if !errors.Is(err, context.Canceled) {
					t.Errorf("Put %s: error %v, want %v", key, err, context.Canceled)
				}
			}
			wantNotFound(t, s, prefix+"fresh")
			wantContent(t, s, prefix+"existing", old)
			wantKeys(t, s, prefix, prefix+"existing")
		})
	}
}

func testCancelledContext(t *testing.T, s storage.Store) {
	const key = "cancelled/k"
	old := []byte("the old object")
	mustPut(t, s, key, old)
	ctx, cancel := context.WithCancel(t.Context())
	cancel()

	if _, err := s.Put(ctx, key, strings.NewReader("new"), 3); !errors.Is(err, context.Canceled) {
		t.Errorf("Put: error %v, want %v", err, context.Canceled)
	}
	if _, err := s.Put(ctx, "cancelled/fresh", strings.NewReader("new"), 3); !errors.Is(err, context.Canceled) {
		t.Errorf("Put to a fresh key: error %v, want %v", err, context.Canceled)
	}
	if obj, err := s.Open(ctx, key); !errors.Is(err, context.Canceled) {
		t.Errorf("Open: error %v, want %v", err, context.Canceled)
		if err == nil {
			obj.Close()
		}
	}
	if _, err := s.Stat(ctx, key); !errors.Is(err, context.Canceled) {
		t.Errorf("Stat: error %v, want %v", err, context.Canceled)
	}
	if err := s.Delete(ctx, key); !errors.Is(err, context.Canceled) {
		t.Errorf("Delete: error %v, want %v", err, context.Canceled)
	}
	var errs int
	for _, err := range s.List(ctx, "") {
		if !errors.Is(err, context.Canceled) {
			t.Errorf("List: error %v, want %v", err, context.Canceled)
		}
		errs++
	}
	if errs != 1 {
		t.Errorf("List yielded %d times, want once with the error", errs)
	}
	wantContent(t, s, key, old)
	wantNotFound(t, s, "cancelled/fresh")
}

func testReplaceIsAtomic(t *testing.T, s storage.Store) {
	const key = "replace/k"
	// Version i is filled with one byte value and has a length of its own,
	// so a reader can tell a whole version from a mixture or a truncation.
	const versions = 16
	version := func(i int) []byte {
		return bytes.Repeat([]byte{byte('a' + i)}, 256<<10+i*1013)
	}
	mustPut(t, s, key, version(0))

	done := make(chan struct{})
	var wg sync.WaitGroup
	for range 4 {
		wg.Go(func() {
			for {
				select {
				case <-done:
					return
				default:
				}
				got, ok, err := raceRead(t.Context(), s, key)
				if err != nil {
					t.Errorf("reading during replacement: %v", err)
					return
				}
				if !ok {
					continue
				}
				if len(got) == 0 {
					t.Errorf("read an empty object during replacement")
					return
				}
				i := int(got[0] - 'a')
				if i < 0 || i >= versions || !bytes.Equal(got, version(i)) {
					t.Errorf("read %d bytes that are no whole version", len(got))
					return
				}
			}
		})
	}
	for i := 1; i < versions; i++ {
		for _, size := range []int64{int64(len(version(i))), -1} {
			if _, err := s.Put(t.Context(), key, bytes.NewReader(version(i)), size); err != nil {
				t.Errorf("Put version %d: %v", i, err)
			}
		}
	}
	close(done)
	wg.Wait()
	wantContent(t, s, key, version(versions-1))
}

func testOpenObjectOutlivesChange(t *testing.T, s storage.Store) {
	old := randomBytes(200<<10, 4)
	changes := []struct {
		name   string
		change func(t *testing.T, key string)
	}{
		{"replace", func(t *testing.T, key string) { mustPut(t, s, key, []byte("new")) }},
		{"delete", func(t *testing.T, key string) {
			if err := s.Delete(t.Context(), key); err != nil {
				t.Fatalf("Delete: %v", err)
			}
		}},
	}
	for _, c := range changes {
		t.Run(c.name, func(t *testing.T) {
			key := "outlive/" + c.name
			mustPut(t, s, key, old)
			obj, err := s.Open(t.Context(), key)
			if err != nil {
				t.Fatalf("Open: %v", err)
			}
			defer obj.Close()
			c.change(t, key)
			// The contract allows an error here but never other bytes.
			got, err := io.ReadAll(obj)
			if err == nil && !bytes.Equal(got, old) {
				t.Errorf("an object opened before the %s read %d bytes that are not the old object", c.name, len(got))
			}
			if obj.Size() != int64(len(old)) {
				t.Errorf("Size() = %d after the %s, want the %d of Open", obj.Size(), c.name, len(old))
			}
		})
	}
}

func testReadAt(t *testing.T, s storage.Store) {
	const key = "readat/k"
	data := randomBytes(1<<20+123, 5)
	size := int64(len(data))
	mustPut(t, s, key, data)
	obj, err := s.Open(t.Context(), key)
	if err != nil {
		t.Fatalf("Open: %v", err)
	}
	defer obj.Close()

	cases := []struct {
		off   int64
		n     int
		wantN int
		eof   bool // whether io.EOF is required (otherwise nil or io.EOF)
	}{
		{0, 100, 100, false},
		{1000, 4096, 4096, false},
		{size/2 + 1, 64 << 10, 64 << 10, false},
		{size - 10, 10, 10, false},
		{size - 10, 20, 10, true},
		{size, 1, 0, true},
		{size + 100, 1, 0, true},
		{0, int(size) + 1, int(size), true},
	}
	for _, tc := range cases {
		p := make([]byte, tc.n)
		n, err := obj.ReadAt(p, tc.off)
		if n != tc.wantN {
			t.Errorf("ReadAt(%d bytes at %d) read %d bytes, want %d", tc.n, tc.off, n, tc.wantN)
			continue
		}
		switch {
		case tc.eof && err != io.EOF:
			t.Errorf("ReadAt(%d bytes at %d): error %v, want io.EOF", tc.n, tc.off, err)
		case !tc.eof && err != nil && err != io.EOF:
			t.Errorf("ReadAt(%d bytes at %d): %v", tc.n, tc.off, err)
		}
		if n > 0 && !bytes.Equal(p[:n], data[tc.off:tc.off+int64(n)]) {
			t.Errorf("ReadAt(%d bytes at %d) returned the wrong bytes", tc.n, tc.off)
		}
	}

	t.Run("concurrent", func(t *testing.T) {
		var wg sync.WaitGroup
		for g := range 8 {
			wg.Go(func() {
				rng := rand.New(rand.NewPCG(uint64(g), 0))
				for range 32 {
					off := rng.Int64N(size)
					n := min(1+rng.IntN(128<<10), int(size-off))
					p := make([]byte, n)
					if got, err := obj.ReadAt(p, off); got != n || (err != nil && err != io.EOF) {
						t.Errorf("ReadAt(%d bytes at %d) = %d, %v", n, off, got, err)
						return
					}
					if !bytes.Equal(p, data[off:off+int64(n)]) {
						t.Errorf("ReadAt(%d bytes at %d) returned the wrong bytes", n, off)
						return
					}
				}
			})
		}
		wg.Wait()
	})

	t.Run("independent-of-Read", func(t *testing.T) {
		obj, err := s.Open(t.Context(), key)
		if err != nil {
			t.Fatalf("Open: %v", err)
		}
		defer obj.Close()
		p := make([]byte, 10)
		if _, err := io.ReadFull(obj, p); err != nil || !bytes.Equal(p, data[:10]) {
			t.Fatalf("first Read: %v", err)
		}
		if _, err := obj.ReadAt(make([]byte, 100), 5000); err != nil {
			t.Fatalf("ReadAt: %v", err)
		}
		if _, err := io.ReadFull(obj, p); err != nil {
			t.Fatalf("second Read: %v", err)
		}
		if !bytes.Equal(p, data[10:20]) {
			t.Errorf("ReadAt moved the offset of Read")
		}
	})
}

func testSeek(t *testing.T, s storage.Store) {
	const key = "seek/k"
	data := randomBytes(300<<10+7, 6)
	size := int64(len(data))
	mustPut(t, s, key, data)
	obj, err := s.Open(t.Context(), key)
	if err != nil {
		t.Fatalf("Open: %v", err)
	}
	defer obj.Close()

	seek := func(offset int64, whence int, want int64) {
		t.Helper()
		got, err := obj.Seek(offset, whence)
		if err != nil || got != want {
			t.Fatalf("Seek(%d, %d) = %d, %v; want %d", offset, whence, got, err, want)
		}
	}
	read := func(n int, want []byte) {
		t.Helper()
		p := make([]byte, n)
		if _, err := io.ReadFull(obj, p); err != nil {
			t.Fatalf("reading %d bytes: %v", n, err)
		}
		if !bytes.Equal(p, want) {
			t.Fatalf("read the wrong %d bytes", n)
		}
	}

	seek(100, io.SeekStart, 100)
	read(10, data[100:110])
	seek(5, io.SeekCurrent, 115)
	read(1000, data[115:1115])
	seek(-10, io.SeekEnd, size-10)
	if got, err := io.ReadAll(obj); err != nil || !bytes.Equal(got, data[size-10:]) {
		t.Fatalf("reading the last 10 bytes: %d bytes, %v", len(got), err)
	}
	seek(0, io.SeekEnd, size)
	if n, err := obj.Read(make([]byte, 1)); n != 0 || err != io.EOF {
		t.Errorf("Read at the end = %d, %v; want 0, io.EOF", n, err)
	}
	seek(size, io.SeekStart, size)
	seek(0, io.SeekStart, 0)
	if got, err := io.ReadAll(obj); err != nil || !bytes.Equal(got, data) {
		t.Fatalf("reading all after rewinding: %d bytes, %v", len(got), err)
	}
	if _, err := obj.Seek(-1, io.SeekStart); err == nil {
		t.Errorf("Seek to a negative offset succeeded")
	}
}

func testStat(t *testing.T, s storage.Store) {
	data := randomBytes(1234, 7)
	mustPut(t, s, "stat/a/b", data)
	info, err := s.Stat(t.Context(), "stat/a/b")
	if err != nil {
		t.Fatalf("Stat: %v", err)
	}
	checkInfo(t, "Stat", info, "stat/a/b", len(data))
	for _, key := range []string{
		"stat/missing",
		"stat/a",     // a directory-like prefix of an object
		"stat/a/b/c", // below an object
		"stat/a/bb",
	} {
		wantNotFound(t, s, key)
	}
}

func testDelete(t *testing.T, s storage.Store) {
	for _, k := range []string{"del/a/b", "del/a/c", "del/x", "del/p/q/r/s"} {
		mustPut(t, s, k, []byte(k))
	}
	del := func(key string) {
		t.Helper()
		if err := s.Delete(t.Context(), key); err != nil {
			t.Fatalf("Delete %s: %v", key, err)
		}
	}

	del("del/a/b")
	wantNotFound(t, s, "del/a/b")
	wantContent(t, s, "del/a/c", []byte("del/a/c"))
	wantKeys(t, s, "del/", "del/a/c", "del/p/q/r/s", "del/x")

	// Deleting what is not there is not an error, and changes nothing.
	del("del/a/b")
	del("del/never")
	del("del/a")   // a directory-like prefix of an object
	del("del/x/y") // below an object
	del("del/p/q") // a prefix with nothing directly under it
	wantKeys(t, s, "del/", "del/a/c", "del/p/q/r/s", "del/x")

	// Deleting the last object of a group and putting one back works,
	// whatever the backend tidied up in between.
	del("del/p/q/r/s")
	wantNotFound(t, s, "del/p/q/r/s")
	mustPut(t, s, "del/p/q/r/s", []byte("again"))
	wantContent(t, s, "del/p/q/r/s", []byte("again"))
	del("del/a/c")
	del("del/x")
	del("del/p/q/r/s")
	wantKeys(t, s, "")
}

// listKeys are keys whose lexical order differs from the order of a naive
// walk of directories: '-' and '.' sort before '/', '0' after it, and
// capitals before lower case.
var listKeys = []string{
	"A",
	"a-c",
	"a.d",
	"a/b",
	"a/b-x",
	"a/b.x",
	"a/b0/y",
	"a/c/d",
	"a0",
	"b",
	"c/...",
	"c/..y",
	"c/.x",
	"c/x-/y",
	"c/x.",
	"c/x/z",
}

func putListKeys(t *testing.T, s storage.Store) {
	keys := slices.Clone(listKeys)
	rand.New(rand.NewPCG(1, 2)).Shuffle(len(keys), func(i, j int) { keys[i], keys[j] = keys[j], keys[i] })
	for _, k := range keys {
		mustPut(t, s, k, []byte("content of "+k))
	}
}

func testListOrder(t *testing.T, s storage.Store) {
	putListKeys(t, s)
	want := slices.Sorted(slices.Values(listKeys))
	infos := listAll(t, s, "")
	if got := keysOf(infos); !slices.Equal(got, want) {
		t.Fatalf("List(\"\") = %q, want %q", got, want)
	}
	for _, info := range infos {
		checkInfo(t, "List", info, info.Key, len("content of "+info.Key))
	}
}

func testListPrefix(t *testing.T, s storage.Store) {
	putListKeys(t, s)
	sorted := slices.Sorted(slices.Values(listKeys))
	for _, prefix := range []string{
		"", "A", "a", "a-", "a.", "a/", "a/b", "a/b/", "a/b0", "a/b0/", "a/c/d",
		"a0", "b", "b/", "c/", "c/.", "c/..", "c/x", "c/x/", "nope", "a/nope/", "z",
	} {
		var want []string
		for _, k := range sorted {
			if strings.HasPrefix(k, prefix) {
				want = append(want, k)
			}
		}
		if got := keysOf(listAll(t, s, prefix)); !slices.Equal(got, want) {
			t.Errorf("List(%q) = %q, want %q", prefix, got, want)
		}
	}
}

func testListBreak(t *testing.T, s storage.Store) {
	var keys []string
	for i := range 4 {
		for j := range 3 {
			keys = append(keys, fmt.Sprintf("brk/%d/%d/obj", i, j))
		}
	}
	for _, k := range keys {
		mustPut(t, s, k, []byte(k))
	}
	// Breaking at every position, also from deep inside a directory, must
	// stop the iterator cleanly (a range-over-func iterator that calls
	// yield again after a break makes the runtime panic).
	for stop := range len(keys) {
		var got []string
		for info, err := range s.List(t.Context(), "brk/") {
			if err != nil {
				t.Fatalf("List: %v", err)
			}
			got = append(got, info.Key)
			if len(got) == stop+1 {
				break
			}
		}
		if !slices.Equal(got, keys[:stop+1]) {
			t.Errorf("breaking after %d objects: got %q", stop+1, got)
		}
	}
	// Nothing stays held: the store goes on working.
	mustPut(t, s, "brk/after", []byte("x"))
	if got := len(listAll(t, s, "brk/")); got != len(keys)+1 {
		t.Errorf("List after breaking found %d objects, want %d", got, len(keys)+1)
	}
}

// invalidKeys are keys that every backend must refuse.
var invalidKeys = []string{
	"",
	"/",
	"/abs",
	"//abs",
	"../x",
	"..",
	".",
	"a//b",
	"a/",
	"a/./b",
	"a/.",
	"a/..",
	"a/../../etc",
	"./a",
	`a\b`,
	`..\x`,
	"C:x",
	"a b",
	"a\x00b",
	"a\nb",
	"a%2F..",
	"a~b",
	".put~0123456789abcdef",
	"é",
	strings.Repeat("a", 256),
	strings.Repeat("a/", storage.MaxKeyLen/2) + "a",
}

// invalidPrefixes are prefixes that every backend's List must refuse.
// Note that ".." and "a/." are valid prefixes: they begin the keys "..x"
// and "a/.x".
var invalidPrefixes = []string{
	"/",
	"/abs",
	"../",
	"../x",
	"a//",
	"a/./",
	"a/../",
	"a/../../etc",
	`a\`,
	"a b",
	"a~",
	strings.Repeat("a", 256),
}

// unreadable is a reader that fails the test if read: Put must refuse an
// invalid key before it consumes anything.
type unreadable struct{ t *testing.T }

func (r unreadable) Read([]byte) (int, error) {
	r.t.Errorf("Put read its reader despite an invalid key")
	return 0, io.EOF
}

func testInvalidKeys(t *testing.T, s storage.Store) {
	ctx := t.Context()
	for _, key := range invalidKeys {
		if _, err := s.Put(ctx, key, unreadable{t}, 0); !errors.Is(err, storage.ErrInvalidKey) {
			t.Errorf("Put(%q): error %v, want %v", key, err, storage.ErrInvalidKey)
		}
		if obj, err := s.Open(ctx, key); !errors.Is(err, storage.ErrInvalidKey) {
			t.Errorf("Open(%q): error %v, want %v", key, err, storage.ErrInvalidKey)
			if err == nil {
				obj.Close()
			}
		}
		if _, err := s.Stat(ctx, key); !errors.Is(err, storage.ErrInvalidKey) {
			t.Errorf("Stat(%q): error %v, want %v", key, err, storage.ErrInvalidKey)
		}
		if err := s.Delete(ctx, key); !errors.Is(err, storage.ErrInvalidKey) {
			t.Errorf("Delete(%q): error %v, want %v", key, err, storage.ErrInvalidKey)
		}
	}
	for _, prefix := range invalidPrefixes {
		var n int
		for info, err := range s.List(ctx, prefix) {
			n++
			if !errors.Is(err, storage.ErrInvalidKey) {
				t.Errorf("List(%q) yielded %+v, %v; want an error wrapping %v", prefix, info, err, storage.ErrInvalidKey)
			}
		}
		if n != 1 {
			t.Errorf("List(%q) yielded %d times, want once with the error", prefix, n)
		}
	}
	// None of that may have stored anything.
	wantKeys(t, s, "")
}

func testInvalidSize(t *testing.T, s storage.Store) {
	for _, size := range []int64{-2, -1 << 63} {
		if _, err := s.Put(t.Context(), "size/k", strings.NewReader("x"), size); err == nil {
			t.Errorf("Put with size %d succeeded", size)
		}
	}
	wantNotFound(t, s, "size/k")
}

func testValidKeys(t *testing.T, s storage.Store) {
	long := strings.Repeat("s", 255)
	var longest strings.Builder
	for longest.Len() < storage.MaxKeyLen-200 {
		longest.WriteString(strings.Repeat("k", 199) + "/")
	}
	longest.WriteString(strings.Repeat("z", storage.MaxKeyLen-longest.Len()))
	keys := []string{
		"x",
		"1.2.840.113619.2.55.3/1.3.12.2.1107.5.1.4/1.2.276.0.7230010.3.1.4.8323329",
		"Az_09-.z",
		"dots/...",
		"dots/..x",
		"dots/.hidden",
		"dots/x.",
		"deep/a/b/c/d/e/f/g/h/i/j",
		"long/" + long,
		longest.String(),
	}
	for _, key := range keys {
		if err := storage.ValidKey(key); err != nil {
			t.Fatalf("suite error: %v", err)
		}
		data := []byte("value of " + key)
		mustPut(t, s, key, data)
		wantContent(t, s, key, data)
	}
	wantKeys(t, s, "", slices.Sorted(slices.Values(keys))...)
	for _, key := range keys {
		if err := s.Delete(t.Context(), key); err != nil {
			t.Errorf("Delete(%q): %v", key, err)
		}
		wantNotFound(t, s, key)
	}
}

func testConcurrency(t *testing.T, s storage.Store) {
	const (
		workers = 8
		rounds  = 24
		shared  = "conc/shared"
	)
	// A version of the shared object is one byte value repeated, with a
	// length that depends on the value.
	sharedVersion := func(b byte) []byte { return bytes.Repeat([]byte{b}, 64<<10+int(b)*101) }
	mustPut(t, s, shared, sharedVersion(0))

	ctx := t.Context()
	var wg sync.WaitGroup
	for w := range workers {
		wg.Go(func() {
			for i := range rounds {
				// A key of this worker's own: it reads back exactly what it
				// wrote last.
				own := fmt.Sprintf("conc/w%d/k%d", w, i%5)
				data := randomBytes(1+(w*rounds+i)%(96<<10), uint64(w*rounds+i))
				size := int64(len(data))
				if i%2 == 1 {
					size = -1
				}
				if _, err := s.Put(ctx, own, bytes.NewReader(data), size); err != nil {
					t.Errorf("Put %s: %v", own, err)
					return
				}
				if got, err := tryRead(ctx, s, own); err != nil || !bytes.Equal(got, data) {
					t.Errorf("reading back %s: %d bytes, %v", own, len(got), err)
					return
				}

				// The key every worker writes: each read is one whole version.
				b := byte(1 + w)
				if _, err := s.Put(ctx, shared, bytes.NewReader(sharedVersion(b)), -1); err != nil {
					t.Errorf("Put %s: %v", shared, err)
					return
				}
				got, ok, err := raceRead(ctx, s, shared)
				if err != nil || ok && (len(got) == 0 || !bytes.Equal(got, sharedVersion(got[0]))) {
					t.Errorf("reading %s: %d bytes that are no whole version, %v", shared, len(got), err)
					return
				}
				if info, err := s.Stat(ctx, shared); err != nil || (info.Size-64<<10)%101 != 0 {
					t.Errorf("Stat %s: %+v, %v", shared, info, err)
					return
				}

				// Listing while others write: ordered, and no errors.
				var prev string
				for info, err := range s.List(ctx, "conc/") {
					if err != nil {
						t.Errorf("List: %v", err)
						return
					}
					if info.Key <= prev {
						t.Errorf("List yielded %q after %q", info.Key, prev)
						return
					}
					prev = info.Key
				}

				if i%7 == 6 {
					if err := s.Delete(ctx, own); err != nil {
						t.Errorf("Delete %s: %v", own, err)
						return
					}
					if _, err := s.Stat(ctx, own); !errors.Is(err, storage.ErrNotFound) {
						t.Errorf("Stat %s after Delete: %v, want %v", own, err, storage.ErrNotFound)
						return
					}
				}
			}
		})
	}
	wg.Wait()
}

// randomBytes returns n bytes that depend only on n and seed.
func randomBytes(n int, seed uint64) []byte {
	var s [32]byte
	for i := range 8 {
		s[i] = byte(seed >> (8 * i))
	}
	p := make([]byte, n)
	rand.NewChaCha8(s).Read(p)
	return p
}

func mustPut(t *testing.T, s storage.Store, key string, data []byte) storage.Info {
	t.Helper()
	info, err := s.Put(t.Context(), key, bytes.NewReader(data), int64(len(data)))
	if err != nil {
		t.Fatalf("Put %s: %v", key, err)
	}
	return info
}

// errReadFailed marks an error that an open Object returned while being
// read. The contract allows one when the key changes during the read, so
// tests that change keys while reading tolerate it (see raceRead).
var errReadFailed = errors.New("reading an open object failed")

// tryRead reads the whole object under key. It is safe to call from any
// goroutine.
func tryRead(ctx context.Context, s storage.Store, key string) ([]byte, error) {
	obj, err := s.Open(ctx, key)
	if err != nil {
		return nil, err
	}
	defer obj.Close()
	b, err := io.ReadAll(obj)
	if err != nil {
		return nil, fmt.Errorf("%w: %w", errReadFailed, err)
	}
	if int64(len(b)) != obj.Size() {
		return nil, fmt.Errorf("read %d bytes of an object whose Size is %d", len(b), obj.Size())
	}
	return b, nil
}

// raceRead is tryRead for a key that other goroutines replace meanwhile.
// It returns ok false, and no error, when the read failed in the way the
// contract allows for that case; any other failure is an error.
func raceRead(ctx context.Context, s storage.Store, key string) (b []byte, ok bool, err error) {
	b, err = tryRead(ctx, s, key)
	if errors.Is(err, errReadFailed) {
		return nil, false, nil
	}
	return b, err == nil, err
}

func wantContent(t *testing.T, s storage.Store, key string, want []byte) {
	t.Helper()
	got, err := tryRead(t.Context(), s, key)
	if err != nil {
		t.Errorf("reading %s: %v", key, err)
		return
	}
	if !bytes.Equal(got, want) {
		t.Errorf("%s holds %d bytes that differ from the %d expected", key, len(got), len(want))
	}
}

func wantNotFound(t *testing.T, s storage.Store, key string) {
	t.Helper()
	if _, err := s.Stat(t.Context(), key); !errors.Is(err, storage.ErrNotFound) {
		t.Errorf("Stat %s: error %v, want %v", key, err, storage.ErrNotFound)
	}
	obj, err := s.Open(t.Context(), key)
	if !errors.Is(err, storage.ErrNotFound) {
		t.Errorf("Open %s: error %v, want %v", key, err, storage.ErrNotFound)
	}
	if err == nil {
		obj.Close()
	}
}

// wantKeys checks that List(prefix) yields exactly keys, which must be in
// order.
func wantKeys(t *testing.T, s storage.Store, prefix string, keys ...string) {
	t.Helper()
	if got := keysOf(listAll(t, s, prefix)); !slices.Equal(got, keys) {
		t.Errorf("List(%q) = %q, want %q", prefix, got, keys)
	}
}

func listAll(t *testing.T, s storage.Store, prefix string) []storage.Info {
	t.Helper()
	var infos []storage.Info
	for info, err := range s.List(t.Context(), prefix) {
		if err != nil {
			t.Fatalf("List(%q): %v", prefix, err)
		}
		infos = append(infos, info)
	}
	return infos
}

func keysOf(infos []storage.Info) []string {
	keys := make([]string, len(infos))
	for i, info := range infos {
		keys[i] = info.Key
	}
	return keys
}

func checkInfo(t *testing.T, op string, info storage.Info, key string, size int) {
	t.Helper()
	if info.Key != key || info.Size != int64(size) {
		t.Errorf("%s: Info{Key: %q, Size: %d}, want {%q, %d}", op, info.Key, info.Size, key, size)
	}
	if info.ModTime.IsZero() {
		t.Errorf("%s %s: zero ModTime", op, key)
	}
}
