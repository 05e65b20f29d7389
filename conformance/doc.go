// Package conformance writes pacsd's DICOM Conformance Statement in the
// structure of the PS3.2 template (Annex A): overview, implementation
// model, AE specifications with their presentation contexts and
// SOP-specific conformance, status codes, network interfaces and
// configuration, web services, character sets and security.
//
// What the statement says comes from a Facts value. Defaults builds one
// from the tables the code itself runs on — the Storage SOP classes and
// transfer syntaxes of dicom/uid, the status codes of dimse, the matching
// keys the index accepts (found by asking index.Query which keys it can
// match), pacsd's implementation identity in dicom — plus the facts no
// table holds yet (which status each service answers with and why), which
// it states beside the constants they refer to. `pacsd conformance`
// overrides the configuration-dependent facts (AE title, ports, limits)
// with the running configuration, so that the statement describes the
// installation it is run on.
//
// Write renders the statement as Markdown or as a self-contained HTML
// page. Both renderers walk one document model, so the two formats never
// say different things; no Markdown-to-HTML conversion is involved.
package conformance
