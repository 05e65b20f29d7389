package routetest

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/pacsd/pacsd/route"
)

// Clock is a clock tests set by hand. It is safe for concurrent use.
type Clock struct {
	mu sync.Mutex
	t  time.Time
}

// NewClock returns a Clock reading t.
func NewClock(t time.Time) *Clock { return &Clock{t: t} }

// Now returns the clock's time.
func (c *Clock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.t
}

// Add moves the clock on by d.
func (c *Clock) Add(d time.Duration) {
	c.mu.Lock()
	c.t = c.t.Add(d)
	c.mu.Unlock()
}

// NewQueue returns a queue that reads the clock now. It may return
// queues over one store, holding what earlier tests left.
type NewQueue func(t *testing.T, now func() time.Time) route.Queue

// RunQueueTests runs the conformance suite of route.Queue on the queues
// newQueue returns, one per test.
func RunQueueTests(t *testing.T, newQueue NewQueue) {
	start := time.Date(2026, 3, 1, 10, 0, 0, 0, time.UTC)
	for _, tc := range []struct {
		name string
		fn   func(t *testing.T, q route.Queue, c *Clock)
	}{
		{"Coalesce", testCoalesce},
		{"Due", testDue},
		{"Manual", testManual},
		{"Order", testOrder},
		{"Lease", testLease},
		{"ArrivalInFlight", testArrivalInFlight},
		{"Requeue", testRequeue},
		{"Refused", testRefused},
		{"RetryAndGiveUp", testRetryAndGiveUp},
		{"Release", testRelease},
		{"Reclaim", testReclaim},
		{"RetryCommand", testRetryCommand},
		{"Drop", testDrop},
		{"Stats", testStats},
		{"Tasks", testTasks},
		{"Prune", testPrune},
		{"Concurrent", testConcurrent},
	} {
		// Each test's clock starts a thousand hours before the last
		// one's, and its destinations and owners have names of their
		// own, so that the tests may share one queue: what one test
		// leaves is neither in another's names nor, for Prune, before
		// its time.
		start = start.Add(-1000 * time.Hour)
		t.Run(tc.name, func(t *testing.T) {
			c := NewClock(start)
			tc.fn(t, newQueue(t, c.Now), c)
		})
	}
}

// name makes a destination or owner name of the test's own.
func name(t *testing.T, s string) string { return t.Name() + ":" + s }

const lease = 30 * time.Second

func entry(c *Clock, dest, study, sop string) route.Entry {
	return route.Entry{Destination: dest, Study: study, SOPInstanceUID: sop, Due: c.Now(), Priority: route.Normal}
}

func enqueue(t *testing.T, q route.Queue, es ...route.Entry) {
	t.Helper()
	if err := q.Enqueue(t.Context(), es...); err != nil {
		t.Fatalf("Enqueue: %v", err)
	}
}

func take(t *testing.T, q route.Queue, dest, owner string) *route.Lease {
	t.Helper()
	l, err := q.Take(t.Context(), dest, owner, lease)
	if err != nil {
		t.Fatalf("Take: %v", err)
	}
	return l
}

func mustTake(t *testing.T, q route.Queue, dest, owner string) *route.Lease {
	t.Helper()
	l := take(t, q, dest, owner)
	if l == nil {
		t.Fatalf("Take(%s): nothing due", dest)
	}
	return l
}

func finish(t *testing.T, q route.Queue, l *route.Lease, outcomes []route.Outcome, f route.Finish) {
	t.Helper()
	if err := q.Finish(t.Context(), l, outcomes, f); err != nil {
		t.Fatalf("Finish: %v", err)
	}
}

func sent(items []route.Item) []route.Outcome {
	out := make([]route.Outcome, len(items))
	for i, it := range items {
		out[i] = route.Outcome{Item: it}
	}
	return out
}

func sops(items []route.Item) []string {
	var out []string
	for _, it := range items {
		out = append(out, it.SOPInstanceUID)
	}
	return out
}

func task(t *testing.T, q route.Queue, dest, study string) route.Task {
	t.Helper()
	ts, err := q.Tasks(t.Context(), route.TaskQuery{Destination: dest, Study: study})
	if err != nil {
		t.Fatalf("Tasks: %v", err)
	}
	if len(ts) != 1 {
		t.Fatalf("%d tasks of %s for %s, want 1", len(ts), study, dest)
	}
	return ts[0]
}

