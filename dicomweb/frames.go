package dicomweb

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"net/http"
	"strconv"
	"strings"

	"github.com/labstack/echo/v4"

	"github.com/pacsd/pacsd/archive"
	"github.com/pacsd/pacsd/dicom"
	"github.com/pacsd/pacsd/dicom/codec"
	"github.com/pacsd/pacsd/dicom/render"
	"github.com/pacsd/pacsd/dicom/tag"
	"github.com/pacsd/pacsd/dicom/uid"
	"github.com/pacsd/pacsd/index"
	"github.com/pacsd/pacsd/storage"
)

// frameMediaTypes are the media types of encapsulated frames by transfer
// syntax (PS3.18 Table 8.7.3-2).
var frameMediaTypes = map[string]string{
	"1.2.840.10008.1.2.4.50":  "image/jpeg",
	"1.2.840.10008.1.2.4.51":  "image/jpeg",
	"1.2.840.10008.1.2.4.57":  "image/jpeg",
	"1.2.840.10008.1.2.4.70":  "image/jpeg",
	"1.2.840.10008.1.2.4.80":  "image/jls",
	"1.2.840.10008.1.2.4.81":  "image/jls",
	"1.2.840.10008.1.2.4.90":  "image/jp2",
	"1.2.840.10008.1.2.4.91":  "image/jp2",
	"1.2.840.10008.1.2.4.92":  "image/jpx",
	"1.2.840.10008.1.2.4.93":  "image/jpx",
	"1.2.840.10008.1.2.4.201": "image/jphc",
	"1.2.840.10008.1.2.4.202": "image/jphc",
	"1.2.840.10008.1.2.4.203": "image/jphc",
	"1.2.840.10008.1.2.5":     "image/dicom-rle",
	"1.2.840.10008.1.2.4.100": "video/mpeg",
	"1.2.840.10008.1.2.4.101": "video/mpeg",
	"1.2.840.10008.1.2.4.102": "video/mp4",
	"1.2.840.10008.1.2.4.103": "video/mp4",
	"1.2.840.10008.1.2.4.104": "video/mp4",
	"1.2.840.10008.1.2.4.105": "video/mp4",
	"1.2.840.10008.1.2.4.106": "video/mp4",
	"1.2.840.10008.1.2.4.107": "video/H265",
	"1.2.840.10008.1.2.4.108": "video/H265",
}

// frames answers a WADO-RS frames request: the listed frames of an
// instance's pixel data, each read from storage by its byte ranges, and
// converted one at a time when the client asks for another media type
// or transfer syntax than the stored one.
func (s *Server) frames(c echo.Context) error {
	ins, err := s.instances(c)
	if err != nil {
		return err
	}
	in := ins[0]
	ctx := c.Request().Context()
	md, err := s.Archive.Metadata(ctx, in)
	if err != nil {
		return err
	}
	if len(md.Frames) == 0 {
		return errorf(http.StatusNotFound, "instance %s has no pixel data whose frames pacsd can locate", in.SOPInstanceUID)
	}
	list, err := parseFrameList(c.Param("frames"), len(md.Frames))
	if err != nil {
		return err
	}
	return s.sendFrames(c, in, md, list, false)
}

