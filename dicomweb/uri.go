package dicomweb

import (
	"net/http"
	"strings"

	"github.com/labstack/echo/v4"

	"github.com/pacsd/pacsd/index"
)

// wadoURI answers a WADO-URI request (PS3.18 §9): one instance, named by
// its three UIDs in the query, as application/dicom or as an image.
func (s *Server) wadoURI(c echo.Context) error {
	q := c.QueryParams()
	if rt := q.Get("requestType"); rt != "WADO" {
		return errorf(http.StatusBadRequest, "requestType=%q: only WADO is served", rt)
	}
	study, series, object := q.Get("studyUID"), q.Get("seriesUID"), q.Get("objectUID")
	if study == "" || series == "" || object == "" {
		return errorf(http.StatusBadRequest, "studyUID, seriesUID and objectUID are required")
	}
	found, err := s.lookup(c.Request().Context(), study, series, object)
	if err != nil {
		return err
	}
	var in *index.Instance
	if len(found) > 0 {
		in = found[0]
	}
	if in == nil {
		return errorf(http.StatusNotFound, "no instance %s in series %s of study %s", object, series, study)
	}
	// contentType may list several types in order of preference; the
	// default is image/jpeg (PS3.18 §9.1.2.1.5).
	types := q.Get("contentType")
	if types == "" {
		types = "image/jpeg"
	}
	for t := range strings.SplitSeq(types, ",") {
		t, _, _ = strings.Cut(strings.TrimSpace(t), ";")
		switch t {
		case "application/dicom":
			want := q.Get("transferSyntax")
			if want == "" {
				want = "*" // WADO-URI sends the object as stored by default
			}
			target, err := s.choose(in.TransferSyntaxUID, want)
			if err != nil {
				return err
			}
			return s.sendSingle(c, in, target)
		case "image/jpeg", "image/png", "image/gif", "*/*", "image/*":
			return s.renderURI(c, in, t)
		}
	}
	return errorf(http.StatusNotAcceptable, "contentType=%q: pacsd serves application/dicom, image/jpeg and image/png", types)
}
