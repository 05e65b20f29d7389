package sqlindex

import (
	"github.com/pacsd/pacsd/index"

	"context"
	"strings"
)

// ExplainFind returns the plan of the first batch that Find, or
// FindInstances when retrieve is set, runs for q: SQLite's, one line per
// step, or PostgreSQL's, without costs.
func (db *DB) ExplainFind(ctx context.Context, q *index.Query, retrieve bool) (string, error) {
	p, err := db.plan(q, retrieve)
	if err != nil {
		return "", err
	}
	query, args := p.batch(-1<<63, db.batch, 0)
	if db.dialect == PostgreSQL {
		rows, err := db.db.QueryContext(ctx, "EXPLAIN (COSTS OFF) "+db.dialect.bind(query), args...)
		if err != nil {
			return "", err
		}
		defer rows.Close()
		var lines []string
		for rows.Next() {
			var line string
			if err := rows.Scan(&line); err != nil {
				return "", err
			}
			lines = append(lines, line)
		}
		return strings.Join(lines, "\n"), rows.Err()
	}
	return db.explainSQLite(ctx, query, args...)
}

// ExplainQueueDepth returns SQLite's plan of QueueDepth.
func (db *DB) ExplainQueueDepth(ctx context.Context) (string, error) {
	return db.explainSQLite(ctx, depthQuery)
}

// explainSQLite returns SQLite's plan of query, one line per step.
func (db *DB) explainSQLite(ctx context.Context, query string, args ...any) (string, error) {
	rows, err := db.db.QueryContext(ctx, "EXPLAIN QUERY PLAN "+query, args...)
	if err != nil {
		return "", err
	}
	defer rows.Close()
	var lines []string
	for rows.Next() {
		var id, parent, unused int
		var detail string
		if err := rows.Scan(&id, &parent, &unused, &detail); err != nil {
			return "", err
		}
		lines = append(lines, detail)
	}
	return strings.Join(lines, "\n"), rows.Err()
}