// sendFrames answers with the listed frames of an instance, as
// negotiated. whole says that the frames are all of them, asked for as
// the bulk data of Pixel Data: as a plain body they are then the frames
// one after the other, which for native frames is the Pixel Data value.
func (s *Server) sendFrames(c echo.Context, in *index.Instance, md *archive.Metadata, list []int, whole bool) error {
	ctx := c.Request().Context()
	ts, _ := uid.LookupTransferSyntax(md.TransferSyntaxUID)
	// Native frames are read as Explicit VR Little Endian bytes: the same
	// bytes for both little endian syntaxes, swapped from big endian.
	storedType, storedSyntax := "application/octet-stream", uid.ExplicitVRLittleEndian
	if ts.Encapsulated {
		storedType, storedSyntax = frameMediaTypes[ts.UID], ts.UID
		if storedType == "" {
			storedType = "application/octet-stream"
		}
	}
	neg, err := s.negotiateFrames(c.Request(), storedType, storedSyntax, len(list) == 1 || whole)
	if err != nil {
		return err
	}
	if neg.single && len(list) > 1 && neg.typ != "application/octet-stream" {
		return errorf(http.StatusNotAcceptable, `the %d frames of the pixel data are %s as multipart/related; type=%q, one part a frame, or as application/octet-stream decompressed`, len(list), neg.typ, neg.typ)
	}
	if ts.Deflated && descents(list) > maxDescents {
		return errorf(http.StatusBadRequest, "frames of a deflated instance are read by inflating it from its start: list them in ascending order (at most %d steps back)", maxDescents)
	}
	var ds *dicom.Dataset
	if ts.BigEndian || neg.syntax != storedSyntax {
		if ds, err = dicom.ParseJSON(md.JSON); err != nil {
			return fmt.Errorf("metadata of %s: %w", in.SOPInstanceUID, err)
		}
	}
	var conv *frameConverter
	if neg.syntax != storedSyntax {
		if conv, err = s.newFrameConverter(ctx, ds, md, list, storedSyntax, neg.syntax); err != nil {
			return err
		}
		defer conv.release()
	}
	obj, err := s.Archive.Open(ctx, in)
	if err != nil {
		return err
	}
	defer obj.Close()
	swap := 1
	if ts.BigEndian {
		if px, ok := ds.Find(tag.PixelData); ok {
			bits, _ := strconv.Atoi(ds.First(tag.BitsAllocated))
			swap = dicom.SwapUnit(tag.PixelData, px.VR, bits)
		}
	}
	// One reader for every frame: a deflated object is inflated once
	// for frames in ascending order.
	src := valueReader(obj, ts)
	contentType := neg.typ + "; transfer-syntax=" + neg.syntax
	parts := make([]part, len(list))
	for i, n := range list {
		parts[i] = part{contentType, frameReader(src, md.Frames[n-1], swap), nil}
	}
	size := md.Frames[list[0]-1].Size()
	if conv != nil {
		// The first frame is converted before the response starts, so
		// that pixels the codec cannot take get a status of their own.
		first, err := conv.convert(parts[0].body, md.Frames[list[0]-1].Size())
		if err != nil {
			return convertError(err, fmt.Sprintf("frame %d of %s", list[0], in.SOPInstanceUID))
		}
		size = int64(len(first))
		parts[0].body = bytes.NewReader(first)
		for i := 1; i < len(parts); i++ {
			parts[i].body = &convertedFrame{conv: conv, src: parts[i].body, size: md.Frames[list[i]-1].Size()}
		}
	}
	if whole && !neg.single && len(parts) > 1 && neg.typ == "application/octet-stream" && neg.syntax == uid.ExplicitVRLittleEndian {
		// Native frames one after the other are the Pixel Data value:
		// one part, as for the bulk data of native pixels.
		rs := make([]io.Reader, len(parts))
		for i, p := range parts {
			rs[i] = p.body
		}
		parts = []part{{contentType, io.MultiReader(rs...), nil}}
	}
	if neg.single {
		c.Response().Header().Set("Content-Type", contentType)
		body := parts[0].body
		if len(parts) == 1 {
			c.Response().Header().Set("Content-Length", strconv.FormatInt(size, 10))
		} else {
			rs := make([]io.Reader, len(parts))
			for i, p := range parts {
				rs[i] = p.body
			}
			body = io.MultiReader(rs...)
		}
		c.Response().WriteHeader(http.StatusOK)
		_, err := io.Copy(c.Response(), body)
		return err
	}
	return sendParts(c, http.StatusOK, neg.typ, parts)
}

// frameChoice is what negotiateFrames chose: the media type and transfer
// syntax of the frames, and whether they go as one body rather than a
// multipart one.
type frameChoice struct {
	typ, syntax string
	single      bool
}

// negotiateFrames chooses the media type and transfer syntax of the
// frames from the Accept header, in the client's order of preference:
// the stored ones when they do, else a conversion the codecs can make.
// Asked for application/octet-stream with transfer-syntax=*, encapsulated
// frames go as stored, as viewers ask.
func (s *Server) negotiateFrames(r *http.Request, storedType, storedSyntax string, singleOK bool) (frameChoice, error) {
	a := accepted(r)
	for _, m := range a.ranges {
		want := m.param("transfer-syntax")
		switch {
		case m.typ == "multipart/related":
			t := m.param("type")
			if t == "" {
				t = storedType
			}
			if typ, ts, ok := s.frameTarget(t, want, storedType, storedSyntax); ok {
				return frameChoice{typ, ts, false}, nil
			}
		case m.typ == "*/*" || m.typ == "multipart/*":
			return frameChoice{storedType, storedSyntax, false}, nil
		case singleOK:
			if typ, ts, ok := s.frameTarget(m.typ, want, storedType, storedSyntax); ok {
				return frameChoice{typ, ts, true}, nil
			}
		}
	}
	return frameChoice{}, errorf(http.StatusNotAcceptable, `the frames are stored as %s; transfer-syntax=%s, and are available as multipart/related with type application/octet-stream (decompressed), image/jls, image/jp2, image/jphc, image/jpeg or image/dicom-rle where pacsd can convert them; %s`,
		storedType, storedSyntax, a)
}

