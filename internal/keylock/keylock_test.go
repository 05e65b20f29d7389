package keylock

import (
	"context"
	"errors"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

func TestMap(t *testing.T) {
	var m Map
	var inside [2]atomic.Int32
	var wg sync.WaitGroup
	for i := range 64 {
		wg.Go(func() {
			k := i % 2
			unlock := m.Lock([]string{"a", "b"}[k])
			if n := inside[k].Add(1); n != 1 {
				t.Errorf("%d holders of one key at once", n)
			}
			inside[k].Add(-1)
			unlock()
		})
	}
	wg.Wait()
	if len(m.locks) != 0 {
		t.Errorf("%d keys left in the map after every unlock", len(m.locks))
	}
	// Different keys do not wait for each other.
	ua := m.Lock("a")
	ub := m.Lock("b")
	ub()
	ua()
}

// TestLockContext stops waiting for a held key when the context ends,
// holding nothing afterwards.
func TestLockContext(t *testing.T) {
	var m Map
	unlock := m.Lock("a")
	ctx, cancel := context.WithTimeout(t.Context(), 20*time.Millisecond)
	defer cancel()
	if _, err := m.LockContext(ctx, "a"); !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("LockContext of a held key = %v, want the deadline", err)
	}
	unlock()
	unlock() // harmless
	if len(m.locks) != 0 {
		t.Errorf("%d keys left in the map after a cancelled wait", len(m.locks))
	}
	u, err := m.LockContext(t.Context(), "a")
	if err != nil {
		t.Fatal(err)
	}
	u()
}
