// Package sqlite opens the index in a SQLite database file, through
// github.com/mattn/go-sqlite3 (cgo).
//
// The database runs in WAL mode, so that queries go on while an instance
// is being indexed, with synchronous=FULL: a commit the archive has
// acknowledged to a modality survives a power loss. Foreign keys are
// enforced. Write transactions begin with BEGIN IMMEDIATE, taking the
// write lock before they read, and wait for it up to a busy timeout, so
// concurrent writers, in this process or another, queue instead of
// failing with SQLITE_BUSY.
package sqlite
