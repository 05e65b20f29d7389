package api

import (
	"context"
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"strconv"
	"time"

	"github.com/labstack/echo/v4"

	"github.com/pacsd/pacsd/dicom/tag"
	"github.com/pacsd/pacsd/route"
)

// QueueStatus is the state of one destination's queue, as GET /api/queue
// and `pacsd queue --json` report it.
type QueueStatus struct {
	Name     string `json:"name"`
	Kind     string `json:"kind"`
	Address  string `json:"address"`
	Pending  int    `json:"pending"`
	InFlight int    `json:"in_flight"`
	Failed   int    `json:"failed"`
	Done24h  int    `json:"done_24h"`
	// OldestPendingSeconds is how long the oldest pending task has
	// waited, 0 when none is pending.
	OldestPendingSeconds float64    `json:"oldest_pending_seconds"`
	LastError            string     `json:"last_error"`
	LastSuccess          *time.Time `json:"last_success"`
}

// QueueReport is the state of the queue of every configured destination,
// and of any other the queue holds tasks for (a destination since taken
// out of the configuration), in name order.
type QueueReport struct {
	Destinations []QueueStatus `json:"destinations"`
}

// Report reads the state of the queue at now.
func Report(ctx context.Context, q route.Queue, dests []Destination, now time.Time) (*QueueReport, error) {
	stats, err := q.Stats(ctx)
	if err != nil {
		return nil, err
	}
	by := map[string]route.Stats{}
	for _, s := range stats {
		by[s.Destination] = s
	}
	r := &QueueReport{Destinations: []QueueStatus{}}
	add := func(d Destination, s route.Stats) {
		qs := QueueStatus{Name: d.Name, Kind: d.Kind, Address: d.Address, Pending: s.Pending, InFlight: s.InFlight,
			Failed: s.Failed, Done24h: s.Done24h, LastError: s.LastError}
		if !s.OldestPending.IsZero() {
			qs.OldestPendingSeconds = max(0, now.Sub(s.OldestPending).Seconds())
		}
		if !s.LastSuccess.IsZero() {
			t := s.LastSuccess.UTC()
			qs.LastSuccess = &t
		}
		r.Destinations = append(r.Destinations, qs)
	}
	for _, d := range dests {
		add(d, by[d.Name])
		delete(by, d.Name)
	}
	for _, s := range stats {
		if _, left := by[s.Destination]; left {
			add(Destination{Name: s.Destination, Kind: "unconfigured"}, s)
		}
	}
	return r, nil
}

func (s *Server) getQueue(c echo.Context) error {
	r, err := Report(c.Request().Context(), s.Queue, s.Destinations, time.Now())
	if err != nil {
		return err
	}
	return c.JSON(http.StatusOK, r)
}

// taskJSON is a task as GET /api/queue/{dest}/tasks lists it.
type taskJSON struct {
	Study       string     `json:"study"`
	Patient     string     `json:"patient"`
	Destination string     `json:"destination"`
	State       string     `json:"state"`
	Attempts    int        `json:"attempts"`
	Instances   int        `json:"instances"`
	Refused     int        `json:"refused"`
	LastAttempt *time.Time `json:"last_attempt"`
	NextAttempt *time.Time `json:"next_attempt"`
	LastError   string     `json:"last_error"`
}

func timePtr(t time.Time) *time.Time {
	if t.IsZero() {
		return nil
	}
	u := t.UTC()
	return &u
}

func (s *Server) getTasks(c echo.Context) error {
	dest := c.Param("dest")
	if _, ok := s.destination(dest); !ok {
		return errorf(http.StatusNotFound, "no destination "+strconv.Quote(dest))
	}
	q := route.TaskQuery{Destination: dest, Limit: 100}
	if v := c.QueryParam("state"); v != "" {
		st, err := route.ParseState(v)
		if err != nil {
			return errorf(http.StatusBadRequest, "state: "+err.Error())
		}
		q.State = st
	}
	if v := c.QueryParam("limit"); v != "" {
		n, err := strconv.Atoi(v)
		if err != nil || n < 1 || n > 1000 {
			return errorf(http.StatusBadRequest, "limit: want 1 to 1000")
		}
		q.Limit = n
	}
	if v := c.QueryParam("after"); v != "" {
		id, err := strconv.ParseInt(v, 10, 64)
		if err != nil || id < 0 {
			return errorf(http.StatusBadRequest, "after: not a cursor this API gave")
		}
		q.AfterID = id
	}
	ctx := c.Request().Context()
	tasks, err := s.Queue.Tasks(ctx, q)
	if err != nil {
		return err
	}
	out := struct {
		Tasks []taskJSON `json:"tasks"`
		Next  string     `json:"next"`
	}{Tasks: []taskJSON{}}
	for _, t := range tasks {
		tj := taskJSON{Study: t.Study, Destination: t.Destination, State: string(t.State), Attempts: t.Attempts,
			Instances: t.Pending + t.Sent + t.Refused, Refused: t.Refused, LastAttempt: timePtr(t.LastAttempt), LastError: t.LastError}
		if t.State == route.Pending {
			tj.NextAttempt = timePtr(t.Due)
		}
		if s.Index != nil {
			if p, err := s.Index.StudyPatient(ctx, t.Study); err == nil {
				tj.Patient = p.Attributes.String(tag.PatientName)
			}
		}
		out.Tasks = append(out.Tasks, tj)
	}
	if len(tasks) == q.Limit {
		out.Next = strconv.FormatInt(tasks[len(tasks)-1].ID, 10)
	}
	return c.JSON(http.StatusOK, out)
}

// readJSON decodes a request body that may be empty.
func readJSON(c echo.Context, v any) error {
	body := io.LimitReader(c.Request().Body, 1<<20)
	err := json.NewDecoder(body).Decode(v)
	if err != nil && !errors.Is(err, io.EOF) {
		return errorf(http.StatusBadRequest, "body: "+err.Error())
	}
	return nil
}

func (s *Server) postRetry(c echo.Context) error {
	dest := c.Param("dest")
	if _, ok := s.destination(dest); !ok {
		return errorf(http.StatusNotFound, "no destination "+strconv.Quote(dest))
	}
	var body struct {
		Failed bool `json:"failed"`
	}
	if err := readJSON(c, &body); err != nil {
		return err
	}
	n, err := s.Queue.Retry(c.Request().Context(), dest, body.Failed)
	if err != nil {
		return err
	}
	if s.Wake != nil {
		s.Wake(dest)
	}
	return c.JSON(http.StatusOK, map[string]int{"requeued": n})
}

func (s *Server) deleteTask(c echo.Context) error {
	dest := c.Param("dest")
	if _, ok := s.destination(dest); !ok {
		return errorf(http.StatusNotFound, "no destination "+strconv.Quote(dest))
	}
	if err := s.Queue.Drop(c.Request().Context(), dest, c.Param("study")); err != nil {
		return err
	}
	return c.NoContent(http.StatusNoContent)
}
