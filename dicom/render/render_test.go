package render

import (
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"image"
	"image/color"
	"image/jpeg"
	"io"
	"runtime"
	"slices"
	"testing"

	"github.com/pacsd/pacsd/dicom/uid"
)

// mono returns the Params of a one-row MONOCHROME2 image of n samples.
func mono(n, alloc, stored, high int, signed bool) Params {
	p := Params{Rows: 1, Columns: n, SamplesPerPixel: 1, PhotometricInterpretation: Monochrome2,
		BitsAllocated: alloc, BitsStored: stored, HighBit: high}
	if signed {
		p.PixelRepresentation = 1
	}
	return p
}

func u16(v ...int) []byte {
	var b []byte
	for _, n := range v {
		b = binary.LittleEndian.AppendUint16(b, uint16(n))
	}
	return b
}

func u32(v ...int64) []byte {
	var b []byte
	for _, n := range v {
		b = binary.LittleEndian.AppendUint32(b, uint32(n))
	}
	return b
}

func win(c, w float64, fn string) *Window { return &Window{Center: c, Width: w, Function: fn} }

// TestGray checks grayscale rendering value by value against the
// pipeline of PS3.3 §C.11: stored bits, Modality LUT, VOI LUT, inversion.
// The expected values are worked out by hand in the comments.
func TestGray(t *testing.T) {
	withRescale := func(p Params, slope, intercept float64) Params {
		p.RescaleSlope, p.RescaleIntercept = slope, intercept
		return p
	}
	withWindow := func(p Params, w *Window) Params { p.Window = w; return p }
	mono1 := mono(4, 8, 8, 7, false)
	mono1.PhotometricInterpretation = Monochrome1
	tests := []struct {
		name string
		p    Params
		ts   string
		data []byte
		opts Options
		want []uint8
	}{
		// c=128, w=256 maps x to ((x-127.5)/255+0.5)*255 = x.
		{"identity window", mono(4, 8, 8, 7, false), uid.ExplicitVRLittleEndian,
			[]byte{0, 1, 128, 255}, Options{Window: win(128, 256, Linear)}, []uint8{0, 1, 128, 255}},
		{"MONOCHROME1 inverted", mono1, uid.ExplicitVRLittleEndian,
			[]byte{0, 1, 128, 255}, Options{Window: win(128, 256, Linear)}, []uint8{255, 254, 127, 0}},
		{"data set window", withWindow(mono(4, 8, 8, 7, false), win(128, 256, "")), uid.ImplicitVRLittleEndian,
			[]byte{0, 1, 128, 255}, Options{}, []uint8{0, 1, 128, 255}},
		// Override beats the data set's window.
		{"override", withWindow(mono(2, 8, 8, 7, false), win(0, 1, Linear)), uid.ExplicitVRLittleEndian,
			[]byte{3, 200}, Options{Window: win(128, 256, Linear)}, []uint8{3, 200}},
		// min 10, max 30: c=20.5, w=21; 20 -> (0/20+0.5)*255 = 127.5.
		{"min-max", mono(4, 8, 8, 7, false), uid.ExplicitVRLittleEndian,
			[]byte{10, 20, 30, 20}, Options{}, []uint8{0, 128, 255, 128}},
		// A flat frame: c=7.5, w=1, and 7 <= c-0.5.
		{"min-max of a flat frame", mono(2, 8, 8, 7, false), uid.ExplicitVRLittleEndian,
			[]byte{7, 7}, Options{}, []uint8{0, 0}},
		// An unusable window in the data set falls back to min-max.
		{"bad data set window", withWindow(mono(2, 8, 8, 7, false), win(5, 0, Linear)), uid.ExplicitVRLittleEndian,
			[]byte{1, 9}, Options{}, []uint8{0, 255}},
		// c=50, w=100: 0 below, 99 and above white; 1 -> ((1-49.5)/99+0.5)*255
		// = 2.58; 49 -> 126.21; 50 -> 128.79.
		{"LINEAR", mono(6, 16, 16, 15, false), uid.ExplicitVRLittleEndian,
			u16(0, 1, 49, 50, 99, 100), Options{Window: win(50, 100, Linear)}, []uint8{0, 3, 126, 129, 255, 255}},
		// w=1 is a threshold at c-0.5.
		{"LINEAR width 1", mono(3, 8, 8, 7, false), uid.ExplicitVRLittleEndian,
			[]byte{9, 10, 11}, Options{Window: win(10, 1, Linear)}, []uint8{0, 255, 255}},
		// c=100, w=200: 50 -> (-0.25+0.5)*255 = 63.75; 100 -> 127.5.
		{"LINEAR_EXACT", mono(5, 16, 16, 15, false), uid.ExplicitVRLittleEndian,
			u16(0, 50, 100, 200, 201), Options{Window: win(100, 200, LinearExact)}, []uint8{0, 64, 128, 255, 255}},
		// c=0, w=4: 255/(1+e^(-x)): -1 -> 68.58, 0 -> 127.5, 1 -> 186.42.
		{"SIGMOID", mono(5, 16, 16, 15, true), uid.ExplicitVRLittleEndian,
			u16(-1, 0, 1, -32768, 32767), Options{Window: win(0, 4, Sigmoid)}, []uint8{69, 128, 186, 0, 255}},
		// Signed 12 of 16 bits; the top 4 bits are not the value's.
		// c=0, w=4096 exact: -2048 -> 0, 2047 -> 254.94, -1 -> 127.44,
		// 0 -> 127.5, 0x123=291 -> 145.62.
		{"signed 12 bits masked", mono(5, 16, 12, 11, true), uid.ExplicitVRLittleEndian,
			u16(0xF800, 0x07FF, 0xFFFF, 0x0000, 0xA123), Options{Window: win(0, 4096, LinearExact)},
			[]uint8{0, 255, 127, 128, 146}},
		// High Bit 15, Bits Stored 12: the value is the top 12 bits.
		{"high bit 15", mono(3, 16, 12, 15, false), uid.ExplicitVRLittleEndian,
			u16(0x8005, 0xFFF0, 0x000F), Options{Window: win(2048, 4096, LinearExact)}, []uint8{128, 255, 0}},
		// A High Bit outside the allocated bits is taken as Bits Stored - 1.
		{"bad high bit", mono(2, 16, 12, 16, false), uid.ExplicitVRLittleEndian,
			u16(0xF001, 0x0002), Options{Window: win(128, 256, Linear)}, []uint8{1, 2}},
		// 5*2-10 = 0, 100*2-10 = 190.
		{"rescale", withRescale(mono(2, 8, 8, 7, false), 2, -10), uid.ExplicitVRLittleEndian,
			[]byte{5, 100}, Options{Window: win(128, 256, Linear)}, []uint8{0, 190}},
		// A negative slope turns the minimum into the maximum.
		{"negative slope min-max", withRescale(mono(2, 8, 8, 7, false), -1, 0), uid.ExplicitVRLittleEndian,
			[]byte{0, 10}, Options{}, []uint8{255, 0}},
		// Signed 8 bits: 0xFF is -1, 0x80 is -128; c=0, w=256 exact maps
		// -1 to 126.5 and 127 to 254.004.
		{"signed 8", mono(3, 8, 8, 7, true), uid.ExplicitVRLittleEndian,
			[]byte{0xFF, 0x80, 0x7F}, Options{Window: win(0, 256, LinearExact)}, []uint8{127, 0, 254}},
		// Bits are taken least significant first, from bit 3 of the
		// first byte: 1 0 1 0 1, then 1 0 1.
		{"1 bit from an offset", mono(8, 1, 1, 0, false), uid.ExplicitVRLittleEndian,
			[]byte{0b10101000, 0b00000101}, Options{BitOffset: 3}, []uint8{255, 0, 255, 0, 255, 255, 0, 255}},
		{"32 bits min-max", mono(3, 32, 32, 31, false), uid.ExplicitVRLittleEndian,
			u32(0, 4294967295, 2147483648), Options{}, []uint8{0, 255, 128}},
		{"32 bits signed", mono(3, 32, 32, 31, true), uid.ExplicitVRLittleEndian,
			u32(-2147483648, 2147483647, -1), Options{Window: win(0, 1<<32, LinearExact)}, []uint8{0, 255, 127}},
		{"big endian", mono(2, 16, 16, 15, false), uid.ExplicitVRBigEndian,
			[]byte{0x01, 0x00, 0x00, 0x01}, Options{Window: win(128, 256, Linear)}, []uint8{255, 1}},
		// The caller inflated the data set; the frame is little endian.
		{"deflated", mono(2, 16, 16, 15, false), uid.DeflatedExplicitVRLittleEndian,
			u16(256, 1), Options{Window: win(128, 256, Linear)}, []uint8{255, 1}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			img, err := Render(t.Context(), tt.p, tt.ts, bytes.NewReader(tt.data), tt.opts)
			if err != nil {
				t.Fatal(err)
			}
			g, ok := img.(*image.Gray)
			if !ok {
				t.Fatalf("got %T, want *image.Gray", img)
			}
			if !bytes.Equal(g.Pix, tt.want) {
				t.Errorf("got %v, want %v", g.Pix, tt.want)
			}
		})
	}
}

