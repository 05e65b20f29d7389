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
	img, err := s.renderFrame(c, in, frame, opts)
	if err != nil {
		return err
	}
	return encodeImage(c, img, typ)
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
	img, err := s.renderFrame(c, in, frame, opts)
	if err != nil {
		return err
	}
	return encodeImage(c, img, typ)
}

// renderFrame renders one frame (from 1) of an instance.
func (s *Server) renderFrame(c echo.Context, in *index.Instance, frame int, opts render.Options) (image.Image, error) {
	ctx := c.Request().Context()
	md, err := s.Archive.Metadata(ctx, in)
	if err != nil {
		return nil, err
	}
	if len(md.Frames) == 0 {
		return nil, errorf(http.StatusNotAcceptable, "instance %s has no pixel data pacsd can render", in.SOPInstanceUID)
	}
	if frame > len(md.Frames) {
		return nil, errorf(http.StatusNotFound, "frame %d does not exist: the instance has %d", frame, len(md.Frames))
	}
	ds, err := dicom.ParseJSON(md.JSON)
	if err != nil {
		return nil, fmt.Errorf("metadata of %s: %w", in.SOPInstanceUID, err)
	}
	p, err := render.ParamsFrom(ds)
	if err != nil {
		return nil, renderError(err)
	}
	obj, err := s.Archive.Open(ctx, in)
	if err != nil {
		return nil, err
	}
	defer obj.Close()
	ts, _ := uid.LookupTransferSyntax(md.TransferSyntaxUID)
	syntax := md.TransferSyntaxUID
	if ts.Deflated {
		syntax = uid.ExplicitVRLittleEndian // the frame is read inflated
	}
	img, err := render.Render(ctx, p, syntax, frameReader(valueReader(obj, ts), md.Frames[frame-1], 0), opts)
	if err != nil {
		return nil, renderError(err)
	}
	return img, nil
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
	for _, m := range parseAccept(r.Header.Values("Accept")) {
		for _, t := range []string{"image/jpeg", "image/png", "image/gif"} {
			if m.matches(t) {
				return t, nil
			}
		}
	}
	return "", errorf(http.StatusNotAcceptable, "rendered images are available as image/jpeg, image/png or image/gif; Accept was %q", r.Header.Get("Accept"))
}

func encodeImage(c echo.Context, img image.Image, typ string) error {
	quality := 90
	if v := c.QueryParam("quality"); v != "" {
		q, err := strconv.Atoi(v)
		if err != nil || q < 1 || q > 100 {
			return errorf(http.StatusBadRequest, "quality=%q is not 1 to 100", v)
		}
		quality = q
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
