package sqlindex

import (
	"context"
	"database/sql"
	"fmt"
	"strings"
	"sync"
	"time"

	"github.com/pacsd/pacsd/index"
)

// The change feed (see package index) is the table change_feed. Its rows
// are written in the transaction of the change they record, and numbered
// at the end of that transaction: on PostgreSQL, writers of several
// processes run side by side, and numbers drawn from a sequence while
// they run would commit out of order (a reader could read 12, then find
// 11 committed after it had moved on) and leave gaps where a transaction
// rolled back. So a transaction collects its events as it goes (feed),
// and writeFeed, its last statement, takes the feed's advisory lock,
// reads the highest number, and inserts its rows after it. The lock is
// held until the transaction ends, and PostgreSQL makes a transaction's
// rows visible before it releases its locks, so the next writer numbers
// its rows only once the rows before them are visible: numbers are given
// in the order rows become visible, without gaps. Only the insert and the
// commit happen under the lock, and group commit puts up to maxBatch
// puts in one transaction, so that writers wait for each other little.
// SQLite takes one writer at a time, and needs no lock.
//
// # Recording a change
//
// A put records its event in its put step recordChange. Any other write
// that creates, changes or removes instance records (a correction, a
// deletion) records its events through writeRecorded: it adds one per
// instance to the feed it is given, and writeRecorded writes them last
// and wakes the readers waiting in WaitChange (see Delete).

// changeFeedLockKey is the PostgreSQL advisory lock that serializes the
// numbering of change feed rows (the bytes of "pacsdchg").
const changeFeedLockKey = 0x7061637364636867

// feed is the change events of a write transaction, to be numbered and
// written at its end.
type feed struct {
	events []feedEvent
}

type feedEvent struct {
	kind                index.ChangeKind
	study, series, inst string
}

// add records that the instance with the given UIDs changed as kind says.
func (f *feed) add(kind index.ChangeKind, study, series, sop string) {
	f.events = append(f.events, feedEvent{kind, study, series, sop})
}

// recordChange is the put step that records the put's change in the
// feed of its transaction.
func (db *DB) recordChange(ctx context.Context, tx *sql.Tx, w *putWrite) error {
	if w.feed == nil {
		return fmt.Errorf("change feed: put outside a recording transaction")
	}
	in := w.change.Instance
	w.feed.add(w.change.Kind, in.StudyInstanceUID, in.SeriesInstanceUID, in.SOPInstanceUID)
	return nil
}

// feedInsertRows bounds the rows of one INSERT statement of writeFeed.
const feedInsertRows = 64

// writeFeed numbers the events of f after the feed's last row and
// inserts them. It must be the last statement of its transaction before
// the commit: on PostgreSQL it takes the feed's lock, which every writer
// of the feed then waits for until this transaction ends.
func (db *DB) writeFeed(ctx context.Context, tx *sql.Tx, f *feed) error {
	if len(f.events) == 0 {
		return nil
	}
	if db.dialect == PostgreSQL {
		if _, err := db.exec(ctx, tx, `SELECT pg_advisory_xact_lock(?)`, int64(changeFeedLockKey)); err != nil {
			return fmt.Errorf("change feed: lock: %w", err)
		}
	}
	var last int64
	if err := db.queryRow(ctx, tx, `SELECT COALESCE(MAX(seq), 0) FROM change_feed`).Scan(&last); err != nil {
		return fmt.Errorf("change feed: last number: %w", err)
	}
	at := micros(db.now())
	for events := f.events; len(events) > 0; {
		n := min(len(events), feedInsertRows)
		args := make([]any, 0, 6*n)
		for _, e := range events[:n] {
			last++
			args = append(args, last, e.kind.String(), e.study, e.series, e.inst, at)
		}
		q := `INSERT INTO change_feed (seq, kind, study_instance_uid, series_instance_uid, sop_instance_uid, changed_at) VALUES ` +
			strings.TrimSuffix(strings.Repeat("(?, ?, ?, ?, ?, ?), ", n), ", ")
		if _, err := db.exec(ctx, tx, q, args...); err != nil {
			return fmt.Errorf("change feed: insert: %w", err)
		}
		events = events[n:]
	}
	return nil
}

// writeRecorded runs fn in a write transaction, as write does, with a
// feed for fn to add the changes it makes to, and writes the feed last.
// Once the transaction has committed, readers waiting in WaitChange are
// woken.
func (db *DB) writeRecorded(ctx context.Context, fn func(tx *sql.Tx, f *feed) error) error {
	var f feed
	err := db.write(ctx, func(tx *sql.Tx) error {
		f = feed{}
		if err := fn(tx, &f); err != nil {
			return err
		}
		return db.writeFeed(ctx, tx, &f)
	})
	if err == nil && len(f.events) > 0 {
		db.changed.notify()
	}
	return err
}

// Changes returns up to limit entries of the change feed that follow
// sequence number after, in order.
func (db *DB) Changes(ctx context.Context, after int64, limit int) ([]index.FeedEntry, error) {
	if limit <= 0 {
		return nil, nil
	}
	rows, err := db.query(ctx, db.db, `SELECT seq, kind, study_instance_uid, series_instance_uid, sop_instance_uid, changed_at
FROM change_feed WHERE seq > ? ORDER BY seq LIMIT ?`, after, limit)
	if err != nil {
		return nil, fmt.Errorf("index: changes: %w", err)
	}
	defer rows.Close()
	var out []index.FeedEntry
	for rows.Next() {
		var e index.FeedEntry
		var kind string
		var at int64
		if err := rows.Scan(&e.Seq, &kind, &e.StudyInstanceUID, &e.SeriesInstanceUID, &e.SOPInstanceUID, &at); err != nil {
			return nil, fmt.Errorf("index: changes: %w", err)
		}
		if e.Kind, err = index.ParseChangeKind(kind); err != nil {
			return nil, fmt.Errorf("index: changes: entry %d: %w", e.Seq, err)
		}
		e.Time = fromMicros(at)
		out = append(out, e)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("index: changes: %w", err)
	}
	return out, nil
}

// LastChange returns the sequence number of the newest entry of the
// change feed, 0 when it has none.
func (db *DB) LastChange(ctx context.Context) (int64, error) {
	var last int64
	if err := db.queryRow(ctx, db.db, `SELECT COALESCE(MAX(seq), 0) FROM change_feed`).Scan(&last); err != nil {
		return 0, fmt.Errorf("index: last change: %w", err)
	}
	return last, nil
}

// changePoll is how often WaitChange looks at the feed for changes that
// other processes wrote; changes this DB writes wake it at once.
const changePoll = 500 * time.Millisecond

// WaitChange waits until the change feed has an entry after sequence
// number after, or ctx ends, when it returns ctx's error.
func (db *DB) WaitChange(ctx context.Context, after int64) error {
	for {
		woken := db.changed.wait()
		last, err := db.LastChange(ctx)
		if err != nil {
			return err
		}
		if last > after {
			return nil
		}
		t := time.NewTimer(changePoll)
		select {
		case <-woken:
		case <-t.C:
		case <-ctx.Done():
			t.Stop()
			return ctx.Err()
		}
		t.Stop()
	}
}

// signal wakes every goroutine waiting on it when notified.
type signal struct {
	mu sync.Mutex
	ch chan struct{}
}

// wait returns a channel closed at the next notify.
func (s *signal) wait() <-chan struct{} {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.ch == nil {
		s.ch = make(chan struct{})
	}
	return s.ch
}

func (s *signal) notify() {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.ch != nil {
		close(s.ch)
		s.ch = nil
	}
}
