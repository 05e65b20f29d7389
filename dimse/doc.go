// Package dimse is pacsd's DICOM network stack: the DIMSE services of PS3.7
// (C-ECHO, C-STORE, C-FIND, C-MOVE, C-GET, C-CANCEL and the Storage
// Commitment N-ACTION and N-EVENT-REPORT) over the DICOM Upper Layer of
// PS3.8, as server (SCP) and as client (SCU). It is written here rather than
// taken from a library because no Go library streams data sets, bounds what
// a peer can make it hold, and takes a context on every blocking call; the
// PDU codec, the command codec and the state machine are small and tested
// against the standard and against dcmtk byte for byte.
//
// # Reading order
//
// Four layers, each a package, from the wire up:
//
//   - internal/pdu encodes and decodes PDUs (PS3.8 §9.3): a pure codec
//     over io.Reader, golden bytes from dcmtk in its tests.
//   - internal/ul is the Upper Layer of one association (PS3.8 §9): a
//     ul.Conn reads and writes PDUs, runs the state machine of Table 9-10
//     (fsm.go, checked against a transcription of the standard's grid) and
//     the ARTIM timer, and indicates P-DATA and release to the layer above.
//     It knows nothing of commands.
//   - internal/cmdset encodes and decodes command sets (PS3.7 §9, §10).
//   - this package is the message and operation layer (PS3.7): an
//     Association puts commands and data sets into P-DATA fragments and
//     back together (message.go), runs the operations a peer requests with
//     the handlers of a Server or Dialer (server.go, qr.go, commit.go), and
//     sends this side's requests (client.go, qr_client.go).
//
// # Serving
//
// A Server accepts associations and negotiates what its handlers serve.
// Each service is a small interface, ctx first: EchoHandler, StoreHandler
// (the data set streams in as an io.Reader, never a []byte), FindHandler
// (matches as an iter.Seq2), MoveHandler and GetHandler (sub-operations,
// progress and C-CANCEL), CommitHandler. A handler chooses its response's
// status by returning a *StatusError; Status says what a code means.
//
//	s := &dimse.Server{AETitle: "PACSD", Echo: svc, Store: svc, Find: qr, Move: qr, Get: qr}
//	go s.Serve(listener)
//	...
//	s.Shutdown(ctx) // drains, then stops operations and aborts at ctx's end
//
// ServeConn serves one connection accepted elsewhere (TLS, net.Pipe in
// tests). A connection with a HandshakeContext method, as *tls.Conn has,
// completes its TLS handshake within the ARTIM time before the
// association request is read. AllowCaller decides who may associate,
// AssociationContext what the handlers' contexts carry of the caller (the
// principal, for instance), and Observe hears of every association
// accepted or rejected and every failed handshake, for the audit trail;
// ObserveEnd hears of each accepted association's end and
// ObserveOperation of each final response, for metrics. Limits protect
// the server from its peers: MaxPDULength bounds
// what one PDU makes it hold, ReadTimeout a message that stops arriving,
// IdleTimeout an association that says nothing, MaxAssociations the
// associations negotiated, MaxNegotiatingPerHost the connections that
// have not yet asked for one.
//
// # Requesting
//
// A Dialer requests associations; the Association it returns sends
// requests: Echo, Store, Find, Move, Get, RequestCommit, ReportCommit, then
// Release. Errors wrap ErrAborted, ErrRejected, ErrReleased or
// ErrNoContext, or are a *StatusError carrying the peer's status.
//
// # Conformance notes
//
// Operations are performed one at a time per association (the
// asynchronous operations window is answered 1/1). An even presentation
// context ID, which PS3.8 forbids but some peers send, is accepted with a
// warning in the log and answered by that ID. A request carrying a UID or
// AE title longer than PS3.5 allows gets a failure status (0xC000); only a
// PDU or command set that cannot be framed or decoded aborts the
// association.
package dimse
