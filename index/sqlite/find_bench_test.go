package sqlite

import (
	"github.com/pacsd/pacsd/index/sqlindex"

	"context"
	"database/sql"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/pacsd/pacsd/index/indextest"
)

// benchArchive builds the archive of indextest.FillBenchArchive once per
// test binary, in a directory of its own that TestMain removes. It writes
// with synchronous=OFF, as the durability of a throw-away file does not
// matter, and queries then run on it as Open opens it.
var benchArchive = sync.OnceValues(func() (string, error) {
	dir, err := os.MkdirTemp("", "pacsd-index-bench-")
	if err != nil {
		return "", err
	}
	benchDirs = append(benchDirs, dir)
	path := filepath.Join(dir, "index.db")
	raw, err := sql.Open("sqlite3", strings.Replace(dsn(path), "_synchronous=FULL", "_synchronous=OFF", 1))
	if err != nil {
		return "", err
	}
	ctx := context.Background()
	if err := wal(ctx, raw); err != nil {
		return "", err
	}
	db, err := sqlindex.New(ctx, raw, sqlindex.SQLite)
	if err != nil {
		return "", err
	}
	defer db.Close()
	start := time.Now()
	if err := indextest.FillBenchArchive(ctx, db, 1); err != nil {
		return "", err
	}
	benchBuild = time.Since(start)
	return path, nil
})

var (
	benchDirs  []string
	benchBuild time.Duration
)

func TestMain(m *testing.M) {
	code := m.Run()
	for _, d := range benchDirs {
		os.RemoveAll(d)
	}
	os.Exit(code)
}

// BenchmarkFind measures the queries of indextest.BenchFind on an archive
// of 100,000 instances (see benchArchive).
func BenchmarkFind(b *testing.B) {
	path, err := benchArchive()
	if err != nil {
		b.Fatal(err)
	}
	b.Logf("archive of %d instances built in %v", indextest.BenchArchiveInstances, benchBuild.Round(time.Millisecond))
	indextest.BenchFind(b, open(b, path))
}
