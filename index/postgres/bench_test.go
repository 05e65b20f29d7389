package postgres

import (
	"github.com/pacsd/pacsd/index/sqlindex"

	"database/sql"
	"testing"
	"time"

	"github.com/pacsd/pacsd/index/indextest"
	"github.com/pacsd/pacsd/internal/testpeer"
)

// BenchmarkPut measures ingest on a real server with fsync on: every Put
// is a committed transaction, synced to the write-ahead log (see
// indextest.BenchPut).
func BenchmarkPut(b *testing.B) {
	pg := testpeer.StartPostgresT(b)
	indextest.BenchPut(b, func(b *testing.B) *sqlindex.DB { return open(b, pg.NewDatabaseT(b)) })
}

// BenchmarkFind measures the queries of indextest.BenchFind on an archive
// of 100,000 instances. The archive is built by 8 writers without waiting
// for the log to be synced at each commit, which a throw-away database
// does not need, and analyzed, as autovacuum would do in time, before
// the queries run as Open opens the database.
func BenchmarkFind(b *testing.B) {
	pg := testpeer.StartPostgresT(b)
	url := pg.NewDatabaseT(b)
	build := open(b, url+"&synchronous_commit=off")
	start := time.Now()
	if err := indextest.FillBenchArchive(b.Context(), build, 8); err != nil {
		b.Fatal(err)
	}
	raw, err := sql.Open("pgx", url)
	if err != nil {
		b.Fatal(err)
	}
	defer raw.Close()
	if _, err := raw.ExecContext(b.Context(), "ANALYZE"); err != nil {
		b.Fatal(err)
	}
	b.Logf("archive of %d instances built in %v", indextest.BenchArchiveInstances, time.Since(start).Round(time.Millisecond))
	indextest.BenchFind(b, open(b, url))
}

// BenchmarkCorrect measures a correction of a 1,000-instance study until
// a search finds it (see indextest.BenchCorrect).
func BenchmarkCorrect(b *testing.B) {
	pg := testpeer.StartPostgresT(b)
	indextest.BenchCorrect(b, func(b *testing.B) *sqlindex.DB { return open(b, pg.NewDatabaseT(b)) })
}
