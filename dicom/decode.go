package dicom

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"strconv"
	"strings"

	sdicom "github.com/suyashkumar/dicom"
	stag "github.com/suyashkumar/dicom/pkg/tag"

	"github.com/pacsd/pacsd/dicom/tag"
)

// decode turns the walker's normalized copy of a header into a Dataset,
// with suyashkumar/dicom decoding the values and character sets. It
// returns what it decoded before any error.
func decode(copy []byte, bulk []bulkValue, nonce [8]byte, pixelIdx int) (ds *Dataset, err error) {
	ds = &Dataset{}
	// The decoder panics on some input it finds inconsistent (log.Panicf
	// in its value accessors). Whatever a sender puts in a data set must
	// not stop the archive: a panic is a decoding error like any other.
	defer func() {
		if r := recover(); r != nil {
			err = fmt.Errorf("decoder: %v", r)
		}
	}()
	if len(copy) == 0 {
		return ds, nil
	}
	// File Meta Information naming Explicit VR Little Endian, the copy's
	// encoding, spares the decoder its guess at the transfer syntax: a
	// guess that reads header bytes as lengths and allocates accordingly.
	in := io.MultiReader(bytes.NewReader(copyMeta), bytes.NewReader(copy))
	p, err := sdicom.NewParser(in, int64(len(copyMeta)+len(copy)), nil,
		sdicom.AllowUnknownSpecificCharacterSet(),
		sdicom.SkipPixelData())
	if err != nil {
		return ds, err
	}
	p.SetTransferSyntax(binary.LittleEndian, false)
	d := decoder{bulk: bulk, nonce: nonce, pixelIdx: pixelIdx}
	for {
		el, err := p.Next()
		if errors.Is(err, sdicom.ErrorEndOfDICOM) {
			return ds, nil
		}
		if err != nil {
			return ds, err
		}
		if el.Tag == stag.DataSetTrailingPadding {
			continue
		}
		e, err := d.element(el, true)
		if err != nil {
			return ds, err
		}
		ds.Elements = append(ds.Elements, e)
	}
}

// copyMeta is the File Meta Information put before the copy for the
// decoder: preamble, "DICM", group length and Transfer Syntax UID.
var copyMeta = func() []byte {
	b := make([]byte, 128, 128+4+12+28)
	b = append(b, "DICM"...)
	b = append(b, 0x02, 0x00, 0x00, 0x00, 'U', 'L', 4, 0)
	b = binary.LittleEndian.AppendUint32(b, 8+20)
	b = append(b, 0x02, 0x00, 0x10, 0x00, 'U', 'I', 20, 0)
	return append(b, "1.2.840.10008.1.2.1\x00"...)
}()

type decoder struct {
	bulk     []bulkValue
	nonce    [8]byte
	pixelIdx int
}

func (d *decoder) element(el *sdicom.Element, top bool) (Element, error) {
	e := Element{Tag: tag.New(el.Tag.Group, el.Tag.Element), VR: el.RawValueRepresentation}
	switch v := el.Value.GetValue().(type) {
	case []string:
		e.Values = splitValues(e.VR, v)
	case []int:
		if e.VR == "AT" {
			for i := 0; i+1 < len(v); i += 2 {
				e.Values = append(e.Values, fmt.Sprintf("%04X%04X", v[i], v[i+1]))
			}
			break
		}
		for _, n := range v {
			e.Values = append(e.Values, strconv.Itoa(n))
		}
	case []float64:
		bits := 64
		if e.VR == "FL" {
			bits = 32
		}
		for _, f := range v {
			e.Values = append(e.Values, strconv.FormatFloat(f, 'g', -1, bits))
		}
	case []byte:
		if len(v) == 16 && bytes.Equal(v[:8], d.nonce[:]) {
			i := binary.LittleEndian.Uint64(v[8:])
			if i >= uint64(len(d.bulk)) {
				return e, fmt.Errorf("element %v: bad bulk marker", e.Tag)
			}
			b := d.bulk[i]
			e.VR, e.Binary = b.vr, b.bin
			e.Values = binaryValues(b.vr, b.bin.Data)
		} else {
			e.Binary = &Binary{Offset: -1, Length: int64(len(v)), Data: v}
		}
	case []*sdicom.SequenceItemValue:
		e.VR = "SQ"
		for _, it := range v {
			item := &Dataset{}
			for _, sub := range it.GetValue().([]*sdicom.Element) {
				se, err := d.element(sub, false)
				if err != nil {
					return e, err
				}
				item.Elements = append(item.Elements, se)
			}
			e.Items = append(e.Items, item)
		}
	case sdicom.PixelDataInfo:
		// The decoder recognises Pixel Data by its tag and skips our
		// marker; the walker located it.
		// Nested Pixel Data (an icon) is left without its location.
		e.VR = "OB"
		if top && e.Tag == tag.PixelData && d.pixelIdx >= 0 {
			e.VR, e.Binary = d.bulk[d.pixelIdx].vr, d.bulk[d.pixelIdx].bin
		}
	default:
		return e, fmt.Errorf("element %v: unexpected value type %T", e.Tag, v)
	}
	return e, nil
}

// splitValues undoes the decoder's splitting where it does not apply and
// trims the padding PS3.5 §6.2 says is not significant.
func splitValues(vr string, v []string) []string {
	s := strings.Join(v, `\`)
	switch vr {
	case "LT", "ST", "UT":
		// Single-valued; a backslash is text (PS3.5 §6.2).
		s = strings.TrimRight(s, " \x00")
		if s == "" {
			return nil
		}
		return []string{s}
	case "UR":
		s = strings.Trim(s, " ")
		if s == "" {
			return nil
		}
		return []string{s}
	}
	if strings.Trim(s, " \x00") == "" {
		return nil
	}
	out := strings.Split(s, `\`)
	for i, x := range out {
		switch vr {
		case "UI":
			out[i] = strings.TrimRight(x, " \x00")
		case "PN":
			out[i] = strings.TrimRight(x, " ")
		default:
			out[i] = strings.Trim(x, " \x00")
		}
	}
	return out
}

// binaryValues decodes the 64-bit integer VRs, which the decoder does not
// know and the walker therefore keeps as binary.
func binaryValues(vr string, data []byte) []string {
	if (vr != "SV" && vr != "UV") || data == nil {
		return nil
	}
	var out []string
	for i := 0; i+8 <= len(data); i += 8 {
		u := binary.LittleEndian.Uint64(data[i:])
		if vr == "SV" {
			out = append(out, strconv.FormatInt(int64(u), 10))
		} else {
			out = append(out, strconv.FormatUint(u, 10))
		}
	}
	return out
}
