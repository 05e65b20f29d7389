package indextest

import (
	"cmp"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/pacsd/pacsd/dicom"
	"github.com/pacsd/pacsd/dicom/tag"
	"github.com/pacsd/pacsd/index"
)

// header builds a header from tag/value pairs. A value is a string (one
// value; backslashes split it into several, as DICOM encodes them), a
// []string, or a []*dicom.Dataset (the items of a sequence). The VR is
// the dictionary's.
func header(t testing.TB, pairs ...any) *dicom.Dataset {
	t.Helper()
	if len(pairs)%2 != 0 {
		t.Fatalf("header needs tag/value pairs, got %d values", len(pairs))
	}
	ds := &dicom.Dataset{}
	for i := 0; i < len(pairs); i += 2 {
		tg, ok := pairs[i].(tag.Tag)
		if !ok {
			t.Fatalf("header: %v is not a tag", pairs[i])
		}
		info, ok := tag.Lookup(tg)
		if !ok {
			t.Fatalf("header: tag %s is not in the dictionary", tg)
		}
		e := dicom.Element{Tag: tg, VR: info.VR}
		switch v := pairs[i+1].(type) {
		case string:
			e.Values = values(tg, v)
		case []string:
			e.Values = v
		case []*dicom.Dataset:
			e.VR = "SQ"
			e.Items = v
		default:
			t.Fatalf("header: value of %s is a %T", tg, v)
		}
		ds.Elements = append(ds.Elements, e)
	}
	slices.SortStableFunc(ds.Elements, func(a, b dicom.Element) int { return cmp.Compare(a.Tag, b.Tag) })
	return ds
}

// with returns a copy of h with the elements of more added or replaced.
func with(t testing.TB, h *dicom.Dataset, more ...any) *dicom.Dataset {
	t.Helper()
	add := header(t, more...)
	out := &dicom.Dataset{}
	for _, e := range h.Elements {
		if _, ok := add.Find(e.Tag); !ok {
			out.Elements = append(out.Elements, e)
		}
	}
	out.Elements = append(out.Elements, add.Elements...)
	slices.SortStableFunc(out.Elements, func(a, b dicom.Element) int { return cmp.Compare(a.Tag, b.Tag) })
	return out
}

// base is the ReceivedAt of the suite's instances: nanoseconds and a zone
// other than UTC, which the index must bring to microseconds in UTC.
var base = time.Date(2024, 5, 1, 12, 0, 0, 123456789, time.FixedZone("CET", 3600))

// instance returns an instance record with storage facts derived from its
// UIDs, as the archive would make it.
func instance(sop, series, study string, recv time.Time, h *dicom.Dataset) *index.Instance {
	return &index.Instance{
		SOPInstanceUID:    sop,
		SOPClassUID:       ctImage,
		SeriesInstanceUID: series,
		StudyInstanceUID:  study,
		Key:               study + "/" + series + "/" + sop + ".dcm",
		Size:              int64(1000 + len(sop)),
		SHA256:            strings.Repeat("ab", 32),
		TransferSyntaxUID: "1.2.840.10008.1.2.1",
		CallingAE:         "MODALITY",
		CalledAE:          "PACSD",
		Source:            "dimse",
		ReceivedAt:        recv,
		Header:            h,
	}
}

// patientHeader returns a header that names a patient.
func patientHeader(t testing.TB, id, issuer, name string) *dicom.Dataset {
	t.Helper()
	return header(t, tag.PatientID, id, tag.IssuerOfPatientID, issuer, tag.PatientName, name)
}

const (
	ctImage = "1.2.840.10008.5.1.4.1.1.2"
	mrImage = "1.2.840.10008.5.1.4.1.1.4"
	prState = "1.2.840.10008.5.1.4.1.1.11.1"
	srBasic = "1.2.840.10008.5.1.4.1.1.88.11"
)

// values splits v into the values of an attribute with tag t: at the
// backslashes, unless its VR holds a single value in which a backslash is
// an ordinary character.
func values(t tag.Tag, v string) []string {
	if info, _ := tag.Lookup(t); slices.Contains([]string{"LT", "ST", "UT", "UR"}, info.VR) {
		return []string{v}
	}
	return strings.Split(v, `\`)
}
