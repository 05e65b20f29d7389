package index

import "time"

// Original describes the object an instance was received as, when the
// archive keeps it re-encoded losslessly (package recompress): the
// archive rebuilds its bytes exactly from the re-encoded object, which
// carries this description too, so that the bucket alone restores it.
type Original struct {
	// Key is the re-encoded object's key: the description holds for
	// that object only.
	Key string
	// SHA256, TransferSyntaxUID and Size are those of the object as
	// received.
	SHA256            string
	TransferSyntaxUID string
	Size              int64
	// CompressedAt is when the re-encoded object was recorded.
	CompressedAt time.Time
}

// CompressTask names the version of an instance claimed for compression.
type CompressTask struct {
	SOPInstanceUID string
	// Key is the object the claim is for: a claim on an object the
	// instance no longer has holds nothing.
	Key string
}

// CompressionStats sums up archive compression.
type CompressionStats struct {
	// Instances counts the instances whose current object is re-encoded;
	// OriginalBytes and StoredBytes are the sizes of their originals and
	// of their objects.
	Instances                  int64
	OriginalBytes, StoredBytes int64
	// Skipped counts the instances compression left as they are.
	Skipped int64
}

// Saved returns the bytes compression saves.
func (s CompressionStats) Saved() int64 { return s.OriginalBytes - s.StoredBytes }
