package dicom

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"strconv"
	"strings"
	"unicode"

	sdicom "github.com/suyashkumar/dicom"
	stag "github.com/suyashkumar/dicom/pkg/tag"

	"github.com/pacsd/pacsd/dicom/tag"
)

// decode turns the walker's normalized copy of a header into a Dataset,
// with suyashkumar/dicom reading the elements and their values, and
// textDecoder their text. It returns what it decoded before any error.
func decode(copy []byte, bulk []bulkValue, nonce [8]byte, pixelIdx int) (ds *Dataset, err error) {
	ds = &Dataset{}
	if len(copy) == 0 {
		return ds, nil
	}
	els, err := readCopy(copy)
	defer func() {
		if r := recover(); r != nil {
			err = fmt.Errorf("decoder: %v", r)
		}
	}()
	d := decoder{bulk: bulk, nonce: nonce, pixelIdx: pixelIdx}
	// The Specific Character Set of the data set applies to all its
	// text, including elements before it (group 0004 of a DICOMDIR).
	text := charsetOf(els, nil)
	for _, el := range els {
		e, err := d.element(el, true, text)
		if err != nil {
			return ds, err
		}
		ds.Elements = append(ds.Elements, e)
	}
	return ds, err
}

// readCopy returns the top-level elements that suyashkumar/dicom reads
// from the copy, up to any error.
func readCopy(copy []byte) (els []*sdicom.Element, err error) {
	// The decoder panics on some input it finds inconsistent (log.Panicf
	// in its value accessors). Whatever a sender puts in a data set must
	// not stop the archive: a panic is a decoding error like any other.
	defer func() {
		if r := recover(); r != nil {
			err = fmt.Errorf("decoder: %v", r)
		}
	}()
	// File Meta Information naming Explicit VR Little Endian, the copy's
	// encoding, spares the decoder its guess at the transfer syntax: a
	// guess that reads header bytes as lengths and allocates accordingly.
	in := io.MultiReader(bytes.NewReader(copyMeta), bytes.NewReader(copy))
	p, err := sdicom.NewParser(in, int64(len(copyMeta)+len(copy)), nil,
		sdicom.AllowUnknownSpecificCharacterSet(),
		sdicom.SkipPixelData())
	if err != nil {
		return nil, err
	}
	p.SetTransferSyntax(binary.LittleEndian, false)
	for {
		el, err := p.Next()
		if errors.Is(err, sdicom.ErrorEndOfDICOM) {
			return els, nil
		}
		if err != nil {
			return els, err
		}
		if el.Tag == stag.DataSetTrailingPadding {
			continue
		}
		els = append(els, el)
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

// charsetOf returns the decoder of the text of a data set or item of
// elements els: the one its own Specific Character Set names, or else
// inherited, the enclosing data set's (PS3.5 §7.5.3).
func charsetOf(els []*sdicom.Element, inherited *textDecoder) *textDecoder {
	for _, el := range els {
		if el.Tag == stag.SpecificCharacterSet {
			if v, ok := el.Value.GetValue().([]string); ok {
				return newTextDecoder(charsetValues(v))
			}
		}
	}
	return inherited
}

// charsetValues returns the values of a Specific Character Set as the
// decoder read them, less the walker's charsetMark.
func charsetValues(v []string) []string {
	return splitValues("CS", strings.TrimPrefix(strings.Join(v, `\`), charsetMark))
}

func (d *decoder) element(el *sdicom.Element, top bool, text *textDecoder) (Element, error) {
	e := Element{Tag: tag.New(el.Tag.Group, el.Tag.Element), VR: el.RawValueRepresentation}
	switch v := el.Value.GetValue().(type) {
	case []string:
		if e.Tag == tag.SpecificCharacterSet {
			e.Values = charsetValues(v)
			break
		}
		// The decoder leaves text as the bytes it read (see
		// charsetMark), split at every backslash, even where one is
		// the second byte of a GBK character: joined again, the value
		// is whole. It trims the padding of a value that is not all
		// white space; here again, after decoding, for padding that an
		// escape sequence hid from it.
		s := text.decode(e.VR, strings.Join(v, `\`))
		if strings.TrimFunc(s, unicode.IsSpace) != "" {
			s = strings.Trim(s, " \x00")
		}
		e.Values = splitValues(e.VR, s)
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
			els := it.GetValue().([]*sdicom.Element)
			itemText := charsetOf(els, text)
			item := &Dataset{}
			for _, sub := range els {
				se, err := d.element(sub, false, itemText)
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

// splitValues splits the text s of a value of vr into its values where
// vr has several, and trims the padding PS3.5 §6.2 says is not
// significant.
func splitValues(vr, s string) []string {
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
