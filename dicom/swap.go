package dicom

import (
	"encoding/binary"
	"io"

	"github.com/pacsd/pacsd/dicom/tag"
)

// SwapUnit returns the size in bytes of the units whose bytes are reversed
// when a value of element t, of VR vr, moves between little and big
// endian, in a data set or item whose Bits Allocated (0028,0100) is
// bitsAllocated (0 if absent). It is the one rule every conversion
// between byte orders follows here (Transcode, the Scanner's values,
// Encode, frames served from big endian objects):
//
//   - Pixel Data (7FE0,0010) of VR OB or OW follows Bits Allocated: 16-,
//     32- and 64-bit pixels are swapped as such, so that 32-bit pixel
//     data sent as OW in big endian becomes the same little endian values
//     pydicom and dcm4che read. Pixels of 8 bits or fewer are bytes in OB
//     and 16-bit words in OW, into which PS3.5 §8.1.1 packs them.
//   - Every other value follows its VR (PS3.5 §7.3): 2 for US, SS, OW and
//     AT (a pair of 16-bit numbers), 4 for UL, SL, FL, OF and OL, 8 for FD,
//     OD, SV, UV and OV.
//   - Text, OB, UN (whose value is little endian in every syntax, PS3.5
//     §6.2.2) and SQ are strings of bytes: 1.
func SwapUnit(t tag.Tag, vr string, bitsAllocated int) int {
	if t == tag.PixelData && (vr == "OB" || vr == "OW") {
		switch bitsAllocated {
		case 16, 32, 64:
			return bitsAllocated / 8
		}
		if vr == "OW" {
			return 2
		}
		return 1
	}
	switch vr {
	case "US", "SS", "OW", "AT":
		return 2
	case "UL", "SL", "FL", "OF", "OL":
		return 4
	case "FD", "OD", "SV", "UV", "OV":
		return 8
	}
	return 1
}

// swapUnits reverses the bytes of each whole unit of size bytes in v; a
// trailing partial unit, which only a malformed value has, is left alone.
func swapUnits(v []byte, size int) {
	switch size {
	case 2:
		for i := 0; i+2 <= len(v); i += 2 {
			v[i], v[i+1] = v[i+1], v[i]
		}
	case 4:
		for i := 0; i+4 <= len(v); i += 4 {
			binary.LittleEndian.PutUint32(v[i:], binary.BigEndian.Uint32(v[i:]))
		}
	case 8:
		for i := 0; i+8 <= len(v); i += 8 {
			binary.LittleEndian.PutUint64(v[i:], binary.BigEndian.Uint64(v[i:]))
		}
	}
}

// NewSwapReader returns a reader of the bytes of r with those of each
// unit of unit bytes reversed (see SwapUnit): a value read in one byte
// order, in the other. A unit of 1 (or any other than 2, 4 and 8) returns
// r itself. A stream that ends inside a unit, which only a malformed value
// does, ends with that unit's bytes as they were.
func NewSwapReader(r io.Reader, unit int) io.Reader {
	if unit != 2 && unit != 4 && unit != 8 {
		return r
	}
	return &swapReader{r: r, unit: unit}
}

type swapReader struct {
	r    io.Reader
	unit int
	buf  []byte
	pend []byte // swapped bytes not yet returned
	err  error
}

func (s *swapReader) Read(p []byte) (int, error) {
	if len(s.pend) == 0 {
		if s.err != nil {
			return 0, s.err
		}
		if s.buf == nil {
			s.buf = make([]byte, 32<<10) // a multiple of every unit
		}
		n, err := io.ReadFull(s.r, s.buf)
		switch err {
		case nil:
		case io.ErrUnexpectedEOF:
			s.err = io.EOF
		default:
			s.err = err
		}
		swapUnits(s.buf[:n], s.unit)
		s.pend = s.buf[:n]
		if n == 0 {
			return 0, s.err
		}
	}
	n := copy(p, s.pend)
	s.pend = s.pend[n:]
	return n, nil
}
