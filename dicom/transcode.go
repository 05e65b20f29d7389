package dicom

import (
	"bufio"
	"compress/flate"
	"errors"
	"fmt"
	"io"

	"github.com/pacsd/pacsd/dicom/tag"
	"github.com/pacsd/pacsd/dicom/uid"
)

// ErrUnsupported reports a well-formed request that this package does not
// carry out: a transfer syntax other than the uncompressed ones, an
// encapsulated (compressed) value, a character set it cannot write.
var ErrUnsupported = errors.New("dicom: unsupported")

// maxTranscodeDepth bounds the nesting of sequences Transcode follows. It
// is generous, since an instance that is already archived must not fail to
// be sent for want of depth, yet it keeps the recursion, and so the memory,
// bounded whatever the input claims.
const maxTranscodeDepth = 128

// copyBuffer is the size of the buffer every value passes through. It is a
// multiple of 8 so that every chunk of a value but the last holds whole
// numbers of the 2-, 4- and 8-byte units that are swapped between byte
// orders.
const copyBuffer = 64 << 10

// Transcode copies a data set (without File Meta Information) from src,
// encoded in transfer syntax from, to dst in transfer syntax to. Both must
// be Implicit VR Little Endian, Explicit VR Little Endian, Explicit VR Big
// Endian or Deflated Explicit VR Little Endian; anything else is
// ErrUnsupported. It streams: every value passes through one fixed buffer,
// so memory does not grow with the size of the data set, and nothing is
// allocated in proportion to a length read from the input.
//
// The output differs from the input in layout only, never in value:
//
//   - Every sequence and every item is written with undefined length, which
//     is valid in every syntax and spares recomputing lengths when the
//     header sizes change.
//   - Group length elements (gggg,0000) are dropped, as PS3.5 §7.2 allows
//     for a data set; those of groups 0000 and 0002, which do not belong in
//     a data set, are copied unchanged.
//   - A value of odd length, which PS3.5 §7.1.1 forbids, gains a padding
//     byte (a space for text, NUL for UI and binary values), as dcmtk pads.
//   - From implicit VR, each VR comes from the data dictionary: "OB or OW"
//     and "US or OW" become OW (Pixel Data included, as PS3.5 Annex A.1
//     has it in implicit VR and as dcmtk writes it); the pixel value
//     attributes that are "US or SS" become SS when Pixel Representation
//     (0028,0103) of the same data set is 1 and US otherwise, the LUT
//     descriptors US; private and unknown elements become UN, and so does
//     a value too long for the 16-bit length of its VR.
//   - Explicit VRs are kept, except that a VR this package does not know is
//     written as UN.
//   - Between byte orders, values are swapped in the units SwapUnit gives:
//     by VR, except Pixel Data, which keeps its VR and is swapped by pixel
//     when Bits Allocated is 16, 32 or 64 (dcmtk swaps 32-bit pixels sent
//     as OW in 16-bit words, which pydicom and dcm4che do not read as the
//     same values), in 16-bit words in OW otherwise, and not at all in OB.
//   - An element of VR UN and undefined length is a sequence whose items
//     are Implicit VR Little Endian whatever the syntax around it (PS3.5
//     §6.2.2); it is copied as such, items and all, in every output syntax.
//
// A data set labelled explicit VR that is in fact implicit, or the other
// way round, is read as what its first element shows, as the Scanner
// reads it.
//
// A malformed input is an error wrapping ErrMalformed that names the
// element and the offset in the (inflated) data set where it went wrong;
// encapsulated pixel data, which no uncompressed syntax may carry, is
// ErrUnsupported. On error, dst has received part of the data set.
func Transcode(dst io.Writer, src io.Reader, from, to uid.TransferSyntax) error {
	return transcodeWith(dst, src, from, to, false)
}

