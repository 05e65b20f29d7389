package api

import (
	"net/http"
	"strconv"

	"github.com/labstack/echo/v4"

	"github.com/pacsd/pacsd/dicom/uid"
	"github.com/pacsd/pacsd/route"
)

// postSend queues a study, or one of its series, for destinations.
func (s *Server) postSend(c echo.Context) error {
	study := c.Param("study")
	if err := uid.Valid(study); err != nil {
		return errorf(http.StatusBadRequest, "study: "+err.Error())
	}
	var body struct {
		To     []string `json:"to"`
		Series string   `json:"series"`
	}
	if err := readJSON(c, &body); err != nil {
		return err
	}
	if len(body.To) == 0 {
		return errorf(http.StatusBadRequest, `to: name at least one destination`)
	}
	for _, d := range body.To {
		if _, ok := s.destination(d); !ok {
			return errorf(http.StatusBadRequest, "to: unknown destination "+strconv.Quote(d))
		}
	}
	if body.Series != "" {
		if err := uid.Valid(body.Series); err != nil {
			return errorf(http.StatusBadRequest, "series: "+err.Error())
		}
	}
	if _, err := route.Send(c.Request().Context(), s.Queue, s.Index, study, body.Series, body.To); err != nil {
		return err
	}
	if s.Wake != nil {
		s.Wake(body.To...)
	}
	type task struct {
		Destination string `json:"destination"`
		Study       string `json:"study"`
		State       string `json:"state"`
	}
	out := struct {
		Tasks []task `json:"tasks"`
	}{}
	for _, d := range body.To {
		out.Tasks = append(out.Tasks, task{d, study, string(route.Pending)})
	}
	return c.JSON(http.StatusAccepted, out)
}
