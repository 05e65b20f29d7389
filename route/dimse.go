package route

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"slices"
	"strconv"
	"sync"
	"time"

	"github.com/pacsd/pacsd/dicom"
	"github.com/pacsd/pacsd/dicom/tag"
	"github.com/pacsd/pacsd/dicom/uid"
	"github.com/pacsd/pacsd/dimse"
	"github.com/pacsd/pacsd/index"
)

// ErrNotSendable is wrapped by the error of a Datasets that will never
// give an instance to send, such as one a de-identifying destination may
// not receive: the DIMSE sender reports it refused for good.
var ErrNotSendable = errors.New("route: instance not to be sent")

// Datasets opens the data sets of archived instances.
type Datasets interface {
	// OpenDataset opens the data set of in, converted to transfer
	// syntax ts if that is not the stored one (see archive). An error
	// wrapping ErrNotSendable skips the instance for good.
	OpenDataset(ctx context.Context, in *index.Instance, ts string) (dicom.FileMeta, io.ReadCloser, error)
}

// DIMSE sends to a remote AE by C-STORE.
type DIMSE struct {
	// CallingAE is pacsd's AE title; CalledAE the destination's.
	CallingAE, CalledAE string
	// Addr is the destination's "host:port".
	Addr string
	// TLS, when not nil, is the configuration of a TLS connection.
	TLS      *tls.Config
	Datasets Datasets
	// Convertible reports whether a data set stored in transfer syntax
	// from can be sent in to; by default when dicom.Transcode converts
	// between the two.
	Convertible func(from, to string) bool
	Limiter     *Limiter
	// Commit asks the destination to commit to the instances sent
	// (Storage Commitment Push Model) and reports them sent only once
	// it has; Commitments receives its results. CommitTimeout bounds
	// the wait for them (default 5 minutes).
	Commit        bool
	Commitments   *Commitments
	CommitTimeout time.Duration
	// Verify, without Commit, counts the study's instances at the
	// destination with a C-FIND after sending, and reports them sent
	// only if it has at least as many as it was sent.
	Verify bool
	// KeepOpen is how long an association stays open after a send, for
	// the next one to use (default 5 s; negative: released at once). A
	// study that arrives one instance at a time is then forwarded on one
	// association rather than one per instance.
	KeepOpen time.Duration
	Logger   *slog.Logger

	mu   sync.Mutex
	idle []*idleAssociation
}

// idleAssociation is an association kept open between sends.
type idleAssociation struct {
	a     *dimse.Association
	timer *time.Timer
}

var _ Sender = (*DIMSE)(nil)

// convertibleSyntaxes are the syntaxes proposed besides the stored one,
// in order of preference, when the stored one can be converted to them.
var convertibleSyntaxes = []string{uid.ExplicitVRLittleEndian, uid.ImplicitVRLittleEndian, uid.DeflatedExplicitVRLittleEndian, uid.ExplicitVRBigEndian}

func (d *DIMSE) convertible(from, to string) bool {
	if d.Convertible != nil {
		return d.Convertible(from, to)
	}
	return dicom.Transcodable(from) && dicom.Transcodable(to)
}

// maxContexts is how many presentation contexts an association holds
// (PS3.8 9.3.2.2: odd context IDs 1 to 255).
const maxContexts = 128

// proposals proposes, for each SOP class and stored syntax, a context
// of that syntax alone, so that a destination that takes the data as
// stored is not led to choose another, and, as far as room is left, a
// context of the syntaxes it can be converted to. It returns the
// instances whose stored syntax's context fits in one association, and
// those left for the next.
func (d *DIMSE) proposals(ins []*index.Instance) (out []dimse.Proposal, fit, rest []*index.Instance) {
	if d.Commit {
		out = append(out, dimse.Proposal{AbstractSyntax: uid.StorageCommitmentPushModel, TransferSyntaxes: []string{uid.ExplicitVRLittleEndian, uid.ImplicitVRLittleEndian}})
	} else if d.Verify {
		out = append(out, dimse.Proposal{AbstractSyntax: uid.StudyRootQueryRetrieveInformationModelFind, TransferSyntaxes: []string{uid.ExplicitVRLittleEndian, uid.ImplicitVRLittleEndian}})
	}
	type pair struct{ class, ts string }
	var pairs []pair
	proposed := map[pair]bool{}
	for _, in := range ins {
		p := pair{in.SOPClassUID, in.TransferSyntaxUID}
		switch {
		case proposed[p]:
		case len(out) < maxContexts:
			proposed[p] = true
			pairs = append(pairs, p)
			out = append(out, dimse.Proposal{AbstractSyntax: p.class, TransferSyntaxes: []string{p.ts}})
		default:
			rest = append(rest, in)
			continue
		}
		fit = append(fit, in)
	}
	for _, p := range pairs {
		var others []string
		for _, ts := range convertibleSyntaxes {
			if ts != p.ts && d.convertible(p.ts, ts) {
				others = append(others, ts)
			}
		}
		if len(others) > 0 && len(out) < maxContexts {
			out = append(out, dimse.Proposal{AbstractSyntax: p.class, TransferSyntaxes: others})
		}
	}
	return out, fit, rest
}

