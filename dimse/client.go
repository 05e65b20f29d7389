package dimse

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"time"

	"github.com/pacsd/pacsd/dicom"
	"github.com/pacsd/pacsd/dicom/uid"
	"github.com/pacsd/pacsd/dimse/internal/cmdset"
	"github.com/pacsd/pacsd/dimse/internal/pdu"
	"github.com/pacsd/pacsd/dimse/internal/ul"
)

// Proposal is a presentation context to propose: an abstract syntax and
// the transfer syntaxes, in order of preference.
type Proposal struct {
	AbstractSyntax   string
	TransferSyntaxes []string
}

// Dialer requests associations (the SCU side).
type Dialer struct {
	CallingAE string
	CalledAE  string
	// Proposals are the presentation contexts to propose, at most 128.
	Proposals []Proposal
	// MaxPDULength is the Maximum Length announced for received PDUs
	// (default 256 KiB).
	MaxPDULength uint32
	// ARTIMTimeout bounds the wait for the association's acceptance and
	// for the peer to close after release (default 30 s).
	ARTIMTimeout time.Duration
	// Store, if set, handles the C-STOREs the peer sends on the
	// association (the sub-operations of a C-GET).
	Store StoreHandler
	// CommitResult, if set, receives the Storage Commitment results the
	// peer sends on the association.
	CommitResult CommitResultHandler
	// SCPRoles are SOP classes for which this side asks to act as SCP
	// (PS3.7 D.3.3.4): Storage Commitment Push Model, to send results
	// on an association it requests.
	SCPRoles []string
	Logger   *slog.Logger
}

// Dial connects to addr ("host:port") over TCP and requests an association.
func (d *Dialer) Dial(ctx context.Context, addr string) (*Association, error) {
	var nd net.Dialer
	conn, err := nd.DialContext(ctx, "tcp", addr)
	if err != nil {
		return nil, fmt.Errorf("dimse: dial %s: %w", addr, err)
	}
	a, err := d.DialConn(ctx, conn)
	if err != nil {
		return nil, err
	}
	return a, nil
}

// DialConn requests an association over an open connection (TLS, or a
// net.Pipe in tests). It closes conn if the association is not
// established.
func (d *Dialer) DialConn(ctx context.Context, conn net.Conn) (*Association, error) {
	log := d.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	log = log.With("remote", conn.RemoteAddr().String(), "called_ae", d.CalledAE)
	if len(d.Proposals) == 0 || len(d.Proposals) > pdu.MaxPresentationContexts {
		conn.Close()
		return nil, fmt.Errorf("dimse: %d presentation contexts proposed; 1 to %d are possible", len(d.Proposals), pdu.MaxPresentationContexts)
	}
	maxRecv := d.MaxPDULength
	if maxRecv == 0 {
		maxRecv = defaultMaxPDULength
	}
	rq := &pdu.AssociateRQ{
		ProtocolVersion:    pdu.ProtocolVersion,
		CalledAETitle:      d.CalledAE,
		CallingAETitle:     d.CallingAE,
		ApplicationContext: pdu.ApplicationContextName,
		UserInfo: pdu.UserInfo{
			MaxLength:                 max(maxRecv, minPDULength),
			ImplementationClassUID:    dicom.ImplementationClassUID,
			ImplementationVersionName: dicom.ImplementationVersionName,
		},
	}
	proposed := map[byte]string{}
	for i, p := range d.Proposals {
		id := byte(2*i + 1)
		rq.PresentationContexts = append(rq.PresentationContexts, pdu.PresentationContextRQ{
			ID: id, AbstractSyntax: p.AbstractSyntax, TransferSyntaxes: p.TransferSyntaxes,
		})
		proposed[id] = p.AbstractSyntax
	}
	if d.Store != nil {
		// A C-GET's C-STOREs come back on this association: this side
		// must be allowed to act as SCP of the storage classes
		// (PS3.7 D.3.3.4), in one item per class however many contexts
		// propose it.
		roles := map[string]bool{}
		for _, p := range d.Proposals {
			if uid.IsStorage(p.AbstractSyntax) && !roles[p.AbstractSyntax] {
				roles[p.AbstractSyntax] = true
				rq.UserInfo.RoleSelections = append(rq.UserInfo.RoleSelections, pdu.RoleSelection{SOPClassUID: p.AbstractSyntax, SCU: true, SCP: true})
			}
		}
	}
	for _, class := range d.SCPRoles {
		rq.UserInfo.RoleSelections = append(rq.UserInfo.RoleSelections, pdu.RoleSelection{SOPClassUID: class, SCU: false, SCP: true})
	}

	c, ac, err := ul.Request(ctx, conn, ul.Config{ARTIM: d.ARTIMTimeout, Logger: log}, rq)
	if err != nil {
		var rje *ul.RejectError
		if errors.As(err, &rje) {
			err := fmt.Errorf("%w by %s: %s", ErrRejected, d.CalledAE, ul.RejectText(rje.RJ))
			if rje.RJ.Result == pdu.RejectedTransient {
				return nil, transientError{err}
			}
			return nil, err
		}
		return nil, err
	}
	a := newAssociation(c, log, true)
	a.callingAE, a.calledAE = d.CallingAE, d.CalledAE
	if d.Store != nil || d.CommitResult != nil {
		a.handler = &clientHandler{store: d.Store, commitResult: d.CommitResult}
	}
	for _, pc := range ac.PresentationContexts {
		as, ok := proposed[pc.ID]
		if !ok {
			err := fmt.Errorf("%w: A-ASSOCIATE-AC answers presentation context %d, which was not proposed", ErrAborted, pc.ID)
			c.Abort(err)
			return nil, err
		}
		a.contexts[pc.ID] = &PresentationContext{ID: pc.ID, AbstractSyntax: as, TransferSyntax: pc.TransferSyntax, Result: byte(pc.Result)}
		if pc.Result != resultAccepted {
			a.contexts[pc.ID].TransferSyntax = ""
		}
	}
	a.maxSend = sendLimit(ac.UserInfo.MaxLength)
	a.peerImplClass, a.peerImplVersion = ac.UserInfo.ImplementationClassUID, ac.UserInfo.ImplementationVersionName
	go a.run()
	log.Debug("association established", "contexts", len(ac.PresentationContexts))
	return a, nil
}

