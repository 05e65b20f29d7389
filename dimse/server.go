package dimse

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/netip"
	"os"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/pacsd/pacsd/dicom"
	"github.com/pacsd/pacsd/dicom/uid"
	"github.com/pacsd/pacsd/dimse/internal/cmdset"
	"github.com/pacsd/pacsd/dimse/internal/pdu"
	"github.com/pacsd/pacsd/dimse/internal/ul"
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

// AssociationEvent is what Server.Observe is told of an association
// request or a failed TLS handshake.
type AssociationEvent struct {
	// CallingAE and CalledAE are those of the request; empty when the
	// connection failed before one (a TLS handshake).
	CallingAE, CalledAE string
	RemoteAddr          net.Addr
	Accepted            bool
	// Reason says why the request was rejected, or the handshake
	// failed; empty when accepted.
	Reason string
}

// OperationEvent is what Server.ObserveOperation is told of an
// operation.
type OperationEvent struct {
	// CallingAE is the peer's AE title.
	CallingAE string
	// Command names the request: "C-ECHO", "C-STORE", "C-FIND",
	// "C-MOVE", "C-GET", "N-ACTION", "N-EVENT-REPORT" and so on.
	Command string
	// Status is the final response's.
	Status Status
	// Duration runs from the request's command set, as read, to the
	// final response.
	Duration time.Duration
}

// ErrServerClosed is returned by Serve after Shutdown or Close. It is also
// the cause of the contexts of operations that Shutdown stops.
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
	// addr, may associate; nil allows all. Over TLS, addr is the
	// listener's connection's RemoteAddr, through which the caller's
	// certificate may be reached, and the handshake is complete.
	AllowCaller func(callingAE string, addr net.Addr) bool
	// AssociationContext, if set, returns the context of an accepted
	// association's operations, derived from ctx: it may add values,
	// such as who the caller is, that every handler then finds in its
	// own. It is called once, before the first request is read.
	AssociationContext func(ctx context.Context, a *Association) context.Context
	// Observe, if set, is told of each association request the server
	// answers, accepted or rejected, and of each TLS handshake that
	// fails, so that they can be audited. It is called from the
	// connection's goroutine and should not block.
	Observe func(AssociationEvent)
	// ObserveEnd, if set, is told when an association that Observe
	// was told was accepted has ended, released or aborted, once its
	// operations are over. It is called from the connection's
	// goroutine and should not block.
	ObserveEnd func(AssociationEvent)
	// ObserveOperation, if set, is told of each operation the server
	// answers as its final response goes out, whatever its status; a
	// request refused as unsupported counts too. It is called from the
	// operation's goroutine and should not block.
	ObserveOperation func(OperationEvent)

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
	// Only negotiated associations count: connections still to send
	// their A-ASSOCIATE-RQ are limited by MaxNegotiatingPerHost.
	MaxAssociations int
	// MaxNegotiatingPerHost limits the connections from one IP address
	// that have not yet negotiated an association (default 32; negative:
	// no limit). Further ones are closed at once, so that a host opening
	// connections and sending nothing holds no more than this for the
	// ARTIM time, and locks no other host out.
	MaxNegotiatingPerHost int
	// ARTIMTimeout bounds the wait for an A-ASSOCIATE-RQ after connect and
	// for the peer to close after a release or abort (default 30 s).
	ARTIMTimeout time.Duration
	// IdleTimeout aborts an association that sends nothing for this long
	// while no operation is in progress (0: never).
	IdleTimeout time.Duration
	// ReadTimeout aborts an association that stops sending in the middle
	// of a message: it bounds the wait for each PDU once a command or
	// data set has started to arrive (default 60 s). The time a handler
	// takes with what has arrived does not count.
	ReadTimeout time.Duration
	// WriteTimeout bounds sending one response (default 60 s).
	WriteTimeout time.Duration

	Logger *slog.Logger

	mu          sync.Mutex
	listeners   map[net.Listener]struct{}
	negotiating map[net.Conn]string // connections before their association, and their host
	perHost     map[string]int      // negotiating connections by host
	established int                 // associations negotiated and not yet ended
	assocs      map[*Association]struct{}
	phase       shutdownPhase
	conns       sync.WaitGroup
}

// shutdownPhase is how far Shutdown or Close has gone.
type shutdownPhase int