func (d *DIMSE) log() *slog.Logger {
	if d.Logger != nil {
		return d.Logger
	}
	return slog.New(slog.DiscardHandler)
}

// dial opens an association, over TLS if configured.
func (d *DIMSE) dial(ctx context.Context, dl *dimse.Dialer) (*dimse.Association, error) {
	ctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	var nd net.Dialer
	conn, err := nd.DialContext(ctx, "tcp", d.Addr)
	if err != nil {
		return nil, err
	}
	if d.TLS != nil {
		cfg := d.TLS.Clone()
		if cfg.ServerName == "" {
			cfg.ServerName, _, _ = net.SplitHostPort(d.Addr)
		}
		tc := tls.Client(conn, cfg)
		if err := tc.HandshakeContext(ctx); err != nil {
			conn.Close()
			return nil, err
		}
		conn = tc
	}
	return dl.DialConn(ctx, conn)
}

// Refused reports whether a C-STORE status refuses an instance for good:
// 0xA9xx (data set does not match the SOP class) and 0xCxxx (cannot
// understand), whose cause is in the data set, which sending again does
// not change.
func Refused(st dimse.Status) bool {
	return st&0xFF00 == 0xA900 || st&0xF000 == 0xC000
}

// Send implements Sender. A study of more SOP classes and transfer
// syntaxes than one association has contexts for is sent on one
// association after another.
func (d *DIMSE) Send(ctx context.Context, s *Shipment) error {
	sentBefore := s.SentBefore
	for rest := s.Instances; len(rest) > 0; {
		var props []dimse.Proposal
		part := *s
		props, part.Instances, rest = d.proposals(rest)
		part.SentBefore = sentBefore
		part.Report = func(sop, refused string) {
			if refused == "" {
				sentBefore++
			}
			s.Report(sop, refused)
		}
		// The instances of later associations are sent on the next
		// attempt when this one fails.
		if err := d.send(ctx, &part, props); err != nil {
			return err
		}
	}
	return nil
}

// send sends s on one association, opened with props unless an idle one
// can carry it.
func (d *DIMSE) send(ctx context.Context, s *Shipment, props []dimse.Proposal) error {
	// The destination may close an idle association as it is taken
	// again: then nothing was sent on it, and a new one is no retry.
	for a := d.reuse(s.Instances); a != nil; a = d.reuse(s.Instances) {
		err := d.sendOn(ctx, a, s, true)
		if !errors.Is(err, errIdleEnded) {
			return err
		}
		d.log().Debug("an idle association ended as it was reused; opening another", "destination", d.CalledAE)
	}
	dl := &dimse.Dialer{CallingAE: d.CallingAE, CalledAE: d.CalledAE, Proposals: props, Logger: d.log()}
	if d.Commit {
		dl.CommitResult = d.Commitments
	}
	a, err := d.dial(ctx, dl)
	if err != nil {
		return fmt.Errorf("%w: %s at %s: %v", ErrUnreachable, d.CalledAE, d.Addr, err)
	}
	return d.sendOn(ctx, a, s, false)
}

