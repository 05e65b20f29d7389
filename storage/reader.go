package storage

import (
	"fmt"
	"io"
)

// ExactReader returns a reader that yields the bytes of r and fails with an
// error wrapping ErrSizeMismatch unless r yields exactly size bytes. Every
// backend's Put wraps its reader in one when the caller gives a size, so
// that they all enforce that part of the Store contract the same way.
//
// The check for excess bytes happens before the reader hands over the
// last of the size bytes: it reads one byte further first, and if there is
// one, returns the last bytes together with the error. A consumer that
// stops once it has size bytes, as an HTTP client sending a body with a
// Content-Length does, therefore still sees the error and can abort the
// upload instead of committing a truncated stream.
//
// The returned reader never reads more than size+1 bytes from r. Once it
// has returned an error it returns the same error from every later Read.
// A negative size yields r unchanged.
func ExactReader(r io.Reader, size int64) io.Reader {
	if size < 0 {
		return r
	}
	return &exactReader{r: r, left: size}
}

type exactReader struct {
	r    io.Reader
	left int64 // bytes still expected from r
	err  error // sticky result once the end is settled
}

// maxEmptyReads bounds how many Reads in a row that return neither bytes
// nor an error probe tolerates before giving up, as bufio does, so that a
// broken reader cannot make it spin forever.
const maxEmptyReads = 100

func (e *exactReader) Read(p []byte) (int, error) {
	if e.err != nil {
		return 0, e.err
	}
	if e.left == 0 {
		// Only reached for a size of 0; otherwise the Read that took the
		// last byte settled the end already.
		e.err = e.probe()
		return 0, e.err
	}
	if int64(len(p)) > e.left {
		p = p[:e.left]
	}
	n, err := e.r.Read(p)
	e.left -= int64(n)
	switch {
	case err == io.EOF && e.left > 0:
		e.err = fmt.Errorf("%w: reader ended %d bytes short", ErrSizeMismatch, e.left)
	case err == io.EOF:
		e.err = io.EOF
	case err != nil:
		e.err = err
	case e.left == 0:
		e.err = e.probe()
	default:
		return n, nil
	}
	return n, e.err
}

// probe reads one byte past the announced size and returns io.EOF if r has
// ended there, or else the error to report.
func (e *exactReader) probe() error {
	var b [1]byte
	for range maxEmptyReads {
		n, err := e.r.Read(b[:])
		switch {
		case n > 0:
			return fmt.Errorf("%w: reader yields more bytes than announced", ErrSizeMismatch)
		case err == io.EOF:
			return io.EOF
		case err != nil:
			return err
		}
	}
	return io.ErrNoProgress
}

// Fill reads from r until buf is full, returning nil, or until r fails,
// returning its error unchanged (io.EOF at the end). Unlike io.ReadFull it
// never turns an early io.EOF into io.ErrUnexpectedEOF, so that an
// io.ErrUnexpectedEOF that r itself returns is not taken for a clean end
// of a short last piece. A reader that returns neither bytes nor an error
// maxEmptyReads times in a row fails with io.ErrNoProgress, as bufio's
// readers do. Backends read their Put's reader through it.
func Fill(r io.Reader, buf []byte) (int, error) {
	n, empty := 0, 0
	for n < len(buf) {
		m, err := r.Read(buf[n:])
		n += m
		if err != nil {
			return n, err
		}
		if m > 0 {
			empty = 0
		} else if empty++; empty == maxEmptyReads {
			return n, io.ErrNoProgress
		}
	}
	return n, nil
}
