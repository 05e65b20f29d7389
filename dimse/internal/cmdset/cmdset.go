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
