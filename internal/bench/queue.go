package main

import (
	"context"
	"fmt"
	"io"
	"path/filepath"
	"text/tabwriter"
	"time"

	"github.com/pacsd/pacsd/index/postgres"
	"github.com/pacsd/pacsd/index/sqlite"
	"github.com/pacsd/pacsd/internal/testpeer"
	"github.com/pacsd/pacsd/route"
)

// The queue measurement: the forwarding queue in the index holds
// queueBacklog pending tasks, one study each; then queueOps enqueues of
// a new study, each its own transaction as pacsd send makes them, and
// queueOps takes, each followed by the Finish that sends the task away
// (not timed), on SQLite and on PostgreSQL.

const (
	queueBacklog    = 100000
	queueOps        = 1000
	targetQueueOpMs = 2.0
)

// queueResult is the measurement on one database.
type queueResult struct {
	db            string
	fill          time.Duration
	enqueue, take []time.Duration
}

// measureQueue runs the queue measurement on SQLite and PostgreSQL.
func measureQueue(ctx context.Context, tmp string, logf func(string, ...any)) ([]queueResult, error) {
	var out []queueResult
	sq, err := sqlite.Open(ctx, filepath.Join(tmp, "queue", "index.db"))
	if err != nil {
		return nil, err
	}
	r, err := queueOn(ctx, "sqlite", sq.Outbox(), logf)
	sq.Close()
	if err != nil {
		return nil, err
	}
	out = append(out, r)
	pg, err := testpeer.StartPostgres(ctx, filepath.Join(tmp, "queue-postgres"))
	if err != nil {
		return nil, err
	}
	defer pg.Stop()
	pdb, err := postgres.Open(ctx, pg.URL())
	if err != nil {
		return nil, err
	}
	defer pdb.Close()
	r, err = queueOn(ctx, "postgres", pdb.Outbox(), logf)
	if err != nil {
		return nil, err
	}
	return append(out, r), nil
}

func queueOn(ctx context.Context, name string, q route.Queue, logf func(string, ...any)) (queueResult, error) {
	r := queueResult{db: name}
	const dest = "BENCHDEST"
	now := time.Now()
	entry := func(i int) route.Entry {
		study := fmt.Sprintf("1.2.826.0.1.3680043.2.1125.1.%d", i)
		return route.Entry{Destination: dest, Study: study, SOPInstanceUID: study + ".1.1", Due: now, Priority: route.Normal}
	}
	start := time.Now()
	const batch = 1000
	for i := 0; i < queueBacklog; i += batch {
		es := make([]route.Entry, 0, batch)
		for j := i; j < i+batch; j++ {
			es = append(es, entry(j))
		}
		if err := q.Enqueue(ctx, es...); err != nil {
			return r, err
		}
	}
	r.fill = time.Since(start)
	logf("queue on %s: %d pending tasks queued in %s", name, queueBacklog, r.fill.Round(time.Millisecond))
	for i := range queueOps {
		t := time.Now()
		if err := q.Enqueue(ctx, entry(queueBacklog+i)); err != nil {
			return r, err
		}
		r.enqueue = append(r.enqueue, time.Since(t))
	}
	for range queueOps {
		t := time.Now()
		l, err := q.Take(ctx, dest, "bench", time.Minute)
		if err != nil {
			return r, err
		}
		r.take = append(r.take, time.Since(t))
		if l == nil {
			return r, fmt.Errorf("queue on %s: nothing to take", name)
		}
		out := make([]route.Outcome, len(l.Items))
		for i, it := range l.Items {
			out[i] = route.Outcome{Item: it}
		}
		if err := q.Finish(ctx, l, out, route.Finish{Verdict: route.Sent}); err != nil {
			return r, err
		}
	}
	logf("queue on %s: enqueue p50 %.2f ms, take p50 %.2f ms", name, millis(percentileDuration(r.enqueue, 0.5)), millis(percentileDuration(r.take, 0.5)))
	return r, nil
}

func millis(d time.Duration) float64 { return float64(d) / 1e6 }

// printQueue prints the queue measurement.
func printQueue(w io.Writer, rs []queueResult) {
	p := func(format string, args ...any) { fmt.Fprintf(w, format+"\n", args...) }
	p("Forwarding queue: %d pending tasks (one study, one instance each) in the index, then %d enqueues of a new", queueBacklog, queueOps)
	p("          study, each a transaction of its own, and %d takes of the due task of highest priority, each followed", queueOps)
	p("          by its Finish (not timed); SQLite (WAL, synchronous=FULL) and PostgreSQL as testpeer starts it")
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', tabwriter.AlignRight)
	fmt.Fprintln(tw, "index\top\tp50 ms\tp99 ms\tmean ms\ttarget\t")
	for _, r := range rs {
		for _, op := range []struct {
			name string
			ds   []time.Duration
		}{{"enqueue", r.enqueue}, {"take", r.take}} {
			var sum time.Duration
			for _, d := range op.ds {
				sum += d
			}
			mean := millis(sum) / float64(len(op.ds))
			p50 := millis(percentileDuration(op.ds, 0.5))
			fmt.Fprintf(tw, "%s\t%s\t%.2f\t%.2f\t%.2f\t≤ %.0f ms %s\t\n", r.db, op.name, p50, millis(percentileDuration(op.ds, 0.99)), mean,
				targetQueueOpMs, verdict(p50 <= targetQueueOpMs && mean <= targetQueueOpMs))
		}
	}
	tw.Flush()
	for _, r := range rs {
		p("%s: the %d tasks of the backlog were queued in transactions of 1,000 entries, %.3f ms per entry: what an", r.db, queueBacklog, millis(r.fill)/queueBacklog)
		p("          instance's forwarding adds to the transaction that records it")
	}
	p("")
}
