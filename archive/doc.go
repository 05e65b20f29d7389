// Package archive is the one service both front doors of pacsd call: DIMSE
// and DICOMweb hand it the data sets they receive, and it keeps them —
// the received bytes unchanged, behind File Meta Information of its own, in
// object storage — and records them in the index.
//
// The order of its work is what makes an acknowledgement safe: an instance
// is reported stored only once its object is durable and its index record
// is committed, and an index record never names an object that is not
// whole in storage. Every version of an instance is an object of its own
// (see Key), written beside the one it replaces; the record switches to it
// once it is durable, and the old version is deleted last. A crash or a
// failure at any step leaves at worst an orphan, which Verify reports and
// Repair removes.
//
// What to do with an instance already archived is the DuplicatePolicy's;
// a data set that ends before its structure does is refused before
// anything of it is stored. Reindex rebuilds the index from storage alone.
//
// What is decided after instances arrive — deletions and expiries
// (Trash), restores, corrections, undos, series moves and links by hand
// (Journal) — and the issuer a sender's instances are given at ingest
// are written to storage as records (see Record) under RecordPrefix,
// which no instance key can take, before the index is changed: storage
// write, then the index transaction that notes the record applied, then,
// if the index refused, the record deleted. A crash between the two
// leaves a record that ReplayRecords applies when pacsd serve starts,
// and Reindex replays every record once the objects are indexed, so
// that a rebuilt index shows what the lost one showed. The format is in
// journal.go and issuers.go.
package archive