func stats(t *testing.T, q route.Queue, dest string) route.Stats {
	t.Helper()
	all, err := q.Stats(t.Context())
	if err != nil {
		t.Fatalf("Stats: %v", err)
	}
	for _, s := range all {
		if s.Destination == dest {
			return s
		}
	}
	return route.Stats{Destination: dest}
}

// testCoalesce: the instances of a study for a destination make one
// task; another study or destination makes another.
func testCoalesce(t *testing.T, q route.Queue, c *Clock) {
	A, B, n1 := name(t, "A"), name(t, "B"), name(t, "n1")
	enqueue(t, q, entry(c, A, "1.1", "1.1.1"), entry(c, A, "1.1", "1.1.2"), entry(c, B, "1.1", "1.1.1"))
	enqueue(t, q, entry(c, A, "1.1", "1.1.3"), entry(c, A, "1.2", "1.2.1"))
	l := mustTake(t, q, A, n1)
	l2 := mustTake(t, q, A, n1)
	if l.Task.Study == l2.Task.Study {
		t.Fatalf("two leases of study %s", l.Task.Study)
	}
	if l.Task.Study != "1.1" {
		l, l2 = l2, l
	}
	if got := fmt.Sprint(sops(l.Items)); got != "[1.1.1 1.1.2 1.1.3]" {
		t.Errorf("items of 1.1: %s", got)
	}
	if got := fmt.Sprint(sops(l2.Items)); got != "[1.2.1]" {
		t.Errorf("items of 1.2: %s", got)
	}
	if l.Task.State != route.InFlight || l.Task.Destination != A || l.Task.Pending != 3 {
		t.Errorf("leased task %+v", l.Task)
	}
	if x := take(t, q, A, n1); x != nil {
		t.Errorf("a third task of A: %+v", x.Task)
	}
	b := mustTake(t, q, B, n1)
	if b.Task.Study != "1.1" || len(b.Items) != 1 {
		t.Errorf("task of B: %+v %v", b.Task, b.Items)
	}
}

// testDue: a task is not taken before its due time, which the latest
// entry pushes back.
func testDue(t *testing.T, q route.Queue, c *Clock) {
	A, n1 := name(t, "A"), name(t, "n1")
	e := entry(c, A, "1.1", "1.1.1")
	e.Due = c.Now().Add(30 * time.Second)
	enqueue(t, q, e)
	c.Add(20 * time.Second)
	e2 := entry(c, A, "1.1", "1.1.2")
	e2.Due = c.Now().Add(30 * time.Second)
	enqueue(t, q, e2)
	c.Add(20 * time.Second)
	if l := take(t, q, A, n1); l != nil {
		t.Fatalf("taken 40 s after the first entry, 10 s before the second's due time")
	}
	if tk := task(t, q, A, "1.1"); !tk.Due.Equal(e2.Due) {
		t.Errorf("due %v, want %v", tk.Due, e2.Due)
	}
	// An earlier entry does not bring the task forward.
	enqueue(t, q, entry(c, A, "1.1", "1.1.3"))
	if l := take(t, q, A, n1); l != nil {
		t.Fatalf("an earlier entry brought the task forward")
	}
	c.Add(10 * time.Second)
	if l := mustTake(t, q, A, n1); len(l.Items) != 3 {
		t.Errorf("%d items, want 3", len(l.Items))
	}
}

// testManual: an entry a person queued makes the task due at its time,
// though the task's instances were to wait longer.
func testManual(t *testing.T, q route.Queue, c *Clock) {
	A, n1 := name(t, "A"), name(t, "n1")
	e := entry(c, A, "1.1", "1.1.1")
	e.Due, e.Window = c.Now().Add(9*time.Hour), "19:00-07:00"
	enqueue(t, q, e)
	c.Add(time.Minute)
	m := entry(c, A, "1.1", "1.1.2")
	m.Manual = true
	enqueue(t, q, m)
	l := mustTake(t, q, A, n1)
	if len(l.Items) != 2 || l.Task.Window != "" {
		t.Errorf("%d items, window %q; want 2 and none", len(l.Items), l.Task.Window)
	}
}

