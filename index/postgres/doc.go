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
