package indextest

import (
	"bytes"
	"errors"
	"testing"

	"github.com/pacsd/pacsd/index"
)

// testMetadata checks the document kept with an instance: written with
// it, replaced or dropped with it, deleted with it.
func testMetadata(t *testing.T, db *index.DB) {
	h := patientHeader(t, "P", "", "Doe^Jane")
	a := instance("1.2.3.1", "1.2.3.100", "1.2.3", base, h)
	a.Metadata = []byte(`{"00080018":{"vr":"UI","Value":["1.2.3.1"]}}`)
	b := instance("1.2.3.2", "1.2.3.100", "1.2.3", base, h)
	put(t, db, a)
	put(t, db, b)
	check := func(sop string, want []byte) {
		t.Helper()
		got, err := db.Metadata(t.Context(), sop)
		switch {
		case want == nil && !errors.Is(err, index.ErrNotFound):
			t.Errorf("Metadata(%s) = %q, %v; want ErrNotFound", sop, got, err)
		case want != nil && (err != nil || !bytes.Equal(got, want)):
			t.Errorf("Metadata(%s) = %q, %v; want %q", sop, got, err, want)
		}
	}
	check(a.SOPInstanceUID, a.Metadata)
	check(b.SOPInstanceUID, nil)
	check("9.9.9", nil)
	if in, err := db.Instance(t.Context(), a.SOPInstanceUID); err != nil || in.Metadata != nil {
		t.Errorf("Instance carries Metadata %q (%v); it is read with Metadata only", in.Metadata, err)
	}

	// A replacement brings its own document, or none.
	a2 := *a
	a2.Metadata = []byte(`{"replaced":true}`)
	put(t, db, &a2)
	check(a.SOPInstanceUID, a2.Metadata)
	a3 := *a
	a3.Metadata = nil
	put(t, db, &a3)
	check(a.SOPInstanceUID, nil)

	b.Metadata = bytes.Repeat([]byte("x"), 1<<20) // a large series' worth
	put(t, db, b)
	check(b.SOPInstanceUID, b.Metadata)
	if err := db.Delete(t.Context(), b.SOPInstanceUID); err != nil {
		t.Fatal(err)
	}
	check(b.SOPInstanceUID, nil)
}
