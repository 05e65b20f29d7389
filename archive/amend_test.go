package archive

import (
	"bytes"
	"context"
	"io"
	"testing"

	"github.com/pacsd/pacsd/dicom"
	"github.com/pacsd/pacsd/dicom/tag"
	"github.com/pacsd/pacsd/dicom/uid"
	"github.com/pacsd/pacsd/index"
)

// TestServedAmended checks that an instance given an issuer at ingest is
// served with it, and with Original Attributes Sequence saying so, while
// its object keeps the bytes received; and that an amendment that
// changes nothing serves the data set as stored.
func TestServedAmended(t *testing.T) {
	f := newFixture(t, Config{Issuers: IssuerPolicy{ByAE: map[string]string{"MODALITY": "RXH"}}})
	d := instance("1.2.3", "1.2.3.1", "1.2.3.1.1")
	if _, err := f.put(d, "1.2.3.1.1"); err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	in, err := f.db.Instance(ctx, "1.2.3.1.1")
	if err != nil || in.Amended.String(tag.IssuerOfPatientID) != "RXH" {
		t.Fatalf("Instance = %+v, %v", in, err)
	}
	ts, _ := uid.LookupTransferSyntax(uid.ExplicitVRLittleEndian)
	read := func(in *index.Instance) *dicom.Dataset {
		t.Helper()
		_, r, err := f.svc.OpenDataset(ctx, in, uid.ExplicitVRLittleEndian)
		if err != nil {
			t.Fatal(err)
		}
		defer r.Close()
		b, err := io.ReadAll(r)
		if err != nil {
			t.Fatal(err)
		}
		ds, err := dicom.Parse(b, ts)
		if err != nil {
			t.Fatal(err)
		}
		return ds
	}
	ds := read(in)
	oas := ds.Items(tag.OriginalAttributesSequence)
	if ds.String(tag.IssuerOfPatientID) != "RXH" || len(oas) != 1 || oas[0].String(tag.ReasonForTheAttributeModification) != "COERCE" ||
		len(oas[0].Items(tag.ModifiedAttributesSequence)) != 1 {
		t.Errorf("served: issuer %q, Original Attributes Sequence %+v", ds.String(tag.IssuerOfPatientID), oas)
	}
	md, err := f.svc.Metadata(ctx, in)
	if err != nil || !bytes.Contains(md.JSON, []byte(`"00100021":{"vr":"LO","Value":["RXH"]}`)) || !bytes.Contains(md.JSON, []byte(`"04000561"`)) {
		t.Errorf("metadata: %v\n%s", err, md.JSON)
	}
	obj, err := f.svc.Open(ctx, in)
	if err != nil {
		t.Fatal(err)
	}
	stored, _ := io.ReadAll(obj)
	obj.Close()
	if !bytes.HasSuffix(stored, d.b.Bytes()) {
		t.Error("the object does not hold the data set as received")
	}

	// An amendment equal to what the object holds changes nothing.
	same := *in
	same.Amended = &dicom.Dataset{Elements: []dicom.Element{{Tag: tag.PatientName, VR: "PN", Values: []string{"Doe^Jane"}}}}
	_, r, err := f.svc.OpenDataset(ctx, &same, uid.ExplicitVRLittleEndian)
	if err != nil {
		t.Fatal(err)
	}
	b, _ := io.ReadAll(r)
	r.Close()
	if !bytes.Equal(b, d.b.Bytes()) {
		t.Error("an amendment that changes nothing changed the data set served")
	}
}

// BenchmarkOpenDataset reads an instance of 512 KiB of pixel data as
// stored and with an amendment.
func BenchmarkOpenDataset(b *testing.B) {
	f := newFixture(b, Config{})
	d := &ds{}
	d.str(tag.SOPClassUID, "UI", uid.CTImageStorage).str(tag.SOPInstanceUID, "UI", "1.2.3.1.1").
		str(tag.PatientName, "PN", "Doe^Jane").str(tag.PatientID, "LO", "P1").
		str(tag.StudyInstanceUID, "UI", "1.2.3").str(tag.SeriesInstanceUID, "UI", "1.2.3.1")
	d.el(tag.PixelData, "OW", make([]byte, 512<<10))
	if _, err := f.put(d, "1.2.3.1.1"); err != nil {
		b.Fatal(err)
	}
	ctx := context.Background()
	in, err := f.db.Instance(ctx, "1.2.3.1.1")
	if err != nil {
		b.Fatal(err)
	}
	amended := *in
	amended.Amended = &dicom.Dataset{Elements: []dicom.Element{{Tag: tag.PatientName, VR: "PN", Values: []string{"Roe^Jane"}}}}
	for _, c := range []struct {
		name string
		in   *index.Instance
	}{{"as stored", in}, {"amended", &amended}} {
		b.Run(c.name, func(b *testing.B) {
			b.SetBytes(512 << 10)
			buf := make([]byte, 1<<20)
			for b.Loop() {
				_, r, err := f.svc.OpenDataset(ctx, c.in, uid.ExplicitVRLittleEndian)
				if err != nil {
					b.Fatal(err)
				}
				if _, err := io.CopyBuffer(io.Discard, struct{ io.Reader }{r}, buf); err != nil {
					b.Fatal(err)
				}
				r.Close()
			}
		})
	}
}

// TestServedAmendedLongHeader checks that an instance whose rewritten
// header is too long to hold in memory (a large private value before the
// corrected attribute) is served all the same, streamed.
func TestServedAmendedLongHeader(t *testing.T) {
	f := newFixture(t, Config{})
	d := &ds{}
	d.str(tag.SOPClassUID, "UI", uid.CTImageStorage).str(tag.SOPInstanceUID, "UI", "1.2.3.1.1").
		str(tag.StudyInstanceUID, "UI", "1.2.3").str(tag.SeriesInstanceUID, "UI", "1.2.3.1")
	d.el(tag.New(0x0009, 0x0010), "LO", []byte("PACSD TEST"))
	d.el(tag.New(0x0009, 0x1001), "OB", bytes.Repeat([]byte{7}, maxHeldHead+2))
	d.str(tag.PatientName, "PN", "Doe^Jane").str(tag.PatientID, "LO", "P1")
	d.el(tag.PixelData, "OW", make([]byte, 64<<10))
	if _, err := f.put(d, "1.2.3.1.1"); err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	in, err := f.db.Instance(ctx, "1.2.3.1.1")
	if err != nil {
		t.Fatal(err)
	}
	amended := *in
	amended.Amended = &dicom.Dataset{Elements: []dicom.Element{{Tag: tag.PatientName, VR: "PN", Values: []string{"Roe^Jane"}}}}
	_, r, err := f.svc.OpenDataset(ctx, &amended, uid.ExplicitVRLittleEndian)
	if err != nil {
		t.Fatal(err)
	}
	b, err := io.ReadAll(r)
	r.Close()
	if err != nil {
		t.Fatal(err)
	}
	ts, _ := uid.LookupTransferSyntax(uid.ExplicitVRLittleEndian)
	got, err := dicom.Parse(b, ts)
	if err != nil {
		t.Fatal(err)
	}
	priv, _ := got.Find(tag.New(0x0009, 0x1001))
	px, _ := got.Find(tag.PixelData)
	if got.String(tag.PatientName) != "Roe^Jane" || priv == nil || priv.Binary == nil || priv.Binary.Length != maxHeldHead+2 ||
		px == nil || px.Binary == nil || px.Binary.Length != 64<<10 {
		t.Errorf("served: name %q, private value %+v, pixel data %+v", got.String(tag.PatientName), priv, px)
	}
}
