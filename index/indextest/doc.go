// Package indextest is the conformance suite for sqlindex.DB. Every backend
// (SQLite and PostgreSQL) runs it from its own tests, so that all
// of them keep the contract written on sqlindex.DB.
package indextest