// frameTarget decides the media type and syntax frames stored as
// storedType in storedSyntax are sent as, for a media range typ
// ("image/jls", "image/*", "*/*") and a transfer-syntax parameter want.
func (s *Server) frameTarget(typ, want, storedType, storedSyntax string) (string, string, bool) {
	if covers(typ, storedType) && (want == "" || want == "*" || want == storedSyntax ||
		storedSyntax == uid.ExplicitVRLittleEndian && want == uid.ImplicitVRLittleEndian) {
		return storedType, storedSyntax, true
	}
	if typ == "application/octet-stream" && want == "*" {
		// Encapsulated frames as octet-stream: as stored, when any
		// syntax will do.
		return typ, storedSyntax, true
	}
	types := []string{typ}
	if typ == "*/*" || typ == "image/*" {
		types = frameTypes[:]
	}
	for _, t := range types {
		syntaxes, ok := frameSyntaxes[t]
		if !ok || !covers(typ, t) {
			continue
		}
		for i, ts := range syntaxes {
			if want != ts && (want != "" && want != "*" || i > 0) {
				continue // the default, or the one asked for
			}
			if _, ok := s.reach(storedSyntax, ts); ok {
				if t == "application/octet-stream" && ts == uid.ImplicitVRLittleEndian {
					ts = uid.ExplicitVRLittleEndian // the same bytes
				}
				return t, ts, true
			}
		}
	}
	return "", "", false
}

// frameConverter converts frames, one at a time, within the memory the
// server's pixel work may take.
type frameConverter struct {
	codecs   Codecs
	from, to string
	im       codec.Image
	limit    int64 // bound of a stored frame's size
	release  func()
	// stored and converted are reused from frame to frame: the parts
	// are read in turn, each to its end before the next is converted.
	stored, converted []byte
}

func (s *Server) newFrameConverter(ctx context.Context, ds *dicom.Dataset, md *archive.Metadata, list []int, from, to string) (*frameConverter, error) {
	if s.Codecs == nil {
		return nil, errorf(http.StatusNotAcceptable, "pacsd converts no frames: it runs without codecs")
	}
	p, err := render.ParamsFrom(ds)
	if err != nil {
		return nil, errorf(http.StatusNotAcceptable, "the frames of %s cannot be converted: %v", md.TransferSyntaxUID, err)
	}
	im := codec.Image{
		Rows: p.Rows, Columns: p.Columns, SamplesPerPixel: p.SamplesPerPixel, BitsAllocated: p.BitsAllocated,
		BitsStored: p.BitsStored, PixelRepresentation: p.PixelRepresentation,
		PhotometricInterpretation: p.PhotometricInterpretation, PlanarConfiguration: p.PlanarConfiguration,
	}
	// A stored frame larger than twice its native size, and a megabyte,
	// is not one any encoder wrote.
	limit := 2*im.FrameSize() + 1<<20
	var largest int64
	for _, n := range list {
		largest = max(largest, md.Frames[n-1].Size())
	}
	need := min(largest, limit) + 3*im.FrameSize()
	s.renders.init(s.Limits)
	if need > s.renders.budget {
		return nil, errorf(http.StatusNotAcceptable, "converting a frame of this instance would take about %d MiB, more than the %d MiB pacsd converts frames with; ask for the stored syntax",
			need>>20, s.renders.budget>>20)
	}
	release, err := s.renders.acquire(ctx, s.Limits, need)
	if err != nil {
		return nil, err
	}
	return &frameConverter{codecs: s.Codecs, from: from, to: to, im: im, limit: limit, release: release}, nil
}

// convert reads a stored frame of size bytes and converts it. What it
// returns is overwritten by the next call.
func (fc *frameConverter) convert(r io.Reader, size int64) ([]byte, error) {
	if size > fc.limit {
		return nil, fmt.Errorf("%w: a stored frame of %d bytes for %dx%d pixels", codec.ErrMalformed, size, fc.im.Columns, fc.im.Rows)
	}
	if int64(cap(fc.stored)) < size {
		fc.stored = make([]byte, size)
	}
	src := fc.stored[:size]
	if _, err := io.ReadFull(r, src); err != nil {
		return nil, err
	}
	out, _, err := fc.codecs.TranscodeFrame(fc.converted[:0], src, fc.from, fc.to, fc.im)
	if err != nil {
		return nil, err
	}
	fc.converted = out
	return out, nil
}

