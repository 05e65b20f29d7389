// Package cmdset encodes and decodes DIMSE command sets (PS3.7 §6.3, §9,
// §10, Annex E): the group 0000 elements that head every DIMSE message and
// say what the message is.
//
// A command set travels in the command PDVs of P-DATA-TF PDUs, always in
// the Implicit VR Little Endian transfer syntax, whatever was negotiated for
// the data set. The association layer concatenates the command fragments of
// a message, up to MaxLength bytes, and calls Decode on them:
//
//	c, err := cmdset.Decode(fragments)
//	if err != nil { ... } // the peer broke PS3.7: abort the association
//	switch c.CommandField {
//	case cmdset.CEchoRQ:
//		rsp := &cmdset.Command{
//			CommandField:              cmdset.CEchoRSP,
//			MessageIDBeingRespondedTo: c.MessageID,
//			AffectedSOPClassUID:       c.AffectedSOPClassUID,
//			CommandDataSetType:        cmdset.NoDataSet,
//			Status:                    new(uint16(0)),
//		}
//		b, err := rsp.AppendTo(buf[:0])
//		...
//	}
//
// Command holds one typed field per command element that C-ECHO, C-STORE,
// C-FIND, C-GET, C-MOVE, C-CANCEL, N-EVENT-REPORT and N-ACTION use. Numeric
// elements whose absence means something are pointers, nil when absent;
// string and tag-list elements are absent when empty. AppendTo writes the
// elements that are present, in ascending tag order after the Command Group
// Length, and no others: the caller decides what a message carries.
//
// Decode is tolerant where real peers need it and strict where safety needs
// it. It accepts a missing Command Group Length (and ignores its value,
// since the caller already knows where the command set ends), skips group
// 0000 elements it does not know, such as retired ones, and strips the NUL or
// space padding of strings. It refuses elements outside group 0000,
// undefined lengths, lengths that overrun the buffer, fixed-size values of
// the wrong size, UIDs and AE titles longer than PS3.5 allows, a known
// element given twice, and a command set without a Command Field or a
// Command Data Set Type.
package cmdset

import (
	"errors"
	"fmt"

	"github.com/pacsd/pacsd/dicom/tag"
)

// MaxLength is the longest command set Decode accepts. The longest real
// command sets are a few hundred bytes; this bounds what a peer can make
// the association layer buffer before Decode is even called.
const MaxLength = 64 << 10

var (
	// ErrMalformed is wrapped by every error of Decode.
	ErrMalformed = errors.New("cmdset: malformed command set")

	// ErrInvalid is wrapped by the errors of AppendTo.
	ErrInvalid = errors.New("cmdset: invalid value")
)

// Field is the value of the Command Field (0000,0100): which DIMSE
// operation a message requests or answers.
type Field uint16

// Command Field values of PS3.7 Annex E.
const (
	CStoreRQ        Field = 0x0001
	CStoreRSP       Field = 0x8001
	CGetRQ          Field = 0x0010
	CGetRSP         Field = 0x8010
	CFindRQ         Field = 0x0020
	CFindRSP        Field = 0x8020
	CMoveRQ         Field = 0x0021
	CMoveRSP        Field = 0x8021
	CEchoRQ         Field = 0x0030
	CEchoRSP        Field = 0x8030
	NEventReportRQ  Field = 0x0100
	NEventReportRSP Field = 0x8100
	NGetRQ          Field = 0x0110
	NGetRSP         Field = 0x8110
	NSetRQ          Field = 0x0120
	NSetRSP         Field = 0x8120
	NActionRQ       Field = 0x0130
	NActionRSP      Field = 0x8130
	NCreateRQ       Field = 0x0140
	NCreateRSP      Field = 0x8140
	NDeleteRQ       Field = 0x0150
	NDeleteRSP      Field = 0x8150
	CCancelRQ       Field = 0x0FFF
)

// IsResponse reports whether f is the command field of a response, which
// PS3.7 marks with the high bit.
func (f Field) IsResponse() bool { return f&0x8000 != 0 }

