package s3

import (
	"context"
	"errors"
	"fmt"
	"io"
	"iter"
	"net"
	"net/http"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/minio/minio-go/v7"
	"github.com/minio/minio-go/v7/pkg/credentials"
	"github.com/minio/minio-go/v7/pkg/s3utils"

	"github.com/pacsd/pacsd/storage"
)

var _ storage.Store = (*Store)(nil)

const (
	// DefaultPartSize is the part size of multipart uploads when
	// Config.PartSize is zero: large enough that an object of unknown
	// size up to 16 MiB, which covers nearly every single-frame image,
	// goes up in one request.
	DefaultPartSize = 16 << 20

	// MinPartSize is S3's minimum size of every part but the last.
	MinPartSize = 5 << 20

	// MaxPartSize is S3's maximum size of a part.
	MaxPartSize = 5 << 30

	// maxParts is S3's maximum number of parts of one upload.
	maxParts = 10000
)

// Config says where a Store keeps its objects and how it reaches them.
type Config struct {
	// Endpoint is the server's host and optional port, such as
	// "s3.eu-central-1.amazonaws.com" or "127.0.0.1:9000"; no scheme.
	Endpoint string
	// Secure selects HTTPS. Credentials and data travel in the clear
	// without it, so leave it off only on a trusted network.
	Secure bool
	// Region is the bucket's region. When empty, minio-go asks the
	// server once per bucket.
	Region string
	// Bucket holds the objects. New creates it if it does not exist.
	Bucket string
	// Prefix, when not empty, puts every key below "Prefix/" in the
	// bucket, so that one bucket can hold several archives. It must be a
	// valid key itself (see storage.ValidKey); a trailing slash is
	// ignored. The prefix counts towards S3's limit of 1024 bytes per
	// object name, so it shortens the longest key a Store accepts.
	Prefix string
	// AccessKey, SecretKey and SessionToken are the credentials; the
	// session token only for temporary credentials.
	AccessKey, SecretKey, SessionToken string
	// PartSize is the size of each part of a multipart upload and of the
	// buffer a Put of unknown size fills before it decides between one
	// request and a multipart upload; see the package documentation for
	// what it means for memory. Zero means DefaultPartSize; otherwise it
	// must be between MinPartSize and MaxPartSize.
	PartSize int64
	// MaxRetries is how many times a request is attempted when it fails
	// with a network error or an error the server calls temporary (such
	// as 503 Slow Down), with a growing pause of up to a second between
	// attempts. Zero means minio-go's default of 10. It bounds how long
	// an operation takes to fail while the server is unreachable: a
	// DIMSE peer waiting for a C-STORE response should not wait longer.
	// Only a request whose body can be sent again is retried, which a
	// streaming Put of known size cannot.
	MaxRetries int
	// StallTimeout is how long a request may wait for the server, to
	// accept the next bytes of a body or to send the next bytes of an
	// answer, before it fails with storage.ErrUnavailable (and is retried
	// as MaxRetries allows). It bounds how long a server that hangs holds
	// an operation, without limiting how long a large object may take.
	// Zero means DefaultStallTimeout. It applies to minio-go's default
	// transport, not to a Transport set below.
	StallTimeout time.Duration
	// Transport, when set, carries every request instead of minio-go's
	// default transport, for a custom TLS configuration or for
	// instrumentation.
	Transport http.RoundTripper
}

// Store is a storage.Store on an S3 bucket. Its methods are safe for
// concurrent use. Create it with New.
type Store struct {
	client   *minio.Client
	core     minio.Core
	bucket   string
	prefix   string // "" or ending in "/"
	partSize int64

	// buffers holds *[]byte of partSize+1 bytes for Puts that need one.
	buffers sync.Pool
}

