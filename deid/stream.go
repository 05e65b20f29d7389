package deid

import (
	"bytes"
	"context"
	"encoding/binary"
	"fmt"
	"io"

	"github.com/pacsd/pacsd/dicom"
	"github.com/pacsd/pacsd/dicom/tag"
	"github.com/pacsd/pacsd/dicom/uid"
)

// maxTrailing bounds the bytes after Pixel Data held back while pixel data
// streams: elements there (trailing padding, digital signatures, private
// groups) are de-identified like the header.
const maxTrailing = 64 << 10

// Rewrite reads a data set (no File Meta Information) in transfer syntax
// ts from src and writes its de-identified copy to dst in the same
// syntax: the header rewritten, Pixel Data copied byte for byte as it
// streams. The header before Pixel Data is held in memory, up to
// Options.MaxHeader; nothing else is. The caller writes File Meta
// Information, if any, from Result.Replaced.
//
// An instance with burned-in annotation is ErrBurnedIn, unless allowed;
// nothing is written then. On another error, dst may hold part of the
// copy.
func (d *Deidentifier) Rewrite(ctx context.Context, dst io.Writer, src io.Reader, ts uid.TransferSyntax) (Result, error) {
	if ts.Deflated {
		return Result{}, fmt.Errorf("%w: deflated transfer syntax %s", ErrUnsupported, ts.UID)
	}
	// The header is read into a buffer that grows as needed, so that a
	// small instance costs little memory.
	var hb bytes.Buffer
	n, err := hb.ReadFrom(io.LimitReader(src, int64(d.maxHdr)))
	if err != nil {
		return Result{}, fmt.Errorf("deid: read: %w", err)
	}
	head, eof := hb.Bytes(), n < int64(d.maxHdr)

	pixelAt, found, err := findPixelData(head, ts)
	if err != nil {
		return Result{}, err
	}
	if !found && !eof {
		return Result{}, fmt.Errorf("%w: no Pixel Data within the first %d bytes", ErrUnsupported, d.maxHdr)
	}
	end := len(head)
	if found {
		end = pixelAt
	}
	hdr, err := parse(head[:end], ts, d.maxHdr)
	if err != nil {
		return Result{}, err
	}
	in, err := d.begin(hdr)
	if err != nil {
		return Result{}, err
	}
	out := in.dataset(hdr, true)
	in.mark(out)
	if err := encode(dst, out, ts, charsetOf(hdr)); err != nil {
		return Result{}, err
	}
	if found {
		trailing, err := copyPixelData(dst, io.MultiReader(bytes.NewReader(head), src), ts, int64(pixelAt))
		if err != nil {
			return Result{}, err
		}
		if trailing != nil {
			if err := encode(dst, in.dataset(trailing, true), ts, ""); err != nil {
				return Result{}, err
			}
		}
	}
	if err := in.record(ctx); err != nil {
		return Result{}, err
	}
	return in.res, nil
}

// parse reads a whole header held in memory, keeping binary values in
// memory too so that they can be written again.
func parse(b []byte, ts uid.TransferSyntax, limit int) (*dicom.Dataset, error) {
	// Limits.Header counts the scanner's memory, bookkeeping included:
	// up to some 26 bytes for each byte of the smallest elements.
	s := dicom.NewScanner(bytes.NewReader(b), ts, dicom.Limits{Identify: limit + 1, Header: 32*limit + 1<<16, Inline: limit})
	defer s.Close()
	if _, err := s.Identify(); err != nil {
		return nil, fmt.Errorf("deid: %w", err)
	}
	if _, err := io.Copy(io.Discard, s.Rest()); err != nil {
		return nil, fmt.Errorf("deid: %w", err)
	}
	h := s.Header()
	if h.Err != nil {
		return nil, fmt.Errorf("deid: %w", h.Err)
	}
	if len(h.Omitted) > 0 {
		return nil, fmt.Errorf("%w: elements %v too large to hold", ErrUnsupported, h.Omitted)
	}
	return h.Dataset, nil
}

