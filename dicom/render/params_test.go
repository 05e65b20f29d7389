package render

import (
	"errors"
	"reflect"
	"testing"

	"github.com/pacsd/pacsd/dicom"
	"github.com/pacsd/pacsd/dicom/tag"
)

func TestParamsFrom(t *testing.T) {
	el := func(t tag.Tag, v ...string) dicom.Element { return dicom.Element{Tag: t, Values: v} }
	ds := func(els ...dicom.Element) *dicom.Dataset { return &dicom.Dataset{Elements: els} }
	item := func(t tag.Tag, els ...dicom.Element) dicom.Element {
		return dicom.Element{Tag: t, VR: "SQ", Items: []*dicom.Dataset{ds(els...)}}
	}
	bin := func(t tag.Tag, data []byte) dicom.Element {
		return dicom.Element{Tag: t, VR: "OW", Binary: &dicom.Binary{Offset: 100, Length: int64(len(data)), Data: data}}
	}
	size := []dicom.Element{el(tag.Rows, "4"), el(tag.Columns, "5"), el(tag.BitsAllocated, "8")}
	tests := []struct {
		name string
		ds   *dicom.Dataset
		want Params
		err  error
	}{
		{"defaults", ds(size...), Params{Rows: 4, Columns: 5, SamplesPerPixel: 1, PhotometricInterpretation: Monochrome2,
			BitsAllocated: 8, BitsStored: 8, HighBit: 7, NumberOfFrames: 1, RescaleSlope: 1}, nil},
		{"everything", ds(
			el(tag.SamplesPerPixel, "1"), el(tag.PhotometricInterpretation, "monochrome1"), el(tag.NumberOfFrames, "3"),
			el(tag.Rows, "512"), el(tag.Columns, "256"), el(tag.BitsAllocated, "16"), el(tag.BitsStored, "12"),
			el(tag.HighBit, "11"), el(tag.PixelRepresentation, "1"),
			el(tag.WindowCenter, "40", "400"), el(tag.WindowWidth, "400", "2000"), el(tag.VOILUTFunction, "SIGMOID"),
			el(tag.RescaleIntercept, "-1024"), el(tag.RescaleSlope, "2.5"),
		), Params{Rows: 512, Columns: 256, SamplesPerPixel: 1, PhotometricInterpretation: Monochrome1,
			BitsAllocated: 16, BitsStored: 12, HighBit: 11, PixelRepresentation: 1, NumberOfFrames: 3,
			RescaleSlope: 2.5, RescaleIntercept: -1024, Window: win(40, 400, Sigmoid)}, nil},
		{"lenient IS", ds(append(size, el(tag.NumberOfFrames, "2.0"))...), Params{Rows: 4, Columns: 5, SamplesPerPixel: 1,
			PhotometricInterpretation: Monochrome2, BitsAllocated: 8, BitsStored: 8, HighBit: 7, NumberOfFrames: 2, RescaleSlope: 1}, nil},
		{"shared functional groups", ds(append(size,
			item(tag.SharedFunctionalGroupsSequence,
				item(tag.PixelValueTransformationSequence, el(tag.RescaleSlope, "3"), el(tag.RescaleIntercept, "5")),
				item(tag.FrameVOILUTSequence, el(tag.WindowCenter, "10"), el(tag.WindowWidth, "20")),
			))...), Params{Rows: 4, Columns: 5, SamplesPerPixel: 1, PhotometricInterpretation: Monochrome2,
			BitsAllocated: 8, BitsStored: 8, HighBit: 7, NumberOfFrames: 1, RescaleSlope: 3, RescaleIntercept: 5,
			Window: win(10, 20, Linear)}, nil},
		{"palette", ds(append(size,
			el(tag.PhotometricInterpretation, "PALETTE COLOR"), el(tag.PixelRepresentation, "1"),
			// Decoded as SS: -100 is the first value; 0 entries are 65536.
			el(tag.RedPaletteColorLookupTableDescriptor, "2", "-100", "16"),
			el(tag.GreenPaletteColorLookupTableDescriptor, "2", "65436", "16"),
			el(tag.BluePaletteColorLookupTableDescriptor, "0", "0", "8"),
			bin(tag.RedPaletteColorLookupTableData, []byte{1, 2, 3, 4}),
			// Decoded as US words, as an implicit VR data set may be.
			el(tag.GreenPaletteColorLookupTableData, "513", "1027"),
			bin(tag.BluePaletteColorLookupTableData, []byte{9}),
		)...), Params{Rows: 4, Columns: 5, SamplesPerPixel: 1, PhotometricInterpretation: PaletteColor,
			BitsAllocated: 8, BitsStored: 8, HighBit: 7, PixelRepresentation: 1, NumberOfFrames: 1, RescaleSlope: 1,
			Palette: &Palette{
				Red:   LUT{Entries: 2, First: -100, Bits: 16, Data: []byte{1, 2, 3, 4}},
				Green: LUT{Entries: 2, First: -100, Bits: 16, Data: []byte{1, 2, 3, 4}},
				Blue:  LUT{Entries: 0, First: 0, Bits: 8, Data: []byte{9}},
			}}, nil},
		{"palette not in memory", ds(append(size,
			el(tag.PhotometricInterpretation, "PALETTE COLOR"),
			el(tag.RedPaletteColorLookupTableDescriptor, "2", "0", "16"),
			el(tag.GreenPaletteColorLookupTableDescriptor, "2", "0", "16"),
			el(tag.BluePaletteColorLookupTableDescriptor, "2", "0", "16"),
			bin(tag.RedPaletteColorLookupTableData, []byte{1, 2, 3, 4}),
			bin(tag.GreenPaletteColorLookupTableData, []byte{1, 2, 3, 4}),
			bin(tag.BluePaletteColorLookupTableData, nil),
		)...), Params{Rows: 4, Columns: 5, SamplesPerPixel: 1, PhotometricInterpretation: PaletteColor,
			BitsAllocated: 8, BitsStored: 8, HighBit: 7, NumberOfFrames: 1, RescaleSlope: 1}, nil},
		{"no rows", ds(el(tag.Columns, "5"), el(tag.BitsAllocated, "8")), Params{}, ErrMalformed},
		{"no bits allocated", ds(el(tag.Rows, "4"), el(tag.Columns, "5")), Params{}, ErrMalformed},
		{"bad number", ds(append(size, el(tag.NumberOfFrames, "many"))...), Params{}, ErrMalformed},
		{"nil", nil, Params{}, ErrMalformed},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := ParamsFrom(tt.ds)
			if tt.err != nil {
				if !errors.Is(err, tt.err) {
					t.Errorf("error %v, want %v", err, tt.err)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if !reflect.DeepEqual(got, tt.want) {
				t.Errorf("got  %+v %+v %+v\nwant %+v %+v %+v", got, got.Window, got.Palette, tt.want, tt.want.Window, tt.want.Palette)
			}
		})
	}
}
