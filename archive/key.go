package archive

import (
	"crypto/rand"
	"encoding/hex"
	"path"
	"strings"
	"sync"
	"time"
)

// Keys. Every version of an instance the archive stores is an object of
// its own, named by a key a person or another program can browse, study
// by series by instance, with a version after the SOP Instance UID:
//
//	STUDY/SERIES/SOPINSTANCE_20260314T101502.123456Z_9f3a1c2e7d4b6a58.dcm
//
// The version is the moment the archive received the instance, in UTC to
// the microsecond, and 64 random bits that keep versions written at the
// same moment on two nodes apart. Versions of one instance sort by time
// as strings; the clock of one node never gives a version that sorts
// before one it gave earlier. An object, once written, is never written
// again: replacing an instance writes the new version beside the old
// one, records it in the index, and only then deletes the old one, so
// that the index always names bytes that exist and never changes under
// a reader.
//
// Archives written before versions existed hold objects under
// STUDY/SERIES/SOPINSTANCE.dcm, which read, verify and reindex as the
// oldest version of their instance.

// keySuffix ends every key.
const keySuffix = ".dcm"

// versionLayout is the time part of a version.
const versionLayout = "20060102T150405.000000Z"

// Key returns the key of a version of an instance. The UIDs must have
// passed uid.Valid; an empty version gives the key of archives written
// before versions existed.
func Key(study, series, instance, version string) string {
	if version == "" {
		return study + "/" + series + "/" + instance + keySuffix
	}
	return study + "/" + series + "/" + instance + "_" + version + keySuffix
}

// Location is what a key says of its object.
type Location struct {
	StudyInstanceUID  string
	SeriesInstanceUID string
	SOPInstanceUID    string
	// Version is empty for a key without one.
	Version string
}

// ParseKey reads a key Key made. It reports false for any other key.
func ParseKey(key string) (Location, bool) {
	dir, base := path.Split(key)
	study, series, ok := strings.Cut(strings.TrimSuffix(dir, "/"), "/")
	name, dcm := strings.CutSuffix(base, keySuffix)
	if !ok || !dcm || study == "" || series == "" || strings.Contains(series, "/") {
		return Location{}, false
	}
	sop, version, versioned := strings.Cut(name, "_")
	if sop == "" || strings.Trim(sop, "0123456789.") != "" {
		return Location{}, false
	}
	if versioned {
		if _, ok := versionTime(version); !ok {
			return Location{}, false
		}
	}
	return Location{StudyInstanceUID: study, SeriesInstanceUID: series, SOPInstanceUID: sop, Version: version}, true
}

// versionTime returns the moment a version was made.
func versionTime(version string) (time.Time, bool) {
	stamp, random, ok := strings.Cut(version, "_")
	if !ok || len(random) != 16 || strings.Trim(random, "0123456789abcdef") != "" {
		return time.Time{}, false
	}
	t, err := time.Parse(versionLayout, stamp)
	// Only the one spelling Format gives, so that versions compare as
	// the moments they name.
	return t, err == nil && t.Format(versionLayout) == stamp
}

// newer reports whether the object under key a holds a later version of
// its instance than the one under key b. A key without a version is older
// than any with one.
func newer(a, b string) bool {
	la, _ := ParseKey(a)
	lb, _ := ParseKey(b)
	return la.Version > lb.Version
}

// versions makes the versions of one archive: later ones sort after
// earlier ones whatever the clock does.
type versions struct {
	mu   sync.Mutex
	last time.Time
}

// next returns a new version for an instance received at t.
func (v *versions) next(t time.Time) string {
	t = t.UTC().Truncate(time.Microsecond)
	v.mu.Lock()
	if !t.After(v.last) {
		t = v.last.Add(time.Microsecond)
	}
	v.last = t
	v.mu.Unlock()
	var r [8]byte
	rand.Read(r[:]) // never fails (crypto/rand)
	return t.Format(versionLayout) + "_" + hex.EncodeToString(r[:])
}
