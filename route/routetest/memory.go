// Package routetest holds what tests of forwarding share: Memory, an
// in-memory route.Queue, and RunQueueTests, the conformance suite that
// every Queue passes, the index's SQL outbox as well as Memory.
package routetest

import (
	"cmp"
	"context"
	"crypto/rand"
	"encoding/hex"
	"slices"
	"sync"
	"time"

	"github.com/pacsd/pacsd/route"
)

// Memory is a route.Queue in memory, for tests. It is safe for
// concurrent use.
type Memory struct {
	now func() time.Time

	mu     sync.Mutex
	nextID int64
	tasks  map[int64]*memTask
	tokens map[int64]string
}

type memTask struct {
	route.Task
	items map[string]*memItem
}

type memItem struct {
	gen     int64
	state   string // pending, sent, refused
	refused string
}

var _ route.Queue = (*Memory)(nil)

// NewMemory returns an empty queue reading the clock now (time.Now when
// nil).
func NewMemory(now func() time.Time) *Memory {
	if now == nil {
		now = time.Now
	}
	return &Memory{now: now, tasks: map[int64]*memTask{}, tokens: map[int64]string{}}
}

func (m *Memory) find(dest, study string) *memTask {
	for _, t := range m.tasks {
		if t.Destination == dest && t.Study == study {
			return t
		}
	}
	return nil
}

// Enqueue implements route.Queue.
func (m *Memory) Enqueue(ctx context.Context, entries ...route.Entry) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	now := m.now()
	for _, e := range entries {
		t := m.find(e.Destination, e.Study)
		if t == nil {
			m.nextID++
			t = &memTask{Task: route.Task{ID: m.nextID, Destination: e.Destination, Study: e.Study, State: route.Pending,
				Priority: e.Priority, Window: e.Window, Due: e.Due, Since: now}, items: map[string]*memItem{}}
			m.tasks[t.ID] = t
		} else {
			switch t.State {
			case route.Pending, route.InFlight:
				t.Due = later(t.Due, e.Due)
				if e.Manual {
					t.Due = e.Due
				}
				t.Priority = max(t.Priority, e.Priority)
			default:
				t.State, t.Due, t.Priority, t.Since, t.Attempts = route.Pending, e.Due, e.Priority, now, 0
			}
			t.Window = e.Window
		}
		it := t.items[e.SOPInstanceUID]
		if it == nil {
			it = &memItem{}
			t.items[e.SOPInstanceUID] = it
		}
		it.gen++
		it.state, it.refused = "pending", ""
	}
	return nil
}

func later(a, b time.Time) time.Time {
	if b.After(a) {
		return b
	}
	return a
}

// Take implements route.Queue.
func (m *Memory) Take(ctx context.Context, dest, owner string, lease time.Duration) (*route.Lease, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	now := m.now()
	var best *memTask
	for _, t := range m.tasks {
		if t.Destination != dest {
			continue
		}
		expired := t.State == route.InFlight && t.LeaseUntil.Before(now)
		if !(t.State == route.Pending && !t.Due.After(now)) && !expired {
			continue
		}
		if best == nil || cmp.Or(-cmp.Compare(t.Priority, best.Priority), t.Due.Compare(best.Due), cmp.Compare(t.ID, best.ID)) < 0 {
			best = t
		}
	}
	if best == nil {
		return nil, nil
	}
	if best.State == route.InFlight {
		best.Attempts, best.LastError = best.Attempts+1, route.LostLease
	}
	best.State, best.Owner, best.LeaseUntil = route.InFlight, owner, now.Add(lease)
	tok := newToken()
	m.tokens[best.ID] = tok
	l := &route.Lease{Task: m.snapshot(best), Token: tok}
	for sop, it := range best.items {
		if it.state == "pending" {
			l.Items = append(l.Items, route.Item{SOPInstanceUID: sop, Gen: it.gen})
		}
	}
	slices.SortFunc(l.Items, func(a, b route.Item) int { return cmp.Compare(a.SOPInstanceUID, b.SOPInstanceUID) })
	return l, nil
}

func newToken() string {
	var b [16]byte
	rand.Read(b[:])
	return hex.EncodeToString(b[:])
}

func (m *Memory) snapshot(t *memTask) route.Task {
	c := t.Task
	c.Pending, c.Sent, c.Refused = 0, 0, 0
	for _, it := range t.items {
		switch it.state {
		case "pending":
			c.Pending++
		case "sent":
			c.Sent++
		case "refused":
			c.Refused++
		}
	}
	return c
}

// held returns the task of l if l still holds its lease.
func (m *Memory) held(l *route.Lease) (*memTask, error) {
	t := m.tasks[l.Task.ID]
	if t == nil || t.State != route.InFlight || m.tokens[t.ID] != l.Token {
		return nil, route.ErrLeaseLost
	}
	return t, nil
}

func (m *Memory) record(t *memTask, outcomes []route.Outcome) {
	for _, o := range outcomes {
		it := t.items[o.SOPInstanceUID]
		if it == nil || it.gen != o.Gen || it.state != "pending" {
			continue
		}
		if o.Refused == "" {
			it.state = "sent"
		} else {
			it.state, it.refused = "refused", o.Refused
		}
	}
}

