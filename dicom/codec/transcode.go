package codec

import (
	"bufio"
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"runtime"
	"strconv"
	"strings"
	"sync"

	"github.com/pacsd/pacsd/dicom"
	"github.com/pacsd/pacsd/dicom/tag"
	"github.com/pacsd/pacsd/dicom/uid"
)

// TranscodeOptions adjust what Transcode writes besides the pixel data.
type TranscodeOptions struct {
	// SOPInstanceUID, when set, replaces the SOP Instance UID (0008,0018)
	// of the data set. A lossy copy of an image that was not lossy is a
	// new instance (PS3.3 C.7.6.1.1.5): the caller makes the UID and
	// writes it in File Meta Information too.
	SOPInstanceUID string
}

// Result tells what Transcode wrote.
type Result struct {
	// Frames is the number of frames converted; 0 when the data set has
	// no pixel data or its pixel data was copied unchanged.
	Frames int
	// Lossy reports that this conversion compressed the pixels lossily;
	// the Lossy Image Compression attributes then say so, with Ratio
	// (native size over compressed size, from the first frame) and the
	// codec's method appended.
	Lossy bool
	Ratio float64
}

// Transcode copies a data set (without File Meta Information) from src,
// encoded in transfer syntax from, to dst in transfer syntax to, one
// frame at a time: memory holds one frame compressed and decoded, and
// the header elements from (0028,2110) to the pixel data while the first
// lossy frame sets the compression ratio (at most 16 MiB, else the
// ratio is left out), whatever the size of the data set.
//
// Header elements are passed through, except those that describe the
// pixels and change with their encoding: Photometric Interpretation
// (decoders return RGB from YBR_FULL_422 JPEG and from YBR_ICT/YBR_RCT
// JPEG 2000; colour encoders write YBR_FULL_422, YBR_RCT or YBR_ICT),
// Planar Configuration (0 for colour), the Extended Offset Table (left
// out), group lengths (left out, as dicom.Transcode does), and for lossy
// output Lossy Image Compression (0028,2110) "01" with the ratio and
// method appended to (0028,2112) and (0028,2114), as PS3.5 §8.2 and
// PS3.3 C.7.6.1.1.5 require. Encapsulated pixel data is written with an
// empty Basic Offset Table and one fragment a frame, which PS3.5 A.4
// allows for every syntax and requires for RLE.
//
// Between the uncompressed syntaxes it is dicom.Transcode; between a
// syntax and itself it copies src. A transfer syntax without a codec is
// ErrUnsupported, as are pixels a codec cannot encode (lossy JPEG of
// signed pixels, for instance); the latter is found at the pixel data,
// when dst has received the header.
func (r *Registry) Transcode(ctx context.Context, dst io.Writer, src io.Reader, from, to string, opts TranscodeOptions) (Result, error) {
	fts, ok1 := uid.LookupTransferSyntax(from)
	tts, ok2 := uid.LookupTransferSyntax(to)
	if !ok1 || !ok2 {
		return Result{}, fmt.Errorf("%w: transcoding from %s to %s", ErrUnsupported, uid.Name(from), uid.Name(to))
	}
	var dec, enc Codec
	if !dicom.Transcodable(from) {
		if dec, ok1 = r.Lookup(from); !ok1 {
			return Result{}, fmt.Errorf("%w: decoding %s", ErrUnsupported, uid.Name(from))
		}
	}
	if !dicom.Transcodable(to) {
		if enc, ok2 = r.Lookup(to); !ok2 {
			return Result{}, fmt.Errorf("%w: encoding %s", ErrUnsupported, uid.Name(to))
		}
	}
	if from == to && opts.SOPInstanceUID == "" {
		_, err := io.Copy(dst, src)
		return Result{}, err
	}
	if dec == nil && enc == nil && opts.SOPInstanceUID == "" {
		return Result{}, dicom.Transcode(dst, src, fts, tts)
	}
	explicit, _ := uid.LookupTransferSyntax(uid.ExplicitVRLittleEndian)

	// The recoder reads and writes explicit VR little endian; the other
	// uncompressed syntaxes are converted to and from it on the way.
	in := src
	var wait []chan error
	if dec != nil {
		br := bufio.NewReaderSize(src, 64<<10)
		in = br
		if implicitHeader(br) {
			// A compressed data set written in implicit VR, as some
			// writers do: its header is made explicit on the way.
			pr, pw := io.Pipe()
			done := make(chan error, 1)
			go func() {
				err := dicom.TranscodeHeader(pw, br, explicit, explicit)
				pw.CloseWithError(err)
				done <- err
			}()
			defer func() { pr.CloseWithError(errStopped); <-done }()
			in = pr
		}
	}
	if dec == nil && from != uid.ExplicitVRLittleEndian {
		pr, pw := io.Pipe()
		done := make(chan error, 1)
		go func() {
			err := dicom.Transcode(pw, src, fts, explicit)
			pw.CloseWithError(err)
			done <- err
		}()
		defer func() { pr.CloseWithError(errStopped); <-done }()
		in = pr
	}
	out := dst
	var outPipe *io.PipeWriter
	if enc == nil && to != uid.ExplicitVRLittleEndian {
		pr, pw := io.Pipe()
		done := make(chan error, 1)
		go func() {
			err := dicom.Transcode(dst, pr, explicit, tts)
			pr.CloseWithError(err)
			done <- err
		}()
		wait = append(wait, done)
		out, outPipe = pw, pw
	}
	rc := &recoder{
		ctx: ctx, reg: r, dec: dec, enc: enc, opts: opts,
		r: bufio.NewReaderSize(in, 64<<10), w: bufio.NewWriterSize(out, 64<<10),
	}
	res, err := rc.run()
	if err == nil {
		err = rc.w.Flush()
	}
	if outPipe != nil {
		outPipe.CloseWithError(err)
		for _, c := range wait {
			if e := <-c; err == nil {
				err = e
			}
		}
	}
	return res, err
}

