package sqlindex

import (
	"context"
	"crypto/rand"
	"database/sql"
	"encoding/hex"
	"errors"
	"fmt"
	"slices"
	"time"

	"github.com/pacsd/pacsd/route"
)

// The forwarding queue of package route, in the tables route_task and
// route_item (migration 0004). A put's index.PutRequest.Forward entries
// are written by putForward in the put's own transaction, so that an
// instance committed always has its tasks; Outbox is the rest of the
// route.Queue.
//
// Takers lock the task they take: PostgreSQL's SELECT … FOR UPDATE SKIP
// LOCKED lets several nodes take at once without waiting on each other
// or taking the same task; SQLite's one writer at a time does the same
// for the processes of one node.

// Outbox is the forwarding queue kept in the index. It implements
// route.Queue.
type Outbox struct{ db *DB }

var _ route.Queue = (*Outbox)(nil)

// Outbox returns the forwarding queue kept in db.
func (db *DB) Outbox() *Outbox { return &Outbox{db: db} }

// putForward writes the forwarding tasks of a put.
func (db *DB) putForward(ctx context.Context, tx *sql.Tx, w *putWrite) error {
	in := w.req.Instance
	for _, f := range w.req.Forward {
		e := route.Entry{Destination: f.Destination, Study: in.StudyInstanceUID, SOPInstanceUID: in.SOPInstanceUID,
			Due: f.Due, Window: f.Window, Priority: route.Priority(f.Priority)}
		if err := db.enqueue(ctx, tx, e, micros(db.now())); err != nil {
			return fmt.Errorf("forward to %s: %w", f.Destination, err)
		}
	}
	return nil
}

const upsertTask = `INSERT INTO route_task (destination, study, state, priority, win, due_at, since)
VALUES (?, ?, 'pending', ?, ?, ?, ?)
ON CONFLICT (destination, study) DO UPDATE SET
  due_at = CASE WHEN ? = 0 AND route_task.state IN ('pending', 'in_flight') AND route_task.due_at > excluded.due_at
    THEN route_task.due_at ELSE excluded.due_at END,
  priority = CASE WHEN route_task.state IN ('pending', 'in_flight') AND route_task.priority > excluded.priority
    THEN route_task.priority ELSE excluded.priority END,
  since = CASE WHEN route_task.state IN ('pending', 'in_flight') THEN route_task.since ELSE excluded.since END,
  attempts = CASE WHEN route_task.state IN ('pending', 'in_flight') THEN route_task.attempts ELSE 0 END,
  state = CASE WHEN route_task.state = 'in_flight' THEN 'in_flight' ELSE 'pending' END,
  win = excluded.win
RETURNING id`

const upsertItem = `INSERT INTO route_item (task_id, sop, gen, state) VALUES (?, ?, 1, 'pending')
ON CONFLICT (task_id, sop) DO UPDATE SET gen = route_item.gen + 1, state = 'pending', refused = ''`

func (db *DB) enqueue(ctx context.Context, tx *sql.Tx, e route.Entry, now int64) error {
	var id int64
	manual := 0
	if e.Manual {
		manual = 1
	}
	if err := db.queryRow(ctx, tx, upsertTask, e.Destination, e.Study, int(e.Priority), e.Window, micros(e.Due), now, manual).Scan(&id); err != nil {
		return fmt.Errorf("task: %w", err)
	}
	if _, err := db.exec(ctx, tx, upsertItem, id, e.SOPInstanceUID); err != nil {
		return fmt.Errorf("instance: %w", err)
	}
	return nil
}

