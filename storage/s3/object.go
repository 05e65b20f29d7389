package s3

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"sync/atomic"

	"github.com/minio/minio-go/v7"

	"github.com/pacsd/pacsd/storage"
)

// errChanged reports an object that was replaced or deleted while open.
var errChanged = errors.New("s3: object changed since it was opened")

// Open implements storage.Store. It makes one HEAD request, which tells a
// missing key at once and gives the size and ETag that every later read
// relies on; the Object's reads are made with ctx.
//
// minio-go's own *minio.Object is not used: its ReadAt moves the offset
// that Read uses, and a Read after seeking to the end fails instead of
// returning io.EOF.
func (s *Store) Open(ctx context.Context, key string) (storage.Object, error) {
	if err := s.checkKey(key); err != nil {
		return nil, fmt.Errorf("s3: open: %w", err)
	}
	if err := ctx.Err(); err != nil {
		return nil, fmt.Errorf("s3: open %s: %w", key, err)
	}
	name := s.object(key)
	oi, err := s.client.StatObject(ctx, s.bucket, name, minio.StatObjectOptions{})
	if err != nil {
		return nil, fmt.Errorf("s3: open %s: %w", key, s.headError(ctx, err))
	}
	if oi.ETag == "" {
		// Without an ETag nothing could tell a replaced object from the
		// one opened, and reads might mix them.
		return nil, fmt.Errorf("s3: open %s: server sent no ETag", key)
	}
	return &object{s: s, ctx: ctx, key: key, name: name, size: oi.Size, etag: oi.ETag}, nil
}

// object is an open object. ReadAt uses only fields that never change
// after Open, so concurrent calls need no lock; Read and Seek share off
// and body, which the Object contract does not let run concurrently.
type object struct {
	s    *Store
	ctx  context.Context
	key  string
	name string
	size int64
	etag string

	closed atomic.Bool

	off  int64         // offset of the next Read
	body io.ReadCloser // response whose next byte is at off, or nil
}

func (o *object) Size() int64 { return o.size }

// Read reads from one GET request that runs from the offset to the end of
// the object, made when Read needs it and kept until Seek moves away or
// Close; so reading a whole object is one request.
func (o *object) Read(p []byte) (int, error) {
	if o.closed.Load() {
		return 0, os.ErrClosed
	}
	if o.off >= o.size {
		return 0, io.EOF
	}
	if len(p) == 0 {
		return 0, nil
	}
	if o.body == nil {
		body, err := o.get(o.off, o.size-1)
		if err != nil {
			return 0, err
		}
		o.body = body
	}
	if left := o.size - o.off; int64(len(p)) > left {
		p = p[:left]
	}
	n, err := o.body.Read(p)
	o.off += int64(n)
	switch {
	case err == nil:
		return n, nil
	case err == io.EOF && o.off == o.size:
		o.dropBody()
		return n, nil
	case err == io.EOF:
		err = io.ErrUnexpectedEOF
	}
	// The next Read starts a new request where this one stopped.
	o.dropBody()
	return n, fmt.Errorf("s3: read %s at %d: %w", o.key, o.off, o.s.translate(o.ctx, err))
}

// Seek sets the offset of the next Read. Offsets past the end are
// allowed; Read returns io.EOF there.
func (o *object) Seek(offset int64, whence int) (int64, error) {
	if o.closed.Load() {
		return 0, os.ErrClosed
	}
	var abs int64
	switch whence {
	case io.SeekStart:
		abs = offset
	case io.SeekCurrent:
		abs = o.off + offset
	case io.SeekEnd:
		abs = o.size + offset
	default:
		return 0, fmt.Errorf("s3: seek %s: invalid whence %d", o.key, whence)
	}
	if abs < 0 {
		return 0, fmt.Errorf("s3: seek %s: negative offset %d", o.key, abs)
	}
	if abs != o.off {
		o.dropBody()
		o.off = abs
	}
	return abs, nil
}

// ReadAt reads len(p) bytes at off with a GET request for exactly that
// range (or up to the end of the object, in which case it returns
// io.EOF too, as io.ReaderAt says).
func (o *object) ReadAt(p []byte, off int64) (int, error) {
	if o.closed.Load() {
		return 0, os.ErrClosed
	}
	if off < 0 {
		return 0, fmt.Errorf("s3: read %s: negative offset %d", o.key, off)
	}
	if off >= o.size {
		return 0, io.EOF
	}
	want := min(int64(len(p)), o.size-off)
	if want == 0 {
		return 0, nil
	}
	body, err := o.get(off, off+want-1)
	if err != nil {
		return 0, err
	}
	defer body.Close()
	n, err := io.ReadFull(body, p[:want])
	if err != nil {
		return n, fmt.Errorf("s3: read %s at %d: %w", o.key, off+int64(n), o.s.translate(o.ctx, err))
	}
	if want < int64(len(p)) {
		return n, io.EOF
	}
	return n, nil
}

// get starts a GET of bytes first to last of the object as it was at
// Open. The request is conditional on the ETag seen by Open, and the
// response is checked for that ETag and for the range asked, so that a
// replaced object or a server that ignores the conditions fails the read
// rather than returning other bytes.
func (o *object) get(first, last int64) (io.ReadCloser, error) {
	var opts minio.GetObjectOptions
	if err := opts.SetMatchETag(o.etag); err != nil {
		return nil, fmt.Errorf("s3: read %s: %w", o.key, err)
	}
	// A Range header on every request, even one for the whole object,
	// makes every answer a 206 whose Content-Range can be checked.
	if err := opts.SetRange(first, last); err != nil {
		return nil, fmt.Errorf("s3: read %s: %w", o.key, err)
	}
	body, oi, h, err := o.s.core.GetObject(o.ctx, o.s.bucket, o.name, opts)
	if err != nil {
		switch errorCode(err) {
		case minio.PreconditionFailed:
			err = fmt.Errorf("%w (replaced): %w", errChanged, err)
		case minio.NoSuchKey:
			err = fmt.Errorf("%w (deleted): %w", errChanged, o.s.translate(o.ctx, err))
		default:
			err = o.s.translate(o.ctx, err)
		}
		return nil, fmt.Errorf("s3: read %s at %d: %w", o.key, first, err)
	}
	want := fmt.Sprintf("bytes %d-%d/%d", first, last, o.size)
	if got := h.Get("Content-Range"); got != want || oi.ETag != o.etag {
		body.Close()
		return nil, fmt.Errorf("s3: read %s: %w: asked for %s of ETag %s, got %q of ETag %s", o.key, errChanged, want, o.etag, got, oi.ETag)
	}
	if oi.Size != last-first+1 {
		body.Close()
		return nil, fmt.Errorf("s3: read %s: response of %d bytes for %s", o.key, oi.Size, want)
	}
	return body, nil
}

// dropBody closes the response Read was reading, if any. A response not
// read to its end cannot keep its connection, which is the price of
// moving elsewhere.
func (o *object) dropBody() {
	if o.body != nil {
		o.body.Close()
		o.body = nil
	}
}

func (o *object) Close() error {
	if o.closed.Swap(true) {
		return os.ErrClosed
	}
	o.dropBody()
	return nil
}
