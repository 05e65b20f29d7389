package file

import (
	"context"
	"fmt"
	"time"

	"github.com/pacsd/pacsd/storage"
)

// Clean removes the temporary files that Puts interrupted by a crash left
// behind, and the directories their removal leaves empty. It returns how
// many temporary files it removed.
//
// Clean walks the whole tree, which takes a while on a large archive, and
// may run concurrently with every other method. It never removes the
// temporary file of a Put in progress in this Store. Temporary files
// modified less than olderThan ago are kept as well, which protects the
// Puts of other processes sharing the root; when nothing else writes to
// the root, as at startup, olderThan may be 0. A Put whose reader stalls
// for longer than olderThan in another process loses its temporary file
// and fails; it never stores a partial object.
func (s *Store) Clean(ctx context.Context, olderThan time.Duration) (int, error) {
	cutoff := time.Now().Add(-olderThan)
	n, err := s.clean(ctx, ".", cutoff)
	if err != nil {
		return n, fmt.Errorf("file: clean: %w", err)
	}
	return n, nil
}

func (s *Store) clean(ctx context.Context, dir string, cutoff time.Time) (int, error) {
	if err := ctx.Err(); err != nil {
		return 0, err
	}
	f, err := s.root.Open(dir)
	if notFound(err) {
		return 0, nil // pruned meanwhile
	}
	if err != nil {
		return 0, err
	}
	des, err := f.ReadDir(-1)
	f.Close()
	if notFound(err) {
		return 0, nil
	}
	if err != nil {
		return 0, err
	}
	removed := 0
	for _, de := range des {
		name := de.Name()
		p := name
		if dir != "." {
			p = dir + "/" + name
		}
		switch {
		case de.IsDir() && storage.ValidKey(name) == nil:
			// Temporary files only ever sit in directories that keys
			// name, so there is no need to look anywhere else.
			n, err := s.clean(ctx, p, cutoff)
			removed += n
			if err != nil {
				return removed, err
			}
		case de.Type().IsRegular() && isTempName(name):
			if _, busy := s.inflight.Load(p); busy {
				continue
			}
			fi, err := de.Info()
			if notFound(err) {
				continue // its Put finished or failed meanwhile
			}
			if err != nil {
				return removed, err
			}
			if fi.ModTime().After(cutoff) {
				continue
			}
			if err := s.root.Remove(p); err != nil && !notFound(err) {
				return removed, err
			}
			removed++
		}
	}
	if removed > 0 && dir != "." {
		s.prune(dir)
	}
	return removed, nil
}