// testOrder: higher priority first, then the earliest due.
func testOrder(t *testing.T, q route.Queue, c *Clock) {
	A, B, n1 := name(t, "A"), name(t, "B"), name(t, "n1")
	e1 := entry(c, A, "1.1", "1.1.1")
	e1.Due = c.Now().Add(-2 * time.Second)
	e2 := entry(c, A, "1.2", "1.2.1")
	e2.Due = c.Now().Add(-3 * time.Second)
	e3 := entry(c, A, "1.3", "1.3.1")
	e3.Priority = route.High
	e4 := entry(c, A, "1.4", "1.4.1")
	e4.Priority, e4.Due = route.Low, c.Now().Add(-time.Hour)
	enqueue(t, q, e1, e2, e3, e4)
	var got []string
	for range 4 {
		got = append(got, mustTake(t, q, A, n1).Task.Study)
	}
	if fmt.Sprint(got) != "[1.3 1.2 1.1 1.4]" {
		t.Errorf("taken in order %v, want [1.3 1.2 1.1 1.4]", got)
	}
	// A second entry of higher priority raises the task's.
	enqueue(t, q, entry(c, B, "2.1", "2.1.1"))
	e := entry(c, B, "2.2", "2.2.1")
	e.Priority = route.Low
	enqueue(t, q, e)
	e.SOPInstanceUID, e.Priority = "2.2.2", route.High
	enqueue(t, q, e)
	if l := mustTake(t, q, B, n1); l.Task.Study != "2.2" || l.Task.Priority != route.High {
		t.Errorf("took %s at %v, want 2.2 at high", l.Task.Study, l.Task.Priority)
	}
}

// testLease: a leased task is not taken again until its lease runs out;
// then the old holder can record nothing.
func testLease(t *testing.T, q route.Queue, c *Clock) {
	A, n1, n2 := name(t, "A"), name(t, "n1"), name(t, "n2")
	enqueue(t, q, entry(c, A, "1.1", "1.1.1"), entry(c, A, "1.1", "1.1.2"))
	l := mustTake(t, q, A, n1)
	if l.Token == "" {
		t.Fatal("empty lease token")
	}
	c.Add(20 * time.Second)
	if x := take(t, q, A, n2); x != nil {
		t.Fatal("a leased task was taken again")
	}
	// Record extends the lease and keeps the outcome.
	if err := q.Record(t.Context(), l, sent(l.Items[:1]), lease); err != nil {
		t.Fatalf("Record: %v", err)
	}
	c.Add(20 * time.Second)
	if x := take(t, q, A, n2); x != nil {
		t.Fatal("taken again within an extended lease")
	}
	c.Add(11 * time.Second)
	l2 := mustTake(t, q, A, n2)
	if got := fmt.Sprint(sops(l2.Items)); got != "[1.1.2]" {
		t.Errorf("the lease taken over has items %s, want the one not recorded sent", got)
	}
	if l2.Token == l.Token || l2.Task.Owner != n2 {
		t.Errorf("taken over: token %q owner %q", l2.Token, l2.Task.Owner)
	}
	if l2.Task.Attempts != 1 || l2.Task.LastError != route.LostLease {
		t.Errorf("taken over with attempts %d, error %q; want the lost lease counted", l2.Task.Attempts, l2.Task.LastError)
	}
	if err := q.Record(t.Context(), l, sent(l.Items), lease); !errors.Is(err, route.ErrLeaseLost) {
		t.Errorf("Record with a lost lease: %v, want ErrLeaseLost", err)
	}
	if err := q.Finish(t.Context(), l, sent(l.Items), route.Finish{Verdict: route.Sent}); !errors.Is(err, route.ErrLeaseLost) {
		t.Errorf("Finish with a lost lease: %v, want ErrLeaseLost", err)
	}
	finish(t, q, l2, sent(l2.Items), route.Finish{Verdict: route.Sent})
	tk := task(t, q, A, "1.1")
	if tk.State != route.Done || tk.Sent != 2 || tk.Pending != 0 || tk.Finished.IsZero() {
		t.Errorf("task after Finish: %+v", tk)
	}
	if err := q.Finish(t.Context(), l2, nil, route.Finish{Verdict: route.Sent}); !errors.Is(err, route.ErrLeaseLost) {
		t.Errorf("Finish twice: %v, want ErrLeaseLost", err)
	}
}

