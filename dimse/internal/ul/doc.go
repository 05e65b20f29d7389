// Package ul is the DICOM Upper Layer protocol for TCP/IP of one
// association (PS3.8 §9): a Conn reads and writes the PDUs that package pdu
// encodes, runs the state machine of PS3.8 Table 9-10 and the ARTIM timer,
// and indicates to its Handler what the layer above must act on: P-DATA
// received, a release asked for, a read deadline passed.
//
// The state machine is data (fsm.go): the states Sta1–Sta13, the events
// Evt1–Evt19, the actions AE-1…AA-8 with the standard's names, and the
// table from a state and an event to an action and the next state. Every
// event goes through fire, which performs the action the table names, so
// the table is the behaviour; its test compares it cell by cell with a
// transcription of the standard's grid and walks every cell.
//
// Accept serves the acceptor's side of association establishment, Request
// the requestor's; what to accept is the caller's decision. After that,
// Serve reads the association until it ends, and Send, Release,
// RespondRelease and Abort act on it from any goroutine. The package knows
// nothing of commands, data sets or services: that is package dimse.
package ul
