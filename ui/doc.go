// Package ui is pacsd's web interface for radiology staff: a study list
// searched through QIDO-RS, a study page with a quick viewer drawn from
// WADO-RS rendered frames, and pages for the forwarding queue, migrations,
// the audit trail and the system. It is plain HTML, CSS and JavaScript
// modules embedded in the binary; README.md says why there is no framework
// and no build step.
//
// Handler serves the page at / and its assets under /ui/, with a strict
// Content-Security-Policy (nothing from another origin, no inline script
// or style) and caching headers: the assets live under a path that
// carries a hash of their content, so they are cached for a year, while
// the page itself is revalidated on every load.
//
// The page learns everything it needs about the server from one request,
// GET /api/ui-config, which ConfigHandler answers: the DICOMweb root, the
// OHIF viewer's URL, how to sign in (the OpenID Connect issuer and client),
// and what the signed-in principal may do. docs/api.md is the contract of
// that document and of the /api endpoints the pages call; a page whose
// endpoint answers 404 says that the server does not offer it.
package ui