// testArrivalInFlight: an instance that arrives while its study is being
// sent waits for the next lease; the task does not end done.
func testArrivalInFlight(t *testing.T, q route.Queue, c *Clock) {
	A, n1, n2 := name(t, "A"), name(t, "n1"), name(t, "n2")
	enqueue(t, q, entry(c, A, "1.1", "1.1.1"))
	l := mustTake(t, q, A, n1)
	enqueue(t, q, entry(c, A, "1.1", "1.1.2"))
	if x := take(t, q, A, n2); x != nil {
		t.Fatal("a second lease of a study in flight")
	}
	finish(t, q, l, sent(l.Items), route.Finish{Verdict: route.Sent})
	if tk := task(t, q, A, "1.1"); tk.State != route.Pending || tk.Pending != 1 || tk.Sent != 1 {
		t.Fatalf("task after the first lease: %+v", tk)
	}
	l2 := mustTake(t, q, A, n1)
	if got := fmt.Sprint(sops(l2.Items)); got != "[1.1.2]" {
		t.Errorf("second lease items %s", got)
	}
	finish(t, q, l2, sent(l2.Items), route.Finish{Verdict: route.Sent})
	// A done task takes new instances and is pending again.
	c.Add(time.Hour)
	enqueue(t, q, entry(c, A, "1.1", "1.1.3"))
	tk := task(t, q, A, "1.1")
	if tk.State != route.Pending || !tk.Since.Equal(c.Now()) {
		t.Errorf("done task after a new instance: %+v", tk)
	}
	if l3 := mustTake(t, q, A, n1); len(l3.Items) != 1 {
		t.Errorf("third lease items %v", l3.Items)
	}
}

// testRequeue: an instance queued again while it is being sent is sent
// again; the outcome of the older copy does not count for it.
func testRequeue(t *testing.T, q route.Queue, c *Clock) {
	A, n1 := name(t, "A"), name(t, "n1")
	enqueue(t, q, entry(c, A, "1.1", "1.1.1"))
	l := mustTake(t, q, A, n1)
	enqueue(t, q, entry(c, A, "1.1", "1.1.1"))
	finish(t, q, l, sent(l.Items), route.Finish{Verdict: route.Sent})
	tk := task(t, q, A, "1.1")
	if tk.State != route.Pending || tk.Pending != 1 {
		t.Fatalf("task after sending an older copy: %+v", tk)
	}
	l2 := mustTake(t, q, A, n1)
	if len(l2.Items) != 1 || l2.Items[0].Gen == l.Items[0].Gen {
		t.Errorf("second lease %v after %v", l2.Items, l.Items)
	}
}

// testRefused: a refused instance does not hold up the others; the task
// ends failed with the reason, a new instance makes it pending, and
// Retry with failed sends the refused one again.
func testRefused(t *testing.T, q route.Queue, c *Clock) {
	A, n1 := name(t, "A"), name(t, "n1")
	enqueue(t, q, entry(c, A, "1.1", "1.1.1"), entry(c, A, "1.1", "1.1.2"))
	l := mustTake(t, q, A, n1)
	out := sent(l.Items)
	out[0].Refused = "C-STORE 0xA900: data set does not match SOP class"
	finish(t, q, l, out, route.Finish{Verdict: route.Sent, Err: "1 instance refused: " + out[0].Refused})
	tk := task(t, q, A, "1.1")
	if tk.State != route.Failed || tk.Refused != 1 || tk.Sent != 1 || tk.LastError == "" {
		t.Fatalf("task with a refused instance: %+v", tk)
	}
	if s := stats(t, q, A); s.Failed != 1 || s.LastError != tk.LastError {
		t.Errorf("stats %+v", s)
	}
	if x := take(t, q, A, n1); x != nil {
		t.Fatal("a failed task was taken")
	}
	enqueue(t, q, entry(c, A, "1.1", "1.1.3"))
	l2 := mustTake(t, q, A, n1)
	if got := fmt.Sprint(sops(l2.Items)); got != "[1.1.3]" {
		t.Errorf("after a new instance, items %s", got)
	}
	finish(t, q, l2, sent(l2.Items), route.Finish{Verdict: route.Sent})
	if tk := task(t, q, A, "1.1"); tk.State != route.Failed {
		t.Errorf("state %s with a refused instance left", tk.State)
	}
	n, err := q.Retry(t.Context(), A, true)
	if err != nil || n != 1 {
		t.Fatalf("Retry: %d, %v", n, err)
	}
	l3 := mustTake(t, q, A, n1)
	if got := fmt.Sprint(sops(l3.Items)); got != "[1.1.1]" {
		t.Errorf("after Retry, items %s", got)
	}
	finish(t, q, l3, sent(l3.Items), route.Finish{Verdict: route.Sent})
	if tk := task(t, q, A, "1.1"); tk.State != route.Done || tk.Sent != 3 || tk.LastError != "" {
		t.Errorf("task after retry: %+v", tk)
	}
}

