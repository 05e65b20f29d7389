package render

import (
	"context"
	"image"
	"math"
)

// rows is a rendered frame, row by row: 8-bit gray (one channel) or
// 8-bit RGB (three).
type rows interface {
	size() (w, h int)
	channels() int
	// row writes row y, w × channels() bytes, to dst.
	row(y int, dst []uint8)
}

// target returns the size of a w × h image scaled down to fit vp,
// keeping its aspect ratio.
func target(w, h int, vp Viewport) (int, int) {
	if fits(w, h, vp) {
		return w, h
	}
	s := 1.0
	if vp.Width > 0 {
		s = min(s, float64(vp.Width)/float64(w))
	}
	if vp.Height > 0 {
		s = min(s, float64(vp.Height)/float64(h))
	}
	dw := max(1, int(math.Round(float64(w)*s)))
	dh := max(1, int(math.Round(float64(h)*s)))
	if vp.Width > 0 {
		dw = min(dw, vp.Width)
	}
	if vp.Height > 0 {
		dh = min(dh, vp.Height)
	}
	return dw, dh
}

// output renders src into a new image of the size target gives.
func output(ctx context.Context, src rows, vp Viewport) (image.Image, error) {
	w, h := src.size()
	dw, dh := target(w, h, vp)
	ch := src.channels()
	var pix []uint8
	var stride int
	var img image.Image
	if ch == 1 {
		g := image.NewGray(image.Rect(0, 0, dw, dh))
		pix, stride, img = g.Pix, g.Stride, g
	} else {
		c := image.NewRGBA(image.Rect(0, 0, dw, dh))
		pix, stride, img = c.Pix, c.Stride, c
	}
	buf := make([]uint8, w*ch)
	put := func(y int, line []uint8) {
		out := pix[y*stride:]
		if ch == 1 {
			copy(out, line)
			return
		}
		for x := range len(line) / 3 {
			out[4*x], out[4*x+1], out[4*x+2], out[4*x+3] = line[3*x], line[3*x+1], line[3*x+2], 0xFF
		}
	}
	if dw == w && dh == h {
		for y := range h {
			if y%64 == 63 && ctx.Err() != nil {
				return nil, ctx.Err()
			}
			src.row(y, buf)
			put(y, buf)
		}
		return img, nil
	}
	// Area averaging: each output pixel is the mean of the source area it
	// covers, edge pixels weighted by the fraction covered. One source
	// row is held at a time; rows on the edge of two output rows are
	// rendered twice, which costs less than holding them.
	xs, ys := coverage(w, dw), coverage(h, dh)
	acc := make([]float32, dw*ch)
	line := make([]uint8, dw*ch)
	for oy := range dh {
		if oy%16 == 15 && ctx.Err() != nil {
			return nil, ctx.Err()
		}
		clear(acc)
		for j, wy := range ys[oy].weights {
			src.row(ys[oy].first+j, buf)
			for ox := range dw {
				cx := xs[ox]
				for c := range ch {
					var sum float32
					for i, wx := range cx.weights {
						sum += wx * float32(buf[(cx.first+i)*ch+c])
					}
					acc[ox*ch+c] += wy * sum
				}
			}
		}
		for i, v := range acc {
			line[i] = uint8(min(max(v+0.5, 0), 255))
		}
		put(oy, line)
	}
	return img, nil
}

// span is the source pixels one output pixel covers along one axis: from
// first, with the fraction of the output pixel each one makes up.
type span struct {
	first   int
	weights []float32
}

// coverage returns the spans of n source pixels scaled down to m.
func coverage(n, m int) []span {
	out := make([]span, m)
	scale := float64(n) / float64(m)
	for i := range out {
		lo, hi := float64(i*n)/float64(m), float64((i+1)*n)/float64(m)
		first, last := int(math.Floor(lo)), min(int(math.Ceil(hi)), n)
		s := span{first: first}
		for j := first; j < last; j++ {
			cover := min(hi, float64(j+1)) - max(lo, float64(j))
			s.weights = append(s.weights, float32(cover/scale))
		}
		out[i] = s
	}
	return out
}
