package route

import (
	"context"
	"errors"
	"fmt"
	"time"
)

// Errors of a Queue.
var (
	// ErrLeaseLost reports a lease that ran out and may have been taken
	// over: what its holder did since it last recorded is not recorded.
	ErrLeaseLost = errors.New("route: lease lost")
	// ErrNoTask reports a task that does not exist.
	ErrNoTask = errors.New("route: no such task")
)

// State is where a task is in its life.
type State string

const (
	// Pending tasks wait for their due time and a worker.
	Pending State = "pending"
	// InFlight tasks are leased by a worker sending them.
	InFlight State = "in_flight"
	// Failed tasks were given up (MaxAttempts) or have instances the
	// destination refused; they stay until retried or dropped.
	Failed State = "failed"
	// Done tasks have every instance sent.
	Done State = "done"
)

// ParseState reads a State.
func ParseState(s string) (State, error) {
	switch st := State(s); st {
	case Pending, InFlight, Failed, Done:
		return st, nil
	}
	return "", fmt.Errorf("route: state %q is not pending, in_flight, failed or done", s)
}

// Entry asks for an instance to be sent to a destination, as part of its
// study's task there.
type Entry struct {
	Destination    string
	Study          string
	SOPInstanceUID string
	// Due is the earliest time to send it. A task waits for the latest
	// Due of its pending instances.
	Due time.Time
	// Window is the daily window the task is sent in, as Window.String
	// writes it; the latest entry's applies to the task.
	Window   string
	Priority Priority
	// Manual marks an entry a person queued (pacsd send, the API) and
	// waits for: the task is due at Due even if its instances were to
	// wait longer (a route's delay or window, a retry's backoff).
	Manual bool
}

// Task is the forwarding of one study to one destination.
type Task struct {
	ID          int64
	Destination string
	Study       string
	State       State
	Priority    Priority
	Window      string
	// Attempts counts the attempts that failed since the last success.
	Attempts int
	// Due is when a pending task may next be taken.
	Due time.Time
	// Since is when the task last became pending from done, failed or
	// nothing: how long its oldest unsent instance has waited.
	Since       time.Time
	LastAttempt time.Time
	LastError   string
	// Finished is when the task last became done or failed.
	Finished time.Time
	// Owner holds the lease of an in-flight task until LeaseUntil.
	Owner      string
	LeaseUntil time.Time
	// Pending, Sent and Refused count the task's instances by state.
	Pending, Sent, Refused int
}

// Item is an instance of a leased task to send. Gen changes each time
// the instance is queued again (a resent or replaced instance), so that
// an outcome recorded for an older Gen does not mark the newer one sent.
type Item struct {
	SOPInstanceUID string
	Gen            int64
}

// Lease is a task taken by a worker, with the instances it is to send.
type Lease struct {
	Task  Task
	Token string
	Items []Item
}

// Outcome is what became of one item.
type Outcome struct {
	Item
	// Refused, when not empty, is why the destination refused the
	// instance for good; empty means it was sent.
	Refused string
}

// Verdict says how an attempt ended, for Finish.
type Verdict int

const (
	// Sent: the attempt succeeded. The task is done, or failed if any
	// of its instances was refused, or pending again if instances were
	// queued meanwhile.
	Sent Verdict = iota + 1
	// Retry: the attempt failed; the task is pending again, due at Due,
	// with one more attempt counted.
	Retry
	// GiveUp: the attempt failed and was the last: the task is failed.
	GiveUp
	// Release: no attempt was made (shutdown, the window closed, another
	// task is probing the destination): the task is pending again, due
	// at Due, its attempts unchanged.
	Release
)

// Finish ends a lease.
type Finish struct {
	Verdict Verdict
	// Err says why an attempt failed, or for Sent why instances were
	// refused.
	Err string
	// Due is when a task released or retried may be taken again.
	Due time.Time
}

// Stats describes the queue of one destination.
type Stats struct {
	Destination               string
	Pending, InFlight, Failed int
	// Done24h counts the tasks that became done in the last 24 hours.
	Done24h int
	// OldestPending is the Since of the oldest pending task, zero when
	// none is pending.
	OldestPending time.Time
	// LastError is the error of the task that failed most recently and
	// has not succeeded since; LastSuccess when a task last became done.
	LastError   string
	LastSuccess time.Time
}

// TaskQuery selects tasks for Tasks.
type TaskQuery struct {
	Destination string
	// State, when not empty, is the state the tasks are in.
	State State
	// Study, when not empty, is the study of the tasks.
	Study string
	// AfterID continues a listing after the task with this ID; tasks
	// come in ID order, the oldest first.
	AfterID int64
	Limit   int
}

// LostLease is the error of an attempt whose lease ended without a
// Finish: the node sending stopped. Counting it as an attempt bounds a
// study that stops its node every time it is sent (MaxAttempts).
const LostLease = "the node sending the study stopped before it finished"

// Queue is the durable list of forwarding work. Implementations are
// safe for concurrent use, by several processes when they share it; the
// clock they read for leases and Stats is their own. Every
// implementation passes routetest.RunQueueTests.
type Queue interface {
	// Enqueue adds instances to the tasks of their study and
	// destination, creating the tasks that do not exist and making done
	// and failed ones pending again. A task's priority is the highest
	// of its entries', its due time the latest, or a Manual entry's. An instance already pending in its task is
	// queued again (its Gen changes); one that was sent or refused is
	// pending again.
	Enqueue(ctx context.Context, entries ...Entry) error
	// Take leases the due task of destination with the highest priority
	// and the earliest due time, or a task whose lease has run out, to
	// owner for lease, and returns it with its pending instances; nil
	// when there is none. Taking over a lease that ran out counts a
	// failed attempt, with LostLease as its error.
	Take(ctx context.Context, destination, owner string, lease time.Duration) (*Lease, error)
	// Record records outcomes and extends the lease by lease from now.
	// It fails with ErrLeaseLost when the lease is no longer l's.
	Record(ctx context.Context, l *Lease, outcomes []Outcome, lease time.Duration) error
	// Finish records outcomes and ends the lease as f says. It fails
	// with ErrLeaseLost when the lease is no longer l's.
	Finish(ctx context.Context, l *Lease, outcomes []Outcome, f Finish) error
	// Reclaim makes the in-flight tasks of owner pending again, due at
	// once, each with a failed attempt counted as Take counts one: a
	// restarted node takes back its own tasks without waiting for their
	// leases to run out. It returns how many.
	Reclaim(ctx context.Context, owner string) (int, error)
	// Retry makes the pending tasks of destination due now and, with
	// failed, the failed ones pending again, their refused instances
	// pending too and their attempts reset. It returns how many tasks
	// it changed.
	Retry(ctx context.Context, destination string, failed bool) (int, error)
	// Drop deletes the task of study for destination, or fails with
	// ErrNoTask. A worker sending it loses its lease.
	Drop(ctx context.Context, destination, study string) error
	// Stats describes the queue of each destination that has tasks, in
	// name order.
	Stats(ctx context.Context) ([]Stats, error)
	// Tasks lists tasks.
	Tasks(ctx context.Context, q TaskQuery) ([]Task, error)
	// Prune deletes the done tasks finished before t, and returns how
	// many.
	Prune(ctx context.Context, before time.Time) (int, error)
}
