package sqlindex

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"time"

	"github.com/pacsd/pacsd/index"
)

// Group commit. A commit costs the database a flush of its log to disk,
// which takes longer than all the statements of a put: on SQLite, whose
// writers take turns, commits one after the other cap the rate of
// instances stored at the rate of flushes, however many associations
// send them. So the puts of Commits that wait at the same time are
// written in one transaction and made durable by one flush.
//
// A committer goroutine takes the first Commit waiting and every other
// one waiting with it, up to maxBatch, and writes them; Commits that
// arrive meanwhile wait for the next transaction. No Commit waits for
// others to arrive: a lone Commit is written at once, and batches grow
// only as fast as commits fall behind. Each put runs inside a savepoint
// of its own, so that one the database or its Check refuses is rolled
// back alone and the others commit. The aggregates of the patients,
// studies and series the puts touched are recomputed once, after the
// last put: a batch of instances of one series refreshes it once. A conflict with another transaction
// (see retry) runs the whole batch again.

// maxBatch bounds the puts of one transaction, and so how long its locks
// are held and how much work a conflict repeats.
const maxBatch = 64

// batchTimeout bounds one transaction of the committer, retries
// included: a Commit whose put a transaction has taken waits for its
// end, so that it knows the outcome.
const batchTimeout = time.Minute

// committer writes the puts of Commits in shared transactions.
type committer struct {
	db    *DB
	queue chan *commitRequest
	stop  chan struct{} // closed by close
	done  chan struct{} // closed when run returns

	mu     sync.RWMutex // held for reading while sending to queue
	closed bool
}

// commitRequest is one Commit waiting for its outcome.
type commitRequest struct {
	ctx    context.Context
	p      *prepared
	change *index.Change
	err    error
	done   chan struct{}
}

func newCommitter(db *DB) *committer {
	c := &committer{db: db, queue: make(chan *commitRequest, maxBatch), stop: make(chan struct{}), done: make(chan struct{})}
	go c.run()
	return c
}

// commit writes p in the next transaction and returns its outcome.
func (c *committer) commit(ctx context.Context, p *prepared) (*index.Change, error) {
	r := &commitRequest{ctx: ctx, p: p, done: make(chan struct{})}
	c.mu.RLock()
	if c.closed {
		c.mu.RUnlock()
		return nil, index.ErrClosed
	}
	select {
	case c.queue <- r:
	case <-ctx.Done():
		c.mu.RUnlock()
		return nil, ctx.Err()
	}
	c.mu.RUnlock()
	<-r.done
	return r.change, r.err
}

// close stops the committer after it has written the puts it accepted.
func (c *committer) close() {
	c.mu.Lock()
	if !c.closed {
		c.closed = true
		close(c.stop)
	}
	c.mu.Unlock()
	<-c.done
}

func (c *committer) run() {
	defer close(c.done)
	for {
		var batch []*commitRequest
		select {
		case r := <-c.queue:
			batch = append(batch, r)
		case <-c.stop:
			// No Commit sends after stop; write what they sent before.
			for {
				select {
				case r := <-c.queue:
					c.write([]*commitRequest{r})
				default:
					return
				}
			}
		}
	more:
		for len(batch) < maxBatch {
			select {
			case r := <-c.queue:
				batch = append(batch, r)
			default:
				break more
			}
		}
		c.write(batch)
	}
}

// write writes a batch of puts in one transaction and tells each Commit
// its outcome.
func (c *committer) write(batch []*commitRequest) {
	db := c.db
	live := batch[:0:0]
	for _, r := range batch {
		if err := r.ctx.Err(); err != nil {
			r.err = err
			close(r.done)
			continue
		}
		live = append(live, r)
	}
	if len(live) == 0 {
		return
	}
	ctx, cancel := context.WithTimeout(context.Background(), batchTimeout)
	defer cancel()
	var changes feed
	err := db.retry(ctx, func() error {
		for _, r := range live {
			r.change, r.err = nil, nil
		}
		tx, release, err := db.begin(ctx)
		if err != nil {
			return err
		}
		defer release()
		defer tx.Rollback()
		var want []int64
		for _, r := range live {
			want = append(want, r.p.locks...)
		}
		held, err := db.lockRows(ctx, tx, want)
		if err != nil {
			return err
		}
		refreshed := refresh{now: micros(db.now())}
		changes = feed{}
		for _, r := range live {
			if _, err := db.exec(ctx, tx, `SAVEPOINT put`); err != nil {
				return fmt.Errorf("savepoint: %w", err)
			}
			var touched refresh
			mark := len(changes.events)
			ch, err := db.put(ctx, tx, r.p, &held, &touched, &changes)
			switch {
			case err == nil:
				if _, err := db.exec(ctx, tx, `RELEASE SAVEPOINT put`); err != nil {
					return fmt.Errorf("release savepoint: %w", err)
				}
				refreshed.merge(&touched)
				r.change = ch
				continue
			case errors.Is(err, errRelock), db.dialect.transient(err), ctx.Err() != nil:
				return err // the whole transaction again, or not at all
			}
			if _, rerr := db.exec(ctx, tx, `ROLLBACK TO SAVEPOINT put`); rerr != nil {
				return fmt.Errorf("rollback to savepoint after %v: %w", err, rerr)
			}
			changes.events = changes.events[:mark]
			r.err = err
		}
		if err := refreshed.run(ctx, db, tx); err != nil {
			return err
		}
		if err := db.writeFeed(ctx, tx, &changes); err != nil {
			return err
		}
		if err := tx.Commit(); err != nil {
			return final{fmt.Errorf("commit: %w", err)}
		}
		return nil
	})
	if err == nil {
		if len(changes.events) > 0 {
			db.changed.notify()
		}
		db.prepareWanted(ctx)
	}
	for _, r := range live {
		if err != nil {
			r.change, r.err = nil, err
		}
		close(r.done)
	}
}
