// Package webtest tests pacsd's DICOMweb services with the JavaScript
// clients that web viewers are built on, as real peers: the npm library
// dicomweb-client run by node, and the OHIF viewer run by Debian's
// Chromium, headless, under Playwright.
//
// The package holds only tests. Beside them is a small node project
// (package.json, package-lock.json and scripts/): the scripts drive the
// clients and print what they saw as JSON, and the Go tests, which start
// pacsd and know the files they stored in it, judge the result. `make
// test` installs the node project with `npm ci` (scripts/install-test-deps
// at the repository root); without it the tests skip, or fail under
// CI=true, as every test of a real peer does.
//
// The sign-in tests (TestUISignIn, TestOHIFSignIn) run a real OpenID
// Connect provider, Ory Hydra, whose login and consent are answered by
// the test's own app (testpeer.HydraUser): pacsd's page and OHIF sign in
// with the Authorization Code flow and PKCE, as a user would, without a
// form to fill in.
//
// The browser tests save screenshots of what they showed in
// $PACSD_ARTIFACTS/TEST when PACSD_ARTIFACTS is set, and otherwise in
// the test's artifact directory, which `go test -artifacts` keeps; the
// test logs where they are.
package webtest
