package archive

import (
	"context"
	"errors"
	"fmt"

	"github.com/pacsd/pacsd/index"
	"github.com/pacsd/pacsd/storage"
)

// Errors of Committed.
var (
	// ErrNotArchived reports an instance the archive does not hold.
	ErrNotArchived = errors.New("archive: instance not archived")
	// ErrPending reports an instance archived but not yet in its final
	// storage (a spooled object still to be uploaded).
	ErrPending = errors.New("archive: instance not yet in final storage")
)

// uploader is a store whose objects reach their final storage after Put
// returns (a spool in front of S3); it says whether one has.
type uploader interface {
	Uploaded(ctx context.Context, key string) (bool, error)
}

// Committed reports whether the archive commits to keeping an instance
// (the question Storage Commitment asks, PS3.4 Annex J): it is indexed
// under that SOP class, its object is in storage with the size indexed,
// and, for a spooled store, uploaded. It returns nil, or an error
// wrapping ErrNotArchived, ErrMismatch, ErrPending or ErrUnavailable.
func (s *Service) Committed(ctx context.Context, sopClassUID, sopInstanceUID string) error {
	in, err := s.cfg.Index.Instance(ctx, sopInstanceUID)
	switch {
	case errors.Is(err, index.ErrNotFound):
		return fmt.Errorf("%w: %s", ErrNotArchived, sopInstanceUID)
	case err != nil:
		return fmt.Errorf("%w: index: %v", ErrUnavailable, err)
	case in.SOPClassUID != sopClassUID:
		return fmt.Errorf("%w: %s is archived as %s, not %s", ErrMismatch, sopInstanceUID, in.SOPClassUID, sopClassUID)
	}
	info, err := s.cfg.Store.Stat(ctx, in.Key)
	switch {
	case errors.Is(err, storage.ErrNotFound):
		return fmt.Errorf("%w: object %s of %s is missing", ErrNotArchived, in.Key, sopInstanceUID)
	case err != nil:
		return fmt.Errorf("%w: stat %s: %v", ErrUnavailable, in.Key, err)
	case info.Size != in.Size:
		return fmt.Errorf("%w: object %s has %d bytes, %d indexed", ErrNotArchived, in.Key, info.Size, in.Size)
	}
	if u, ok := s.cfg.Store.(uploader); ok {
		done, err := u.Uploaded(ctx, in.Key)
		if err != nil {
			return fmt.Errorf("%w: upload state of %s: %v", ErrUnavailable, in.Key, err)
		}
		if !done {
			return fmt.Errorf("%w: %s", ErrPending, in.Key)
		}
	}
	return nil
}
