package api

import (
	"context"
	"net/http/httptest"
	"sync"
	"testing"
	"time"

	"github.com/labstack/echo/v4"

	"github.com/pacsd/pacsd/index"
)

// memFeed is a change feed in memory.
type memFeed struct {
	mu      sync.Mutex
	entries []index.FeedEntry
	added   chan struct{}
}

func (f *memFeed) add(kind index.ChangeKind, sop string) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.entries = append(f.entries, index.FeedEntry{Seq: int64(len(f.entries) + 1), Kind: kind,
		Time: time.Date(2026, 3, 1, 10, 0, 0, 0, time.UTC), StudyInstanceUID: "1.2", SeriesInstanceUID: "1.2.3", SOPInstanceUID: sop})
	close(f.added)
	f.added = make(chan struct{})
}

func (f *memFeed) Changes(ctx context.Context, after int64, limit int) ([]index.FeedEntry, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	var out []index.FeedEntry
	for _, e := range f.entries {
		if e.Seq > after && len(out) < limit {
			out = append(out, e)
		}
	}
	return out, nil
}

func (f *memFeed) LastChange(ctx context.Context) (int64, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	return int64(len(f.entries)), nil
}

func (f *memFeed) WaitChange(ctx context.Context, after int64) error {
	for {
		f.mu.Lock()
		n, added := int64(len(f.entries)), f.added
		f.mu.Unlock()
		if n > after {
			return nil
		}
		select {
		case <-added:
		case <-ctx.Done():
			return ctx.Err()
		}
	}
}

func TestChanges(t *testing.T) {
	feed := &memFeed{added: make(chan struct{})}
	feed.add(index.Created, "1.2.3.4")
	feed.add(index.Replaced, "1.2.3.4")
	feed.add(index.Deleted, "1.2.3.5")
	e := echo.New()
	(&Server{Changes: feed}).Register(e)
	srv := httptest.NewServer(e)
	t.Cleanup(srv.Close)

	var page ChangePage
	call(t, srv, "GET", "/api/changes?after=1&limit=1", "", 200, &page)
	if len(page.Changes) != 1 || page.LastSeq != 3 {
		t.Fatalf("page %+v", page)
	}
	want := Change{Seq: 2, Type: "replaced", Time: time.Date(2026, 3, 1, 10, 0, 0, 0, time.UTC), Study: "1.2", Series: "1.2.3", Instance: "1.2.3.4"}
	if page.Changes[0] != want {
		t.Errorf("change %+v, want %+v", page.Changes[0], want)
	}
	call(t, srv, "GET", "/api/changes?limit=0", "", 200, &page)
	if len(page.Changes) != 0 || page.LastSeq != 3 {
		t.Errorf("limit=0: %+v", page)
	}
	for _, q := range []string{"after=-1", "after=x", "limit=1001", "limit=-1", "wait=forever", "wait=2h"} {
		call(t, srv, "GET", "/api/changes?"+q, "", 400, nil)
	}

	// A wait that nothing ends answers an empty page when it is over.
	start := time.Now()
	call(t, srv, "GET", "/api/changes?after=3&wait=50ms", "", 200, &page)
	if len(page.Changes) != 0 || time.Since(start) < 50*time.Millisecond {
		t.Errorf("wait=50ms: %+v after %v", page, time.Since(start))
	}
	// A change during the wait answers at once.
	go func() {
		time.Sleep(20 * time.Millisecond)
		feed.add(index.Created, "1.2.3.6")
	}()
	call(t, srv, "GET", "/api/changes?after=3&wait=30s", "", 200, &page)
	if len(page.Changes) != 1 || page.Changes[0].Seq != 4 || page.Changes[0].Type != "created" {
		t.Errorf("wait=30s: %+v", page)
	}
}
