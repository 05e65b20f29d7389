package archive

import (
	"context"
	"errors"
	"sync/atomic"
	"testing"

	"github.com/pacsd/pacsd/dicom/uid"
	"github.com/pacsd/pacsd/storage/mem"
)

// spooled is a store whose objects reach their final storage only when
// the test says so, as a spool's do.
type spooled struct {
	*mem.Store
	uploaded atomic.Bool
}

func (s *spooled) Uploaded(ctx context.Context, key string) (bool, error) {
	return s.uploaded.Load(), nil
}

func TestCommitted(t *testing.T) {
	st := &spooled{Store: mem.New()}
	f := newFixture(t, Config{Store: st})
	if _, err := f.put(instance("1.2.3", "1.2.3.4", "1.2.3.4.5"), "1.2.3.4.5"); err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	for _, c := range []struct {
		class, sop string
		want       error
	}{
		{uid.CTImageStorage, "1.2.3.4.5", ErrPending},
		{uid.CTImageStorage, "9.9.9", ErrNotArchived},
		{uid.MRImageStorage, "1.2.3.4.5", ErrMismatch},
	} {
		if err := f.svc.Committed(ctx, c.class, c.sop); !errors.Is(err, c.want) {
			t.Errorf("Committed(%s) = %v, want %v", c.sop, err, c.want)
		}
	}
	st.uploaded.Store(true)
	if err := f.svc.Committed(ctx, uid.CTImageStorage, "1.2.3.4.5"); err != nil {
		t.Errorf("Committed once uploaded = %v", err)
	}
	// An object gone from storage is not committed, whatever the index says.
	in, _ := f.db.Instance(ctx, "1.2.3.4.5")
	st.Delete(ctx, in.Key)
	if err := f.svc.Committed(ctx, uid.CTImageStorage, "1.2.3.4.5"); !errors.Is(err, ErrNotArchived) {
		t.Errorf("Committed without its object = %v, want ErrNotArchived", err)
	}
}