const (
	running    shutdownPhase = iota
	draining                 // no new associations; the others run on
	stopping                 // operations are asked to stop; idle associations are aborted
	terminated               // every association is aborted
)

// defaultMaxNegotiatingPerHost is MaxNegotiatingPerHost's default: more
// than a router or archive forwarding from one host opens at once, few
// enough that one host cannot hold many sockets for nothing.
const defaultMaxNegotiatingPerHost = 32

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
	if s.phase != running {
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
			closing := s.phase != running
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
	host := hostOf(conn.RemoteAddr())
	if !s.admit(conn, host) {
		log.Warn("connection closed: too many connections from this host waiting to associate", "max_negotiating_per_host", s.maxNegotiating())
		conn.Close()
		return
	}
	if !s.handshake(conn, log) {
		s.admitted(conn, host)
		conn.Close()
		return
	}
	var agreed *agreement
	c, rq, err := ul.Accept(conn, ul.Config{ARTIM: s.ARTIMTimeout, Logger: log}, func(rq *pdu.AssociateRQ) (*pdu.AssociateAC, *pdu.AssociateRJ) {
		ac, rj, ag := s.negotiate(rq, conn.RemoteAddr(), log)
		agreed = ag
		return ac, rj
	})
	s.admitted(conn, host)
	if err != nil {
		var rje *ul.RejectError
		switch {
		case errors.As(err, &rje):
			log.Warn("association rejected", "calling_ae", rq.CallingAETitle, "called_ae", rq.CalledAETitle,
				"result", rje.RJ.Result, "source", rje.RJ.Source, "reason", rje.RJ.Reason, "why", ul.RejectText(rje.RJ))
			s.observe(AssociationEvent{CallingAE: rq.CallingAETitle, CalledAE: rq.CalledAETitle, RemoteAddr: conn.RemoteAddr(), Reason: ul.RejectText(rje.RJ)})
		case rq != nil:
			s.release()
			log.Warn("association not accepted", "err", err)
		default:
			log.Debug("connection ended before an association request", "err", err)
		}
		return
	}
	defer s.release()
	log = log.With("calling_ae", rq.CallingAETitle, "called_ae", rq.CalledAETitle)
	a := newAssociation(c, log, false)
	a.handler = s
	a.idle = s.IdleTimeout
	a.readTimeout = orDefault(s.ReadTimeout, defaultReadTimeout)
	a.callingAE, a.calledAE = rq.CallingAETitle, rq.CalledAETitle
	agreed.apply(a)
	if s.AssociationContext != nil {
		// The context newAssociation made is replaced before any
		// operation has used it.
		parent := s.AssociationContext(context.Background(), a)
		a.cancel()
		a.ctx, a.cancel = context.WithCancel(parent)
	}
	s.track(a)
	defer s.untrack(a)

	var accepted []string
	for _, pc := range a.Contexts() {
		if pc.Accepted() {
			accepted = append(accepted, uid.Name(pc.AbstractSyntax)+" / "+uid.Name(pc.TransferSyntax))
		}
	}
	log.Info("association accepted", "contexts", len(accepted), "peer_implementation", a.peerImplClass+" "+a.peerImplVersion, "max_pdu_send", a.maxSend)
	s.observe(AssociationEvent{CallingAE: a.callingAE, CalledAE: a.calledAE, RemoteAddr: conn.RemoteAddr(), Accepted: true})
	log.Debug("accepted presentation contexts", "contexts", accepted)
	start := time.Now()
	a.run()
	a.ops.Wait()
	if s.ObserveEnd != nil {
		s.ObserveEnd(AssociationEvent{CallingAE: a.callingAE, CalledAE: a.calledAE, RemoteAddr: conn.RemoteAddr(), Accepted: true})
	}
	if err := a.Err(); err != nil {
		log.Warn("association ended", "err", err, "duration", time.Since(start))
	} else {
		log.Info("association released", "duration", time.Since(start))
	}
}

func (s *Server) observe(ev AssociationEvent) {
	if s.Observe != nil {
		s.Observe(ev)
	}
}

