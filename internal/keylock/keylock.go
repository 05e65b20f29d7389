package keylock

import (
	"context"
	"sync"
)

// Map is a set of mutexes by key. A key's mutex exists only while
// someone holds it or waits for it, so the map does not grow with the
// keys seen. The zero Map is ready to use; a Map must not be copied.
type Map struct {
	mu    sync.Mutex
	locks map[string]*entry
}

type entry struct {
	held chan struct{} // holds one token while the key is locked
	refs int
}

// Lock locks key's mutex, waiting for it if another holds it, and
// returns the function that unlocks it.
func (m *Map) Lock(key string) (unlock func()) {
	unlock, _ = m.LockContext(context.Background(), key)
	return unlock
}

// LockContext is Lock that stops waiting when ctx is done, and then
// returns ctx's error and holds nothing.
func (m *Map) LockContext(ctx context.Context, key string) (unlock func(), err error) {
	m.mu.Lock()
	if m.locks == nil {
		m.locks = make(map[string]*entry)
	}
	e := m.locks[key]
	if e == nil {
		e = &entry{held: make(chan struct{}, 1)}
		m.locks[key] = e
	}
	e.refs++
	m.mu.Unlock()
	select {
	case e.held <- struct{}{}:
	case <-ctx.Done():
		m.release(key, e)
		return nil, ctx.Err()
	}
	return sync.OnceFunc(func() {
		<-e.held
		m.release(key, e)
	}), nil
}

// release drops one reference to key's entry, and the entry with the
// last one.
func (m *Map) release(key string, e *entry) {
	m.mu.Lock()
	if e.refs--; e.refs == 0 {
		delete(m.locks, key)
	}
	m.mu.Unlock()
}
