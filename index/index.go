// Package index records the instances the archive keeps and answers
// questions about them: which instances exist, where their objects are,
// and the attributes of their patients, studies and series that queries
// (C-FIND, QIDO-RS) match on and return.
//
// The index follows the DICOM information model: a patient has studies, a
// study has series, a series has instances. Each level is one table,
// holding the attributes of that level as the latest instance received
// carried them, and the aggregates the query models define (numbers of
// related studies, series and instances, Modalities in Study, SOP Classes
// in Study), kept exact in the transaction that changes an instance.
//
// A patient is identified by Patient ID and Issuer of Patient ID together:
// the same Patient ID from two issuers names two patients, and an empty
// issuer is a value of its own. Instances whose header names no patient
// share the patient with an empty ID and issuer.
//
// Attributes of a patient, study or series come from the header of the
// latest instance received of it, by Instance.ReceivedAt; an instance
// received earlier but indexed later does not overwrite them, so that
// reindexing old instances in any order gives the same result. The same
// rule decides the parent of a study or series when instances disagree:
// a study follows the patient of its latest instance, a series the study
// of its latest instance. Deleting the latest instance does not roll its
// attributes back. A patient, study or series left without instances is
// deleted.
//
// The SQL is shared by the dialects (see Dialect); the backends open the
// database and call New: index/sqlite now, PostgreSQL later. The package
// index/indextest holds the conformance suite every backend passes.
package index

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"time"

	"github.com/pacsd/pacsd/dicom"
)

var (
	// ErrNotFound reports that no instance, series, study or patient has
	// the identifier asked for.
	ErrNotFound = errors.New("index: not found")

	// ErrSchemaTooNew reports a database migrated by a newer version of
	// the program than this one; it is left untouched.
	ErrSchemaTooNew = errors.New("index: database schema is newer than this program")
)

// Instance is the archive's record of one stored instance.
type Instance struct {
	SOPInstanceUID    string
	SOPClassUID       string
	SeriesInstanceUID string
	StudyInstanceUID  string

	// Key is where the object is in storage.
	Key string
	// Size is the object's length in bytes.
	Size int64
	// SHA256 is the object's SHA-256 digest, in lower-case hexadecimal.
	SHA256            string
	TransferSyntaxUID string

	// CallingAE and CalledAE record who sent the instance to whom.
	CallingAE string
	CalledAE  string
	// ReceivedAt is when the archive received the instance. The index
	// keeps it to the microsecond, in UTC; Put uses the DB's clock when
	// it is zero.
	ReceivedAt time.Time

	// Header is the instance's decoded header, from which Put takes the
	// attributes of the patient, study, series and instance. It may be
	// nil, or partial when the header could not be read to its end: what
	// it lacks is indexed as empty. Instance and Instances leave it nil.
	Header *dicom.Dataset
}

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
	// writers queues write transactions for a dialect that takes one
	// writer at a time; nil otherwise.
	writers chan struct{}
	stmt    *statements
}

// New returns a DB over db, whose SQL dialect is d, after bringing its
// schema up to date. It refuses a database whose schema is newer than it
// knows (ErrSchemaTooNew). The DB takes db over: Close closes it.
func New(ctx context.Context, db *sql.DB, d Dialect, opts ...Option) (*DB, error) {
	if !d.valid() {
		return nil, fmt.Errorf("index: unknown dialect %v", d)
	}
	x := &DB{db: db, dialect: d, now: time.Now, stmt: newStatements()}
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
	return x, nil
}

// Close closes the database.
func (db *DB) Close() error {
	if err := db.db.Close(); err != nil {
		return fmt.Errorf("index: close: %w", err)
	}
	return nil
}

// write runs fn in a write transaction and commits it if fn returns nil.
// Write transactions run one at a time (see Dialect.lockWrites).
func (db *DB) write(ctx context.Context, fn func(tx *sql.Tx) error) error {
	if db.writers != nil {
		select {
		case db.writers <- struct{}{}:
		case <-ctx.Done():
			return ctx.Err()
		}
		defer func() { <-db.writers }()
	}
	tx, err := db.db.BeginTx(ctx, nil)
	if err != nil {
		return fmt.Errorf("begin: %w", err)
	}
	defer tx.Rollback()
	if err := db.dialect.lockWrites(ctx, tx); err != nil {
		return err
	}
	if err := fn(tx); err != nil {
		return err
	}
	if err := tx.Commit(); err != nil {
		return fmt.Errorf("commit: %w", err)
	}
	return nil
}

// querier is what a *sql.DB and a *sql.Tx have in common.
type querier interface {
	ExecContext(ctx context.Context, query string, args ...any) (sql.Result, error)
	QueryContext(ctx context.Context, query string, args ...any) (*sql.Rows, error)
	QueryRowContext(ctx context.Context, query string, args ...any) *sql.Row
}

func (db *DB) exec(ctx context.Context, q querier, query string, args ...any) (sql.Result, error) {
	return q.ExecContext(ctx, db.dialect.bind(query), args...)
}

func (db *DB) query(ctx context.Context, q querier, query string, args ...any) (*sql.Rows, error) {
	return q.QueryContext(ctx, db.dialect.bind(query), args...)
}

func (db *DB) queryRow(ctx context.Context, q querier, query string, args ...any) *sql.Row {
	return q.QueryRowContext(ctx, db.dialect.bind(query), args...)
}

// micros is how the index keeps a time: microseconds since 1970 in UTC,
// an integer that every dialect stores, sorts and compares alike.
func micros(t time.Time) int64 { return t.UnixMicro() }

func fromMicros(us int64) time.Time { return time.UnixMicro(us).UTC() }
