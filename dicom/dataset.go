package dicom

import (
	"strings"

	"github.com/pacsd/pacsd/dicom/tag"
)

// Dataset is the header of a data set: its elements in tag order, bulk
// values replaced by references.
type Dataset struct {
	Elements []Element
}

// Element is one data element of a header.
type Element struct {
	Tag tag.Tag
	// VR is the element's VR as sent, except for an element sent as UN
	// whose tag the data dictionary knows: it has the dictionary's VR
	// and its value is decoded accordingly (PS3.5 §6.2.2).
	VR string
	// Values holds the values of every VR but SQ and the binary VRs, as
	// text: strings decoded to UTF-8 from the character set of their data
	// set or sequence item (left as they are where no Specific Character
	// Set names one), numbers in decimal, AT as eight hexadecimal digits.
	Values []string
	// Items holds the items of a sequence (SQ).
	Items []*Dataset
	// Binary holds the value of a binary VR (OB, OD, OF, OL, OV, OW, UN,
	// and SV/UV).
	Binary *Binary
}

// Binary locates a binary value within the data set it came from.
type Binary struct {
	// Offset is where the value starts, counted from the first byte of
	// the data set: of the inflated data set when its transfer syntax is
	// deflated, where an InflatedObject reads it. It is -1 for a value
	// that did not come from a data set (ParseJSON's InlineBinary).
	Offset int64
	// Length is the value's length in bytes. For an encapsulated value
	// (undefined length) it counts the items and the sequence delimiter.
	Length int64
	// Encapsulated values consist of fragments (PS3.5 §A.4).
	Encapsulated bool
	// Data is the value itself when it is small enough to keep in memory
	// (see Limits.Inline), otherwise nil.
	Data []byte
}

// Find returns the element with tag t.
func (d *Dataset) Find(t tag.Tag) (*Element, bool) {
	if d == nil {
		return nil, false
	}
	// Elements are in tag order, but a header may be partial; a linear
	// scan is cheap for the few dozen elements looked up per instance.
	for i := range d.Elements {
		if d.Elements[i].Tag == t {
			return &d.Elements[i], true
		}
	}
	return nil, false
}

// Strings returns the values of the element with tag t, or nil.
func (d *Dataset) Strings(t tag.Tag) []string {
	if e, ok := d.Find(t); ok {
		return e.Values
	}
	return nil
}

// String returns the values of the element with tag t joined by
// backslashes, as DICOM encodes multiple values, or "".
func (d *Dataset) String(t tag.Tag) string {
	return strings.Join(d.Strings(t), `\`)
}

// First returns the first value of the element with tag t, or "".
func (d *Dataset) First(t tag.Tag) string {
	if v := d.Strings(t); len(v) > 0 {
		return v[0]
	}
	return ""
}

// Items returns the items of the sequence with tag t, or nil.
func (d *Dataset) Items(t tag.Tag) []*Dataset {
	if e, ok := d.Find(t); ok {
		return e.Items
	}
	return nil
}
