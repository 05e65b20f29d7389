package dicomweb

import (
	"errors"
	"fmt"
	"image"
	"image/gif"
	"image/jpeg"
	"image/png"
	"io"
	"net/http"
	"strconv"
	"strings"

	"github.com/labstack/echo/v4"

	"github.com/pacsd/pacsd/dicom"
	"github.com/pacsd/pacsd/dicom/render"
	"github.com/pacsd/pacsd/dicom/uid"
	"github.com/pacsd/pacsd/index"
)

// thumbnailSize bounds a thumbnail when the request gives no viewport.
const thumbnailSize = 128

// rendered answers a rendered request (PS3.18 §10.4.1.1.3) of an
// instance or one frame: the frame as a consumer image.
func (s *Server) rendered(c echo.Context) error {
	ins, err := s.instances(c)
	if err != nil {
		return err
	}
	frame := 1
	if list := c.Param("frames"); list != "" {
		if strings.Contains(list, ",") {
			return errorf(http.StatusBadRequest, "frames %q: pacsd renders one frame per request", list)
		}
		if frame, err = strconv.Atoi(list); err != nil || frame < 1 {
			return errorf(http.StatusBadRequest, "frames %q is not a frame number", list)
		}
	}
	return s.render(c, ins[0], frame, render.Viewport{})
}

// thumbnail answers a thumbnail request (PS3.18 §10.4.1.1.4): a small
// image of the instance, or of an instance of the series or study that
// stands for it (the middle instance of its first series).
func (s *Server) thumbnail(c echo.Context) error {
	ins, err := s.instances(c)
	if err != nil {
		return err
	}
	in := ins[0]
	if len(ins) > 1 {
		series := ins[0].SeriesInstanceUID
		n := 0
		for _, x := range ins {
			if x.SeriesInstanceUID == series {
				n++
			}
		}
		in = ins[n/2]
	}
	frame := 1
	if list := c.Param("frames"); list != "" {
		first, _, _ := strings.Cut(list, ",")
		if frame, err = strconv.Atoi(first); err != nil || frame < 1 {
			return errorf(http.StatusBadRequest, "frames %q is not a frame number", list)
		}
	}
	return s.render(c, in, frame, render.Viewport{Width: thumbnailSize, Height: thumbnailSize})
}

// renderURI answers a WADO-URI request for an image.
func (s *Server) renderURI(c echo.Context, in *index.Instance, typ string) error {
	frame := 1
	if v := c.QueryParam("frameNumber"); v != "" {
		var err error
		if frame, err = strconv.Atoi(v); err != nil || frame < 1 {
			return errorf(http.StatusBadRequest, "frameNumber %q is not a frame number", v)
		}
	}
	opts := render.Options{}
	// WADO-URI names the window and size differently from WADO-RS.
	if wc, ww := c.QueryParam("windowCenter"), c.QueryParam("windowWidth"); wc != "" || ww != "" {
		w, err := render.ParseWindow(wc + "," + ww)
		if err != nil {
			return errorf(http.StatusBadRequest, "%v", err)
		}
		opts.Window = w
	}
	for name, dst := range map[string]*int{"columns": &opts.Viewport.Width, "rows": &opts.Viewport.Height} {
		if v := c.QueryParam(name); v != "" {
			n, err := strconv.Atoi(v)
			if err != nil || n < 1 {
				return errorf(http.StatusBadRequest, "%s=%q is not a positive integer", name, v)
			}
			*dst = n
		}
	}
	if typ == "*/*" || typ == "image/*" {
		typ = "image/jpeg"
	}
	quality, err := jpegQuality(c)
	if err != nil {
		return err
	}
	img, release, err := s.renderFrame(c, in, frame, opts)
	if err != nil {
		return err
	}
	defer release()
	return s.encodeImage(c, img, typ, quality)
}

func (s *Server) render(c echo.Context, in *index.Instance, frame int, vp render.Viewport) error {
	typ, err := negotiateImage(c.Request())
	if err != nil {
		return err
	}
	opts := render.Options{Viewport: vp}
	if v := c.QueryParam("window"); v != "" {
		if opts.Window, err = render.ParseWindow(v); err != nil {
			return errorf(http.StatusBadRequest, "%v", err)
		}
	}
	if v := c.QueryParam("viewport"); v != "" {
		if opts.Viewport, err = render.ParseViewport(v); err != nil {
			return errorf(http.StatusBadRequest, "%v", err)
		}
	}
	quality, err := jpegQuality(c)
	if err != nil {
		return err
	}
	img, release, err := s.renderFrame(c, in, frame, opts)
	if err != nil {
		return err
	}
	defer release()
	return s.encodeImage(c, img, typ, quality)
}

