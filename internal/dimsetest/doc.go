// Package dimsetest tests pacsd's DIMSE services with a third DICOM stack
// as a real peer, beside dcmtk: the npm library dcmjs-dimse, run by node.
// It drives C-ECHO, C-STORE, C-FIND, C-MOVE and C-GET against the pacsd
// program, and C-CANCEL of C-FIND, C-MOVE and C-GET, the last two while a
// sub-operation is in flight (PS3.4 C.4.2.3.1 and C.4.3.3.1).
//
// The package holds only tests. Beside them is a small node project
// (package.json, package-lock.json and scripts/): the script drives the
// client and a destination SCP and prints what it saw as JSON; the Go
// test, which starts pacsd and knows the instances it generated, judges
// it. `make test` installs the node project with `npm ci`
// (scripts/install-test-deps at the repository root); without it the
// tests skip, or fail under CI=true, as every test of a real peer does.
package dimsetest
