// Package api serves pacsd's JSON API under /api: what a person or a
// script does to a running pacsd besides DICOMweb, such as sending a
// study on or watching the forwarding queue. docs/api.md is its
// contract; each resource has a file of its own here (queue.go,
// studies.go).
//
// Handlers return errors; one place (errorHandler) turns them into the
// HTTP status and the {"error": "…"} body the contract describes.
package api
