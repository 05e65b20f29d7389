// Package keylock provides a mutex per key, for work that must not run
// twice at once for the same key (one SOP Instance UID, one object key)
// but may run side by side for different ones.
package keylock
