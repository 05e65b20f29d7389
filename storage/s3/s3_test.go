package s3_test

import (
	"bytes"
	"context"
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"net/http"
	"slices"
	"strings"
	"testing"
	"testing/iotest"
	"time"

	"github.com/minio/minio-go/v7"

	"github.com/pacsd/pacsd/internal/testpeer"
	"github.com/pacsd/pacsd/storage"
	"github.com/pacsd/pacsd/storage/s3"
	"github.com/pacsd/pacsd/storage/storagetest"
)

// servers are the S3 implementations every test runs against, each
// started once per top-level test.
var servers = []struct {
	name  string
	start func(testing.TB) *testpeer.S3Server
}{
	{"minio", testpeer.StartMinIOT},
	{"versitygw", testpeer.StartVersityT},
}

// forEachServer runs fn as a parallel subtest per server, each with a
// server of its own.
func forEachServer(t *testing.T, fn func(t *testing.T, srv *testpeer.S3Server)) {
	for _, sv := range servers {
		t.Run(sv.name, func(t *testing.T) {
			t.Parallel()
			fn(t, sv.start(t))
		})
	}
}

// config returns the Config of a Store on srv in bucket.
func config(srv *testpeer.S3Server, bucket string) s3.Config {
	return s3.Config{
		Endpoint:  srv.Endpoint,
		Region:    srv.Region,
		Bucket:    bucket,
		AccessKey: srv.AccessKey,
		SecretKey: srv.SecretKey,
	}
}

// freshBucket returns the name of a bucket that does not exist yet.
func freshBucket() string {
	var b [8]byte
	rand.Read(b[:])
	return "pacsd-test-" + hex.EncodeToString(b[:])
}

// newStore returns a Store for cfg, failing t if New fails.
func newStore(t testing.TB, cfg s3.Config) *s3.Store {
	t.Helper()
	s, err := s3.New(t.Context(), cfg)
	if err != nil {
		t.Fatalf("New: %v", err)
	}
	return s
}

// TestStore runs the conformance suite against each server, each Store
// in a bucket of its own: a prefix would not do, since the suite stores a
// key of the full 1024 bytes that S3 allows.
func TestStore(t *testing.T) {
	t.Parallel()
	forEachServer(t, func(t *testing.T, srv *testpeer.S3Server) {
		storagetest.Run(t, func(t *testing.T) storage.Store {
			return newStore(t, config(srv, freshBucket()))
		})
	})
}

// TestS3 checks what the conformance suite cannot see: how many requests
// of which kind each operation makes, multipart uploads and their abort,
// prefixes, and the bucket's creation.
func TestS3(t *testing.T) {
	t.Parallel()
	forEachServer(t, func(t *testing.T, srv *testpeer.S3Server) {
		t.Run("Requests", func(t *testing.T) { t.Parallel(); testRequests(t, srv) })
		t.Run("RangedReads", func(t *testing.T) { t.Parallel(); testRangedReads(t, srv) })
		t.Run("Multipart", func(t *testing.T) { t.Parallel(); testMultipart(t, srv) })
		t.Run("FailedMultipart", func(t *testing.T) { t.Parallel(); testFailedMultipart(t, srv) })
		t.Run("ChangedWhileOpen", func(t *testing.T) { t.Parallel(); testChangedWhileOpen(t, srv) })
		t.Run("Prefix", func(t *testing.T) { t.Parallel(); testPrefix(t, srv) })
		t.Run("Bucket", func(t *testing.T) { t.Parallel(); testBucket(t, srv) })
	})
}

// recordedStore returns a Store in a fresh bucket whose requests rec
// records, with the requests of New already taken.
func recordedStore(t *testing.T, srv *testpeer.S3Server, partSize int64) (*s3.Store, *recorder, string) {
	t.Helper()
	rec := newRecorder()
	cfg := config(srv, freshBucket())
	cfg.Transport = rec
	cfg.PartSize = partSize
	s := newStore(t, cfg)
	rec.take()
	return s, rec, cfg.Bucket
}

