package index

import "time"

// Export records a study that pacsd export read: it reaches the audit
// trail through the index, written by whichever process writes the
// trail.
type Export struct {
	ID int64
	// Time is when the export ended; the index's clock when zero.
	Time time.Time
	// Principal is who ran it (the operating-system user).
	Principal string
	Study     string
	// Destination is where the copies went: a directory.
	Destination string
	// Instances counts the instances written; SOPClasses counts them
	// by SOP Class UID.
	Instances    int
	SOPClasses   map[string]int
	Deidentified bool
	// Failure says why the export failed, "" when it did not.
	Failure string
}
