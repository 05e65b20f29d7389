package scp

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"time"

	"github.com/pacsd/pacsd/archive"
	"github.com/pacsd/pacsd/dicom/uid"
	"github.com/pacsd/pacsd/dimse"
)

// Committer answers whether the archive commits to keeping an instance.
type Committer interface {
	Committed(ctx context.Context, sopClassUID, sopInstanceUID string) error
}

// Commitment provides the Storage Commitment Push Model as SCP (PS3.4
// Annex J): it tells a modality which instances are safe in the
// archive, so that the modality may delete its own copies. An instance
// still on its way to final storage (a spooled object not yet uploaded)
// is waited for, up to Wait, before it is reported as failed.
//
// The result goes back on the requesting association while it is open,
// or else on a new association to the requesting AE, which must be one
// of Remotes.
type Commitment struct {
	AETitle string
	Archive Committer
	Remotes map[string]Remote
	// Wait bounds how long an instance not yet in final storage is
	// waited for (default 10 minutes); Poll is how often it is checked
	// again (default 2 s).
	Wait, Poll time.Duration
	// TLSConfig is used to reach remotes marked TLS.
	TLSConfig *tls.Config
	Logger    *slog.Logger

	mu      sync.Mutex
	pending map[string]bool // transaction UIDs in progress
	wg      sync.WaitGroup
	ctx     context.Context
	cancel  context.CancelFunc
}

var _ dimse.CommitHandler = (*Commitment)(nil)

func (c *Commitment) log() *slog.Logger {
	if c.Logger != nil {
		return c.Logger
	}
	return slog.New(slog.DiscardHandler)
}

// Commit accepts a Storage Commitment request and works it out in the
// background.
func (c *Commitment) Commit(ctx context.Context, a *dimse.Association, req *dimse.CommitRequest) error {
	if err := uid.Valid(req.TransactionUID); err != nil {
		return dimse.Errorf(dimse.StatusInvalidArgumentValue, "Transaction UID: %v", err)
	}
	c.mu.Lock()
	if c.pending == nil {
		c.pending = map[string]bool{}
		c.ctx, c.cancel = context.WithCancel(context.Background())
	}
	if c.pending[req.TransactionUID] {
		c.mu.Unlock()
		return dimse.Errorf(dimse.StatusDuplicateInvocation, "transaction %s is already in progress", req.TransactionUID)
	}
	c.pending[req.TransactionUID] = true
	base := c.ctx
	c.wg.Add(1)
	c.mu.Unlock()
	c.log().Info("storage commitment requested", "calling_ae", a.CallingAE(), "transaction_uid", req.TransactionUID, "instances", len(req.Instances))
	go func() {
		defer c.wg.Done()
		defer func() {
			c.mu.Lock()
			delete(c.pending, req.TransactionUID)
			c.mu.Unlock()
		}()
		res := c.check(base, req)
		c.report(base, a, req, res)
	}()
	return nil
}

// check works out which instances are committed, waiting for those on
// their way to final storage.
func (c *Commitment) check(ctx context.Context, req *dimse.CommitRequest) *dimse.CommitResult {
	wait, poll := c.Wait, c.Poll
	if wait <= 0 {
		wait = 10 * time.Minute
	}
	if poll <= 0 {
		poll = 2 * time.Second
	}
	deadline := time.Now().Add(wait)
	res := &dimse.CommitResult{TransactionUID: req.TransactionUID}
	for _, ref := range req.Instances {
		for {
			err := c.Archive.Committed(ctx, ref.ClassUID, ref.InstanceUID)
			if err == nil {
				res.Committed = append(res.Committed, ref)
				break
			}
			retry := errors.Is(err, archive.ErrPending) || errors.Is(err, archive.ErrUnavailable)
			if retry && time.Now().Before(deadline) {
				select {
				case <-time.After(poll):
					continue
				case <-ctx.Done():
				}
			}
			reason := dimse.StatusProcessingFailure
			switch {
			case errors.Is(err, archive.ErrNotArchived):
				reason = dimse.StatusNoSuchObjectInstance
			case errors.Is(err, archive.ErrMismatch):
				reason = dimse.StatusClassInstanceConflict
			}
			c.log().Warn("instance not committed", "transaction_uid", req.TransactionUID, "sop_instance_uid", ref.InstanceUID, "reason", reason, "err", err)
			res.Failed = append(res.Failed, dimse.FailedSOP{SOPRef: ref, Reason: reason})
			break
		}
	}
	return res
}

// report sends a result on the requesting association if it is still
// open, or on a new one.
func (c *Commitment) report(ctx context.Context, a *dimse.Association, req *dimse.CommitRequest, res *dimse.CommitResult) {
	log := c.log().With("calling_ae", a.CallingAE(), "transaction_uid", res.TransactionUID)
	if req.Answered != nil {
		select {
		case <-req.Answered:
		case <-a.Done():
		case <-ctx.Done():
			return
		}
	}
	select {
	case <-a.Done():
	default:
		rctx, cancel := context.WithTimeout(ctx, time.Minute)
		err := a.ReportCommit(rctx, res)
		cancel()
		if err == nil {
			log.Info("storage commitment reported", "committed", len(res.Committed), "failed", len(res.Failed))
			return
		}
		log.Info("storage commitment not reported on the requesting association; opening one", "err", err)
	}
	remote, ok := c.Remotes[a.CallingAE()]
	if !ok {
		log.Error("storage commitment result cannot be reported: the requesting AE is not a configured remote AE", "committed", len(res.Committed), "failed", len(res.Failed))
		return
	}
	var err error
	for attempt, backoff := 0, time.Second; attempt < 5; attempt, backoff = attempt+1, backoff*4 {
		if err = c.reportTo(ctx, remote, res); err == nil {
			log.Info("storage commitment reported", "remote", remote.Addr, "committed", len(res.Committed), "failed", len(res.Failed))
			return
		}
		log.Warn("storage commitment report failed; will retry", "remote", remote.Addr, "err", err)
		select {
		case <-time.After(backoff):
		case <-ctx.Done():
			return
		}
	}
	log.Error("storage commitment result not delivered", "remote", remote.Addr, "err", err)
}

func (c *Commitment) reportTo(ctx context.Context, r Remote, res *dimse.CommitResult) error {
	d := &dimse.Dialer{
		CallingAE: c.AETitle,
		CalledAE:  r.AETitle,
		SCPRoles:  []string{uid.StorageCommitmentPushModel},
		Proposals: []dimse.Proposal{{AbstractSyntax: uid.StorageCommitmentPushModel, TransferSyntaxes: []string{uid.ExplicitVRLittleEndian, uid.ImplicitVRLittleEndian}}},
		Logger:    c.log(),
	}
	peer, err := dialRemote(ctx, d, r, c.TLSConfig)
	if err != nil {
		return fmt.Errorf("connect: %w", err)
	}
	rctx, cancel := context.WithTimeout(ctx, time.Minute)
	defer cancel()
	if err := peer.ReportCommit(rctx, res); err != nil {
		peer.Abort()
		return err
	}
	return peer.Release(rctx)
}

// Shutdown stops waiting for instances and waits, up to ctx, for the
// reports in progress to end. Results not reported are lost; the modality
// asks again, as PS3.4 J.3.3 expects of it.
func (c *Commitment) Shutdown(ctx context.Context) error {
	c.mu.Lock()
	if c.cancel != nil {
		c.cancel()
	}
	c.mu.Unlock()
	done := make(chan struct{})
	go func() { c.wg.Wait(); close(done) }()
	select {
	case <-done:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}