// Enqueue implements route.Queue.
func (o *Outbox) Enqueue(ctx context.Context, entries ...route.Entry) error {
	db := o.db
	err := db.write(ctx, func(tx *sql.Tx) error {
		now := micros(db.now())
		for _, e := range entries {
			if err := db.enqueue(ctx, tx, e, now); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		return fmt.Errorf("index: queue: %w", err)
	}
	return nil
}

// forUpdate is what a dialect adds to a SELECT that picks a task to
// lock it.
func (d Dialect) forUpdate() string {
	if d == PostgreSQL {
		return " FOR UPDATE SKIP LOCKED"
	}
	return ""
}

const taskColumns = `id, destination, study, state, priority, win, attempts, due_at, since, last_attempt, last_error,
finished_at, owner, lease_until`

func scanTask(sc interface{ Scan(...any) error }) (route.Task, error) {
	var t route.Task
	var state string
	var prio int
	var due, since, last, fin, lease int64
	err := sc.Scan(&t.ID, &t.Destination, &t.Study, &state, &prio, &t.Window, &t.Attempts, &due, &since, &last, &t.LastError, &fin, &t.Owner, &lease)
	if err != nil {
		return t, err
	}
	t.State, t.Priority = route.State(state), route.Priority(prio)
	t.Due, t.Since = fromMicros(due), fromMicros(since)
	t.LastAttempt, t.Finished, t.LeaseUntil = optMicros(last), optMicros(fin), optMicros(lease)
	return t, nil
}

func optMicros(us int64) time.Time {
	if us == 0 {
		return time.Time{}
	}
	return fromMicros(us)
}

// counts fills in the numbers of a task's instances by state.
func (db *DB) counts(ctx context.Context, q querier, t *route.Task) error {
	rows, err := db.query(ctx, q, `SELECT state, COUNT(*) FROM route_item WHERE task_id = ? GROUP BY state`, t.ID)
	if err != nil {
		return err
	}
	defer rows.Close()
	for rows.Next() {
		var state string
		var n int
		if err := rows.Scan(&state, &n); err != nil {
			return err
		}
		switch state {
		case "pending":
			t.Pending = n
		case "sent":
			t.Sent = n
		case "refused":
			t.Refused = n
		}
	}
	return rows.Err()
}

func newToken() string {
	var b [16]byte
	rand.Read(b[:])
	return hex.EncodeToString(b[:])
}

// Take implements route.Queue.
func (o *Outbox) Take(ctx context.Context, dest, owner string, lease time.Duration) (*route.Lease, error) {
	db := o.db
	var l *route.Lease
	err := db.write(ctx, func(tx *sql.Tx) error {
		l = nil
		now := db.now()
		tok := newToken()
		// One statement picks and leases the task: a task whose lease
		// ran out first, then the due one of highest priority.
		// A lease that ran out is an attempt that failed: its node
		// stopped while sending, perhaps because of the study.
		take := `UPDATE route_task SET state = 'in_flight', owner = ?, token = ?, lease_until = ?%s
WHERE id = (SELECT id FROM route_task WHERE destination = ? AND %s LIMIT 1` + db.dialect.forUpdate() + `)
RETURNING ` + taskColumns
		args := []any{owner, tok, micros(now.Add(lease)), dest, micros(now)}
		t, err := scanTask(db.queryRow(ctx, tx, fmt.Sprintf(take, lostLease, `state = 'in_flight' AND lease_until < ? ORDER BY lease_until`), args...))
		if errors.Is(err, sql.ErrNoRows) {
			t, err = scanTask(db.queryRow(ctx, tx, fmt.Sprintf(take, "", `state = 'pending' AND due_at <= ? ORDER BY priority DESC, due_at, id`), args...))
		}
		if errors.Is(err, sql.ErrNoRows) {
			return nil
		}
		if err != nil {
			return err
		}
		if err := db.counts(ctx, tx, &t); err != nil {
			return err
		}
		l = &route.Lease{Task: t, Token: tok}
		rows, err := db.query(ctx, tx, `SELECT sop, gen FROM route_item WHERE task_id = ? AND state = 'pending' ORDER BY sop`, t.ID)
		if err != nil {
			return err
		}
		defer rows.Close()
		for rows.Next() {
			var it route.Item
			if err := rows.Scan(&it.SOPInstanceUID, &it.Gen); err != nil {
				return err
			}
			l.Items = append(l.Items, it)
		}
		return rows.Err()
	})
	if err != nil {
		return nil, fmt.Errorf("index: take a task of %s: %w", dest, err)
	}
	return l, nil
}

// held locks the task of l if l still holds its lease.
func (db *DB) held(ctx context.Context, tx *sql.Tx, l *route.Lease) error {
	var state, token string
	err := db.queryRow(ctx, tx, `SELECT state, token FROM route_task WHERE id = ?`+db.dialect.lockRow(), l.Task.ID).Scan(&state, &token)
	if errors.Is(err, sql.ErrNoRows) || err == nil && (state != string(route.InFlight) || token != l.Token) {
		return route.ErrLeaseLost
	}
	return err
}

// lockRow is what a dialect adds to a SELECT of one row to lock it.
func (d Dialect) lockRow() string {
	if d == PostgreSQL {
		return " FOR UPDATE"
	}
	return ""
}

func (db *DB) record(ctx context.Context, tx *sql.Tx, id int64, outcomes []route.Outcome) error {
	for _, o := range outcomes {
		state := "sent"
		if o.Refused != "" {
			state = "refused"
		}
		if _, err := db.exec(ctx, tx, `UPDATE route_item SET state = ?, refused = ? WHERE task_id = ? AND sop = ? AND gen = ? AND state = 'pending'`,
			state, o.Refused, id, o.SOPInstanceUID, o.Gen); err != nil {
			return err
		}
	}
	return nil
}

// Record implements route.Queue.
func (o *Outbox) Record(ctx context.Context, l *route.Lease, outcomes []route.Outcome, lease time.Duration) error {
	db := o.db
	err := db.write(ctx, func(tx *sql.Tx) error {
		if err := db.held(ctx, tx, l); err != nil {
			return err
		}
		if err := db.record(ctx, tx, l.Task.ID, outcomes); err != nil {
			return err
		}
		_, err := db.exec(ctx, tx, `UPDATE route_task SET lease_until = ? WHERE id = ?`, micros(db.now().Add(lease)), l.Task.ID)
		return err
	})
	if err != nil && !errors.Is(err, route.ErrLeaseLost) {
		return fmt.Errorf("index: record progress of task %d: %w", l.Task.ID, err)
	}
	return err
}

// Finish implements route.Queue.
func (o *Outbox) Finish(ctx context.Context, l *route.Lease, outcomes []route.Outcome, f route.Finish) error {
	db := o.db
	err := db.write(ctx, func(tx *sql.Tx) error {
		if err := db.held(ctx, tx, l); err != nil {
			return err
		}
		if err := db.record(ctx, tx, l.Task.ID, outcomes); err != nil {
			return err
		}
		now := micros(db.now())
		const release = `owner = '', token = '', lease_until = 0`
		var err error
		switch f.Verdict {
		case route.Sent:
			t := route.Task{ID: l.Task.ID}
			if err := db.counts(ctx, tx, &t); err != nil {
				return err
			}
			switch {
			case t.Pending > 0:
				_, err = db.exec(ctx, tx, `UPDATE route_task SET state = 'pending', attempts = 0, last_attempt = ?, last_error = '', `+release+` WHERE id = ?`, now, t.ID)
			case t.Refused > 0:
				_, err = db.exec(ctx, tx, `UPDATE route_task SET state = 'failed', attempts = 0, last_attempt = ?, finished_at = ?,
last_error = CASE WHEN ? <> '' THEN ? ELSE last_error END, `+release+` WHERE id = ?`, now, now, f.Err, f.Err, t.ID)
			default:
				_, err = db.exec(ctx, tx, `UPDATE route_task SET state = 'done', attempts = 0, last_attempt = ?, finished_at = ?, last_error = '', `+release+` WHERE id = ?`, now, now, t.ID)
			}
		case route.Retry:
			_, err = db.exec(ctx, tx, `UPDATE route_task SET state = 'pending', attempts = attempts + 1, last_attempt = ?, last_error = ?,
due_at = CASE WHEN due_at > ? THEN due_at ELSE ? END, `+release+` WHERE id = ?`, now, f.Err, micros(f.Due), micros(f.Due), l.Task.ID)
		case route.GiveUp:
			_, err = db.exec(ctx, tx, `UPDATE route_task SET state = 'failed', attempts = attempts + 1, last_attempt = ?, last_error = ?, finished_at = ?, `+release+` WHERE id = ?`,
				now, f.Err, now, l.Task.ID)
		case route.Release:
			due := `due_at`
			args := []any{l.Task.ID}
			if !f.Due.IsZero() {
				due = `?`
				args = []any{micros(f.Due), l.Task.ID}
			}
			_, err = db.exec(ctx, tx, `UPDATE route_task SET state = 'pending', due_at = `+due+`, `+release+` WHERE id = ?`, args...)
		default:
			err = fmt.Errorf("verdict %d", f.Verdict)
		}
		return err
	})
	if err != nil && !errors.Is(err, route.ErrLeaseLost) {
		return fmt.Errorf("index: finish task %d: %w", l.Task.ID, err)
	}
	return err
}

// lostLease counts the attempt of a lease that ended without a Finish.
const lostLease = `, attempts = attempts + 1, last_error = '` + route.LostLease + `'`

// Reclaim implements route.Queue.
func (o *Outbox) Reclaim(ctx context.Context, owner string) (int, error) {
	return o.update(ctx, `UPDATE route_task SET state = 'pending', due_at = ?, owner = '', token = '', lease_until = 0`+lostLease+`
WHERE state = 'in_flight' AND owner = ?`, micros(o.db.now()), owner)
}

func (o *Outbox) update(ctx context.Context, query string, args ...any) (int, error) {
	db := o.db
	var n int64
	err := db.write(ctx, func(tx *sql.Tx) error {
		res, err := db.exec(ctx, tx, query, args...)
		if err != nil {
			return err
		}
		n, err = res.RowsAffected()
		return err
	})
	if err != nil {
		return 0, fmt.Errorf("index: queue: %w", err)
	}
	return int(n), nil
}

// Retry implements route.Queue.
func (o *Outbox) Retry(ctx context.Context, dest string, failed bool) (int, error) {
	db := o.db
	var n int64
	err := db.write(ctx, func(tx *sql.Tx) error {
		now := micros(db.now())
		res, err := db.exec(ctx, tx, `UPDATE route_task SET due_at = ? WHERE destination = ? AND state = 'pending'`, now, dest)
		if err != nil {
			return err
		}
		n, _ = res.RowsAffected()
		if !failed {
			return nil
		}
		if _, err := db.exec(ctx, tx, `UPDATE route_item SET state = 'pending', refused = '', gen = gen + 1
WHERE state = 'refused' AND task_id IN (SELECT id FROM route_task WHERE destination = ? AND state = 'failed')`, dest); err != nil {
			return err
		}
		res, err = db.exec(ctx, tx, `UPDATE route_task SET state = 'pending', due_at = ?, attempts = 0, since = ?
WHERE destination = ? AND state = 'failed'`, now, now, dest)
		if err != nil {
			return err
		}
		m, _ := res.RowsAffected()
		n += m
		return nil
	})
	if err != nil {
		return 0, fmt.Errorf("index: retry the tasks of %s: %w", dest, err)
	}
	return int(n), nil
}

// Drop implements route.Queue.
func (o *Outbox) Drop(ctx context.Context, dest, study string) error {
	db := o.db
	err := db.write(ctx, func(tx *sql.Tx) error {
		var id int64
		err := db.queryRow(ctx, tx, `SELECT id FROM route_task WHERE destination = ? AND study = ?`+db.dialect.lockRow(), dest, study).Scan(&id)
		if errors.Is(err, sql.ErrNoRows) {
			return route.ErrNoTask
		}
		if err != nil {
			return err
		}
		if _, err := db.exec(ctx, tx, `DELETE FROM route_item WHERE task_id = ?`, id); err != nil {
			return err
		}
		_, err = db.exec(ctx, tx, `DELETE FROM route_task WHERE id = ?`, id)
		return err
	})
	if err != nil && !errors.Is(err, route.ErrNoTask) {
		return fmt.Errorf("index: drop the task of %s for %s: %w", study, dest, err)
	}
	return err
}

// Stats implements route.Queue.
func (o *Outbox) Stats(ctx context.Context) ([]route.Stats, error) {
	db := o.db
	by := map[string]*route.Stats{}
	var order []string
	get := func(d string) *route.Stats {
		s := by[d]
		if s == nil {
			s = &route.Stats{Destination: d}
			by[d] = s
			order = append(order, d)
		}
		return s
	}
	now := db.now()
	rows, err := db.query(ctx, db.db, `SELECT destination, state, COUNT(*), MIN(since), MAX(finished_at),
SUM(CASE WHEN finished_at >= ? THEN 1 ELSE 0 END) FROM route_task GROUP BY destination, state`, micros(now.Add(-24*time.Hour)))
	if err != nil {
		return nil, fmt.Errorf("index: queue stats: %w", err)
	}
	defer rows.Close()
	for rows.Next() {
		var d, state string
		var n, recent int
		var since, fin int64
		if err := rows.Scan(&d, &state, &n, &since, &fin, &recent); err != nil {
			return nil, fmt.Errorf("index: queue stats: %w", err)
		}
		s := get(d)
		switch route.State(state) {
		case route.Pending:
			s.Pending, s.OldestPending = n, fromMicros(since)
		case route.InFlight:
			s.InFlight = n
		case route.Failed:
			s.Failed = n
		case route.Done:
			s.Done24h, s.LastSuccess = recent, optMicros(fin)
		}
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("index: queue stats: %w", err)
	}
	rows.Close()
	errs, err := db.query(ctx, db.db, `SELECT t.destination, t.last_error FROM route_task t
WHERE t.last_error <> '' AND t.last_attempt = (SELECT MAX(u.last_attempt) FROM route_task u WHERE u.destination = t.destination AND u.last_error <> '')`)
	if err != nil {
		return nil, fmt.Errorf("index: queue stats: %w", err)
	}
	defer errs.Close()
	for errs.Next() {
		var d, e string
		if err := errs.Scan(&d, &e); err != nil {
			return nil, fmt.Errorf("index: queue stats: %w", err)
		}
		get(d).LastError = e
	}
	if err := errs.Err(); err != nil {
		return nil, fmt.Errorf("index: queue stats: %w", err)
	}
	out := make([]route.Stats, 0, len(order))
	slices.Sort(order)
	for _, d := range order {
		out = append(out, *by[d])
	}
	return out, nil
}

// Tasks implements route.Queue.
func (o *Outbox) Tasks(ctx context.Context, q route.TaskQuery) ([]route.Task, error) {
	db := o.db
	query := `SELECT ` + taskColumns + ` FROM route_task WHERE destination = ? AND id > ?`
	args := []any{q.Destination, q.AfterID}
	if q.State != "" {
		query += ` AND state = ?`
		args = append(args, string(q.State))
	}
	if q.Study != "" {
		query += ` AND study = ?`
		args = append(args, q.Study)
	}
	query += ` ORDER BY id`
	if q.Limit > 0 {
		query += fmt.Sprintf(` LIMIT %d`, q.Limit)
	}
	rows, err := db.query(ctx, db.db, query, args...)
	if err != nil {
		return nil, fmt.Errorf("index: queue tasks: %w", err)
	}
	var out []route.Task
	for rows.Next() {
		t, err := scanTask(rows)
		if err != nil {
			rows.Close()
			return nil, fmt.Errorf("index: queue tasks: %w", err)
		}
		out = append(out, t)
	}
	rows.Close()
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("index: queue tasks: %w", err)
	}
	for i := range out {
		if err := db.counts(ctx, db.db, &out[i]); err != nil {
			return nil, fmt.Errorf("index: queue tasks: %w", err)
		}
	}
	return out, nil
}

// Prune implements route.Queue.
func (o *Outbox) Prune(ctx context.Context, before time.Time) (int, error) {
	db := o.db
	var n int64
	err := db.write(ctx, func(tx *sql.Tx) error {
		if _, err := db.exec(ctx, tx, `DELETE FROM route_item WHERE task_id IN (SELECT id FROM route_task WHERE state = 'done' AND finished_at < ?)`, micros(before)); err != nil {
			return err
		}
		res, err := db.exec(ctx, tx, `DELETE FROM route_task WHERE state = 'done' AND finished_at < ?`, micros(before))
		if err != nil {
			return err
		}
		n, err = res.RowsAffected()
		return err
	})
	if err != nil {
		return 0, fmt.Errorf("index: prune the queue: %w", err)
	}
	return int(n), nil
}