// handshake completes the TLS handshake of a connection from a TLS
// listener (one with a HandshakeContext method, as *tls.Conn has) within
// the ARTIM time, so that a failure is told apart from a peer that
// connects and sends nothing: a client certificate refused, no shared
// version or suite. A connection closed before its first byte, as load
// balancers' health checks do, is no failure worth auditing.
func (s *Server) handshake(conn net.Conn, log *slog.Logger) bool {
	hs, ok := conn.(interface{ HandshakeContext(context.Context) error })
	if !ok {
		return true
	}
	ctx, cancel := context.WithTimeout(context.Background(), orDefault(s.ARTIMTimeout, ul.DefaultARTIM))
	defer cancel()
	err := hs.HandshakeContext(ctx)
	switch {
	case err == nil:
		return true
	case errors.Is(err, io.EOF), errors.Is(err, net.ErrClosed):
		// A health check, or Shutdown closing connections that have
		// not associated yet.
		log.Debug("connection closed before or during the TLS handshake", "err", err)
	default:
		log.Warn("TLS handshake failed", "err", err)
		s.observe(AssociationEvent{RemoteAddr: conn.RemoteAddr(), Reason: "TLS handshake: " + err.Error()})
	}
	return false
}

// hostOf returns the IP address of a peer, or its whole address when it
// has none (a net.Pipe). A wrapped address, such as a TLS listener's,
// counts by the IP address its String gives.
func hostOf(addr net.Addr) string {
	if ta, ok := addr.(*net.TCPAddr); ok {
		return ta.IP.String()
	}
	if ap, err := netip.ParseAddrPort(addr.String()); err == nil {
		return ap.Addr().Unmap().String()
	}
	return addr.String()
}

func (s *Server) maxNegotiating() int {
	if s.MaxNegotiatingPerHost == 0 {
		return defaultMaxNegotiatingPerHost
	}
	return s.MaxNegotiatingPerHost
}

// admit counts a connection that has yet to negotiate an association, if
// its host has room for one more and the server is running.
func (s *Server) admit(conn net.Conn, host string) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.phase != running {
		return false
	}
	if limit := s.maxNegotiating(); limit > 0 && s.perHost[host] >= limit {
		return false
	}
	if s.negotiating == nil {
		s.negotiating, s.perHost = map[net.Conn]string{}, map[string]int{}
	}
	s.negotiating[conn] = host
	s.perHost[host]++
	return true
}

// admitted uncounts a connection once its association is negotiated, or
// not.
func (s *Server) admitted(conn net.Conn, host string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	delete(s.negotiating, conn)
	if s.perHost[host]--; s.perHost[host] <= 0 {
		delete(s.perHost, host)
	}
}

// reserve takes a place for an association about to be accepted, if
// MaxAssociations and the server's state allow one; release gives it back.
func (s *Server) reserve() (pdu.RejectReason, bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	switch {
	case s.phase != running:
		return pdu.RejectReasonTemporaryCongestion, false
	case s.MaxAssociations > 0 && s.established >= s.MaxAssociations:
		return pdu.RejectReasonLocalLimitExceeded, false
	}
	s.established++
	return 0, true
}

func (s *Server) release() {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.established--
}

// track registers an established association, bringing it to the phase
// Shutdown has reached.
func (s *Server) track(a *Association) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.assocs == nil {
		s.assocs = map[*Association]struct{}{}
	}
	s.assocs[a] = struct{}{}
	switch s.phase {
	case stopping:
		go a.stop()
	case terminated:
		go a.Abort()
	}
}

func (s *Server) untrack(a *Association) {
	s.mu.Lock()
	defer s.mu.Unlock()
	delete(s.assocs, a)
}

// stop is what Shutdown does to an association when its time is nearly
// up: it asks the operations in progress to stop (a C-MOVE or C-GET after
// its sub-operation in flight, with a final response), then aborts the
// association once they have answered.
func (a *Association) stop() {
	a.stopOps(ErrServerClosed)
	a.ops.Wait()
	a.ul.Abort(fmt.Errorf("%w: the server is shutting down", ErrAborted))
}

// enter moves the server to a phase of its shutdown and returns the
// associations to act on. It closes the listeners and the connections
// not yet associated.
func (s *Server) enter(p shutdownPhase) []*Association {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.phase = max(s.phase, p)
	for l := range s.listeners {
		l.Close()
	}
	for c := range s.negotiating {
		c.Close()
	}
	out := make([]*Association, 0, len(s.assocs))
	for a := range s.assocs {
		out = append(out, a)
	}
	return out
}

