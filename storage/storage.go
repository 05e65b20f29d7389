package storage

import (
	"context"
	"errors"
	"io"
	"iter"
	"time"
)

var (
	// ErrNotFound reports that no object is stored under a key.
	ErrNotFound = errors.New("storage: not found")

	// ErrInvalidKey reports a key or list prefix that ValidKey or
	// ValidPrefix rejects. Every method of every backend checks its key
	// before touching storage, so an invalid key never reaches a path.
	ErrInvalidKey = errors.New("storage: invalid key")

	// ErrSizeMismatch reports that the reader given to Put yielded more or
	// fewer bytes than the size the caller announced.
	ErrSizeMismatch = errors.New("storage: size mismatch")

	// ErrUnavailable reports that the backing storage could not be
	// reached or did not answer in time: a server that is down, refuses
	// connections, times out or answers that it is overloaded. Nothing is
	// known about the object from such an error, neither that it exists
	// nor that it does not; the same operation may succeed later. Callers
	// that must answer someone now (a C-STORE waiting for its response)
	// report a temporary failure, and callers that can wait retry.
	ErrUnavailable = errors.New("storage: unavailable")
)

// Info describes a stored object.
type Info struct {
	// Key is the object's key, as given to Put.
	Key string

	// Size is the object's length in bytes.
	Size int64

	// ModTime is when the object was last written, by the backend's clock.
	// Backends differ in its precision (S3 reports whole seconds in some
	// places and milliseconds in others), so compare it only loosely.
	ModTime time.Time
}

// Object is an open stored object. It serves whole-object streaming
// through Read and ranged reads of frames and bulk data through ReadAt and
// Seek. A thin wrapper satisfies it around an *os.File as well as around
// minio-go's *minio.Object, which has every method but Size and reports
// the size through its Stat.
//
// An Object reads the object as it was when Open returned. If the key is
// replaced or deleted while the Object is open, reads either go on
// returning the old bytes (the filesystem and in-memory stores do) or fail
// with an error (an S3 backend may); they never mix old and new bytes.
//
// ReadAt follows io.ReaderAt: it may be called from several goroutines at
// once and neither moves nor depends on the offset that Read and Seek use.
// Read and Seek are not safe for concurrent use with each other. Seek
// accepts any offset from 0 to Size inclusive; seeking to a negative
// offset is an error, and what seeking past Size does is up to the
// backend, so callers must not rely on it.
//
// The caller must Close the Object. Using it after Close is an error.
type Object interface {
	io.ReadSeekCloser
	io.ReaderAt

	// Size returns the object's length in bytes, as of Open.
	Size() int64
}

// Store keeps objects under keys. All methods are safe for concurrent use
// by multiple goroutines, including concurrent calls for the same key.
// Every method takes a context first: if ctx is already done the method
// fails with an error that wraps ctx.Err() and changes nothing. Every
// method rejects a key that ValidKey refuses with an error wrapping
// ErrInvalidKey, before touching storage.
//
// Keys that are both an object and a directory-like prefix of another
// object ("a" and "a/b") are not portable: a filesystem cannot hold both,
// so the filesystem store fails the second Put, while object stores accept
// it. Key schemes must not produce such pairs.
type Store interface {
	// Put stores the bytes read from r under key, replacing any object
	// already there, and returns the new object's Info.
	//
	// size is the number of bytes r will yield, or -1 if it is not known
	// in advance (a DIMSE dataset arrives in fragments whose total is only
	// known at the last one). When size is 0 or more and r yields a
	// different number of bytes, Put fails with an error wrapping
	// ErrSizeMismatch. Backends pass a known size on, since it lets an
	// object store upload in one request, so give it whenever you have it.
	// Any size below -1 is an error.
	//
	// Put returns nil only once the object is durable: it survives a crash
	// of the process and of the machine, as far as the backing storage
	// honours flushes. Replacement is atomic: until Put commits, readers
	// of key see the old object (or none), afterwards the new one, and
	// never a mixture or a truncated object. Concurrent Puts to one key
	// are allowed; one of them wins.
	//
	// If Put fails because ctx is done before the object is committed,
	// because r returns an error, or because of a size mismatch, nothing
	// is stored: key keeps its previous object, or stays absent, and no
	// partial object becomes visible to Open, Stat or List. The returned
	// error wraps ctx.Err(), r's error, or ErrSizeMismatch respectively.
	// After any other error, such as a failing disk, key holds either its
	// previous object or the whole new one, never a part of it.
	// Cancellation is noticed between reads of r; a Read that never
	// returns is for the caller to unblock, for instance by closing the
	// connection r reads from.
	//
	// Put reads r to its end (or, when size is known, up to size bytes and
	// one more to check there are no more) and does not close it.
	Put(ctx context.Context, key string, r io.Reader, size int64) (Info, error)

	// Open opens the object under key for reading. It returns an error
	// wrapping ErrNotFound if there is none.
	//
	// A backend may tie the Object to ctx and fail its reads once ctx is
	// done (minio-go does), so keep ctx alive until the Object is closed.
	Open(ctx context.Context, key string) (Object, error)

	// Stat returns the Info of the object under key, or an error wrapping
	// ErrNotFound if there is none.
	Stat(ctx context.Context, key string) (Info, error)

	// Delete removes the object under key. When it returns nil the removal
	// is durable. Deleting a key that holds no object is not an error and
	// returns nil: S3's DeleteObject cannot tell the two cases apart
	// without a racy extra request, and a caller that retries a delete
	// after a crash must not have to special-case it. Objects already open
	// behave as described on Object.
	Delete(ctx context.Context, key string) error

	// List yields the Info of every object whose key begins with prefix,
	// in lexical (byte-wise) order of keys. The prefix is matched as a
	// plain string against whole keys, as S3 does: "a/b" matches "a/b",
	// "a/bc" and "a/b/c", while "a/b/" matches only keys under "a/b/".
	// The empty prefix matches every key. A prefix that ValidPrefix
	// rejects yields a single error wrapping ErrInvalidKey.
	//
	// On an error List yields a zero Info with the error and stops. A
	// caller may break out of the loop at any time; List then releases
	// whatever it held. Objects put or deleted while List runs may or may
	// not be yielded, but every Info yielded describes an object that
	// existed while List ran. Each range over the sequence lists afresh.
	List(ctx context.Context, prefix string) iter.Seq2[Info, error]
}
