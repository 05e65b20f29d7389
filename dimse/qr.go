package dimse

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"iter"
	"slices"
	"sync"
	"time"

	"github.com/pacsd/pacsd/dicom"
	"github.com/pacsd/pacsd/dicom/tag"
	"github.com/pacsd/pacsd/dicom/uid"
	"github.com/pacsd/pacsd/dimse/internal/cmdset"
	"github.com/pacsd/pacsd/dimse/internal/pdu"
	"github.com/pacsd/pacsd/dimse/internal/ul"
)

// The Query/Retrieve service class (PS3.4 Annex C): C-FIND, C-MOVE and
// C-GET, server side.

// FindHandler answers C-FIND requests.
//
// Find returns the matches as an iterator, which the server consumes as it
// sends them, one Pending response each: a handler streams matches from its
// database without holding the result set. The server stops consuming when
// the peer cancels the request (C-CANCEL: ctx is then cancelled with cause
// ErrCancelled and the final response says Cancel), when the server shuts
// down (cause ErrServerClosed, final response 0xA700) or when the
// association ends.
// An error yielded ends the operation with the status it carries (a
// *StatusError), or Unable to Process (0xC001).
type FindHandler interface {
	Find(ctx context.Context, a *Association, req *FindRequest) iter.Seq2[*dicom.Dataset, error]
}

// FindRequest is a C-FIND request.
type FindRequest struct {
	// SOPClassUID is the information model (Patient Root or Study Root
	// Query/Retrieve Information Model - FIND).
	SOPClassUID string
	Priority    uint16
	// Identifier holds the query keys, decoded to UTF-8.
	Identifier *dicom.Dataset
	// CharacterSets is the Specific Character Set the identifier was
	// encoded in, to answer in kind.
	CharacterSets []string

	optionalKeys bool
}

// OptionalKeysNotSupported makes the Pending responses say 0xFF01: the
// handler did not match on some optional keys (PS3.4 C.4.1.1.4).
func (r *FindRequest) OptionalKeysNotSupported() { r.optionalKeys = true }

// ErrCancelled is why an operation stops when the peer cancels its request
// with C-CANCEL: the cause of a C-FIND handler's context, of a C-MOVE's or
// C-GET's stop.
var ErrCancelled = errors.New("dimse: cancelled by the peer")

// SubOperations counts the C-STORE sub-operations of a C-MOVE or C-GET.
type SubOperations struct {
	Remaining, Completed, Failed, Warning int
	// FailedInstances are the SOP Instance UIDs of the failed (and, at
	// the end, the not performed) sub-operations, for the Failed SOP
	// Instance UID List of the final response.
	FailedInstances []string
}

// MoveHandler answers C-MOVE requests: it sends the matching instances
// with C-STORE to the move destination, over associations of its own.
//
// Move calls progress after each sub-operation; the server turns that into
// Pending responses. The returned counts make the final response: Success
// when nothing failed, Warning (0xB000) when some did, and the status of a
// returned *StatusError otherwise (0xA801 for an unknown destination, say).
//
// req.Stopped is closed when the peer cancels the request (C-CANCEL) or
// the server shuts down: Move then finishes the sub-operation in flight,
// counts it as what it came to, and returns the counts so far without
// starting another (PS3.4 C.4.2.3.1); the server answers Cancel (0xFE00),
// or 0xA702 on shutdown. ctx ends when the association does, or when the
// shutdown's time is up: Move must then return at once.
type MoveHandler interface {
	Move(ctx context.Context, a *Association, req *MoveRequest, progress func(SubOperations)) (SubOperations, error)
}

// MoveRequest is a C-MOVE request.
type MoveRequest struct {
	SOPClassUID string
	Priority    uint16
	// MessageID identifies the request, for the Move Originator Message
	// ID of the sub-operations.
	MessageID   uint16
	Destination string
	Identifier  *dicom.Dataset

	stop *stopSignal
}

// Stopped returns a channel closed when the handler is to stop after its
// sub-operation in flight: the peer sent C-CANCEL, or the server is
// shutting down.
func (r *MoveRequest) Stopped() <-chan struct{} { return r.stop.done() }