// String returns the PS3.7 name of f, such as "C-STORE-RQ".
func (f Field) String() string {
	switch f {
	case CStoreRQ:
		return "C-STORE-RQ"
	case CStoreRSP:
		return "C-STORE-RSP"
	case CGetRQ:
		return "C-GET-RQ"
	case CGetRSP:
		return "C-GET-RSP"
	case CFindRQ:
		return "C-FIND-RQ"
	case CFindRSP:
		return "C-FIND-RSP"
	case CMoveRQ:
		return "C-MOVE-RQ"
	case CMoveRSP:
		return "C-MOVE-RSP"
	case CEchoRQ:
		return "C-ECHO-RQ"
	case CEchoRSP:
		return "C-ECHO-RSP"
	case NEventReportRQ:
		return "N-EVENT-REPORT-RQ"
	case NEventReportRSP:
		return "N-EVENT-REPORT-RSP"
	case NGetRQ:
		return "N-GET-RQ"
	case NGetRSP:
		return "N-GET-RSP"
	case NSetRQ:
		return "N-SET-RQ"
	case NSetRSP:
		return "N-SET-RSP"
	case NActionRQ:
		return "N-ACTION-RQ"
	case NActionRSP:
		return "N-ACTION-RSP"
	case NCreateRQ:
		return "N-CREATE-RQ"
	case NCreateRSP:
		return "N-CREATE-RSP"
	case NDeleteRQ:
		return "N-DELETE-RQ"
	case NDeleteRSP:
		return "N-DELETE-RSP"
	case CCancelRQ:
		return "C-CANCEL-RQ"
	}
	return fmt.Sprintf("command field 0x%04X", uint16(f))
}

// Priority is the value of Priority (0000,0700).
type Priority uint16

// Priorities of PS3.7 Annex E.
const (
	PriorityMedium Priority = 0x0000
	PriorityHigh   Priority = 0x0001
	PriorityLow    Priority = 0x0002
)

// Values of Command Data Set Type (0000,0800).
const (
	// NoDataSet says that no data set follows the command set. Any other
	// value says that one does.
	NoDataSet uint16 = 0x0101
	// DataSetPresent is the value this side sends when a data set
	// follows. PS3.7 only requires it to differ from NoDataSet; this is
	// the value common implementations send.
	DataSetPresent uint16 = 0x0001
)

// Command is a decoded command set. See the package documentation for how
// presence is represented.
type Command struct {
	CommandField Field // (0000,0100) US, always present

	MessageID                 *uint16 // (0000,0110) US, in requests
	MessageIDBeingRespondedTo *uint16 // (0000,0120) US, in responses and C-CANCEL-RQ

	AffectedSOPClassUID     string // (0000,0002) UI
	RequestedSOPClassUID    string // (0000,0003) UI
	AffectedSOPInstanceUID  string // (0000,1000) UI
	RequestedSOPInstanceUID string // (0000,1001) UI

	Priority           *Priority // (0000,0700) US
	CommandDataSetType uint16    // (0000,0800) US, always present; see NoDataSet

	Status           *uint16   // (0000,0900) US, in responses
	OffendingElement []tag.Tag // (0000,0901) AT, 1-n
	ErrorComment     string    // (0000,0902) LO
	ErrorID          *uint16   // (0000,0903) US

	MoveDestination                      string  // (0000,0600) AE
	MoveOriginatorApplicationEntityTitle string  // (0000,1030) AE
	MoveOriginatorMessageID              *uint16 // (0000,1031) US

	NumberOfRemainingSuboperations *uint16 // (0000,1020) US
	NumberOfCompletedSuboperations *uint16 // (0000,1021) US
	NumberOfFailedSuboperations    *uint16 // (0000,1022) US
	NumberOfWarningSuboperations   *uint16 // (0000,1023) US

	EventTypeID             *uint16   // (0000,1002) US
	ActionTypeID            *uint16   // (0000,1008) US
	AttributeIdentifierList []tag.Tag // (0000,1005) AT, 1-n
}

// HasDataSet reports whether a data set follows the command set.
func (c *Command) HasDataSet() bool { return c.CommandDataSetType != NoDataSet }

// Maximum value lengths of the string VRs (PS3.5 §6.2).
const (
	maxUI = 64
	maxAE = 16
)
