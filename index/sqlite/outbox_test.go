package sqlite

import (
	"path/filepath"
	"testing"
	"time"

	"github.com/pacsd/pacsd/index/sqlindex"
	"github.com/pacsd/pacsd/route"
	"github.com/pacsd/pacsd/route/routetest"
)

// TestOutbox runs the conformance suite of the forwarding queue on the
// index's outbox.
func TestOutbox(t *testing.T) {
	path := filepath.Join(t.TempDir(), "index.db")
	routetest.RunQueueTests(t, func(t *testing.T, now func() time.Time) route.Queue {
		return open(t, path, sqlindex.WithClock(now)).Outbox()
	})
}
