// Package sqlindex is the index (see package index) in a SQL database:
// the engine that index/sqlite and index/postgres open. The SQL is shared
// by the dialects (see Dialect); the package index/indextest holds the
// conformance suite every backend passes.
//
// Each level of the information model is one table, holding the
// attributes of that level as the latest instance received carried them,
// and the aggregates the query models define (numbers of related
// studies, series and instances, Modalities in Study, SOP Classes in
// Study), kept exact in the transaction that changes an instance.
//
// Instances whose header names no Patient ID are filed under a patient
// of their own study. Attributes of a patient, study or series come from
// the header of the latest instance received of it, by
// Instance.ReceivedAt; an instance received earlier but indexed later
// does not overwrite them, so that reindexing old instances in any order
// gives the same result. The same rule decides the parent of a study or
// series when instances disagree: a study follows the patient of its
// latest instance, a series the study of its latest instance. Deleting
// the latest instance does not roll its attributes back. A patient,
// study or series left without instances is deleted.
//
// Puts are written by one committer per DB, several in a transaction
// when they wait at the same time (see committer); transactions open
// only once the archive has made an object durable and commits, so that
// no transaction waits on storage.
//
// Besides the index, the same database keeps the state of long-running
// work, so that any process on it can go on with that work: the
// forwarding queue (Outbox, outbox.go, for package route) and the state
// of migrations and imports (MigrationState, migrationstate.go, for
// package migrate). migrate.go and migrations/ are the schema's own
// migrations, applied in order as the database is opened.
package sqlindex
