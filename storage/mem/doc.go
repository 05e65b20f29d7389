// Package mem is an in-memory storage.Store for the tests of packages that
// store objects. It passes the same conformance suite as the real
// backends, so a test written against it exercises the Store contract
// rather than a mock's script. Objects live in memory until deleted or
// until the Store is garbage, so it is no backend for production.
package mem
