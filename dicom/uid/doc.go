// Package uid validates DICOM unique identifiers (PS3.5 §9) and holds the
// UID registry of PS3.6 Annex A, generated from pydicom's copy of it plus a
// supplement for newer entries.
package uid