// sendOn sends s on a. When a was idle (reused) and ends before the
// destination answers anything, sendOn fails with errIdleEnded.
func (d *DIMSE) sendOn(ctx context.Context, a *dimse.Association, s *Shipment, reused bool) error {
	defer func() {
		select {
		case <-a.Done():
			return
		default:
		}
		if ctx.Err() != nil {
			a.Abort()
			return
		}
		d.keep(a)
	}()

	confirm := d.Commit || d.Verify
	var stored []*index.Instance
	var failed int
	var firstErr error
	for i, in := range s.Instances {
		err := d.store(ctx, a, in, s.Priority)
		var se *dimse.StatusError
		switch {
		case err == nil:
			if confirm {
				stored = append(stored, in)
			} else {
				s.Report(in.SOPInstanceUID, "")
			}
			continue
		case errors.As(err, &se) && Refused(se.Status):
			s.Report(in.SOPInstanceUID, fmt.Sprintf("C-STORE %s", se.Error()))
			continue
		case errors.Is(err, errNoContext), errors.Is(err, ErrNotSendable):
			s.Report(in.SOPInstanceUID, err.Error())
			continue
		case ctx.Err() != nil:
			return ctx.Err()
		case errors.As(err, &se):
			// A failure that another attempt may not meet (0xA7xx
			// out of resources, 0x0110 processing failure).
		case errors.Is(err, errOpen):
			return err
		case reused && i == 0:
			return fmt.Errorf("%w: %v", errIdleEnded, err)
		default:
			// The association is gone.
			return fmt.Errorf("%w: %s: %v", ErrUnreachable, d.CalledAE, err)
		}
		failed++
		if firstErr == nil {
			firstErr = fmt.Errorf("%s: %w", in.SOPInstanceUID, err)
		}
	}
	if len(stored) > 0 && d.Commit {
		if err := d.commit(ctx, a, s, stored); err != nil {
			return err
		}
	} else if len(stored) > 0 {
		if err := d.verify(ctx, a, s, stored); err != nil {
			return err
		}
	}
	if failed > 0 {
		return fmt.Errorf("route: %d of %d instances not stored at %s; %w", failed, len(s.Instances), d.CalledAE, firstErr)
	}
	return nil
}

var (
	errNoContext = errors.New("the destination accepted no transfer syntax the instance is or can be converted to")
	errOpen      = errors.New("route: instance cannot be read")
	errIdleEnded = errors.New("route: the idle association ended")
)

// target returns the transfer syntax to send in in on a: the stored one
// if the destination accepted it, else one it accepted that in can be
// converted to, else "".
func (d *DIMSE) target(a *dimse.Association, in *index.Instance) string {
	target := ""
	for _, pc := range a.Contexts() {
		if !pc.Accepted() || pc.AbstractSyntax != in.SOPClassUID {
			continue
		}
		if pc.TransferSyntax == in.TransferSyntaxUID {
			return pc.TransferSyntax
		}
		if target == "" && d.convertible(in.TransferSyntaxUID, pc.TransferSyntax) {
			target = pc.TransferSyntax
		}
	}
	return target
}

// reuse returns an idle association that can carry every instance of
// ins, or nil.
func (d *DIMSE) reuse(ins []*index.Instance) *dimse.Association {
	d.mu.Lock()
	defer d.mu.Unlock()
	for i := len(d.idle) - 1; i >= 0; i-- {
		ia := d.idle[i]
		select {
		case <-ia.a.Done():
			ia.timer.Stop()
			d.idle = slices.Delete(d.idle, i, i+1)
			continue
		default:
		}
		if slices.ContainsFunc(ins, func(in *index.Instance) bool { return d.target(ia.a, in) == "" }) {
			continue
		}
		ia.timer.Stop()
		d.idle = slices.Delete(d.idle, i, i+1)
		return ia.a
	}
	return nil
}

// keep keeps a for the next send, for KeepOpen, or releases it.
func (d *DIMSE) keep(a *dimse.Association) {
	release := func() {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		a.Release(ctx)
	}
	wait := d.KeepOpen
	if wait == 0 {
		wait = 5 * time.Second
	}
	d.mu.Lock()
	defer d.mu.Unlock()
	if wait < 0 || len(d.idle) >= 4 {
		go release()
		return
	}
	ia := &idleAssociation{a: a}
	ia.timer = time.AfterFunc(wait, func() {
		d.mu.Lock()
		i := slices.Index(d.idle, ia)
		if i >= 0 {
			d.idle = slices.Delete(d.idle, i, i+1)
		}
		d.mu.Unlock()
		if i >= 0 {
			release()
		}
	})
	d.idle = append(d.idle, ia)
}

