package file_test

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"

	"github.com/pacsd/pacsd/storage"
	"github.com/pacsd/pacsd/storage/file"
	"github.com/pacsd/pacsd/storage/storagetest"
)

func TestStore(t *testing.T) {
	storagetest.Run(t, func(t *testing.T) storage.Store { return newStore(t, t.TempDir()) })
}

func newStore(t testing.TB, root string, opts ...file.Option) *file.Store {
	t.Helper()
	s, err := file.New(root, opts...)
	if err != nil {
		t.Fatalf("New: %v", err)
	}
	t.Cleanup(func() { s.Close() })
	return s
}

func put(t *testing.T, s storage.Store, key, data string) {
	t.Helper()
	if _, err := s.Put(t.Context(), key, strings.NewReader(data), int64(len(data))); err != nil {
		t.Fatalf("Put %s: %v", key, err)
	}
}

func listKeys(t *testing.T, s storage.Store, prefix string) []string {
	t.Helper()
	var keys []string
	for info, err := range s.List(t.Context(), prefix) {
		if err != nil {
			t.Fatalf("List: %v", err)
		}
		keys = append(keys, info.Key)
	}
	return keys
}

func TestNewRequiresDirectory(t *testing.T) {
	dir := t.TempDir()
	if _, err := file.New(filepath.Join(dir, "missing")); err == nil {
		t.Errorf("New on a missing directory succeeded")
	}
	f := filepath.Join(dir, "file")
	if err := os.WriteFile(f, nil, 0o644); err != nil {
		t.Fatal(err)
	}
	if _, err := file.New(f); err == nil {
		t.Errorf("New on a regular file succeeded")
	}
	if _, err := file.New(dir, file.WithFileMode(os.ModeSetuid|0o644)); err == nil {
		t.Errorf("New with a setuid file mode succeeded")
	}
	if _, err := file.New(dir, file.WithDirMode(os.ModeDir|0o755)); err == nil {
		t.Errorf("New with a directory mode bit succeeded")
	}
}

// TestLayout checks that objects are plain files at their keys, so that an
// operator can find, copy and back them up with ordinary tools.
func TestLayout(t *testing.T) {
	root := t.TempDir()
	s := newStore(t, root)
	put(t, s, "1.2.3/4.5/6.7", "dataset")
	got, err := os.ReadFile(filepath.Join(root, "1.2.3", "4.5", "6.7"))
	if err != nil || string(got) != "dataset" {
		t.Fatalf("reading the object's file: %q, %v", got, err)
	}
}

func TestDeletePrunesEmptyDirectories(t *testing.T) {
	root := t.TempDir()
	s := newStore(t, root)
	put(t, s, "a/b/c/d", "1")
	put(t, s, "a/x", "2")
	if err := s.Delete(t.Context(), "a/b/c/d"); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(filepath.Join(root, "a", "b")); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("a/b survived the deletion of its last object: %v", err)
	}
	if _, err := os.Stat(filepath.Join(root, "a", "x")); err != nil {
		t.Errorf("a/x: %v", err)
	}
	if err := s.Delete(t.Context(), "a/x"); err != nil {
		t.Fatal(err)
	}
	entries, err := os.ReadDir(root)
	if err != nil || len(entries) != 0 {
		t.Errorf("root holds %v after deleting everything (%v)", entries, err)
	}
	if _, err := os.Stat(root); err != nil {
		t.Errorf("the root itself was pruned: %v", err)
	}
}

// TestPutRacesPruning runs Puts and Deletes of sibling keys in the same
// deep directory, so that Deletes keep pruning the directories that Puts
// are about to write into. No Put may fail for it.
func TestPutRacesPruning(t *testing.T) {
	s := newStore(t, t.TempDir())
	var wg sync.WaitGroup
	for w := range 6 {
		wg.Go(func() {
			for i := range 40 {
				key := fmt.Sprintf("x/y/z/w%d-%d", w, i)
				if _, err := s.Put(t.Context(), key, strings.NewReader(key), -1); err != nil {
					t.Errorf("Put %s: %v", key, err)
					return
				}
				if err := s.Delete(t.Context(), key); err != nil {
					t.Errorf("Delete %s: %v", key, err)
					return
				}
			}
		})
	}
	wg.Wait()
	if keys := listKeys(t, s, ""); len(keys) != 0 {
		t.Errorf("left behind: %q", keys)
	}
}

