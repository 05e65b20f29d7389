package dimse

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/pacsd/pacsd/dicom"
	"github.com/pacsd/pacsd/dicom/uid"
	"github.com/pacsd/pacsd/dimse/internal/cmdset"
	"github.com/pacsd/pacsd/dimse/internal/pdu"
)

// EchoHandler answers C-ECHO (the Verification service, PS3.4 Annex A).
// Returning nil answers Success.
type EchoHandler interface {
	Echo(ctx context.Context, a *Association) error
}

// StoreHandler receives C-STORE requests (the Storage service, PS3.4
// Annex B).
//
// Store is called as soon as the command arrives; req.Dataset streams the
// data set from the association as the peer sends it, and ends (io.EOF)
// with its last fragment, or with an error wrapping ErrAborted if the
// association ends first. Store may stop reading early, for instance once
// it knows it will refuse the instance; the server then reads and drops
// the rest. req.Dataset must not be used after Store returns.
//
// The response's status is Success when Store returns nil, the status of a
// returned *StatusError (warnings included), and Processing Failure
// (0x0110) for any other error, whose text becomes the Error Comment.
// ctx ends when the association does.
type StoreHandler interface {
	Store(ctx context.Context, a *Association, req *StoreRequest) error
}

// StoreRequest is a C-STORE request.
type StoreRequest struct {
	SOPClassUID       string
	SOPInstanceUID    string
	TransferSyntaxUID string
	Priority          uint16
	// MoveOriginatorAE and MoveOriginatorMessageID identify the C-MOVE
	// this C-STORE is a sub-operation of, if any.
	MoveOriginatorAE        string
	MoveOriginatorMessageID uint16
	// Dataset is the data set (no File Meta Information), encoded in
	// TransferSyntaxUID.
	Dataset io.Reader
}

// ErrServerClosed is returned by Serve after Shutdown or Close.
var ErrServerClosed = errors.New("dimse: server closed")

// Server accepts associations and answers the requests they carry with its
// handlers. It negotiates what its handlers serve: Verification with Echo,
// every Storage SOP class of PS3.4 Annex B in every transfer syntax with
// Store. Set the fields before calling Serve; a Server must not be copied
// after first use.
type Server struct {
	// AETitle is the title the server answers to; associations calling
	// another title are rejected (called-AE-title-not-recognized).
	AETitle string
	// AllowCaller decides whether a calling AE title, from a peer at
	// addr, may associate; nil allows all.
	AllowCaller func(callingAE string, addr net.Addr) bool

	Echo  EchoHandler
	Store StoreHandler
	Find  FindHandler
	Move  MoveHandler
	Get   GetHandler
	// Commit serves Storage Commitment requests; CommitResult receives
	// Storage Commitment results sent on associations the peer requests.
	Commit       CommitHandler
	CommitResult CommitResultHandler

	// MaxPDULength is the Maximum Length announced for received PDUs
	// (default 256 KiB); it bounds the memory one association reads into.
	MaxPDULength uint32
	// MaxAssociations limits concurrent associations (0: no limit);
	// further ones are rejected as transient (local-limit-exceeded).
	MaxAssociations int
	// ARTIMTimeout bounds the wait for an A-ASSOCIATE-RQ after connect and
	// for the peer to close after a release or abort (default 30 s).
	ARTIMTimeout time.Duration
	// IdleTimeout aborts an association that sends nothing for this long
	// while no operation is in progress (0: never).
	IdleTimeout time.Duration
	// WriteTimeout bounds sending one response (default 60 s).
	WriteTimeout time.Duration

	Logger *slog.Logger

	mu        sync.Mutex
	listeners map[net.Listener]struct{}
	assocs    map[*Association]struct{}
	closing   bool
	conns     sync.WaitGroup
}

func (s *Server) logger() *slog.Logger {
	if s.Logger != nil {
		return s.Logger
	}
	return slog.New(slog.DiscardHandler)
}