// findPixelData returns where the top-level Pixel Data element (or Float
// or Double Float Pixel Data) starts in head. Its tag's bytes are looked
// for; a place where they occur is the element when the bytes before it
// are a complete data set, which dicom's reader decides: inside a value
// or a sequence item (an icon image's pixel data) they are not.
func findPixelData(head []byte, ts uid.TransferSyntax) (int, bool, error) {
	var bo binary.ByteOrder = binary.LittleEndian
	if ts.BigEndian {
		bo = binary.BigEndian
	}
	best := -1
	for _, t := range []tag.Tag{tag.FloatPixelData, tag.DoubleFloatPixelData, tag.PixelData} {
		var pat [4]byte
		bo.PutUint16(pat[:], t.Group())
		bo.PutUint16(pat[2:], t.Element())
		for from := 0; ; {
			i := bytes.Index(head[from:], pat[:])
			if i < 0 {
				break
			}
			at := from + i
			from = at + 1
			if best >= 0 && at >= best {
				break
			}
			if len(head)-at < 8 || !plausibleHeader(head[at:], ts) {
				continue
			}
			if _, err := parse(head[:at], ts, len(head)); err == nil {
				best = at
				break
			}
		}
	}
	return best, best >= 0, nil
}

// plausibleHeader reports whether b starts like a pixel data element
// header: in explicit VR syntaxes a binary VR and two zero bytes.
func plausibleHeader(b []byte, ts uid.TransferSyntax) bool {
	if !ts.ExplicitVR {
		return true
	}
	if len(b) < 12 {
		return false
	}
	return binaryVR(string(b[4:6])) && b[6] == 0 && b[7] == 0
}

// copyPixelData reads the whole data set from src, skips its first
// pixelAt bytes (the header, already rewritten), and copies the Pixel
// Data element to dst as it streams. It returns the elements after Pixel
// Data, if any, to be de-identified like the header.
func copyPixelData(dst io.Writer, src io.Reader, ts uid.TransferSyntax, pixelAt int64) (*dicom.Dataset, error) {
	s := dicom.NewScanner(src, ts, dicom.Limits{})
	defer s.Close()
	if _, err := s.Identify(); err != nil {
		return nil, fmt.Errorf("deid: %w", err)
	}
	hw := &holdWriter{dst: dst, skip: pixelAt, hold: maxTrailing}
	if _, err := io.Copy(hw, io.MultiReader(bytes.NewReader(s.Prefix()), s.Rest())); err != nil {
		return nil, fmt.Errorf("deid: %w", err)
	}
	h := s.Header()
	if h.Err != nil {
		return nil, fmt.Errorf("deid: %w", h.Err)
	}
	px := h.PixelData
	if px == nil {
		return nil, fmt.Errorf("deid: the data set has no Pixel Data where it was found, at offset %d", pixelAt)
	}
	headerLen := int64(8)
	if ts.ExplicitVR {
		headerLen = 12
	}
	if px.Offset-headerLen != pixelAt {
		return nil, fmt.Errorf("deid: Pixel Data found at offset %d, read at %d", pixelAt, px.Offset-headerLen)
	}
	pixelEnd := px.Offset + px.Length
	if err := hw.finish(pixelEnd); err != nil {
		return nil, err
	}
	trailing := &dicom.Dataset{}
	for _, e := range h.Dataset.Elements {
		if e.Tag > tag.PixelData {
			trailing.Elements = append(trailing.Elements, e)
		}
	}
	if len(trailing.Elements) == 0 {
		return nil, nil
	}
	// Values after the pixel data were read by the scanner with its
	// default limits; hold them for writing.
	for i := range trailing.Elements {
		if b := trailing.Elements[i].Binary; b != nil && b.Data == nil && b.Length > 0 {
			if b.Offset < hw.heldFrom || b.Offset+b.Length > hw.heldFrom+int64(len(hw.buf)) {
				return nil, fmt.Errorf("%w: %v after Pixel Data is too large", ErrUnsupported, trailing.Elements[i].Tag)
			}
			b.Data = append([]byte(nil), hw.buf[b.Offset-hw.heldFrom:b.Offset-hw.heldFrom+b.Length]...)
			swapBigEndian(ts, trailing.Elements[i].VR, b.Data)
		}
	}
	return trailing, nil
}

