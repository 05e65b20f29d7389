package file

import (
	"fmt"
	"strings"
	"sync"
	"testing"
)

// TestUnsyncedMarksBalance checks that the bookkeeping of directories
// whose entries are not yet durable returns to empty once concurrent Puts
// that create, and Deletes that prune, directories are done. A leak would
// make every later Put fsync directories it need not.
func TestUnsyncedMarksBalance(t *testing.T) {
	s, err := New(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	var wg sync.WaitGroup
	for w := range 4 {
		wg.Go(func() {
			for i := range 20 {
				key := fmt.Sprintf("s%d/r%d/i%d", i%3, (w+i)%2, w)
				if _, err := s.Put(t.Context(), key, strings.NewReader(key), -1); err != nil {
					t.Error(err)
					return
				}
				if i%2 == 1 {
					if err := s.Delete(t.Context(), key); err != nil {
						t.Error(err)
						return
					}
				}
			}
		})
	}
	wg.Wait()
	if n := s.nunsynced.Load(); n != 0 {
		t.Errorf("nunsynced = %d after all Puts returned", n)
	}
	if len(s.unsynced) != 0 {
		t.Errorf("unsynced = %v after all Puts returned", s.unsynced)
	}
}