// Serve accepts connections on l and serves an association on each until
// Shutdown or Close, then returns ErrServerClosed.
func (s *Server) Serve(l net.Listener) error {
	s.mu.Lock()
	if s.closing {
		s.mu.Unlock()
		return ErrServerClosed
	}
	if s.listeners == nil {
		s.listeners = map[net.Listener]struct{}{}
	}
	s.listeners[l] = struct{}{}
	s.mu.Unlock()
	defer func() {
		s.mu.Lock()
		delete(s.listeners, l)
		s.mu.Unlock()
	}()
	var delay time.Duration
	for {
		conn, err := l.Accept()
		if err != nil {
			s.mu.Lock()
			closing := s.closing
			s.mu.Unlock()
			if closing {
				return ErrServerClosed
			}
			var ne net.Error
			if errors.As(err, &ne) && ne.Timeout() || errors.Is(err, os.ErrDeadlineExceeded) || isTemporary(err) {
				// Out of file descriptors and the like: back off
				// rather than spin, as net/http does.
				delay = min(max(2*delay, 5*time.Millisecond), time.Second)
				s.logger().Warn("accept failed; retrying", "err", err, "delay", delay)
				time.Sleep(delay)
				continue
			}
			return fmt.Errorf("dimse: accept: %w", err)
		}
		delay = 0
		s.conns.Add(1)
		go func() {
			defer s.conns.Done()
			s.ServeConn(conn)
		}()
	}
}

func isTemporary(err error) bool {
	t, ok := err.(interface{ Temporary() bool })
	return ok && t.Temporary()
}

// ServeConn serves one association on an accepted connection and closes
// it. Serve calls it for every connection; call it directly to serve a
// connection accepted elsewhere (TLS, tests over net.Pipe).
func (s *Server) ServeConn(conn net.Conn) {
	log := s.logger().With("remote", conn.RemoteAddr().String())
	a := newAssociation(conn, log, false, s.ARTIMTimeout)
	a.handler = s
	a.idle = s.IdleTimeout
	if !s.track(a) {
		conn.Close()
		return
	}
	defer s.untrack(a)

	a.fire(evt5, nil) // AE-5: ARTIM runs until the A-ASSOCIATE-RQ arrives
	p, err := a.rd.Next()
	if err != nil {
		var pe *pdu.Error
		if errors.As(err, &pe) {
			log.Warn("invalid PDU instead of an association request; aborting", "err", err)
			a.fire(evt19, &input{reason: pe.AbortReason(), abortErr: fmt.Errorf("%w: %v", ErrAborted, err)})
			a.drain()
		} else {
			a.fire(evt17, &input{abortErr: fmt.Errorf("%w: %v", ErrAborted, err)})
		}
		return
	}
	rq, ok := p.(*pdu.AssociateRQ)
	if !ok {
		log.Warn("unexpected PDU instead of an association request; aborting", "pdu", p.Type())
		a.fire(pduEvent(p), &input{recv: p, abortErr: fmt.Errorf("%w: %s before A-ASSOCIATE-RQ", ErrAborted, p.Type())})
		a.readLoop()
		return
	}
	a.callingAE, a.calledAE = rq.CallingAETitle, rq.CalledAETitle
	log = log.With("calling_ae", a.callingAE, "called_ae", a.calledAE)
	a.log = log
	ac, rj := s.negotiate(a, rq)
	if rj != nil {
		log.Warn("association rejected", "result", rj.Result, "source", rj.Source, "reason", rj.Reason, "why", rejectWhy(rj))
		a.fire(evt6, &input{acceptable: false, send: rj})
		a.readLoop()
		return
	}
	a.fire(evt6, &input{acceptable: true})
	if _, err := a.fire(evt7, &input{send: ac}); err != nil {
		log.Warn("association not accepted", "err", err)
		a.closeTransport(err)
		return
	}
	a.rd.SetMaxLength(s.maxPDU())
	var accepted []string
	for _, pc := range a.Contexts() {
		if pc.Accepted() {
			accepted = append(accepted, uid.Name(pc.AbstractSyntax)+" / "+uid.Name(pc.TransferSyntax))
		}
	}
	log.Info("association accepted", "contexts", len(accepted), "peer_implementation", a.peerImplClass+" "+a.peerImplVersion, "max_pdu_send", a.maxSend)
	log.Debug("accepted presentation contexts", "contexts", accepted)
	a.onPData = a.onPDataMessages
	a.onRelease = func() {
		// The reply waits for operations still running, which may
		// send their responses meanwhile (AR-7).
		go func() {
			a.ops.Wait()
			if _, err := a.fire(evt14, nil); err != nil {
				log.Debug("release response", "err", err)
			}
		}()
	}
	start := time.Now()
	a.readLoop()
	a.asm.abort(a.endErr())
	a.ops.Wait()
	if err := a.Err(); err != nil {
		log.Warn("association ended", "err", err, "duration", time.Since(start))
	} else {
		log.Info("association released", "duration", time.Since(start))
	}
}

