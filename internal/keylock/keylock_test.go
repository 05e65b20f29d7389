package keylock

import (
	"sync"
	"sync/atomic"
	"testing"
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
