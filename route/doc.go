// Package route forwards what the archive stores to other archives: the
// rules that decide where an instance goes, the queue of work that
// remembers it, and the workers that send it, over DIMSE (C-STORE) or
// DICOMweb (STOW-RS).
//
// # Reading order
//
//   - rule.go: a Route is a rule from the config file ("routes"): when an
//     instance matches (Go regular expressions over the calling and called
//     AE titles, the way it came in, and its attributes), send it to
//     these destinations, after a delay that gathers a study's instances
//     into one send, inside a daily window, at a priority. Rules compiles
//     them with the --forward destinations and Match decides, at store
//     time, which destinations an instance is for.
//   - queue.go: the Queue is the durable work list, one Task per study
//     and destination with the instances still to send. Entries are added
//     in the same transaction as the instance's index row (a
//     transactional outbox), so an instance acknowledged to its sender
//     always has its forwarding tasks. Workers Take a task with a lease,
//     Record progress, and Finish it. routetest holds an in-memory Queue
//     and the conformance suite every Queue passes.
//   - router.go: a Router runs the workers of each destination
//     (MaxConcurrency at a time), retries with exponential backoff, gives
//     a task up after MaxAttempts (a lease lost with its node counts as
//     one), and probes a failing destination with
//     one task at a time while the other destinations keep flowing.
//   - dimse.go and web.go: the Senders. A DIMSE destination is sent each
//     instance in its stored transfer syntax and the ones pacsd can
//     convert it to; a DICOMweb destination gets multipart/related
//     batches. Either can confirm what it received: Storage Commitment
//     (DIMSE) or a count of the study's instances (C-FIND or QIDO-RS).
//
// # Guarantees
//
// An instance is marked sent only once the destination has accepted it
// (and committed it, or counted it, when asked to). A worker that dies
// leaves its task leased; the lease runs out (Lease, 30 s by default)
// and another worker, on this node or another sharing the queue, takes
// it over; a node that restarts takes its own tasks back at once. So an
// instance may arrive twice at a destination when a node dies while
// sending it, and never zero times.
//
// Outcomes are per instance: a destination that refuses one instance for
// good (C-STORE status 0xA9xx or 0xCxxx; a STOW-RS FailureReason of
// those, or any but 0xA7xx, out of resources, in a 409 Conflict) has
// that instance marked failed with the reason, and the rest of the study
// goes on. The task then ends failed, so that someone looks,
// until it is retried or dropped.
//
// The rate limiter (MaxMbps) is golang.org/x/time/rate's token bucket.
// The STOW-RS client is written here: it is a multipart/related POST and
// the parse of its DICOM JSON answer, which no maintained Go library
// offers as a client.
package route