var errStopped = errors.New("codec: transcoding stopped")

// implicitHeader reports whether a data set said to be in an explicit VR
// syntax starts with an element in implicit VR: where the VR belongs
// there is no pair of upper-case letters.
func implicitHeader(br *bufio.Reader) bool {
	b, err := br.Peek(6)
	if err != nil {
		return false
	}
	return b[4] < 'A' || b[4] > 'Z' || b[5] < 'A' || b[5] > 'Z'
}

// recoder converts an explicit VR little endian data set, recoding its
// pixel data.
type recoder struct {
	ctx      context.Context
	reg      *Registry
	dec, enc Codec
	opts     TranscodeOptions
	r        *bufio.Reader
	pos      int64
	w        *bufio.Writer
	held     *bytes.Buffer // output held back until the lossy ratio is known
	heldOver bool          // the held output outgrew its limit
	ended    bool          // the fragments' sequence delimiter has been read

	// What the header says of the pixels.
	im        Image
	frames    int
	lossyOrig map[tag.Tag][]byte
	done      map[tag.Tag]bool
	res       Result
}

// maxHeld bounds the header held back for the lossy compression ratio.
const maxHeld = 16 << 20

func (c *recoder) out() io.Writer {
	if c.held != nil && !c.heldOver {
		return c.held
	}
	return c.w
}

func (c *recoder) read(n int) ([]byte, error) {
	b := make([]byte, n)
	m, err := io.ReadFull(c.r, b)
	c.pos += int64(m)
	if err != nil {
		if errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF) {
			return nil, fmt.Errorf("%w: data set ends at offset %d inside an element", dicom.ErrMalformed, c.pos)
		}
		return nil, err
	}
	return b, nil
}

// header reads an explicit VR little endian element header, or an item
// or delimiter header, and returns it with its encoded bytes.
func (c *recoder) header(explicit bool) (tag.Tag, string, uint32, []byte, error) {
	b, err := c.read(8)
	if err != nil {
		return 0, "", 0, nil, err
	}
	t := tag.New(binary.LittleEndian.Uint16(b), binary.LittleEndian.Uint16(b[2:]))
	if t.Group() == 0xFFFE || !explicit {
		return t, "", binary.LittleEndian.Uint32(b[4:]), b, nil
	}
	vr := string(b[4:6])
	if vr[0] < 'A' || vr[0] > 'Z' || vr[1] < 'A' || vr[1] > 'Z' {
		return 0, "", 0, nil, fmt.Errorf("%w: element %v at offset %d has VR %q", dicom.ErrMalformed, t, c.pos-8, vr)
	}
	if longVR(vr) {
		l, err := c.read(4)
		if err != nil {
			return 0, "", 0, nil, err
		}
		return t, vr, binary.LittleEndian.Uint32(l), append(b, l...), nil
	}
	return t, vr, uint32(binary.LittleEndian.Uint16(b[6:])), b, nil
}

