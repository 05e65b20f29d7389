package dicom

import (
	"bufio"
	"fmt"
	"io"
	"sync"

	"github.com/pacsd/pacsd/dicom/tag"
	"github.com/pacsd/pacsd/dicom/uid"
)

// Amend copies a data set from src to dst as Transcode does, from
// syntax from to syntax to, with the top-level elements of set written in
// place of those of the same tags, and added in tag order where src has
// none. It streams like Transcode: only set is held in memory, and
// values, pixel data included, pass through one fixed buffer. With
// encapsulated, Pixel Data of undefined length is copied fragment by
// fragment, as TranscodeHeader copies it, which serves the data sets of
// the compressed syntaxes (read and written as Explicit VR Little
// Endian).
//
// The elements of set are encoded in characterSet, the Specific
// Character Set of the data set (its value, backslashes between the
// values), as Encode writes text; set may not hold Specific Character
// Set itself, nor elements of groups 0000 and 0002.
func Amend(dst io.Writer, src io.Reader, from, to uid.TransferSyntax, encapsulated bool, set *Dataset, characterSet string) error {
	cs, ok := lookupCharset(characterSet)
	if !ok {
		return fmt.Errorf("%w: character set %q", ErrUnsupported, characterSet)
	}
	var edits []*Element
	if set != nil {
		edits = set.sorted()
	}
	for i, el := range edits {
		if g := el.Tag.Group(); g == 0x0000 || g == 0x0002 || el.Tag == tag.SpecificCharacterSet {
			return fmt.Errorf("dicom: amend %v: not an attribute Amend replaces", el.Tag)
		}
		if i > 0 && edits[i-1].Tag == el.Tag {
			return fmt.Errorf("dicom: amend %v: element given twice", el.Tag)
		}
	}
	if encapsulated && to.BigEndian {
		return fmt.Errorf("%w: encapsulated pixel data in %s", ErrUnsupported, uid.Name(to.UID))
	}
	// Encoded now, so that a value that cannot be written fails before a
	// byte is.
	out := syntax{explicit: to.UID != uid.ImplicitVRLittleEndian, bigEndian: to.BigEndian}
	enc := encoder{sx: out, cs: cs}
	encoded := make([][]byte, len(edits))
	for i, el := range edits {
		b, err := enc.appendElement(nil, el)
		if err != nil {
			return err
		}
		encoded[i] = b
	}
	return transcodeEdited(dst, src, from, to, encapsulated, &amendment{edits: edits, encoded: encoded})
}

// passBuffers hold the buffers the rest of an amended data set is copied
// through: a megabyte each, too much to allocate for every instance
// served.
var passBuffers = sync.Pool{New: func() any { b := make([]byte, 1<<20); return &b }}

// amendment holds the top-level elements a transcoder writes in place
// of the input's, in tag order, each with its encoding.
type amendment struct {
	edits   []*Element
	encoded [][]byte
}

// before reports whether every element of a left has a tag below t.
func (a *amendment) before(t tag.Tag) bool {
	return len(a.edits) == 0 || a.edits[len(a.edits)-1].Tag < t
}

// write writes the elements of a with tags up to t, and reports whether
// the last one has tag t itself: the input's element of that tag is then
// to be dropped.
func (a *amendment) write(w io.Writer, t tag.Tag) (replaced bool, err error) {
	for len(a.edits) > 0 && a.edits[0].Tag <= t {
		replaced = a.edits[0].Tag == t
		if _, err := w.Write(a.encoded[0]); err != nil {
			return false, err
		}
		a.edits, a.encoded = a.edits[1:], a.encoded[1:]
	}
	return replaced, nil
}

// rest writes the elements of a left after the input's last.
func (a *amendment) rest(w io.Writer) error {
	_, err := a.write(w, tag.Tag(0xFFFFFFFF))
	return err
}

// drop reads the value of an element of the input whose header has been
// read, writing nothing.
func (t *transcoder) drop(in, out syntax, lv *level, tg tag.Tag, vr string, length uint32, at int64, depth int) error {
	if length != undefinedLength {
		if err := t.skip(int64(length)); err != nil {
			return t.valueErr(err, tg, at)
		}
		return nil
	}
	w := t.w
	t.w = bufio.NewWriterSize(io.Discard, 512)
	defer func() { t.w = w }()
	return t.element(in, out, lv, tg, vr, length, at, depth)
}
