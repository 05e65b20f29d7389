package dicomweb

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"image"
	"io"
	"net/http"

	"github.com/pacsd/pacsd/dicom"
	"github.com/pacsd/pacsd/dicom/codec"
	"github.com/pacsd/pacsd/dicom/uid"
)

// Codecs converts pixel data between transfer syntaxes, for the
// retrievals that ask for a syntax other than the stored one.
// *codec.Registry is one; cmd/pacsd gives the server its registry.
// Without Codecs the server converts only between the uncompressed
// syntaxes, and sends compressed objects and frames as stored.
type Codecs interface {
	// Choose picks the syntax to send a data set stored in stored in,
	// among accepted, and whether the result is a new (lossy) instance;
	// false when none of accepted can be reached.
	Choose(stored string, accepted []string) (codec.Choice, bool)
	// Transcode converts a data set (without File Meta Information) as
	// it streams, a frame at a time.
	Transcode(ctx context.Context, dst io.Writer, src io.Reader, from, to string, opts codec.TranscodeOptions) (codec.Result, error)
	// TranscodeFrame converts one frame; native frames are little endian.
	TranscodeFrame(dst, src []byte, from, to string, im codec.Image) ([]byte, codec.Image, error)
	// EncodeJPEG encodes a rendered image as a baseline JPEG.
	EncodeJPEG(dst []byte, img image.Image, quality int) ([]byte, error)
}

// frameSyntaxes lists, by media type of a frame or of compressed bulk
// data, the transfer syntaxes pacsd sends it in, the default first
// (PS3.18 Table 8.7.3-5): what a client asking for the type without a
// transfer-syntax parameter gets, unless the stored syntax is one of
// them.
var frameSyntaxes = map[string][]string{
	"application/octet-stream": {uid.ExplicitVRLittleEndian, uid.ImplicitVRLittleEndian},
	"image/jpeg":               {uid.JPEGLosslessSV1, uid.JPEGBaseline8Bit, uid.JPEGExtended12Bit, uid.JPEGLossless},
	"image/jls":                {uid.JPEGLSLossless, uid.JPEGLSNearLossless},
	"image/jp2":                {uid.JPEG2000Lossless, uid.JPEG2000},
	"image/jphc":               {uid.HTJ2KLossless, uid.HTJ2KLosslessRPCL, uid.HTJ2K},
	"image/dicom-rle":          {uid.RLELossless},
}

// frameTypes are the media types of frameSyntaxes in the order a
// wildcard ("image/*") picks them when the stored type does not match.
var frameTypes = [...]string{"image/jls", "image/jphc", "image/jp2", "image/jpeg", "image/dicom-rle", "application/octet-stream"}

// choose decides the syntax an object stored in stored is sent in when
// the client asked for want ("" for the default, Explicit VR Little
// Endian, PS3.18 §8.7.3.5; "*" for as stored). An object pacsd cannot
// decode goes as stored by default. NewInstance is set for a lossy
// compression, which makes a new instance (PS3.3 C.7.6.1.1.5).
func (s *Server) choose(stored, want string) (codec.Choice, error) {
	if want == "*" || want == stored {
		return codec.Choice{TransferSyntax: stored}, nil
	}
	if want == "" {
		if c, ok := s.reach(stored, uid.ExplicitVRLittleEndian); ok {
			return c, nil
		}
		return codec.Choice{TransferSyntax: stored}, nil
	}
	if _, ok := uid.LookupTransferSyntax(want); !ok {
		return codec.Choice{}, errorf(http.StatusBadRequest, "transfer-syntax %q is not a transfer syntax", want)
	}
	if c, ok := s.reach(stored, want); ok {
		return c, nil
	}
	return codec.Choice{}, errorf(http.StatusNotAcceptable, "an instance stored in %s cannot be sent in %s; ask with transfer-syntax=* for the stored syntax",
		uid.Name(stored), uid.Name(want))
}

// reach reports whether data stored in from can be converted to to.
func (s *Server) reach(from, to string) (codec.Choice, bool) {
	if s.Codecs == nil {
		if from == to || dicom.Transcodable(from) && dicom.Transcodable(to) {
			return codec.Choice{TransferSyntax: to}, true
		}
		return codec.Choice{}, false
	}
	c, ok := s.Codecs.Choose(from, []string{to})
	return c, ok && c.TransferSyntax == to
}

// convertError turns a conversion's failure that happened before any
// byte went out into the answer a client can act on.
func convertError(err error, what string) error {
	switch {
	case errors.Is(err, codec.ErrUnsupported), errors.Is(err, codec.ErrTooLarge), errors.Is(err, dicom.ErrUnsupported):
		return errorf(http.StatusNotAcceptable, "%s: %v; ask with transfer-syntax=* for the stored syntax", what, err)
	case errors.Is(err, codec.ErrMalformed):
		return errorf(http.StatusUnprocessableEntity, "%s: %v", what, err)
	}
	return fmt.Errorf("%s: %w", what, err)
}

// holdBack is how much of a converted object is kept back before its
// response or part starts: a conversion that fails within it (in the
// header or at the first frame, where codecs find pixels they cannot
// encode) is still an error with a status of its own.
const holdBack = 1 << 20

// holdWriter keeps the first holdBack bytes written to it, and opens the
// writer they go to once there are more, or at Flush.
type holdWriter struct {
	open func() (io.Writer, error)
	w    io.Writer
	buf  bytes.Buffer
}

func (h *holdWriter) Write(p []byte) (int, error) {
	if h.w != nil {
		return h.w.Write(p)
	}
	h.buf.Write(p)
	if h.buf.Len() >= holdBack {
		if err := h.Flush(); err != nil {
			return 0, err
		}
	}
	return len(p), nil
}

// started reports whether the writer has been opened.
func (h *holdWriter) started() bool { return h.w != nil }

// Flush opens the writer, if it is not yet, and writes what was held.
func (h *holdWriter) Flush() error {
	if h.w == nil {
		w, err := h.open()
		if err != nil {
			return err
		}
		h.w = w
	}
	if h.buf.Len() == 0 {
		return nil
	}
	_, err := h.w.Write(h.buf.Bytes())
	h.buf = bytes.Buffer{}
	return err
}
