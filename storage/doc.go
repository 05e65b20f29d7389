// Package storage defines where pacsd keeps the bytes of the objects it
// archives: a small key/value interface, Store, that the archive service
// calls and that each backend implements. The filesystem backend lives in
// storage/file, the S3 backend in storage/s3, a local spool in front of a
// remote Store in storage/spool, an in-memory fake for tests of other
// packages in storage/mem, and the conformance suite every backend must
// pass in storage/storagetest.
//
// Keys are slash-separated relative paths (see ValidKey). The archive
// decides how DICOM identifiers map onto keys; this package only makes sure
// that no key can name anything outside a backend's root.
package storage