func (a *Association) endErr() error {
	if err := a.Err(); err != nil {
		return err
	}
	return fmt.Errorf("%w: connection closed", ErrAborted)
}

func (s *Server) maxPDU() uint32 {
	if s.MaxPDULength == 0 {
		return defaultMaxPDULength
	}
	return max(s.MaxPDULength, minPDULength)
}

func (s *Server) track(a *Association) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closing {
		return false
	}
	if s.assocs == nil {
		s.assocs = map[*Association]struct{}{}
	}
	s.assocs[a] = struct{}{}
	return true
}

func (s *Server) untrack(a *Association) {
	s.mu.Lock()
	defer s.mu.Unlock()
	delete(s.assocs, a)
}

func (s *Server) count() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return len(s.assocs)
}

// Shutdown stops accepting associations and waits for those in progress to
// be released by their peers. When ctx ends first, it aborts every
// association between operations, waits for the operations in progress to
// send their responses, and aborts those associations too. It returns
// ctx's error in that case, nil otherwise.
func (s *Server) Shutdown(ctx context.Context) error {
	s.mu.Lock()
	s.closing = true
	for l := range s.listeners {
		l.Close()
	}
	s.mu.Unlock()

	done := make(chan struct{})
	go func() {
		s.conns.Wait()
		close(done)
	}()
	select {
	case <-done:
		return nil
	case <-ctx.Done():
	}
	s.mu.Lock()
	assocs := make([]*Association, 0, len(s.assocs))
	for a := range s.assocs {
		assocs = append(assocs, a)
	}
	s.mu.Unlock()
	for _, a := range assocs {
		go func() {
			a.ops.Wait()
			a.Abort()
		}()
	}
	<-done
	return ctx.Err()
}

// Close stops accepting and aborts every association at once.
func (s *Server) Close() error {
	s.mu.Lock()
	s.closing = true
	for l := range s.listeners {
		l.Close()
	}
	assocs := make([]*Association, 0, len(s.assocs))
	for a := range s.assocs {
		assocs = append(assocs, a)
	}
	s.mu.Unlock()
	for _, a := range assocs {
		a.Abort()
	}
	s.conns.Wait()
	return nil
}

