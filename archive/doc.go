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
package archive
