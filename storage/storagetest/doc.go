// Package storagetest is the conformance suite for storage.Store. Every
// backend runs it from its own tests, so that all of them keep the one
// contract written on storage.Store, and so that the in-memory fake can
// stand in for the real backends in the tests of other packages.
//
// The suite relies only on the contract: it makes no assumption about
// clocks, paths or timing, so a backend on a remote service (S3) runs it
// unchanged.
package storagetest