// renderFrame renders one frame (from 1) of an instance, once the
// rendering fits the memory renderings may take. The caller calls
// release when done with the image.
func (s *Server) renderFrame(c echo.Context, in *index.Instance, frame int, opts render.Options) (img image.Image, release func(), err error) {
	ctx := c.Request().Context()
	md, err := s.Archive.Metadata(ctx, in)
	if err != nil {
		return nil, nil, err
	}
	if len(md.Frames) == 0 {
		return nil, nil, errorf(http.StatusNotAcceptable, "instance %s has no pixel data pacsd can render", in.SOPInstanceUID)
	}
	if frame > len(md.Frames) {
		return nil, nil, errorf(http.StatusNotFound, "frame %d does not exist: the instance has %d", frame, len(md.Frames))
	}
	ds, err := dicom.ParseJSON(md.JSON)
	if err != nil {
		return nil, nil, fmt.Errorf("metadata of %s: %w", in.SOPInstanceUID, err)
	}
	p, err := render.ParamsFrom(ds)
	if err != nil {
		return nil, nil, renderError(err)
	}
	ts, _ := uid.LookupTransferSyntax(md.TransferSyntaxUID)
	done, err := s.renders.acquire(ctx, s.Limits, renderCost(p, md.Frames[frame-1].Size(), ts.Encapsulated, opts.Viewport))
	if err != nil {
		if err == errBusy {
			c.Response().Header().Set("Retry-After", "2")
		}
		return nil, nil, err
	}
	defer func() {
		if err != nil {
			done()
		}
	}()
	obj, err := s.Archive.Open(ctx, in)
	if err != nil {
		return nil, nil, err
	}
	defer obj.Close()
	syntax := md.TransferSyntaxUID
	if ts.Deflated {
		syntax = uid.ExplicitVRLittleEndian // the frame is read inflated
	}
	img, err = render.Render(ctx, p, syntax, frameReader(valueReader(obj, ts), md.Frames[frame-1], 0), opts)
	if err != nil {
		return nil, nil, renderError(err)
	}
	return img, done, nil
}

// renderCost estimates the memory rendering a frame of stored bytes takes:
// the frame as read (a buffer that may grow to twice its size), its
// decoded samples when compressed, and the output image.
func renderCost(p render.Params, stored int64, encapsulated bool, vp render.Viewport) int64 {
	w, h := int64(max(p.Columns, 0)), int64(max(p.Rows, 0))
	cost := 2 * stored
	if encapsulated {
		cost += w * h * int64(max(p.SamplesPerPixel, 1)) * int64((max(p.BitsAllocated, 8)+7)/8)
	}
	// The output is scaled down to fit the viewport.
	scale := 1.0
	if vp.Width > 0 && w > 0 {
		scale = min(scale, float64(vp.Width)/float64(w))
	}
	if vp.Height > 0 && h > 0 {
		scale = min(scale, float64(vp.Height)/float64(h))
	}
	channels := 1.0
	if p.SamplesPerPixel > 1 || p.Palette != nil {
		channels = 4 // RGBA
	}
	return cost + int64(float64(w)*float64(h)*scale*scale*channels)
}

func renderError(err error) error {
	switch {
	case errors.Is(err, render.ErrUnsupported):
		return errorf(http.StatusNotAcceptable, "%v", err)
	case errors.Is(err, render.ErrBadOption):
		return errorf(http.StatusBadRequest, "%v", err)
	case errors.Is(err, render.ErrMalformed):
		return errorf(http.StatusUnprocessableEntity, "%v", err)
	}
	return err
}

// negotiateImage picks the rendered media type from Accept: JPEG unless
// the client prefers PNG or GIF.
func negotiateImage(r *http.Request) (string, error) {
	a := accepted(r)
	for _, m := range a.ranges {
		for _, t := range []string{"image/jpeg", "image/png", "image/gif"} {
			if m.matches(t) {
				return t, nil
			}
		}
	}
	return "", errorf(http.StatusNotAcceptable, "rendered images are available as image/jpeg, image/png or image/gif; %s", a)
}

// jpegQuality reads the quality parameter (PS3.18 §8.3.5.1.2).
func jpegQuality(c echo.Context) (int, error) {
	v := c.QueryParam("quality")
	if v == "" {
		return 90, nil
	}
	q, err := strconv.Atoi(v)
	if err != nil || q < 1 || q > 100 {
		return 0, errorf(http.StatusBadRequest, "quality=%s is not 1 to 100", clip(v))
	}
	return q, nil
}

// encodeImage answers with img as typ. JPEG goes through the Codecs
// when the server has them (libjpeg-turbo, three times as fast as
// image/jpeg), and then has a Content-Length.
func (s *Server) encodeImage(c echo.Context, img image.Image, typ string, quality int) error {
	if typ == "image/jpeg" && s.Codecs != nil {
		b, err := s.Codecs.EncodeJPEG(nil, img, quality)
		if err != nil {
			return fmt.Errorf("encoding the rendered image: %w", err)
		}
		c.Response().Header().Set("Content-Type", typ)
		c.Response().Header().Set("Content-Length", strconv.Itoa(len(b)))
		c.Response().WriteHeader(http.StatusOK)
		_, err = c.Response().Write(b)
		return err
	}
	c.Response().Header().Set("Content-Type", typ)
	c.Response().WriteHeader(http.StatusOK)
	var w io.Writer = c.Response()
	switch typ {
	case "image/png":
		return png.Encode(w, img)
	case "image/gif":
		return gif.Encode(w, img, nil)
	}
	return jpeg.Encode(w, img, &jpeg.Options{Quality: quality})
}