// TranscodeHeader is Transcode for the header of a data set whose pixel
// data may be encapsulated: Pixel Data of undefined length is copied as
// it is, fragment by fragment (OB, items little endian, PS3.5 A.4). It
// serves data sets of a compressed transfer syntax encoded in another
// syntax than theirs, such as implicit VR in a JPEG syntax, which some
// writers produce: read as what their first element shows, they come out
// in to, which must be little endian.
func TranscodeHeader(dst io.Writer, src io.Reader, from, to uid.TransferSyntax) error {
	if to.BigEndian {
		return fmt.Errorf("%w: encapsulated pixel data in %s", ErrUnsupported, uid.Name(to.UID))
	}
	return transcodeWith(dst, src, from, to, true)
}

func transcodeWith(dst io.Writer, src io.Reader, from, to uid.TransferSyntax, encapsulated bool) error {
	return transcodeEdited(dst, src, from, to, encapsulated, nil)
}

// transcodeEdited is transcodeWith, with the top-level elements of
// amend, when not nil, in place of the input's (see Amend).
func transcodeEdited(dst io.Writer, src io.Reader, from, to uid.TransferSyntax, encapsulated bool, amend *amendment) error {
	for _, ts := range []uid.TransferSyntax{from, to} {
		if !Transcodable(ts.UID) {
			return fmt.Errorf("%w: transcoding %s", ErrUnsupported, uid.Name(ts.UID))
		}
	}
	t := &transcoder{
		amend:        amend,
		encapsulated: encapsulated,
		in:           syntax{explicit: from.UID != uid.ImplicitVRLittleEndian, bigEndian: from.BigEndian},
		out:          syntax{explicit: to.UID != uid.ImplicitVRLittleEndian, bigEndian: to.BigEndian},
	}
	if amend != nil {
		t.convert = amend.convert
		// Amended data sets are served one after another, a series at
		// a time: their buffer is reused.
		buf := passBuffers.Get().(*[]byte)
		defer passBuffers.Put(buf)
		t.buf = *buf
	} else {
		t.buf = make([]byte, copyBuffer)
	}
	var r io.Reader = src
	if from.Deflated {
		r = inflater{flate.NewReader(bufio.NewReaderSize(src, 32<<10))}
	}
	if b, ok := r.(*bufio.Reader); ok && b.Size() >= 32<<10 {
		t.elementReader.r = b // read through as it is, without a copy more
	} else {
		t.elementReader.r = bufio.NewReaderSize(r, 32<<10)
	}

	var w io.Writer = dst
	var fw *flate.Writer
	var counted *countingWriter
	if to.Deflated {
		counted = &countingWriter{w: dst}
		fw, _ = flate.NewWriter(counted, flate.DefaultCompression) // the level is valid
		w = fw
	}
	if amend != nil {
		bw := headWriters.Get().(*bufio.Writer)
		bw.Reset(w)
		defer func() { bw.Reset(nil); headWriters.Put(bw) }()
		t.w = bw
	} else {
		t.w = bufio.NewWriterSize(w, 32<<10)
	}
	t.dst = w

	err := t.run()
	if err == nil {
		err = t.w.Flush()
	}
	if err == nil && fw != nil {
		err = fw.Close()
	}
	// PS3.5 A.5: a deflated stream of odd length is padded with one NUL,
	// because a PDV's data set must be of even length; dcmtk aborts
	// the association otherwise.
	if err == nil && counted != nil && counted.n%2 == 1 {
		_, err = dst.Write([]byte{0})
	}
	return err
}

// countingWriter counts the bytes written through it.
type countingWriter struct {
	w io.Writer
	n int64
}

func (c *countingWriter) Write(p []byte) (int, error) {
	n, err := c.w.Write(p)
	c.n += int64(n)
	return n, err
}

// inflater reports a corrupt deflate stream as a malformed data set and
// one cut short as a truncated one; the source's own errors pass through.
type inflater struct{ r io.Reader }

