// Package index holds what pacsd knows about the instances it archives,
// apart from any database: the record of an instance (Instance), a query
// of the Query/Retrieve information model (Query), the patients, studies
// and series queries return, the request to record an instance
// (PutRequest) and what recording it changed (Change), and the errors
// every index reports.
//
// The index follows the DICOM information model: a patient has studies, a
// study has series, a series has instances. A patient is identified by
// Patient ID and Issuer of Patient ID together: the same Patient ID from
// two issuers names two patients, and an empty issuer is a value of its
// own. Attributes of a patient, study or series come from the header of
// the latest instance received of it, by Instance.ReceivedAt, so that
// indexing instances in any order gives the same result.
//
// The engine that keeps all this in SQL, on SQLite or PostgreSQL, is
// index/sqlindex; index/sqlite and index/postgres open it, and
// index/indextest is the conformance suite both pass. Packages that use
// the index (archive, the front doors) import this package only and
// declare the few methods they call as interfaces of their own, so that
// their tests can run on fakes.
//
// # Recording an instance
//
// An instance is recorded in two steps, so that the work that needs no
// database overlaps with the slow part of storing the object: the
// engine's PreparePut checks a PutRequest and computes everything the
// rows will hold, without opening a transaction; Pending.Commit, called
// once the object is durable, writes it. Commits that wait at the same
// time share one transaction (group commit), and each Commit returns once
// its own rows are durable.
//
// Everything that must be true together with an instance's row is written
// in the transaction of its Commit: the patient, study and series rows
// and their aggregates, the metadata document, and what features yet to
// come record per instance (a routing task, an event of the change feed).
// Such a feature adds a field to PutRequest, a numbered migration, and a
// step to the engine's put; the two-step shape does not change.
//
// # Deletion, rejection and retention
//
// A Removal (a deletion, an expiry) or a Rejection (an IHE IOCM rejection
// note) takes instances out of every query and retrieval in one
// transaction, into a trash that keeps their records (Trashed) until
// their objects are purged; the engine logs each as an Event. A put of a
// rejected SOP Instance UID is refused with ErrRejected, and a restore
// re-puts an instance with PutRequest.Untrash.
package index