// testRequests checks that small objects, of known size or not, go up in
// one PUT, and that Stat is one HEAD.
func testRequests(t *testing.T, srv *testpeer.S3Server) {
	s, rec, _ := recordedStore(t, srv, 0)
	data := bytes.Repeat([]byte("pacsd"), 100<<10)
	for _, tc := range []struct {
		name string
		data []byte
		size int64
	}{
		{"known", data, int64(len(data))},
		{"unknown", data, -1},
		{"empty-known", nil, 0},
		{"empty-unknown", nil, -1},
	} {
		info, err := s.Put(t.Context(), "req/"+tc.name, bytes.NewReader(tc.data), tc.size)
		if err != nil {
			t.Fatalf("Put %s: %v", tc.name, err)
		}
		if got := kinds(rec.take()); got != "PUT" {
			t.Errorf("Put %s made requests %q, want one PUT", tc.name, got)
		}
		if info.Size != int64(len(tc.data)) || info.ModTime.IsZero() {
			t.Errorf("Put %s: %+v", tc.name, info)
		}
		st, err := s.Stat(t.Context(), "req/"+tc.name)
		if err != nil {
			t.Fatalf("Stat %s: %v", tc.name, err)
		}
		if got := kinds(rec.take()); got != "HEAD" {
			t.Errorf("Stat made requests %q, want one HEAD", got)
		}
		// Put's ModTime is the server's Date, whole seconds, and Stat's
		// the object's Last-Modified, also whole seconds.
		if d := st.ModTime.Sub(info.ModTime); d < -time.Second || d > time.Second {
			t.Errorf("Put's ModTime %v and Stat's %v differ by %v", info.ModTime, st.ModTime, d)
		}
	}
}

// testRangedReads checks that ReadAt asks for exactly its bytes, that
// Read streams from its offset in one request, and that nothing is asked
// for past the end.
func testRangedReads(t *testing.T, srv *testpeer.S3Server) {
	s, rec, _ := recordedStore(t, srv, 0)
	data := make([]byte, 3<<20+5)
	newGen(int64(len(data)), 7).Read(data)
	size := int64(len(data))
	put(t, s, "frames", data)
	rec.take()

	obj, err := s.Open(t.Context(), "frames")
	if err != nil {
		t.Fatal(err)
	}
	defer obj.Close()
	if got := kinds(rec.take()); got != "HEAD" {
		t.Errorf("Open made requests %q, want one HEAD", got)
	}

	// A frame in the middle: one GET of exactly its bytes.
	p := make([]byte, 4096)
	if n, err := obj.ReadAt(p, 1<<20); n != len(p) || err != nil || !bytes.Equal(p, data[1<<20:1<<20+4096]) {
		t.Fatalf("ReadAt = %d, %v", n, err)
	}
	checkRanged(t, rec.take(), "bytes=1048576-1052671", 4096)

	// A read over the end asks only for what exists.
	if n, err := obj.ReadAt(p, size-100); n != 100 || err != io.EOF {
		t.Fatalf("ReadAt over the end = %d, %v", n, err)
	}
	checkRanged(t, rec.take(), fmt.Sprintf("bytes=%d-%d", size-100, size-1), 100)
	if n, err := obj.ReadAt(p, size); n != 0 || err != io.EOF {
		t.Fatalf("ReadAt at the end = %d, %v", n, err)
	}
	if got := rec.take(); len(got) != 0 {
		t.Errorf("ReadAt at the end made requests %q", kinds(got))
	}

	// Reads of frames reuse one connection: a response whose end was
	// not seen would cost a connection, and a TLS handshake, per frame.
	dials := rec.dials.Load()
	for i := range int64(20) {
		if n, err := obj.ReadAt(p, i*100_000); n != len(p) || err != nil {
			t.Fatalf("ReadAt = %d, %v", n, err)
		}
	}
	if d := rec.dials.Load() - dials; d > 1 {
		t.Errorf("20 ReadAt calls in a row opened %d connections, want them to reuse one", d)
	}
	rec.take()

	// Reading the whole object is one request.
	got, err := io.ReadAll(obj)
	if err != nil || !bytes.Equal(got, data) {
		t.Fatalf("ReadAll: %d bytes, %v", len(got), err)
	}
	checkRanged(t, rec.take(), fmt.Sprintf("bytes=0-%d", size-1), size)

	// Read after Seek starts a request at the new offset, and reads of
	// it only take what is asked for.
	if _, err := obj.Seek(2<<20, io.SeekStart); err != nil {
		t.Fatal(err)
	}
	if _, err := io.ReadFull(obj, p[:100]); err != nil || !bytes.Equal(p[:100], data[2<<20:2<<20+100]) {
		t.Fatalf("Read after Seek: %v", err)
	}
	reqs := rec.take()
	checkRanged(t, reqs, fmt.Sprintf("bytes=%d-%d", 2<<20, size-1), -1)
	if len(reqs) == 1 && reqs[0].Read.Load() > 64<<10 {
		t.Errorf("reading 100 bytes after Seek read %d bytes of the response", reqs[0].Read.Load())
	}
	// Seeking to the end: io.EOF without a request.
	if _, err := obj.Seek(0, io.SeekEnd); err != nil {
		t.Fatal(err)
	}
	if n, err := obj.Read(p); n != 0 || err != io.EOF {
		t.Errorf("Read at the end = %d, %v; want 0, io.EOF", n, err)
	}
	if got := rec.take(); len(got) != 0 {
		t.Errorf("Read at the end made requests %q", kinds(got))
	}

	// An empty object is never asked for a range, which S3 would refuse.
	put(t, s, "empty", nil)
	empty, err := s.Open(t.Context(), "empty")
	if err != nil {
		t.Fatal(err)
	}
	defer empty.Close()
	rec.take()
	if b, err := io.ReadAll(empty); len(b) != 0 || err != nil {
		t.Errorf("reading an empty object: %d bytes, %v", len(b), err)
	}
	if n, err := empty.ReadAt(p, 0); n != 0 || err != io.EOF {
		t.Errorf("ReadAt of an empty object = %d, %v", n, err)
	}
	if got := rec.take(); len(got) != 0 {
		t.Errorf("reading an empty object made requests %q", kinds(got))
	}
}

