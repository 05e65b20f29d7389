package s3

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"sync"
	"time"

	"github.com/minio/minio-go/v7"

	"github.com/pacsd/pacsd/storage"
)

// abortTimeout bounds the request that aborts a failed multipart upload.
// It runs after the caller's context may have ended, so it needs a bound
// of its own.
const abortTimeout = time.Minute

// Put implements storage.Store; the package documentation says how it
// uploads and how much memory that takes.
//
// The upload is minio-go's Core API, one request at a time, rather than
// minio-go's PutObject, which for an unknown size would allocate a new
// buffer of the part size for every call, start a multipart upload even
// for a few kilobytes, and replace some reader errors by its own message
// (so that errors.Is could not find them).
func (s *Store) Put(ctx context.Context, key string, r io.Reader, size int64) (storage.Info, error) {
	if err := s.checkKey(key); err != nil {
		return storage.Info{}, fmt.Errorf("s3: put: %w", err)
	}
	if size < -1 {
		return storage.Info{}, fmt.Errorf("s3: put %s: invalid size %d", key, size)
	}
	if err := ctx.Err(); err != nil {
		return storage.Info{}, fmt.Errorf("s3: put %s: %w", key, err)
	}
	var date time.Time
	u := &upload{
		s:    s,
		ctx:  context.WithValue(ctx, dateKey{}, &date),
		name: s.object(key),
		src:  &source{ctx: ctx, r: storage.ExactReader(r, size)},
	}
	n, err := u.run(size)
	// From here on nothing reads r any more, even if net/http goes on
	// with a request body after the request failed.
	rerr := u.src.detach()
	if err != nil {
		// The reader's own failure (r's error, a size mismatch or the
		// end of ctx) explains more than minio-go's report of the
		// request it broke off, and is what errors.Is must find.
		if rerr != nil {
			// The reader's error is never the server's unavailability,
			// even when it is a network error of the caller's own
			// connection.
			err = withContext(ctx, rerr)
		} else {
			err = s.translate(ctx, err)
		}
		if aerr := u.abort(); aerr != nil {
			err = fmt.Errorf("%w; aborting the multipart upload failed too, so its parts stay on the server until a lifecycle rule removes them: %v", err, aerr)
		}
		return storage.Info{}, fmt.Errorf("s3: put %s: %w", key, err)
	}
	if date.IsZero() {
		date = time.Now()
	}
	return storage.Info{Key: key, Size: n, ModTime: date}, nil
}

// upload is one Put in progress.
type upload struct {
	s    *Store
	ctx  context.Context
	name string
	src  *source

	// uploadID is the multipart upload to abort if the Put fails, or ""
	// if there is none or it has completed.
	uploadID string
}

// run uploads the object and returns its size.
func (u *upload) run(size int64) (int64, error) {
	s := u.s
	if size >= 0 && size <= s.partSize {
		if size == 0 {
			// minio-go sends an empty body without reading it, but the
			// reader must still be checked for bytes it should not have.
			if _, err := u.src.Read(make([]byte, 1)); err != io.EOF {
				return 0, err
			}
		}
		return size, u.single(u.src, size)
	}

	// The buffer holds a part and one byte more: reading one byte past a
	// part tells whether another part follows, so that an object that
	// ends exactly there still goes up in one request, and no part is
	// ever empty.
	bufp := s.buffers.Get().(*[]byte)
	defer s.buffers.Put(bufp)
	buf := *bufp
	ps := int(s.partSize)
	n, err := storage.Fill(u.src, buf)
	eof := err == io.EOF
	if err != nil && !eof {
		return 0, err
	}
	if eof && n <= ps {
		return int64(n), u.single(newPart(buf[:n]), int64(n))
	}

	id, err := s.core.NewMultipartUpload(u.ctx, s.bucket, u.name, minio.PutObjectOptions{})
	if err != nil {
		return 0, err
	}
	u.uploadID = id
	var (
		parts []minio.CompletePart
		total int64
	)
	for num := 1; ; num++ {
		if num > maxParts {
			return 0, fmt.Errorf("object is larger than %d parts of %d bytes; raise the part size", maxParts, ps)
		}
		last := eof && n <= ps
		m := min(n, ps)
		p := newPart(buf[:m])
		op, err := s.core.PutObjectPart(u.ctx, s.bucket, u.name, id, num, p, int64(m), minio.PutObjectPartOptions{})
		p.detach()
		if err != nil {
			return 0, fmt.Errorf("part %d: %w", num, err)
		}
		parts = append(parts, minio.CompletePart{PartNumber: num, ETag: op.ETag})
		total += int64(m)
		if last {
			break
		}
		// The byte read past this part begins the next one.
		carry := copy(buf, buf[m:n])
		if eof {
			n = carry
			continue
		}
		k, err := storage.Fill(u.src, buf[carry:])
		n = carry + k
		if err == io.EOF {
			eof = true
		} else if err != nil {
			return 0, err
		}
	}
	// This is the last point at which cancelling keeps the object from
	// appearing. Once the server has the completion request it may
	// commit, whatever happens to the answer.
	if err := u.ctx.Err(); err != nil {
		return 0, err
	}
	if _, err := s.core.CompleteMultipartUpload(u.ctx, s.bucket, u.name, id, parts, minio.PutObjectOptions{}); err != nil {
		return 0, err
	}
	u.uploadID = ""
	return total, nil
}

