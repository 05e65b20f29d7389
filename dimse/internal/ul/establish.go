package ul

import (
	"context"
	"fmt"
	"net"
	"time"

	"github.com/pacsd/pacsd/dimse/internal/pdu"
)

// Association establishment (PS3.8 §7.1, §9.1): the acceptor's side in
// Accept, the requestor's in Request.

// RejectError is an association request answered with A-ASSOCIATE-RJ. It
// matches ErrRejected with errors.Is.
type RejectError struct {
	RJ *pdu.AssociateRJ
}

func (e *RejectError) Error() string { return "dimse: association rejected: " + RejectText(e.RJ) }

// Is reports whether target is ErrRejected.
func (e *RejectError) Is(target error) bool { return target == ErrRejected }

// RejectText describes an A-ASSOCIATE-RJ for people.
func RejectText(rj *pdu.AssociateRJ) string {
	switch {
	case rj.Source == pdu.RejectSourceACSE && rj.Reason == pdu.RejectReasonProtocolVersionNotSupported:
		return "protocol version not supported"
	case rj.Source == pdu.RejectSourcePresentation && rj.Reason == pdu.RejectReasonLocalLimitExceeded:
		return "too many associations"
	case rj.Source == pdu.RejectSourcePresentation:
		return "temporary congestion"
	case rj.Reason == pdu.RejectReasonApplicationContextNameNotSupported:
		return "application context not supported"
	case rj.Reason == pdu.RejectReasonCalledAETitleNotRecognized:
		return "called AE title not recognized"
	case rj.Reason == pdu.RejectReasonCallingAETitleNotRecognized:
		return "calling AE title not recognized"
	}
	return fmt.Sprintf("result %d, source %d, reason %d", rj.Result, rj.Source, rj.Reason)
}

// Accept serves the start of an association on conn, a connection just
// accepted: it waits, up to ARTIM, for the A-ASSOCIATE-RQ, and answers it
// with what negotiate returns. An A-ASSOCIATE-AC establishes the
// association; Accept returns the Conn, which reads PDUs up to the
// Maximum Length the A-ASSOCIATE-AC announces, and the request. An
// A-ASSOCIATE-RJ refuses it: Accept waits, up to ARTIM, for the peer to
// close, and returns a *RejectError. Anything else that ends the
// association returns an error wrapping ErrAborted. In both cases conn is
// closed.
//
// negotiate may keep a reference to the request.
func Accept(conn net.Conn, cfg Config, negotiate func(*pdu.AssociateRQ) (*pdu.AssociateAC, *pdu.AssociateRJ)) (*Conn, *pdu.AssociateRQ, error) {
	c := newConn(conn, cfg, false)
	c.fire(evt5, nil) // AE-5: ARTIM runs until the A-ASSOCIATE-RQ arrives
	p, err := c.rd.Next()
	if err != nil {
		c.readFailed(err)
		<-c.done
		return nil, nil, c.EndErr()
	}
	rq, ok := p.(*pdu.AssociateRQ)
	if !ok {
		c.fire(pduEvent(p), &input{recv: p, abortErr: fmt.Errorf("%w: %s before A-ASSOCIATE-RQ", ErrAborted, p.Type())})
		c.Serve(closing{})
		return nil, nil, c.EndErr()
	}
	ac, rj := negotiate(rq)
	if rj != nil {
		c.fire(evt6, &input{acceptable: false, send: rj})
		c.Serve(closing{})
		return nil, rq, &RejectError{RJ: rj}
	}
	c.fire(evt6, &input{acceptable: true})
	if _, err := c.fire(evt7, &input{send: ac}); err != nil {
		c.closeTransport(fmt.Errorf("%w: A-ASSOCIATE-AC not sent: %v", ErrAborted, err))
		return nil, rq, c.EndErr()
	}
	c.rd.SetMaxLength(readLimit(ac.UserInfo.MaxLength))
	return c, rq, nil
}

// Request requests an association over conn, a connection just opened: it
// sends rq and waits, up to ARTIM or until ctx ends, for the answer. An
// A-ASSOCIATE-AC establishes the association: Request returns the Conn,
// which reads PDUs up to the Maximum Length rq announces, and the
// A-ASSOCIATE-AC. An A-ASSOCIATE-RJ returns a *RejectError. conn is closed
// unless the association is established.
func Request(ctx context.Context, conn net.Conn, cfg Config, rq *pdu.AssociateRQ) (*Conn, *pdu.AssociateAC, error) {
	c := newConn(conn, cfg, true)
	stop := context.AfterFunc(ctx, func() { conn.SetDeadline(time.Unix(1, 0)) })
	defer stop()
	fail := func(err error) (*Conn, *pdu.AssociateAC, error) {
		if ctx.Err() != nil {
			err = fmt.Errorf("%w (%v)", ctx.Err(), err)
		}
		c.closeTransport(err)
		return nil, nil, err
	}
	c.fire(evt1, nil) // AE-1: the transport connection is conn
	if _, err := c.fire(evt2, &input{send: rq}); err != nil {
		return fail(err)
	}
	c.startARTIM() // the wait for the answer is bounded too
	p, err := c.rd.Next()
	c.stopARTIM()
	if err != nil {
		return fail(fmt.Errorf("dimse: association request to %s: %w", rq.CalledAETitle, err))
	}
	switch p := p.(type) {
	case *pdu.AssociateAC:
		c.fire(evt3, &input{recv: p})
		if !stop() && ctx.Err() != nil {
			return fail(fmt.Errorf("%w: A-ASSOCIATE-AC arrived too late", ErrAborted))
		}
		conn.SetDeadline(time.Time{})
		c.rd.SetMaxLength(readLimit(rq.UserInfo.MaxLength))
		return c, p, nil
	case *pdu.AssociateRJ:
		c.fire(evt4, &input{recv: p})
		return nil, nil, &RejectError{RJ: p}
	default:
		c.fire(pduEvent(p), &input{recv: p, abortErr: fmt.Errorf("%w: %s in answer to A-ASSOCIATE-RQ", ErrAborted, p.Type())})
		c.closeTransport(nil)
		return nil, nil, c.EndErr()
	}
}

// readLimit is the longest PDU read once a Maximum Length was announced;
// 0 announces no limit, which is still bounded here.
func readLimit(announced uint32) uint32 {
	if announced == 0 {
		return pdu.DefaultMaxLength
	}
	return announced
}

// closing is the Handler of a Conn that carries no association, only
// waits for its end: after a rejection or an abort.
type closing struct{}

func (closing) PData(*pdu.PDataTF) error { return nil }
func (closing) Release()                 {}
func (closing) BeforeRead()              {}
func (closing) ReadTimeout() error       { return fmt.Errorf("%w: read timed out", ErrAborted) }