// testRetryAndGiveUp: a failed attempt counts and delays the task; the
// last ends it failed; a success resets the count.
func testRetryAndGiveUp(t *testing.T, q route.Queue, c *Clock) {
	A, n1 := name(t, "A"), name(t, "n1")
	enqueue(t, q, entry(c, A, "1.1", "1.1.1"), entry(c, A, "1.1", "1.1.2"))
	l := mustTake(t, q, A, n1)
	finish(t, q, l, sent(l.Items[:1]), route.Finish{Verdict: route.Retry, Err: "connection refused", Due: c.Now().Add(5 * time.Second)})
	tk := task(t, q, A, "1.1")
	if tk.State != route.Pending || tk.Attempts != 1 || tk.LastError != "connection refused" || !tk.LastAttempt.Equal(c.Now()) || tk.Sent != 1 {
		t.Fatalf("task after a failed attempt: %+v", tk)
	}
	if x := take(t, q, A, n1); x != nil {
		t.Fatal("taken before its retry is due")
	}
	c.Add(5 * time.Second)
	l = mustTake(t, q, A, n1)
	if len(l.Items) != 1 {
		t.Errorf("items %v, want the one not sent", l.Items)
	}
	finish(t, q, l, nil, route.Finish{Verdict: route.GiveUp, Err: "connection refused again"})
	tk = task(t, q, A, "1.1")
	if tk.State != route.Failed || tk.Attempts != 2 || tk.LastError != "connection refused again" {
		t.Fatalf("task given up: %+v", tk)
	}
	if _, err := q.Retry(t.Context(), A, false); err != nil {
		t.Fatal(err)
	}
	if x := take(t, q, A, n1); x != nil {
		t.Fatal("retry without failed retried a failed task")
	}
	if n, err := q.Retry(t.Context(), A, true); err != nil || n != 1 {
		t.Fatalf("Retry failed: %d %v", n, err)
	}
	l = mustTake(t, q, A, n1)
	if l.Task.Attempts != 0 || len(l.Items) != 1 {
		t.Errorf("retried task %+v items %v", l.Task, l.Items)
	}
	finish(t, q, l, sent(l.Items), route.Finish{Verdict: route.Sent})
	if tk := task(t, q, A, "1.1"); tk.State != route.Done || tk.Attempts != 0 {
		t.Errorf("task after success: %+v", tk)
	}
}

// testRelease: a release makes the task pending at the time given,
// counting no attempt.
func testRelease(t *testing.T, q route.Queue, c *Clock) {
	A, n1 := name(t, "A"), name(t, "n1")
	enqueue(t, q, entry(c, A, "1.1", "1.1.1"))
	l := mustTake(t, q, A, n1)
	finish(t, q, l, nil, route.Finish{Verdict: route.Release, Due: c.Now().Add(time.Hour)})
	tk := task(t, q, A, "1.1")
	if tk.State != route.Pending || tk.Attempts != 0 || !tk.Due.Equal(c.Now().Add(time.Hour)) {
		t.Fatalf("released task %+v", tk)
	}
	if x := take(t, q, A, n1); x != nil {
		t.Fatal("taken before the time it was released to")
	}
}

