// Package api serves pacsd's JSON API under /api: what a person or a
// script does to a running pacsd besides DICOMweb, such as sending a
// study on, watching the forwarding queue or following a migration.
// docs/api.md is its contract; each resource has a file of its own here
// (queue.go, studies.go, migrations.go).
//
// Handlers return errors; one place (Server.handle) turns them into the
// HTTP status and the {"error": "…"} body the contract describes.
package api