// Record implements route.Queue.
func (m *Memory) Record(ctx context.Context, l *route.Lease, outcomes []route.Outcome, lease time.Duration) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	t, err := m.held(l)
	if err != nil {
		return err
	}
	m.record(t, outcomes)
	t.LeaseUntil = m.now().Add(lease)
	return nil
}

// Finish implements route.Queue.
func (m *Memory) Finish(ctx context.Context, l *route.Lease, outcomes []route.Outcome, f route.Finish) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	t, err := m.held(l)
	if err != nil {
		return err
	}
	m.record(t, outcomes)
	now := m.now()
	delete(m.tokens, t.ID)
	t.Owner, t.LeaseUntil = "", time.Time{}
	switch f.Verdict {
	case route.Sent:
		t.Attempts, t.LastAttempt = 0, now
		s := m.snapshot(t)
		switch {
		case s.Pending > 0:
			t.State, t.LastError = route.Pending, ""
		case s.Refused > 0:
			t.State, t.Finished = route.Failed, now
			if f.Err != "" {
				t.LastError = f.Err
			}
		default:
			t.State, t.Finished, t.LastError = route.Done, now, ""
		}
	case route.Retry:
		t.State, t.Due, t.LastAttempt, t.LastError = route.Pending, later(t.Due, f.Due), now, f.Err
		t.Attempts++
	case route.GiveUp:
		t.State, t.LastAttempt, t.LastError, t.Finished = route.Failed, now, f.Err, now
		t.Attempts++
	case route.Release:
		t.State = route.Pending
		if !f.Due.IsZero() {
			t.Due = f.Due
		}
	}
	return nil
}

// Reclaim implements route.Queue.
func (m *Memory) Reclaim(ctx context.Context, owner string) (int, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	n := 0
	now := m.now()
	for _, t := range m.tasks {
		if t.State == route.InFlight && t.Owner == owner {
			t.State, t.Owner, t.LeaseUntil, t.Due = route.Pending, "", time.Time{}, now
			t.Attempts, t.LastError = t.Attempts+1, route.LostLease
			delete(m.tokens, t.ID)
			n++
		}
	}
	return n, nil
}

// Retry implements route.Queue.
func (m *Memory) Retry(ctx context.Context, dest string, failed bool) (int, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	n := 0
	now := m.now()
	for _, t := range m.tasks {
		if t.Destination != dest {
			continue
		}
		switch {
		case t.State == route.Pending:
			t.Due = now
			n++
		case t.State == route.Failed && failed:
			t.State, t.Due, t.Attempts, t.Since = route.Pending, now, 0, now
			for _, it := range t.items {
				if it.state == "refused" {
					it.state, it.refused = "pending", ""
					it.gen++
				}
			}
			n++
		}
	}
	return n, nil
}

// Drop implements route.Queue.
func (m *Memory) Drop(ctx context.Context, dest, study string) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	t := m.find(dest, study)
	if t == nil {
		return route.ErrNoTask
	}
	delete(m.tasks, t.ID)
	delete(m.tokens, t.ID)
	return nil
}

// Stats implements route.Queue.
func (m *Memory) Stats(ctx context.Context) ([]route.Stats, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	now := m.now()
	by := map[string]*route.Stats{}
	lastErrAt := map[string]time.Time{}
	for _, t := range m.tasks {
		s := by[t.Destination]
		if s == nil {
			s = &route.Stats{Destination: t.Destination}
			by[t.Destination] = s
		}
		switch t.State {
		case route.Pending:
			s.Pending++
			if s.OldestPending.IsZero() || t.Since.Before(s.OldestPending) {
				s.OldestPending = t.Since
			}
		case route.InFlight:
			s.InFlight++
		case route.Failed:
			s.Failed++
		case route.Done:
			if now.Sub(t.Finished) < 24*time.Hour {
				s.Done24h++
			}
			if t.Finished.After(s.LastSuccess) {
				s.LastSuccess = t.Finished
			}
		}
		if t.LastError != "" && !t.LastAttempt.Before(lastErrAt[t.Destination]) {
			s.LastError, lastErrAt[t.Destination] = t.LastError, t.LastAttempt
		}
	}
	out := make([]route.Stats, 0, len(by))
	for _, s := range by {
		out = append(out, *s)
	}
	slices.SortFunc(out, func(a, b route.Stats) int { return cmp.Compare(a.Destination, b.Destination) })
	return out, nil
}

// Tasks implements route.Queue.
func (m *Memory) Tasks(ctx context.Context, q route.TaskQuery) ([]route.Task, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	var out []route.Task
	for _, t := range m.tasks {
		if t.Destination != q.Destination || (q.State != "" && t.State != q.State) || (q.Study != "" && t.Study != q.Study) || t.ID <= q.AfterID {
			continue
		}
		out = append(out, m.snapshot(t))
	}
	slices.SortFunc(out, func(a, b route.Task) int { return cmp.Compare(a.ID, b.ID) })
	if q.Limit > 0 && len(out) > q.Limit {
		out = out[:q.Limit]
	}
	return out, nil
}

// Prune implements route.Queue.
func (m *Memory) Prune(ctx context.Context, before time.Time) (int, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	n := 0
	for id, t := range m.tasks {
		if t.State == route.Done && t.Finished.Before(before) {
			delete(m.tasks, id)
			n++
		}
	}
	return n, nil
}