// GetHandler answers C-GET requests: it sends the matching instances with
// C-STORE on the association the request arrived on, with Store. Progress,
// stopping and the final status work as for MoveHandler (PS3.4 C.4.3.3.1):
// a C-STORE sub-operation in flight when the C-CANCEL arrives is still
// answered by the peer, and its response is waited for.
type GetHandler interface {
	Get(ctx context.Context, a *Association, req *GetRequest, progress func(SubOperations)) (SubOperations, error)
}

// GetRequest is a C-GET request.
type GetRequest struct {
	SOPClassUID string
	Priority    uint16
	MessageID   uint16
	Identifier  *dicom.Dataset

	stop *stopSignal
}

// Stopped returns a channel closed when the handler is to stop after its
// sub-operation in flight: the peer sent C-CANCEL, or the server is
// shutting down.
func (r *GetRequest) Stopped() <-chan struct{} { return r.stop.done() }

// Information models of PS3.4 Annex C that the server offers.
var (
	findModels = []string{uid.PatientRootQueryRetrieveInformationModelFind, uid.StudyRootQueryRetrieveInformationModelFind}
	moveModels = []string{uid.PatientRootQueryRetrieveInformationModelMove, uid.StudyRootQueryRetrieveInformationModelMove}
	getModels  = []string{uid.PatientRootQueryRetrieveInformationModelGet, uid.StudyRootQueryRetrieveInformationModelGet}
)

// maxIdentifier bounds a request's identifier, held in memory.
const maxIdentifier = 1 << 20

// queryRequest starts a C-FIND, C-MOVE or C-GET once its identifier has
// arrived.
func (s *Server) queryRequest(a *Association, cmd *cmdset.Command, pc *PresentationContext) (sink, error) {
	id := *cmd.MessageID
	var models []string
	var stop *stopSignal
	var start func(ctx context.Context, ident *dicom.Dataset, charsets []string)
	switch cmd.CommandField {
	case cmdset.CFindRQ:
		if s.Find == nil {
			return nil, nil
		}
		models = findModels
		start = func(ctx context.Context, ident *dicom.Dataset, cs []string) {
			s.find(ctx, a, pc, cmd, &FindRequest{SOPClassUID: cmd.AffectedSOPClassUID, Priority: priority(cmd), Identifier: ident, CharacterSets: cs})
		}
	case cmdset.CMoveRQ:
		if s.Move == nil {
			return nil, nil
		}
		models = moveModels
		stop = newStopSignal()
		start = func(ctx context.Context, ident *dicom.Dataset, _ []string) {
			req := &MoveRequest{SOPClassUID: cmd.AffectedSOPClassUID, Priority: priority(cmd), MessageID: id, Destination: cmd.MoveDestination, Identifier: ident, stop: stop}
			s.retrieve(ctx, a, pc, cmd, cmdset.CMoveRSP, stop, func(ctx context.Context, progress func(SubOperations)) (SubOperations, error) {
				return s.Move.Move(ctx, a, req, progress)
			})
		}
	case cmdset.CGetRQ:
		if s.Get == nil {
			return nil, nil
		}
		models = getModels
		stop = newStopSignal()
		start = func(ctx context.Context, ident *dicom.Dataset, _ []string) {
			req := &GetRequest{SOPClassUID: cmd.AffectedSOPClassUID, Priority: priority(cmd), MessageID: id, Identifier: ident, stop: stop}
			s.retrieve(ctx, a, pc, cmd, cmdset.CGetRSP, stop, func(ctx context.Context, progress func(SubOperations)) (SubOperations, error) {
				return s.Get.Get(ctx, a, req, progress)
			})
		}
	}
	if !slices.Contains(models, pc.AbstractSyntax) {
		return nil, nil
	}
	if !cmd.HasDataSet() {
		return nil, ul.ProtocolErrorf(pdu.AbortReasonInvalidPDUParameterValue, "%v without an identifier", cmd.CommandField)
	}
	return withDataSet(a, id, stop, pc, maxIdentifier, func(ctx context.Context, ident *dicom.Dataset, err error) {
		if err != nil {
			s.respond(a, pc, cmd, cmd.CommandField|0x8000, Errorf(StatusCannotUnderstand, "identifier: %v", err), StatusCannotUnderstand)
			return
		}
		start(ctx, ident, ident.Strings(tag.SpecificCharacterSet))
	}), nil
}