// testReclaim: a node takes its own tasks back at once, not another's.
func testReclaim(t *testing.T, q route.Queue, c *Clock) {
	A, n1, n2 := name(t, "A"), name(t, "n1"), name(t, "n2")
	enqueue(t, q, entry(c, A, "1.1", "1.1.1"), entry(c, A, "1.2", "1.2.1"))
	l1 := mustTake(t, q, A, n1)
	mustTake(t, q, A, n2)
	n, err := q.Reclaim(t.Context(), n1)
	if err != nil || n != 1 {
		t.Fatalf("Reclaim: %d, %v", n, err)
	}
	l := mustTake(t, q, A, n1)
	if l.Task.Study != l1.Task.Study {
		t.Errorf("took %s, want the reclaimed %s", l.Task.Study, l1.Task.Study)
	}
	if l.Task.Attempts != 1 || l.Task.LastError != route.LostLease {
		t.Errorf("reclaimed with attempts %d, error %q; want the lost lease counted", l.Task.Attempts, l.Task.LastError)
	}
	if err := q.Record(t.Context(), l1, nil, lease); !errors.Is(err, route.ErrLeaseLost) {
		t.Errorf("the reclaimed lease: %v, want ErrLeaseLost", err)
	}
	if x := take(t, q, A, n1); x != nil {
		t.Error("another node's task was reclaimed")
	}
}

// testRetryCommand: Retry without failed makes pending tasks due now.
func testRetryCommand(t *testing.T, q route.Queue, c *Clock) {
	A, B, n1 := name(t, "A"), name(t, "B"), name(t, "n1")
	e := entry(c, A, "1.1", "1.1.1")
	e.Due = c.Now().Add(time.Hour)
	enqueue(t, q, e)
	if n, err := q.Retry(t.Context(), A, false); err != nil || n != 1 {
		t.Fatalf("Retry: %d %v", n, err)
	}
	mustTake(t, q, A, n1)
	if n, err := q.Retry(t.Context(), B, true); err != nil || n != 0 {
		t.Errorf("Retry of a destination without tasks: %d %v", n, err)
	}
}

// testDrop: a dropped task is gone; its worker loses the lease.
func testDrop(t *testing.T, q route.Queue, c *Clock) {
	A, B, n1 := name(t, "A"), name(t, "B"), name(t, "n1")
	enqueue(t, q, entry(c, A, "1.1", "1.1.1"), entry(c, B, "1.1", "1.1.1"))
	l := mustTake(t, q, A, n1)
	if err := q.Drop(t.Context(), A, "1.1"); err != nil {
		t.Fatalf("Drop: %v", err)
	}
	if err := q.Drop(t.Context(), A, "1.1"); !errors.Is(err, route.ErrNoTask) {
		t.Errorf("Drop twice: %v, want ErrNoTask", err)
	}
	if err := q.Finish(t.Context(), l, sent(l.Items), route.Finish{Verdict: route.Sent}); !errors.Is(err, route.ErrLeaseLost) {
		t.Errorf("Finish of a dropped task: %v", err)
	}
	if ts, _ := q.Tasks(t.Context(), route.TaskQuery{Destination: A}); len(ts) != 0 {
		t.Errorf("tasks left: %+v", ts)
	}
	task(t, q, B, "1.1")
	// The study queued again starts afresh.
	enqueue(t, q, entry(c, A, "1.1", "1.1.2"))
	if l := mustTake(t, q, A, n1); len(l.Items) != 1 {
		t.Errorf("items %v", l.Items)
	}
}

// testStats counts the tasks by state.
func testStats(t *testing.T, q route.Queue, c *Clock) {
	A, B, n1 := name(t, "A"), name(t, "B"), name(t, "n1")
	start := c.Now()
	for i := range 5 {
		enqueue(t, q, entry(c, A, fmt.Sprintf("1.%d", i), fmt.Sprintf("1.%d.1", i)))
		c.Add(time.Second)
	}
	enqueue(t, q, entry(c, B, "2.1", "2.1.1"))
	l := mustTake(t, q, A, n1) // 1.0
	finish(t, q, l, sent(l.Items), route.Finish{Verdict: route.Sent})
	doneAt := c.Now()
	l = mustTake(t, q, A, n1) // 1.1
	finish(t, q, l, nil, route.Finish{Verdict: route.GiveUp, Err: "refused"})
	mustTake(t, q, A, n1) // 1.2, in flight
	s := stats(t, q, A)
	if s.Pending != 2 || s.InFlight != 1 || s.Failed != 1 || s.Done24h != 1 {
		t.Errorf("stats %+v", s)
	}
	if !s.OldestPending.Equal(start.Add(3*time.Second)) || s.LastError != "refused" || !s.LastSuccess.Equal(doneAt) {
		t.Errorf("stats %+v", s)
	}
	if b := stats(t, q, B); b.Pending != 1 || b.LastError != "" {
		t.Errorf("stats of B %+v", b)
	}
	c.Add(25 * time.Hour)
	if s := stats(t, q, A); s.Done24h != 0 {
		t.Errorf("done a day ago counted: %+v", s)
	}
	all, _ := q.Stats(t.Context())
	var mine []string
	for _, s := range all {
		if s.Destination == A || s.Destination == B {
			mine = append(mine, s.Destination)
		}
	}
	if len(mine) != 2 || mine[0] != A {
		t.Errorf("Stats order: %v", mine)
	}
}