// negotiate answers an A-ASSOCIATE-RQ with an A-ASSOCIATE-AC, or with an
// A-ASSOCIATE-RJ when the association as a whole is unacceptable. An
// unsupported abstract syntax rejects its presentation context only.
func (s *Server) negotiate(a *Association, rq *pdu.AssociateRQ) (*pdu.AssociateAC, *pdu.AssociateRJ) {
	reject := func(res pdu.RejectResult, src pdu.RejectSource, why pdu.RejectReason) (*pdu.AssociateAC, *pdu.AssociateRJ) {
		return nil, &pdu.AssociateRJ{Result: res, Source: src, Reason: why}
	}
	switch {
	case rq.ProtocolVersion&pdu.ProtocolVersion == 0:
		return reject(pdu.RejectedPermanent, pdu.RejectSourceACSE, pdu.RejectReasonProtocolVersionNotSupported)
	case rq.ApplicationContext != pdu.ApplicationContextName:
		return reject(pdu.RejectedPermanent, pdu.RejectSourceServiceUser, pdu.RejectReasonApplicationContextNameNotSupported)
	case s.AETitle != "" && a.calledAE != s.AETitle:
		return reject(pdu.RejectedPermanent, pdu.RejectSourceServiceUser, pdu.RejectReasonCalledAETitleNotRecognized)
	case s.AllowCaller != nil && !s.AllowCaller(a.callingAE, a.conn.RemoteAddr()):
		return reject(pdu.RejectedPermanent, pdu.RejectSourceServiceUser, pdu.RejectReasonCallingAETitleNotRecognized)
	case s.MaxAssociations > 0 && s.count() > s.MaxAssociations:
		return reject(pdu.RejectedTransient, pdu.RejectSourcePresentation, pdu.RejectReasonLocalLimitExceeded)
	}

	ac := &pdu.AssociateAC{
		ProtocolVersion:    pdu.ProtocolVersion,
		CalledAETitle:      rq.CalledAETitle,
		CallingAETitle:     rq.CallingAETitle,
		ApplicationContext: pdu.ApplicationContextName,
		UserInfo: pdu.UserInfo{
			MaxLength:                 s.maxPDU(),
			ImplementationClassUID:    dicom.ImplementationClassUID,
			ImplementationVersionName: dicom.ImplementationVersionName,
		},
	}
	if rq.UserInfo.AsyncOpsWindow != nil {
		// Operations are performed one at a time (PS3.7 D.3.3.3).
		ac.UserInfo.AsyncOpsWindow = &pdu.AsyncOpsWindow{MaxOpsInvoked: 1, MaxOpsPerformed: 1}
	}
	for _, rs := range rq.UserInfo.RoleSelections {
		// The requestor may act as SCP of a storage class only to
		// receive a C-GET's sub-operations.
		// It may act as SCP of Storage Commitment to send results on
		// an association it requests.
		scp := rs.SCP && (s.Get != nil && uid.IsStorage(rs.SOPClassUID) ||
			s.CommitResult != nil && rs.SOPClassUID == uid.StorageCommitmentPushModel)
		ac.UserInfo.RoleSelections = append(ac.UserInfo.RoleSelections, pdu.RoleSelection{SOPClassUID: rs.SOPClassUID, SCU: rs.SCU, SCP: scp})
		if scp {
			a.peerSCP[rs.SOPClassUID] = true
		}
	}
	for _, p := range rq.PresentationContexts {
		pc := &PresentationContext{ID: p.ID, AbstractSyntax: p.AbstractSyntax}
		pc.TransferSyntax, pc.Result = s.choose(p)
		a.contexts[p.ID] = pc
		ac.PresentationContexts = append(ac.PresentationContexts, pdu.PresentationContextAC{
			ID: p.ID, Result: pdu.ContextResult(pc.Result), TransferSyntax: pc.TransferSyntax,
		})
	}
	a.peerImplClass = rq.UserInfo.ImplementationClassUID
	a.peerImplVersion = rq.UserInfo.ImplementationVersionName
	a.maxSend = sendLimit(rq.UserInfo.MaxLength)
	return ac, nil
}

// sendLimit turns a peer's Maximum Length into the PDU length to send.
func sendLimit(peer uint32) uint32 {
	switch {
	case peer == 0:
		return maxSendPDULength
	case peer < minPDULength:
		return minPDULength
	}
	return min(peer, maxSendPDULength)
}

// Presentation context results (PS3.8 §9.3.3.2).
const (
	resultAccepted             = 0
	resultAbstractNotSupported = 3
	resultTransferNotSupported = 4
)

// uncompressed are the syntaxes of services whose data sets pacsd itself
// reads or writes (Verification has none).
var uncompressed = []string{uid.ExplicitVRLittleEndian, uid.ImplicitVRLittleEndian}

