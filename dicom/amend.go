package dicom

import (
	"bufio"
	"bytes"
	"fmt"
	"io"
	"strings"
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
// characterSet is the Specific Character Set of the data set in src (its
// values, backslashes between them), in which the elements of set are
// encoded, as Encode writes text. set may not hold elements of groups
// 0000 and 0002. It may hold Specific Character Set (0008,0005) only to
// convert the data set to UTF-8: with the value ISO_IR 192, the text
// values of src that characterSet applies to are decoded from it and
// written in UTF-8, at every level, each read whole (up to
// MaxConvertedText bytes; a longer one is ErrUnsupported), and so are
// those of set. An item of a sequence of set may hold Specific Character
// Set, kept where the item's text is ASCII (a Modified Attributes
// Sequence item recording the character set a data set had): readers
// differ on an item's own character set, pydicom decoding the item's
// text with it, dcmtk ignoring it, and agree on ASCII. Otherwise it is
// dropped, as Encode drops it, the item's text being in the data set's.
func Amend(dst io.Writer, src io.Reader, from, to uid.TransferSyntax, encapsulated bool, set *Dataset, characterSet string) error {
	a, err := NewAmendment(set, characterSet)
	if err != nil {
		return err
	}
	_, err = a.write(dst, src, from, to, encapsulated, false)
	return err
}

// An Amendment is a set of elements that Amend writes over data sets,
// checked and encoded once for all of them: the elements of a correction
// written over every instance of a series. It may be used by several
// goroutines at once.
type Amendment struct {
	edits   []*Element
	cs      charset
	convert *textDecoder // see Amend

	mu      sync.Mutex
	encoded map[syntax][][]byte // the elements of edits, by output syntax
}

// NewAmendment checks set and its encoding in characterSet, as Amend
// takes them, and returns the Amendment that writes it.
func NewAmendment(set *Dataset, characterSet string) (*Amendment, error) {
	a := &Amendment{encoded: map[syntax][][]byte{}}
	if set != nil {
		a.edits = set.sorted()
	}
	target := characterSet
	for i, el := range a.edits {
		if g := el.Tag.Group(); g == 0x0000 || g == 0x0002 {
			return nil, fmt.Errorf("dicom: amend %v: not an attribute Amend replaces", el.Tag)
		}
		if i > 0 && a.edits[i-1].Tag == el.Tag {
			return nil, fmt.Errorf("dicom: amend %v: element given twice", el.Tag)
		}
		if el.Tag == tag.SpecificCharacterSet {
			target = strings.Join(el.Values, `\`)
		}
	}
	if target != characterSet {
		if target != CharsetUTF8 {
			return nil, fmt.Errorf("%w: converting a data set to character set %q", ErrUnsupported, target)
		}
		if a.convert = newTextDecoder(splitCharset(characterSet)); a.convert == nil {
			return nil, fmt.Errorf("%w: converting text from character set %q", ErrUnsupported, characterSet)
		}
	}
	var ok bool
	if a.cs, ok = lookupCharset(target); !ok {
		return nil, fmt.Errorf("%w: character set %q", ErrUnsupported, target)
	}
	// Encoded now, so that a value that cannot be written fails before a
	// byte is.
	if _, err := a.encodedIn(syntax{explicit: true}); err != nil {
		return nil, err
	}
	return a, nil
}

// encodedIn returns the encodings of the elements of a in syntax sx.
func (a *Amendment) encodedIn(sx syntax) ([][]byte, error) {
	a.mu.Lock()
	defer a.mu.Unlock()
	if enc, ok := a.encoded[sx]; ok {
		return enc, nil
	}
	e := encoder{sx: sx, cs: a.cs, itemCharsets: true}
	enc := make([][]byte, len(a.edits))
	for i, el := range a.edits {
		b, err := e.appendElement(nil, el)
		if err != nil {
			return nil, err
		}
		enc[i] = b
	}
	a.encoded[sx] = enc
	return enc, nil
}

// Head writes a data set from src to dst as Amend does, but leaves the
// copy of its rest to the caller: once past the amendments, where the
// rest of src is copied unchanged (pixel data, mostly), it returns,
// having written the data set up to there, with rest, the reader of src
// from there on. The caller reads the rest from it (a *bufio.Reader src
// is read through without another buffer in between), which spares a
// copy of every byte and a trip through dst for each step. rest is nil
// when there is no such place (a deflated syntax, a conversion of the
// character set) and Head has written the whole data set.
func (a *Amendment) Head(dst io.Writer, src io.Reader, from, to uid.TransferSyntax, encapsulated bool) (rest io.Reader, err error) {
	return a.write(dst, src, from, to, encapsulated, !from.Deflated && !to.Deflated)
}

func (a *Amendment) write(dst io.Writer, src io.Reader, from, to uid.TransferSyntax, encapsulated, handoff bool) (io.Reader, error) {
	if encapsulated && to.BigEndian {
		return nil, fmt.Errorf("%w: encapsulated pixel data in %s", ErrUnsupported, uid.Name(to.UID))
	}
	encoded, err := a.encodedIn(syntax{explicit: to.UID != uid.ImplicitVRLittleEndian, bigEndian: to.BigEndian})
	if err != nil {
		return nil, err
	}
	run := &amendment{edits: a.edits, encoded: encoded, convert: a.convert, handoff: handoff && a.convert == nil}
	if err := transcodeEdited(dst, src, from, to, encapsulated, run); err != nil {
		return nil, err
	}
	return run.left, nil
}

// splitCharset returns the values of a Specific Character Set written
// with backslashes between them, without their padding.
func splitCharset(s string) []string {
	if strings.TrimSpace(s) == "" {
		return nil
	}
	vs := strings.Split(s, `\`)
	for i, v := range vs {
		vs[i] = strings.TrimSpace(v)
	}
	return vs
}

// MaxConvertedText bounds the length of a text value that Amend converts
// to UTF-8: it holds the value in memory. Every VR but UT and UC is far
// shorter.
const MaxConvertedText = 1 << 20

// convertText writes a text value of the input, whose header has been
// read, in UTF-8.
func (t *transcoder) convertText(out syntax, tg tag.Tag, vr string, length uint32, at int64) error {
	if length > MaxConvertedText {
		return fmt.Errorf("%w: element %v at offset %d: %d bytes of text are too long to convert to UTF-8", ErrUnsupported, tg, at, length)
	}
	b, err := t.read(int(length))
	if err != nil {
		return t.valueErr(err, tg, at)
	}
	text := t.convert.decode(vr, string(b))
	n := uint32(len(text) + len(text)%2)
	outVR := vr
	if out.explicit && !longVR(vr) && n > 0xFFFF {
		outVR = "UN"
	}
	if err := t.writeHeader(out, tg, outVR, n); err != nil {
		return err
	}
	if _, err := t.w.WriteString(text); err != nil {
		return err
	}
	if len(text)%2 == 1 {
		return t.w.WriteByte(' ')
	}
	return nil
}

// itemCharset reads the Specific Character Set of an item, whose header
// has been read, and decodes the item's text with it: the item's own
// character set, when it names one this package reads.
func (t *transcoder) itemCharset(tg tag.Tag, length uint32, at int64) error {
	if length == undefinedLength || length > 1024 {
		return malformed("element %v at offset %d has a length of %d", tg, at, length)
	}
	b, err := t.read(int(length))
	if err != nil {
		return t.valueErr(err, tg, at)
	}
	if d := newTextDecoder(splitCharset(string(bytes.TrimRight(b, "\x00 ")))); d != nil {
		t.convert = d
	}
	return nil
}

// passBuffers hold the buffers the rest of an amended data set is copied
// through: a megabyte each, too much to allocate for every instance
// served.
var passBuffers = sync.Pool{New: func() any { b := make([]byte, 1<<20); return &b }}

// headWriters hold the buffers amended headers are written through.
var headWriters = sync.Pool{New: func() any { return bufio.NewWriterSize(nil, 32<<10) }}

// amendment holds the top-level elements a transcoder writes in place
// of the input's, in tag order, each with its encoding.
type amendment struct {
	edits   []*Element
	encoded [][]byte
	// convert, when not nil, decodes the input's text (see Amend).
	convert *textDecoder
	// handoff stops the copy where the rest of the input would be
	// copied unchanged, leaving left its reader (see Amendment.Head).
	handoff bool
	left    io.Reader
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
