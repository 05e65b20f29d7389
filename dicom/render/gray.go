package render

import (
	"fmt"
	"math"
)

// grayFrame renders a MONOCHROME1 or MONOCHROME2 frame.
type grayFrame struct {
	w, h int
	s    sampler
	// lut maps the stored bits of a sample to its output when there are
	// at most 16 of them; otherwise each sample goes through m.
	lut []uint8
	m   mapping
}

// mapping is the grayscale pipeline from a stored value to an 8-bit
// output value: Modality LUT, VOI LUT, and the inversion of MONOCHROME1.
type mapping struct {
	// The Modality LUT: a table when modality is set, else the rescale.
	slope, intercept float64
	modality         table
	// The VOI LUT: a table when voi is set, else the window.
	win    Window
	voi    table
	invert bool
}

// table is a Modality or VOI LUT ready for lookups.
type table struct {
	entries []int
	first   int64
	max     float64 // the largest value an entry may hold
}

func (t *table) lookup(x int64) int {
	i := min(max(x-t.first, 0), int64(len(t.entries)-1))
	return t.entries[i]
}

// newTable checks a LUT and returns it as a table; nil for none.
func newTable(l *LUT) (table, error) {
	if l == nil {
		return table{}, nil
	}
	e, err := l.values()
	if err != nil {
		return table{}, err
	}
	bits := l.Bits
	if bits < 1 || bits > 16 {
		bits = 16
	}
	return table{entries: e, first: int64(l.First), max: float64(int(1)<<bits - 1)}, nil
}

// modalityValue is the output of the Modality LUT for stored value v.
func (m *mapping) modalityValue(v int64) float64 {
	if m.modality.entries != nil {
		return float64(m.modality.lookup(v))
	}
	return float64(v)*m.slope + m.intercept
}

func (m *mapping) apply(v int64) uint8 {
	x := m.modalityValue(v)
	var y float64
	if m.voi.entries != nil {
		y = float64(m.voi.lookup(int64(math.Floor(x)))) * 255 / m.voi.max
	} else {
		y = voi(x, m.win)
	}
	out := uint8(math.Floor(min(max(y, 0), 255) + 0.5))
	if m.invert {
		out = 255 - out
	}
	return out
}

// voi applies window w to x, a value out of the Modality LUT, with the
// formulas of PS3.3 §C.11.2.1.2 for an output range of 0 to 255. The
// window has passed Window.check.
func voi(x float64, w Window) float64 {
	const ymax = 255
	c, width := w.Center, w.Width
	switch w.Function {
	case LinearExact:
		switch {
		case x <= c-width/2:
			return 0
		case x > c+width/2:
			return ymax
		}
		return ((x-c)/width + 0.5) * ymax
	case Sigmoid:
		return ymax / (1 + math.Exp(-4*(x-c)/width))
	default:
		switch {
		case x <= c-0.5-(width-1)/2:
			return 0
		case x > c-0.5+(width-1)/2:
			return ymax
		}
		return ((x-(c-0.5))/(width-1) + 0.5) * ymax
	}
}

// newGray returns the rows of a grayscale frame. The window is override
// if given, else the data set's window if it is usable, else the window
// that spans the frame's values from its minimum to its maximum, as dcmtk
// computes it: a center of (min+max+1)/2 and a width of max-min+1, which
// for LINEAR maps min to 0 and max to 255 (PS3.3 §C.11.2.1.2.1, Note 2).
func newGray(p Params, l layout, s sampler, override *Window) (*grayFrame, error) {
	g := &grayFrame{w: l.w, h: l.h, s: s}
	g.m = mapping{slope: p.RescaleSlope, intercept: p.RescaleIntercept, invert: l.photometric == Monochrome1}
	if g.m.slope == 0 || math.IsNaN(g.m.slope) || math.IsInf(g.m.slope, 0) {
		g.m.slope = 1
	}
	if math.IsNaN(g.m.intercept) || math.IsInf(g.m.intercept, 0) {
		g.m.intercept = 0
	}
	var err error
	if g.m.modality, err = newTable(p.ModalityLUT); err != nil {
		return nil, fmt.Errorf("modality LUT: %w", err)
	}
	switch {
	case override != nil:
		g.m.win = *override
	case p.Window != nil && p.Window.check() == nil:
		g.m.win = *p.Window
	case p.VOILUT != nil:
		if g.m.voi, err = newTable(p.VOILUT); err != nil {
			return nil, fmt.Errorf("VOI LUT: %w", err)
		}
	default:
		lo, hi := g.minMax()
		g.m.win = Window{Center: (lo + hi + 1) / 2, Width: hi - lo + 1, Function: Linear}
	}
	if l.stored <= 16 {
		g.lut = make([]uint8, 1<<l.stored)
		for raw := range g.lut {
			g.lut[raw] = g.m.apply(s.value(uint32(raw)))
		}
	}
	return g, nil
}

