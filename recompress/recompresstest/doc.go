// Package recompresstest is the conformance suite of the state archive
// compression keeps in the index (recompress.Index), which every index
// engine passes.
package recompresstest
