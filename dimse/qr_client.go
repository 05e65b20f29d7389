package dimse

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"iter"
	"time"

	"github.com/pacsd/pacsd/dicom"
	"github.com/pacsd/pacsd/dicom/tag"
	"github.com/pacsd/pacsd/dicom/uid"
	"github.com/pacsd/pacsd/dimse/internal/cmdset"
)

// The Query/Retrieve service class, client side.

// Find sends a C-FIND request with identifier in the information model
// (e.g. uid.StudyRootQueryRetrieveInformationModelFind) and yields each
// match as its Pending response arrives. Breaking out of the loop cancels
// the request (C-CANCEL) and waits for its final response. A final
// failure or cancel status is yielded as an error carrying a
// *StatusError.
func (a *Association) Find(ctx context.Context, model string, identifier *dicom.Dataset) iter.Seq2[*dicom.Dataset, error] {
	return a.FindStatus(ctx, model, identifier, nil)
}

// FindStatus is Find that also stores the status of the final response
// in *final, when final is not nil and the final response arrives: a
// warning, which Find does not report, tells some peers' answers apart
// from complete ones.
func (a *Association) FindStatus(ctx context.Context, model string, identifier *dicom.Dataset, final *Status) iter.Seq2[*dicom.Dataset, error] {
	return func(yield func(*dicom.Dataset, error) bool) {
		rs, err := a.request(ctx, cmdset.CFindRQ, model, "", identifier)
		if err != nil {
			yield(nil, err)
			return
		}
		defer rs.close()
		for {
			r, err := rs.next(ctx)
			if err != nil {
				yield(nil, err)
				return
			}
			st := responseStatus(r.cmd)
			if !st.IsPending() {
				if final != nil {
					*final = st
				}
				if !st.IsSuccess() && !st.IsWarning() {
					yield(nil, &StatusError{Status: st, Comment: r.cmd.ErrorComment})
				}
				return
			}
			ds, err := dicom.Parse(r.data, rs.ts)
			if err != nil {
				err = fmt.Errorf("dimse: C-FIND match: %w", err)
			}
			if !yield(ds, err) {
				rs.cancel()
				return
			}
		}
	}
}

// Move sends a C-MOVE request asking the peer to store the instances the
// identifier names at the AE destination, calls progress with each Pending
// response's counts, and returns the final counts, with an error carrying
// a *StatusError when the final status is not Success: a warning (0xB000:
// some sub-operations failed), a failure or a cancel. Cancelling
// ctx sends C-CANCEL and waits for the final response.
func (a *Association) Move(ctx context.Context, model, destination string, identifier *dicom.Dataset, progress func(SubOperations)) (SubOperations, error) {
	return a.retrieve(ctx, cmdset.CMoveRQ, model, destination, identifier, progress)
}

// Get sends a C-GET request: the peer stores the instances the identifier
// names back on this association, to the Dialer's StoreHandler. Progress
// and result are as for Move.
func (a *Association) Get(ctx context.Context, model string, identifier *dicom.Dataset, progress func(SubOperations)) (SubOperations, error) {
	return a.retrieve(ctx, cmdset.CGetRQ, model, "", identifier, progress)
}

func (a *Association) retrieve(ctx context.Context, field cmdset.Field, model, destination string, identifier *dicom.Dataset, progress func(SubOperations)) (SubOperations, error) {
	rs, err := a.request(ctx, field, model, destination, identifier)
	if err != nil {
		return SubOperations{}, err
	}
	defer rs.close()
	wait := ctx
	for {
		r, err := rs.next(wait)
		if err != nil && ctx.Err() != nil && wait == ctx {
			// The caller gave up: ask the peer to stop, and wait a
			// while for the final response with the counts so far.
			if rs.sendCancel() == nil {
				var stop context.CancelFunc
				wait, stop = context.WithTimeout(context.WithoutCancel(ctx), cancelWait)
				defer stop()
				continue
			}
		}
		if err != nil {
			return SubOperations{}, err
		}
		subs := subOperations(r)
		st := responseStatus(r.cmd)
		if st.IsPending() {
			if progress != nil {
				progress(subs)
			}
			continue
		}
		if !st.IsSuccess() {
			return subs, &StatusError{Status: st, Comment: r.cmd.ErrorComment}
		}
		return subs, nil
	}
}

