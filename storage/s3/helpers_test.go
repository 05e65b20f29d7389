package s3_test

import (
	"bytes"
	"context"
	"crypto/sha256"
	"io"
	"math/rand/v2"
	"net"
	"net/http"
	"strings"
	"sync"
	"sync/atomic"
	"testing"

	"github.com/minio/minio-go/v7"
	"github.com/minio/minio-go/v7/pkg/credentials"

	"github.com/pacsd/pacsd/internal/testpeer"
	"github.com/pacsd/pacsd/storage"
)

// recorder is an http.RoundTripper that records the requests a Store
// makes, so that tests can tell how many requests an operation took, of
// which kind, and which byte ranges were read.
type recorder struct {
	base http.RoundTripper

	mu   sync.Mutex
	reqs []*request

	// dials counts the TCP connections opened, to tell whether
	// connections are reused.
	dials atomic.Int64
}

// request is one recorded request.
type request struct {
	Kind   string // see kindOf
	Range  string // the Range header sent
	Status int    // 0 if there was no response
	// Read counts the bytes of the response body that were read.
	Read atomic.Int64
}

func newRecorder() *recorder {
	r := &recorder{}
	t := http.DefaultTransport.(*http.Transport).Clone()
	var d net.Dialer
	t.DialContext = func(ctx context.Context, network, addr string) (net.Conn, error) {
		r.dials.Add(1)
		return d.DialContext(ctx, network, addr)
	}
	r.base = t
	return r
}

func (r *recorder) RoundTrip(req *http.Request) (*http.Response, error) {
	rec := &request{Kind: kindOf(req), Range: req.Header.Get("Range")}
	r.mu.Lock()
	r.reqs = append(r.reqs, rec)
	r.mu.Unlock()
	resp, err := r.base.RoundTrip(req)
	if err != nil {
		return resp, err
	}
	rec.Status = resp.StatusCode
	resp.Body = &countingBody{ReadCloser: resp.Body, n: &rec.Read}
	return resp, nil
}

// take returns the requests recorded since the last call.
func (r *recorder) take() []*request {
	r.mu.Lock()
	defer r.mu.Unlock()
	reqs := r.reqs
	r.reqs = nil
	return reqs
}

// kinds returns the kinds of reqs, for comparing with a list.
func kinds(reqs []*request) string {
	k := make([]string, len(reqs))
	for i, r := range reqs {
		k[i] = r.Kind
	}
	return strings.Join(k, " ")
}

// kindOf names the S3 operation of req.
func kindOf(req *http.Request) string {
	q := req.URL.Query()
	switch {
	case req.Method == http.MethodPost && q.Has("uploads"):
		return "initiate"
	case req.Method == http.MethodPut && q.Has("partNumber"):
		return "part"
	case req.Method == http.MethodPost && q.Has("uploadId"):
		return "complete"
	case req.Method == http.MethodDelete && q.Has("uploadId"):
		return "abort"
	case req.Method == http.MethodGet && q.Has("list-type"):
		return "list"
	}
	return req.Method
}

type countingBody struct {
	io.ReadCloser
	n *atomic.Int64
}

func (b *countingBody) Read(p []byte) (int, error) {
	n, err := b.ReadCloser.Read(p)
	b.n.Add(int64(n))
	return n, err
}

// rawClient returns a minio-go client of srv that bypasses the Store, to
// look at the bucket as it is.
func rawClient(t testing.TB, srv *testpeer.S3Server) minio.Core {
	t.Helper()
	c, err := minio.New(srv.Endpoint, &minio.Options{
		Creds:  credentials.NewStaticV4(srv.AccessKey, srv.SecretKey, ""),
		Region: srv.Region,
	})
	if err != nil {
		t.Fatal(err)
	}
	return minio.Core{Client: c}
}

// incompleteUploads returns the keys of the multipart uploads in bucket
// that were neither completed nor aborted.
func incompleteUploads(t testing.TB, srv *testpeer.S3Server, bucket string) []string {
	t.Helper()
	res, err := rawClient(t, srv).ListMultipartUploads(t.Context(), bucket, "", "", "", "", 1000)
	if err != nil {
		t.Fatalf("ListMultipartUploads: %v", err)
	}
	var keys []string
	for _, u := range res.Uploads {
		keys = append(keys, u.Key)
	}
	return keys
}

// genReader yields n pseudo-random bytes that depend only on n and seed,
// without holding them in memory.
type genReader struct {
	left int64
	rng  *rand.ChaCha8
}

func newGen(n int64, seed byte) *genReader {
	return &genReader{left: n, rng: rand.NewChaCha8([32]byte{seed})}
}

func (g *genReader) Read(p []byte) (int, error) {
	if g.left == 0 {
		return 0, io.EOF
	}
	if int64(len(p)) > g.left {
		p = p[:g.left]
	}
	g.rng.Read(p)
	g.left -= int64(len(p))
	return len(p), nil
}

// genSum returns the SHA-256 of what newGen(n, seed) yields.
func genSum(n int64, seed byte) [32]byte {
	h := sha256.New()
	io.Copy(h, newGen(n, seed))
	return [32]byte(h.Sum(nil))
}

// readSum returns the SHA-256 and length of the object under key.
func readSum(t testing.TB, s storage.Store, key string) ([32]byte, int64) {
	t.Helper()
	obj, err := s.Open(t.Context(), key)
	if err != nil {
		t.Fatalf("Open %s: %v", key, err)
	}
	defer obj.Close()
	h := sha256.New()
	n, err := io.Copy(h, obj)
	if err != nil {
		t.Fatalf("reading %s: %v", key, err)
	}
	return [32]byte(h.Sum(nil)), n
}

// put stores data under key with a known size, failing t on error.
func put(t testing.TB, s storage.Store, key string, data []byte) {
	t.Helper()
	if _, err := s.Put(t.Context(), key, bytes.NewReader(data), int64(len(data))); err != nil {
		t.Fatalf("Put %s: %v", key, err)
	}
}
