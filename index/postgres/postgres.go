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