// shutdownLead is the most of Shutdown's time that is kept for the
// operations it stops to send their final responses.
const shutdownLead = time.Second

// Shutdown stops accepting associations and waits for those in progress to
// be released by their peers. When ctx is about to end — a quarter of the
// time left before its deadline, at most a second, or when it ends if it
// has no deadline — it asks every operation still running to stop: C-FIND
// and C-STORE handlers see their context cancelled with cause
// ErrServerClosed, a C-MOVE or C-GET finishes its sub-operation in flight
// and sends its final response with the counts. Each association is
// aborted as soon as its operations have answered, and any left when ctx
// ends is aborted then. Shutdown returns nil if every association ended on
// its own, an error wrapping context.DeadlineExceeded (or ctx's error)
// otherwise. It returns once every handler has returned.
func (s *Server) Shutdown(ctx context.Context) error {
	s.enter(draining)
	done := make(chan struct{})
	go func() {
		s.conns.Wait()
		close(done)
	}()
	var stopAt <-chan time.Time
	if dl, ok := ctx.Deadline(); ok {
		left := time.Until(dl)
		t := time.NewTimer(left - min(left/4, shutdownLead))
		defer t.Stop()
		stopAt = t.C
	}
	select {
	case <-done:
		return nil
	case <-stopAt:
	case <-ctx.Done():
	}
	for _, a := range s.enter(stopping) {
		go a.stop()
	}
	select {
	case <-done:
	case <-ctx.Done():
		for _, a := range s.enter(terminated) {
			a.ul.Abort(fmt.Errorf("%w: the server shut down", ErrAborted))
		}
		<-done
	}
	if err := ctx.Err(); err != nil {
		return err
	}
	return fmt.Errorf("dimse: associations stopped at the shutdown deadline: %w", context.DeadlineExceeded)
}

// Close stops accepting and aborts every association at once.
func (s *Server) Close() error {
	for _, a := range s.enter(terminated) {
		a.Abort()
	}
	s.conns.Wait()
	return nil
}

// agreement is what negotiation settled, for the association to come.
type agreement struct {
	contexts                       map[byte]*PresentationContext
	peerSCP                        map[string]bool
	peerImplClass, peerImplVersion string
	maxSend                        uint32
}

func (ag *agreement) apply(a *Association) {
	a.contexts, a.peerSCP = ag.contexts, ag.peerSCP
	a.peerImplClass, a.peerImplVersion = ag.peerImplClass, ag.peerImplVersion
	a.maxSend = ag.maxSend
}

