// Package spool is a storage.Store that acknowledges a Put as soon as the
// object is durable on local disk, and copies it to a remote Store (an S3
// bucket) in the background. It keeps the archive taking in images while
// the remote is slow or unreachable, at the price of making the local disk
// the only copy of an acknowledged object until its upload is confirmed.
//
// # Acknowledgement
//
// pacsd's S3 storage acknowledges in one of two ways, chosen by the ack
// parameter of its storage URL: "direct", where Put returns once S3 has
// confirmed the object, and "spool", this package. Direct is the default.
// An operator who names a bucket expects the bucket to hold what was
// acknowledged; with a spool the acknowledged object sits for a while on
// a disk that may not have been chosen for durability at all (a
// container's scratch space is lost with the container), and nothing
// would say so until it was too late. Choosing the spool is therefore
// explicit, for a data directory on durable storage, in exchange for
// taking in images through an outage of the remote and for C-STORE
// responses that do not wait for it. Storage Commitment asks Uploaded, so
// that a commitment is only ever confirmed for an object in the remote.
//
// # The spool directory
//
// The spool is a storage/file Store on its own directory, with the same
// keys as the remote. That directory is the upload queue and the only
// state the spool keeps: whatever is in it is still to be uploaded, and a
// spool opened on it again, after a clean stop or a crash, uploads what it
// finds. One process at a time may write to a spool directory: New takes
// an exclusive lock on it and fails with ErrLocked while another process
// holds it. A read-only Store (Config.ReadOnly) takes no lock and uploads
// nothing; it serves pacsd's maintenance commands.
//
// # Uploading
//
// A Put hands its key to the uploader, which is also told of every object
// it finds when it walks the spool directory: at start, periodically, and
// after a failure. Config.Workers uploads run at once, each streaming from
// the spool file, so memory does not grow with the size of objects; at
// most one upload of a key runs at a time. After the remote has confirmed
// an upload, the object is read back from the remote and its length and
// SHA-256 compared with what was sent; only then is the spool copy
// removed, and only if it is still the file that was uploaded, not a newer
// one put meanwhile. A failed upload leaves the spool copy where it is and
// is tried again after a pause that doubles with every failure in a row,
// from Config.MinBackoff up to Config.MaxBackoff, so that an unreachable
// remote sees one attempt per pause rather than a storm.
//
// Reading the object back costs a GET of every object uploaded. The spool
// copy is the only one until it is removed, and removing it cannot be
// undone, so the proof that the remote holds the same bytes is worth it.
//
// # Reading
//
// Open and Stat look in the spool first and then in the remote, so an
// object is readable from the moment Put returns, wherever it is. List
// merges the two listings. Delete removes the object from both.
//
// # Backlog
//
// Backlog reports how many objects, and bytes, wait for the remote: what
// would be lost with the spool's disk. A health check or a metrics scrape
// asks it every few seconds, so a writing Store keeps it as a running
// figure, changed by every Put, Delete and upload under the lock of the
// key whose file changes, and counted from the directory when the Store
// opens. It costs the same whatever the spool holds.
package spool