func (f inflater) Read(p []byte) (int, error) {
	n, err := f.r.Read(p)
	var corrupt flate.CorruptInputError
	switch {
	case errors.As(err, &corrupt):
		err = fmt.Errorf("%w: deflated stream: %v", ErrMalformed, err)
	case errors.Is(err, io.ErrUnexpectedEOF):
		err = truncated("deflated stream: %v", err)
	}
	return n, err
}

// Transcodable reports whether Transcode converts from and to transfer
// syntax ts: one of the four uncompressed syntaxes.
func Transcodable(ts string) bool {
	switch ts {
	case uid.ImplicitVRLittleEndian, uid.ExplicitVRLittleEndian, uid.ExplicitVRBigEndian, uid.DeflatedExplicitVRLittleEndian:
		return true
	}
	return false
}

type transcoder struct {
	elementReader
	w    *bufio.Writer
	in   syntax // of the top level of the input
	out  syntax // of the top level of the output
	buf  []byte
	whdr [12]byte
	// encapsulated lets Pixel Data of undefined length through.
	encapsulated bool
	// amend, when not nil, replaces top-level elements (see Amend).
	amend *amendment
	// convert, when not nil, decodes the text values that Specific
	// Character Set applies to, which are written in UTF-8 (see Amend).
	convert *textDecoder
	// dst is what w buffers for, to which the rest of an amended data
	// set is copied in large steps.
	dst io.Writer
}

func (t *transcoder) run() error {
	t.in = t.detectSyntax(t.in)
	return t.dataset(t.in, t.out, -1, 0, true)
}

// writeHeader writes an element, item or delimiter header in syntax sx.
func (t *transcoder) writeHeader(sx syntax, tg tag.Tag, vr string, length uint32) error {
	bo := sx.order()
	h := t.whdr[:]
	bo.PutUint16(h[0:], tg.Group())
	bo.PutUint16(h[2:], tg.Element())
	n := 8
	switch {
	case tg.Group() == 0xFFFE || !sx.explicit:
		bo.PutUint32(h[4:], length)
	case longVR(vr):
		copy(h[4:], vr)
		h[6], h[7] = 0, 0
		bo.PutUint32(h[8:], length)
		n = 12
	default:
		copy(h[4:], vr)
		bo.PutUint16(h[6:], uint16(length))
	}
	_, err := t.w.Write(h[:n])
	return err
}

// dataset transcodes the elements of the top level (top), or of an item
// up to end, or to its item delimiter when end is -1.
func (t *transcoder) dataset(in, out syntax, end int64, depth int, top bool) error {
	lv := newLevel()
	for {
		if top && t.amend != nil && t.convert == nil && in == out {
			// Once the next element comes after every amendment left,
			// the rest is copied as it is: the pixel data of a
			// corrected instance flows as fast as an unchanged one's.
			if b, _ := t.r.Peek(4); len(b) == 4 {
				bo := in.order()
				if next := tag.New(bo.Uint16(b), bo.Uint16(b[2:])); t.amend.before(next) {
					if err := t.amend.rest(t.w); err != nil {
						return err
					}
					if err := t.w.Flush(); err != nil {
						return err
					}
					if t.amend.handoff {
						t.amend.left = t.r
						return nil
					}
					// In steps of 1 MiB, which the readers below pass
					// through without copying, rather than 32 KiB.
					if _, err := io.CopyBuffer(t.dst, struct{ io.Reader }{t.r}, t.buf); err != nil {
						return fmt.Errorf("at offset %d: %w", t.pos, err)
					}
					return nil
				}
			}
		}
		if top {
			b, err := t.r.Peek(1)
			if len(b) == 0 {
				if errors.Is(err, io.EOF) {
					if t.amend != nil {
						return t.amend.rest(t.w)
					}
					return nil
				}
				return fmt.Errorf("at offset %d: %w", t.pos, err)
			}
		} else if end >= 0 {
			if t.pos == end {
				return nil
			}
			if t.pos > end {
				return malformed("item overruns its length by %d bytes at offset %d", t.pos-end, t.pos)
			}
		}
		at := t.pos
		tg, vr, length, err := t.header(in)
		if err != nil {
			return err
		}
		if tg.Group() == 0xFFFE {
			switch {
			case top:
				return malformed("%v outside a sequence at offset %d", tg, at)
			case tg != tag.ItemDelimitationItem:
				return malformed("%v inside an item at offset %d", tg, at)
			case end >= 0:
				return malformed("item delimiter inside an item of defined length at offset %d", at)
			}
			return nil
		}
		if end >= 0 && length != undefinedLength && t.pos+int64(length) > end {
			return malformed("element %v at offset %d overruns its item", tg, at)
		}
		if !top && t.convert != nil && tg == tag.SpecificCharacterSet {
			// An item's own character set, for its text only; the
			// item is written in UTF-8 with the rest.
			if err := t.itemCharset(tg, length, at); err != nil {
				return err
			}
			continue
		}
		if top && t.amend != nil {
			replaced, err := t.amend.write(t.w, tg)
			if err != nil {
				return err
			}
			if replaced {
				if err := t.drop(in, out, &lv, tg, vr, length, at, depth); err != nil {
					return err
				}
				continue
			}
		}
		if err := t.element(in, out, &lv, tg, vr, length, at, depth); err != nil {
			return err
		}
	}
}

