package sqlindex

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"math/rand/v2"
	"slices"
	"strings"
	"sync"
	"time"
	"unicode/utf8"

	"github.com/pacsd/pacsd/nhs"
)

var (
	// ErrSchemaTooNew reports a database migrated by a newer version of
	// the program than this one; it is left untouched.
	ErrSchemaTooNew = errors.New("index: database schema is newer than this program")
)

// Option configures a DB.
type Option func(*DB)

// WithClock sets the clock the DB reads for the times it records itself
// (UpdatedAt, and ReceivedAt when an Instance has none); time.Now by
// default.
func WithClock(now func() time.Time) Option {
	return func(db *DB) { db.now = now }
}

// DB is the index over a SQL database. It is safe for concurrent use.
type DB struct {
	db      *sql.DB
	dialect Dialect
	now     func() time.Time
	// batch is how many rows Find and FindInstances read at a time.
	batch int
	// writers queues write transactions for a dialect that takes one
	// writer at a time; nil otherwise.
	writers chan struct{}
	stmt    *statements
	// prepared caches the prepared form of every statement the DB runs:
	// preparing the dozen statements of a Put anew each time cost as
	// much as the rest of it.
	prepared sync.Map // bound query -> *sql.Stmt
	// wanted holds the queries first met inside a transaction, to prepare
	// once it is over: preparing on the pool while a transaction holds
	// the only connection (an in-memory database) would wait forever.
	wanted sync.Map // bound query -> struct{}
	// commits writes the puts of Commits, several in a transaction.
	commits *committer
	// steps are the writes of a put after its instance row (see
	// putStep).
	steps []putStep
	// changed is notified when this DB has written to the change feed.
	changed signal
	// nhsIssuers are the issuers whose Patient IDs are NHS numbers, for
	// queries by NHS number (see WithNHSIssuers).
	nhsIssuers nhs.Issuers
}

// WithNHSIssuers sets the Issuer of Patient ID values that name the NHS
// (nhs.DefaultIssuers by default): a query whose Patient ID is an NHS
// number with one of them as issuer finds every patient linked to it.
func WithNHSIssuers(issuers ...string) Option {
	return func(db *DB) { db.nhsIssuers = issuers }
}

// NHSIssuers returns the issuers whose Patient IDs are NHS numbers.
func (db *DB) NHSIssuers() nhs.Issuers { return db.nhsIssuers }

// New returns a DB over db, whose SQL dialect is d, after bringing its
// schema up to date. It refuses a database whose schema is newer than it
// knows (ErrSchemaTooNew). The DB takes db over: Close closes it.
func New(ctx context.Context, db *sql.DB, d Dialect, opts ...Option) (*DB, error) {
	if !d.valid() {
		return nil, fmt.Errorf("index: unknown dialect %v", d)
	}
	x := &DB{db: db, dialect: d, now: time.Now, batch: defaultBatch, stmt: newStatements(), nhsIssuers: nhs.DefaultIssuers}
	for _, o := range opts {
		o(x)
	}
	if d.singleWriter() {
		x.writers = make(chan struct{}, 1)
	}
	if err := x.migrate(ctx); err != nil {
		return nil, fmt.Errorf("index: migrate: %w", err)
	}
	if err := x.checkSchema(ctx); err != nil {
		return nil, err
	}
	x.steps = []putStep{x.putTrash, x.putMetadata, x.putForward, x.putIdentity, x.putOriginal, x.recordChange}
	x.commits = newCommitter(x)
	return x, nil
}

// Close closes the database, after writing the puts whose Commits are
// waiting. Commits after Close fail with index.ErrClosed.
func (db *DB) Close() error {
	db.commits.close()
	db.prepared.Range(func(_, v any) bool {
		v.(*sql.Stmt).Close()
		return true
	})
	if err := db.db.Close(); err != nil {
		return fmt.Errorf("index: close: %w", err)
	}
	return nil
}

// write runs fn in a write transaction and commits it if fn returns nil.
// A transaction that conflicts with another runs again (see retry), so fn
// must do all its work through tx.
func (db *DB) write(ctx context.Context, fn func(tx *sql.Tx) error) error {
	return db.retry(ctx, func() error {
		tx, release, err := db.begin(ctx)
		if err != nil {
			return err
		}
		defer release()
		defer tx.Rollback()
		if err := fn(tx); err != nil {
			return err
		}
		if err := tx.Commit(); err != nil {
			return final{fmt.Errorf("commit: %w", err)}
		}
		db.prepareWanted(ctx)
		return nil
	})
}

// final is an error that retry returns as it is: a commit that failed
// may have been carried out all the same, and must not run twice.
type final struct{ error }

func (f final) Unwrap() error { return f.error }

// begin starts a write transaction, after the writers queued before it
// where the dialect takes one writer at a time. The caller must call
// release once the transaction is over. Writers to PostgreSQL lock the
// rows they change themselves (see lockHierarchy).
func (db *DB) begin(ctx context.Context) (tx *sql.Tx, release func(), err error) {
	release = func() {}
	if db.writers != nil {
		select {
		case db.writers <- struct{}{}:
		case <-ctx.Done():
			return nil, nil, ctx.Err()
		}
		release = func() { <-db.writers }
	}
	tx, err = db.db.BeginTx(ctx, nil)
	if err != nil {
		release()
		return nil, nil, fmt.Errorf("begin: %w", err)
	}
	return tx, release, nil
}

// Bounds on running a write transaction again: relocks (errRelock) end
// as soon as the rows stop changing under the writer, and conflicts
// (Dialect.transient) are rare, the index's locks keeping writers apart.
const (
	maxRelocks   = 100
	maxConflicts = 8
)

