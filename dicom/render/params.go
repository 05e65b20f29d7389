package render

import (
	"encoding/binary"
	"fmt"
	"math"
	"strconv"
	"strings"

	"github.com/pacsd/pacsd/dicom"
	"github.com/pacsd/pacsd/dicom/tag"
)

// ParamsFrom reads the rendering attributes of a data set's header for
// its first frame; FrameParams reads them for any frame. Rows, Columns
// and Bits Allocated are required; Samples per Pixel defaults to 1, Bits
// Stored to Bits Allocated, High Bit to Bits Stored - 1, a missing
// Photometric Interpretation of one sample to MONOCHROME2, Number of
// Frames to 1.
//
// The Modality LUT is Rescale Slope and Intercept, or the first item of
// the Modality LUT Sequence; the VOI LUT is the first window (Window
// Center and Width, with the VOI LUT Function) or, when there is none,
// the first item of the VOI LUT Sequence (PS3.3 C.11.1, C.11.2). They
// come from the top level or, for the enhanced multi-frame objects that
// keep them in functional groups (PS3.3 C.7.6.16), from the frame's item
// of the Per-frame Functional Groups Sequence or else the Shared
// Functional Groups Sequence: Pixel Value Transformation for the
// rescale, Frame VOI LUT for the window or VOI LUT. Without a window or
// VOI LUT the frame is windowed from its minimum to its maximum.
//
// Lookup tables, of the Modality and VOI LUT Sequences and the palettes
// of PALETTE COLOR, are read when the header holds their data in memory
// (dicom.Limits.Inline must cover them: 128 KiB for 16-bit tables);
// otherwise a palette is nil and Render reports ErrUnsupported, and a
// Modality or VOI LUT is left out as if absent.
func ParamsFrom(ds *dicom.Dataset) (Params, error) { return FrameParams(ds, 1) }

// FrameParams is ParamsFrom for frame (counted from 1) of a data set.
func FrameParams(ds *dicom.Dataset, frame int) (Params, error) {
	var p Params
	var err error
	need := func(t tag.Tag, name string) int {
		v, ok, e := intOf(ds, t)
		if e != nil && err == nil {
			err = e
		}
		if !ok && err == nil {
			err = fmt.Errorf("%w: no %s", ErrMalformed, name)
		}
		return v
	}
	opt := func(t tag.Tag, def int) int {
		v, ok, e := intOf(ds, t)
		if e != nil && err == nil {
			err = e
		}
		if !ok {
			return def
		}
		return v
	}
	p.Rows = need(tag.Rows, "Rows")
	p.Columns = need(tag.Columns, "Columns")
	p.BitsAllocated = need(tag.BitsAllocated, "Bits Allocated")
	p.SamplesPerPixel = opt(tag.SamplesPerPixel, 1)
	p.BitsStored = opt(tag.BitsStored, p.BitsAllocated)
	p.HighBit = opt(tag.HighBit, p.BitsStored-1)
	p.PixelRepresentation = opt(tag.PixelRepresentation, 0)
	p.PlanarConfiguration = opt(tag.PlanarConfiguration, 0)
	p.NumberOfFrames = opt(tag.NumberOfFrames, 1)
	if err != nil {
		return p, err
	}
	p.PhotometricInterpretation = strings.ToUpper(strings.TrimSpace(ds.First(tag.PhotometricInterpretation)))
	if p.PhotometricInterpretation == "" && p.SamplesPerPixel == 1 {
		p.PhotometricInterpretation = Monochrome2
	}

	// A functional group macro is in the frame's item of the Per-frame
	// Functional Groups or in the Shared Functional Groups.
	shared := first(ds.Items(tag.SharedFunctionalGroupsSequence))
	var own *dicom.Dataset
	if items := ds.Items(tag.PerFrameFunctionalGroupsSequence); frame >= 1 && frame <= len(items) {
		own = items[frame-1]
	}
	group := func(seq tag.Tag) *dicom.Dataset {
		if it := first(own.Items(seq)); it != nil {
			return it
		}
		return first(shared.Items(seq))
	}

	signed := p.PixelRepresentation != 0
	rescale := ds
	_, top := ds.Find(tag.RescaleSlope)
	if _, lut := ds.Find(tag.ModalityLUTSequence); !top && !lut {
		if it := group(tag.PixelValueTransformationSequence); it != nil {
			rescale = it
		}
	}
	p.RescaleSlope, p.RescaleIntercept = 1, 0
	if v, ok := floatOf(rescale, tag.RescaleSlope); ok && v != 0 {
		p.RescaleSlope = v
	}
	if v, ok := floatOf(rescale, tag.RescaleIntercept); ok {
		p.RescaleIntercept = v
	}
	if it := first(rescale.Items(tag.ModalityLUTSequence)); it != nil {
		p.ModalityLUT = lutOf(it, tag.LUTDescriptor, tag.LUTData, signed)
	}

	voi := ds
	if _, ok := ds.Find(tag.WindowCenter); !ok {
		if _, ok := ds.Find(tag.VOILUTSequence); !ok {
			if it := group(tag.FrameVOILUTSequence); it != nil {
				voi = it
			}
		}
	}
	p.Window = windowOf(voi)
	if it := first(voi.Items(tag.VOILUTSequence)); it != nil && p.Window == nil {
		// The VOI LUT's first input value is signed when its input, the
		// Modality LUT's output, may be negative.
		p.VOILUT = lutOf(it, tag.LUTDescriptor, tag.LUTData, signed || p.RescaleIntercept < 0)
	}

	if p.PhotometricInterpretation == PaletteColor {
		p.Palette = paletteOf(ds, signed)
	}
	return p, nil
}