// New returns a Store on the bucket that cfg names, creating the bucket if
// it does not exist. It talks to the server to do so, so a wrong endpoint,
// credentials the server refuses and a bucket that can be neither found
// nor created are reported here, before anything is stored.
func New(ctx context.Context, cfg Config) (*Store, error) {
	if cfg.Endpoint == "" {
		return nil, errors.New("s3: no endpoint")
	}
	if strings.Contains(cfg.Endpoint, "/") {
		return nil, fmt.Errorf("s3: endpoint %q must be HOST or HOST:PORT, without scheme or path", cfg.Endpoint)
	}
	if err := s3utils.CheckValidBucketNameStrict(cfg.Bucket); err != nil {
		return nil, fmt.Errorf("s3: bucket %q: %w", cfg.Bucket, err)
	}
	prefix := strings.TrimSuffix(cfg.Prefix, "/")
	if prefix != "" {
		if err := storage.ValidKey(prefix); err != nil {
			return nil, fmt.Errorf("s3: prefix: %w", err)
		}
		prefix += "/"
	}
	partSize := cfg.PartSize
	switch {
	case partSize == 0:
		partSize = DefaultPartSize
	case partSize < MinPartSize || partSize > MaxPartSize:
		return nil, fmt.Errorf("s3: part size %d is not between %d and %d", partSize, MinPartSize, int64(MaxPartSize))
	}
	if cfg.AccessKey == "" || cfg.SecretKey == "" {
		return nil, errors.New("s3: access key and secret key are required")
	}
	if cfg.MaxRetries < 0 {
		return nil, fmt.Errorf("s3: negative MaxRetries %d", cfg.MaxRetries)
	}
	stall := cfg.StallTimeout
	switch {
	case stall == 0:
		stall = DefaultStallTimeout
	case stall < 0:
		return nil, fmt.Errorf("s3: negative StallTimeout %v", stall)
	}

	transport := cfg.Transport
	if transport == nil {
		t, err := minio.DefaultTransport(cfg.Secure)
		if err != nil {
			return nil, fmt.Errorf("s3: %w", err)
		}
		d := &stallDialer{timeout: stall}
		d.dialer.Timeout = min(stall, 30*time.Second)
		d.dialer.KeepAlive = 30 * time.Second
		t.DialContext = d.DialContext
		transport = t
	}
	client, err := minio.New(cfg.Endpoint, &minio.Options{
		Creds:      credentials.NewStaticV4(cfg.AccessKey, cfg.SecretKey, cfg.SessionToken),
		Secure:     cfg.Secure,
		Region:     cfg.Region,
		Transport:  dateTransport{transport},
		MaxRetries: cfg.MaxRetries,
	})
	if err != nil {
		return nil, fmt.Errorf("s3: %w", err)
	}
	s := &Store{
		client:   client,
		core:     minio.Core{Client: client},
		bucket:   cfg.Bucket,
		prefix:   prefix,
		partSize: partSize,
	}
	s.buffers.New = func() any {
		b := make([]byte, partSize+1)
		return &b
	}
	if err := s.ensureBucket(ctx, cfg.Region); err != nil {
		return nil, err
	}
	return s, nil
}

// ensureBucket creates the bucket unless it exists.
func (s *Store) ensureBucket(ctx context.Context, region string) error {
	ok, err := s.client.BucketExists(ctx, s.bucket)
	if err != nil {
		return fmt.Errorf("s3: checking bucket %q at %s: %w", s.bucket, s.client.EndpointURL().Host, s.translate(ctx, err))
	}
	if ok {
		return nil
	}
	err = s.client.MakeBucket(ctx, s.bucket, minio.MakeBucketOptions{Region: region})
	if err == nil {
		return nil
	}
	// Another Store may have created it since BucketExists answered.
	if code := errorCode(err); code == minio.BucketAlreadyOwnedByYou {
		return nil
	}
	return fmt.Errorf("s3: bucket %q does not exist at %s and cannot be created: %w", s.bucket, s.client.EndpointURL().Host, err)
}

// object returns the S3 object name of key.
func (s *Store) object(key string) string { return s.prefix + key }

// checkKey checks key as every method must before touching storage: it
// must be a valid key, and with the prefix still fit S3's limit on object
// names.
func (s *Store) checkKey(key string) error {
	if err := storage.ValidKey(key); err != nil {
		return err
	}
	if n := len(s.prefix) + len(key); n > storage.MaxKeyLen {
		return fmt.Errorf("%w: %q is %d bytes long below prefix %q, more than S3's %d", storage.ErrInvalidKey, key, n, s.prefix, storage.MaxKeyLen)
	}
	return nil
}

