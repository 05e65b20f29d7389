//go:build unix

package file_test

import (
	"io/fs"
	"os"
	"path/filepath"
	"syscall"
	"testing"

	"github.com/pacsd/pacsd/storage/file"
)

// TestPermissions checks the modes of what Put creates. It sets the umask
// for the whole process, so it must not run in parallel with other tests.
func TestPermissions(t *testing.T) {
	old := syscall.Umask(0o022)
	defer syscall.Umask(old)

	cases := []struct {
		name          string
		opts          []file.Option
		fileMode, dir fs.FileMode
	}{
		{"default", nil, 0o644, 0o755},
		{"private", []file.Option{file.WithFileMode(0o600), file.WithDirMode(0o700)}, 0o600, 0o700},
		{"umask-applies", []file.Option{file.WithFileMode(0o666), file.WithDirMode(0o777)}, 0o644, 0o755},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			root := t.TempDir()
			s := newStore(t, root, tc.opts...)
			put(t, s, "d1/d2/obj", "x")
			check := func(rel string, want fs.FileMode) {
				t.Helper()
				fi, err := os.Stat(filepath.Join(root, filepath.FromSlash(rel)))
				if err != nil {
					t.Fatal(err)
				}
				if got := fi.Mode().Perm(); got != want {
					t.Errorf("%s has mode %v, want %v", rel, got, want)
				}
			}
			check("d1", tc.dir)
			check("d1/d2", tc.dir)
			check("d1/d2/obj", tc.fileMode)
		})
	}
}
