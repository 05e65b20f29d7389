package archive

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/pacsd/pacsd/storage"
	"github.com/pacsd/pacsd/storage/mem"
)

// recorder is an Observer that notes what it hears, one line per event.
type recorder struct {
	mu     sync.Mutex
	events []string
}

func (r *recorder) add(format string, args ...any) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.events = append(r.events, fmt.Sprintf(format, args...))
}

func (r *recorder) ObserveStored(source, callingAE string, bytes int64) {
	r.add("stored %s %s %v", source, callingAE, bytes > 0)
}

func (r *recorder) ObserveStoragePut(backend string, d time.Duration, err error) {
	r.add("put %s failed=%v", backend, err != nil)
}

func (r *recorder) ObserveStorageGet(backend string, d time.Duration, err error) {
	r.add("get %s failed=%v", backend, err != nil)
}

func (r *recorder) ObserveIndexCommit(d time.Duration, err error) {
	r.add("commit failed=%v", err != nil)
}

func (r *recorder) take() []string {
	r.mu.Lock()
	defer r.mu.Unlock()
	e := r.events
	r.events = nil
	return e
}

// TestObserver checks what the archive reports of its work: a store, a
// duplicate kept, a failure of storage, a failure of the sender (not
// storage's), an open.
func TestObserver(t *testing.T) {
	rec := &recorder{}
	store := &switchStore{Store: mem.New()}
	f := newFixture(t, Config{Store: store, Observer: rec, Backend: "file", Duplicates: DuplicateKeep})
	check := func(what string, want ...string) {
		t.Helper()
		if got := rec.take(); !slices.Equal(got, want) {
			t.Errorf("%s: observed %q, want %q", what, got, want)
		}
	}
	res, err := f.put(instance("1.2.3", "1.2.3.4", "1.5"), "1.5")
	if err != nil {
		t.Fatal(err)
	}
	check("store", "put file failed=false", "commit failed=false", "stored dimse MODALITY true")

	if res, err := f.put(instance("1.2.3", "1.2.3.4", "1.5"), "1.5"); err != nil || !res.Kept {
		t.Fatalf("duplicate: %+v, %v", res, err)
	}
	check("duplicate kept")

	store.fail = true
	if _, err := f.put(instance("1.2.3", "1.2.3.4", "1.6"), "1.6"); err == nil {
		t.Fatal("store on failing storage succeeded")
	}
	check("storage failure", "put file failed=true")
	store.fail = false

	d := instance("1.2.3", "1.2.3.4", "1.7")
	r := io.MultiReader(bytes.NewReader(d.b.Bytes()[:200]), errReader{})
	if _, err := f.svc.Store(context.Background(), &StoreRequest{TransferSyntaxUID: "1.2.840.10008.1.2.1", Dataset: r}); err == nil {
		t.Fatal("store of a broken stream succeeded")
	}
	check("sender failure")

	obj, err := f.svc.Open(context.Background(), res.Instance)
	if err != nil {
		t.Fatal(err)
	}
	obj.Close()
	check("open", "get file failed=false")
}

// switchStore fails Puts while fail is set.
type switchStore struct {
	storage.Store
	fail bool
}

func (s *switchStore) Put(ctx context.Context, key string, r io.Reader, size int64) (storage.Info, error) {
	if s.fail {
		return failingStore{}.Put(ctx, key, r, size)
	}
	return s.Store.Put(ctx, key, r, size)
}