// choose picks the transfer syntax of a proposed presentation context: the
// first proposed that the service accepts, the proposer's preference. The
// archive keeps what it receives, so storage accepts every syntax.
func (s *Server) choose(p pdu.PresentationContextRQ) (string, byte) {
	var ok func(string) bool
	switch {
	case p.AbstractSyntax == uid.Verification && s.Echo != nil:
		ok = func(ts string) bool { return slices.Contains(uncompressed, ts) || ts == uid.ExplicitVRBigEndian }
	case uid.IsStorage(p.AbstractSyntax) && (s.Store != nil || s.Get != nil):
		storable := storageSyntaxes()
		ok = func(ts string) bool { return storable[ts] }
	case p.AbstractSyntax == uid.StorageCommitmentPushModel && (s.Commit != nil || s.CommitResult != nil),
		slices.Contains(findModels, p.AbstractSyntax) && s.Find != nil,
		slices.Contains(moveModels, p.AbstractSyntax) && s.Move != nil,
		slices.Contains(getModels, p.AbstractSyntax) && s.Get != nil:
		ok = func(ts string) bool { return slices.Contains(uncompressed, ts) || ts == uid.ExplicitVRBigEndian }
	default:
		return "", resultAbstractNotSupported
	}
	for _, ts := range p.TransferSyntaxes {
		if ts = strings.TrimRight(ts, "\x00 "); ok(ts) {
			return ts, resultAccepted
		}
	}
	return "", resultTransferNotSupported
}

var storageSyntaxes = sync.OnceValue(func() map[string]bool {
	m := map[string]bool{}
	for _, ts := range uid.StorageSyntaxes() {
		m[ts] = true
	}
	return m
})

func rejectWhy(rj *pdu.AssociateRJ) string {
	switch {
	case rj.Source == pdu.RejectSourceACSE && rj.Reason == pdu.RejectReasonProtocolVersionNotSupported:
		return "protocol version not supported"
	case rj.Source == pdu.RejectSourcePresentation:
		return "too many associations"
	case rj.Reason == pdu.RejectReasonApplicationContextNameNotSupported:
		return "application context not supported"
	case rj.Reason == pdu.RejectReasonCalledAETitleNotRecognized:
		return "called AE title not ours"
	case rj.Reason == pdu.RejectReasonCallingAETitleNotRecognized:
		return "calling AE title not allowed"
	}
	return "rejected"
}

