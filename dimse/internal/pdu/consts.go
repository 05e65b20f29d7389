package pdu

import "fmt"

// ProtocolVersion is the only protocol version PS3.8 §9.3.2 defines (bit 0
// set). The association layer should reject a request whose
// ProtocolVersion lacks this bit with RejectReasonProtocolVersionNotSupported.
const ProtocolVersion uint16 = 0x0001

// ApplicationContextName is the DICOM Application Context Name (PS3.7
// Annex A.2.1), the only one DICOM defines.
const ApplicationContextName = "1.2.840.10008.3.1.1.1"

// maxUIDLength is the longest UID PS3.5 §9.1 allows, and the longest this
// package reads or writes in any item.
const maxUIDLength = 64

// MaxPresentationContexts is the most presentation contexts an
// A-ASSOCIATE-RQ or -AC can carry: the IDs are the odd numbers 1 to 255.
const MaxPresentationContexts = 128

// MaxTransferSyntaxes is the most transfer syntaxes this package accepts
// in one presentation context of an A-ASSOCIATE-RQ. PS3.8 sets no limit;
// this one is well above the number of transfer syntaxes PS3.5 defines and
// keeps a hostile request from turning a short item into a large slice.
const MaxTransferSyntaxes = 256

// RejectResult is the Result field of an A-ASSOCIATE-RJ (PS3.8 §9.3.4).
type RejectResult byte

// Results of an A-ASSOCIATE-RJ.
const (
	RejectedPermanent RejectResult = 1 // rejected-permanent
	RejectedTransient RejectResult = 2 // rejected-transient
)

// RejectSource is the Source field of an A-ASSOCIATE-RJ (PS3.8 §9.3.4).
type RejectSource byte

// Sources of an A-ASSOCIATE-RJ.
const (
	RejectSourceServiceUser  RejectSource = 1 // DICOM UL service-user
	RejectSourceACSE         RejectSource = 2 // DICOM UL service-provider (ACSE related function)
	RejectSourcePresentation RejectSource = 3 // DICOM UL service-provider (Presentation related function)
	rejectSourceMin                       = RejectSourceServiceUser
	rejectSourceMax                       = RejectSourcePresentation
)

// RejectReason is the Reason/Diag. field of an A-ASSOCIATE-RJ (PS3.8
// §9.3.4). Its meaning depends on the source, so several constants share a
// value.
type RejectReason byte

// Reasons of an A-ASSOCIATE-RJ, by source. Other values are reserved.
const (
	// With RejectSourceServiceUser or RejectSourceACSE.
	RejectReasonNoReasonGiven RejectReason = 1 // no-reason-given

	// With RejectSourceServiceUser.
	RejectReasonApplicationContextNameNotSupported RejectReason = 2 // application-context-name-not-supported
	RejectReasonCallingAETitleNotRecognized        RejectReason = 3 // calling-AE-title-not-recognized
	RejectReasonCalledAETitleNotRecognized         RejectReason = 7 // called-AE-title-not-recognized

	// With RejectSourceACSE.
	RejectReasonProtocolVersionNotSupported RejectReason = 2 // protocol-version-not-supported

	// With RejectSourcePresentation.
	RejectReasonTemporaryCongestion RejectReason = 1 // temporary-congestion
	RejectReasonLocalLimitExceeded  RejectReason = 2 // local-limit-exceeded
)

// AbortSource is the Source field of an A-ABORT (PS3.8 §9.3.8).
type AbortSource byte

// Sources of an A-ABORT. The value 1 is reserved.
const (
	AbortSourceServiceUser     AbortSource = 0 // DICOM UL service-user (initiated abort)
	AbortSourceServiceProvider AbortSource = 2 // DICOM UL service-provider (initiated abort)
)

// AbortReason is the Reason/Diag. field of an A-ABORT (PS3.8 §9.3.8). It is
// significant only when the source is AbortSourceServiceProvider.
type AbortReason byte