// minMax returns the least and greatest outputs of the Modality LUT over
// the frame's stored values.
func (g *grayFrame) minMax() (lo, hi float64) {
	n := g.w * g.h
	var vlo, vhi int64 = math.MaxInt64, math.MinInt64
	if g.m.modality.entries == nil {
		// The rescale is monotonic: its extremes are those of the
		// stored values.
		if s := &g.s; s.alloc == 16 && !s.bigEndian {
			vlo, vhi = minMax16(s.data[:2*n], s.shift, s.mask, s.stored, s.signed)
		} else {
			for i := range n {
				v := g.s.value(g.s.raw(i))
				vlo, vhi = min(vlo, v), max(vhi, v)
			}
		}
		a, b := g.m.modalityValue(vlo), g.m.modalityValue(vhi)
		return min(a, b), max(a, b)
	}
	lo, hi = math.Inf(1), math.Inf(-1)
	for i := range n {
		x := g.m.modalityValue(g.s.value(g.s.raw(i)))
		lo, hi = min(lo, x), max(hi, x)
	}
	return lo, hi
}

// minMax16 returns the least and greatest stored values of 16-bit
// little endian samples: the loop of minMax for CT, MR and CR without a
// call per sample, as it runs over every pixel of the frames that carry
// no window.
func minMax16(d []byte, shift uint, mask uint32, stored int, signed bool) (lo, hi int64) {
	var rlo, rhi uint32 = math.MaxUint32, 0
	if !signed {
		for i := 0; i+1 < len(d); i += 2 {
			v := (uint32(d[i]) | uint32(d[i+1])<<8) >> shift & mask
			rlo, rhi = min(rlo, v), max(rhi, v)
		}
		return int64(rlo), int64(rhi)
	}
	// Sign-extended from the stored bits by shifting them to the top of
	// an int32 and back.
	up := 32 - uint(stored)
	var slo, shi int32 = math.MaxInt32, math.MinInt32
	for i := 0; i+1 < len(d); i += 2 {
		v := int32(((uint32(d[i])|uint32(d[i+1])<<8)>>shift&mask)<<up) >> up
		slo, shi = min(slo, v), max(shi, v)
	}
	return int64(slo), int64(shi)
}

func (g *grayFrame) size() (int, int) { return g.w, g.h }
func (g *grayFrame) channels() int    { return 1 }

func (g *grayFrame) row(y int, dst []uint8) {
	i := y * g.w
	s := &g.s
	switch {
	case g.lut != nil && s.alloc == 8:
		for x, b := range s.data[i : i+g.w] {
			dst[x] = g.lut[uint32(b)>>s.shift&s.mask]
		}
		return
	case g.lut != nil && s.alloc == 16 && !s.bigEndian:
		// The common case of CT, MR and CR, without a call per sample.
		d := s.data[2*i : 2*(i+g.w)]
		for x := range g.w {
			v := uint32(d[2*x]) | uint32(d[2*x+1])<<8
			dst[x] = g.lut[v>>s.shift&s.mask]
		}
		return
	case g.lut != nil:
		for x := range g.w {
			dst[x] = g.lut[g.s.raw(i+x)]
		}
		return
	}
	for x := range g.w {
		dst[x] = g.m.apply(g.s.value(g.s.raw(i + x)))
	}
}