// TestForeignEntriesAreNotObjects checks that List yields only regular
// files with valid key names, and skips what else may be in the root.
func TestForeignEntriesAreNotObjects(t *testing.T) {
	root := t.TempDir()
	s := newStore(t, root)
	put(t, s, "d/obj", "x")
	for _, name := range []string{"lost+found/f", "d/README~", "d/with space", "d/dir~/f"} {
		p := filepath.Join(root, filepath.FromSlash(name))
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(p, []byte("foreign"), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	if err := os.Symlink("obj", filepath.Join(root, "d", "link")); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink("d", filepath.Join(root, "dlink")); err != nil {
		t.Fatal(err)
	}
	if got, want := listKeys(t, s, ""), []string{"d/obj"}; !slices.Equal(got, want) {
		t.Errorf("List = %q, want %q", got, want)
	}
}

// TestSymlinkCannotEscapeRoot plants symbolic links to outside the root,
// which only someone who can write into the root could do, and checks
// that the store still never reads, writes or deletes outside it.
func TestSymlinkCannotEscapeRoot(t *testing.T) {
	root, outside := t.TempDir(), t.TempDir()
	secret := filepath.Join(outside, "secret")
	if err := os.WriteFile(secret, []byte("secret"), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink(outside, filepath.Join(root, "dir")); err != nil {
		t.Fatal(err)
	}
	rel, err := filepath.Rel(root, secret)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink(rel, filepath.Join(root, "rel")); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink(secret, filepath.Join(root, "abs")); err != nil {
		t.Fatal(err)
	}
	s := newStore(t, root)
	ctx := t.Context()

	for _, key := range []string{"dir/secret", "rel", "abs"} {
		if obj, err := s.Open(ctx, key); err == nil {
			b, _ := io.ReadAll(obj)
			obj.Close()
			t.Errorf("Open(%q) succeeded and read %q", key, b)
		}
		if info, err := s.Stat(ctx, key); err == nil {
			t.Errorf("Stat(%q) = %+v", key, info)
		}
	}
	if _, err := s.Put(ctx, "dir/planted", strings.NewReader("x"), 1); err == nil {
		t.Errorf("Put through a link to outside succeeded")
	}
	if err := s.Delete(ctx, "dir/secret"); err == nil {
		// Delete may succeed only by removing nothing outside.
		t.Logf("Delete through a link to outside returned nil")
	}
	entries, err := os.ReadDir(outside)
	if err != nil {
		t.Fatal(err)
	}
	if len(entries) != 1 || entries[0].Name() != "secret" {
		t.Errorf("outside the root now holds %v, want just the secret", entries)
	}
	if got := listKeys(t, s, ""); len(got) != 0 {
		t.Errorf("List followed links: %q", got)
	}
}

// TestObjectKeepsSendfile checks that an Object from the filesystem store
// still offers io.WriterTo, through which io.Copy reaches the kernel's
// zero-copy paths when serving an object to a socket.
func TestObjectKeepsSendfile(t *testing.T) {
	s := newStore(t, t.TempDir())
	put(t, s, "k", "data")
	obj, err := s.Open(t.Context(), "k")
	if err != nil {
		t.Fatal(err)
	}
	defer obj.Close()
	if _, ok := obj.(io.WriterTo); !ok {
		t.Errorf("%T does not implement io.WriterTo", obj)
	}
	var buf bytes.Buffer
	if _, err := io.Copy(&buf, obj); err != nil || buf.String() != "data" {
		t.Errorf("io.Copy: %q, %v", buf.String(), err)
	}
}

// TestOpenObjectKeepsOldBytes is stricter than the conformance suite,
// which lets an open object fail once its key changes: a file store's
// open object keeps reading the file it opened.
func TestOpenObjectKeepsOldBytes(t *testing.T) {
	s := newStore(t, t.TempDir())
	put(t, s, "k", "old bytes")
	replaced, err := s.Open(t.Context(), "k")
	if err != nil {
		t.Fatal(err)
	}
	defer replaced.Close()
	put(t, s, "k", "new")
	deleted, err := s.Open(t.Context(), "k")
	if err != nil {
		t.Fatal(err)
	}
	defer deleted.Close()
	if err := s.Delete(t.Context(), "k"); err != nil {
		t.Fatal(err)
	}
	for obj, want := range map[storage.Object]string{replaced: "old bytes", deleted: "new"} {
		got, err := io.ReadAll(obj)
		if err != nil || string(got) != want {
			t.Errorf("read %q, %v; want %q", got, err, want)
		}
	}
}
