package api

import (
	"context"
	"errors"
	"iter"
	"log/slog"
	"net/http"

	"github.com/labstack/echo/v4"

	auditlog "github.com/pacsd/pacsd/audit"
	"github.com/pacsd/pacsd/index"
	"github.com/pacsd/pacsd/migrate"
	"github.com/pacsd/pacsd/route"
)

// Index is what the API reads of the index.
type Index interface {
	FindInstances(ctx context.Context, q *index.Query) iter.Seq2[*index.Instance, error]
	StudyPatient(ctx context.Context, studyInstanceUID string) (*index.Patient, error)
}

// Destination describes a configured forwarding destination.
type Destination struct {
	Name string
	// Kind is "dimse" or "dicomweb".
	Kind string
	// Address is where it is, without credentials.
	Address string
}

// Server serves the API. Set its fields before Register.
type Server struct {
	Queue        route.Queue
	Index        Index
	Destinations []Destination
	// Wake, if set, is told the destinations a send queued tasks for.
	Wake func(destinations ...string)
	// Migrations is where migrations and imports keep their state;
	// if nil, /api/migrations is not served.
	Migrations MigrationState
	Logger     *slog.Logger

	// Changes, if set, serves GET /api/changes.
	Changes ChangeFeed
	// Objects, if set, serves the study archives (archive.zip) and their
	// tickets.
	Objects Objects
	// System, if set, serves GET /api/system.
	System SystemFunc
	// Patients, when set, serves /api/patients; Corrections the
	// corrections of studies and series, each recorded in Trail and
	// sent again to the destinations that had what it changed;
	// Originals the objects as received.
	Patients    Patients
	Corrections Corrections
	Originals   Originals
	Trail       *auditlog.Trail

	tickets tickets
}

// Register adds the API's routes to e.
func (s *Server) Register(e *echo.Echo) {
	g := e.Group("/api")
	g.GET("/queue", s.handle(s.getQueue))
	g.GET("/queue/:dest/tasks", s.handle(s.getTasks))
	g.POST("/queue/:dest/retry", s.handle(s.postRetry))
	g.DELETE("/queue/:dest/tasks/:study", s.handle(s.deleteTask))
	g.POST("/studies/:study/send", s.handle(s.postSend))
	if s.Migrations != nil {
		g.GET("/migrations", s.handle(s.getMigrations))
		g.GET("/migrations/:id/studies", s.handle(s.getMigrationStudies))
	}
	if s.Changes != nil {
		g.GET("/changes", s.handle(s.getChanges))
	}
	if s.Objects != nil {
		g.GET("/studies/:study/archive.zip", s.handle(s.getArchive))
		g.HEAD("/studies/:study/archive.zip", s.handle(s.getArchive))
		g.POST("/studies/:study/archive-ticket", s.handle(s.postArchiveTicket))
	}
	if s.System != nil {
		g.GET("/system", s.handle(s.getSystem))
	}
	if s.Patients != nil {
		g.GET("/patients/:patient", s.handle(s.getPatient))
		g.POST("/patients/link", s.handle(s.postLink))
		g.POST("/patients/unlink", s.handle(s.postUnlink))
	}
	if s.Corrections != nil {
		g.POST("/studies/:study/update", s.handle(s.postStudyUpdate))
		g.POST("/series/:series/move", s.handle(s.postSeriesMove))
		g.GET("/corrections", s.handle(s.getCorrections))
		g.POST("/corrections/:id/undo", s.handle(s.postUndo))
	}
	if s.Originals != nil {
		g.GET("/instances/:sop/original", s.handle(s.getOriginal))
	}
}

func (s *Server) log() *slog.Logger {
	if s.Logger != nil {
		return s.Logger
	}
	return slog.New(slog.DiscardHandler)
}

// httpError is an error with the HTTP status it answers.
type httpError struct {
	status int
	msg    string
}

func (e *httpError) Error() string { return e.msg }

func errorf(status int, msg string) error { return &httpError{status, msg} }

// handle wraps a handler with the mapping of its error onto a status and
// a JSON body.
func (s *Server) handle(h func(c echo.Context) error) echo.HandlerFunc {
	return func(c echo.Context) error {
		err := h(c)
		if err == nil {
			return nil
		}
		var he *httpError
		status := http.StatusInternalServerError
		msg := "internal error; see the server's log"
		switch {
		case errors.As(err, &he):
			status, msg = he.status, he.msg
		case errors.Is(err, route.ErrNoTask), errors.Is(err, route.ErrNoInstances), errors.Is(err, index.ErrNotFound),
			errors.Is(err, migrate.ErrNotFound):
			status, msg = http.StatusNotFound, err.Error()
		case errors.Is(err, index.ErrInvalidCorrection), errors.Is(err, index.ErrLink), errors.Is(err, index.ErrInvalidQuery):
			status, msg = http.StatusBadRequest, err.Error()
		case errors.Is(err, context.Canceled):
			return nil // the client went away
		default:
			s.log().Error("API request failed", "method", c.Request().Method, "path", c.Path(), "err", err)
		}
		return c.JSON(status, map[string]string{"error": msg})
	}
}

func (s *Server) destination(name string) (Destination, bool) {
	for _, d := range s.Destinations {
		if d.Name == name {
			return d, true
		}
	}
	return Destination{}, false
}
