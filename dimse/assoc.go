package dimse

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"sync"
	"time"

	"github.com/pacsd/pacsd/dimse/internal/cmdset"
	"github.com/pacsd/pacsd/dimse/internal/pdu"
	"github.com/pacsd/pacsd/dimse/internal/ul"
)

// Errors an association reports to the operations it fails.
var (
	// ErrAborted reports an association that ended by A-ABORT, from
	// either side, or by the loss of its connection.
	ErrAborted = ul.ErrAborted
	// ErrReleased reports an operation attempted on an association that
	// is released or being released.
	ErrReleased = ul.ErrReleased
	// ErrRejected reports an association request the peer rejected.
	ErrRejected = ul.ErrRejected
	// ErrTransient marks a rejection that the peer says is temporary
	// (rejected-transient: too many associations, congestion), which
	// a caller may try again later; such an error matches ErrRejected
	// too.
	ErrTransient = errors.New("dimse: rejection is transient")
	// ErrNoContext reports an operation for which no presentation
	// context was accepted.
	ErrNoContext = errors.New("dimse: no accepted presentation context")
)

// Limits of the message layer.
const (
	// maxCommandLength bounds a command set as it is reassembled; the
	// longest legitimate one is a few hundred bytes.
	maxCommandLength = cmdset.MaxLength
	// defaultMaxPDULength is the Maximum Length announced for P-DATA-TF
	// PDUs received: large enough that a peer sends few PDUs per
	// instance, small enough to hold one per association.
	defaultMaxPDULength = 256 << 10
	// maxSendPDULength caps the PDUs sent to a peer that announces no
	// limit (Maximum Length 0).
	maxSendPDULength = 1 << 20
	// minPDULength is the smallest Maximum Length honoured; a peer that
	// announces less still gets PDUs of this size, as dcmtk does.
	minPDULength = 4096
	// defaultReadTimeout bounds the wait for each PDU of a message that
	// has started to arrive.
	defaultReadTimeout = 60 * time.Second
)

// PresentationContext is a negotiated presentation context.
type PresentationContext struct {
	ID             byte
	AbstractSyntax string
	// TransferSyntax is the accepted transfer syntax; empty when the
	// context was rejected.
	TransferSyntax string
	// Result is 0 for acceptance, or the PS3.8 reason of a rejection:
	// 1 user-rejection, 2 no-reason, 3 abstract syntax not supported,
	// 4 transfer syntaxes not supported.
	Result byte
}

// Accepted reports whether the context was accepted.
func (pc *PresentationContext) Accepted() bool { return pc.Result == 0 }

// Association is one DICOM association, from either side: the requestor
// (a Dialer's Dial) or the acceptor (a Server). It carries DIMSE
// messages (PS3.7): it puts commands and data sets into P-DATA and back
// together, runs the operations the peer requests with the Server's or
// Dialer's handlers, and sends this side's requests. The upper layer
// beneath it (PS3.8: PDUs, the state machine, ARTIM) is a ul.Conn.
//
// An SCU uses the methods that send requests (Echo, Store, Find, Move,
// Get, RequestCommit); an SCP handler receives the Association its
// request arrived on.
type Association struct {
	ul        *ul.Conn
	log       *slog.Logger
	requestor bool

	callingAE, calledAE string
	contexts            map[byte]*PresentationContext
	// peerSCP lists the SOP classes for which the acceptor agreed that
	// the requestor acts as SCP (SCP/SCU role selection, PS3.7
	// D.3.3.4): the storage classes of a C-GET's sub-operations.
	peerSCP         map[string]bool
	peerImplClass   string
	peerImplVersion string
	maxSend         uint32 // longest P-DATA-TF PDU the peer accepts

	// handler starts the operations of requests from the peer.
	handler requestHandler
	// idle, if not zero, aborts the association after this long without
	// a PDU while no operation is in progress and no message arrives.
	idle time.Duration
	// readTimeout bounds the wait for each PDU while a message arrives.
	readTimeout time.Duration

	// ctx is the context of operations; it ends with the association.
	ctx    context.Context
	cancel context.CancelFunc
	opMu   sync.Mutex // guards active, stopping, deadlineWhy and the read deadline
	active map[uint16]*operation
	// stopping is set once the server shuts down: every operation,
	// running or to come, is asked to stop.
	stopping    error
	deadlineWhy string // what the read deadline set last bounds
	ops         sync.WaitGroup

	// pending holds the waiters for responses to requests this side
	// sent, by message ID.
	pending sync.Map // uint16 -> func(*response)
	msgID   uint16
	msgMu   sync.Mutex
	asm     assembler
}

// operation is one operation the peer requested, in progress.
type operation struct {
	// cancel cancels the operation's context: the association ended, or
	// the peer cancelled a C-FIND.
	cancel context.CancelCauseFunc
	// stop asks a C-MOVE or C-GET to stop after the sub-operation in
	// flight (C-CANCEL, shutdown); nil for other operations.
	stop *stopSignal
	// started is when the request's command set was read.
	started time.Time
}

