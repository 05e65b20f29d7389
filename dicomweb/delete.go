package dicomweb

import (
	"context"
	"net/http"

	"github.com/labstack/echo/v4"

	"github.com/pacsd/pacsd/auth"
	"github.com/pacsd/pacsd/dicom/uid"
	"github.com/pacsd/pacsd/index"
)

// Trash is what DELETE needs: the archive's trash (archive.Trash).
type Trash interface {
	// Delete hides the instances r selects from every query and
	// retrieval at once and moves them to the trash, or returns an error
	// wrapping index.ErrNotFound when r selects none.
	Delete(ctx context.Context, r index.Removal) ([]index.Instance, error)
}

// defaultDeleteReason is the reason recorded for a DELETE that gives
// none: DICOMweb clients (viewers) know of no reason parameter.
const defaultDeleteReason = "deleted through DICOMweb"

// remove answers DELETE of a study, series or instance: it hides them at
// once and moves them to the trash, from which pacsd restore brings them
// back until the trash is purged. The optional reason query parameter
// says why; the log of removals records it with the principal.
func (s *Server) remove(c echo.Context) error {
	sel := index.Selection{StudyInstanceUID: c.Param("study"), SeriesInstanceUID: c.Param("series"), SOPInstanceUID: c.Param("instance")}
	for _, u := range []string{sel.StudyInstanceUID, sel.SeriesInstanceUID, sel.SOPInstanceUID} {
		if u == "" {
			continue
		}
		if err := uid.Valid(u); err != nil {
			return &Error{Status: http.StatusBadRequest, Reason: "invalid UID " + u + ": " + err.Error()}
		}
	}
	reason := c.QueryParam("reason")
	if reason == "" {
		reason = defaultDeleteReason
	}
	r := index.Removal{Selection: sel, Cause: index.CauseDeleted, Reason: reason, Principal: "anonymous"}
	if p, ok := auth.FromContext(c.Request().Context()); ok {
		r.Principal = p.Name
	}
	if _, err := s.Trash.Delete(c.Request().Context(), r); err != nil {
		return err
	}
	return c.NoContent(http.StatusNoContent)
}