// element transcodes one element whose header has been read.
func (t *transcoder) element(in, out syntax, lv *level, tg tag.Tag, vr string, length uint32, at int64, depth int) error {
	if vr == "" {
		vr = lv.implicitVR(tg, length)
	} else if !knownVR(vr) {
		vr = "UN"
	}

	if length == undefinedLength {
		switch {
		case vr == "SQ":
			if err := t.writeHeader(out, tg, "SQ", undefinedLength); err != nil {
				return err
			}
			return t.items(in, out, tg, -1, at, depth)
		case vr == "UN":
			// Items of a sequence sent as UN are implicit VR little
			// endian on both sides (PS3.5 §6.2.2).
			if err := t.writeHeader(out, tg, "UN", undefinedLength); err != nil {
				return err
			}
			return t.items(syntax{}, syntax{}, tg, -1, at, depth)
		case binaryVR(vr) && t.encapsulated && tg == tag.PixelData && !in.bigEndian:
			if err := t.writeHeader(out, tg, "OB", undefinedLength); err != nil {
				return err
			}
			return t.fragments(at)
		case binaryVR(vr):
			return fmt.Errorf("%w: element %v at offset %d is encapsulated (compressed) data", ErrUnsupported, tg, at)
		}
		return malformed("element %v (%s) at offset %d has an undefined length", tg, vr, at)
	}

	if tg.Element() == 0x0000 && tg.Group() != 0x0000 && tg.Group() != 0x0002 {
		// Group lengths would be wrong after the change of layout.
		if err := t.skip(int64(length)); err != nil {
			return t.valueErr(err, tg, at)
		}
		return nil
	}
	if vr == "SQ" {
		if err := t.writeHeader(out, tg, "SQ", undefinedLength); err != nil {
			return err
		}
		return t.items(in, out, tg, t.pos+int64(length), at, depth)
	}
	if t.convert != nil && usesCharset(vr) {
		return t.convertText(out, tg, vr, length, at)
	}
	// Values of odd length, which PS3.5 §7.1.1 forbids, are padded as
	// dcmtk pads them, so that the output is valid.
	padded := length + length%2
	outVR := vr
	if out.explicit && !longVR(vr) && padded > 0xFFFF {
		outVR = "UN"
	}
	if err := t.writeHeader(out, tg, outVR, padded); err != nil {
		return err
	}
	size := 1
	if in.bigEndian != out.bigEndian && outVR != "UN" {
		size = lv.swapUnit(tg, vr)
	}
	if (tg == tag.PixelRepresentation || tg == tag.BitsAllocated) && length == 2 {
		b, err := t.read(2)
		if err != nil {
			return t.valueErr(err, tg, at)
		}
		lv.observe(tg, b, in.order())
		swapUnits(b, size)
		_, err = t.w.Write(b)
		return err
	}
	if err := t.copyValue(int64(length), size, tg, at); err != nil {
		return err
	}
	if padded != length {
		pad := byte(0)
		if textVR(vr) && vr != "UI" {
			pad = ' '
		}
		return t.w.WriteByte(pad)
	}
	return nil
}