func first(items []*dicom.Dataset) *dicom.Dataset {
	if len(items) == 0 {
		return nil
	}
	return items[0]
}

// intOf returns the first value of an integer element (US, IS and the
// like). A value that is not an integer is ErrMalformed.
func intOf(ds *dicom.Dataset, t tag.Tag) (int, bool, error) {
	s := strings.TrimSpace(ds.First(t))
	if s == "" {
		return 0, false, nil
	}
	n, err := strconv.Atoi(s)
	if err != nil {
		// IS written as "1.0" by lenient writers.
		f, ferr := strconv.ParseFloat(s, 64)
		if ferr != nil || f != math.Trunc(f) || math.Abs(f) > math.MaxInt32 {
			return 0, false, fmt.Errorf("%w: %v is %q, not an integer", ErrMalformed, t, s)
		}
		n = int(f)
	}
	return n, true, nil
}

// floatOf returns the first value of a decimal element, if it parses.
func floatOf(ds *dicom.Dataset, t tag.Tag) (float64, bool) {
	s := strings.TrimSpace(ds.First(t))
	if s == "" {
		return 0, false
	}
	f, err := strconv.ParseFloat(s, 64)
	if err != nil || math.IsNaN(f) || math.IsInf(f, 0) {
		return 0, false
	}
	return f, true
}

// windowOf returns the first window of ds, or nil.
func windowOf(ds *dicom.Dataset) *Window {
	c, ok1 := floatOf(ds, tag.WindowCenter)
	w, ok2 := floatOf(ds, tag.WindowWidth)
	if !ok1 || !ok2 {
		return nil
	}
	fn := strings.ToUpper(strings.TrimSpace(ds.First(tag.VOILUTFunction)))
	if fn == "" {
		fn = Linear
	}
	return &Window{Center: c, Width: w, Function: fn}
}

// paletteOf returns the palette of ds, or nil if one of its tables is
// missing or not in memory.
func paletteOf(ds *dicom.Dataset, signed bool) *Palette {
	r := lutOf(ds, tag.RedPaletteColorLookupTableDescriptor, tag.RedPaletteColorLookupTableData, signed)
	g := lutOf(ds, tag.GreenPaletteColorLookupTableDescriptor, tag.GreenPaletteColorLookupTableData, signed)
	b := lutOf(ds, tag.BluePaletteColorLookupTableDescriptor, tag.BluePaletteColorLookupTableData, signed)
	if r == nil || g == nil || b == nil {
		return nil
	}
	return &Palette{Red: *r, Green: *g, Blue: *b}
}

// lutOf returns the lookup table whose descriptor and data are the
// elements desc and data of ds, or nil if either is missing or its data
// is not in memory. signed says the first input value mapped is SS.
func lutOf(ds *dicom.Dataset, desc, data tag.Tag, signed bool) *LUT {
	values := ds.Strings(desc)
	if len(values) != 3 {
		return nil
	}
	var d [3]int
	for i, s := range values {
		n, err := strconv.Atoi(strings.TrimSpace(s))
		if err != nil {
			return nil
		}
		d[i] = n
	}
	// The descriptor is US or SS (PS3.3 C.7.6.3.1.5, C.11.1.1.1); a
	// decoder that guessed the other VR gives the same 16 bits another
	// value.
	entries, firstMapped := d[0]&0xFFFF, d[1]&0xFFFF
	if signed && firstMapped >= 1<<15 {
		firstMapped -= 1 << 16
	}
	lut := &LUT{Entries: entries, First: firstMapped, Bits: d[2]}
	e, ok := ds.Find(data)
	switch {
	case !ok:
		return nil
	case e.Binary != nil && e.Binary.Data != nil:
		lut.Data = e.Binary.Data
	case len(e.Values) > 0:
		// Decoded as US words, as an implicit VR data set may be.
		for _, s := range e.Values {
			n, err := strconv.Atoi(s)
			if err != nil {
				return nil
			}
			lut.Data = binary.LittleEndian.AppendUint16(lut.Data, uint16(n))
		}
	default:
		return nil
	}
	return lut
}
