package httplimit

import (
	"net"
	"net/http"
	"sync"
	"sync/atomic"
	"time"
)

// connSet is the open connections of a server and what each is doing.
type connSet struct {
	max   int
	mu    sync.Mutex
	freed *sync.Cond // signalled when a connection closes
	open  map[*conn]*connInfo
}

type connInfo struct {
	state     http.ConnState
	idleSince time.Time
}

func newConnSet(max int) *connSet {
	s := &connSet{max: max, open: map[*conn]*connInfo{}}
	s.freed = sync.NewCond(&s.mu)
	return s
}

func (s *connSet) len() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return len(s.open)
}

// setState is the server's ConnState hook.
func (s *connSet) setState(nc net.Conn, state http.ConnState) {
	c, ok := nc.(*conn)
	if !ok {
		return
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if info := s.open[c]; info != nil {
		info.state = state
		if state == http.StateIdle {
			info.idleSince = time.Now()
		}
	}
}

// admit makes room for one more connection: it closes the connection
// idle the longest if the set is full, or waits for one to close. It
// returns false if closed is closed first.
func (s *connSet) admit(closed <-chan struct{}) bool {
	s.mu.Lock()
	for len(s.open) >= s.max {
		select {
		case <-closed:
			s.mu.Unlock()
			return false
		default:
		}
		victim, ripe := s.idlest(time.Now())
		if victim != nil {
			delete(s.open, victim)
			s.mu.Unlock()
			victim.Conn.Close()
			s.mu.Lock()
			continue
		}
		if !ripe.IsZero() {
			// A silent connection will have had its chance then.
			t := time.AfterFunc(time.Until(ripe), s.wake)
			s.freed.Wait()
			t.Stop()
			continue
		}
		s.freed.Wait()
	}
	s.mu.Unlock()
	return true
}

// newGrace is how long a new connection may stay silent before it counts
// as idle: its client may not have written its request yet, or the
// server not read it.
const newGrace = 100 * time.Millisecond

// idlest returns the connection idle the longest: kept alive between
// requests, or new and silent for newGrace. One that has sent a byte of
// a request is never taken from its client. With none, ripe is when the
// first silent one will count as idle, if any.
func (s *connSet) idlest(now time.Time) (victim *conn, ripe time.Time) {
	var since time.Time
	for c, info := range s.open {
		idle := info.state == http.StateIdle
		if info.state == http.StateNew && !c.spoke.Load() {
			if r := info.idleSince.Add(newGrace); r.After(now) {
				if ripe.IsZero() || r.Before(ripe) {
					ripe = r
				}
			} else {
				idle = true
			}
		}
		if idle && (victim == nil || info.idleSince.Before(since)) {
			victim, since = c, info.idleSince
		}
	}
	return victim, ripe
}

func (s *connSet) add(nc net.Conn) *conn {
	c := &conn{Conn: nc, set: s}
	s.mu.Lock()
	s.open[c] = &connInfo{state: http.StateNew, idleSince: time.Now()}
	s.mu.Unlock()
	return c
}

func (s *connSet) remove(c *conn) {
	s.mu.Lock()
	delete(s.open, c)
	s.mu.Unlock()
	s.freed.Broadcast()
}

// wake lets admit see that the listener closed.
func (s *connSet) wake() {
	// Under the lock, so that a waiter is either before its check of
	// the closed channel or waiting.
	s.mu.Lock()
	s.freed.Broadcast()
	s.mu.Unlock()
}

// conn is a connection of the set.
type conn struct {
	net.Conn
	set   *connSet
	spoke atomic.Bool // a byte has been read
	once  sync.Once
}

func (c *conn) Read(b []byte) (int, error) {
	n, err := c.Conn.Read(b)
	if n > 0 && !c.spoke.Load() {
		c.spoke.Store(true)
	}
	return n, err
}

func (c *conn) Close() error {
	err := c.Conn.Close()
	c.once.Do(func() { c.set.remove(c) })
	return err
}

// listener admits a connection only when the set has room for it.
type listener struct {
	net.Listener
	conns     *connSet
	closed    chan struct{}
	closeOnce sync.Once
}

func (l *listener) Accept() (net.Conn, error) {
	nc, err := l.Listener.Accept()
	if err != nil {
		return nil, err
	}
	// The connection is taken from the backlog before room is made for
	// it, so that idle connections are closed only when a client waits.
	if !l.conns.admit(l.closed) {
		nc.Close()
		return nil, net.ErrClosed
	}
	return l.conns.add(nc), nil
}

func (l *listener) Close() error {
	l.closeOnce.Do(func() {
		close(l.closed)
		l.conns.wake()
	})
	return l.Listener.Close()
}
