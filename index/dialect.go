package index

import (
	"context"
	"database/sql"
	"fmt"
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
// processes.
func (d Dialect) singleWriter() bool { return d == SQLite }

// writeLockKey is the PostgreSQL advisory lock that serializes the index's
// write transactions (the bytes of "pacsdidx").
const writeLockKey = 0x7061637364696478

// lockWrites makes a write transaction wait for the others. Put and
// Delete read the hierarchy, then change it; run side by side, two of them
// could each miss what the other did (a parent left empty by both).
// SQLite's BEGIN IMMEDIATE already serializes them; PostgreSQL takes a
// transaction-scoped advisory lock, released at commit or rollback.
func (d Dialect) lockWrites(ctx context.Context, tx *sql.Tx) error {
	if d != PostgreSQL {
		return nil
	}
	if _, err := tx.ExecContext(ctx, "SELECT pg_advisory_xact_lock($1)", int64(writeLockKey)); err != nil {
		return fmt.Errorf("lock writes: %w", err)
	}
	return nil
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
