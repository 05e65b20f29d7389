package file_test

import (
	"errors"
	"io/fs"
	"testing"

	"github.com/pacsd/pacsd/storage"
)

func TestSameFile(t *testing.T) {
	s := newStore(t, t.TempDir())
	ctx := t.Context()
	put(t, s, "a/b", "one")
	obj, err := s.Open(ctx, "a/b")
	if err != nil {
		t.Fatal(err)
	}
	defer obj.Close()
	fi, err := obj.(interface{ Stat() (fs.FileInfo, error) }).Stat()
	if err != nil {
		t.Fatal(err)
	}
	same := func(want bool) {
		t.Helper()
		if got, err := s.SameFile("a/b", fi); got != want || err != nil {
			t.Errorf("SameFile = %t, %v; want %t", got, err, want)
		}
	}
	same(true)
	put(t, s, "a/b", "two")
	same(false)
	if err := s.Delete(ctx, "a/b"); err != nil {
		t.Fatal(err)
	}
	same(false)
	if _, err := s.SameFile("../x", fi); !errors.Is(err, storage.ErrInvalidKey) {
		t.Errorf("SameFile of an invalid key: %v", err)
	}
}
