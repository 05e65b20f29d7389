package sqlite

import (
	"path/filepath"
	"testing"
	"time"

	"github.com/pacsd/pacsd/index/sqlindex"
	"github.com/pacsd/pacsd/recompress/recompresstest"
)

// TestCompressions runs the conformance suite of archive compression's
// state on the index.
func TestCompressions(t *testing.T) {
	recompresstest.Run(t, func(t *testing.T, now func() time.Time, n int) []recompresstest.Handle {
		path := filepath.Join(t.TempDir(), "index.db")
		var hs []recompresstest.Handle
		for range n {
			db := open(t, path, sqlindex.WithClock(now))
			hs = append(hs, recompresstest.Handle{Index: db.Compressions(), Put: db.Put})
		}
		return hs
	})
}