// negotiate answers an A-ASSOCIATE-RQ with an A-ASSOCIATE-AC, or with an
// A-ASSOCIATE-RJ when the association as a whole is unacceptable. An
// unsupported abstract syntax rejects its presentation context only. An
// accepted association holds a place (reserve) until it ends.
func (s *Server) negotiate(rq *pdu.AssociateRQ, addr net.Addr, log *slog.Logger) (*pdu.AssociateAC, *pdu.AssociateRJ, *agreement) {
	reject := func(res pdu.RejectResult, src pdu.RejectSource, why pdu.RejectReason) (*pdu.AssociateAC, *pdu.AssociateRJ, *agreement) {
		return nil, &pdu.AssociateRJ{Result: res, Source: src, Reason: why}, nil
	}
	switch {
	case rq.ProtocolVersion&pdu.ProtocolVersion == 0:
		return reject(pdu.RejectedPermanent, pdu.RejectSourceACSE, pdu.RejectReasonProtocolVersionNotSupported)
	case rq.ApplicationContext != pdu.ApplicationContextName:
		return reject(pdu.RejectedPermanent, pdu.RejectSourceServiceUser, pdu.RejectReasonApplicationContextNameNotSupported)
	case s.AETitle != "" && rq.CalledAETitle != s.AETitle:
		return reject(pdu.RejectedPermanent, pdu.RejectSourceServiceUser, pdu.RejectReasonCalledAETitleNotRecognized)
	case s.AllowCaller != nil && !s.AllowCaller(rq.CallingAETitle, addr):
		return reject(pdu.RejectedPermanent, pdu.RejectSourceServiceUser, pdu.RejectReasonCallingAETitleNotRecognized)
	}
	if why, ok := s.reserve(); !ok {
		return reject(pdu.RejectedTransient, pdu.RejectSourcePresentation, why)
	}

	ag := &agreement{contexts: map[byte]*PresentationContext{}, peerSCP: map[string]bool{}}
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
			ag.peerSCP[rs.SOPClassUID] = true
		}
	}
	retrieval := retrievalContexts(rq.PresentationContexts, ag.peerSCP)
	for _, p := range rq.PresentationContexts {
		if p.ID%2 == 0 {
			// Some peers (dcm4che's stgcmtscu) number their contexts
			// 2, 4...: harmless, so answered by the same ID.
			log.Warn("presentation context ID is even, which PS3.8 9.3.2.2 forbids; accepted and answered by that ID",
				"context_id", p.ID, "abstract_syntax", p.AbstractSyntax, "peer_implementation", rq.UserInfo.ImplementationClassUID+" "+rq.UserInfo.ImplementationVersionName)
		}
		pc := &PresentationContext{ID: p.ID, AbstractSyntax: p.AbstractSyntax}
		if retrieval[p.ID] {
			pc.TransferSyntax, pc.Result = firstUncompressed(p)
		} else {
			pc.TransferSyntax, pc.Result = s.choose(p)
		}
		ag.contexts[p.ID] = pc
		ac.PresentationContexts = append(ac.PresentationContexts, pdu.PresentationContextAC{
			ID: p.ID, Result: pdu.ContextResult(pc.Result), TransferSyntax: pc.TransferSyntax,
		})
	}
	ag.peerImplClass = rq.UserInfo.ImplementationClassUID
	ag.peerImplVersion = rq.UserInfo.ImplementationVersionName
	ag.maxSend = sendLimit(rq.UserInfo.MaxLength)
	return ac, nil, ag
}

