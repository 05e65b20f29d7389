package sqlindex

import (
	"context"
	"fmt"

	"github.com/pacsd/pacsd/route"
)

// depthQuery counts the forwarding tasks not done, by destination and
// state, with the oldest Since of each. The index route_task_depth
// (migration 0013) answers it alone, over the tasks not done only.
const depthQuery = `SELECT destination, state, COUNT(*), MIN(since) FROM route_task
WHERE state IN ('pending', 'in_flight', 'failed') GROUP BY state, destination`

// QueueDepth returns, for each destination with tasks not done, how many
// are pending, in flight and failed, and the Since of the oldest pending
// one: what the metrics read at every scrape. Unlike Outbox.Stats it
// reads neither the tasks done nor the rows of the others, so its cost
// does not grow with the history of the queue. Done24h, LastError and
// LastSuccess are left empty.
func (db *DB) QueueDepth(ctx context.Context) ([]route.Stats, error) {
	rows, err := db.query(ctx, db.db, depthQuery)
	if err != nil {
		return nil, fmt.Errorf("index: queue depth: %w", err)
	}
	defer rows.Close()
	by := map[string]int{}
	var out []route.Stats
	for rows.Next() {
		var d, state string
		var n int
		var since int64
		if err := rows.Scan(&d, &state, &n, &since); err != nil {
			return nil, fmt.Errorf("index: queue depth: %w", err)
		}
		i, ok := by[d]
		if !ok {
			i = len(out)
			by[d] = i
			out = append(out, route.Stats{Destination: d})
		}
		switch route.State(state) {
		case route.Pending:
			out[i].Pending, out[i].OldestPending = n, fromMicros(since)
		case route.InFlight:
			out[i].InFlight = n
		case route.Failed:
			out[i].Failed = n
		}
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("index: queue depth: %w", err)
	}
	return out, nil
}
