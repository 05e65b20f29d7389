package sqlindex

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"io"
	"net"
	"strconv"
	"strings"
)

// Dialect names the SQL database behind a DB. The index keeps one body of
// SQL for all of them; a Dialect covers the little that differs: how
// parameters are written, which migration files apply, and how writers are
// kept from interleaving.
type Dialect int

const (
	// SQLite is SQLite 3.37 or later (for STRICT tables and RETURNING),
	// through a driver whose transactions begin with BEGIN IMMEDIATE.
	SQLite Dialect = iota + 1
	// PostgreSQL is PostgreSQL 12 or later.
	PostgreSQL
)

func (d Dialect) String() string {
	switch d {
	case SQLite:
		return "sqlite"
	case PostgreSQL:
		return "postgres"
	}
	return "Dialect(" + strconv.Itoa(int(d)) + ")"
}

func (d Dialect) valid() bool { return d == SQLite || d == PostgreSQL }

// bind rewrites the ? parameters of query into the dialect's form. The
// index's queries hold no ? anywhere else, so no quoting needs parsing.
func (d Dialect) bind(query string) string {
	if d != PostgreSQL || !strings.Contains(query, "?") {
		return query
	}
	var b strings.Builder
	b.Grow(len(query) + 16)
	n := 0
	for _, r := range query {
		if r == '?' {
			n++
			b.WriteByte('$')
			b.WriteString(strconv.Itoa(n))
			continue
		}
		b.WriteRune(r)
	}
	return b.String()
}

// singleWriter reports whether the database takes one writer at a time.
// SQLite does, and a writer that waits for the lock inside SQLite polls
// for it with sleeps; the DB then queues its writers itself, in the
// order they came, and SQLite's busy timeout is left to arbitrate between
// processes. PostgreSQL runs writers side by side, each holding the locks
// of the rows it changes (see lock.go).
func (d Dialect) singleWriter() bool { return d == SQLite }

// migrationLockKey is the PostgreSQL advisory lock that serializes
// migrations (the bytes of "pacsdmig"): several nodes starting at once
// on a new database migrate it one after the other, and the later ones
// find it done.
const migrationLockKey = 0x70616373646d6967

// lockMigrations makes a migration wait for the others. SQLite's BEGIN
// IMMEDIATE already serializes them; PostgreSQL takes a
// transaction-scoped advisory lock, released at commit or rollback.
func (d Dialect) lockMigrations(ctx context.Context, tx *sql.Tx) error {
	if d != PostgreSQL {
		return nil
	}
	if _, err := tx.ExecContext(ctx, "SELECT pg_advisory_xact_lock($1)", int64(migrationLockKey)); err != nil {
		return fmt.Errorf("lock migrations: %w", err)
	}
	return nil
}

// transient reports whether err ended a write transaction before it
// committed, in a way that running it again can get past: a conflict
// with another transaction (a serialization failure, a deadlock, a unique
// key another writer took first), or the loss of the connection or of
// the server, as a restart or failover of PostgreSQL causes. The index's
// locks keep writers from conflicts; retrying is what is left to do
// should one happen all the same.
func (d Dialect) transient(err error) bool {
	if d != PostgreSQL {
		return false
	}
	if e, ok := errors.AsType[safeToRetryError](err); ok && e.SafeToRetry() {
		return true
	}
	if _, ok := errors.AsType[net.Error](err); ok || errors.Is(err, io.ErrUnexpectedEOF) {
		return true
	}
	e, ok := errors.AsType[sqlStateError](err)
	if !ok {
		return false
	}
	switch code := e.SQLState(); {
	case code == "40001", // serialization_failure
		code == "40P01",               // deadlock_detected
		code == "23505",               // unique_violation
		code == "57P01",               // admin_shutdown
		code == "57P02",               // crash_shutdown
		code == "57P03",               // cannot_connect_now
		strings.HasPrefix(code, "08"): // connection_exception
		return true
	}
	return false
}

// sqlStateError is an error of PostgreSQL, which its drivers give with
// its SQLSTATE code.
type sqlStateError interface {
	error
	SQLState() string
}

// safeToRetryError is an error of pgx that says whether it came before
// anything was sent to the server.
type safeToRetryError interface {
	error
	SafeToRetry() bool
}

// pattern returns a condition that expr, a column of one value, matches
// the DICOM wild card value v case-sensitively, and appends its
// arguments to args. SQLite compares by GLOB, after a range on the
// pattern's literal prefix that an index can answer; PostgreSQL by LIKE,
// which an index with text_pattern_ops answers.
func (d Dialect) pattern(expr, v string, args *[]any) string {
	if d == PostgreSQL {
		*args = append(*args, likePattern(v))
		return expr + " LIKE ?"
	}
	cond := ""
	if prefix := literalPrefix(v); prefix != "" {
		cond = expr + " >= ? AND " + expr + " < ? AND "
		*args = append(*args, prefix, prefixEnd(prefix))
	}
	*args = append(*args, globPattern(v, false))
	return cond + expr + " GLOB ?"
}

// anyValue returns a condition that one of the backslash-separated
// values of expr is v, or matches it when v holds wild cards, and
// appends its arguments to args. In SQLite a wild card value may match
// across two values when a "*" stands between other characters (see
// crossesValues); the caller checks those matches again.
func (d Dialect) anyValue(expr, v string, args *[]any) string {
	if d == PostgreSQL {
		p := likePattern(v)
		if !hasWildcard(v) {
			p = v
		}
		*args = append(*args, p)
		op := "LIKE"
		if !hasWildcard(v) {
			op = "="
		}
		return "EXISTS (SELECT 1 FROM unnest(string_to_array(" + expr + ", '\\')) AS v(x) WHERE x " + op + " ?)"
	}
	*args = append(*args, `*\`+globPattern(v, true)+`\*`)
	return "('\\' || " + expr + " || '\\') GLOB ?"
}
