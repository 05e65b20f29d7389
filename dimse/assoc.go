package dimse

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"sync"
	"time"

	"github.com/pacsd/pacsd/dimse/internal/cmdset"
	"github.com/pacsd/pacsd/dimse/internal/pdu"
)

// Errors an association reports to the operations it fails.
var (
	// ErrAborted reports an association that ended by A-ABORT, from
	// either side, or by the loss of its connection.
	ErrAborted = errors.New("dimse: association aborted")
	// ErrReleased reports an operation attempted on an association that
	// is released or being released.
	ErrReleased = errors.New("dimse: association released")
	// ErrRejected reports an association request the peer rejected.
	ErrRejected = errors.New("dimse: association rejected")
	// ErrNoContext reports an operation for which no presentation
	// context was accepted.
	ErrNoContext = errors.New("dimse: no accepted presentation context")
)

// Limits of the message layer.
const (
	// maxCommandLength bounds a command set as it is reassembled; the
	// longest legitimate one is a few hundred bytes.
	maxCommandLength = 64 << 10
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
	defaultARTIM = 30 * time.Second
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
// (a Client's Dial) or the acceptor (a Server). An SCU uses the methods
// that send requests; an SCP handler receives the Association its request
// arrived on.
type Association struct {
	conn      net.Conn
	rd        *pdu.Reader
	log       *slog.Logger
	requestor bool
	artimDur  time.Duration

	callingAE, calledAE string
	contexts            map[byte]*PresentationContext
	// peerSCP lists the SOP classes for which the acceptor agreed that
	// the requestor acts as SCP (SCP/SCU role selection, PS3.7
	// D.3.3.4): the storage classes of a C-GET's sub-operations.
	peerSCP         map[string]bool
	peerImplClass   string
	peerImplVersion string

	mu    sync.Mutex // guards st, artim, err
	st    state
	artim *time.Timer
	err   error // why the association ended, when it ended badly

	wmu     sync.Mutex // serializes writes to conn
	wbuf    []byte
	maxSend uint32 // longest P-DATA-TF PDU the peer accepts

	closeOnce sync.Once
	done      chan struct{} // closed when the transport is closed

	// onPData receives P-DATA indications, in the reader goroutine.
	onPData func(*pdu.PDataTF) error
	// onRelease receives an A-RELEASE indication (AR-2) in the reader
	// goroutine and must answer it with respondRelease.
	onRelease func()
	// released is closed when an A-RELEASE confirmation arrives.
	released chan struct{}

	// handler starts the operations of requests from the peer.
	handler requestHandler
	// idle, if not zero, aborts the association after this long without
	// a PDU while no operation is in progress.
	idle time.Duration

	// ctx is the context of operations; it ends with the association.
	ctx    context.Context
	cancel context.CancelFunc
	opMu   sync.Mutex
	active map[uint16]context.CancelCauseFunc // operations in progress, by message ID
	ops    sync.WaitGroup

	// pending holds the waiters for responses to requests this side
	// sent, by message ID.
	pending sync.Map // uint16 -> func(*response)
	msgID   uint16
	msgMu   sync.Mutex
	asm     assembler
}

// requestHandler starts the operations the peer's requests ask for. It is
// called in the reader goroutine and must not block; the sink it returns,
// if any, receives the request's data set.
type requestHandler interface {
	request(a *Association, cmd *cmdset.Command, pc *PresentationContext) (sink, error)
}

// startOp runs an operation in a goroutine of its own, tracked until it
// finishes so that release and shutdown can wait for it.
func (a *Association) startOp(id uint16, f func(ctx context.Context)) {
	ctx, cancel := context.WithCancelCause(a.ctx)
	a.opMu.Lock()
	a.active[id] = cancel
	a.armIdleLocked()
	a.opMu.Unlock()
	a.ops.Add(1)
	go func() {
		defer a.ops.Done()
		defer cancel(nil)
		defer a.finishOp(id)
		f(ctx)
	}()
}

// finishOp marks an operation finished. Operations call it before sending
// their final response, so that a peer answering the response at once
// never finds the operation still counted.
func (a *Association) finishOp(id uint16) {
	a.opMu.Lock()
	defer a.opMu.Unlock()
	delete(a.active, id)
	// The reader may be waiting without a deadline, having looked while
	// this operation still ran: the idle clock starts now.
	a.armIdleLocked()
}

// armIdleLocked sets the read deadline for the idle timeout: none while an
// operation is in progress, which may take long to answer, and the idle
// timeout from now otherwise. a.opMu is held, so that the reader and the
// operations finishing never undo each other's setting.
func (a *Association) armIdleLocked() {
	if a.idle <= 0 {
		return
	}
	if len(a.active) == 0 {
		a.conn.SetReadDeadline(time.Now().Add(a.idle))
	} else {
		a.conn.SetReadDeadline(time.Time{})
	}
}

// cancelOp cancels the context of an operation in progress (C-CANCEL),
// with cause ErrCancelled.
func (a *Association) cancelOp(id uint16) {
	a.opMu.Lock()
	cancel := a.active[id]
	a.opMu.Unlock()
	if cancel != nil {
		cancel(ErrCancelled)
	}
}

// onMessage routes a complete command: responses to the waiters of this
// side's requests, requests to the handler.
func (a *Association) onMessage(cmd *cmdset.Command, pc *PresentationContext) (sink, error) {
	if cmd.CommandField.IsResponse() {
		if cmd.MessageIDBeingRespondedTo == nil {
			return nil, protocolErrorf(pdu.AbortReasonInvalidPDUParameterValue, "%v without Message ID Being Responded To", cmd.CommandField)
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
		return nil, protocolErrorf(pdu.AbortReasonUnexpectedPDUParameter, "%v: this side accepts no requests", cmd.CommandField)
	}
	return a.handler.request(a, cmd, pc)
}

// maxResponseDataSet bounds the data set of a response held in memory (a
// C-FIND identifier, say).
const maxResponseDataSet = 16 << 20

func newAssociation(conn net.Conn, log *slog.Logger, requestor bool, artim time.Duration) *Association {
	if artim <= 0 {
		artim = defaultARTIM
	}
	ctx, cancel := context.WithCancel(context.Background())
	return &Association{
		ctx:       ctx,
		cancel:    cancel,
		active:    map[uint16]context.CancelCauseFunc{},
		conn:      conn,
		rd:        pdu.NewReader(bufio.NewReaderSize(conn, 64<<10), pdu.DefaultMaxLength),
		log:       log,
		requestor: requestor,
		artimDur:  artim,
		contexts:  map[byte]*PresentationContext{},
		peerSCP:   map[string]bool{},
		st:        sta1,
		done:      make(chan struct{}),
		released:  make(chan struct{}),
	}
}

// CallingAE returns the AE title of the association requestor.
func (a *Association) CallingAE() string { return a.callingAE }

// CalledAE returns the AE title the requestor called.
func (a *Association) CalledAE() string { return a.calledAE }

// RemoteAddr returns the peer's network address.
func (a *Association) RemoteAddr() net.Addr { return a.conn.RemoteAddr() }

// Contexts returns the negotiated presentation contexts.
func (a *Association) Contexts() []PresentationContext {
	out := make([]PresentationContext, 0, len(a.contexts))
	for id := 1; id < 256; id += 2 {
		if pc, ok := a.contexts[byte(id)]; ok {
			out = append(out, *pc)
		}
	}
	return out
}

// Done returns a channel closed when the association's connection is
// closed, by release, abort or failure.
func (a *Association) Done() <-chan struct{} { return a.done }

// Err returns why the association ended: nil while it is up or after an
// orderly release, an error wrapping ErrAborted otherwise.
func (a *Association) Err() error {
	a.mu.Lock()
	defer a.mu.Unlock()
	return a.err
}

func (a *Association) state() state {
	a.mu.Lock()
	defer a.mu.Unlock()
	return a.st
}

// input is what an event brings to its action.
type input struct {
	recv       pdu.PDU         // the PDU received, for PDU events
	send       pdu.PDU         // the PDU to send, for AE-2, AE-6 (reject), AE-7, AE-8
	data       net.Buffers     // a P-DATA-TF PDU to send, for DT-1 and AR-7
	acceptable bool            // AE-6: the request is acceptable
	reason     pdu.AbortReason // AA-7, AA-8
	abortErr   error           // what to report to operations (AA-x)
}

// errNoTransition reports an event that Table 9-10 says cannot occur in
// the current state; for a local primitive, the caller's mistake.
type errNoTransition struct {
	st state
	ev event
}

func (e *errNoTransition) Error() string {
	return fmt.Sprintf("dimse: %v is not possible in %v", e.ev, e.st)
}

// fire moves the state machine with event ev and performs the action the
// table names.
func (a *Association) fire(ev event, in *input) (action, error) {
	if in == nil {
		in = &input{}
	}
	a.mu.Lock()
	cell, ok := table[a.st][ev]
	if !ok {
		st := a.st
		a.mu.Unlock()
		return noAction, &errNoTransition{st, ev}
	}
	next := cell.next
	switch {
	case cell.action == ae6 && !in.acceptable:
		next = cell.alt
	case cell.action == ar8 && !a.requestor:
		next = cell.alt
	}
	prev := a.st
	a.st = next
	a.mu.Unlock()
	if a.log.Enabled(context.Background(), slog.LevelDebug-4) {
		a.log.Log(context.Background(), slog.LevelDebug-4, "state machine", "from", prev, "event", ev, "action", cell.action, "to", next)
	}
	return cell.action, a.perform(cell.action, in)
}

// perform carries out an action of PS3.8 §9.2 Table 9-7 to 9-9.
func (a *Association) perform(act action, in *input) error {
	switch act {
	case ae1, ae3, aa6:
		// AE-1 (connect) is Dial's; AE-3 is reported by Dial on its
		// return; AA-6 ignores the PDU.
	case ae2, ae7:
		return a.writePDU(in.send)
	case ae4:
		a.closeTransport(fmt.Errorf("%w: %v", ErrRejected, rejectText(in.recv)))
	case ae5:
		a.startARTIM()
	case ae6:
		a.stopARTIM()
		if !in.acceptable {
			err := a.writePDU(in.send)
			a.startARTIM()
			return err
		}
	case ae8:
		err := a.writePDU(in.send)
		a.startARTIM()
		return err
	case dt1, ar7:
		return a.writeBuffers(in.data)
	case dt2, ar6:
		if a.onPData != nil {
			return a.onPData(in.recv.(*pdu.PDataTF))
		}
	case ar1:
		return a.writePDU(&pdu.ReleaseRQ{})
	case ar2, ar8:
		if a.onRelease != nil {
			a.onRelease()
		}
	case ar3:
		a.confirmRelease()
		a.closeTransport(nil)
	case ar4:
		err := a.writePDU(&pdu.ReleaseRP{})
		a.startARTIM()
		return err
	case ar5:
		a.stopARTIM()
		a.closeTransport(nil)
	case ar9:
		return a.writePDU(&pdu.ReleaseRP{})
	case ar10:
		a.confirmRelease()
	case aa1:
		err := a.writePDU(&pdu.Abort{Source: pdu.AbortSourceServiceUser})
		a.setErr(in.abortErr)
		a.startARTIM()
		return err
	case aa2:
		a.stopARTIM()
		a.closeTransport(in.abortErr)
	case aa3:
		ab, _ := in.recv.(*pdu.Abort)
		a.closeTransport(fmt.Errorf("%w by the peer: %v", ErrAborted, abortText(ab)))
	case aa4:
		a.closeTransport(in.abortErr)
	case aa5:
		a.stopARTIM()
		a.closeTransport(in.abortErr)
	case aa7:
		return a.writePDU(&pdu.Abort{Source: pdu.AbortSourceServiceProvider, Reason: in.reason})
	case aa8:
		err := a.writePDU(&pdu.Abort{Source: pdu.AbortSourceServiceProvider, Reason: in.reason})
		a.setErr(in.abortErr)
		a.startARTIM()
		return err
	}
	return nil
}

func (a *Association) startARTIM() {
	a.mu.Lock()
	defer a.mu.Unlock()
	if a.artim != nil {
		a.artim.Stop()
	}
	a.artim = time.AfterFunc(a.artimDur, func() {
		a.fire(evt18, &input{abortErr: fmt.Errorf("%w: ARTIM timer expired", ErrAborted)})
	})
}

func (a *Association) stopARTIM() {
	a.mu.Lock()
	defer a.mu.Unlock()
	if a.artim != nil {
		a.artim.Stop()
		a.artim = nil
	}
}

// setErr records why the association is ending, keeping the first reason.
func (a *Association) setErr(err error) {
	if err == nil {
		return
	}
	a.mu.Lock()
	if a.err == nil {
		a.err = err
	}
	a.mu.Unlock()
}

func (a *Association) closeTransport(err error) {
	a.setErr(err)
	a.closeOnce.Do(func() {
		a.stopARTIM()
		a.conn.Close()
		a.cancel()
		a.mu.Lock()
		a.st = sta1
		a.mu.Unlock()
		close(a.done)
	})
}

func (a *Association) confirmRelease() {
	select {
	case <-a.released:
	default:
		close(a.released)
	}
}

func (a *Association) writePDU(p pdu.PDU) error {
	a.wmu.Lock()
	defer a.wmu.Unlock()
	b, err := p.AppendTo(a.wbuf[:0])
	if err != nil {
		return fmt.Errorf("dimse: encode %s: %w", p.Type(), err)
	}
	a.wbuf = b
	if _, err := a.conn.Write(b); err != nil {
		return fmt.Errorf("dimse: send %s: %w", p.Type(), err)
	}
	return nil
}

func (a *Association) writeBuffers(b net.Buffers) error {
	a.wmu.Lock()
	defer a.wmu.Unlock()
	if _, err := b.WriteTo(a.conn); err != nil {
		return fmt.Errorf("dimse: send P-DATA-TF: %w", err)
	}
	return nil
}

// readLoop reads PDUs until the transport closes, feeding each to the
// state machine.
func (a *Association) readLoop() {
	for {
		a.opMu.Lock()
		a.armIdleLocked()
		a.opMu.Unlock()
		p, err := a.rd.Next()
		if err != nil && a.idle > 0 && errors.Is(err, os.ErrDeadlineExceeded) && a.state() == sta6 {
			a.log.Warn("association idle too long; aborting", "idle", a.idle)
			a.Abort()
			return
		}
		if err != nil {
			var pe *pdu.Error
			if errors.As(err, &pe) {
				a.fire(evt19, &input{reason: pe.AbortReason(), abortErr: fmt.Errorf("%w: invalid PDU from the peer: %v", ErrAborted, err)})
				a.drain()
				return
			}
			a.fire(evt17, &input{abortErr: fmt.Errorf("%w: connection lost: %v", ErrAborted, err)})
			return
		}
		ev := pduEvent(p)
		_, err = a.fire(ev, &input{recv: p})
		if err != nil {
			var pe *protocolError
			if errors.As(err, &pe) {
				a.fire(evt19, &input{reason: pe.reason, abortErr: fmt.Errorf("%w: %v", ErrAborted, pe)})
				a.drain()
				return
			}
			a.log.Debug("association action failed", "event", ev, "err", err)
		}
		if a.state() == sta1 {
			return
		}
	}
}

// drain discards what the peer sends after an invalid PDU, until it
// closes the connection or ARTIM closes it for us: nothing it says can be
// trusted to be framed any more.
func (a *Association) drain() {
	io.Copy(io.Discard, a.conn)
	a.fire(evt17, &input{})
}

func pduEvent(p pdu.PDU) event {
	switch p.(type) {
	case *pdu.AssociateAC:
		return evt3
	case *pdu.AssociateRJ:
		return evt4
	case *pdu.AssociateRQ:
		return evt6
	case *pdu.PDataTF:
		return evt10
	case *pdu.ReleaseRQ:
		return evt12
	case *pdu.ReleaseRP:
		return evt13
	case *pdu.Abort:
		return evt16
	}
	return evt19
}

// protocolError is a violation of PS3.7/PS3.8 found above the PDU codec,
// answered with an A-ABORT.
type protocolError struct {
	reason pdu.AbortReason
	msg    string
}

func (e *protocolError) Error() string { return e.msg }

func protocolErrorf(reason pdu.AbortReason, format string, args ...any) *protocolError {
	return &protocolError{reason: reason, msg: fmt.Sprintf(format, args...)}
}

// Abort aborts the association (A-ABORT, service-user source) and closes
// its connection without waiting for the peer.
func (a *Association) Abort() error {
	_, err := a.fire(evt15, &input{abortErr: fmt.Errorf("%w locally", ErrAborted)})
	a.closeTransport(fmt.Errorf("%w locally", ErrAborted))
	var nt *errNoTransition
	if errors.As(err, &nt) {
		return nil // already ended
	}
	return err
}

// sendMessage sends a command and, if data is not nil, a data set read from
// data, on presentation context pc, in P-DATA-TF PDUs no longer than the
// peer accepts. It fails with ctx's error if ctx ends first; the
// association is then aborted, since a message cut short cannot be
// resumed.
func (a *Association) sendMessage(ctx context.Context, pc byte, cmd *cmdset.Command, data io.Reader) error {
	if data != nil {
		cmd.CommandDataSetType = cmdset.DataSetPresent
	} else {
		cmd.CommandDataSetType = cmdset.NoDataSet
	}
	enc, err := cmd.AppendTo(nil)
	if err != nil {
		return fmt.Errorf("dimse: encode %v: %w", cmd.CommandField, err)
	}
	stop := context.AfterFunc(ctx, func() { a.conn.SetWriteDeadline(time.Unix(1, 0)) })
	defer func() {
		if !stop() && ctx.Err() != nil {
			a.Abort()
		}
	}()
	chunk := int(a.maxSend) - 6 // a PDV item header is 6 bytes
	if b, ok := data.(*bytes.Buffer); ok && len(enc) <= chunk && b.Len() <= chunk {
		// A small message (a C-FIND match, say) goes out as its two
		// P-DATA-TF PDUs in one write, without a copy buffer: a query
		// sends one per match.
		return ctxErr(ctx, a.sendSmall(pc, enc, b.Bytes()))
	}
	for off := 0; off < len(enc); off += chunk {
		end := min(off+chunk, len(enc))
		if err := a.sendPDV(pc, true, end == len(enc), enc[off:end]); err != nil {
			return ctxErr(ctx, err)
		}
	}
	if data == nil {
		return nil
	}
	buf := make([]byte, chunk)
	br := bufio.NewReaderSize(data, 64<<10)
	for {
		n, err := io.ReadFull(br, buf)
		last := false
		switch {
		case err == io.EOF || err == io.ErrUnexpectedEOF:
			last = true
		case err != nil:
			// The data set cannot be finished; the peer is waiting
			// for its last fragment, so only an abort ends this.
			a.Abort()
			return fmt.Errorf("dimse: read data set to send: %w", err)
		default:
			if _, perr := br.Peek(1); perr == io.EOF {
				last = true
			}
		}
		if err := a.sendPDV(pc, false, last, buf[:n]); err != nil {
			return ctxErr(ctx, err)
		}
		if last {
			return nil
		}
	}
}

func ctxErr(ctx context.Context, err error) error {
	if ctx.Err() != nil {
		return fmt.Errorf("%w (%v)", ctx.Err(), err)
	}
	return err
}

// sendSmall sends a whole message, command and data set each in one
// PDV of its own P-DATA-TF PDU, in one write.
func (a *Association) sendSmall(pc byte, cmd, data []byte) error {
	h1, err := pdu.AppendPDataHeader(make([]byte, 0, 12), pc, true, true, len(cmd))
	if err != nil {
		return err
	}
	h2, err := pdu.AppendPDataHeader(make([]byte, 0, 12), pc, false, true, len(data))
	if err != nil {
		return err
	}
	return a.sendPData(net.Buffers{h1, cmd, h2, data})
}

// sendPDV sends one P-DATA-TF PDU holding one PDV.
func (a *Association) sendPDV(pc byte, command, last bool, b []byte) error {
	hdr, err := pdu.AppendPDataHeader(make([]byte, 0, 12), pc, command, last, len(b))
	if err != nil {
		return err
	}
	return a.sendPData(net.Buffers{hdr, b})
}

// sendPData sends encoded P-DATA-TF PDUs through the state machine, which
// refuses them once the association is ending.
func (a *Association) sendPData(b net.Buffers) error {
	_, err := a.fire(evt9, &input{data: b})
	var nt *errNoTransition
	if errors.As(err, &nt) {
		if e := a.Err(); e != nil {
			return e
		}
		return ErrReleased
	}
	return err
}

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

func rejectText(p pdu.PDU) string {
	rj, ok := p.(*pdu.AssociateRJ)
	if !ok {
		return "rejected"
	}
	return fmt.Sprintf("result %d, source %d, reason %d", rj.Result, rj.Source, rj.Reason)
}

func abortText(p *pdu.Abort) string {
	if p == nil {
		return "A-ABORT"
	}
	if p.Source == pdu.AbortSourceServiceUser {
		return "A-ABORT (service user)"
	}
	return fmt.Sprintf("A-ABORT (source %d, %v)", p.Source, p.Reason)
}
