package dcmgen

import (
	"crypto/rand"
	"math/big"
)

// UID returns a new UID under the 2.25 root: a random (version 4) UUID
// written as one decimal integer, as PS3.5 §B.2 describes. It needs no
// registered organisation root, and 122 random bits make collisions between
// test runs and with real data practically impossible. The result is at
// most 44 characters, well inside the 64 a UID may have.
func UID() string {
	var b [16]byte
	// Since Go 1.24 crypto/rand.Read never returns an error: it aborts
	// the program if the system's generator fails.
	_, _ = rand.Read(b[:])
	b[6] = b[6]&0x0F | 0x40 // version 4
	b[8] = b[8]&0x3F | 0x80 // RFC 4122 variant
	// The version bits make the integer nonzero, so it has no leading
	// zero, which a UID component must not have.
	return "2.25." + new(big.Int).SetBytes(b[:]).String()
}