// withDataSet starts operation id of a request whose data set is small
// enough to hold: run is called once the data set has arrived whole (at
// most limit bytes) and been parsed in the context's transfer syntax,
// with the data set or the parse error. The operation counts from its
// command, so that a C-CANCEL arriving with the data set still in transit
// finds it; if the association or the operation ends first, run is not
// called. stop, if not nil, is how the operation is asked to stop. The
// returned sink receives the data set.
func withDataSet(a *Association, id uint16, stop *stopSignal, pc *PresentationContext, limit int, run func(ctx context.Context, ds *dicom.Dataset, err error)) sink {
	ready := make(chan []byte, 1)
	a.startOp(id, stop, func(ctx context.Context) {
		var data []byte
		select {
		case data = <-ready:
		case <-ctx.Done():
			return
		}
		if data == nil {
			return // the association ended under the data set
		}
		ts, _ := uid.LookupTransferSyntax(pc.TransferSyntax)
		ds, err := dicom.Parse(data, ts)
		run(ctx, ds, err)
	})
	return &bufferSink{limit: limit, done: func(data []byte, err error) {
		if err != nil {
			ready <- nil
			return
		}
		ready <- bytes.Clone(data)
	}}
}

func priority(cmd *cmdset.Command) uint16 {
	if cmd.Priority != nil {
		return uint16(*cmd.Priority)
	}
	return 0
}

// find runs a C-FIND: a Pending response per match, then the final one.
func (s *Server) find(ctx context.Context, a *Association, pc *PresentationContext, rq *cmdset.Command, req *FindRequest) {
	ts, _ := uid.LookupTransferSyntax(pc.TransferSyntax)
	var final error
	n := 0
	for ds, err := range s.Find.Find(ctx, a, req) {
		if err != nil {
			final = err
			break
		}
		if context.Cause(ctx) != nil {
			break
		}
		// A match names its character set, or gets the requester's
		// if its text fits in it, else UTF-8.
		cs := ds.String(tag.SpecificCharacterSet)
		if cs == "" {
			cs = dicom.ResponseCharset(req.CharacterSets, ds)
		}
		var buf bytes.Buffer
		if err := ds.Encode(&buf, ts, dicom.EncodeOptions{CharacterSet: cs}); err != nil {
			final = Errorf(StatusUnableToProcess, "encode match: %v", err)
			break
		}
		st := StatusPending
		if req.optionalKeys {
			st = StatusPendingWarning
		}
		if err := s.sendResponse(a, pc, rq, cmdset.CFindRSP, st, "", nil, &buf); err != nil {
			a.log.Warn("C-FIND response not sent", "err", err)
			return
		}
		n++
	}
	// A handler's error once the operation was stopped comes of the
	// stop (a query cut short): the response says why it stopped.
	switch cause := context.Cause(ctx); {
	case cause == nil:
	case errors.Is(cause, ErrCancelled):
		final = &StatusError{Status: StatusCancel}
	case errors.Is(cause, ErrServerClosed):
		final = Errorf(StatusOutOfResources, "stopped: the server is shutting down")
	}
	a.log.Info("C-FIND", "model", uid.Name(req.SOPClassUID), "level", req.Identifier.First(tag.QueryRetrieveLevel), "matches", n, "status", statusText(final))
	s.respond(a, pc, rq, cmdset.CFindRSP, final, StatusUnableToProcess)
}

