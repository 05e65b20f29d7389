package file

import (
	"fmt"
	"io/fs"
	"os"

	"github.com/pacsd/pacsd/storage"
)

// SameFile reports whether key still names the file that fi describes,
// fi being what the Stat method of an Object opened from this Store
// returned: false once the key has been replaced by a Put or deleted.
//
// It lets a caller that copied an object elsewhere remove it only if no
// newer object has replaced it since it was opened, as the spool does
// after an upload. The answer is only as good as the caller's exclusion
// of Puts and Deletes of key until it has acted on it.
func (s *Store) SameFile(key string, fi fs.FileInfo) (bool, error) {
	if err := storage.ValidKey(key); err != nil {
		return false, fmt.Errorf("file: same file: %w", err)
	}
	cur, err := s.root.Lstat(key)
	switch {
	case notFound(err):
		return false, nil
	case err != nil:
		return false, fmt.Errorf("file: same file %s: %w", key, err)
	}
	return os.SameFile(cur, fi), nil
}