// requestHandler starts the operations the peer's requests ask for. It is
// called in the reader goroutine and must not block; the sink it returns,
// if any, receives the request's data set.
type requestHandler interface {
	request(a *Association, cmd *cmdset.Command, pc *PresentationContext) (sink, error)
}

func newAssociation(c *ul.Conn, log *slog.Logger, requestor bool) *Association {
	ctx, cancel := context.WithCancel(context.Background())
	return &Association{
		ul:          c,
		log:         log,
		requestor:   requestor,
		ctx:         ctx,
		cancel:      cancel,
		active:      map[uint16]*operation{},
		contexts:    map[byte]*PresentationContext{},
		peerSCP:     map[string]bool{},
		readTimeout: defaultReadTimeout,
	}
}

// CallingAE returns the AE title of the association requestor.
func (a *Association) CallingAE() string { return a.callingAE }

// CalledAE returns the AE title the requestor called.
func (a *Association) CalledAE() string { return a.calledAE }

// RemoteAddr returns the peer's network address.
func (a *Association) RemoteAddr() net.Addr { return a.ul.RemoteAddr() }

// Contexts returns the negotiated presentation contexts, by ID.
func (a *Association) Contexts() []PresentationContext {
	out := make([]PresentationContext, 0, len(a.contexts))
	for id := range 256 {
		if pc, ok := a.contexts[byte(id)]; ok {
			out = append(out, *pc)
		}
	}
	return out
}

// Done returns a channel closed when the association's connection is
// closed, by release, abort or failure.
func (a *Association) Done() <-chan struct{} { return a.ul.Done() }

// Err returns why the association ended: nil while it is up or after an
// orderly release, an error wrapping ErrAborted otherwise.
func (a *Association) Err() error { return a.ul.Err() }

// Abort aborts the association (A-ABORT, service-user source) and closes
// its connection without waiting for the peer.
func (a *Association) Abort() error { return a.ul.Abort(nil) }

// run reads the association until it ends, then fails whatever was
// waiting on it.
func (a *Association) run() {
	a.ul.Serve(indications{a})
	a.cancel()
	a.asm.abort(a.ul.EndErr())
}

// indications receives what the upper layer indicates to the message
// layer.
type indications struct{ a *Association }

func (in indications) PData(p *pdu.PDataTF) error { return in.a.onPData(p) }

func (in indications) Release() {
	a := in.a
	if a.requestor {
		// Release collision (AR-8): answer as the requestor.
		go a.ul.RespondRelease()
		return
	}
	// The reply waits for operations still running, which may send
	// their responses meanwhile (AR-7).
	go func() {
		a.ops.Wait()
		if err := a.ul.RespondRelease(); err != nil {
			a.log.Debug("release response", "err", err)
		}
	}()
}

func (in indications) BeforeRead() {
	a := in.a
	a.opMu.Lock()
	defer a.opMu.Unlock()
	a.armReadDeadlineLocked()
}

func (in indications) ReadTimeout() error {
	a := in.a
	a.opMu.Lock()
	why := a.deadlineWhy
	a.opMu.Unlock()
	a.log.Warn("aborting the association: "+why, "idle_timeout", a.idle, "read_timeout", a.readTimeout)
	return fmt.Errorf("%w: %s", ErrAborted, why)
}

// armReadDeadlineLocked sets the read deadline for what the association
// waits for: each PDU of a message that has started to arrive within
// readTimeout, whether or not an operation is working on it; the next
// message within the idle timeout when no operation is in progress; and
// no deadline while an operation works, which may take long to answer.
// a.opMu is held, so that the reader and the operations finishing never
// undo each other's setting.
func (a *Association) armReadDeadlineLocked() {
	switch {
	case a.asm.inTransit.Load():
		a.deadlineWhy = fmt.Sprintf("no PDU for %v in the middle of a message", a.readTimeout)
		a.ul.SetReadDeadline(time.Now().Add(a.readTimeout))
	case a.idle > 0 && len(a.active) == 0:
		a.deadlineWhy = fmt.Sprintf("idle for %v", a.idle)
		a.ul.SetReadDeadline(time.Now().Add(a.idle))
	default:
		a.deadlineWhy = ""
		a.ul.SetReadDeadline(time.Time{})
	}
}

// startOp runs an operation in a goroutine of its own, tracked until it
// finishes so that release and shutdown can wait for it. stop, if not
// nil, is how a C-MOVE or C-GET is asked to stop.
func (a *Association) startOp(id uint16, stop *stopSignal, f func(ctx context.Context)) {
	ctx, cancel := context.WithCancelCause(a.ctx)
	a.opMu.Lock()
	a.active[id] = &operation{cancel: cancel, stop: stop, started: time.Now()}
	if a.stopping != nil {
		cancel(a.stopping)
		stop.fire(a.stopping)
	}
	a.armReadDeadlineLocked()
	a.opMu.Unlock()
	a.ops.Add(1)
	go func() {
		defer a.ops.Done()
		defer cancel(nil)
		defer a.finishOp(id)
		f(ctx)
	}()
}

