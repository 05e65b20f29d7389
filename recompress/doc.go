// Package recompress compresses the archive in the background: it
// re-encodes, losslessly, the instances stored uncompressed (Implicit or
// Explicit VR Little Endian) once they are older than a configured age,
// in HTJ2K, JPEG-LS or JPEG 2000, and reports the bytes saved.
//
// The archive does the work on each instance (archive.Service.Compress):
// the compressed object is written as a new version beside the original,
// read back, decoded frame by frame and compared bit for bit with the
// original's pixels, and the original is rebuilt from it and must have
// the original's SHA-256; only then does the index name it, and only
// then is the original deleted. The compressed object carries what it
// takes to rebuild the original byte for byte, so the original is what
// pacsd serves whenever an uncompressed syntax is asked for, and the
// bucket alone rebuilds the index. An instance that cannot be given back
// exactly (pixels the encoder cannot take, bits above Bits Stored that a
// lossless encoder drops, colour by plane) stays as it is, skipped, with
// its reason logged and kept in the index.
//
// The state is in the index (see Index): which instances are due, which
// node holds a lease on which, which were skipped. Several nodes on one
// PostgreSQL index never compress one instance at once, and a node that
// dies leaves its instances to another once its leases run out.
// Compression works on Concurrency instances at a time, at most Rate
// bytes of originals a second, so that it does not starve ingest.
//
// Codecs adapts a dicom/codec Registry to what the archive needs of it.
package recompress