// Reasons of an A-ABORT. The value 3 is reserved.
const (
	AbortReasonNotSpecified             AbortReason = 0 // reason-not-specified
	AbortReasonUnrecognizedPDU          AbortReason = 1 // unrecognized-PDU
	AbortReasonUnexpectedPDU            AbortReason = 2 // unexpected-PDU
	AbortReasonUnrecognizedPDUParameter AbortReason = 4 // unrecognized-PDU-parameter
	AbortReasonUnexpectedPDUParameter   AbortReason = 5 // unexpected-PDU-parameter
	AbortReasonInvalidPDUParameterValue AbortReason = 6 // invalid-PDU-parameter-value
)

// String returns the PS3.8 name of r.
func (r AbortReason) String() string {
	switch r {
	case AbortReasonNotSpecified:
		return "reason-not-specified"
	case AbortReasonUnrecognizedPDU:
		return "unrecognized-PDU"
	case AbortReasonUnexpectedPDU:
		return "unexpected-PDU"
	case AbortReasonUnrecognizedPDUParameter:
		return "unrecognized-PDU-parameter"
	case AbortReasonUnexpectedPDUParameter:
		return "unexpected-PDU-parameter"
	case AbortReasonInvalidPDUParameterValue:
		return "invalid-PDU-parameter-value"
	}
	return fmt.Sprintf("reason %d", byte(r))
}

// ContextResult is the Result/Reason field of a presentation context in an
// A-ASSOCIATE-AC (PS3.8 §9.3.3.2).
type ContextResult byte

// Results of a presentation context.
const (
	ResultAcceptance                   ContextResult = 0 // acceptance
	ResultUserRejection                ContextResult = 1 // user-rejection
	ResultProviderRejection            ContextResult = 2 // no-reason (provider rejection)
	ResultAbstractSyntaxNotSupported   ContextResult = 3 // abstract-syntax-not-supported (provider rejection)
	ResultTransferSyntaxesNotSupported ContextResult = 4 // transfer-syntaxes-not-supported (provider rejection)
	resultMax                                        = ResultTransferSyntaxesNotSupported
)

// String returns the PS3.8 name of r.
func (r ContextResult) String() string {
	switch r {
	case ResultAcceptance:
		return "acceptance"
	case ResultUserRejection:
		return "user-rejection"
	case ResultProviderRejection:
		return "no-reason (provider rejection)"
	case ResultAbstractSyntaxNotSupported:
		return "abstract-syntax-not-supported (provider rejection)"
	case ResultTransferSyntaxesNotSupported:
		return "transfer-syntaxes-not-supported (provider rejection)"
	}
	return fmt.Sprintf("result %d", byte(r))
}

// Item types of PS3.8 §9.3 and PS3.7 Annex D.3.3.
const (
	itemApplicationContext   = 0x10
	itemPresentationRQ       = 0x20
	itemPresentationAC       = 0x21
	itemAbstractSyntax       = 0x30
	itemTransferSyntax       = 0x40
	itemUserInfo             = 0x50
	subMaxLength             = 0x51
	subImplementationClass   = 0x52
	subAsyncOpsWindow        = 0x53
	subRoleSelection         = 0x54
	subImplementationVersion = 0x55
	subExtendedNegotiation   = 0x56
	subCommonExtNegotiation  = 0x57
	subUserIdentityRQ        = 0x58
	subUserIdentityAC        = 0x59
)

// knownItem reports whether t is an item type PS3.8 or PS3.7 defines, so
// that an item of that type in the wrong place is unexpected rather than
// unrecognized.
func knownItem(t byte) bool {
	switch t {
	case itemApplicationContext, itemPresentationRQ, itemPresentationAC, itemAbstractSyntax,
		itemTransferSyntax, itemUserInfo:
		return true
	}
	return t >= subMaxLength && t <= subUserIdentityAC
}
