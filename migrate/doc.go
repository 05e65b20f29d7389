// Package migrate moves the studies of another archive into pacsd and
// proves, study by study, that they arrived: `pacsd migrate` pulls them
// from a legacy PACS over DIMSE (C-FIND, then C-GET or C-MOVE) or
// DICOMweb (QIDO-RS, then WADO-RS), and `pacsd import` reads them from
// files. Both keep a row per study in a State, so that a migration that
// stops, crashes or moves to another machine on the same database goes
// on where it was, and a verified study is never fetched again.
//
// # Reading order
//
//   - state.go: the rows a migration keeps (Migration, Study, File) and
//     the State interface that keeps them. migratetest holds an in-memory
//     State and the conformance suite every State passes; the index
//     keeps the real one in SQL.
//   - source.go: what a migration needs of a source (Source), with the
//     two kinds of source in dimse.go and web.go.
//   - discover.go: finding every study of a source whose C-FIND or QIDO-RS
//     answers are capped, by splitting the query until no part is.
//   - migrator.go: the run: discovery, then each study retrieved,
//     verified and recorded, a few at a time, inside a time window and a
//     bandwidth cap (package route's Window and Limiter, which forwarding
//     uses alike), with progress (progress.go).
//   - receive.go: what a migration needs of pacsd's archive and index
//     (Archive, Index: small interfaces, so that the index may keep the
//     State without depending on the archive), how a retrieved instance
//     is kept, and how a conflict with what pacsd already holds is told
//     from a copy of it.
//   - importer.go: `pacsd import`, the same for files on disk.
//   - report.go: the status of a migration and the report of all of
//     them, as CSV or JSON.
//
// # States of a study
//
// A study is pending when discovered; done once a retrieval ended with
// every instance it was to bring reported stored; verified when pacsd
// holds each SOP Instance UID that an IMAGE-level query at the source
// lists for it (and, where the source gives its files' bytes, the same
// data set bytes); failed when instances are still missing after the
// last attempt, with the list; conflict when the study cannot be taken in
// as it is without deciding something a person must decide: an instance
// already in pacsd with other content, or patient attributes that
// disagree. Conflicts are reported, never resolved by the program.
//
// # Why it is written here
//
// No Go library migrates DICOM archives. The pieces that exist elsewhere
// (dcmtk's movescu, dcm4che's tooling) neither split capped queries nor
// keep the per-study state a migration of years needs; the protocols
// themselves come from pacsd's own dimse package and net/http.
package migrate