// finishOp marks an operation finished and returns when it started (zero
// when it was finished already). Operations call it before sending their
// final response, so that a peer answering the response at once never
// finds the operation still counted.
func (a *Association) finishOp(id uint16) time.Time {
	a.opMu.Lock()
	defer a.opMu.Unlock()
	op, ok := a.active[id]
	if !ok {
		return time.Time{}
	}
	delete(a.active, id)
	// The reader may be waiting without a deadline, having looked while
	// this operation still ran: the idle clock starts now.
	a.armReadDeadlineLocked()
	return op.started
}

// cancelOp handles a C-CANCEL: a C-MOVE or C-GET is asked to stop after
// its sub-operation in flight; any other operation's context is cancelled
// with cause ErrCancelled.
func (a *Association) cancelOp(id uint16) {
	a.opMu.Lock()
	op := a.active[id]
	a.opMu.Unlock()
	switch {
	case op == nil:
		a.log.Debug("C-CANCEL of no operation in progress", "message_id", id)
	case op.stop != nil:
		op.stop.fire(ErrCancelled)
	default:
		op.cancel(ErrCancelled)
	}
}

// stopOps asks every operation, running or to come, to stop with cause
// why: C-MOVEs and C-GETs after their sub-operation in flight, the
// others at once.
func (a *Association) stopOps(why error) {
	a.opMu.Lock()
	defer a.opMu.Unlock()
	if a.stopping == nil {
		a.stopping = why
	}
	for _, op := range a.active {
		if op.stop != nil {
			op.stop.fire(why)
		} else {
			op.cancel(why)
		}
	}
}

// onMessage routes a complete command: responses to the waiters of this
// side's requests, requests to the handler.
func (a *Association) onMessage(cmd *cmdset.Command, pc *PresentationContext) (sink, error) {
	if cmd.CommandField.IsResponse() {
		if cmd.MessageIDBeingRespondedTo == nil {
			return nil, ul.ProtocolErrorf(pdu.AbortReasonInvalidPDUParameterValue, "%v without Message ID Being Responded To", cmd.CommandField)
		}
		id := *cmd.MessageIDBeingRespondedTo
		w, ok := a.pending.Load(id)
		if !ok {
			a.log.Warn("response to no request in progress; ignored", "command", cmd.CommandField, "message_id", id)
			return discardSink{}, nil
		}
		deliver := w.(func(*response))
		if !cmd.HasDataSet() {
			deliver(&response{cmd: cmd})
			return nil, nil
		}
		return &bufferSink{limit: maxResponseDataSet, done: func(data []byte, err error) {
			deliver(&response{cmd: cmd, data: data, err: err})
		}}, nil
	}
	if cmd.CommandField == cmdset.CCancelRQ {
		if cmd.MessageIDBeingRespondedTo != nil {
			a.cancelOp(*cmd.MessageIDBeingRespondedTo)
		}
		return nil, nil
	}
	if a.handler == nil {
		return nil, ul.ProtocolErrorf(pdu.AbortReasonUnexpectedPDUParameter, "%v: this side accepts no requests", cmd.CommandField)
	}
	return a.handler.request(a, cmd, pc)
}

// maxResponseDataSet bounds the data set of a response held in memory (a
// C-FIND identifier, say).
const maxResponseDataSet = 16 << 20

// response is a response message to a request this side sent.
type response struct {
	cmd  *cmdset.Command
	data []byte
	err  error // the data set could not be received
}

func (a *Association) nextMessageID() uint16 {
	a.msgMu.Lock()
	defer a.msgMu.Unlock()
	a.msgID++
	if a.msgID == 0 {
		a.msgID = 1
	}
	return a.msgID
}

// stopSignal asks a C-MOVE or C-GET to stop before its next
// sub-operation, with a cause.
type stopSignal struct {
	once  sync.Once
	ch    chan struct{}
	cause error
}

func newStopSignal() *stopSignal { return &stopSignal{ch: make(chan struct{})} }

func (s *stopSignal) fire(cause error) {
	if s == nil {
		return
	}
	s.once.Do(func() {
		s.cause = cause
		close(s.ch)
	})
}

// done returns the channel closed when the signal fires; nil, which
// blocks forever, for no signal.
func (s *stopSignal) done() <-chan struct{} {
	if s == nil {
		return nil
	}
	return s.ch
}

// err returns the cause once the signal has fired, nil before.
func (s *stopSignal) err() error {
	if s == nil {
		return nil
	}
	select {
	case <-s.ch:
		return s.cause
	default:
		return nil
	}
}