func longVR(vr string) bool {
	switch vr {
	case "OB", "OD", "OF", "OL", "OV", "OW", "SQ", "UC", "UN", "UR", "UT", "SV", "UV":
		return true
	}
	return false
}

// copyN copies n bytes of value to the output.
func (c *recoder) copyN(n int64) error {
	m, err := io.CopyN(c.out(), c.r, n)
	c.pos += m
	if errors.Is(err, io.EOF) {
		return fmt.Errorf("%w: data set ends at offset %d inside a value", dicom.ErrMalformed, c.pos)
	}
	c.checkHeld()
	return err
}

func (c *recoder) discard(n int64) error {
	m, err := io.CopyN(io.Discard, c.r, n)
	c.pos += m
	if errors.Is(err, io.EOF) {
		return fmt.Errorf("%w: data set ends at offset %d inside a value", dicom.ErrMalformed, c.pos)
	}
	return err
}

// checkHeld gives up holding output back when it grows too large: the
// ratio is then left out.
func (c *recoder) checkHeld() {
	if c.held != nil && !c.heldOver && c.held.Len() > maxHeld {
		c.heldOver = true
		c.writeLossy(0)
		c.w.Write(c.held.Bytes())
		c.held = nil
	}
}

// copyUndefined copies the items of a sequence of undefined length (or
// an encapsulated value) up to and including its delimiter. Items of a
// sequence sent as UN are implicit VR (PS3.5 §6.2.2).
func (c *recoder) copyUndefined(explicit bool, depth int) error {
	if depth > 64 {
		return fmt.Errorf("%w: sequences nested deeper than 64 at offset %d", dicom.ErrMalformed, c.pos)
	}
	for {
		t, _, n, h, err := c.header(explicit)
		if err != nil {
			return err
		}
		if _, err := c.out().Write(h); err != nil {
			return err
		}
		switch {
		case t == tag.SequenceDelimitationItem:
			return nil
		case t != tag.Item:
			return fmt.Errorf("%w: %v where an item belongs at offset %d", dicom.ErrMalformed, t, c.pos-8)
		case n != 0xFFFFFFFF:
			if err := c.copyN(int64(n)); err != nil {
				return err
			}
			continue
		}
		if err := c.copyItem(explicit, depth); err != nil {
			return err
		}
	}
}

// copyItem copies the elements of an item of undefined length and its
// delimiter.
func (c *recoder) copyItem(explicit bool, depth int) error {
	for {
		t, vr, n, h, err := c.header(explicit)
		if err != nil {
			return err
		}
		if _, err := c.out().Write(h); err != nil {
			return err
		}
		if t == tag.ItemDelimitationItem {
			return nil
		}
		if n == 0xFFFFFFFF {
			if err := c.copyUndefined(explicit && vr != "UN", depth+1); err != nil {
				return err
			}
			continue
		}
		if err := c.copyN(int64(n)); err != nil {
			return err
		}
	}
}

// pixelTags are the top-level attributes whose values the recoder reads.
func pixelTag(t tag.Tag) bool {
	switch t {
	case tag.SamplesPerPixel, tag.PhotometricInterpretation, tag.PlanarConfiguration, tag.NumberOfFrames,
		tag.Rows, tag.Columns, tag.BitsAllocated, tag.BitsStored, tag.PixelRepresentation:
		return true
	}
	return false
}

func (c *recoder) capture(t tag.Tag, v []byte) {
	u16 := 0
	if len(v) >= 2 {
		u16 = int(binary.LittleEndian.Uint16(v))
	}
	text := strings.TrimRight(string(v), " \x00")
	switch t {
	case tag.SamplesPerPixel:
		c.im.SamplesPerPixel = u16
	case tag.PhotometricInterpretation:
		c.im.PhotometricInterpretation = strings.TrimSpace(text)
	case tag.PlanarConfiguration:
		c.im.PlanarConfiguration = u16
	case tag.NumberOfFrames:
		c.frames, _ = strconv.Atoi(strings.TrimSpace(text))
	case tag.Rows:
		c.im.Rows = u16
	case tag.Columns:
		c.im.Columns = u16
	case tag.BitsAllocated:
		c.im.BitsAllocated = u16
	case tag.BitsStored:
		c.im.BitsStored = u16
	case tag.PixelRepresentation:
		c.im.PixelRepresentation = u16
	}
}

