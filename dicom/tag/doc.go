// Package tag names DICOM data elements (PS3.5 §7.1) and holds the data
// dictionary of PS3.6, generated from pydicom's copy of it.
package tag