// checkRanged checks that reqs is a single GET of rng answered with 206
// Partial Content, of which n bytes were read (any number if n < 0).
func checkRanged(t *testing.T, reqs []*request, rng string, n int64) {
	t.Helper()
	if len(reqs) != 1 || reqs[0].Kind != "GET" {
		t.Errorf("made requests %q, want one GET", kinds(reqs))
		return
	}
	r := reqs[0]
	if r.Range != rng || r.Status != http.StatusPartialContent {
		t.Errorf("GET with Range %q answered %d, want Range %q answered 206", r.Range, r.Status, rng)
	}
	if n >= 0 && r.Read.Load() != n {
		t.Errorf("read %d bytes of the response, want %d", r.Read.Load(), n)
	}
}

// testMultipart checks the requests and the content of objects larger
// than a part, of known size or not, including those that end exactly at
// the end of a part.
func testMultipart(t *testing.T, srv *testpeer.S3Server) {
	const ps = s3.MinPartSize
	s, rec, bucket := recordedStore(t, srv, ps)
	for i, tc := range []struct {
		name string
		n    int64
		want string
	}{
		{"3.5-parts", 3*ps + ps/2, "initiate part part part part complete"},
		{"2-parts", 2 * ps, "initiate part part complete"},
		{"1-part-and-1-byte", ps + 1, "initiate part part complete"},
		{"1-part", ps, "PUT"},
	} {
		for _, known := range []bool{true, false} {
			size := tc.n
			if !known {
				size = -1
			}
			key := fmt.Sprintf("mp/%s/%d", tc.name, size)
			info, err := s.Put(t.Context(), key, newGen(tc.n, byte(i)), size)
			if err != nil {
				t.Fatalf("Put %s: %v", key, err)
			}
			if got := kinds(rec.take()); got != tc.want {
				t.Errorf("Put %s made requests %q, want %q", key, got, tc.want)
			}
			if info.Size != tc.n {
				t.Errorf("Put %s: size %d, want %d", key, info.Size, tc.n)
			}
			if sum, n := readSum(t, s, key); n != tc.n || sum != genSum(tc.n, byte(i)) {
				t.Errorf("%s reads back as %d bytes that differ from the %d put", key, n, tc.n)
			}
			rec.take()
		}
	}
	if u := incompleteUploads(t, srv, bucket); len(u) != 0 {
		t.Errorf("incomplete uploads left: %q", u)
	}
}

var errBoom = errors.New("reader failed")

// cancelAfter yields r and calls cancel once it has handed over n bytes,
// then goes on yielding.
type cancelAfter struct {
	r      io.Reader
	n      int64
	cancel context.CancelFunc
}

func (c *cancelAfter) Read(p []byte) (int, error) {
	if c.n <= 0 {
		c.cancel()
	}
	n, err := c.r.Read(p[:min(int64(len(p)), max(c.n, 64<<10))])
	c.n -= int64(n)
	return n, err
}