// TestColor checks colour rendering pixel by pixel.
func TestColor(t *testing.T) {
	rgb := func(w, h, alloc, stored int, planar bool, photometric string) Params {
		p := Params{Rows: h, Columns: w, SamplesPerPixel: 3, PhotometricInterpretation: photometric,
			BitsAllocated: alloc, BitsStored: stored, HighBit: stored - 1}
		if planar {
			p.PlanarConfiguration = 1
		}
		return p
	}
	pal := func(w int, signed bool, stored int, lut Palette) Params {
		p := Params{Rows: 1, Columns: w, SamplesPerPixel: 1, PhotometricInterpretation: PaletteColor,
			BitsAllocated: max(stored, 8), BitsStored: stored, HighBit: stored - 1, Palette: &lut}
		if signed {
			p.PixelRepresentation = 1
		}
		return p
	}
	// Red: 16-bit entries; green: a packed 8-bit table; blue: 8-bit
	// entries in 16-bit words.
	lut := Palette{
		Red:   LUT{Entries: 4, First: 1, Bits: 16, Data: u16(0x0000, 0x4000, 0x8000, 0xFFFF)},
		Green: LUT{Entries: 4, First: 1, Bits: 8, Data: []byte{1, 2, 3, 4}},
		Blue:  LUT{Entries: 4, First: 1, Bits: 8, Data: u16(10, 20, 30, 40)},
	}
	signedLUT := Palette{
		Red:   LUT{Entries: 4, First: -2, Bits: 8, Data: []byte{1, 2, 3, 4}},
		Green: LUT{Entries: 4, First: -2, Bits: 8, Data: []byte{5, 6, 7, 8}},
		Blue:  LUT{Entries: 4, First: -2, Bits: 8, Data: []byte{9, 10, 11, 12}},
	}
	tests := []struct {
		name string
		p    Params
		ts   string
		data []byte
		want [][3]uint8
	}{
		{"RGB by pixel", rgb(2, 1, 8, 8, false, RGB), uid.ExplicitVRLittleEndian,
			[]byte{10, 20, 30, 40, 50, 60}, [][3]uint8{{10, 20, 30}, {40, 50, 60}}},
		{"RGB by plane", rgb(2, 1, 8, 8, true, RGB), uid.ExplicitVRLittleEndian,
			[]byte{10, 40, 20, 50, 30, 60}, [][3]uint8{{10, 20, 30}, {40, 50, 60}}},
		{"RGB 16 bits", rgb(1, 1, 16, 16, false, RGB), uid.ExplicitVRLittleEndian,
			u16(0x1234, 0xFFFF, 0x0000), [][3]uint8{{0x12, 0xFF, 0}}},
		{"RGB 16 bits big endian", rgb(1, 1, 16, 16, false, RGB), uid.ExplicitVRBigEndian,
			[]byte{0x12, 0x34, 0xFF, 0xFF, 0, 0}, [][3]uint8{{0x12, 0xFF, 0}}},
		{"RGB 12 of 16 bits", rgb(1, 1, 16, 12, false, RGB), uid.ExplicitVRLittleEndian,
			u16(0x0FFF, 0x0800, 0xF010), [][3]uint8{{255, 128, 1}}},
		// Fewer than 8 bits are stretched: 8*255/15 = 136.
		{"RGB 4 of 8 bits", rgb(1, 1, 8, 4, false, RGB), uid.ExplicitVRLittleEndian,
			[]byte{15, 0, 8}, [][3]uint8{{255, 0, 136}}},
		{"RGB 32 bits", rgb(1, 1, 32, 32, false, RGB), uid.ExplicitVRLittleEndian,
			u32(0xFF000000, 0x80FFFFFF, 0x00FFFFFF), [][3]uint8{{255, 128, 0}}},
		// Y=100, Cb=150, Cr=90: R = 100 + 1.402*(-38) = 46.72, G = 100 -
		// 0.344136*22 - 0.714136*(-38) = 119.57, B = 100 + 1.772*22 =
		// 138.98. Y=76, Cb=85, Cr=255 is just outside red.
		{"YBR_FULL", rgb(3, 1, 8, 8, false, YBRFull), uid.ExplicitVRLittleEndian,
			[]byte{128, 128, 128, 100, 150, 90, 76, 85, 255}, [][3]uint8{{128, 128, 128}, {47, 120, 139}, {254, 0, 0}}},
		{"YBR_FULL by plane", rgb(2, 1, 8, 8, true, YBRFull), uid.ExplicitVRLittleEndian,
			[]byte{128, 100, 128, 150, 128, 90}, [][3]uint8{{128, 128, 128}, {47, 120, 139}}},
		// Y1 Y2 Cb Cr.
		{"YBR_FULL_422", rgb(4, 1, 8, 8, false, YBRFull422), uid.ExplicitVRLittleEndian,
			[]byte{100, 200, 128, 128, 100, 128, 150, 90}, [][3]uint8{{100, 100, 100}, {200, 200, 200}, {47, 120, 139}, {75, 148, 167}}},
		// Values below the first mapped value take the first entry, those
		// beyond the last the last.
		{"PALETTE COLOR", pal(6, false, 8, lut), uid.ExplicitVRLittleEndian,
			[]byte{0, 1, 2, 3, 4, 200},
			[][3]uint8{{0, 1, 10}, {0, 1, 10}, {0x40, 2, 20}, {0x80, 3, 30}, {0xFF, 4, 40}, {0xFF, 4, 40}}},
		{"PALETTE COLOR signed", pal(4, true, 16, signedLUT), uid.ExplicitVRLittleEndian,
			u16(-3, -2, 1, 5), [][3]uint8{{1, 5, 9}, {1, 5, 9}, {4, 8, 12}, {4, 8, 12}}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			img, err := Render(t.Context(), tt.p, tt.ts, bytes.NewReader(tt.data), Options{Window: win(1, 1, Linear)})
			if err != nil {
				t.Fatal(err)
			}
			c, ok := img.(*image.RGBA)
			if !ok {
				t.Fatalf("got %T, want *image.RGBA", img)
			}
			var got [][3]uint8
			for i := 0; i < len(c.Pix); i += 4 {
				got = append(got, [3]uint8{c.Pix[i], c.Pix[i+1], c.Pix[i+2]})
				if c.Pix[i+3] != 0xFF {
					t.Fatalf("alpha %d", c.Pix[i+3])
				}
			}
			if !slices.Equal(got, tt.want) {
				t.Errorf("got %v, want %v", got, tt.want)
			}
		})
	}
}