// request starts the operation a request asks for. It runs in the reader
// goroutine, so the operation itself runs in a goroutine of its own; the
// returned sink, if any, receives the request's data set.
func (s *Server) request(a *Association, cmd *cmdset.Command, pc *PresentationContext) (sink, error) {
	if cmd.MessageID == nil {
		return nil, protocolErrorf(pdu.AbortReasonInvalidPDUParameterValue, "%v without a Message ID", cmd.CommandField)
	}
	id := *cmd.MessageID
	switch cmd.CommandField {
	case cmdset.CEchoRQ:
		if s.Echo == nil || pc.AbstractSyntax != uid.Verification {
			break
		}
		a.startOp(id, func(ctx context.Context) {
			err := s.Echo.Echo(ctx, a)
			s.respond(a, pc, cmd, cmdset.CEchoRSP, err, StatusProcessingFailure)
		})
		return nil, nil

	case cmdset.CStoreRQ:
		if s.Store == nil || !uid.IsStorage(pc.AbstractSyntax) {
			break
		}
		if !cmd.HasDataSet() {
			return nil, protocolErrorf(pdu.AbortReasonInvalidPDUParameterValue, "C-STORE-RQ without a data set")
		}
		pr, pw := newPipe()
		req := &StoreRequest{
			SOPClassUID:       cmd.AffectedSOPClassUID,
			SOPInstanceUID:    cmd.AffectedSOPInstanceUID,
			TransferSyntaxUID: pc.TransferSyntax,
			MoveOriginatorAE:  cmd.MoveOriginatorApplicationEntityTitle,
			Dataset:           pr,
		}
		if cmd.Priority != nil {
			req.Priority = uint16(*cmd.Priority)
		}
		if cmd.MoveOriginatorMessageID != nil {
			req.MoveOriginatorMessageID = *cmd.MoveOriginatorMessageID
		}
		a.startOp(id, func(ctx context.Context) {
			var err error
			switch {
			case req.SOPClassUID != pc.AbstractSyntax:
				err = Errorf(StatusSOPClassNotSupported, "SOP Class %s sent on a context for %s", req.SOPClassUID, pc.AbstractSyntax)
			case req.SOPInstanceUID == "":
				err = Errorf(StatusCannotUnderstand, "no Affected SOP Instance UID")
			default:
				err = s.Store.Store(ctx, a, req)
			}
			// Whatever the handler left of the data set is read off
			// the association before the response goes out.
			io.Copy(io.Discard, pr)
			pr.Close()
			s.respond(a, pc, cmd, cmdset.CStoreRSP, err, StatusProcessingFailure)
		})
		return pw, nil

	case cmdset.CFindRQ, cmdset.CMoveRQ, cmdset.CGetRQ:
		if sk, err := s.queryRequest(a, cmd, pc); sk != nil || err != nil {
			return sk, err
		}

	case cmdset.NActionRQ, cmdset.NEventReportRQ:
		respond := func(field cmdset.Field, err error) { s.respond(a, pc, cmd, field, err, StatusProcessingFailure) }
		if sk, err := commitRequest(a, cmd, pc, s.Commit, s.CommitResult, respond); sk != nil || err != nil {
			return sk, err
		}
	}
	a.log.Warn("request not supported on its presentation context", "command", cmd.CommandField, "context", uid.Name(pc.AbstractSyntax))
	a.startOp(id, func(ctx context.Context) {
		s.respond(a, pc, cmd, cmd.CommandField|0x8000, Errorf(StatusUnrecognizedOperation, "%v not supported for %s", cmd.CommandField, uid.Name(pc.AbstractSyntax)), StatusUnrecognizedOperation)
	})
	return nil, nil
}

// respond sends the final response to a request.
func (s *Server) respond(a *Association, pc *PresentationContext, rq *cmdset.Command, field cmdset.Field, err error, fallback Status) {
	st, comment := statusOf(err, fallback)
	rsp := &cmdset.Command{
		CommandField:              field,
		MessageIDBeingRespondedTo: rq.MessageID,
		AffectedSOPClassUID:       rq.AffectedSOPClassUID,
		AffectedSOPInstanceUID:    rq.AffectedSOPInstanceUID,
		EventTypeID:               rq.EventTypeID,
		ActionTypeID:              rq.ActionTypeID,
	}
	if rq.AffectedSOPClassUID == "" {
		// N-ACTION and other N- requests name their object as
		// Requested; the response names it as Affected (PS3.7 10.3).
		rsp.AffectedSOPClassUID, rsp.AffectedSOPInstanceUID = rq.RequestedSOPClassUID, rq.RequestedSOPInstanceUID
	}
	v := uint16(st)
	rsp.Status = &v
	if comment != "" && !st.IsSuccess() {
		rsp.ErrorComment = truncate(comment, 64)
	}
	a.finishOp(*rq.MessageID)
	if st.IsFailure() {
		a.log.Warn("request failed", "command", rq.CommandField, "sop_instance_uid", rq.AffectedSOPInstanceUID, "status", st, "comment", comment)
	}
	ctx, cancel := context.WithTimeout(context.Background(), orDefault(s.WriteTimeout, 60*time.Second))
	defer cancel()
	if err := a.sendMessage(ctx, pc.ID, rsp, nil); err != nil {
		a.log.Warn("response not sent", "command", field, "err", err)
	}
}

func orDefault(d, def time.Duration) time.Duration {
	if d > 0 {
		return d
	}
	return def
}

// truncate cuts s to at most n bytes without splitting a UTF-8 sequence;
// Error Comment is an LO of 64 characters (PS3.7 C.4).
func truncate(s string, n int) string {
	if len(s) <= n {
		return s
	}
	for n > 0 && s[n]&0xC0 == 0x80 {
		n--
	}
	return s[:n]
}
