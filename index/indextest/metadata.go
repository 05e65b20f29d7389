package indextest

import (
	"github.com/pacsd/pacsd/index/sqlindex"

	"bytes"
	"errors"
	"testing"

	"github.com/pacsd/pacsd/index"
)

// testMetadata checks the document kept with an instance: written with
// it, replaced or dropped with it, deleted with it.
func testMetadata(t *testing.T, db *sqlindex.DB) {
	h := patientHeader(t, "P", "", "Doe^Jane")
	a := instance("1.2.3.1", "1.2.3.100", "1.2.3", base, h)
	a.Metadata = []byte(`{"00080018":{"vr":"UI","Value":["1.2.3.1"]}}`)
	b := instance("1.2.3.2", "1.2.3.100", "1.2.3", base, h)
	put(t, db, a)
	put(t, db, b)
	check := func(in *index.Instance, want []byte) {
		t.Helper()
		sop := in.SOPInstanceUID
		got, err := db.Metadata(t.Context(), in)
		switch {
		case want == nil && !errors.Is(err, index.ErrNotFound):
			t.Errorf("Metadata(%s) = %q, %v; want ErrNotFound", sop, got, err)
		case want != nil && (err != nil || !bytes.Equal(got, want)):
			t.Errorf("Metadata(%s) = %q, %v; want %q", sop, got, err, want)
		}
	}
	check(a, a.Metadata)
	check(b, nil)
	check(instance("9.9.9", "9.9", "9", base, nil), nil)
	if in, err := db.Instance(t.Context(), a.SOPInstanceUID); err != nil || in.Metadata != nil {
		t.Errorf("Instance carries Metadata %q (%v); it is read with Metadata only", in.Metadata, err)
	}

	// A replacement brings its own document, or none.
	a2 := *a
	a2.Metadata = []byte(`{"replaced":true}`)
	put(t, db, &a2)
	check(a, a2.Metadata)
	a3 := *a
	a3.Metadata = nil
	put(t, db, &a3)
	check(a, nil)

	// A document describes one object: asked for with the record of an
	// older version, it is not found, and never the new version's.
	a4 := *a
	a4.Key = "1.2.3/1.2.3.100/1.2.3.1_v2.dcm"
	a4.Metadata = []byte(`{"version":2}`)
	put(t, db, &a4)
	check(&a4, a4.Metadata)
	check(a, nil)

	b.Metadata = bytes.Repeat([]byte("x"), 1<<20) // a large series' worth
	put(t, db, b)
	check(b, b.Metadata)
	if err := db.Delete(t.Context(), b.SOPInstanceUID); err != nil {
		t.Fatal(err)
	}
	check(b, nil)
}
