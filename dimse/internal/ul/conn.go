package ul

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"sync"
	"time"

	"github.com/pacsd/pacsd/dimse/internal/pdu"
)

// Errors a Conn reports. Package dimse exports them under the same names,
// so their text names dimse.
var (
	// ErrAborted reports an association that ended by A-ABORT, from
	// either side, or by the loss of its connection.
	ErrAborted = errors.New("dimse: association aborted")
	// ErrReleased reports a request made of an association that is
	// released or being released.
	ErrReleased = errors.New("dimse: association released")
	// ErrRejected reports an association request that was rejected.
	ErrRejected = errors.New("dimse: association rejected")
)

// DefaultARTIM is the ARTIM timeout of a Config that sets none.
const DefaultARTIM = 30 * time.Second

// Config configures a Conn.
type Config struct {
	// ARTIM bounds the wait for an A-ASSOCIATE-RQ after connect, for the
	// answer to one, and for the peer to close after a release, reject
	// or abort (default DefaultARTIM).
	ARTIM  time.Duration
	Logger *slog.Logger
}

// Handler receives what a Conn indicates to the layer above it. Serve
// calls its methods in its own goroutine, one at a time.
type Handler interface {
	// PData is the P-DATA indication (DT-2, AR-6). p and its PDVs are
	// valid only during the call. A *ProtocolError returned aborts the
	// association with its reason; other errors are logged.
	PData(p *pdu.PDataTF) error
	// Release is the A-RELEASE indication (AR-2, AR-8): the peer asks to
	// release. The handler answers with Conn.RespondRelease, at once or,
	// from another goroutine, once its operations have ended.
	Release()
	// BeforeRead is called before each PDU is read, to set the read
	// deadline with Conn.SetReadDeadline.
	BeforeRead()
	// ReadTimeout is called when that deadline passes. The association
	// is aborted with the error it returns.
	ReadTimeout() error
}

// ProtocolError is a violation of PS3.7 or PS3.8 found above the PDU
// codec. A Handler returns one to abort the association (A-ABORT, source
// service provider) with its reason.
type ProtocolError struct {
	Reason pdu.AbortReason
	Msg    string
}

func (e *ProtocolError) Error() string { return e.Msg }

// ProtocolErrorf returns a *ProtocolError with a formatted message.
func ProtocolErrorf(reason pdu.AbortReason, format string, args ...any) *ProtocolError {
	return &ProtocolError{Reason: reason, Msg: fmt.Sprintf(format, args...)}
}

// Conn is the DICOM Upper Layer of one association over one transport
// connection (PS3.8 §9): it reads and writes PDUs, runs the state machine
// of Table 9-10 and the ARTIM timer, and indicates P-DATA and release to
// its Handler. It knows nothing of commands, data sets or services.
//
// A Conn comes from Accept (the acceptor's side) or Request (the
// requestor's), established; Serve then reads until the connection
// closes. Send, Release, RespondRelease and Abort may be called from any
// goroutine.
type Conn struct {
	conn      net.Conn
	rd        *pdu.Reader
	log       *slog.Logger
	requestor bool
	artimDur  time.Duration

	mu    sync.Mutex // guards st, artim, err
	st    state
	artim *time.Timer
	err   error // why the association ended, when it ended badly

	wmu  sync.Mutex // serializes writes to conn
	wbuf []byte

	closeOnce sync.Once
	done      chan struct{} // closed when the transport is closed
	released  chan struct{} // closed when an A-RELEASE confirmation arrives

	h Handler // set by Serve
}

func newConn(conn net.Conn, cfg Config, requestor bool) *Conn {
	artim := cfg.ARTIM
	if artim <= 0 {
		artim = DefaultARTIM
	}
	log := cfg.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	return &Conn{
		conn:      conn,
		rd:        pdu.NewReader(bufio.NewReaderSize(conn, 64<<10), pdu.DefaultMaxLength),
		log:       log,
		requestor: requestor,
		artimDur:  artim,
		st:        sta1,
		done:      make(chan struct{}),
		released:  make(chan struct{}),
	}
}

// RemoteAddr returns the peer's network address.
func (c *Conn) RemoteAddr() net.Addr { return c.conn.RemoteAddr() }

// SetReadDeadline sets the deadline of the connection's reads; Handler's
// BeforeRead calls it.
func (c *Conn) SetReadDeadline(t time.Time) error { return c.conn.SetReadDeadline(t) }

// SetWriteDeadline sets the deadline of the connection's writes: a sender
// whose context ends sets it in the past to interrupt a write.
func (c *Conn) SetWriteDeadline(t time.Time) error { return c.conn.SetWriteDeadline(t) }

// Done returns a channel closed when the transport connection is closed,
// by release, abort or failure.
func (c *Conn) Done() <-chan struct{} { return c.done }