// swapBigEndian turns a big endian binary value into the little endian
// form dicom.Dataset holds.
func swapBigEndian(ts uid.TransferSyntax, vr string, v []byte) {
	if !ts.BigEndian {
		return
	}
	size := map[string]int{"OW": 2, "OF": 4, "OL": 4, "OD": 8, "OV": 8}[vr]
	for i := 0; size > 1 && i+size <= len(v); i += size {
		for a, b := i, i+size-1; a < b; a, b = a+1, b-1 {
			v[a], v[b] = v[b], v[a]
		}
	}
}

// holdWriter passes bytes to dst after skipping the first skip bytes,
// holding back the last hold bytes until finish says how many belong to
// the pixel data.
type holdWriter struct {
	dst      io.Writer
	skip     int64
	hold     int
	buf      []byte
	heldFrom int64 // stream offset of buf[0]
	pos      int64 // stream offset after the last byte written to hw
}

func (w *holdWriter) Write(p []byte) (int, error) {
	n := len(p)
	start := w.pos
	w.pos += int64(n)
	if start+int64(n) <= w.skip {
		return n, nil
	}
	if start < w.skip {
		p = p[w.skip-start:]
		start = w.skip
	}
	if len(w.buf) == 0 {
		w.heldFrom = start
	}
	w.buf = append(w.buf, p...)
	if over := len(w.buf) - w.hold; over > 0 {
		if _, err := w.dst.Write(w.buf[:over]); err != nil {
			return 0, err
		}
		w.buf = append(w.buf[:0], w.buf[over:]...)
		w.heldFrom += int64(over)
	}
	return n, nil
}

// finish writes the held bytes up to end, the end of the pixel data; the
// rest stays in buf for the trailing elements.
func (w *holdWriter) finish(end int64) error {
	if end < w.heldFrom {
		return fmt.Errorf("%w: more than %d bytes after Pixel Data", ErrUnsupported, w.hold)
	}
	n := end - w.heldFrom
	if n > int64(len(w.buf)) {
		return fmt.Errorf("deid: the data set ends inside Pixel Data")
	}
	if _, err := w.dst.Write(w.buf[:n]); err != nil {
		return err
	}
	return nil
}

// charsetOf returns the character set to write a header in: its own if
// dicom can encode it, or UTF-8, into which every character set decodes.
func charsetOf(ds *dicom.Dataset) string {
	switch cs := ds.String(tag.SpecificCharacterSet); cs {
	case "", dicom.CharsetDefault, dicom.CharsetLatin1, dicom.CharsetUTF8:
		return cs
	}
	return dicom.CharsetUTF8
}

// encode writes ds in the header encoding of ts: the syntax itself for
// the native ones, explicit VR little endian for the encapsulated ones.
// Text that the character set cannot hold is written in UTF-8 instead.
func encode(w io.Writer, ds *dicom.Dataset, ts uid.TransferSyntax, charset string) error {
	hts := ts
	if ts.Encapsulated || !dicom.Transcodable(ts.UID) {
		hts, _ = uid.LookupTransferSyntax(uid.ExplicitVRLittleEndian)
	}
	var buf bytes.Buffer
	err := ds.Encode(&buf, hts, dicom.EncodeOptions{CharacterSet: charset})
	if err != nil && charset != dicom.CharsetUTF8 {
		buf.Reset()
		err = ds.Encode(&buf, hts, dicom.EncodeOptions{CharacterSet: dicom.CharsetUTF8})
	}
	if err != nil {
		return fmt.Errorf("deid: encode: %w", err)
	}
	_, err = w.Write(buf.Bytes())
	return err
}
