package dimse

import (
	"errors"
	"fmt"
)

// Status is a DIMSE status code (PS3.7 Annex C). Its class — success,
// warning, failure, cancel or pending — follows from its value.
type Status uint16

// Status codes pacsd sends and understands. PS3.4 defines the service
// specific ones (the Axxx, Bxxx and Cxxx ranges) per service class.
const (
	StatusSuccess Status = 0x0000

	StatusCancel Status = 0xFE00

	StatusPending        Status = 0xFF00
	StatusPendingWarning Status = 0xFF01 // C-FIND: optional keys not supported

	// Warnings of the Storage service (PS3.4 B.2.3).
	StatusCoercionOfDataElements Status = 0xB000
	StatusElementsDiscarded      Status = 0xB006
	StatusDataSetDoesNotMatch    Status = 0xB007
	// StatusSubOperationsWarning: a C-MOVE or C-GET completed with one
	// or more failed or warning sub-operations (PS3.4 C.4.2.1.4).
	StatusSubOperationsWarning Status = 0xB000

	// General failures (PS3.7 C.4).
	StatusProcessingFailure           Status = 0x0110
	StatusDuplicateSOPInstance        Status = 0x0111
	StatusNoSuchSOPClass              Status = 0x0118
	StatusSOPClassNotSupported        Status = 0x0122
	StatusNotAuthorized               Status = 0x0124
	StatusDuplicateInvocation         Status = 0x0210
	StatusUnrecognizedOperation       Status = 0x0211
	StatusMistypedArgument            Status = 0x0212
	StatusResourceLimitation          Status = 0x0213
	StatusUnableToProcess             Status = 0xC001
	StatusOutOfResources              Status = 0xA700
	StatusOutOfResourcesMatches       Status = 0xA701 // C-MOVE/C-GET: unable to calculate number of matches
	StatusOutOfResourcesSubOperations Status = 0xA702 // C-MOVE/C-GET: unable to perform sub-operations
	StatusMoveDestinationUnknown      Status = 0xA801
	StatusDataSetMismatch             Status = 0xA900 // C-STORE: data set does not match SOP Class; C-FIND: identifier does not match
	StatusCannotUnderstand            Status = 0xC000
	// N-ACTION and N-EVENT-REPORT (PS3.7 Annex C).
	StatusNoSuchActionType      Status = 0x0123
	StatusNoSuchEventType       Status = 0x0113
	StatusMissingAttribute      Status = 0x0120
	StatusInvalidArgumentValue  Status = 0x0115
	StatusNoSuchObjectInstance  Status = 0x0112
	StatusClassInstanceConflict Status = 0x0119
)

// IsSuccess reports whether s means success.
func (s Status) IsSuccess() bool { return s == StatusSuccess }

// IsPending reports whether s means that more responses follow.
func (s Status) IsPending() bool { return s == StatusPending || s == StatusPendingWarning }

// IsCancel reports whether s means the operation was cancelled.
func (s Status) IsCancel() bool { return s == StatusCancel }

// IsWarning reports whether s is a warning: the operation was performed,
// with a reservation (PS3.7 C.3).
func (s Status) IsWarning() bool {
	return s == 0x0001 || s&0xF000 == 0xB000 || s == 0x0107 || s == 0x0116
}

// IsFailure reports whether s means failure.
func (s Status) IsFailure() bool {
	return !s.IsSuccess() && !s.IsPending() && !s.IsCancel() && !s.IsWarning()
}

var statusNames = map[Status]string{
	StatusSuccess:                     "Success",
	StatusCancel:                      "Cancel",
	StatusPending:                     "Pending",
	StatusPendingWarning:              "Pending (optional keys not supported)",
	StatusCoercionOfDataElements:      "Warning: coercion of data elements (C-STORE), sub-operations failed (C-MOVE, C-GET)",
	StatusElementsDiscarded:           "Warning: elements discarded",
	StatusDataSetDoesNotMatch:         "Warning: data set does not match SOP Class",
	StatusProcessingFailure:           "Failure: processing failure",
	StatusDuplicateSOPInstance:        "Failure: duplicate SOP instance",
	StatusNoSuchSOPClass:              "Failure: no such SOP class",
	StatusSOPClassNotSupported:        "Failure: SOP class not supported",
	StatusNotAuthorized:               "Failure: not authorized",
	StatusDuplicateInvocation:         "Failure: duplicate invocation",
	StatusUnrecognizedOperation:       "Failure: unrecognized operation",
	StatusMistypedArgument:            "Failure: mistyped argument",
	StatusResourceLimitation:          "Failure: resource limitation",
	StatusUnableToProcess:             "Failure: unable to process",
	StatusOutOfResources:              "Refused: out of resources",
	StatusOutOfResourcesMatches:       "Refused: out of resources (number of matches)",
	StatusOutOfResourcesSubOperations: "Refused: out of resources (sub-operations)",
	StatusMoveDestinationUnknown:      "Refused: move destination unknown",
	StatusDataSetMismatch:             "Error: data set does not match SOP class",
	StatusCannotUnderstand:            "Error: cannot understand",
}

// String returns s in hexadecimal with its meaning, e.g.
// "0xA700 (Refused: out of resources)".
func (s Status) String() string {
	if name, ok := statusNames[s]; ok {
		return fmt.Sprintf("0x%04X (%s)", uint16(s), name)
	}
	class := "failure"
	switch {
	case s.IsWarning():
		class = "warning"
	case s&0xFF00 == 0xA700:
		class = "refused: out of resources"
	case s&0xF000 == 0xA000:
		class = "error"
	case s&0xF000 == 0xC000:
		class = "error: cannot understand"
	}
	return fmt.Sprintf("0x%04X (%s)", uint16(s), class)
}

// StatusError is an error that carries the DIMSE status to answer it with.
// Handlers return one to choose the status of their response; a warning
// status is returned the same way, since it is not plain success.
type StatusError struct {
	Status Status
	// Comment goes to the response's Error Comment (0000,0902); PS3.7
	// limits it to 64 characters, so it is cut there.
	Comment string
	Err     error
}

// Errorf returns a *StatusError with status s and a formatted comment.
func Errorf(s Status, format string, args ...any) *StatusError {
	err := fmt.Errorf(format, args...)
	return &StatusError{Status: s, Comment: err.Error(), Err: errors.Unwrap(err)}
}

func (e *StatusError) Error() string {
	if e.Comment == "" {
		return "dimse: status " + e.Status.String()
	}
	return "dimse: status " + e.Status.String() + ": " + e.Comment
}

func (e *StatusError) Unwrap() error { return e.Err }

// statusOf returns the status and comment to answer err with; fallback is
// the status of errors that carry none.
func statusOf(err error, fallback Status) (Status, string) {
	if err == nil {
		return StatusSuccess, ""
	}
	var se *StatusError
	if errors.As(err, &se) {
		return se.Status, se.Comment
	}
	return fallback, err.Error()
}
