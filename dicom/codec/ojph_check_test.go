package codec

import (
	"bytes"
	"encoding/binary"
	"errors"
	"strings"
	"testing"
)

// htj2kStream encodes a small frame losslessly and returns the code
// stream with the frame's description and pixels.
func htj2kStream(t *testing.T) ([]byte, Image, []byte) {
	t.Helper()
	im := Image{Rows: 16, Columns: 24, SamplesPerPixel: 1, BitsAllocated: 16, BitsStored: 12, PhotometricInterpretation: Monochrome2}
	src := synthetic(im, 5)
	cs, eim, err := htj2kCodec{lim: Limits{}.withDefaults()}.Encode(nil, src, im)
	if err != nil {
		t.Fatal(err)
	}
	return cs, eim, src
}

// segment returns the offset of the first marker m of cs's main header
// and tile-part headers, walking segment by segment.
func segment(t *testing.T, cs []byte, m byte) int {
	t.Helper()
	for pos := 2; pos+4 <= len(cs); {
		if cs[pos+1] == m {
			return pos
		}
		if cs[pos+1] == 0x93 {
			break
		}
		n := int(binary.BigEndian.Uint16(cs[pos+2:]))
		if cs[pos+1] == 0x90 {
			n = 10
		}
		pos += 2 + n
	}
	t.Fatalf("no marker %02X", m)
	return 0
}

func TestCheckOpenJPH(t *testing.T) {
	valid, im, _ := htj2kStream(t)
	edit := func(f func(cs []byte) []byte) []byte { return f(append([]byte(nil), valid...)) }
	insert := func(cs []byte, at int, seg ...byte) []byte {
		return append(cs[:at], append(seg, cs[at:]...)...)
	}
	tests := []struct {
		name string
		cs   []byte
		want error
		text string
	}{
		{"progression order 5", edit(func(cs []byte) []byte { cs[segment(t, cs, 0x52)+5] = 5; return cs }), ErrMalformed, "progression order"},
		{"33 decomposition levels", edit(func(cs []byte) []byte { cs[segment(t, cs, 0x52)+9] = 33; return cs }), ErrMalformed, "decomposition levels"},
		{"levels of QCD and COD differ", edit(func(cs []byte) []byte { cs[segment(t, cs, 0x52)+9]--; return cs }), ErrMalformed, "quantization for"},
		{"two quality layers", edit(func(cs []byte) []byte { cs[segment(t, cs, 0x52)+7] = 2; return cs }), ErrUnsupported, "quality layers"},
		{"code-block not HT", edit(func(cs []byte) []byte { cs[segment(t, cs, 0x52)+12] = 0; return cs }), ErrUnsupported, "code-block style"},
		{"tile beyond the tiling", edit(func(cs []byte) []byte { cs[segment(t, cs, 0x90)+5] = 1; return cs }), ErrMalformed, "tile-part of tile 1 of 1"},
		{"second tile-part first", edit(func(cs []byte) []byte { cs[segment(t, cs, 0x90)+10] = 1; return cs }), ErrMalformed, "after 0"},
		{"COC in the main header", edit(func(cs []byte) []byte {
			return insert(cs, segment(t, cs, 0x5C), 0xFF, 0x53, 0, 9, 0, 0, 5, 4, 4, 0x40, 0, 1)
		}), ErrUnsupported, "COC"},
		{"unknown marker in the main header", edit(func(cs []byte) []byte {
			return insert(cs, segment(t, cs, 0x5C), 0xFF, 0x6F, 0, 4, 0xFF, 0x52)
		}), ErrMalformed, "marker 6F"},
		{"QCD in a tile-part header", edit(func(cs []byte) []byte {
			sot := segment(t, cs, 0x90)
			q := segment(t, cs, 0x5C)
			n := int(binary.BigEndian.Uint16(cs[q+2:]))
			qcd := append([]byte(nil), cs[q:q+2+n]...)
			binary.BigEndian.PutUint32(cs[sot+6:], binary.BigEndian.Uint32(cs[sot+6:])+uint32(len(qcd)))
			return insert(cs, sot+12, qcd...)
		}), ErrUnsupported, "QCD in a tile-part header"},
		{"tile-part longer than the stream", edit(func(cs []byte) []byte {
			binary.BigEndian.PutUint32(cs[segment(t, cs, 0x90)+6:], uint32(len(cs)))
			return cs
		}), ErrMalformed, "tile-part of"},
	}
	c := htj2kCodec{lim: Limits{}.withDefaults()}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, _, err := c.Decode(nil, tt.cs, im)
			if !errors.Is(err, tt.want) || !strings.Contains(err.Error(), tt.text) {
				t.Fatalf("got %v, want %v with %q", err, tt.want, tt.text)
			}
		})
	}
}

