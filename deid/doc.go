// Package deid de-identifies DICOM instances by the Basic Application
// Level Confidentiality Profile of PS3.15 Annex E, with the Retain
// Longitudinal Temporal Information Modified Dates and Clean Descriptors
// options: what routes with "deidentify": "basic", pacsd export
// --deidentify basic and WADO-RS for research-only principals send.
//
// The profile's actions come from Table E.1-1 of the standard's own
// text: internal/gen extracts it from the DocBook source of PS3.15 that
// NEMA publishes (edition 2025e) into internal/gen/table-e1-1.txt, and
// generates zprofile.go from that. Rewrite
// streams an instance: the header before Pixel Data is read into memory,
// de-identified attribute by attribute and written again; Pixel Data is
// copied byte for byte as it arrives. Header de-identifies a header
// already in memory.
//
// Replacements are consistent within a project key: a UID becomes a UID
// under 2.25 derived from the original by HMAC-SHA256 under the key, a
// patient ID a pseudonym derived the same way, and a patient's dates all
// move back by the same whole number of days, so intervals between
// studies survive. Nothing can be reversed without the key and the
// originals; the replacements are told to a MappingStore so that an
// admin can re-identify.
//
// Pixel data is not cleaned: an instance whose Burned In Annotation
// (0028,0301) is YES is refused with ErrBurnedIn unless the caller allows
// it. An instance without that attribute is taken to have none.
//
// Finding where Pixel Data starts uses dicom's reader only: a place where
// the Pixel Data tag's bytes occur is the element when the bytes before
// it are a complete data set by dicom.Scanner, which rules out the same
// bytes inside a value or an icon image's sequence.
package deid
