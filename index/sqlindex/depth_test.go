package sqlindex_test

import (
	"fmt"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/pacsd/pacsd/index/sqlite"
	"github.com/pacsd/pacsd/route"
)

// TestQueueDepth checks QueueDepth against Stats over tasks in every
// state, and that SQLite answers it from the index alone.
func TestQueueDepth(t *testing.T) {
	ctx := t.Context()
	db, err := sqlite.Open(ctx, sqlite.Memory)
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	q := db.Outbox()
	now := time.Now()
	for i := range 12 {
		for _, d := range []string{"A", "B"} {
			if d == "B" && i >= 5 {
				continue
			}
			if err := q.Enqueue(ctx, route.Entry{Destination: d, Study: fmt.Sprint("1.", i), SOPInstanceUID: fmt.Sprint("1.", i, ".1"), Due: now}); err != nil {
				t.Fatal(err)
			}
		}
	}
	// Of A's 12 tasks: 3 done, 2 failed, 1 in flight, 6 pending.
	for i := range 6 {
		l, err := q.Take(ctx, "A", "test", time.Minute)
		if err != nil || l == nil {
			t.Fatalf("Take: %v, %v", l, err)
		}
		if i == 5 {
			break
		}
		var sent []route.Outcome
		for _, it := range l.Items {
			sent = append(sent, route.Outcome{Item: it})
		}
		f := route.Finish{Verdict: route.Sent}
		if i >= 3 {
			sent, f = nil, route.Finish{Verdict: route.GiveUp, Err: "refused"}
		}
		if err := q.Finish(ctx, l, sent, f); err != nil {
			t.Fatal(err)
		}
	}
	got, err := db.QueueDepth(ctx)
	if err != nil {
		t.Fatal(err)
	}
	stats, err := q.Stats(ctx)
	if err != nil {
		t.Fatal(err)
	}
	for i := range stats {
		stats[i].Done24h, stats[i].LastError, stats[i].LastSuccess = 0, "", time.Time{}
	}
	byName := func(a, b route.Stats) int { return strings.Compare(a.Destination, b.Destination) }
	slices.SortFunc(got, byName)
	slices.SortFunc(stats, byName)
	if fmt.Sprint(got) != fmt.Sprint(stats) {
		t.Errorf("QueueDepth = %+v\nStats gives %+v", got, stats)
	}
	if a := got[0]; a.Destination != "A" || a.Pending != 6 || a.InFlight != 1 || a.Failed != 2 || a.OldestPending.IsZero() {
		t.Errorf("QueueDepth of A = %+v, want 6 pending, 1 in flight, 2 failed", a)
	}

	plan, err := db.ExplainQueueDepth(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(plan, "COVERING INDEX route_task_depth (state=?)") || strings.Contains(plan, "SCAN ") {
		t.Errorf("QueueDepth is not answered from route_task_depth alone:\n%s", plan)
	}
}