func TestFrame(t *testing.T) {
	frames := func(p Params, n int) Params { p.NumberOfFrames = n; return p }
	rgb := Params{Rows: 4, Columns: 4, SamplesPerPixel: 3, PhotometricInterpretation: RGB, BitsAllocated: 8, BitsStored: 8, HighBit: 7}
	ybr := rgb
	ybr.PhotometricInterpretation, ybr.Columns, ybr.Rows = YBRFull422, 4, 2
	tests := []struct {
		name  string
		p     Params
		index int
		want  Span
		err   error
	}{
		{"16 bits", frames(Params{Rows: 3, Columns: 2, SamplesPerPixel: 1, PhotometricInterpretation: Monochrome2, BitsAllocated: 16, BitsStored: 12, HighBit: 11}, 3),
			2, Span{Offset: 24, Length: 12}, nil},
		{"RGB", frames(rgb, 2), 1, Span{Offset: 48, Length: 48}, nil},
		{"YBR_FULL_422", frames(ybr, 2), 1, Span{Offset: 16, Length: 16}, nil},
		// 35 bits a frame: frame 1 starts at bit 35, frame 2 at bit 70.
		{"1 bit, frame 1", frames(mono(7*5, 1, 1, 0, false), 3), 1, Span{Offset: 4, Length: 5, BitOffset: 3}, nil},
		{"1 bit, frame 2", frames(mono(7*5, 1, 1, 0, false), 3), 2, Span{Offset: 8, Length: 6, BitOffset: 6}, nil},
		{"1 bit, aligned", frames(mono(64, 1, 1, 0, false), 2), 1, Span{Offset: 8, Length: 8}, nil},
		{"single frame", mono(10, 8, 8, 7, false), 0, Span{Offset: 0, Length: 10}, nil},
		{"past the last", frames(mono(10, 8, 8, 7, false), 3), 3, Span{}, ErrBadOption},
		{"negative", mono(10, 8, 8, 7, false), -1, Span{}, ErrBadOption},
		{"bad params", mono(10, 12, 12, 11, false), 0, Span{}, ErrUnsupported},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := Frame(tt.p, tt.index)
			if !errors.Is(err, tt.err) || (tt.err == nil && err != nil) {
				t.Fatalf("error %v, want %v", err, tt.err)
			}
			if got != tt.want {
				t.Errorf("got %+v, want %+v", got, tt.want)
			}
		})
	}
}

