package index

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"time"
)

// ErrClosed reports a put committed after its index was closed.
var ErrClosed = errors.New("index: closed")

// PutRequest asks for an instance to be recorded, replacing the record
// of any instance with the same SOP Instance UID, together with
// everything that must be recorded with it in the same transaction.
// Later features that record something per instance add their fields
// here (see the package documentation).
type PutRequest struct {
	// Instance is the record to write. Its three UIDs must not be
	// empty; UIDs longer than the 64 characters PS3.5 allows are
	// refused.
	Instance *Instance

	// Check, when not nil, decides inside the transaction whether the
	// put may go on, given the record the index holds under the same SOP
	// Instance UID (nil when there is none). The put is refused with
	// the error Check returns, wrapped, and nothing of it is written.
	// Check runs while the transaction holds its locks, possibly once
	// more when the transaction runs again after a conflict: it must
	// be quick and must not block.
	Check func(current *Instance) error

	// Forward lists the destinations the instance is to be forwarded
	// to (package route): each becomes a task of the forwarding queue,
	// written in the put's transaction.
	Forward []Forward

	// Untrash marks the put of an instance a restore brings back from
	// the trash, under the key it has there: the put takes it out of the
	// trash, and is refused, wrapping ErrNotFound, if the trash no longer
	// holds it (a purge has claimed it).
	Untrash bool

	// NHSNumber, when not empty, is a valid NHS number the instance
	// gives its patient (package nhs): patients of different issuers
	// with the same NHS number are linked, unless linked otherwise by
	// hand (see Person).
	NHSNumber string

	// Original, when not nil, says that Instance's object is a lossless
	// re-encoding of the original described (package recompress): the
	// index keeps it with the object's key, until a put names another.
	Original *Original
}

// Forward asks for an instance to be forwarded to a destination.
type Forward struct {
	Destination string
	// Due is the earliest time to send it.
	Due time.Time
	// Window is the daily window it is sent in (route.Window's text),
	// empty for any time.
	Window string
	// Priority is route.Priority's value.
	Priority int
}

// ChangeKind says what a put did.
type ChangeKind int

const (
	// Created is the first record of an instance.
	Created ChangeKind = iota + 1
	// Replaced is a new record of an instance the index held already.
	Replaced
	// Corrected is a record whose served attributes a correction
	// changed; its object is the same.
	Corrected
	// Deleted is a record removed from the index.
	Deleted
)

var changeKinds = [...]string{Created: "created", Replaced: "replaced", Corrected: "corrected", Deleted: "deleted"}

// String returns the kind's name in the change feed: "created",
// "replaced", "corrected" or "deleted".
func (k ChangeKind) String() string {
	if k > 0 && int(k) < len(changeKinds) {
		return changeKinds[k]
	}
	return "ChangeKind(" + strconv.Itoa(int(k)) + ")"
}

// ParseChangeKind reads a ChangeKind from its name.
func ParseChangeKind(s string) (ChangeKind, error) {
	for k, name := range changeKinds {
		if k > 0 && name == s {
			return ChangeKind(k), nil
		}
	}
	return 0, fmt.Errorf("index: change kind %q is not created, replaced, corrected or deleted", s)
}

// Change is what a committed put did.
type Change struct {
	Kind ChangeKind
	// Instance is the record written, Header and Metadata as given.
	Instance *Instance
	// Previous is the record it replaced (Header and Metadata nil), nil
	// for Created.
	Previous *Instance
}

// Pending is a put checked and prepared, but not yet written: its
// transaction opens only when Commit is called, so the work of preparing
// it may overlap with making the object durable while holding nothing
// any other writer waits for. One of Commit or Rollback must be called,
// once.
type Pending interface {
	// Commit writes the put and returns once it is durable, or with an
	// error and nothing of it written. Commits waiting at the same time
	// may share a transaction; each reports its own outcome. ctx bounds
	// the wait for a transaction to take the put; once one has taken
	// it, Commit waits for its end, which the index bounds itself, so
	// that the outcome is always known.
	//
	// An error from the put's Check comes back wrapped, for errors.Is.
	// When the database fails at the moment of committing, the outcome
	// may be unknown to the index: a caller that must know reads the
	// record back.
	Commit(ctx context.Context) (*Change, error)
	// Rollback abandons the put; after Commit it does nothing.
	Rollback()
}