// outImage is the description of the pixels as written.
func (c *recoder) outImage() Image {
	im := c.im
	if im.SamplesPerPixel == 0 {
		im.SamplesPerPixel = 1
	}
	if c.dec != nil {
		im = decodedImage(c.dec, im)
	}
	if c.enc != nil {
		im = encodedImage(c.enc, im)
	}
	return im
}

// decodedImage predicts the description Decode returns.
func decodedImage(c Codec, im Image) Image {
	im.PlanarConfiguration = 0
	switch c.(type) {
	case jpegCodec:
		if p := im.Photometric(); p == YBRFull || p == YBRFull422 {
			im.PhotometricInterpretation = RGB
		}
	case j2kCodec, htj2kCodec:
		return j2kOut(im)
	}
	return im
}

// encodedImage predicts the description Encode returns.
func encodedImage(c Codec, im Image) Image {
	im.PlanarConfiguration = 0
	switch c.(type) {
	case jpegCodec:
		if im.SamplesPerPixel == 3 {
			im.PhotometricInterpretation = YBRFull422
		}
	case j2kCodec, htj2kCodec:
		return j2kEncoded(im, im.SamplesPerPixel == 3 && im.Photometric() == RGB, c.Lossy())
	}
	return im
}

func (c *recoder) lossy() bool { return c.enc != nil && c.enc.Lossy() }

// replaced reports whether the recoder writes its own value of t.
func (c *recoder) replaced(t tag.Tag) bool {
	switch t {
	case tag.SOPInstanceUID:
		return c.opts.SOPInstanceUID != ""
	case tag.PhotometricInterpretation:
		return true
	case tag.PlanarConfiguration:
		return c.im.SamplesPerPixel == 3
	case tag.LossyImageCompression, tag.LossyImageCompressionRatio, tag.LossyImageCompressionMethod:
		return c.lossy()
	}
	return false
}

// insertions are the elements the recoder may add, in tag order.
var insertions = [...]tag.Tag{tag.SOPInstanceUID, tag.PhotometricInterpretation, tag.PlanarConfiguration, tag.LossyImageCompression}

// before writes the elements the recoder adds or replaces whose tags
// precede next (or equal it, when it replaces next).
func (c *recoder) before(next tag.Tag) error {
	for _, t := range insertions {
		if t > next || c.done[t] {
			continue
		}
		c.done[t] = true
		switch t {
		case tag.SOPInstanceUID:
			if c.opts.SOPInstanceUID != "" {
				c.element(t, "UI", []byte(c.opts.SOPInstanceUID))
			}
		case tag.PhotometricInterpretation:
			if c.im.PhotometricInterpretation != "" {
				c.element(t, "CS", []byte(c.outImage().PhotometricInterpretation))
			}
		case tag.PlanarConfiguration:
			if c.im.SamplesPerPixel == 3 {
				c.element(t, "US", []byte{0, 0})
			}
		case tag.LossyImageCompression:
			if c.lossy() && c.held == nil {
				// The ratio is known once the first frame is encoded;
				// what follows waits for it.
				c.held = &bytes.Buffer{}
			}
		}
	}
	return nil
}

// element writes one explicit VR little endian element, padding its value.
func (c *recoder) element(t tag.Tag, vr string, v []byte) {
	if len(v)%2 == 1 {
		pad := byte(' ')
		if vr == "UI" {
			pad = 0
		}
		v = append(v, pad)
	}
	var h []byte
	h = binary.LittleEndian.AppendUint16(h, t.Group())
	h = binary.LittleEndian.AppendUint16(h, t.Element())
	h = append(h, vr...)
	if longVR(vr) {
		h = append(h, 0, 0)
		h = binary.LittleEndian.AppendUint32(h, uint32(len(v)))
	} else {
		h = binary.LittleEndian.AppendUint16(h, uint16(len(v)))
	}
	w := c.out()
	w.Write(h)
	w.Write(v)
}

