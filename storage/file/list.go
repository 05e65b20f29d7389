package file

import (
	"context"
	"fmt"
	"io/fs"
	"iter"
	"slices"
	"strings"

	"github.com/pacsd/pacsd/storage"
)

// List implements storage.Store. It walks the tree depth first, reading
// one directory at a time and closing it before yielding anything from
// it, so memory grows with the depth of the tree and the size of the
// largest directory, not with the number of objects, and breaking out of
// the loop leaves nothing open. Only regular files with valid key names
// are objects: temporary files, symbolic links and foreign files are
// skipped.
func (s *Store) List(ctx context.Context, prefix string) iter.Seq2[storage.Info, error] {
	return func(yield func(storage.Info, error) bool) {
		if err := storage.ValidPrefix(prefix); err != nil {
			yield(storage.Info{}, fmt.Errorf("file: list: %w", err))
			return
		}
		// Only the last segment of the prefix may be partial: start in the
		// directory the complete ones name and match names there.
		dir, name := ".", prefix
		if i := strings.LastIndexByte(prefix, '/'); i >= 0 {
			dir, name = prefix[:i], prefix[i+1:]
		}
		s.walk(ctx, dir, name, func(info storage.Info, err error) bool {
			if err != nil {
				err = fmt.Errorf("file: list %s: %w", prefix, err)
			}
			return yield(info, err)
		})
	}
}

// entry is a directory entry that may lead to objects.
type entry struct {
	name string
	dir  bool
	de   fs.DirEntry
}

// walk yields the objects below dir in key order, taking at this level
// only the entries whose names begin with namePrefix. It reports whether
// the walk should go on.
func (s *Store) walk(ctx context.Context, dir, namePrefix string, yield func(storage.Info, error) bool) bool {
	if err := ctx.Err(); err != nil {
		yield(storage.Info{}, err)
		return false
	}
	entries, err := s.readDir(dir, namePrefix)
	if notFound(err) {
		// The prefix names no directory, or a Delete pruned it.
		return true
	}
	if err != nil {
		yield(storage.Info{}, err)
		return false
	}
	for _, e := range entries {
		key := e.name
		if dir != "." {
			key = dir + "/" + e.name
		}
		if e.dir {
			if !s.walk(ctx, key, "", yield) {
				return false
			}
			continue
		}
		fi, err := e.de.Info()
		if notFound(err) {
			continue // deleted since the directory was read
		}
		if err != nil {
			yield(storage.Info{}, err)
			return false
		}
		if err := ctx.Err(); err != nil {
			yield(storage.Info{}, err)
			return false
		}
		if !yield(storage.Info{Key: key, Size: fi.Size(), ModTime: fi.ModTime()}, nil) {
			return false
		}
	}
	return true
}

// readDir returns the regular files and directories in dir whose names
// are valid key segments beginning with namePrefix, in the order in which
// their keys sort.
//
// Sorting names alone would not give that order: the key "a-c" sorts
// before "a/b", because '-' sorts before '/', yet the name "a" sorts
// before "a-c". Comparing a directory as its name followed by '/' fixes
// this, since every key below it begins with exactly that.
func (s *Store) readDir(dir, namePrefix string) ([]entry, error) {
	f, err := s.root.Open(dir)
	if err != nil {
		return nil, err
	}
	des, err := f.ReadDir(-1)
	f.Close()
	if err != nil {
		return nil, err
	}
	entries := make([]entry, 0, len(des))
	for _, de := range des {
		name := de.Name()
		if !strings.HasPrefix(name, namePrefix) || storage.ValidKey(name) != nil {
			continue
		}
		switch t := de.Type(); {
		case t.IsRegular():
			entries = append(entries, entry{name: name, de: de})
		case t.IsDir():
			entries = append(entries, entry{name: name, dir: true, de: de})
		}
	}
	slices.SortFunc(entries, func(a, b entry) int {
		return compareKeys(a.name, a.dir, b.name, b.dir)
	})
	return entries, nil
}

// compareKeys compares two entry names as readDir describes, as if each
// directory's name ended in '/', without building those strings.
func compareKeys(a string, aDir bool, b string, bDir bool) int {
	n := min(len(a), len(b))
	if c := strings.Compare(a[:n], b[:n]); c != 0 {
		return c
	}
	// One name is a prefix of the other (or they are equal, which two
	// entries of one directory cannot be). Compare the byte that follows
	// the common part, where a directory's is '/' and a name that ends
	// there has none.
	next := func(s string, dir bool) int {
		switch {
		case len(s) > n:
			return int(s[n])
		case dir:
			return '/'
		}
		return -1
	}
	return next(a, aDir) - next(b, bDir)
}
