package dicomweb

import (
	"io"
	"net/http"
	"strconv"
	"strings"

	"github.com/labstack/echo/v4"

	"github.com/pacsd/pacsd/archive"
	"github.com/pacsd/pacsd/dicom"
	"github.com/pacsd/pacsd/dicom/tag"
	"github.com/pacsd/pacsd/dicom/uid"
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
// instance's pixel data, each read from storage by its byte ranges.
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
	ts, _ := uid.LookupTransferSyntax(md.TransferSyntaxUID)
	// Native frames are sent as Explicit VR Little Endian bytes: the same
	// bytes for both little endian syntaxes, swapped from big endian.
	stored, sentSyntax := "application/octet-stream", uid.ExplicitVRLittleEndian
	if ts.Encapsulated {
		stored, sentSyntax = frameMediaTypes[ts.UID], ts.UID
		if stored == "" {
			stored = "application/octet-stream"
		}
	}
	partType, single, err := negotiateFrames(c.Request(), stored, sentSyntax, len(list))
	if err != nil {
		return err
	}
	if ts.Deflated && descents(list) > maxDescents {
		return errorf(http.StatusBadRequest, "frames of a deflated instance are read by inflating it from its start: list them in ascending order (at most %d steps back)", maxDescents)
	}
	obj, err := s.Archive.Open(ctx, in)
	if err != nil {
		return err
	}
	defer obj.Close()
	swap := 1
	if ts.BigEndian {
		if ds, err := dicom.ParseJSON(md.JSON); err == nil {
			if px, ok := ds.Find(tag.PixelData); ok {
				bits, _ := strconv.Atoi(ds.First(tag.BitsAllocated))
				swap = dicom.SwapUnit(tag.PixelData, px.VR, bits)
			}
		}
	}
	// One reader for every frame: a deflated object is inflated once
	// for frames in ascending order.
	src := valueReader(obj, ts)
	readers := make([]part, len(list))
	for i, n := range list {
		readers[i] = part{partType + "; transfer-syntax=" + sentSyntax, frameReader(src, md.Frames[n-1], swap), nil}
	}
	if single {
		c.Response().Header().Set("Content-Type", readers[0].contentType)
		c.Response().Header().Set("Content-Length", strconv.FormatInt(md.Frames[list[0]-1].Size(), 10))
		c.Response().WriteHeader(http.StatusOK)
		_, err := io.Copy(c.Response(), readers[0].body)
		return err
	}
	return sendParts(c, http.StatusOK, partType, readers)
}

// negotiateFrames chooses the media type of the frame parts from the
// Accept header: the stored type, or application/octet-stream for any
// frames when the client accepts every syntax, as viewers ask.
func negotiateFrames(r *http.Request, stored, syntax string, n int) (typ string, single bool, err error) {
	a := accepted(r)
	for _, m := range a.ranges {
		want := m.param("transfer-syntax")
		okSyntax := want == "" || want == "*" || want == syntax ||
			syntax == uid.ExplicitVRLittleEndian && want == uid.ImplicitVRLittleEndian
		switch {
		case m.typ == "multipart/related":
			switch t := m.param("type"); {
			case t == "application/octet-stream" && stored != t:
				// Encapsulated frames as octet-stream: as stored, when
				// any syntax will do.
				if want == "*" {
					return t, false, nil
				}
			case m.admits(stored) && okSyntax:
				return stored, false, nil
			}
		case m.typ == "*/*" || m.typ == "multipart/*":
			return stored, false, nil
		case n == 1 && m.matches(stored) && okSyntax:
			return stored, true, nil
		}
	}
	return "", false, errorf(http.StatusNotAcceptable, `the frames are available as multipart/related; type=%q; transfer-syntax=%s (or type="application/octet-stream"; transfer-syntax=*); pacsd does not transcode pixel data; %s`,
		stored, syntax, a)
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
		rs[i] = io.NewSectionReader(obj, r.Offset, r.Length)
	}
	return dicom.NewSwapReader(io.MultiReader(rs...), swap)
}