// store sends one instance: in its stored syntax if the destination
// accepted it, or converted to one it accepted.
func (d *DIMSE) store(ctx context.Context, a *dimse.Association, in *index.Instance, prio Priority) error {
	target := d.target(a, in)
	if target == "" {
		return fmt.Errorf("%w (%s in %s)", errNoContext, uid.Name(in.SOPClassUID), uid.Name(in.TransferSyntaxUID))
	}
	// A destination that stops reading, or never answers, would hold
	// the worker for ever: the send of one instance is bounded by a
	// time that a link of 2 Mbit/s would meet.
	ctx, cancel := context.WithTimeout(ctx, 2*time.Minute+time.Duration(in.Size/(256<<10))*time.Second)
	defer cancel()
	_, data, err := d.Datasets.OpenDataset(ctx, in, target)
	if err != nil {
		if errors.Is(err, ErrNotSendable) {
			return err
		}
		return fmt.Errorf("%w: %v", errOpen, err)
	}
	defer data.Close()
	_, err = a.Store(ctx, &dimse.StoreRequest{
		SOPClassUID:       in.SOPClassUID,
		SOPInstanceUID:    in.SOPInstanceUID,
		TransferSyntaxUID: target,
		Priority:          dimsePriority(prio),
		Dataset:           d.Limiter.Reader(ctx, data),
	})
	return err
}

// dimsePriority is the C-STORE Priority (PS3.7 9.1.1.1: 0 medium, 1
// high, 2 low) of a task's.
func dimsePriority(p Priority) uint16 {
	switch p {
	case High:
		return 1
	case Low:
		return 2
	}
	return 0
}

// commit asks the destination to commit to stored and reports those it
// commits to.
func (d *DIMSE) commit(ctx context.Context, a *dimse.Association, s *Shipment, stored []*index.Instance) error {
	if d.Commitments == nil {
		return errors.New("route: storage commitment asked for without Commitments to receive the results")
	}
	req := &dimse.CommitRequest{TransactionUID: newUID()}
	for _, in := range stored {
		req.Instances = append(req.Instances, dimse.SOPRef{ClassUID: in.SOPClassUID, InstanceUID: in.SOPInstanceUID})
	}
	results, done := d.Commitments.expect(req.TransactionUID)
	defer done()
	if err := a.RequestCommit(ctx, req); err != nil {
		var se *dimse.StatusError
		if errors.As(err, &se) {
			return fmt.Errorf("route: storage commitment request refused by %s: %w", d.CalledAE, err)
		}
		return fmt.Errorf("%w: %s: storage commitment request: %v", ErrUnreachable, d.CalledAE, err)
	}
	wait := d.CommitTimeout
	if wait <= 0 {
		wait = 5 * time.Minute
	}
	t := time.NewTimer(wait)
	defer t.Stop()
	var res *dimse.CommitResult
	select {
	case res = <-results:
	case <-t.C:
		return fmt.Errorf("route: %s sent no storage commitment result within %s", d.CalledAE, wait)
	case <-ctx.Done():
		return ctx.Err()
	}
	committed := map[string]bool{}
	for _, r := range res.Committed {
		committed[r.InstanceUID] = true
	}
	missing := 0
	for _, in := range stored {
		if committed[in.SOPInstanceUID] {
			s.Report(in.SOPInstanceUID, "")
		} else {
			missing++
		}
	}
	if missing > 0 {
		return fmt.Errorf("route: %s did not commit to %d of %d instances sent", d.CalledAE, missing, len(stored))
	}
	return nil
}

// verify counts the study's instances at the destination and reports
// stored sent if it holds at least every instance it was sent.
func (d *DIMSE) verify(ctx context.Context, a *dimse.Association, s *Shipment, stored []*index.Instance) error {
	ident := &dicom.Dataset{Elements: []dicom.Element{
		{Tag: tag.QueryRetrieveLevel, VR: "CS", Values: []string{"STUDY"}},
		{Tag: tag.StudyInstanceUID, VR: "UI", Values: []string{s.Study}},
		{Tag: tag.NumberOfStudyRelatedInstances, VR: "IS"},
	}}
	n := -1
	for ds, err := range a.Find(ctx, uid.StudyRootQueryRetrieveInformationModelFind, ident) {
		if err != nil {
			return fmt.Errorf("route: verify at %s: C-FIND: %w", d.CalledAE, err)
		}
		if v, err := strconv.Atoi(ds.First(tag.NumberOfStudyRelatedInstances)); err == nil {
			n = max(n, v)
		}
	}
	return confirmCount(s, stored, n, d.CalledAE)
}

// confirmCount reports stored sent if count, the destination's number of
// the study's instances, covers them and those sent before.
func confirmCount(s *Shipment, stored []*index.Instance, count int, dest string) error {
	want := s.SentBefore + len(stored)
	if count < want {
		if count < 0 {
			return fmt.Errorf("route: verify at %s: the study was not found or its instances not counted", dest)
		}
		return fmt.Errorf("route: verify at %s: it holds %d instances of the study, %d were sent", dest, count, want)
	}
	for _, in := range stored {
		s.Report(in.SOPInstanceUID, "")
	}
	return nil
}