// emptySHA256 is the hex SHA-256 of no bytes.
const emptySHA256 = "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"

// single uploads body of size bytes in one PUT request.
func (u *upload) single(body io.Reader, size int64) error {
	var opts minio.PutObjectOptions
	sha := ""
	if size == 0 {
		// Over plain HTTP minio-go signs a body in aws-chunked encoding,
		// which for no bytes is a lone final chunk. Versity's gateway
		// does not read that chunk from an empty PUT and then takes it
		// for the next request on the connection, answering it with a
		// 400 that the client can mistake for the answer to its next
		// request. An empty body signed as such avoids the encoding.
		opts.DisableContentSha256 = true
		sha = emptySHA256
	}
	_, err := u.s.core.PutObject(u.ctx, u.s.bucket, u.name, body, size, "", sha, opts)
	if p, ok := body.(*part); ok {
		p.detach()
	}
	return err
}

// abort aborts the multipart upload of a failed Put, if there is one. It
// must not depend on the Put's context, which may be why the Put failed.
func (u *upload) abort() error {
	if u.uploadID == "" {
		return nil
	}
	ctx, cancel := context.WithTimeout(context.WithoutCancel(u.ctx), abortTimeout)
	defer cancel()
	err := u.s.core.AbortMultipartUpload(ctx, u.s.bucket, u.name, u.uploadID)
	// An upload that is gone was completed or aborted after all.
	if err != nil && errorCode(err) != minio.NoSuchUpload {
		return err
	}
	return nil
}

// errDetached is what source and part return once Put no longer owns
// what they read from.
var errDetached = errors.New("s3: read after the request ended")

// source is the caller's reader as Put hands it to minio-go and net/http.
//
// It checks ctx before every read, so that a cancellation is noticed
// between reads of r as the Store contract requires. It keeps the first
// error, so that Put can return it as the cause of the failure, whatever
// the HTTP client made of it. It never returns bytes together with an
// error: storage.ExactReader hands over the last bytes together with a
// size mismatch, and an HTTP client that sent them would complete the
// request's Content-Length before it noticed, letting the server commit
// the object. And once detached it no longer touches r, because net/http
// may read a request body after the request has failed, and r belongs to
// the caller again once Put has returned.
type source struct {
	ctx context.Context

	mu  sync.Mutex
	r   io.Reader // nil once detached
	err error     // the first error returned other than io.EOF
}

func (s *source) Read(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.err != nil {
		return 0, s.err
	}
	if s.r == nil {
		return 0, errDetached
	}
	if err := s.ctx.Err(); err != nil {
		s.err = err
		return 0, err
	}
	n, err := s.r.Read(p)
	if err != nil && err != io.EOF {
		s.err = err
		return 0, err
	}
	return n, err
}

// detach stops s from reading r, waiting for a Read in progress, and
// returns the error that reading failed with, if any.
func (s *source) detach() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.r = nil
	return s.err
}

// part is the body of a request sent from Put's buffer. It seeks, so
// that minio-go may retry the request after a network error, and stops
// reading the buffer once detached, since net/http may go on reading a
// body after the request has failed, when the buffer already holds the
// next part or belongs to another Put.
type part struct {
	mu sync.Mutex
	r  *bytes.Reader // nil once detached
}

func newPart(b []byte) *part { return &part{r: bytes.NewReader(b)} }

func (p *part) Read(b []byte) (int, error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.r == nil {
		return 0, errDetached
	}
	return p.r.Read(b)
}

func (p *part) Seek(offset int64, whence int) (int64, error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.r == nil {
		return 0, errDetached
	}
	return p.r.Seek(offset, whence)
}

func (p *part) detach() {
	p.mu.Lock()
	p.r = nil
	p.mu.Unlock()
}
