package ul

import "fmt"

// The DICOM Upper Layer state machine (PS3.8 §9.2, Table 9-10), as data:
// the states, the events, the actions, and the table that maps a state and
// an event to an action and the next state. Conn looks up every event here
// and performs the action it names, so that the table is the behaviour; a
// test compares it with a transcription of the standard's grid and walks
// every cell.

type state uint8

const (
	sta1  state = iota + 1 // Idle
	sta2                   // Transport connection open (awaiting A-ASSOCIATE-RQ PDU)
	sta3                   // Awaiting local A-ASSOCIATE response primitive
	sta4                   // Awaiting transport connection opening to complete
	sta5                   // Awaiting A-ASSOCIATE-AC or A-ASSOCIATE-RJ PDU
	sta6                   // Association established and ready for data transfer
	sta7                   // Awaiting A-RELEASE-RP PDU
	sta8                   // Awaiting local A-RELEASE response primitive
	sta9                   // Release collision requestor side: awaiting A-RELEASE response primitive
	sta10                  // Release collision acceptor side: awaiting A-RELEASE-RP PDU
	sta11                  // Release collision requestor side: awaiting A-RELEASE-RP PDU
	sta12                  // Release collision acceptor side: awaiting A-RELEASE response primitive
	sta13                  // Awaiting transport connection close indication
)

func (s state) String() string { return fmt.Sprintf("Sta%d", int(s)) }

type event uint8

const (
	evt1  event = iota + 1 // A-ASSOCIATE request (local user)
	evt2                   // Transport connect confirmation
	evt3                   // A-ASSOCIATE-AC PDU received
	evt4                   // A-ASSOCIATE-RJ PDU received
	evt5                   // Transport connection indication
	evt6                   // A-ASSOCIATE-RQ PDU received
	evt7                   // A-ASSOCIATE response primitive (accept)
	evt8                   // A-ASSOCIATE response primitive (reject)
	evt9                   // P-DATA request primitive
	evt10                  // P-DATA-TF PDU received
	evt11                  // A-RELEASE request primitive
	evt12                  // A-RELEASE-RQ PDU received
	evt13                  // A-RELEASE-RP PDU received
	evt14                  // A-RELEASE response primitive
	evt15                  // A-ABORT request primitive
	evt16                  // A-ABORT PDU received
	evt17                  // Transport connection closed indication
	evt18                  // ARTIM timer expired
	evt19                  // Unrecognized or invalid PDU received
)

func (e event) String() string { return fmt.Sprintf("Evt%d", int(e)) }

type action uint8

const (
	noAction action = iota
	ae1             // Issue TRANSPORT CONNECT request
	ae2             // Send A-ASSOCIATE-RQ PDU
	ae3             // Issue A-ASSOCIATE confirmation (accept)
	ae4             // Issue A-ASSOCIATE confirmation (reject), close transport
	ae5             // Issue transport connection response, start ARTIM
	ae6             // Stop ARTIM; if acceptable issue A-ASSOCIATE indication, else send A-ASSOCIATE-RJ and start ARTIM
	ae7             // Send A-ASSOCIATE-AC PDU
	ae8             // Send A-ASSOCIATE-RJ PDU, start ARTIM
	dt1             // Send P-DATA-TF PDU
	dt2             // Issue P-DATA indication
	ar1             // Send A-RELEASE-RQ PDU
	ar2             // Issue A-RELEASE indication
	ar3             // Issue A-RELEASE confirmation, close transport
	ar4             // Send A-RELEASE-RP PDU, start ARTIM
	ar5             // Stop ARTIM
	ar6             // Issue P-DATA indication
	ar7             // Send P-DATA-TF PDU
	ar8             // Issue A-RELEASE indication (release collision)
	ar9             // Send A-RELEASE-RP PDU
	ar10            // Issue A-RELEASE confirmation
	aa1             // Send A-ABORT PDU (service-user source), start or restart ARTIM
	aa2             // Stop ARTIM if running, close transport
	aa3             // Issue A-ABORT or A-P-ABORT indication, close transport
	aa4             // Issue A-P-ABORT indication
	aa5             // Stop ARTIM
	aa6             // Ignore PDU
	aa7             // Send A-ABORT PDU
	aa8             // Send A-ABORT PDU (service-provider source), issue A-P-ABORT indication, start ARTIM
)

