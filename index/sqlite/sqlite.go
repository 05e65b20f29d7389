package sqlite

import (
	"github.com/pacsd/pacsd/index/sqlindex"

	"context"
	"database/sql"
	"errors"
	"fmt"
	"net/url"
	"os"
	"path/filepath"
	"strconv"
	"time"

	"github.com/mattn/go-sqlite3"
)

// Memory is the path that opens a private in-memory database, for tests.
// It lives as long as the DB, on a single connection: every call waits
// for the one before to end.
const Memory = ":memory:"

// BusyTimeout is how long a write waits for another process's write
// transaction to end before it fails. Writers of one DB queue in the DB
// itself and never reach it.
const BusyTimeout = 30 * time.Second

// Open opens or creates the index database at path, creating its
// directory if missing, and brings its schema up to date.
func Open(ctx context.Context, path string, opts ...sqlindex.Option) (*sqlindex.DB, error) {
	if path != Memory {
		if err := os.MkdirAll(filepath.Dir(path), 0o750); err != nil {
			return nil, fmt.Errorf("sqlite: %w", err)
		}
	}
	db, err := sql.Open("sqlite3", dsn(path))
	if err != nil {
		return nil, fmt.Errorf("sqlite: open %s: %w", path, err)
	}
	if path == Memory {
		// Every connection to ":memory:" is a database of its own.
		db.SetMaxOpenConns(1)
	}
	if err := wal(ctx, db); err != nil {
		db.Close()
		return nil, fmt.Errorf("sqlite: open %s: %w", path, err)
	}
	x, err := sqlindex.New(ctx, db, sqlindex.SQLite, opts...)
	if err != nil {
		db.Close()
		return nil, fmt.Errorf("sqlite: %s: %w", path, err)
	}
	return x, nil
}

// wal puts the database in WAL mode, which it keeps in its file. Turning
// a new file to WAL takes an exclusive lock, for which SQLite does not
// always wait on its own (several processes creating one database at
// once), so wal waits for it here, up to BusyTimeout.
func wal(ctx context.Context, db *sql.DB) error {
	ctx, cancel := context.WithTimeout(ctx, BusyTimeout)
	defer cancel()
	for {
		var mode string
		err := db.QueryRowContext(ctx, "PRAGMA journal_mode = WAL").Scan(&mode)
		var se sqlite3.Error
		switch {
		case errors.As(err, &se) && se.Code == sqlite3.ErrBusy:
		case err != nil:
			return fmt.Errorf("journal mode: %w", err)
		case mode == "wal" || mode == "memory":
			return nil
		default:
			return fmt.Errorf("journal mode is %s, not wal", mode)
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("journal mode: %w", err)
		case <-time.After(10 * time.Millisecond):
		}
	}
}

// dsn returns the data source name that opens path with the settings the
// package documentation describes. The driver applies them to every
// connection it opens, as SQLite keeps most of them per connection.
func dsn(path string) string {
	q := url.Values{}
	q.Set("_txlock", "immediate")
	q.Set("_foreign_keys", "on")
	q.Set("_busy_timeout", strconv.FormatInt(BusyTimeout.Milliseconds(), 10))
	// The driver's default is NORMAL, which may lose the last commits at
	// a power loss in WAL mode.
	q.Set("_synchronous", "FULL")
	if path == Memory {
		return "file::memory:?" + q.Encode()
	}
	return "file:" + (&url.URL{Path: path}).EscapedPath() + "?" + q.Encode()
}
