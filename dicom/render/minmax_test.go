package render

import (
	"math/rand/v2"
	"testing"
)

// TestMinMax16 checks the 16-bit loop of minMax against the sampler it
// stands in for: stored bits shifted by High Bit, masked, signed or not.
func TestMinMax16(t *testing.T) {
	rng := rand.New(rand.NewPCG(1, 2))
	data := make([]byte, 2*1000)
	for i := range data {
		data[i] = byte(rng.Uint32())
	}
	for _, tt := range []struct {
		stored int
		shift  uint
		signed bool
	}{
		{12, 0, false}, {12, 0, true}, {12, 4, false}, {12, 4, true},
		{16, 0, false}, {16, 0, true}, {1, 15, true}, {10, 3, true},
	} {
		s := sampler{data: data, alloc: 16, shift: tt.shift, mask: uint32(1<<tt.stored - 1), stored: tt.stored, signed: tt.signed}
		var wlo, whi int64 = 1 << 40, -1 << 40
		for i := range len(data) / 2 {
			v := s.value(s.raw(i))
			wlo, whi = min(wlo, v), max(whi, v)
		}
		lo, hi := minMax16(data, s.shift, s.mask, s.stored, s.signed)
		if lo != wlo || hi != whi {
			t.Errorf("%+v: %d..%d, want %d..%d", tt, lo, hi, wlo, whi)
		}
	}
}