// Stat implements storage.Store.
func (s *Store) Stat(ctx context.Context, key string) (storage.Info, error) {
	if err := s.checkKey(key); err != nil {
		return storage.Info{}, fmt.Errorf("s3: stat: %w", err)
	}
	if err := ctx.Err(); err != nil {
		return storage.Info{}, fmt.Errorf("s3: stat %s: %w", key, err)
	}
	oi, err := s.client.StatObject(ctx, s.bucket, s.object(key), minio.StatObjectOptions{})
	if err != nil {
		return storage.Info{}, fmt.Errorf("s3: stat %s: %w", key, s.headError(ctx, err))
	}
	return storage.Info{Key: key, Size: oi.Size, ModTime: oi.LastModified}, nil
}

// Delete implements storage.Store. S3 answers a DELETE of a missing object
// with success, as the Store contract wants.
func (s *Store) Delete(ctx context.Context, key string) error {
	if err := s.checkKey(key); err != nil {
		return fmt.Errorf("s3: delete: %w", err)
	}
	if err := ctx.Err(); err != nil {
		return fmt.Errorf("s3: delete %s: %w", key, err)
	}
	err := s.client.RemoveObject(ctx, s.bucket, s.object(key), minio.RemoveObjectOptions{})
	// Servers on a filesystem may report a key that is a directory
	// holding other objects ("a" of "a/b") as missing; it is, as an
	// object.
	if err != nil && errorCode(err) != minio.NoSuchKey {
		return fmt.Errorf("s3: delete %s: %w", key, s.translate(ctx, err))
	}
	return nil
}

// List implements storage.Store.
func (s *Store) List(ctx context.Context, prefix string) iter.Seq2[storage.Info, error] {
	return func(yield func(storage.Info, error) bool) {
		if err := storage.ValidPrefix(prefix); err != nil {
			yield(storage.Info{}, fmt.Errorf("s3: list: %w", err))
			return
		}
		if err := ctx.Err(); err != nil {
			yield(storage.Info{}, fmt.Errorf("s3: list %q: %w", prefix, err))
			return
		}
		want := s.object(prefix)
		noOwner := false
		opts := minio.ListObjectsOptions{
			Prefix:     want,
			Recursive:  true,
			FetchOwner: &noOwner,
		}
		if seg := want[strings.LastIndexByte(want, '/')+1:]; seg == "." || seg == ".." {
			// MinIO refuses a prefix whose last segment is "." or "..",
			// though keys such as "a/.x" begin with it; such a listing
			// asks for the whole directory and filters.
			opts.Prefix = want[:len(want)-len(seg)]
		}
		// minio-go's iterator makes its requests as the loop asks for
		// more, in this goroutine, so breaking out of it leaves nothing
		// behind.
		for oi := range s.client.ListObjectsIter(ctx, s.bucket, opts) {
			if oi.Err != nil {
				yield(storage.Info{}, fmt.Errorf("s3: list %q: %w", prefix, s.translate(ctx, oi.Err)))
				return
			}
			if !strings.HasPrefix(oi.Key, want) {
				if oi.Key > want {
					// Keys come in order, so no later key can match.
					break
				}
				continue
			}
			key := oi.Key[len(s.prefix):]
			if storage.ValidKey(key) != nil {
				continue
			}
			if !yield(storage.Info{Key: key, Size: oi.Size, ModTime: oi.LastModified}, nil) {
				return
			}
		}
		// The iterator ends quietly when ctx is done between two pages,
		// which would pass a partial listing off as a whole one.
		if err := ctx.Err(); err != nil {
			yield(storage.Info{}, fmt.Errorf("s3: list %q: %w", prefix, err))
		}
	}
}

// errorCode returns the S3 error code that err carries, or "".
func errorCode(err error) string {
	var er minio.ErrorResponse
	if errors.As(err, &er) {
		return er.Code
	}
	return ""
}

