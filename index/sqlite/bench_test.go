package sqlite

import (
	"github.com/pacsd/pacsd/index/sqlindex"

	"path/filepath"
	"testing"

	"github.com/pacsd/pacsd/index/indextest"
)

// BenchmarkPut measures ingest into a database file with synchronous=FULL:
// every Put is a committed, synced transaction (see indextest.BenchPut).
func BenchmarkPut(b *testing.B) {
	indextest.BenchPut(b, func(b *testing.B) *sqlindex.DB {
		return open(b, filepath.Join(b.TempDir(), "index.db"))
	})
}

// BenchmarkCorrect measures a correction of a 1,000-instance study until
// a search finds it (see indextest.BenchCorrect).
func BenchmarkCorrect(b *testing.B) {
	indextest.BenchCorrect(b, func(b *testing.B) *sqlindex.DB {
		return open(b, filepath.Join(b.TempDir(), "index.db"))
	})
}