// convertedFrame is a frame converted when first read.
type convertedFrame struct {
	conv *frameConverter
	src  io.Reader
	size int64
	r    *bytes.Reader
}

func (f *convertedFrame) Read(p []byte) (int, error) {
	if f.r == nil {
		b, err := f.conv.convert(f.src, f.size)
		if err != nil {
			return 0, err
		}
		f.r = bytes.NewReader(b)
	}
	return f.r.Read(p)
}

// parseFrameList reads "1,3,5": frame numbers, from 1, of an instance of
// frames frames. A frame listed again is sent once, where first listed,
// so that a list's length cannot multiply what a request costs.
func parseFrameList(s string, frames int) ([]int, error) {
	var list []int
	seen := map[int]bool{}
	for f := range strings.SplitSeq(s, ",") {
		n, err := strconv.Atoi(strings.TrimSpace(f))
		if err != nil || n < 1 {
			return nil, errorf(http.StatusBadRequest, "frame list: %s is not a frame number", clip(f))
		}
		if n > frames {
			return nil, errorf(http.StatusNotFound, "frame %d does not exist: the instance has %d", n, frames)
		}
		if !seen[n] {
			seen[n] = true
			list = append(list, n)
		}
	}
	return list, nil
}

// maxDescents bounds the steps back in a frame list of a deflated
// instance, each of which inflates it again from its start.
const maxDescents = 16

// descents counts the steps back in a list of frames.
func descents(list []int) int {
	n := 0
	for i := 1; i < len(list); i++ {
		if list[i] < list[i-1] {
			n++
		}
	}
	return n
}

// valueReader returns what the ranges of an object's metadata are ranges
// of: the object, or for a deflated one, the object with its data set
// inflated on the fly.
func valueReader(obj storage.Object, ts uid.TransferSyntax) io.ReaderAt {
	if ts.Deflated {
		return dicom.NewInflatedObject(obj)
	}
	return obj
}

// frameReader reads a frame's ranges of an object in turn, swapping the
// bytes of each unit of swap bytes (big endian pixel data, see
// dicom.SwapUnit).
func frameReader(obj io.ReaderAt, f archive.Frame, swap int) io.Reader {
	rs := make([]io.Reader, len(f))
	for i, r := range f {
		rs[i] = &rangeReader{r: obj, off: r.Offset, end: r.Offset + r.Length}
	}
	return dicom.NewSwapReader(io.MultiReader(rs...), swap)
}

// readChunk is the least a rangeReader asks of its object at a time.
const readChunk = 1 << 20

// rangeReader reads bytes off to end of an object in reads of readChunk
// bytes, or the rest of the range, whatever the size of the caller's
// reads: each ReadAt of an object in S3 is a request of its own, and
// io.Copy's 32 KiB reads, or io.ReadAll's small first ones, would make a
// frame cost a dozen requests instead of one. The chunk buffer is taken
// at the first read that needs it and dropped at the end of the range.
type rangeReader struct {
	r        io.ReaderAt
	off, end int64
	buf      []byte
	pending  []byte // read and not yet returned
}

func (rr *rangeReader) Read(p []byte) (int, error) {
	if len(p) == 0 {
		return 0, nil
	}
	if len(rr.pending) == 0 {
		if rr.off >= rr.end {
			rr.buf = nil
			return 0, io.EOF
		}
		want := min(rr.end-rr.off, readChunk)
		if int64(len(p)) >= want {
			return rr.readAt(p[:want])
		}
		if rr.buf == nil {
			rr.buf = make([]byte, want)
		}
		n, err := rr.readAt(rr.buf[:want])
		if err != nil {
			return 0, err
		}
		rr.pending = rr.buf[:n]
	}
	n := copy(p, rr.pending)
	rr.pending = rr.pending[n:]
	return n, nil
}

// readAt reads all of b at the range's offset; an object shorter than
// the range is io.ErrUnexpectedEOF.
func (rr *rangeReader) readAt(b []byte) (int, error) {
	n, err := rr.r.ReadAt(b, rr.off)
	rr.off += int64(n)
	switch {
	case n == len(b):
		return n, nil
	case err == nil || err == io.EOF:
		err = io.ErrUnexpectedEOF
	}
	return n, err
}