// translate turns an error of minio-go into one that callers can test
// with errors.Is: a missing key into storage.ErrNotFound, a failure after
// ctx ended into one that wraps ctx.Err() (minio-go sometimes returns only
// its own description of the broken connection), a server that cannot be
// reached or says it cannot serve now into storage.ErrUnavailable, and a
// missing bucket into a message that says so rather than into ErrNotFound.
func (s *Store) translate(ctx context.Context, err error) error {
	switch errorCode(err) {
	case minio.NoSuchKey:
		return fmt.Errorf("%w: %w", storage.ErrNotFound, err)
	case minio.NoSuchBucket:
		return fmt.Errorf("bucket %q does not exist: %w", s.bucket, err)
	}
	if cerr := ctx.Err(); cerr != nil {
		return withContext(ctx, err)
	}
	if unavailable(err) {
		return fmt.Errorf("%w: %w", storage.ErrUnavailable, err)
	}
	return err
}

// withContext makes err wrap ctx.Err() if ctx has ended and err does not
// say so already.
func withContext(ctx context.Context, err error) error {
	if cerr := ctx.Err(); cerr != nil && !errors.Is(err, cerr) {
		return fmt.Errorf("%w: %w", cerr, err)
	}
	return err
}

// unavailable reports whether err says that the server could not be
// reached, broke the connection, timed out or answered that it cannot
// serve now, rather than that the request itself was wrong. minio-go has
// already retried such a request (Config.MaxRetries) when this is asked.
func unavailable(err error) bool {
	if er, ok := errors.AsType[minio.ErrorResponse](err); ok {
		switch er.Code {
		case "SlowDown", "ServiceUnavailable", "RequestTimeout", "InternalError", "XMinioServerNotInitialized":
			return true
		}
		return er.StatusCode >= 500
	}
	if _, ok := errors.AsType[*net.OpError](err); ok {
		return true
	}
	if ne, ok := errors.AsType[net.Error](err); ok && ne.Timeout() {
		return true
	}
	return errors.Is(err, io.ErrUnexpectedEOF) || errors.Is(err, io.EOF) ||
		errors.Is(err, syscall.ECONNREFUSED) || errors.Is(err, syscall.ECONNRESET) || errors.Is(err, syscall.EPIPE)
}

// headError translates the error of a HEAD request for an object. A
// response to HEAD has no body to name the error, so minio-go calls every
// 404 a missing key, which it also is when the whole bucket has gone.
// MinIO names the error in a header of its own, other servers do not, so
// a missing key is taken for storage.ErrNotFound only once the bucket is
// known to exist: one more request, on a path that is rare but for which
// the difference between missing data and a broken configuration matters.
func (s *Store) headError(ctx context.Context, err error) error {
	if errorCode(err) != minio.NoSuchKey {
		return s.translate(ctx, err)
	}
	ok, berr := s.client.BucketExists(ctx, s.bucket)
	switch {
	case berr != nil:
		return fmt.Errorf("object or bucket %q missing, and checking the bucket failed: %w", s.bucket, s.translate(ctx, berr))
	case !ok:
		return fmt.Errorf("bucket %q does not exist: %w", s.bucket, err)
	}
	return s.translate(ctx, err)
}

// dateKey is the context key under which Put asks dateTransport for the
// server's time.
type dateKey struct{}

// dateTransport records the Date header of each response in the *time.Time
// that the request's context carries under dateKey, if any. Put uses it
// for the ModTime it returns, so that it is the server's clock, as Stat
// and List report it, without a HEAD request after every PUT.
type dateTransport struct{ base http.RoundTripper }

func (t dateTransport) RoundTrip(req *http.Request) (*http.Response, error) {
	resp, err := t.base.RoundTrip(req)
	if err != nil {
		return resp, err
	}
	if p, ok := req.Context().Value(dateKey{}).(*time.Time); ok {
		if d, perr := http.ParseTime(resp.Header.Get("Date")); perr == nil {
			*p = d
		}
	}
	return resp, nil
}