// clientHandler serves the requests a peer sends to the requestor: the
// C-STOREs of a C-GET, Storage Commitment results.
type clientHandler struct {
	store        StoreHandler
	commitResult CommitResultHandler
}

func (h *clientHandler) request(a *Association, cmd *cmdset.Command, pc *PresentationContext) (sink, error) {
	s := &Server{Store: h.store, CommitResult: h.commitResult}
	return s.request(a, cmd, pc)
}

// Context returns the accepted presentation context for an abstract syntax
// and, if ts is not empty, that transfer syntax.
func (a *Association) Context(abstract, ts string) (*PresentationContext, bool) {
	for _, pc := range a.Contexts() {
		if pc.Accepted() && pc.AbstractSyntax == abstract && (ts == "" || pc.TransferSyntax == ts) {
			return &pc, true
		}
	}
	return nil, false
}

// Echo sends a C-ECHO request and waits for its response.
func (a *Association) Echo(ctx context.Context) error {
	pc, ok := a.Context(uid.Verification, "")
	if !ok {
		return fmt.Errorf("%w for Verification", ErrNoContext)
	}
	id := a.nextMessageID()
	rsp, err := a.roundTrip(ctx, pc.ID, &cmdset.Command{
		CommandField:        cmdset.CEchoRQ,
		MessageID:           &id,
		AffectedSOPClassUID: uid.Verification,
	}, nil)
	if err != nil {
		return err
	}
	if st := responseStatus(rsp.cmd); !st.IsSuccess() {
		return &StatusError{Status: st, Comment: rsp.cmd.ErrorComment}
	}
	return nil
}

// Store sends a C-STORE request with the data set read from req.Dataset,
// encoded in req.TransferSyntaxUID, on a presentation context accepted for
// that SOP class and transfer syntax, and waits for the response. It
// returns the response's status; a failure status comes with a
// *StatusError. On the acceptor's side of an association (a C-GET's
// sub-operations) the requestor must have taken the SCP role for the SOP
// class.
func (a *Association) Store(ctx context.Context, req *StoreRequest) (Status, error) {
	if !a.requestor && !a.peerSCP[req.SOPClassUID] {
		return 0, fmt.Errorf("%w: %s", errNoSCPRole, uid.Name(req.SOPClassUID))
	}
	pc, ok := a.Context(req.SOPClassUID, req.TransferSyntaxUID)
	if !ok {
		return 0, fmt.Errorf("%w for %s in %s", ErrNoContext, uid.Name(req.SOPClassUID), uid.Name(req.TransferSyntaxUID))
	}
	id := a.nextMessageID()
	prio := cmdset.Priority(req.Priority)
	cmd := &cmdset.Command{
		CommandField:           cmdset.CStoreRQ,
		MessageID:              &id,
		AffectedSOPClassUID:    req.SOPClassUID,
		AffectedSOPInstanceUID: req.SOPInstanceUID,
		Priority:               &prio,
	}
	if req.MoveOriginatorAE != "" {
		cmd.MoveOriginatorApplicationEntityTitle = req.MoveOriginatorAE
		mid := req.MoveOriginatorMessageID
		cmd.MoveOriginatorMessageID = &mid
	}
	rsp, err := a.roundTrip(ctx, pc.ID, cmd, req.Dataset)
	if err != nil {
		return 0, err
	}
	st := responseStatus(rsp.cmd)
	if st.IsFailure() || st.IsCancel() {
		return st, &StatusError{Status: st, Comment: rsp.cmd.ErrorComment}
	}
	return st, nil
}

// roundTrip sends a request and waits for its one response.
func (a *Association) roundTrip(ctx context.Context, pc byte, cmd *cmdset.Command, data io.Reader) (*response, error) {
	id := *cmd.MessageID
	ch := make(chan *response, 1)
	a.pending.Store(id, func(r *response) { ch <- r })
	defer a.pending.Delete(id)
	if err := a.sendMessage(ctx, pc, cmd, data); err != nil {
		return nil, fmt.Errorf("dimse: send %v: %w", cmd.CommandField, err)
	}
	select {
	case r := <-ch:
		return r, r.err
	case <-a.Done():
		return nil, fmt.Errorf("dimse: awaiting %v response: %w", cmd.CommandField, a.ul.EndErr())
	case <-ctx.Done():
		// A request in flight cannot be taken back; only an abort
		// frees the association from waiting for its response.
		a.Abort()
		return nil, fmt.Errorf("dimse: awaiting %v response: %w", cmd.CommandField, ctx.Err())
	}
}

func responseStatus(c *cmdset.Command) Status {
	if c.Status == nil {
		return StatusProcessingFailure
	}
	return Status(*c.Status)
}

// Release releases the association (A-RELEASE) and closes its connection.
// If ctx ends first, it aborts the association.
func (a *Association) Release(ctx context.Context) error { return a.ul.Release(ctx) }

// transientError is a rejection the peer says is temporary.
type transientError struct{ error }

func (e transientError) Unwrap() []error { return []error{e.error, ErrTransient} }
