// Package s3 is the storage.Store on an S3-compatible object store (Amazon
// S3, MinIO, Versity's gateway, Ceph and others), built on minio-go. Each
// key is an object of one bucket, optionally below a prefix, so that a
// person or another program can find an instance by its key and the bucket
// alone is enough to rebuild the index.
//
// # Writing
//
// An object of known size up to Config.PartSize goes up in one streaming
// PUT request, without being buffered. Any other object is read into a
// buffer of PartSize bytes (and one more, to see whether the object goes
// on): if it ends there, as nearly every DIMSE data set of unknown length
// does, it still goes up in one PUT; otherwise it becomes a multipart
// upload whose parts are sent one at a time from that buffer. So a Put
// holds at most one part of the object in memory, and the Store one part
// per Put in progress, whatever the size of the objects; the buffers are
// pooled and reused. Parts are sent one after the other, never in
// parallel, which keeps that bound at the cost of throughput for a single
// large object. An object can have at most 10,000 parts, so PartSize
// also bounds the largest object (156 GiB at the default 16 MiB).
//
// Put returns once the server has confirmed the PUT or the completion of
// the multipart upload, which S3 makes atomic and durable. A Put that
// fails aborts its multipart upload, so no part of it becomes visible; a
// process that dies during a multipart upload leaves its parts on the
// server, invisible to Open, Stat and List but taking space, so the bucket
// should have a lifecycle rule that aborts incomplete multipart uploads
// after a day or so.
//
// # Reading
//
// Open asks for the object's size and ETag (a HEAD request), and every
// read of the Object it returns is a GET with a Range header and an
// If-Match condition on that ETag: a frame or bulk data element read with
// ReadAt costs one request for exactly its bytes, and an object replaced or
// deleted while open fails to read instead of mixing versions. Read streams
// from its offset to the end of the object in one request.
//
// # Listing
//
// List uses ListObjectsV2, which S3 defines to be in lexical order of
// keys. Objects below the prefix whose names are not valid keys (see
// storage.ValidKey), such as folder markers that some tools create, were
// not written by a Store and are skipped.
//
// # Errors
//
// A missing object is storage.ErrNotFound. A server that cannot be
// reached, breaks the connection, times out or answers that it cannot
// serve now (5xx, Slow Down) is storage.ErrUnavailable, once minio-go has
// retried the request as Config.MaxRetries allows. A server that hangs
// times out after Config.StallTimeout without progress. A missing bucket and
// refused credentials are other errors, and none of these is ever
// ErrNotFound, so that a broken configuration or an outage is not taken
// for missing data.
package s3