// TestFramesOfOneValue renders every frame of a multi-frame 1-bit value
// through Frame and checks it against the bits unpacked by hand.
func TestFramesOfOneValue(t *testing.T) {
	p := Params{Rows: 3, Columns: 5, SamplesPerPixel: 1, PhotometricInterpretation: Monochrome2,
		BitsAllocated: 1, BitsStored: 1, NumberOfFrames: 5, Window: win(1, 1, Linear)}
	value := []byte{0x5A, 0xC3, 0x96, 0x0F, 0xF0, 0x33, 0xA5, 0x81, 0x7E, 0x24}
	for i := range 5 {
		sp, err := Frame(p, i)
		if err != nil {
			t.Fatal(err)
		}
		img, err := Render(t.Context(), p, uid.ExplicitVRLittleEndian,
			bytes.NewReader(value[sp.Offset:sp.Offset+sp.Length]), Options{BitOffset: sp.BitOffset})
		if err != nil {
			t.Fatal(err)
		}
		for k, got := range img.(*image.Gray).Pix {
			b := i*15 + k
			want := uint8(0)
			if value[b/8]>>(b%8)&1 == 1 {
				want = 255
			}
			if got != want {
				t.Fatalf("frame %d pixel %d: %d, want %d", i, k, got, want)
			}
		}
	}
}

func TestViewport(t *testing.T) {
	tests := []struct {
		w, h   int
		vp     Viewport
		dw, dh int
	}{
		{512, 256, Viewport{128, 128}, 128, 64},
		{256, 512, Viewport{128, 128}, 64, 128},
		{100, 100, Viewport{0, 50}, 50, 50},
		{100, 100, Viewport{50, 0}, 50, 50},
		{100, 100, Viewport{200, 200}, 100, 100}, // never scaled up
		{100, 100, Viewport{}, 100, 100},
		{3, 1000, Viewport{10, 10}, 1, 10},
		{1000, 1, Viewport{100, 0}, 100, 1},
	}
	for _, tt := range tests {
		if dw, dh := target(tt.w, tt.h, tt.vp); dw != tt.dw || dh != tt.dh {
			t.Errorf("%dx%d in %+v: %dx%d, want %dx%d", tt.w, tt.h, tt.vp, dw, dh, tt.dw, tt.dh)
		}
	}
}