// testFailedMultipart checks that a multipart Put that fails, for any of
// the reasons the contract names, aborts its upload, leaves the old
// object in place and returns an error that errors.Is recognises.
func testFailedMultipart(t *testing.T, srv *testpeer.S3Server) {
	const ps = s3.MinPartSize
	s, rec, bucket := recordedStore(t, srv, ps)
	old := []byte("the old object")
	for _, tc := range []struct {
		name string
		r    func(cancel context.CancelFunc) io.Reader
		size int64
		want error
		reqs string
	}{
		{"reader-error", func(context.CancelFunc) io.Reader {
			return io.MultiReader(newGen(12<<20, 1), iotest.ErrReader(errBoom))
		}, -1, errBoom, "initiate part part abort"},
		{"reader-error-known-size", func(context.CancelFunc) io.Reader {
			return io.MultiReader(newGen(12<<20, 1), iotest.ErrReader(errBoom))
		}, 20 << 20, errBoom, "initiate part part abort"},
		{"unexpected-EOF", func(context.CancelFunc) io.Reader {
			return io.MultiReader(newGen(12<<20, 1), iotest.ErrReader(io.ErrUnexpectedEOF))
		}, -1, io.ErrUnexpectedEOF, "initiate part part abort"},
		{"short", func(context.CancelFunc) io.Reader { return newGen(12<<20, 1) }, 20 << 20, storage.ErrSizeMismatch, "initiate part part abort"},
		{"long", func(context.CancelFunc) io.Reader { return newGen(12<<20, 1) }, 10 << 20, storage.ErrSizeMismatch, "initiate part abort"},
		{"cancelled", func(cancel context.CancelFunc) io.Reader {
			return &cancelAfter{r: newGen(20<<20, 1), n: 12 << 20, cancel: cancel}
		}, -1, context.Canceled, "initiate part part abort"},
	} {
		for _, existing := range []bool{false, true} {
			key := fmt.Sprintf("fail/%s/%t", tc.name, existing)
			if existing {
				put(t, s, key, old)
			}
			rec.take()
			ctx, cancel := context.WithCancel(t.Context())
			_, err := s.Put(ctx, key, tc.r(cancel), tc.size)
			cancel()
			if !errors.Is(err, tc.want) {
				t.Errorf("Put %s: error %v, want one wrapping %v", key, err, tc.want)
			}
			if got := kinds(rec.take()); got != tc.reqs {
				t.Errorf("Put %s made requests %q, want %q", key, got, tc.reqs)
			}
			if existing {
				if sum, _ := readSum(t, s, key); sum != sha256.Sum256(old) {
					t.Errorf("%s lost its old object", key)
				}
			} else if _, err := s.Stat(t.Context(), key); !errors.Is(err, storage.ErrNotFound) {
				t.Errorf("Stat %s after the failed Put: %v, want %v", key, err, storage.ErrNotFound)
			}
		}
	}
	if u := incompleteUploads(t, srv, bucket); len(u) != 0 {
		t.Errorf("incomplete uploads left: %q", u)
	}
}

// testChangedWhileOpen checks that an Object fails to read once its key
// was replaced or deleted, rather than reading the new object: on S3 the
// suite accepts either, but mixing two versions in one Object would go
// unnoticed there if the new one had the same length.
func testChangedWhileOpen(t *testing.T, srv *testpeer.S3Server) {
	s := newStore(t, config(srv, freshBucket()))
	a := bytes.Repeat([]byte("a"), 200<<10)
	b := bytes.Repeat([]byte("b"), 200<<10)
	for _, change := range []string{"replace", "delete"} {
		key := "changed/" + change
		put(t, s, key, a)
		obj, err := s.Open(t.Context(), key)
		if err != nil {
			t.Fatal(err)
		}
		p := make([]byte, 10)
		if _, err := obj.ReadAt(p, 0); err != nil {
			t.Fatalf("ReadAt before the %s: %v", change, err)
		}
		if change == "replace" {
			put(t, s, key, b)
		} else if err := s.Delete(t.Context(), key); err != nil {
			t.Fatal(err)
		}
		if n, err := obj.ReadAt(p, 100); err == nil {
			t.Errorf("ReadAt after the %s read %q", change, p[:n])
		}
		if got, err := io.ReadAll(obj); err == nil {
			t.Errorf("Read after the %s read %d bytes", change, len(got))
		}
		obj.Close()
	}
}