var actionNames = [...]string{
	noAction: "none",
	ae1:      "AE-1", ae2: "AE-2", ae3: "AE-3", ae4: "AE-4", ae5: "AE-5", ae6: "AE-6", ae7: "AE-7", ae8: "AE-8",
	dt1: "DT-1", dt2: "DT-2",
	ar1: "AR-1", ar2: "AR-2", ar3: "AR-3", ar4: "AR-4", ar5: "AR-5", ar6: "AR-6", ar7: "AR-7", ar8: "AR-8", ar9: "AR-9", ar10: "AR-10",
	aa1: "AA-1", aa2: "AA-2", aa3: "AA-3", aa4: "AA-4", aa5: "AA-5", aa6: "AA-6", aa7: "AA-7", aa8: "AA-8",
}

func (a action) String() string { return actionNames[a] }

// transition is one cell of Table 9-10 with the next state that Tables 9-6
// to 9-9 give its action. Two actions decide their next state themselves
// (AE-6 on the acceptability of the request, AR-8 on whether this side
// requested the association); their cells name both.
type transition struct {
	action action
	next   state
	alt    state // the other next state of AE-6 (reject) and AR-8 (acceptor)
}

// table is PS3.8 Table 9-10. A missing cell is an event that cannot occur
// in that state. Every PDU event has a cell in every state in which the
// connection is read, so a missing cell is met only by a local primitive
// out of turn (a P-DATA request after release, say), which fails.
var table = map[state]map[event]transition{
	sta1: {
		evt1: {ae1, sta4, 0},
		evt5: {ae5, sta2, 0},
	},
	sta2: {
		evt3:  {aa1, sta13, 0},
		evt4:  {aa1, sta13, 0},
		evt6:  {ae6, sta3, sta13},
		evt10: {aa1, sta13, 0},
		evt12: {aa1, sta13, 0},
		evt13: {aa1, sta13, 0},
		evt16: {aa2, sta1, 0},
		evt17: {aa5, sta1, 0},
		evt18: {aa2, sta1, 0},
		evt19: {aa1, sta13, 0},
	},
	sta3: {
		evt3:  {aa8, sta13, 0},
		evt4:  {aa8, sta13, 0},
		evt6:  {aa8, sta13, 0},
		evt7:  {ae7, sta6, 0},
		evt8:  {ae8, sta13, 0},
		evt10: {aa8, sta13, 0},
		evt12: {aa8, sta13, 0},
		evt13: {aa8, sta13, 0},
		evt15: {aa1, sta13, 0},
		evt16: {aa3, sta1, 0},
		evt17: {aa4, sta1, 0},
		evt19: {aa8, sta13, 0},
	},
	sta4: {
		evt2:  {ae2, sta5, 0},
		evt15: {aa2, sta1, 0},
		evt17: {aa4, sta1, 0},
	},
	sta5: {
		evt3:  {ae3, sta6, 0},
		evt4:  {ae4, sta1, 0},
		evt6:  {aa8, sta13, 0},
		evt10: {aa8, sta13, 0},
		evt12: {aa8, sta13, 0},
		evt13: {aa8, sta13, 0},
		evt15: {aa1, sta13, 0},
		evt16: {aa3, sta1, 0},
		evt17: {aa4, sta1, 0},
		evt19: {aa8, sta13, 0},
	},
	sta6: {
		evt3:  {aa8, sta13, 0},
		evt4:  {aa8, sta13, 0},
		evt6:  {aa8, sta13, 0},
		evt9:  {dt1, sta6, 0},
		evt10: {dt2, sta6, 0},
		evt11: {ar1, sta7, 0},
		evt12: {ar2, sta8, 0},
		evt13: {aa8, sta13, 0},
		evt15: {aa1, sta13, 0},
		evt16: {aa3, sta1, 0},
		evt17: {aa4, sta1, 0},
		evt19: {aa8, sta13, 0},
	},
	sta7: {
		evt3:  {aa8, sta13, 0},
		evt4:  {aa8, sta13, 0},
		evt6:  {aa8, sta13, 0},
		evt10: {ar6, sta7, 0},
		evt12: {ar8, sta9, sta10},
		evt13: {ar3, sta1, 0},
		evt15: {aa1, sta13, 0},
		evt16: {aa3, sta1, 0},
		evt17: {aa4, sta1, 0},
		evt19: {aa8, sta13, 0},
	},
	sta8: {
		evt3:  {aa8, sta13, 0},
		evt4:  {aa8, sta13, 0},
		evt6:  {aa8, sta13, 0},
		evt9:  {ar7, sta8, 0},
		evt10: {aa8, sta13, 0},
		evt12: {aa8, sta13, 0},
		evt13: {aa8, sta13, 0},
		evt14: {ar4, sta13, 0},
		evt15: {aa1, sta13, 0},
		evt16: {aa3, sta1, 0},
		evt17: {aa4, sta1, 0},
		evt19: {aa8, sta13, 0},
	},
	sta9: {
		evt3:  {aa8, sta13, 0},
		evt4:  {aa8, sta13, 0},
		evt6:  {aa8, sta13, 0},
		evt10: {aa8, sta13, 0},
		evt12: {aa8, sta13, 0},
		evt13: {aa8, sta13, 0},
		evt14: {ar9, sta11, 0},
		evt15: {aa1, sta13, 0},
		evt16: {aa3, sta1, 0},
		evt17: {aa4, sta1, 0},
		evt19: {aa8, sta13, 0},
	},
	sta10: {
		evt3:  {aa8, sta13, 0},
		evt4:  {aa8, sta13, 0},
		evt6:  {aa8, sta13, 0},
		evt10: {aa8, sta13, 0},
		evt12: {aa8, sta13, 0},
		evt13: {ar10, sta12, 0},
		evt15: {aa1, sta13, 0},
		evt16: {aa3, sta1, 0},
		evt17: {aa4, sta1, 0},
		evt19: {aa8, sta13, 0},
	},
	sta11: {
		evt3:  {aa8, sta13, 0},
		evt4:  {aa8, sta13, 0},
		evt6:  {aa8, sta13, 0},
		evt10: {aa8, sta13, 0},
		evt12: {aa8, sta13, 0},
		evt13: {ar3, sta1, 0},
		evt15: {aa1, sta13, 0},
		evt16: {aa3, sta1, 0},
		evt17: {aa4, sta1, 0},
		evt19: {aa8, sta13, 0},
	},
	sta12: {
		evt3:  {aa8, sta13, 0},
		evt4:  {aa8, sta13, 0},
		evt6:  {aa8, sta13, 0},
		evt10: {aa8, sta13, 0},
		evt12: {aa8, sta13, 0},
		evt13: {aa8, sta13, 0},
		evt14: {ar4, sta13, 0},
		evt15: {aa1, sta13, 0},
		evt16: {aa3, sta1, 0},
		evt17: {aa4, sta1, 0},
		evt19: {aa8, sta13, 0},
	},
	sta13: {
		evt3:  {aa6, sta13, 0},
		evt4:  {aa6, sta13, 0},
		evt6:  {aa7, sta13, 0},
		evt10: {aa6, sta13, 0},
		evt12: {aa6, sta13, 0},
		evt13: {aa6, sta13, 0},
		evt16: {aa2, sta1, 0},
		evt17: {ar5, sta1, 0},
		evt18: {aa2, sta1, 0},
		evt19: {aa7, sta13, 0},
	},
}