// copyValue copies n bytes of value through the buffer, reversing each
// unit of size bytes.
func (t *transcoder) copyValue(n int64, size int, tg tag.Tag, at int64) error {
	for n > 0 {
		chunk := t.buf[:min(n, int64(len(t.buf)))]
		if err := t.fill(chunk); err != nil {
			return t.valueErr(err, tg, at)
		}
		swapUnits(chunk, size)
		if _, err := t.w.Write(chunk); err != nil {
			return err
		}
		n -= int64(len(chunk))
	}
	return nil
}

// valueErr names the element whose value could not be read.
func (t *transcoder) valueErr(err error, tg tag.Tag, at int64) error {
	return fmt.Errorf("element %v at offset %d: %w", tg, at, err)
}

// items transcodes the items of sequence tg, whose header has been
// written with undefined length, from syntax in to syntax out, reading
// up to end or, when end is -1, to the sequence delimiter. The items and
// the delimiter it writes are in syntax out, which for a sequence sent as
// UN is implicit VR little endian while the sequence's header is not.
// fragments copies the items of encapsulated pixel data and its
// sequence delimiter unchanged.
func (t *transcoder) fragments(at int64) error {
	le := syntax{}
	for {
		itemAt := t.pos
		it, _, n, err := t.header(le)
		if err != nil {
			return err
		}
		if it == tag.SequenceDelimitationItem {
			return t.writeHeader(le, it, "", 0)
		}
		if it != tag.Item || n == undefinedLength {
			return malformed("%v of length %d among the fragments of Pixel Data at offset %d, at offset %d", it, n, at, itemAt)
		}
		if err := t.writeHeader(le, it, "", n); err != nil {
			return err
		}
		if err := t.copyValue(int64(n), 1, tag.PixelData, at); err != nil {
			return err
		}
	}
}

func (t *transcoder) items(in, out syntax, tg tag.Tag, end, at int64, depth int) error {
	if depth >= maxTranscodeDepth {
		return malformed("sequence %v at offset %d nested deeper than %d", tg, at, maxTranscodeDepth)
	}
	for {
		if end >= 0 {
			if t.pos == end {
				break
			}
			if t.pos > end {
				return malformed("sequence %v at offset %d overruns its length by %d bytes", tg, at, t.pos-end)
			}
		}
		itemAt := t.pos
		it, _, n, err := t.header(in)
		if err != nil {
			return err
		}
		if it == tag.SequenceDelimitationItem {
			if end >= 0 {
				return malformed("sequence delimiter inside sequence %v of defined length at offset %d", tg, itemAt)
			}
			break
		}
		if it != tag.Item {
			return malformed("%v where an item of sequence %v belongs, at offset %d", it, tg, itemAt)
		}
		itemEnd := int64(-1)
		if n != undefinedLength {
			itemEnd = t.pos + int64(n)
			if end >= 0 && itemEnd > end {
				return malformed("item at offset %d overruns sequence %v", itemAt, tg)
			}
		}
		if err := t.writeHeader(out, tag.Item, "", undefinedLength); err != nil {
			return err
		}
		outer := t.convert
		err = t.dataset(in, out, itemEnd, depth+1, false)
		t.convert = outer
		if err != nil {
			return err
		}
		if err := t.writeHeader(out, tag.ItemDelimitationItem, "", 0); err != nil {
			return err
		}
	}
	return t.writeHeader(out, tag.SequenceDelimitationItem, "", 0)
}