// retrieve runs a C-MOVE or C-GET: Pending responses as the handler
// reports progress, then the final one with the counts.
func (s *Server) retrieve(ctx context.Context, a *Association, pc *PresentationContext, rq *cmdset.Command, field cmdset.Field, stop *stopSignal, run func(context.Context, func(SubOperations)) (SubOperations, error)) {
	var mu sync.Mutex
	last := time.Time{}
	progress := func(p SubOperations) {
		mu.Lock()
		defer mu.Unlock()
		// A pending response per sub-operation, as dcmtk sends them,
		// but no more than a few hundred a second, and none once the
		// operation is asked to stop: the final response follows.
		if time.Since(last) < 5*time.Millisecond && p.Remaining > 0 || stop.err() != nil {
			return
		}
		last = time.Now()
		if err := s.sendResponse(a, pc, rq, field, StatusPending, "", &p, nil); err != nil {
			a.log.Debug("pending response not sent", "err", err)
		}
	}
	subs, err := run(ctx, progress)
	mu.Lock() // no pending response after the final one
	defer mu.Unlock()
	st, comment := statusOf(err, StatusUnableToProcess)
	stopped := stop.err()
	switch {
	case err != nil:
	case errors.Is(stopped, ErrCancelled):
		st = StatusCancel
	case stopped != nil:
		// The server is shutting down: what was not performed failed.
		st, comment = StatusOutOfResourcesSubOperations, "stopped: the server is shutting down"
		subs.Failed += max(subs.Remaining, 0)
	case subs.Failed > 0 || subs.Warning > 0:
		st = StatusSubOperationsWarning
		if subs.Completed == 0 && subs.Warning == 0 {
			st, comment = StatusOutOfResourcesSubOperations, "every sub-operation failed"
		}
	}
	var ident *bytes.Buffer
	if len(subs.FailedInstances) > 0 && !st.IsSuccess() {
		ds := &dicom.Dataset{Elements: []dicom.Element{{Tag: tag.FailedSOPInstanceUIDList, VR: "UI", Values: subs.FailedInstances}}}
		ts, _ := uid.LookupTransferSyntax(pc.TransferSyntax)
		ident = &bytes.Buffer{}
		if err := ds.Encode(ident, ts, dicom.EncodeOptions{}); err != nil {
			ident = nil
		}
	}
	if !st.IsCancel() && !st.IsPending() {
		subs.Remaining = -1 // only pending and cancel responses carry it
	}
	s.observeOperation(a, rq.CommandField, st, a.finishOp(*rq.MessageID))
	name := "C-MOVE"
	if field == cmdset.CGetRSP {
		name = "C-GET"
	}
	a.log.Info(name, "model", uid.Name(pc.AbstractSyntax), "completed", subs.Completed, "failed", subs.Failed, "warning", subs.Warning, "status", st)
	if err := s.sendResponse(a, pc, rq, field, st, comment, &subs, ident); err != nil {
		a.log.Warn("final response not sent", "command", field, "err", err)
	}
}

// sendResponse sends one response to a request, with sub-operation
// counts and a data set if given.
func (s *Server) sendResponse(a *Association, pc *PresentationContext, rq *cmdset.Command, field cmdset.Field, st Status, comment string, subs *SubOperations, data *bytes.Buffer) error {
	rsp := &cmdset.Command{
		CommandField:              field,
		MessageIDBeingRespondedTo: rq.MessageID,
		AffectedSOPClassUID:       rq.AffectedSOPClassUID,
	}
	v := uint16(st)
	rsp.Status = &v
	if comment != "" && !st.IsSuccess() && !st.IsPending() {
		rsp.ErrorComment = truncate(comment, 64)
	}
	if subs != nil {
		if subs.Remaining >= 0 {
			rsp.NumberOfRemainingSuboperations = count(subs.Remaining)
		}
		rsp.NumberOfCompletedSuboperations = count(subs.Completed)
		rsp.NumberOfFailedSuboperations = count(subs.Failed)
		rsp.NumberOfWarningSuboperations = count(subs.Warning)
	}
	ctx, cancel := context.WithTimeout(context.Background(), orDefault(s.WriteTimeout, 60*time.Second))
	defer cancel()
	if data != nil {
		return a.sendMessage(ctx, pc.ID, rsp, data)
	}
	return a.sendMessage(ctx, pc.ID, rsp, nil)
}

// count caps a count at what a US element holds.
func count(n int) *uint16 {
	v := uint16(min(max(n, 0), 0xFFFF))
	return &v
}

func statusText(err error) string {
	st, comment := statusOf(err, StatusUnableToProcess)
	if comment == "" {
		return st.String()
	}
	return fmt.Sprintf("%v: %s", st, comment)
}
