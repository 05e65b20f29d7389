package render

import "math"

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
	slope, intercept float64
	win              Window
	invert           bool
}

func (m *mapping) apply(v int64) uint8 {
	y := voi(float64(v)*m.slope+m.intercept, m.win)
	out := uint8(math.Floor(y + 0.5))
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
func newGray(p Params, l layout, s sampler, override *Window) *grayFrame {
	g := &grayFrame{w: l.w, h: l.h, s: s}
	g.m = mapping{slope: p.RescaleSlope, intercept: p.RescaleIntercept, invert: l.photometric == Monochrome1}
	if g.m.slope == 0 || math.IsNaN(g.m.slope) || math.IsInf(g.m.slope, 0) {
		g.m.slope = 1
	}
	if math.IsNaN(g.m.intercept) || math.IsInf(g.m.intercept, 0) {
		g.m.intercept = 0
	}
	switch {
	case override != nil:
		g.m.win = *override
	case p.Window != nil && p.Window.check() == nil:
		g.m.win = *p.Window
	default:
		lo, hi := g.minMax()
		a, b := float64(lo)*g.m.slope+g.m.intercept, float64(hi)*g.m.slope+g.m.intercept
		lo2, hi2 := min(a, b), max(a, b)
		g.m.win = Window{Center: (lo2 + hi2 + 1) / 2, Width: hi2 - lo2 + 1, Function: Linear}
	}
	if l.stored <= 16 {
		g.lut = make([]uint8, 1<<l.stored)
		for raw := range g.lut {
			g.lut[raw] = g.m.apply(s.value(uint32(raw)))
		}
	}
	return g
}

// minMax returns the least and greatest stored values of the frame.
func (g *grayFrame) minMax() (lo, hi int64) {
	n := g.w * g.h
	lo, hi = math.MaxInt64, math.MinInt64
	for i := range n {
		v := g.s.value(g.s.raw(i))
		lo, hi = min(lo, v), max(hi, v)
	}
	return lo, hi
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