// TestScale checks area averaging: each output pixel is the mean of the
// source area it covers, weighted by coverage.
func TestScale(t *testing.T) {
	identity := Options{Window: win(128, 256, Linear)}
	gray := func(w, h int) Params {
		return Params{Rows: h, Columns: w, SamplesPerPixel: 1, PhotometricInterpretation: Monochrome2, BitsAllocated: 8, BitsStored: 8, HighBit: 7}
	}
	tests := []struct {
		name string
		p    Params
		data []byte
		vp   Viewport
		want []uint8
	}{
		// (0+100+10+20)/4 = 32.5, (200+50+30+40)/4 = 80.
		{"halves", gray(4, 2), []byte{0, 100, 200, 50, 10, 20, 30, 40}, Viewport{2, 1}, []uint8{33, 80}},
		// 3 to 2: 2/3 of the nearer pixel and 1/3 of the middle one.
		{"thirds", gray(3, 1), []byte{0, 90, 180}, Viewport{2, 0}, []uint8{30, 150}},
		{"vertical", gray(1, 4), []byte{0, 10, 20, 30}, Viewport{0, 2}, []uint8{5, 25}},
		{"to one pixel", gray(3, 3), []byte{1, 2, 3, 4, 5, 6, 7, 8, 9}, Viewport{1, 1}, []uint8{5}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			opts := identity
			opts.Viewport = tt.vp
			img, err := Render(t.Context(), tt.p, uid.ExplicitVRLittleEndian, bytes.NewReader(tt.data), opts)
			if err != nil {
				t.Fatal(err)
			}
			if got := img.(*image.Gray).Pix; !bytes.Equal(got, tt.want) {
				t.Errorf("got %v, want %v", got, tt.want)
			}
		})
	}
	t.Run("RGB", func(t *testing.T) {
		p := Params{Rows: 2, Columns: 2, SamplesPerPixel: 3, PhotometricInterpretation: RGB, BitsAllocated: 8, BitsStored: 8, HighBit: 7}
		data := []byte{0, 0, 0, 100, 0, 4, 0, 200, 8, 100, 100, 12}
		img, err := Render(t.Context(), p, uid.ExplicitVRLittleEndian, bytes.NewReader(data), Options{Viewport: Viewport{1, 1}})
		if err != nil {
			t.Fatal(err)
		}
		if got := img.(*image.RGBA).Pix; !bytes.Equal(got, []uint8{50, 75, 6, 255}) {
			t.Errorf("got %v", got)
		}
	})
}

// TestRLE encodes frames in RLE Lossless and requires the same rendering
// as the native frames.
func TestRLE(t *testing.T) {
	tests := []struct {
		name string
		p    Params
		data []byte // native, little endian
	}{
		{"16 bits", Params{Rows: 3, Columns: 7, SamplesPerPixel: 1, PhotometricInterpretation: Monochrome2,
			BitsAllocated: 16, BitsStored: 16, HighBit: 15, PixelRepresentation: 1},
			u16(1, 1, 1, 1, 1, 2, 3, 4, 5, 5, 5, 5, 5, 5, 5, 5, 5, 5, 5, -300, 9000)},
		{"RGB", Params{Rows: 2, Columns: 3, SamplesPerPixel: 3, PhotometricInterpretation: RGB,
			BitsAllocated: 8, BitsStored: 8, HighBit: 7},
			[]byte{1, 2, 3, 1, 2, 3, 1, 2, 3, 9, 9, 9, 200, 100, 0, 7, 7, 7}},
		{"32 bits", Params{Rows: 1, Columns: 3, SamplesPerPixel: 1, PhotometricInterpretation: Monochrome1,
			BitsAllocated: 32, BitsStored: 32, HighBit: 31},
			u32(0, 1<<31, 1<<32-1)},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			want, err := Render(t.Context(), tt.p, uid.ExplicitVRLittleEndian, bytes.NewReader(tt.data), Options{})
			if err != nil {
				t.Fatal(err)
			}
			got, err := Render(t.Context(), tt.p, uid.RLELossless, bytes.NewReader(encodeRLE(tt.p, tt.data)), Options{})
			if err != nil {
				t.Fatal(err)
			}
			if !bytes.Equal(pixels(got), pixels(want)) {
				t.Errorf("got %v, want %v", dump(got), dump(want))
			}
		})
	}
}

// encodeRLE encodes a native little endian, colour-by-pixel frame in RLE
// Lossless (PS3.5 Annex G), with runs and literals and each segment padded
// to an even length.
func encodeRLE(p Params, data []byte) []byte {
	bps := p.BitsAllocated / 8
	npix := p.Rows * p.Columns
	var segs [][]byte
	for s := range p.SamplesPerPixel {
		for k := range bps {
			plane := make([]byte, npix)
			for i := range plane {
				plane[i] = data[(i*p.SamplesPerPixel+s)*bps+bps-1-k]
			}
			segs = append(segs, packBits(plane))
		}
	}
	head := make([]byte, 64)
	binary.LittleEndian.PutUint32(head, uint32(len(segs)))
	at := len(head)
	for i, s := range segs {
		binary.LittleEndian.PutUint32(head[4+4*i:], uint32(at))
		at += len(s)
	}
	return slices.Concat(append([][]byte{head}, segs...)...)
}

func packBits(src []byte) []byte {
	var out []byte
	for i := 0; i < len(src); {
		j := i + 1
		for j < len(src) && src[j] == src[i] && j-i < 128 {
			j++
		}
		if j-i >= 2 {
			out = append(out, byte(int8(1-(j-i))), src[i])
			i = j
			continue
		}
		j = i + 1
		for j < len(src) && j-i < 128 && !(j+1 < len(src) && src[j] == src[j+1]) {
			j++
		}
		out = append(out, byte(j-i-1))
		out = append(out, src[i:j]...)
		i = j
	}
	if len(out)%2 == 1 {
		out = append(out, 0)
	}
	return out
}

