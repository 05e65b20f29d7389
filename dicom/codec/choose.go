package codec

import (
	"crypto/sha256"
	"math/big"
	"slices"

	"github.com/pacsd/pacsd/dicom"
	"github.com/pacsd/pacsd/dicom/uid"
)

// Choice is the transfer syntax to send a stored data set in.
type Choice struct {
	TransferSyntax string
	// NewInstance reports that the conversion compresses lossily, so the
	// copy is a new instance: the caller makes a SOP Instance UID and
	// passes it in TranscodeOptions.SOPInstanceUID (PS3.3 C.7.6.1.1.5).
	NewInstance bool
}

// uncompressed lists the uncompressed syntaxes in the order a converted
// data set prefers them: explicit VR keeps every VR, little endian is
// what every peer reads, deflate costs the most time.
var uncompressed = [...]string{
	uid.ExplicitVRLittleEndian, uid.ImplicitVRLittleEndian, uid.ExplicitVRBigEndian, uid.DeflatedExplicitVRLittleEndian,
}

// Choose picks the transfer syntax in which to send a data set stored in
// stored to a peer that accepts the syntaxes in accepted, most preferred
// first: stored itself when accepted; else an uncompressed syntax; else
// the first accepted lossless syntax this Registry encodes; and only when
// the peer accepts nothing else, the first lossy one, with NewInstance
// set. It reports false when no accepted syntax can be reached from
// stored. Whether a codec can encode the particular pixels (lossy JPEG
// of signed values, for one) is found only when Transcode meets them.
func (r *Registry) Choose(stored string, accepted []string) (Choice, bool) {
	if slices.Contains(accepted, stored) {
		return Choice{TransferSyntax: stored}, true
	}
	if !dicom.Transcodable(stored) {
		if _, ok := r.Lookup(stored); !ok {
			return Choice{}, false
		}
	}
	for _, ts := range uncompressed {
		if slices.Contains(accepted, ts) {
			return Choice{TransferSyntax: ts}, true
		}
	}
	var lossy string
	for _, ts := range accepted {
		c, ok := r.Lookup(ts)
		if !ok {
			continue
		}
		if !c.Lossy() {
			return Choice{TransferSyntax: ts}, true
		}
		if lossy == "" {
			lossy = ts
		}
	}
	if lossy != "" {
		return Choice{TransferSyntax: lossy, NewInstance: true}, true
	}
	return Choice{}, false
}

// CanTranscode reports whether Transcode converts from one syntax to the
// other, as far as the syntaxes alone tell.
func (r *Registry) CanTranscode(from, to string) bool {
	if from == to {
		return true
	}
	for _, ts := range []string{from, to} {
		if _, ok := r.Lookup(ts); !ok && !dicom.Transcodable(ts) {
			return false
		}
	}
	return true
}

// LossyInstanceUID returns the SOP Instance UID of the lossy copy, in
// transfer syntax ts, of the instance whose UID is instance: a UID under
// 2.25 (PS3.5 B.2) derived from both, so that each retrieval of the same
// copy names it alike and a destination keeps one of it.
func LossyInstanceUID(instance, ts string) string {
	h := sha256.Sum256([]byte("pacsd lossy copy\x00" + instance + "\x00" + ts))
	b := h[:16]
	b[6] = b[6]&0x0F | 0x80 // a UUID of version 8 (RFC 9562), variant 10
	b[8] = b[8]&0x3F | 0x80
	return "2.25." + new(big.Int).SetBytes(b).String()
}

// Encodings returns the compressed transfer syntaxes this Registry
// encodes, lossless ones and lossy ones, each in the order a sender
// proposes them: the better compression, and the more widely decoded,
// first.
func (r *Registry) Encodings() (lossless, lossy []string) {
	for _, ts := range []string{
		uid.JPEGLSLossless, uid.JPEG2000Lossless, uid.JPEGLosslessSV1, uid.JPEGLossless, uid.HTJ2KLossless,
		uid.HTJ2KLosslessRPCL, uid.RLELossless,
		uid.JPEGLSNearLossless, uid.JPEG2000, uid.HTJ2K, uid.JPEGExtended12Bit, uid.JPEGBaseline8Bit,
	} {
		c, ok := r.Lookup(ts)
		switch {
		case !ok:
		case c.Lossy():
			lossy = append(lossy, ts)
		default:
			lossless = append(lossless, ts)
		}
	}
	return lossless, lossy
}