// testTasks lists tasks by state, in pages.
func testTasks(t *testing.T, q route.Queue, c *Clock) {
	A, n1 := name(t, "A"), name(t, "n1")
	for i := range 5 {
		enqueue(t, q, entry(c, A, fmt.Sprintf("1.%d", i), fmt.Sprintf("1.%d.1", i)))
	}
	l := mustTake(t, q, A, n1)
	finish(t, q, l, nil, route.Finish{Verdict: route.GiveUp, Err: "x"})
	page, err := q.Tasks(t.Context(), route.TaskQuery{Destination: A, State: route.Pending, Limit: 3})
	if err != nil || len(page) != 3 {
		t.Fatalf("first page: %d, %v", len(page), err)
	}
	rest, err := q.Tasks(t.Context(), route.TaskQuery{Destination: A, State: route.Pending, AfterID: page[2].ID, Limit: 3})
	if err != nil || len(rest) != 1 {
		t.Fatalf("second page: %d, %v", len(rest), err)
	}
	seen := map[string]bool{l.Task.Study: true}
	for _, tk := range append(page, rest...) {
		if seen[tk.Study] || tk.State != route.Pending || tk.Pending != 1 {
			t.Errorf("task %+v", tk)
		}
		seen[tk.Study] = true
	}
	if f, _ := q.Tasks(t.Context(), route.TaskQuery{Destination: A, State: route.Failed}); len(f) != 1 || f[0].LastError != "x" {
		t.Errorf("failed tasks %+v", f)
	}
}

// testPrune deletes done tasks finished before a time, only those.
func testPrune(t *testing.T, q route.Queue, c *Clock) {
	A, n1 := name(t, "A"), name(t, "n1")
	enqueue(t, q, entry(c, A, "1.1", "1.1.1"), entry(c, A, "1.2", "1.2.1"))
	l := mustTake(t, q, A, n1)
	finish(t, q, l, sent(l.Items), route.Finish{Verdict: route.Sent})
	c.Add(time.Hour)
	n, err := q.Prune(t.Context(), c.Now())
	if err != nil || n != 1 {
		t.Fatalf("Prune: %d %v", n, err)
	}
	ts, _ := q.Tasks(t.Context(), route.TaskQuery{Destination: A})
	if len(ts) != 1 || ts[0].State != route.Pending {
		t.Errorf("tasks after Prune %+v", ts)
	}
}

// testConcurrent: workers taking at once never share a task, and every
// task is taken.
func testConcurrent(t *testing.T, q route.Queue, c *Clock) {
	A, n1 := name(t, "A"), name(t, "n1")
	const tasks, workers = 40, 6
	var es []route.Entry
	for i := range tasks {
		es = append(es, entry(c, A, fmt.Sprintf("1.%d", i), fmt.Sprintf("1.%d.1", i)))
	}
	enqueue(t, q, es...)
	var mu sync.Mutex
	taken := map[string]int{}
	var wg sync.WaitGroup
	ctx := context.Background()
	errc := make(chan error, workers)
	for w := range workers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				l, err := q.Take(ctx, A, fmt.Sprintf("%s%d", n1, w), lease)
				if err != nil {
					errc <- err
					return
				}
				if l == nil {
					return
				}
				mu.Lock()
				taken[l.Task.Study]++
				mu.Unlock()
				if err := q.Finish(ctx, l, sent(l.Items), route.Finish{Verdict: route.Sent}); err != nil {
					errc <- err
					return
				}
			}
		}()
	}
	wg.Wait()
	close(errc)
	for err := range errc {
		t.Fatal(err)
	}
	if len(taken) != tasks {
		t.Errorf("%d tasks taken, want %d", len(taken), tasks)
	}
	for s, n := range taken {
		if n != 1 {
			t.Errorf("study %s taken %d times", s, n)
		}
	}
}