func TestJPEG(t *testing.T) {
	grayParams := Params{Rows: 16, Columns: 24, SamplesPerPixel: 1, PhotometricInterpretation: Monochrome2,
		BitsAllocated: 8, BitsStored: 8, HighBit: 7}
	src := image.NewGray(image.Rect(0, 0, 24, 16))
	for i := range src.Pix {
		src.Pix[i] = uint8(i * 7)
	}
	var buf bytes.Buffer
	if err := jpeg.Encode(&buf, src, &jpeg.Options{Quality: 95}); err != nil {
		t.Fatal(err)
	}
	stream := buf.Bytes()
	decoded, err := jpeg.Decode(bytes.NewReader(stream))
	if err != nil {
		t.Fatal(err)
	}
	dpix := decoded.(*image.Gray).Pix

	t.Run("gray as decoded", func(t *testing.T) {
		img, err := Render(t.Context(), grayParams, uid.JPEGBaseline8Bit, bytes.NewReader(stream), Options{})
		if err != nil {
			t.Fatal(err)
		}
		// libjpeg's integer IDCT and image/jpeg's differ by at most 1.
		for i, v := range img.(*image.Gray).Pix {
			if d := int(v) - int(dpix[i]); d > 1 || d < -1 {
				t.Fatalf("pixel %d: %d, image/jpeg decodes %d", i, v, dpix[i])
			}
		}
	})
	t.Run("gray windowed", func(t *testing.T) {
		// A threshold at 100.
		img, err := Render(t.Context(), grayParams, uid.JPEGBaseline8Bit, bytes.NewReader(stream), Options{Window: win(100.5, 1, Linear)})
		if err != nil {
			t.Fatal(err)
		}
		for i, v := range img.(*image.Gray).Pix {
			if dpix[i] == 100 || dpix[i] == 101 {
				continue // either side of the threshold, by IDCT
			}
			if want := map[bool]uint8{true: 255, false: 0}[dpix[i] > 100]; v != want {
				t.Fatalf("pixel %d: %d from %d", i, v, dpix[i])
			}
		}
	})
	t.Run("MONOCHROME1", func(t *testing.T) {
		p := grayParams
		p.PhotometricInterpretation = Monochrome1
		img, err := Render(t.Context(), p, uid.JPEGExtended12Bit, bytes.NewReader(stream), Options{})
		if err != nil {
			t.Fatal(err)
		}
		for i, v := range img.(*image.Gray).Pix {
			if d := int(v) - int(255-dpix[i]); d > 1 || d < -1 {
				t.Fatalf("pixel %d: %d from %d", i, v, dpix[i])
			}
		}
	})
	t.Run("gray scaled", func(t *testing.T) {
		img, err := Render(t.Context(), grayParams, uid.JPEGBaseline8Bit, bytes.NewReader(stream), Options{Viewport: Viewport{12, 12}})
		if err != nil {
			t.Fatal(err)
		}
		if img.Bounds().Dx() != 12 || img.Bounds().Dy() != 8 {
			t.Errorf("size %v", img.Bounds())
		}
	})

	colour := image.NewRGBA(image.Rect(0, 0, 24, 16))
	for y := range 16 {
		for x := range 24 {
			colour.Set(x, y, color.RGBA{uint8(x * 10), uint8(y * 15), 128, 255})
		}
	}
	buf.Reset()
	if err := jpeg.Encode(&buf, colour, &jpeg.Options{Quality: 100}); err != nil {
		t.Fatal(err)
	}
	stream = buf.Bytes()
	ybr := Params{Rows: 16, Columns: 24, SamplesPerPixel: 3, PhotometricInterpretation: YBRFull422, BitsAllocated: 8, BitsStored: 8, HighBit: 7}
	t.Run("YBR_FULL_422", func(t *testing.T) {
		img, err := Render(t.Context(), ybr, uid.JPEGBaseline8Bit, bytes.NewReader(stream), Options{})
		if err != nil {
			t.Fatal(err)
		}
		// Lossy, subsampled chrominance on a smooth image: close.
		if d, _, err := compare(img, colour); err != nil || d > 8 {
			t.Errorf("differs from the source by %d (%v)", d, err)
		}
	})
	t.Run("RGB not transformed", func(t *testing.T) {
		// Labelled RGB, the components are taken as they are: R is
		// what the encoder stored as Y.
		p := ybr
		p.PhotometricInterpretation = RGB
		img, err := Render(t.Context(), p, uid.JPEGBaseline8Bit, bytes.NewReader(stream), Options{})
		if err != nil {
			t.Fatal(err)
		}
		d, _ := jpeg.Decode(bytes.NewReader(stream))
		yc := d.(*image.YCbCr)
		if got := img.(*image.RGBA).Pix[0]; got != yc.Y[0] {
			t.Errorf("R %d, want Y %d", got, yc.Y[0])
		}
	})
	t.Run("size mismatch", func(t *testing.T) {
		p := ybr
		p.Rows = 17
		_, err := Render(t.Context(), p, uid.JPEGBaseline8Bit, bytes.NewReader(stream), Options{})
		if !errors.Is(err, ErrMalformed) {
			t.Errorf("error %v, want ErrMalformed", err)
		}
	})
}