// retry runs fn, which runs one write transaction, until it succeeds,
// fails otherwise than on a conflict with another transaction, or has
// conflicted too often. After a conflict it waits a little, longer each
// time and by a random part, so that the transactions that conflicted
// do not meet again.
func (db *DB) retry(ctx context.Context, fn func() error) error {
	relocks, conflicts := 0, 0
	for {
		err := fn()
		if f, ok := err.(final); ok {
			return f.error
		}
		switch {
		case err == nil:
			return nil
		case errors.Is(err, errRelock):
			if relocks++; relocks < maxRelocks {
				continue
			}
			return fmt.Errorf("the rows to change kept changing: %w", err)
		case !db.dialect.transient(err):
			return err
		}
		if conflicts++; conflicts >= maxConflicts {
			return err
		}
		wait := time.Duration(conflicts) * time.Millisecond
		wait += rand.N(wait)
		t := time.NewTimer(wait)
		select {
		case <-ctx.Done():
			t.Stop()
			return err
		case <-t.C:
		}
	}
}

// prepareWanted prepares the queries stmtFor met inside transactions.
func (db *DB) prepareWanted(ctx context.Context) {
	db.wanted.Range(func(k, _ any) bool {
		db.wanted.Delete(k)
		if _, ok := db.prepared.Load(k); ok {
			return true
		}
		st, err := db.db.PrepareContext(ctx, k.(string))
		if err != nil {
			return true
		}
		if _, loaded := db.prepared.LoadOrStore(k, st); loaded {
			st.Close()
		}
		return true
	})
}

// querier is what a *sql.DB and a *sql.Tx have in common.
type querier interface {
	ExecContext(ctx context.Context, query string, args ...any) (sql.Result, error)
	QueryContext(ctx context.Context, query string, args ...any) (*sql.Rows, error)
	QueryRowContext(ctx context.Context, query string, args ...any) *sql.Row
}

func (db *DB) exec(ctx context.Context, q querier, query string, args ...any) (sql.Result, error) {
	return db.stmtFor(ctx, q, query).ExecContext(ctx, cleanArgs(args)...)
}

func (db *DB) query(ctx context.Context, q querier, query string, args ...any) (*sql.Rows, error) {
	return db.stmtFor(ctx, q, query).QueryContext(ctx, cleanArgs(args)...)
}

func (db *DB) queryRow(ctx context.Context, q querier, query string, args ...any) *sql.Row {
	return db.stmtFor(ctx, q, query).QueryRowContext(ctx, cleanArgs(args)...)
}

// Text in the index is UTF-8 without NUL characters, which is what
// PostgreSQL's text holds; SQLite would keep anything. A header that
// holds other bytes (a value in a character set it did not declare, a
// NUL inside a value) is indexed all the same: cleanText replaces each
// byte that is not UTF-8 with U+FFFD and drops NULs, and every string
// the index writes or looks up goes through it, so that a key matches
// what the same value became when it was put.

// validText reports whether s is text the index keeps as it is.
func validText(s string) bool {
	return utf8.ValidString(s) && strings.IndexByte(s, 0) < 0
}

// cleanText returns s as the index keeps it.
func cleanText(s string) string {
	if validText(s) {
		return s
	}
	return strings.ToValidUTF8(strings.ReplaceAll(s, "\x00", ""), "\uFFFD")
}

// cleanArgs returns args with every string made clean text, copying args
// only when one is not.
func cleanArgs(args []any) []any {
	for i, a := range args {
		if s, ok := a.(string); ok && !validText(s) {
			out := slices.Clone(args)
			for j := i; j < len(out); j++ {
				if s, ok := out[j].(string); ok {
					out[j] = cleanText(s)
				}
			}
			return out
		}
	}
	return args
}

// stmtFor returns query, prepared once per DB (and by database/sql once
// per connection), for use by q: the DB itself or a transaction. A query
// that fails to prepare runs unprepared, to report its error where it is
// used.
func (db *DB) stmtFor(ctx context.Context, q querier, query string) statement {
	bound := db.dialect.bind(query)
	v, ok := db.prepared.Load(bound)
	tx, inTx := q.(*sql.Tx)
	if !ok && inTx {
		db.wanted.Store(bound, struct{}{})
		return unprepared{q, bound}
	}
	if !ok {
		st, err := db.db.PrepareContext(ctx, bound)
		if err != nil {
			return unprepared{q, bound}
		}
		if v, ok = db.prepared.LoadOrStore(bound, st); ok {
			st.Close()
		} else {
			v = st
		}
	}
	st := v.(*sql.Stmt)
	if inTx {
		st = tx.StmtContext(ctx, st)
	}
	return st
}

// statement is a query ready to run: a *sql.Stmt, or an unprepared query.
type statement interface {
	ExecContext(ctx context.Context, args ...any) (sql.Result, error)
	QueryContext(ctx context.Context, args ...any) (*sql.Rows, error)
	QueryRowContext(ctx context.Context, args ...any) *sql.Row
}

type unprepared struct {
	q     querier
	query string
}

func (u unprepared) ExecContext(ctx context.Context, args ...any) (sql.Result, error) {
	return u.q.ExecContext(ctx, u.query, args...)
}

func (u unprepared) QueryContext(ctx context.Context, args ...any) (*sql.Rows, error) {
	return u.q.QueryContext(ctx, u.query, args...)
}

func (u unprepared) QueryRowContext(ctx context.Context, args ...any) *sql.Row {
	return u.q.QueryRowContext(ctx, u.query, args...)
}

// micros is how the index keeps a time: microseconds since 1970 in UTC,
// an integer that every dialect stores, sorts and compares alike.
func micros(t time.Time) int64 { return t.UnixMicro() }

func fromMicros(us int64) time.Time { return time.UnixMicro(us).UTC() }