// testPrefix checks that Stores with different prefixes share a bucket
// without seeing each other's objects, and keep them where a person
// would look.
func testPrefix(t *testing.T, srv *testpeer.S3Server) {
	bucket := freshBucket()
	cfgA := config(srv, bucket)
	cfgA.Prefix = "archive-a"
	cfgB := config(srv, bucket)
	cfgB.Prefix = "archive-b/sub/"
	a, b := newStore(t, cfgA), newStore(t, cfgB)
	put(t, a, "1.2/3.4/5.6", []byte("A"))
	put(t, b, "1.2/3.4/5.6", []byte("B"))

	raw := rawClient(t, srv)
	var names []string
	for oi := range raw.ListObjectsIter(t.Context(), bucket, minio.ListObjectsOptions{Recursive: true}) {
		if oi.Err != nil {
			t.Fatal(oi.Err)
		}
		names = append(names, oi.Key)
	}
	if want := []string{"archive-a/1.2/3.4/5.6", "archive-b/sub/1.2/3.4/5.6"}; !slices.Equal(names, want) {
		t.Errorf("bucket holds %q, want %q", names, want)
	}

	// An object below the prefix that no Store can have written is not
	// listed: its name is no key.
	if _, err := raw.PutObject(t.Context(), bucket, "archive-a/not a key", strings.NewReader("x"), 1, "", "", minio.PutObjectOptions{}); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		s    storage.Store
		want string
	}{{a, "A"}, {b, "B"}} {
		var keys []string
		for info, err := range tc.s.List(t.Context(), "") {
			if err != nil {
				t.Fatal(err)
			}
			keys = append(keys, info.Key)
		}
		if !slices.Equal(keys, []string{"1.2/3.4/5.6"}) {
			t.Errorf("List = %q, want the Store's one key", keys)
		}
		if sum, _ := readSum(t, tc.s, "1.2/3.4/5.6"); sum != sha256.Sum256([]byte(tc.want)) {
			t.Errorf("the Store does not read its own object")
		}
	}

	// The prefix counts towards S3's limit on names, so a key that fits
	// alone may not fit below it; that is refused before any request.
	long := strings.Repeat("k/", storage.MaxKeyLen/2-1) + "kk"
	if err := storage.ValidKey(long); err != nil {
		t.Fatal(err)
	}
	if _, err := a.Put(t.Context(), long, strings.NewReader("x"), 1); !errors.Is(err, storage.ErrInvalidKey) {
		t.Errorf("Put of a %d-byte key below a prefix: %v, want %v", len(long), err, storage.ErrInvalidKey)
	}

	bad := config(srv, bucket)
	bad.Prefix = "../x"
	if _, err := s3.New(t.Context(), bad); !errors.Is(err, storage.ErrInvalidKey) {
		t.Errorf("New with prefix %q: %v, want %v", bad.Prefix, err, storage.ErrInvalidKey)
	}
}

// testBucket checks that New creates a missing bucket, accepts an
// existing one, and reports credentials the server refuses; and that a
// bucket removed under a Store is an error, not a missing object.
func testBucket(t *testing.T, srv *testpeer.S3Server) {
	raw := rawClient(t, srv)
	bucket := freshBucket()
	if ok, err := raw.BucketExists(t.Context(), bucket); ok || err != nil {
		t.Fatalf("BucketExists before New = %t, %v", ok, err)
	}
	newStore(t, config(srv, bucket))
	if ok, err := raw.BucketExists(t.Context(), bucket); !ok || err != nil {
		t.Fatalf("BucketExists after New = %t, %v; want the bucket created", ok, err)
	}
	s := newStore(t, config(srv, bucket))
	put(t, s, "k", []byte("x"))

	wrong := config(srv, freshBucket())
	wrong.SecretKey += "-wrong"
	wrong.MaxRetries = 1
	if _, err := s3.New(t.Context(), wrong); err == nil || !strings.Contains(err.Error(), wrong.Bucket) {
		t.Errorf("New with a wrong secret key: %v, want an error naming the bucket", err)
	}

	gone := freshBucket()
	s = newStore(t, config(srv, gone))
	if err := raw.RemoveBucket(t.Context(), gone); err != nil {
		t.Fatal(err)
	}
	if _, err := s.Put(t.Context(), "k", strings.NewReader("x"), 1); err == nil || errors.Is(err, storage.ErrNotFound) {
		t.Errorf("Put into a removed bucket: %v, want an error other than %v", err, storage.ErrNotFound)
	}
	for info, err := range s.List(t.Context(), "") {
		if err == nil || errors.Is(err, storage.ErrNotFound) {
			t.Errorf("List of a removed bucket: %+v, %v; want an error other than %v", info, err, storage.ErrNotFound)
		}
	}
	if _, err := s.Stat(t.Context(), "k"); err == nil || errors.Is(err, storage.ErrNotFound) {
		t.Errorf("Stat in a removed bucket: %v, want an error other than %v", err, storage.ErrNotFound)
	}
}