func subOperations(r *response) SubOperations {
	get := func(p *uint16) int {
		if p == nil {
			return 0
		}
		return int(*p)
	}
	subs := SubOperations{
		Remaining: get(r.cmd.NumberOfRemainingSuboperations),
		Completed: get(r.cmd.NumberOfCompletedSuboperations),
		Failed:    get(r.cmd.NumberOfFailedSuboperations),
		Warning:   get(r.cmd.NumberOfWarningSuboperations),
	}
	if len(r.data) > 0 {
		if ds, err := dicom.Parse(r.data, uid.TransferSyntax{UID: uid.ImplicitVRLittleEndian}); err == nil {
			subs.FailedInstances = ds.Strings(tag.FailedSOPInstanceUIDList)
		}
	}
	return subs
}

// responses receives the responses to one request that gets several.
type responses struct {
	a    *Association
	id   uint16
	pc   *PresentationContext
	ts   uid.TransferSyntax
	ch   chan *response
	stop chan struct{}
}

// request sends a request with an identifier and sets up the reception of
// its responses.
func (a *Association) request(ctx context.Context, field cmdset.Field, model, destination string, identifier *dicom.Dataset) (*responses, error) {
	pc, ok := a.Context(model, "")
	if !ok {
		return nil, fmt.Errorf("%w for %s", ErrNoContext, uid.Name(model))
	}
	ts, _ := uid.LookupTransferSyntax(pc.TransferSyntax)
	var buf bytes.Buffer
	cs := dicom.ResponseCharset(identifier.Strings(tag.SpecificCharacterSet), identifier)
	if err := identifier.Encode(&buf, ts, dicom.EncodeOptions{CharacterSet: cs}); err != nil {
		return nil, fmt.Errorf("dimse: encode identifier: %w", err)
	}
	id := a.nextMessageID()
	prio := cmdset.PriorityMedium
	cmd := &cmdset.Command{
		CommandField:        field,
		MessageID:           &id,
		AffectedSOPClassUID: model,
		Priority:            &prio,
		MoveDestination:     destination,
	}
	rs := &responses{a: a, id: id, pc: pc, ts: ts, ch: make(chan *response), stop: make(chan struct{})}
	a.pending.Store(id, func(r *response) {
		select {
		case rs.ch <- r:
		case <-rs.stop:
		}
	})
	if err := a.sendMessage(ctx, pc.ID, cmd, &buf); err != nil {
		a.pending.Delete(id)
		return nil, fmt.Errorf("dimse: send %v: %w", field, err)
	}
	return rs, nil
}

// next returns the next response.
func (rs *responses) next(ctx context.Context) (*response, error) {
	select {
	case r := <-rs.ch:
		return r, r.err
	case <-rs.a.Done():
		return nil, fmt.Errorf("dimse: awaiting a response: %w", rs.a.ul.EndErr())
	case <-ctx.Done():
		return nil, ctx.Err()
	}
}

// cancelWait bounds the wait for the final response after a C-CANCEL.
const cancelWait = 30 * time.Second

// sendCancel sends C-CANCEL for the request (PS3.7 §9.3.2.3).
func (rs *responses) sendCancel() error {
	ctx, stop := context.WithTimeout(context.Background(), cancelWait)
	defer stop()
	cmd := &cmdset.Command{CommandField: cmdset.CCancelRQ, MessageIDBeingRespondedTo: &rs.id}
	return rs.a.sendMessage(ctx, rs.pc.ID, cmd, nil)
}

// cancel cancels the request and reads its responses up to the final one,
// so that the association can carry the next request.
func (rs *responses) cancel() {
	if rs.sendCancel() != nil {
		return
	}
	ctx, stop := context.WithTimeout(context.Background(), cancelWait)
	defer stop()
	for {
		r, err := rs.next(ctx)
		if err != nil {
			rs.a.Abort() // the peer does not answer: nothing else can free the association
			return
		}
		if !responseStatus(r.cmd).IsPending() {
			return
		}
	}
}

func (rs *responses) close() {
	rs.a.pending.Delete(rs.id)
	close(rs.stop)
}

var errNoSCPRole = errors.New("dimse: the peer did not take the SCP role for this SOP class")