// A last tile-part of length 0 runs to the end of the code stream
// (A.4.2), which OpenJPH 0.9 cannot read: it gets its length.
func TestCheckOpenJPHUnknownLength(t *testing.T) {
	cs, im, src := htj2kStream(t)
	cs = append([]byte(nil), cs...)
	binary.BigEndian.PutUint32(cs[segment(t, cs, 0x90)+6:], 0)
	out, _, err := htj2kCodec{lim: Limits{}.withDefaults()}.Decode(nil, cs, im)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(out, src) {
		t.Fatal("decoded pixels differ")
	}
}

// OpenJPH 0.9 asserts on what a code stream holds (here the progression
// order, which checkOpenJPH refuses first); the trap makes the failed
// assertion an error.
func TestAssertionTrap(t *testing.T) {
	cs := []byte("\xffO\xffQ\x00/A0\x00\x00\x00\b\x00\x00\x00\b\x00\x00\x00\x00\x00\x00\x00\x0000000000\x00\x00\x00\x00\x00\x00\x00\x00\x00\x03\a\x01\x01\a\x01\x01\a\x01\x01\xffR\x00\f00\x00\x01\x01\x02\x04\x04@\x00\xff\\\x00\x11\"Q\xf0RBRBR\x96J J I.\xff\x90\x00\n\x00\x00\x00\x00\x00\xa6\x00\x01\xff\x93\xc0\x15\x00ӱ9\x13\x00\xc0\xb4\x00\xc0\x15\x00Phh\xe8\x00\x81\xb4\x00\xc0\x15\x00\xb1\xdb\xda\xdb\x00\x81\xb4\x00\xc0\x13@\x15\x10\x04\x80\xc6\xfc\x00\x02t\x00\x82\x02@\xfe\x00F\xb4\x00\xfe\x00c\x00\xc0\x11\xc0\x11\x80\x80\x03\x00\x00c\x00\xc0\x12@\x11\x80\xfc\x01\xd3\x00\x80\x03\x00\xc0'\x80V@%F`\x1a\xa9\xcd\xd5\x00\x80\x01\xb2*\xfeA\x91\u07bd\x94w\x00\xee\x1ai\x04\x00\xc0%\x80K\x00\x8c\xfd@X4\x00\xe5\x02\x9f\x84\x00\x80\x03\x00\xc0$\x80M\x00\x98\xfdg#\x00\xa7\x06ߪ\xd5\x00\xc6\x05\xe4\x7f\xb5\x00")
	im := Image{Rows: 8, Columns: 8, SamplesPerPixel: 3, BitsAllocated: 8, BitsStored: 8, PhotometricInterpretation: RGB}
	unchecked := func(_, cs []byte, _ sizInfo) ([]byte, error) { return cs, nil }
	_, _, err := decodeJ2K(nil, cs, im, Limits{}.withDefaults(), "HTJ2K", unchecked, openJPH)
	if !errors.Is(err, ErrMalformed) || !strings.Contains(err.Error(), "failed its own check") {
		t.Fatalf("got %v, want the failed assertion", err)
	}
	// The trap is gone once decoding ends: a decoding that follows works.
	valid, vim, _ := htj2kStream(t)
	if _, _, err := (htj2kCodec{lim: Limits{}.withDefaults()}).Decode(nil, valid, vim); err != nil {
		t.Fatal(err)
	}
}
