package archive

import (
	"bytes"
	"context"
	"errors"
	"io"
	"iter"
	"slices"
	"strings"
	"testing"

	"github.com/pacsd/pacsd/storage"
)

func verify(t *testing.T, f *fixture) ([]Problem, VerifyResult) {
	t.Helper()
	var problems []Problem
	res, err := Verify(t.Context(), f.store, f.db, func(p Problem) { problems = append(problems, p) })
	if err != nil {
		t.Fatalf("Verify: %v", err)
	}
	slices.SortFunc(problems, func(a, b Problem) int { return strings.Compare(a.Key, b.Key) })
	return problems, res
}

func readAll(t *testing.T, s storage.Store, key string) []byte {
	t.Helper()
	obj, err := s.Open(t.Context(), key)
	if err != nil {
		t.Fatal(err)
	}
	defer obj.Close()
	b, err := io.ReadAll(obj)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// TestVerify checks that Verify finds nothing wrong with an archive as the
// archive left it, and exactly the damage done to it: an object with one
// byte changed, an object deleted, an object added behind its back, one
// truncated, and a copy of an instance under a key the index does not
// use.
func TestVerify(t *testing.T) {
	f := newFixture(t, Config{})
	sops := archiveSome(t, f)
	ctx := t.Context()
	if problems, res := verify(t, f); len(problems) != 0 || res.Objects != len(sops) || res.Records != len(sops) {
		t.Fatalf("Verify of a sound archive = %+v, problems %v", res, problems)
	}

	in := func(sop string) (key string, b []byte) {
		rec, err := f.db.Instance(ctx, sop)
		if err != nil {
			t.Fatal(err)
		}
		return rec.Key, readAll(t, f.store, rec.Key)
	}
	put := func(key string, b []byte) {
		if _, err := f.store.Put(ctx, key, bytes.NewReader(b), int64(len(b))); err != nil {
			t.Fatal(err)
		}
	}
	corrupt, b := in(sops[0])
	b[len(b)-100] ^= 0x01
	put(corrupt, b)
	missing, _ := in(sops[1])
	if err := f.store.Delete(ctx, missing); err != nil {
		t.Fatal(err)
	}
	orphan := "7.7/7.7.7/7.7.7.7.dcm"
	put(orphan, patientInstance("7.7", "7.7.7", "7.7.7.7", "Nobody", "N", "OT", 7).b.Bytes())
	truncated, b := in(sops[2])
	put(truncated, b[:len(b)-1])
	copyKey, b := in(sops[3])
	copyKey = strings.Replace(copyKey, "/", "/copy-", 1)
	put(copyKey, b)

	problems, res := verify(t, f)
	want := map[string]ProblemKind{corrupt: HashMismatch, missing: Missing, orphan: Orphan, truncated: SizeMismatch, copyKey: Orphan}
	got := map[string]ProblemKind{}
	for _, p := range problems {
		got[p.Key] = p.Kind
		t.Logf("%v", p)
	}
	if len(problems) != len(want) || res.Problems != len(want) {
		t.Errorf("Verify reported %d problems (result %+v), want %d", len(problems), res, len(want))
	}
	for key, kind := range want {
		if got[key] != kind {
			t.Errorf("%s: reported %v, want %v", key, got[key], kind)
		}
	}
	for _, p := range problems {
		if p.Key == copyKey && !strings.Contains(p.Detail, sops[3]) {
			t.Errorf("copy of an indexed instance reported as %q, which does not name it", p.Detail)
		}
	}
}

// unavailableStore fails to open any object, as S3 does while it is down.
type unavailableStore struct{ storage.Store }

func (unavailableStore) Open(context.Context, string) (storage.Object, error) {
	return nil, storage.ErrUnavailable
}

// TestVerifyStorageDown checks that Verify gives up with an error, rather
// than reporting every object unreadable, when storage is unavailable.
func TestVerifyStorageDown(t *testing.T) {
	f := newFixture(t, Config{})
	archiveSome(t, f)
	var problems []Problem
	_, err := Verify(t.Context(), unavailableStore{f.store}, f.db, func(p Problem) { problems = append(problems, p) })
	if !errors.Is(err, storage.ErrUnavailable) || len(problems) != 0 {
		t.Errorf("Verify with storage down = %v, problems %v", err, problems)
	}
}

// failingList yields some objects, then an error.
type failingList struct{ storage.Store }

func (s failingList) List(ctx context.Context, prefix string) iter.Seq2[storage.Info, error] {
	return func(yield func(storage.Info, error) bool) {
		for info, err := range s.Store.List(ctx, prefix) {
			if !yield(info, err) {
				return
			}
			break
		}
		yield(storage.Info{}, errors.New("listing broke"))
	}
}

func TestReindexListFails(t *testing.T) {
	f := newFixture(t, Config{})
	archiveSome(t, f)
	if _, err := Reindex(t.Context(), failingList{f.store}, openIndex(t), nil); err == nil || !strings.Contains(err.Error(), "listing broke") {
		t.Errorf("Reindex with a failing listing = %v", err)
	}
	if _, err := Verify(t.Context(), failingList{f.store}, f.db, nil); err == nil || !strings.Contains(err.Error(), "listing broke") {
		t.Errorf("Verify with a failing listing = %v", err)
	}
}
