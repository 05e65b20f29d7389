package sqlindex

import (
	"context"
	"database/sql"
	"embed"
	"fmt"
	"io/fs"
	"path"
	"slices"
	"strconv"
	"strings"
)

// The schema is built by numbered migrations, each applied once and
// recorded in schema_migrations. A migration is named
// NNNN_description.sql when its SQL serves every dialect, and
// NNNN_description.<dialect>.sql (sqlite, postgres) where the SQL must
// differ; a version then needs a file for every dialect.
//
//go:embed migrations/*.sql
var migrationFS embed.FS

type migration struct {
	version int
	name    string
	sql     string
}

// migrations returns the migrations of dialect d in order of version.
// Versions may leave numbers free: features developed side by side take
// numbers from ranges of their own, and a database records each version
// it has (see migrate), not only the latest.
func migrations(fsys fs.FS, d Dialect) ([]migration, error) {
	files, err := fs.Glob(fsys, "migrations/*.sql")
	if err != nil {
		return nil, err
	}
	type choice struct{ shared, own, other string }
	byVersion := map[int]*choice{}
	maxVersion := 0
	for _, f := range files {
		stem := strings.TrimSuffix(path.Base(f), ".sql")
		num, desc, ok := strings.Cut(stem, "_")
		v, err := strconv.Atoi(num)
		if !ok || err != nil || v <= 0 || len(num) != 4 || desc == "" {
			return nil, fmt.Errorf("migration %s: name is not NNNN_description[.dialect].sql", path.Base(f))
		}
		c := byVersion[v]
		if c == nil {
			c = &choice{}
			byVersion[v] = c
		}
		slot := &c.shared
		if _, dialect, ok := strings.Cut(desc, "."); ok {
			slot = &c.other
			if dialect == d.String() {
				slot = &c.own
			}
		}
		if *slot != "" && slot != &c.other {
			return nil, fmt.Errorf("migrations %s and %s have the same version", path.Base(*slot), path.Base(f))
		}
		*slot = f
		maxVersion = max(maxVersion, v)
	}
	if byVersion[1] == nil {
		return nil, fmt.Errorf("migration version 1, which makes the schema, is missing")
	}
	ms := make([]migration, 0, len(byVersion))
	for v := 1; v <= maxVersion; v++ {
		c := byVersion[v]
		if c == nil {
			continue
		}
		f := c.own
		if f == "" {
			f = c.shared
		}
		if f == "" {
			return nil, fmt.Errorf("migration version %d has no file for %s", v, d)
		}
		b, err := fs.ReadFile(fsys, f)
		if err != nil {
			return nil, err
		}
		name := strings.TrimSuffix(path.Base(f), ".sql")
		ms = append(ms, migration{version: v, name: name, sql: string(b)})
	}
	return ms, nil
}

// migrate brings the schema up to date in one transaction, so that a
// database is always at one version or the next, never in between. Two
// processes opening the same database at once take turns (see
// Dialect.lockMigrations), and the second finds the work done.
func (db *DB) migrate(ctx context.Context) error {
	ms, err := migrations(migrationFS, db.dialect)
	if err != nil {
		return err
	}
	return db.write(ctx, func(tx *sql.Tx) error {
		if err := db.dialect.lockMigrations(ctx, tx); err != nil {
			return err
		}
		if _, err := tx.ExecContext(ctx, `CREATE TABLE IF NOT EXISTS schema_migrations (
	version INTEGER PRIMARY KEY,
	name TEXT NOT NULL,
	applied_at BIGINT NOT NULL
)`); err != nil {
			return fmt.Errorf("create schema_migrations: %w", err)
		}
		applied, err := appliedVersions(ctx, tx)
		if err != nil {
			return err
		}
		known := map[int]bool{}
		for _, m := range ms {
			known[m.version] = true
		}
		for _, v := range applied {
			if !known[v] {
				return fmt.Errorf("%w: the database has migration version %d, which this program does not know", ErrSchemaTooNew, v)
			}
		}
		for _, m := range ms {
			if slices.Contains(applied, m.version) {
				continue
			}
			if _, err := tx.ExecContext(ctx, m.sql); err != nil {
				return fmt.Errorf("migration %s: %w", m.name, err)
			}
			if _, err := db.exec(ctx, tx, `INSERT INTO schema_migrations (version, name, applied_at) VALUES (?, ?, ?)`,
				m.version, m.name, micros(db.now())); err != nil {
				return fmt.Errorf("record migration %s: %w", m.name, err)
			}
		}
		return nil
	})
}

// appliedVersions returns the versions recorded in schema_migrations.
func appliedVersions(ctx context.Context, tx *sql.Tx) ([]int, error) {
	rows, err := tx.QueryContext(ctx, `SELECT version FROM schema_migrations ORDER BY version`)
	if err != nil {
		return nil, fmt.Errorf("read schema versions: %w", err)
	}
	defer rows.Close()
	var out []int
	for rows.Next() {
		var v int
		if err := rows.Scan(&v); err != nil {
			return nil, fmt.Errorf("read schema versions: %w", err)
		}
		out = append(out, v)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("read schema versions: %w", err)
	}
	return out, nil
}

// checkSchema makes sure that the tables have exactly the columns the code
// reads and writes, so that a migration and the column lists that
// disagree fail at once rather than at the first instance that uses the
// column.
func (db *DB) checkSchema(ctx context.Context) error {
	for _, t := range tables {
		rows, err := db.db.QueryContext(ctx, "SELECT * FROM "+t.name+" WHERE 1 = 0")
		if err != nil {
			return fmt.Errorf("check table %s: %w", t.name, err)
		}
		have, err := rows.Columns()
		rows.Close()
		if err != nil {
			return fmt.Errorf("check table %s: %w", t.name, err)
		}
		want := t.columns()
		slices.Sort(have)
		slices.Sort(want)
		if !slices.Equal(have, want) {
			return fmt.Errorf("index: table %s has columns %v, the program expects %v", t.name, have, want)
		}
	}
	return nil
}

// SchemaVersion returns the number of migrations New applies to a new
// database of dialect d.
func SchemaVersion(d Dialect) (int, error) {
	ms, err := migrations(migrationFS, d)
	if err != nil {
		return 0, err
	}
	return len(ms), nil
}