// writeLossy writes the Lossy Image Compression attributes (to the
// output proper, before anything held back), appending ratio (0: left
// out) and the codec's method to the values the data set had.
func (c *recoder) writeLossy(ratio float64) {
	held := c.held
	c.held = nil
	c.element(tag.LossyImageCompression, "CS", []byte("01"))
	if ratio > 0 {
		c.element(tag.LossyImageCompressionRatio, "DS", []byte(appendValue(c.lossyOrig[tag.LossyImageCompressionRatio], formatDS(ratio))))
	} else if v, ok := c.lossyOrig[tag.LossyImageCompressionRatio]; ok {
		c.element(tag.LossyImageCompressionRatio, "DS", v)
	}
	c.element(tag.LossyImageCompressionMethod, "CS", []byte(appendValue(c.lossyOrig[tag.LossyImageCompressionMethod], c.enc.Method())))
	c.held = held
}

func appendValue(orig []byte, v string) string {
	s := strings.TrimRight(string(orig), " \x00")
	if s == "" {
		return v
	}
	return s + `\` + v
}

// formatDS formats a ratio as a Decimal String of at most 16 characters.
func formatDS(v float64) string {
	return strconv.FormatFloat(v, 'f', 2, 64)
}

// flushHeld writes the lossy attributes and the output held back.
func (c *recoder) flushHeld(ratio float64) error {
	if c.held == nil || c.heldOver {
		return nil
	}
	held := c.held
	c.writeLossy(ratio)
	c.held = nil
	_, err := c.w.Write(held.Bytes())
	return err
}

func (c *recoder) run() (Result, error) {
	c.done = map[tag.Tag]bool{}
	c.lossyOrig = map[tag.Tag][]byte{}
	c.res.Lossy = c.lossy()
	for {
		if _, err := c.r.Peek(1); err != nil {
			if errors.Is(err, io.EOF) {
				break
			}
			return c.res, err
		}
		at := c.pos
		t, vr, n, h, err := c.header(true)
		if err != nil {
			return c.res, err
		}
		if t.Group() == 0xFFFE {
			return c.res, fmt.Errorf("%w: %v outside a sequence at offset %d", dicom.ErrMalformed, t, at)
		}
		lossyTag := t == tag.LossyImageCompression || t == tag.LossyImageCompressionRatio || t == tag.LossyImageCompressionMethod
		captured := n != 0xFFFFFFFF && (pixelTag(t) || (lossyTag && c.lossy()) || (t == tag.SOPInstanceUID && c.replaced(t)))
		var v []byte
		if captured {
			// Read first: what replaces it may depend on it.
			if n > 1024 {
				return c.res, fmt.Errorf("%w: element %v of %d bytes", dicom.ErrMalformed, t, n)
			}
			if v, err = c.read(int(n)); err != nil {
				return c.res, err
			}
			c.capture(t, v)
			if lossyTag {
				c.lossyOrig[t] = v
			}
		}
		if err := c.before(t); err != nil {
			return c.res, err
		}
		switch {
		case captured:
			if !c.replaced(t) {
				if _, err := c.out().Write(h); err != nil {
					return c.res, err
				}
				if _, err := c.out().Write(v); err != nil {
					return c.res, err
				}
			}
			continue
		case t == tag.PixelData:
			if err := c.pixelData(vr, n); err != nil {
				return c.res, err
			}
			continue
		case t == tag.ExtendedOffsetTable || t == tag.ExtendedOffsetTableLengths,
			t.Element() == 0 && t.Group() != 0:
			if n == 0xFFFFFFFF {
				return c.res, fmt.Errorf("%w: element %v of undefined length", dicom.ErrMalformed, t)
			}
			if err := c.discard(int64(n)); err != nil {
				return c.res, err
			}
			continue
		}
		if n == 0xFFFFFFFF {
			if vr != "SQ" && vr != "UN" {
				return c.res, fmt.Errorf("%w: element %v (%s) at offset %d of undefined length", dicom.ErrMalformed, t, vr, at)
			}
			if _, err := c.out().Write(h); err != nil {
				return c.res, err
			}
			if err := c.copyUndefined(vr == "SQ", 0); err != nil {
				return c.res, err
			}
			continue
		}
		if _, err := c.out().Write(h); err != nil {
			return c.res, err
		}
		if err := c.copyN(int64(n)); err != nil {
			return c.res, err
		}
	}
	if err := c.before(0xFFFFFFFF); err != nil {
		return c.res, err
	}
	return c.res, c.flushHeld(0)
}

// pixelData converts the Pixel Data element whose header has been read.
func (c *recoder) pixelData(vr string, n uint32) (err error) {
	in := c.im
	if in.SamplesPerPixel == 0 {
		in.SamplesPerPixel = 1
	}
	if in.BitsStored == 0 {
		in.BitsStored = in.BitsAllocated
	}
	c.im = in
	// Each codec checks what it can take; 32 bits are RLE's alone.
	if err := in.checkBits(c.reg.opts.Limits, 8, 16, 32); err != nil {
		return err
	}
	frames := max(c.frames, 1)
	out := c.outImage()
	encapsulated := n == 0xFFFFFFFF
	if encapsulated != (c.dec != nil) {
		return fmt.Errorf("%w: pixel data is %s in a %s transfer syntax", dicom.ErrMalformed,
			map[bool]string{true: "encapsulated", false: "native"}[encapsulated], map[bool]string{true: "compressed", false: "native"}[c.dec != nil])
	}
	workers := frameWorkers(frames, in)
	var next func() ([]byte, error)
	if encapsulated {
		fr, err := c.fragments(in, frames)
		if err != nil {
			return err
		}
		next = fr
	} else {
		size := in.FrameSize()
		if int64(n) < size*int64(frames) {
			return fmt.Errorf("%w: %d bytes of pixel data for %d frames of %d bytes", dicom.ErrMalformed, n, frames, size)
		}
		var buf []byte
		left := int64(n)
		next = func() ([]byte, error) {
			if buf == nil || workers > 1 {
				// Frames converted in parallel each need their own.
				buf = make([]byte, size)
			}
			m, err := io.ReadFull(c.r, buf)
			c.pos += int64(m)
			left -= int64(m)
			if err != nil {
				return nil, fmt.Errorf("%w: pixel data ends inside a frame", dicom.ErrMalformed)
			}
			return buf, nil
		}
		defer func() {
			// The padding after the last frame; after a failure, which
			// ends the conversion, nothing more is read.
			if err == nil && left > 0 {
				err = c.discard(left)
			}
		}()
	}

	// The Pixel Data header of the output.
	if c.enc != nil {
		c.pixelHeader("OB", 0xFFFFFFFF)
		c.item(nil) // an empty Basic Offset Table
	} else {
		size := out.FrameSize() * int64(frames)
		if size > 0xFFFFFFFE {
			return fmt.Errorf("%w: %d bytes of native pixel data do not fit one element", ErrTooLarge, size)
		}
		ovr := "OW"
		if out.BitsAllocated <= 8 {
			ovr = "OB"
		}
		c.pixelHeader(ovr, uint32(size+size%2))
	}
	write := func(f int, fo frameOut) error {
		if c.enc == nil {
			if fo.im.Photometric() != out.Photometric() || int64(len(fo.data)) != out.FrameSize() {
				return fmt.Errorf("codec: frame %d decoded as %s of %d bytes, not %s of %d", f+1, fo.im.PhotometricInterpretation, len(fo.data), out.PhotometricInterpretation, out.FrameSize())
			}
			_, err := c.out().Write(fo.data)
			return err
		}
		if fo.im.Photometric() != out.Photometric() {
			return fmt.Errorf("codec: frame %d encoded as %s, not %s", f+1, fo.im.PhotometricInterpretation, out.PhotometricInterpretation)
		}
		if f == 0 && c.held != nil {
			c.res.Ratio = float64(fo.nativeSize) / float64(len(fo.data))
			if err := c.flushHeld(c.res.Ratio); err != nil {
				return err
			}
		}
		return c.item(fo.data)
	}
	if workers > 1 {
		err = c.convertParallel(frames, workers, in, next, write)
	} else {
		var s scratch
		for f := range frames {
			if err = c.ctx.Err(); err != nil {
				break
			}
			var frame []byte
			if frame, err = next(); err != nil {
				err = fmt.Errorf("frame %d: %w", f+1, err)
				break
			}
			var fo frameOut
			if fo, err = c.convertFrame(frame, in, &s); err != nil {
				err = fmt.Errorf("frame %d: %w", f+1, err)
				break
			}
			if err = write(f, fo); err != nil {
				break
			}
		}
	}
	if err != nil {
		return err
	}
	if c.enc != nil {
		c.w.Write([]byte{0xFE, 0xFF, 0xDD, 0xE0, 0, 0, 0, 0})
	} else if out.FrameSize()*int64(frames)%2 == 1 {
		c.out().Write([]byte{0})
	}
	if encapsulated && !c.ended {
		// Whatever follows the frames up to the sequence delimiter.
		if err := c.skipFragments(); err != nil {
			return err
		}
	}
	c.res.Frames = frames
	return nil
}

// frameOut is a frame converted: a native frame or a code stream, what
// describes it, and the size of the native frame it came from or was.
type frameOut struct {
	data       []byte
	im         Image
	nativeSize int64
}

// scratch holds the buffers a sequence of conversions reuses.
type scratch struct{ native, encoded []byte }

// convertFrame decodes and encodes one frame, of an image described by
// in, as the recoder's codecs say.
func (c *recoder) convertFrame(frame []byte, in Image, s *scratch) (frameOut, error) {
	im := in
	if c.dec != nil {
		native, dim, err := c.dec.Decode(s.native, frame, in)
		if err != nil {
			return frameOut{}, err
		}
		s.native, frame, im = native, native, dim
	}
	if c.enc == nil {
		return frameOut{data: frame, im: im, nativeSize: int64(len(frame))}, nil
	}
	encoded, eim, err := c.enc.Encode(s.encoded[:0], frame, im)
	if err != nil {
		return frameOut{}, err
	}
	s.encoded = encoded
	return frameOut{data: encoded, im: eim, nativeSize: im.FrameSize()}, nil
}

// frameBudget bounds the memory of the frames converted in parallel.
const frameBudget = 64 << 20

// frameWorkers is how many frames of an image are converted at once: as
// many as there are CPUs, up to 4, while they fit frameBudget (a frame in
// flight holds its code stream, its native pixels and maybe a new code
// stream); one for a single frame.
func frameWorkers(frames int, im Image) int {
	if frames < 2 {
		return 1
	}
	fit := frameBudget / max(3*im.FrameSize(), 1)
	return int(max(min(int64(runtime.GOMAXPROCS(0)), 4, fit), 1))
}

// convertParallel converts frames with workers goroutines, reading them
// with next in one and writing them in order with write in the calling
// one. At most 2 × workers frames are in flight.
func (c *recoder) convertParallel(frames, workers int, in Image, next func() ([]byte, error), write func(int, frameOut) error) error {
	type job struct {
		f     int
		frame []byte
		out   frameOut
		err   error
		ready chan struct{}
	}
	jobs := make(chan *job)
	order := make(chan *job, workers)
	stop := make(chan struct{})
	read := make(chan struct{})
	go func() {
		defer close(read)
		defer close(jobs)
		defer close(order)
		for f := range frames {
			j := &job{f: f, ready: make(chan struct{})}
			frame, err := next()
			if err != nil {
				j.err = fmt.Errorf("frame %d: %w", f+1, err)
				close(j.ready)
			}
			select {
			case order <- j:
			case <-stop:
				return
			}
			if err != nil {
				return
			}
			j.frame = frame
			select {
			case jobs <- j:
			case <-stop:
				return
			}
		}
	}()
	var wg sync.WaitGroup
	for range workers {
		wg.Go(func() {
			var s scratch
			for j := range jobs {
				// Each frame keeps its own output until it is written.
				s = scratch{}
				if j.out, j.err = c.convertFrame(j.frame, in, &s); j.err != nil {
					j.err = fmt.Errorf("frame %d: %w", j.f+1, j.err)
				}
				j.frame = nil
				close(j.ready)
			}
		})
	}
	var err error
	for j := range order {
		if err = c.ctx.Err(); err != nil {
			break
		}
		<-j.ready
		if err = j.err; err != nil {
			break
		}
		if err = write(j.f, j.out); err != nil {
			break
		}
	}
	close(stop)
	for range order {
		// What was read ahead is dropped.
	}
	wg.Wait()
	<-read
	return err
}

func (c *recoder) pixelHeader(vr string, n uint32) {
	h := []byte{0xE0, 0x7F, 0x10, 0x00, vr[0], vr[1], 0, 0}
	c.out().Write(binary.LittleEndian.AppendUint32(h, n))
}

// item writes one fragment, padded to an even length.
func (c *recoder) item(v []byte) error {
	n := len(v) + len(v)%2
	h := binary.LittleEndian.AppendUint32([]byte{0xFE, 0xFF, 0x00, 0xE0}, uint32(n))
	w := c.out()
	if _, err := w.Write(h); err != nil {
		return err
	}
	if _, err := w.Write(v); err != nil {
		return err
	}
	if len(v)%2 == 1 {
		_, err := w.Write([]byte{0})
		return err
	}
	return nil
}

// fragments returns a function that returns the code stream of each
// frame in turn, read from the fragments of encapsulated pixel data: by
// the Basic Offset Table when it has one offset a frame, else all of
// them for a single frame, one a frame for RLE, and otherwise a new
// frame at each fragment that starts a code stream.
func (c *recoder) fragments(im Image, frames int) (func() ([]byte, error), error) {
	t, _, n, _, err := c.header(true)
	if err != nil {
		return nil, err
	}
	if t != tag.Item {
		return nil, fmt.Errorf("%w: pixel data starts with %v, not the Basic Offset Table", dicom.ErrMalformed, t)
	}
	if n%4 != 0 || n > 4*uint32(frames) {
		return nil, fmt.Errorf("%w: Basic Offset Table of %d bytes for %d frames", dicom.ErrMalformed, n, frames)
	}
	bot, err := c.read(int(n))
	if err != nil {
		return nil, err
	}
	var offsets []int64
	if int(n) == 4*frames && frames > 1 {
		for i := range frames {
			offsets = append(offsets, int64(binary.LittleEndian.Uint32(bot[4*i:])))
		}
	}
	maxFrame := 2*im.FrameSize() + 1<<20
	var at int64 // offset of the next fragment from the first
	frame := 0
	readFragment := func() ([]byte, error) {
		t, _, n, _, err := c.header(true)
		if err != nil {
			return nil, err
		}
		if t == tag.SequenceDelimitationItem {
			c.ended = true
			return nil, nil
		}
		if t != tag.Item || int64(n) > maxFrame {
			return nil, fmt.Errorf("%w: fragment %v of %d bytes", dicom.ErrMalformed, t, n)
		}
		at += 8 + int64(n)
		return c.read(int(n))
	}
	return func() ([]byte, error) {
		var buf []byte
		for !c.ended {
			start := at
			if buf != nil {
				switch {
				case offsets != nil:
					if frame+1 < frames && start >= offsets[frame+1] {
						goto done
					}
				case frames == 1:
				case c.dec == (rleCodec{lim: c.reg.opts.Limits}):
					goto done
				default:
					if b, err := c.r.Peek(12); err == nil && binary.LittleEndian.Uint32(b) == 0xE000FFFE && startsCodeStream(b[8:]) {
						goto done
					}
				}
			}
			{
				b, err := readFragment()
				if err != nil {
					return nil, err
				}
				if b == nil && c.ended {
					break
				}
				if int64(len(buf)+len(b)) > maxFrame {
					return nil, fmt.Errorf("%w: a frame of more than %d bytes", dicom.ErrMalformed, maxFrame)
				}
				if buf == nil {
					buf = b
				} else {
					buf = append(buf, b...)
				}
			}
		}
	done:
		frame++
		if buf == nil {
			return nil, fmt.Errorf("%w: fewer fragments than frames", dicom.ErrMalformed)
		}
		return buf, nil
	}, nil
}

// startsCodeStream reports whether b starts a JPEG, JPEG-LS or JPEG 2000
// code stream.
func startsCodeStream(b []byte) bool {
	return len(b) >= 4 && b[0] == 0xFF && (b[1] == 0xD8 || (b[1] == 0x4F && b[2] == 0xFF && b[3] == 0x51)) ||
		len(b) >= 4 && b[0] == 0 && b[1] == 0 && b[2] == 0 && b[3] == 0x0C // a JP2 signature box
}

// skipFragments discards what is left of encapsulated pixel data.
func (c *recoder) skipFragments() error {
	for {
		b, err := c.r.Peek(1)
		if len(b) == 0 {
			if errors.Is(err, io.EOF) {
				return fmt.Errorf("%w: encapsulated pixel data without its delimiter", dicom.ErrMalformed)
			}
			return err
		}
		t, _, n, _, err := c.header(true)
		if err != nil {
			return err
		}
		if t == tag.SequenceDelimitationItem {
			return nil
		}
		if t != tag.Item {
			return fmt.Errorf("%w: %v among fragments", dicom.ErrMalformed, t)
		}
		if err := c.discard(int64(n)); err != nil {
			return err
		}
	}
}
