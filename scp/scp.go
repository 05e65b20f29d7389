// Package scp is pacsd's DIMSE front door: the service class providers
// that answer a dimse.Server's requests by calling the archive, and the
// mapping of the archive's outcomes onto DIMSE statuses.
package scp

import (
	"context"
	"errors"
	"log/slog"
	"strings"

	"github.com/pacsd/pacsd/archive"
	"github.com/pacsd/pacsd/dimse"
)

// Archive is what the providers need of the archive service.
type Archive interface {
	Store(ctx context.Context, req *archive.StoreRequest) (*archive.Result, error)
}

// Service provides Verification and Storage on top of an Archive. Its
// methods implement dimse.EchoHandler and dimse.StoreHandler.
type Service struct {
	Archive Archive
	Logger  *slog.Logger
}

var (
	_ dimse.EchoHandler  = (*Service)(nil)
	_ dimse.StoreHandler = (*Service)(nil)
)

// Echo answers C-ECHO with Success.
func (s *Service) Echo(ctx context.Context, a *dimse.Association) error { return nil }

// Store archives the data set of a C-STORE request. The response is sent
// only after the archive has made the instance durable and indexed it.
func (s *Service) Store(ctx context.Context, a *dimse.Association, req *dimse.StoreRequest) error {
	res, err := s.Archive.Store(ctx, &archive.StoreRequest{
		SOPClassUID:       req.SOPClassUID,
		SOPInstanceUID:    req.SOPInstanceUID,
		TransferSyntaxUID: req.TransferSyntaxUID,
		CallingAE:         a.CallingAE(),
		CalledAE:          a.CalledAE(),
		Source:            archive.SourceDIMSE,
		Dataset:           req.Dataset,
	})
	if err != nil {
		return storeStatus(err)
	}
	if res.Warning != nil {
		// The instance is archived whole; its header could not be
		// read to the end (PS3.4 B.2.3: data set does not match SOP
		// Class).
		return &dimse.StatusError{Status: dimse.StatusDataSetDoesNotMatch, Comment: detail(res.Warning, archive.ErrIncomplete), Err: res.Warning}
	}
	return nil
}

// storeStatus maps an archive error onto the C-STORE status that says
// what went wrong (PS3.4 B.2.3).
func storeStatus(err error) error {
	var st dimse.Status
	var sentinel error
	switch {
	case errors.Is(err, archive.ErrMismatch):
		st, sentinel = dimse.StatusDataSetMismatch, archive.ErrMismatch
	case errors.Is(err, archive.ErrInvalid):
		st, sentinel = dimse.StatusCannotUnderstand, archive.ErrInvalid
	case errors.Is(err, archive.ErrDuplicate):
		st, sentinel = dimse.StatusDuplicateSOPInstance, archive.ErrDuplicate
	case errors.Is(err, archive.ErrRejected):
		// Refused for good: a rejection note named the instance, and
		// the sender must not try again.
		return &dimse.StatusError{Status: dimse.StatusNotAuthorized, Comment: "instance rejected by a rejection note (IHE IOCM)", Err: err}
	case errors.Is(err, archive.ErrUnavailable):
		st, sentinel = dimse.StatusOutOfResources, archive.ErrUnavailable
	case errors.Is(err, archive.ErrRefused):
		st, sentinel = dimse.StatusNotAuthorized, archive.ErrRefused
	default:
		// The data set stream broke (the association is going) or the
		// request was cancelled: nothing was archived.
		st = dimse.StatusOutOfResources
	}
	return &dimse.StatusError{Status: st, Comment: detail(err, sentinel), Err: err}
}

// detail returns what err says beyond its sentinel, for the 64 characters
// of an Error Comment.
func detail(err, sentinel error) string {
	s := err.Error()
	if sentinel != nil {
		if i := strings.Index(s, sentinel.Error()+": "); i >= 0 {
			return s[i+len(sentinel.Error())+2:]
		}
	}
	return s
}
