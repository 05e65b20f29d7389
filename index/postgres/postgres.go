// Package postgres opens the index in a PostgreSQL database, through
// github.com/jackc/pgx/v5 and its database/sql driver, so that the index
// runs the same SQL here as on SQLite.
//
// Several pacsd nodes may share one database. Nodes starting together on
// a new database migrate it one after the other, under an advisory lock;
// writers lock the rows of the hierarchy they change, so that writers of
// different patients run side by side and two nodes storing the same
// instance at once end with one record of it (see the index package).
// Transactions run at PostgreSQL's default isolation, READ COMMITTED.
package postgres

import (
	"github.com/pacsd/pacsd/index/sqlindex"

	"context"
	"fmt"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/stdlib"
)

// MaxConns is how many connections a DB opens to the server at most, and
// keeps open when idle: a connection to PostgreSQL costs a process on the
// server, and opening one costs more than most of the index's queries.
const MaxConns = 32

// Open opens the index in the database at url and brings its schema up to
// date. url is a PostgreSQL connection URL or keyword/value string as pgx
// reads them, such as postgres://USER@HOST:PORT/DB?sslmode=disable; the
// usual PG* environment variables fill in what it leaves out.
func Open(ctx context.Context, url string, opts ...sqlindex.Option) (*sqlindex.DB, error) {
	cfg, err := pgx.ParseConfig(url)
	if err != nil {
		return nil, fmt.Errorf("postgres: %w", err)
	}
	db := stdlib.OpenDB(*cfg)
	db.SetMaxOpenConns(MaxConns)
	db.SetMaxIdleConns(MaxConns)
	db.SetConnMaxIdleTime(5 * time.Minute)
	x, err := sqlindex.New(ctx, db, sqlindex.PostgreSQL, opts...)
	if err != nil {
		db.Close()
		return nil, fmt.Errorf("postgres: %s:%d/%s: %w", cfg.Host, cfg.Port, cfg.Database, err)
	}
	return x, nil
}
