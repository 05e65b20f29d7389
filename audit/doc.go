// Package audit keeps pacsd's audit trail: DICOM audit messages (PS3.15
// A.5) of what happened to whose images, written to an append-only,
// hash-chained journal and optionally sent to a syslog collector.
//
// A Message is built with the constructor of its event, such as
// InstancesTransferred or Query, and encodes itself as the XML of the
// DICOM Audit Message Schema (PS3.15 A.5.1).
//
// A Journal writes messages one record a line to files under a directory.
// Each record carries the SHA-256 of the record before it, so Verify
// detects a record edited or removed anywhere but at the end; the end is
// covered by a HeadStore, kept elsewhere (the index), that remembers the
// latest record's hash. Journal.Log only queues a message: records are
// encoded, written and synced by the journal's own goroutine, in batches,
// so that auditing costs the C-STORE path a channel send. A record is
// durable once the batch holding it has been synced, a few milliseconds
// after Log; a crash can lose the last unsynced batch, and only that: the
// head is saved after the sync, so the head store never names a record
// that a crash could take away.
//
// A Trail is what the front doors and the archive call, one method per
// event (Stored, Queried, Sent, AssociationRefused…): it builds the
// message with pacsd as one participant and the caller (an Actor) as the
// other, and hands it to the journal.
//
// Search reads the journal, while a Journal writes it, for records about a
// patient, a study or a user since a time.
//
// Syslog sends each message as RFC 5424 over TLS with the octet-counting
// framing of RFC 5425, reconnecting as needed, from a bounded queue: a
// collector that is down delays nothing and, after the queue fills, loses
// the oldest messages, which the journal still holds.
//
// The XML is written with encoding/xml from structs that follow the
// schema's element order; no library models the DICOM schema itself.
package audit