// Err returns why the association ended: nil while it is up or after an
// orderly release, an error wrapping ErrAborted otherwise.
func (c *Conn) Err() error {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.err
}

// EndErr returns Err, or, after an orderly release, an error wrapping
// ErrAborted that says the connection closed: what an operation cut
// short by the end of the association reports.
func (c *Conn) EndErr() error {
	if err := c.Err(); err != nil {
		return err
	}
	return fmt.Errorf("%w: connection closed", ErrAborted)
}

func (c *Conn) state() state {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.st
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
func (c *Conn) fire(ev event, in *input) (action, error) {
	if in == nil {
		in = &input{}
	}
	c.mu.Lock()
	cell, ok := table[c.st][ev]
	if !ok {
		st := c.st
		c.mu.Unlock()
		return noAction, &errNoTransition{st, ev}
	}
	next := cell.next
	switch {
	case cell.action == ae6 && !in.acceptable:
		next = cell.alt
	case cell.action == ar8 && !c.requestor:
		next = cell.alt
	}
	prev := c.st
	c.st = next
	c.mu.Unlock()
	if c.log.Enabled(context.Background(), slog.LevelDebug-4) {
		c.log.Log(context.Background(), slog.LevelDebug-4, "state machine", "from", prev, "event", ev, "action", cell.action, "to", next)
	}
	return cell.action, c.perform(cell.action, in)
}

// perform carries out an action of PS3.8 §9.2.2, Tables 9-6 to 9-9.
func (c *Conn) perform(act action, in *input) error {
	switch act {
	case ae1, ae3, aa6:
		// AE-1 (connect) is done by the caller of Request, which
		// reports AE-3 on its return; AA-6 ignores the PDU.
	case ae2, ae7:
		return c.writePDU(in.send)
	case ae4:
		c.closeTransport(fmt.Errorf("%w: %v", ErrRejected, rejectText(in.recv)))
	case ae5:
		c.startARTIM()
	case ae6:
		c.stopARTIM()
		if !in.acceptable {
			err := c.writePDU(in.send)
			c.startARTIM()
			return err
		}
	case ae8:
		err := c.writePDU(in.send)
		c.startARTIM()
		return err
	case dt1, ar7:
		return c.writeBuffers(in.data)
	case dt2, ar6:
		if c.h != nil {
			return c.h.PData(in.recv.(*pdu.PDataTF))
		}
	case ar1:
		return c.writePDU(&pdu.ReleaseRQ{})
	case ar2, ar8:
		if c.h != nil {
			c.h.Release()
		}
	case ar3:
		c.confirmRelease()
		c.closeTransport(nil)
	case ar4:
		err := c.writePDU(&pdu.ReleaseRP{})
		c.startARTIM()
		return err
	case ar5:
		c.stopARTIM()
		c.closeTransport(nil)
	case ar9:
		return c.writePDU(&pdu.ReleaseRP{})
	case ar10:
		c.confirmRelease()
	case aa1:
		err := c.writePDU(&pdu.Abort{Source: pdu.AbortSourceServiceUser})
		c.setErr(in.abortErr)
		c.startARTIM()
		return err
	case aa2:
		c.stopARTIM()
		c.closeTransport(in.abortErr)
	case aa3:
		ab, _ := in.recv.(*pdu.Abort)
		c.closeTransport(fmt.Errorf("%w by the peer: %v", ErrAborted, abortText(ab)))
	case aa4:
		c.closeTransport(in.abortErr)
	case aa5:
		c.stopARTIM()
		c.closeTransport(in.abortErr)
	case aa7:
		return c.writePDU(&pdu.Abort{Source: pdu.AbortSourceServiceProvider, Reason: in.reason})
	case aa8:
		err := c.writePDU(&pdu.Abort{Source: pdu.AbortSourceServiceProvider, Reason: in.reason})
		c.setErr(in.abortErr)
		c.startARTIM()
		return err
	}
	return nil
}

func (c *Conn) startARTIM() {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.artim != nil {
		c.artim.Stop()
	}
	c.artim = time.AfterFunc(c.artimDur, func() {
		c.fire(evt18, &input{abortErr: fmt.Errorf("%w: ARTIM timer expired", ErrAborted)})
	})
}

func (c *Conn) stopARTIM() {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.artim != nil {
		c.artim.Stop()
		c.artim = nil
	}
}

// setErr records why the association is ending, keeping the first reason.
func (c *Conn) setErr(err error) {
	if err == nil {
		return
	}
	c.mu.Lock()
	if c.err == nil {
		c.err = err
	}
	c.mu.Unlock()
}

func (c *Conn) closeTransport(err error) {
	c.setErr(err)
	c.closeOnce.Do(func() {
		c.stopARTIM()
		c.conn.Close()
		c.mu.Lock()
		c.st = sta1
		c.mu.Unlock()
		close(c.done)
	})
}

func (c *Conn) confirmRelease() {
	select {
	case <-c.released:
	default:
		close(c.released)
	}
}

func (c *Conn) writePDU(p pdu.PDU) error {
	c.wmu.Lock()
	defer c.wmu.Unlock()
	b, err := p.AppendTo(c.wbuf[:0])
	if err != nil {
		return fmt.Errorf("dimse: encode %s: %w", p.Type(), err)
	}
	c.wbuf = b
	if _, err := c.conn.Write(b); err != nil {
		return fmt.Errorf("dimse: send %s: %w", p.Type(), err)
	}
	return nil
}

func (c *Conn) writeBuffers(b net.Buffers) error {
	c.wmu.Lock()
	defer c.wmu.Unlock()
	if _, err := b.WriteTo(c.conn); err != nil {
		return fmt.Errorf("dimse: send P-DATA-TF: %w", err)
	}
	return nil
}

// Serve reads PDUs until the transport connection closes, feeding each to
// the state machine and indicating P-DATA and release to h.
func (c *Conn) Serve(h Handler) {
	c.h = h
	for {
		h.BeforeRead()
		p, err := c.rd.Next()
		if err != nil && errors.Is(err, os.ErrDeadlineExceeded) {
			c.Abort(h.ReadTimeout())
			return
		}
		if err != nil {
			c.readFailed(err)
			return
		}
		ev := pduEvent(p)
		_, err = c.fire(ev, &input{recv: p})
		if err != nil {
			var pe *ProtocolError
			if errors.As(err, &pe) {
				c.fire(evt19, &input{reason: pe.Reason, abortErr: fmt.Errorf("%w: %v", ErrAborted, pe)})
				c.drain()
				return
			}
			c.log.Debug("association action failed", "event", ev, "err", err)
		}
		if c.state() == sta1 {
			return
		}
	}
}

// readFailed answers a read error: an invalid PDU with an A-ABORT (Evt19),
// anything else as the loss of the connection (Evt17).
func (c *Conn) readFailed(err error) {
	var pe *pdu.Error
	if errors.As(err, &pe) {
		c.fire(evt19, &input{reason: pe.AbortReason(), abortErr: fmt.Errorf("%w: invalid PDU from the peer: %v", ErrAborted, err)})
		c.drain()
		return
	}
	c.fire(evt17, &input{abortErr: fmt.Errorf("%w: connection lost: %v", ErrAborted, err)})
}

// drain discards what the peer sends after an invalid PDU, until it
// closes the connection or ARTIM closes it for us: nothing it says can be
// trusted to be framed any more.
func (c *Conn) drain() {
	io.Copy(io.Discard, c.conn)
	c.fire(evt17, &input{})
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

// Send sends encoded P-DATA-TF PDUs (the P-DATA request primitive). Once
// the association is ending it fails with why it ended, or ErrReleased.
func (c *Conn) Send(b net.Buffers) error {
	_, err := c.fire(evt9, &input{data: b})
	var nt *errNoTransition
	if errors.As(err, &nt) {
		if e := c.Err(); e != nil {
			return e
		}
		return ErrReleased
	}
	return err
}

// Abort aborts the association (A-ABORT, service-user source) and closes
// its connection without waiting for the peer. why, if not nil, is what
// Err reports; it should wrap ErrAborted.
func (c *Conn) Abort(why error) error {
	if why == nil {
		why = fmt.Errorf("%w locally", ErrAborted)
	}
	_, err := c.fire(evt15, &input{abortErr: why})
	c.closeTransport(why)
	var nt *errNoTransition
	if errors.As(err, &nt) {
		return nil // already ended
	}
	return err
}

// Release releases the association (A-RELEASE request, the requestor's)
// and waits for the peer's confirmation and the close of the connection.
// If ctx ends first, it aborts the association.
func (c *Conn) Release(ctx context.Context) error {
	if _, err := c.fire(evt11, nil); err != nil {
		var nt *errNoTransition
		if errors.As(err, &nt) {
			if e := c.Err(); e != nil {
				return e
			}
			return ErrReleased
		}
		c.Abort(nil)
		return fmt.Errorf("dimse: release: %w", err)
	}
	select {
	case <-c.released:
		<-c.done
		return c.Err()
	case <-c.done:
		return c.Err()
	case <-ctx.Done():
		c.Abort(nil)
		return fmt.Errorf("dimse: release: %w", ctx.Err())
	}
}

// RespondRelease answers the peer's A-RELEASE request (the A-RELEASE
// response primitive, Evt14) with an A-RELEASE-RP.
func (c *Conn) RespondRelease() error {
	_, err := c.fire(evt14, nil)
	return err
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
