package dicom

import (
	"encoding/binary"

	"github.com/pacsd/pacsd/dicom/tag"
)

// SwapUnit returns the size in bytes of the units whose bytes are reversed
// when a value of element t, of VR vr, moves between little and big
// endian, in a data set or item whose Bits Allocated (0028,0100) is
// bitsAllocated (0 if absent). It is the one rule every conversion
// between byte orders follows here: values follow their VR (PS3.5 §7.3),
// 2 for US, SS, OW and AT (a pair of 16-bit numbers), 4 for UL, SL, FL,
// OF and OL, 8 for FD, OD, SV, UV and OV; text, OB, UN and SQ are strings
// of bytes: 1.
func SwapUnit(t tag.Tag, vr string, bitsAllocated int) int {
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