func TestErrors(t *testing.T) {
	ok := mono(2, 8, 8, 7, false)
	with := func(f func(*Params)) Params { p := ok; f(&p); return p }
	// rle returns an RLE header of the given segment offsets, then data.
	rle := func(offsets []uint32, data ...byte) []byte {
		b := make([]byte, 64)
		binary.LittleEndian.PutUint32(b, uint32(len(offsets)))
		for i, o := range offsets {
			binary.LittleEndian.PutUint32(b[4+4*i:], o)
		}
		return append(b, data...)
	}
	tests := []struct {
		name string
		p    Params
		ts   string
		data []byte
		opts Options
		err  error
	}{
		{"JPEG 2000", ok, uid.JPEG2000, nil, Options{}, ErrMalformed},
		{"JPEG-LS", ok, uid.JPEGLSLossless, nil, Options{}, ErrMalformed},
		{"JPEG lossless", ok, uid.JPEGLossless, nil, Options{}, ErrMalformed},
		{"unknown syntax", ok, "1.2.3.4", nil, Options{}, ErrUnsupported},
		{"YBR_ICT", with(func(p *Params) { p.PhotometricInterpretation = "YBR_ICT"; p.SamplesPerPixel = 3 }), uid.ExplicitVRLittleEndian, nil, Options{}, ErrUnsupported},
		{"12 bits allocated", with(func(p *Params) { p.BitsAllocated = 12 }), uid.ExplicitVRLittleEndian, nil, Options{}, ErrUnsupported},
		{"signed RGB", Params{Rows: 1, Columns: 1, SamplesPerPixel: 3, PhotometricInterpretation: RGB, BitsAllocated: 8, BitsStored: 8, PixelRepresentation: 1},
			uid.ExplicitVRLittleEndian, nil, Options{}, ErrUnsupported},
		{"palette without tables", with(func(p *Params) { p.PhotometricInterpretation = PaletteColor }), uid.ExplicitVRLittleEndian,
			[]byte{0, 0}, Options{}, ErrUnsupported},
		{"palette too short", with(func(p *Params) {
			p.PhotometricInterpretation = PaletteColor
			p.Palette = &Palette{Red: LUT{Entries: 10, Data: []byte{1}}, Green: LUT{Entries: 1, Data: []byte{1}}, Blue: LUT{Entries: 1, Data: []byte{1}}}
		}), uid.ExplicitVRLittleEndian, []byte{0, 0}, Options{}, ErrMalformed},
		{"too large", with(func(p *Params) { p.Rows, p.Columns = 10000, 10000 }), uid.ExplicitVRLittleEndian, nil, Options{}, ErrUnsupported},
		{"no rows", with(func(p *Params) { p.Rows = 0 }), uid.ExplicitVRLittleEndian, nil, Options{}, ErrMalformed},
		{"stored beyond allocated", with(func(p *Params) { p.BitsStored = 9 }), uid.ExplicitVRLittleEndian, nil, Options{}, ErrMalformed},
		{"three samples of MONOCHROME2", with(func(p *Params) { p.SamplesPerPixel = 3 }), uid.ExplicitVRLittleEndian, nil, Options{}, ErrMalformed},
		{"no photometric", with(func(p *Params) { p.PhotometricInterpretation = "" }), uid.ExplicitVRLittleEndian, nil, Options{}, ErrMalformed},
		{"odd YBR_FULL_422", Params{Rows: 1, Columns: 3, SamplesPerPixel: 3, PhotometricInterpretation: YBRFull422, BitsAllocated: 8, BitsStored: 8},
			uid.ExplicitVRLittleEndian, nil, Options{}, ErrMalformed},
		{"truncated", ok, uid.ExplicitVRLittleEndian, []byte{1}, Options{}, ErrMalformed},
		{"window width 0", ok, uid.ExplicitVRLittleEndian, []byte{1, 2}, Options{Window: win(1, 0, Linear)}, ErrBadOption},
		{"window function", ok, uid.ExplicitVRLittleEndian, []byte{1, 2}, Options{Window: win(1, 10, "GAMMA")}, ErrUnsupported},
		{"negative viewport", ok, uid.ExplicitVRLittleEndian, []byte{1, 2}, Options{Viewport: Viewport{-1, 0}}, ErrBadOption},
		{"bit offset of 8 bits", ok, uid.ExplicitVRLittleEndian, []byte{1, 2}, Options{BitOffset: 1}, ErrBadOption},
		{"RLE", ok, uid.RLELossless, rle([]uint32{64}, 1, 7, 9), Options{}, nil},
		{"RLE segment count", ok, uid.RLELossless, rle([]uint32{64, 66}, 0xFF, 0), Options{}, ErrMalformed},
		{"RLE without segments", ok, uid.RLELossless, rle([]uint32{64}), Options{}, ErrMalformed},
		{"RLE short segment", ok, uid.RLELossless, rle([]uint32{64}, 0, 9), Options{}, ErrMalformed},
		{"RLE offsets backwards", mono(1, 16, 16, 15, false), uid.RLELossless, rle([]uint32{66, 64}, 0, 1, 0, 2), Options{}, ErrMalformed},
		{"RLE short header", ok, uid.RLELossless, []byte{1, 0, 0, 0}, Options{}, ErrMalformed},
		{"RLE of 1 bit", mono(2, 1, 1, 0, false), uid.RLELossless, rle([]uint32{64}, 1, 0, 0), Options{}, ErrMalformed},
		{"JPEG garbage", ok, uid.JPEGBaseline8Bit, []byte("not a JPEG"), Options{}, ErrMalformed},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := Render(t.Context(), tt.p, tt.ts, bytes.NewReader(tt.data), tt.opts)
			if !errors.Is(err, tt.err) || (tt.err == nil && err != nil) {
				t.Errorf("error %v, want %v", err, tt.err)
			}
		})
	}
}

