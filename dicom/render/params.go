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

// ParamsFrom reads the rendering attributes of a data set's header. Rows,
// Columns and Bits Allocated are required; Samples per Pixel defaults to
// 1, Bits Stored to Bits Allocated, High Bit to Bits Stored - 1, a missing
// Photometric Interpretation of one sample to MONOCHROME2, Number of
// Frames to 1.
//
// Rescale and window come from the top level or, for the enhanced
// multi-frame objects that keep them in functional groups, from the Shared
// Functional Groups Sequence; per-frame functional groups are not
// consulted. A Modality LUT Sequence or VOI LUT Sequence is not applied:
// without a window the frame is windowed from its minimum to its maximum.
//
// For PALETTE COLOR the lookup tables are read when the header holds
// their data in memory (dicom.Limits.Inline must cover them: 128 KiB for
// 16-bit tables); otherwise, as for segmented tables, Palette is nil and
// Render reports ErrUnsupported.
func ParamsFrom(ds *dicom.Dataset) (Params, error) {
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

	shared := first(ds.Items(tag.SharedFunctionalGroupsSequence))
	rescale := ds
	if _, ok := ds.Find(tag.RescaleSlope); !ok {
		if it := first(shared.Items(tag.PixelValueTransformationSequence)); it != nil {
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
	p.Window = windowOf(ds)
	if p.Window == nil {
		p.Window = windowOf(first(shared.Items(tag.FrameVOILUTSequence)))
	}

	if p.PhotometricInterpretation == PaletteColor {
		p.Palette = paletteOf(ds, p.PixelRepresentation != 0)
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
	var pal Palette
	tables := []struct {
		lut        *LUT
		desc, data tag.Tag
	}{
		{&pal.Red, tag.RedPaletteColorLookupTableDescriptor, tag.RedPaletteColorLookupTableData},
		{&pal.Green, tag.GreenPaletteColorLookupTableDescriptor, tag.GreenPaletteColorLookupTableData},
		{&pal.Blue, tag.BluePaletteColorLookupTableDescriptor, tag.BluePaletteColorLookupTableData},
	}
	for _, t := range tables {
		desc := ds.Strings(t.desc)
		if len(desc) != 3 {
			return nil
		}
		var d [3]int
		for i, s := range desc {
			n, err := strconv.Atoi(strings.TrimSpace(s))
			if err != nil {
				return nil
			}
			d[i] = n
		}
		// The descriptor is US or SS as Pixel Representation says
		// (PS3.3 §C.7.6.3.1.5); a decoder that guessed the other VR
		// gives the same 16 bits another value.
		entries, firstMapped := d[0]&0xFFFF, d[1]&0xFFFF
		if signed && firstMapped >= 1<<15 {
			firstMapped -= 1 << 16
		}
		*t.lut = LUT{Entries: entries, First: firstMapped, Bits: d[2]}
		e, ok := ds.Find(t.data)
		switch {
		case !ok:
			return nil
		case e.Binary != nil && e.Binary.Data != nil:
			t.lut.Data = e.Binary.Data
		case len(e.Values) > 0:
			// Decoded as US words, as an implicit VR data set may be.
			for _, s := range e.Values {
				n, err := strconv.Atoi(s)
				if err != nil {
					return nil
				}
				t.lut.Data = binary.LittleEndian.AppendUint16(t.lut.Data, uint16(n))
			}
		default:
			return nil
		}
	}
	return &pal
}
