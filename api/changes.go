package api

import (
	"context"
	"errors"
	"net/http"
	"strconv"
	"time"

	"github.com/labstack/echo/v4"

	"github.com/pacsd/pacsd/index"
)

// ChangeFeed is the index's change feed (see package index).
type ChangeFeed interface {
	// Changes returns up to limit entries after sequence number after.
	Changes(ctx context.Context, after int64, limit int) ([]index.FeedEntry, error)
	// LastChange returns the newest entry's sequence number, 0 for none.
	LastChange(ctx context.Context) (int64, error)
	// WaitChange returns once an entry follows after, or with ctx's
	// error.
	WaitChange(ctx context.Context, after int64) error
}

// maxChangeWait bounds the wait of GET /api/changes, below the idle
// timeouts of the proxies usually put in front of pacsd.
const maxChangeWait = 60 * time.Second

// Change is one entry of GET /api/changes.
type Change struct {
	Seq      int64     `json:"seq"`
	Type     string    `json:"type"`
	Time     time.Time `json:"time"`
	Study    string    `json:"study"`
	Series   string    `json:"series"`
	Instance string    `json:"instance"`
}

// ChangePage is the answer of GET /api/changes.
type ChangePage struct {
	Changes []Change `json:"changes"`
	// LastSeq is the newest sequence number of the feed when the
	// request was answered; a client follows from it.
	LastSeq int64 `json:"last_seq"`
}

// getChanges answers GET /api/changes?after=SEQ&limit=N&wait=DURATION.
func (s *Server) getChanges(c echo.Context) error {
	after, err := int64Param(c, "after", 0)
	if err != nil {
		return err
	}
	limit := 100
	if v := c.QueryParam("limit"); v != "" {
		n, err := strconv.Atoi(v)
		if err != nil || n < 0 || n > 1000 {
			return errorf(http.StatusBadRequest, "limit: want 0 to 1000")
		}
		limit = n
	}
	var wait time.Duration
	if v := c.QueryParam("wait"); v != "" {
		if wait, err = time.ParseDuration(v); err != nil || wait < 0 || wait > maxChangeWait {
			return errorf(http.StatusBadRequest, "wait: want a duration from 0s to "+maxChangeWait.String())
		}
	}
	ctx := c.Request().Context()
	entries, err := s.Changes.Changes(ctx, after, limit)
	if err != nil {
		return err
	}
	if len(entries) == 0 && limit > 0 && wait > 0 {
		wctx, cancel := context.WithTimeout(ctx, wait)
		err := s.Changes.WaitChange(wctx, after)
		cancel()
		switch {
		case err == nil:
			if entries, err = s.Changes.Changes(ctx, after, limit); err != nil {
				return err
			}
		case errors.Is(err, context.DeadlineExceeded) && ctx.Err() == nil:
			// Nothing new within the wait: an empty page.
		default:
			return err
		}
	}
	page := ChangePage{Changes: make([]Change, len(entries))}
	for i, e := range entries {
		page.Changes[i] = Change{Seq: e.Seq, Type: e.Kind.String(), Time: e.Time.UTC(),
			Study: e.StudyInstanceUID, Series: e.SeriesInstanceUID, Instance: e.SOPInstanceUID}
	}
	if page.LastSeq, err = s.Changes.LastChange(ctx); err != nil {
		return err
	}
	// Entries read before LastChange may be followed by newer ones; the
	// last sequence number is never older than what the page holds.
	if n := len(entries); n > 0 && entries[n-1].Seq > page.LastSeq {
		page.LastSeq = entries[n-1].Seq
	}
	return c.JSON(http.StatusOK, page)
}

// int64Param reads a query parameter that is a number of at least 0.
func int64Param(c echo.Context, name string, def int64) (int64, error) {
	v := c.QueryParam(name)
	if v == "" {
		return def, nil
	}
	n, err := strconv.ParseInt(v, 10, 64)
	if err != nil || n < 0 {
		return 0, errorf(http.StatusBadRequest, name+": want a number of 0 or more")
	}
	return n, nil
}