// TestCancelled checks that Render gives up on a cancelled context.
func TestCancelled(t *testing.T) {
	ctx, cancel := context.WithCancel(t.Context())
	cancel()
	_, err := Render(ctx, mono(2, 8, 8, 7, false), uid.ExplicitVRLittleEndian, bytes.NewReader([]byte{1, 2}), Options{})
	if !errors.Is(err, context.Canceled) {
		t.Errorf("error %v", err)
	}
}

// TestMemoryFollowsData checks that a frame whose attributes claim far
// more than its data holds costs what the data holds, not what the
// attributes claim: an 8192x8192 frame of 32-bit samples is 256 MiB.
func TestMemoryFollowsData(t *testing.T) {
	p := Params{Rows: 8192, Columns: 8192, SamplesPerPixel: 1, PhotometricInterpretation: Monochrome2,
		BitsAllocated: 32, BitsStored: 32, HighBit: 31}
	var before, after runtime.MemStats
	runtime.ReadMemStats(&before)
	_, err := Render(t.Context(), p, uid.ExplicitVRLittleEndian, io.LimitReader(zeros{}, 1<<20), Options{})
	runtime.ReadMemStats(&after)
	if !errors.Is(err, ErrMalformed) {
		t.Fatalf("error %v, want ErrMalformed", err)
	}
	if n := after.TotalAlloc - before.TotalAlloc; n > 32<<20 {
		t.Errorf("allocated %d MiB for 1 MiB of data", n>>20)
	}
}

type zeros struct{}

func (zeros) Read(p []byte) (int, error) { clear(p); return len(p), nil }

func TestParseWindow(t *testing.T) {
	tests := []struct {
		in   string
		want *Window
		err  error
	}{
		{"40,400,LINEAR", win(40, 400, Linear), nil},
		{"-600,1500", win(-600, 1500, Linear), nil},
		{"0.5, 2.5, sigmoid", win(0.5, 2.5, Sigmoid), nil},
		{"10,1e3,LINEAR_EXACT", win(10, 1000, LinearExact), nil},
		{"40", nil, ErrBadOption},
		{"40,400,LINEAR,x", nil, ErrBadOption},
		{"a,400", nil, ErrBadOption},
		{"40,0.5,LINEAR", nil, ErrBadOption},
		{"40,0,SIGMOID", nil, ErrBadOption},
		{"40,NaN", nil, ErrBadOption},
		{"40,400,GAMMA", nil, ErrUnsupported},
	}
	for _, tt := range tests {
		got, err := ParseWindow(tt.in)
		if !errors.Is(err, tt.err) || (tt.err == nil && err != nil) {
			t.Errorf("%q: error %v, want %v", tt.in, err, tt.err)
			continue
		}
		if tt.want != nil && *got != *tt.want {
			t.Errorf("%q: %+v, want %+v", tt.in, *got, *tt.want)
		}
	}
}

func TestParseViewport(t *testing.T) {
	tests := []struct {
		in   string
		want Viewport
		err  error
	}{
		{"128,128", Viewport{128, 128}, nil},
		{"512,", Viewport{512, 0}, nil},
		{",64", Viewport{0, 64}, nil},
		{"128", Viewport{}, ErrBadOption},
		{"0,10", Viewport{}, ErrBadOption},
		{"-1,10", Viewport{}, ErrBadOption},
		{"a,b", Viewport{}, ErrBadOption},
		{"100,100,0,0,50,50", Viewport{}, ErrUnsupported},
	}
	for _, tt := range tests {
		got, err := ParseViewport(tt.in)
		if !errors.Is(err, tt.err) || (tt.err == nil && err != nil) {
			t.Errorf("%q: error %v, want %v", tt.in, err, tt.err)
			continue
		}
		if got != tt.want {
			t.Errorf("%q: %+v, want %+v", tt.in, got, tt.want)
		}
	}
}

// BenchmarkRender renders a 512x512 CT frame, as WADO-RS /rendered and
// /thumbnail would, and a 2048x2048 one to a thumbnail.
func BenchmarkRender(b *testing.B) {
	frame := func(n int) (Params, []byte) {
		p := Params{Rows: n, Columns: n, SamplesPerPixel: 1, PhotometricInterpretation: Monochrome2,
			BitsAllocated: 16, BitsStored: 12, HighBit: 11, RescaleSlope: 1, RescaleIntercept: -1024,
			Window: win(40, 400, Linear)}
		data := make([]byte, 2*n*n)
		for i := range n * n {
			binary.LittleEndian.PutUint16(data[2*i:], uint16(i%4096))
		}
		return p, data
	}
	for _, bb := range []struct {
		name string
		n    int
		vp   Viewport
	}{
		{"512", 512, Viewport{}},
		{"512-thumbnail", 512, Viewport{128, 128}},
		{"2048-thumbnail", 2048, Viewport{128, 128}},
	} {
		p, data := frame(bb.n)
		b.Run(bb.name, func(b *testing.B) {
			b.SetBytes(int64(len(data)))
			for b.Loop() {
				if _, err := Render(b.Context(), p, uid.ExplicitVRLittleEndian, bytes.NewReader(data), Options{Viewport: bb.vp}); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}
