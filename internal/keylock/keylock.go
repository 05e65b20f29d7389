// Package keylock provides a mutex per key, for work that must not run
// twice at once for the same key (one SOP Instance UID, one object key)
// but may run side by side for different ones.
package keylock

import "sync"

// Map is a set of mutexes by key. A key's mutex exists only while
// someone holds it or waits for it, so the map does not grow with the
// keys seen. The zero Map is ready to use; a Map must not be copied.
type Map struct {
	mu    sync.Mutex
	locks map[string]*entry
}

type entry struct {
	mu   sync.Mutex
	refs int
}

// Lock locks key's mutex, waiting for it if another holds it, and
// returns the function that unlocks it.
func (m *Map) Lock(key string) (unlock func()) {
	m.mu.Lock()
	if m.locks == nil {
		m.locks = make(map[string]*entry)
	}
	e := m.locks[key]
	if e == nil {
		e = &entry{}
		m.locks[key] = e
	}
	e.refs++
	m.mu.Unlock()
	e.mu.Lock()
	return func() {
		e.mu.Unlock()
		m.mu.Lock()
		if e.refs--; e.refs == 0 {
			delete(m.locks, key)
		}
		m.mu.Unlock()
	}
}