func (s *Server) maxPDU() uint32 {
	if s.MaxPDULength == 0 {
		return defaultMaxPDULength
	}
	return max(s.MaxPDULength, minPDULength)
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

// convertible are the syntaxes into which the archive converts every
// stored syntax it can decode: the uncompressed ones.
var convertible = []string{uid.ExplicitVRLittleEndian, uid.ImplicitVRLittleEndian, uid.ExplicitVRBigEndian, uid.DeflatedExplicitVRLittleEndian}

// retrievalContexts picks, for each storage SOP class whose C-STOREs the
// requestor receives (it takes the SCP role: a C-GET's sub-operations),
// one presentation context to accept in an uncompressed syntax, so that
// every instance of the class can be delivered, converted if need be,
// whatever syntax it is stored in. A requestor proposing several syntaxes
// in one context, compressed first (getscu +xs), would otherwise have the
// compressed one chosen and lose the instances that cannot be converted
// to it. The context is the first whose first proposed syntax is
// uncompressed, else the first proposing one at all; the class's other
// contexts are answered as usual, so that instances stored in the
// syntaxes they accept are sent as stored.
func retrievalContexts(proposed []pdu.PresentationContextRQ, peerSCP map[string]bool) map[byte]bool {
	out := map[byte]bool{}
	first := map[string]byte{} // class -> context whose first syntax is uncompressed
	some := map[string]byte{}  // class -> first context proposing one at all
	for _, p := range proposed {
		if !uid.IsStorage(p.AbstractSyntax) || !peerSCP[p.AbstractSyntax] {
			continue
		}
		for i, ts := range p.TransferSyntaxes {
			if !slices.Contains(convertible, strings.TrimRight(ts, "\x00 ")) {
				continue
			}
			if _, ok := first[p.AbstractSyntax]; !ok && i == 0 {
				first[p.AbstractSyntax] = p.ID
			}
			if _, ok := some[p.AbstractSyntax]; !ok {
				some[p.AbstractSyntax] = p.ID
			}
			break
		}
	}
	for class, id := range some {
		if f, ok := first[class]; ok {
			id = f
		}
		out[id] = true
	}
	return out
}

// firstUncompressed accepts the first uncompressed syntax a context
// proposes.
func firstUncompressed(p pdu.PresentationContextRQ) (string, byte) {
	for _, ts := range p.TransferSyntaxes {
		if ts = strings.TrimRight(ts, "\x00 "); slices.Contains(convertible, ts) {
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

// request starts the operation a request asks for. It runs in the reader
// goroutine, so the operation itself runs in a goroutine of its own; the
// returned sink, if any, receives the request's data set.
func (s *Server) request(a *Association, cmd *cmdset.Command, pc *PresentationContext) (sink, error) {
	if cmd.MessageID == nil {
		return nil, ul.ProtocolErrorf(pdu.AbortReasonInvalidPDUParameterValue, "%v without a Message ID", cmd.CommandField)
	}
	id := *cmd.MessageID
	if err := cmd.Check(); err != nil {
		// A UID or AE title too long: the rest of the request is
		// understood, so it gets a failure status, not an abort.
		var ve *cmdset.ValueError
		errors.As(err, &ve)
		a.log.Warn("request with an invalid value refused", "command", cmd.CommandField, "err", err)
		return s.refuse(a, pc, cmd, Errorf(StatusCannotUnderstand, "%v: value of %d bytes, more than %d", ve.Tag, ve.Length, ve.Limit)), nil
	}
	switch cmd.CommandField {
	case cmdset.CEchoRQ:
		if s.Echo == nil || pc.AbstractSyntax != uid.Verification {
			break
		}
		a.startOp(id, nil, func(ctx context.Context) {
			err := s.Echo.Echo(ctx, a)
			s.respond(a, pc, cmd, cmdset.CEchoRSP, err, StatusProcessingFailure)
		})
		return nil, nil

	case cmdset.CStoreRQ:
		if s.Store == nil || !uid.IsStorage(pc.AbstractSyntax) {
			break
		}
		if !cmd.HasDataSet() {
			return nil, ul.ProtocolErrorf(pdu.AbortReasonInvalidPDUParameterValue, "C-STORE-RQ without a data set")
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
		a.startOp(id, nil, func(ctx context.Context) {
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
	return s.refuse(a, pc, cmd, Errorf(StatusUnrecognizedOperation, "%v not supported for %s", cmd.CommandField, uid.Name(pc.AbstractSyntax))), nil
}

// refuse answers a request with the failure err once its data set, if it
// has one, has been read off the association: a peer expects the
// response after the whole request. The returned sink, if any, receives
// and drops the data set.
func (s *Server) refuse(a *Association, pc *PresentationContext, cmd *cmdset.Command, err error) sink {
	var sk sink
	arrived := make(chan struct{})
	if cmd.HasDataSet() {
		sk = drainSink{arrived}
	} else {
		close(arrived)
	}
	a.startOp(*cmd.MessageID, nil, func(ctx context.Context) {
		select {
		case <-arrived:
		case <-ctx.Done():
			return
		}
		s.respond(a, pc, cmd, cmd.CommandField|0x8000, err, StatusProcessingFailure)
	})
	return sk
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
	if rsp.Check() != nil {
		// A UID too long to send back, which the request was refused
		// for: the responses' Affected UIDs are optional (U(=), PS3.7
		// 9.3), so they are left out.
		rsp.AffectedSOPClassUID, rsp.AffectedSOPInstanceUID = "", ""
	}
	v := uint16(st)
	rsp.Status = &v
	if comment != "" && !st.IsSuccess() {
		rsp.ErrorComment = truncate(comment, 64)
	}
	s.observeOperation(a, rq.CommandField, st, a.finishOp(*rq.MessageID))
	if st.IsFailure() {
		a.log.Warn("request failed", "command", rq.CommandField, "sop_instance_uid", rq.AffectedSOPInstanceUID, "status", st, "comment", comment)
	}
	ctx, cancel := context.WithTimeout(context.Background(), orDefault(s.WriteTimeout, 60*time.Second))
	defer cancel()
	if err := a.sendMessage(ctx, pc.ID, rsp, nil); err != nil {
		a.log.Warn("response not sent", "command", field, "err", err)
	}
}

// observeOperation tells ObserveOperation of an operation that started
// at started (zero if unknown) and ends with st.
func (s *Server) observeOperation(a *Association, request cmdset.Field, st Status, started time.Time) {
	if s.ObserveOperation == nil {
		return
	}
	var d time.Duration
	if !started.IsZero() {
		d = time.Since(started)
	}
	s.ObserveOperation(OperationEvent{CallingAE: a.callingAE, Command: strings.TrimSuffix(request.String(), "-RQ"), Status: st, Duration: d})
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
