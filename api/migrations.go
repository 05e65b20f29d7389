package api

import (
	"context"
	"errors"
	"iter"
	"net/http"
	"strconv"
	"strings"
	"time"

	"github.com/labstack/echo/v4"

	"github.com/pacsd/pacsd/migrate"
)

// MigrationState is what the API reads of migrations and imports.
type MigrationState interface {
	Migrations(ctx context.Context) ([]*migrate.Migration, error)
	Migration(ctx context.Context, id string) (*migrate.Migration, error)
	Totals(ctx context.Context, id string) (migrate.Totals, error)
	Progress(ctx context.Context, id string, since time.Time) (int, int64, error)
	Studies(ctx context.Context, id string, f migrate.StudyFilter) iter.Seq2[*migrate.Study, error]
}

// getMigrations answers GET /api/migrations: every migration, newest
// first.
func (s *Server) getMigrations(c echo.Context) error {
	ctx := c.Request().Context()
	migs, err := s.Migrations.Migrations(ctx)
	if err != nil {
		return err
	}
	out := []*migrate.Status{}
	now := time.Now()
	for _, m := range migs {
		st, err := migrate.Describe(ctx, s.Migrations, m, now)
		if err != nil {
			return err
		}
		out = append(out, st)
	}
	return c.JSON(http.StatusOK, map[string]any{"migrations": out})
}

// Paging of lists (docs/api.md, Conventions).
const (
	defaultLimit = 100
	maxLimit     = 1000
)

// getMigrationStudies answers GET /api/migrations/{id}/studies: the rows
// of the report, filtered by state, a page at a time.
func (s *Server) getMigrationStudies(c echo.Context) error {
	ctx := c.Request().Context()
	id := c.Param("id")
	m, err := s.Migrations.Migration(ctx, id)
	if errors.Is(err, migrate.ErrNotFound) {
		return errorf(http.StatusNotFound, "no migration "+id)
	}
	if err != nil {
		return err
	}
	f := migrate.StudyFilter{After: c.QueryParam("after"), Limit: defaultLimit}
	if v := c.QueryParam("limit"); v != "" {
		n, err := strconv.Atoi(v)
		if err != nil || n < 1 || n > maxLimit {
			return errorf(http.StatusBadRequest, "limit: want a number from 1 to 1000")
		}
		f.Limit = n
	}
	for st := range strings.SplitSeq(c.QueryParam("state"), ",") {
		if st = strings.TrimSpace(st); st == "" {
			continue
		}
		if !migrate.StudyState(st).Valid() {
			return errorf(http.StatusBadRequest, "state: "+st+" is not pending, done, verified, failed or conflict")
		}
		f.States = append(f.States, migrate.StudyState(st))
	}
	rows := []migrate.ReportRow{}
	for st, err := range s.Migrations.Studies(ctx, m.ID, f) {
		if err != nil {
			return err
		}
		rows = append(rows, migrate.RowOf(m.Source, st))
	}
	next := ""
	if len(rows) == f.Limit {
		next = rows[len(rows)-1].StudyInstanceUID
	}
	return c.JSON(http.StatusOK, map[string]any{"studies": rows, "next": next})
}
