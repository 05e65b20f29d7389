package file

import (
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// leaveTemp writes a temporary file into dir below root as a Put that
// crashed midway would leave it, with the given modification time.
func leaveTemp(t *testing.T, root, dir string, mtime time.Time) string {
	t.Helper()
	d := filepath.Join(root, filepath.FromSlash(dir))
	if err := os.MkdirAll(d, 0o755); err != nil {
		t.Fatal(err)
	}
	p := filepath.Join(d, tempName())
	if err := os.WriteFile(p, []byte("half an obj"), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.Chtimes(p, mtime, mtime); err != nil {
		t.Fatal(err)
	}
	return p
}

func exists(t *testing.T, p string) bool {
	t.Helper()
	_, err := os.Lstat(p)
	if err != nil && !errors.Is(err, os.ErrNotExist) {
		t.Fatal(err)
	}
	return err == nil
}

func TestCleanAfterCrash(t *testing.T) {
	root := t.TempDir()
	s, err := New(root)
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	ctx := t.Context()
	if _, err := s.Put(ctx, "a/b/obj", strings.NewReader("kept"), -1); err != nil {
		t.Fatal(err)
	}
	old := time.Now().Add(-2 * time.Hour)
	besideObject := leaveTemp(t, root, "a/b", old)
	alone := leaveTemp(t, root, "x/y", old) // a crash right after creating x/y
	atRoot := leaveTemp(t, root, ".", old)
	recent := leaveTemp(t, root, "a", time.Now())
	foreign := filepath.Join(root, "a", ".put~notours")
	if err := os.WriteFile(foreign, nil, 0o644); err != nil {
		t.Fatal(err)
	}

	// Temporary files are invisible before cleaning.
	var keys []string
	for info, err := range s.List(ctx, "") {
		if err != nil {
			t.Fatal(err)
		}
		keys = append(keys, info.Key)
	}
	if len(keys) != 1 || keys[0] != "a/b/obj" {
		t.Errorf("List = %q, want just a/b/obj", keys)
	}

	n, err := s.Clean(ctx, time.Hour)
	if err != nil {
		t.Fatalf("Clean: %v", err)
	}
	if n != 3 {
		t.Errorf("Clean removed %d files, want 3", n)
	}
	for _, p := range []string{besideObject, alone, atRoot, filepath.Join(root, "x")} {
		if exists(t, p) {
			t.Errorf("%s survived Clean", p)
		}
	}
	for _, p := range []string{recent, foreign, filepath.Join(root, "a", "b", "obj")} {
		if !exists(t, p) {
			t.Errorf("Clean removed %s", p)
		}
	}

	// With olderThan 0 the recent one goes too.
	if n, err := s.Clean(ctx, 0); err != nil || n != 1 {
		t.Errorf("Clean(0) = %d, %v; want 1, nil", n, err)
	}
	if exists(t, recent) {
		t.Errorf("%s survived Clean(0)", recent)
	}
}

// blockingReader yields one chunk, then blocks until released.
type blockingReader struct {
	started chan struct{}
	release chan struct{}
	sent    bool
}

func (r *blockingReader) Read(p []byte) (int, error) {
	if !r.sent {
		r.sent = true
		close(r.started)
		return copy(p, "first chunk "), nil
	}
	<-r.release
	return 0, errors.New("released")
}

// TestCleanSparesPutInProgress checks that Clean, even with olderThan 0,
// leaves alone the temporary file of a Put that is still running.
func TestCleanSparesPutInProgress(t *testing.T) {
	root := t.TempDir()
	s, err := New(root)
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	r := &blockingReader{started: make(chan struct{}), release: make(chan struct{})}
	done := make(chan error)
	go func() {
		// io.Reader errors other than EOF fail the Put; that is fine, the
		// point is that Clean did not pull the file from under it.
		_, err := s.Put(t.Context(), "p/k", r, -1)
		done <- err
	}()
	<-r.started
	if n, err := s.Clean(t.Context(), 0); err != nil || n != 0 {
		t.Errorf("Clean = %d, %v; want 0, nil", n, err)
	}
	entries, err := os.ReadDir(filepath.Join(root, "p"))
	if err != nil || len(entries) != 1 || !isTempName(entries[0].Name()) {
		t.Errorf("the Put's temporary file is gone: %v, %v", entries, err)
	}
	close(r.release)
	if err := <-done; err == nil {
		t.Errorf("Put with a failing reader succeeded")
	}
	if exists(t, filepath.Join(root, "p")) {
		t.Errorf("the failed Put left its directory behind")
	}
}

func TestTempNames(t *testing.T) {
	seen := make(map[string]bool)
	for range 1000 {
		name := tempName()
		if !isTempName(name) {
			t.Fatalf("isTempName(%q) = false", name)
		}
		if seen[name] {
			t.Fatalf("tempName repeated %q", name)
		}
		seen[name] = true
	}
	for _, name := range []string{".put~", ".put~0123", ".put~0123456789abcdeg", ".put~0123456789ABCDEF", "x.put~0123456789abcdef", ".put~0123456789abcdef0"} {
		if isTempName(name) {
			t.Errorf("isTempName(%q) = true", name)
		}
	}
}
