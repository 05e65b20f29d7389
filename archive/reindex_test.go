package archive

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"iter"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/pacsd/pacsd/dicom"
	"github.com/pacsd/pacsd/dicom/tag"
	"github.com/pacsd/pacsd/dicom/uid"
	"github.com/pacsd/pacsd/index"
	"github.com/pacsd/pacsd/index/sqlindex"
	"github.com/pacsd/pacsd/index/sqlite"
	"github.com/pacsd/pacsd/nhs"
	"github.com/pacsd/pacsd/storage"
)

// patientInstance builds a data set of an instance of the given patient
// and modality, with pixel data, so that the header ends where reading
// for the index stops.
func patientInstance(study, series, sop, name, id, modality string, number int) *ds {
	d := &ds{}
	d.str(tag.SOPClassUID, "UI", uid.CTImageStorage).str(tag.SOPInstanceUID, "UI", sop).
		str(tag.StudyDate, "DA", "20240131").str(tag.Modality, "CS", modality).
		str(tag.PatientName, "PN", name).str(tag.PatientID, "LO", id).
		str(tag.StudyInstanceUID, "UI", study).str(tag.SeriesInstanceUID, "UI", series).
		str(tag.InstanceNumber, "IS", fmt.Sprint(number))
	d.el(tag.PixelData, "OW", bytes.Repeat([]byte{byte(number)}, 8192))
	return d
}

// archiveSome stores instances of two patients, three studies and four
// series through f's archive and returns their SOP Instance UIDs.
func archiveSome(t *testing.T, f *fixture) []string {
	t.Helper()
	var sops []string
	for i, c := range []struct{ study, series, name, id, modality string }{
		{"1.2.1", "1.2.1.1", "Doe^Jane", "P1", "CT"},
		{"1.2.1", "1.2.1.1", "Doe^Jane", "P1", "CT"},
		{"1.2.1", "1.2.1.2", "Doe^Jane", "P1", "MR"},
		{"1.2.2", "1.2.2.1", "Doe^Jane", "P1", "CT"},
		{"1.2.3", "1.2.3.1", "Roe^Richard", "P2", "US"},
		{"1.2.3", "1.2.3.1", "Roe^Richard", "P2", "US"},
	} {
		sop := fmt.Sprintf("%s.%d", c.series, i+1)
		d := patientInstance(c.study, c.series, sop, c.name, c.id, c.modality, i+1)
		if _, err := f.put(d, sop); err != nil {
			t.Fatalf("Store %s: %v", sop, err)
		}
		sops = append(sops, sop)
	}
	return sops
}

// studies returns what a study-level query of everything answers.
func studies(t *testing.T, db *sqlindex.DB) []string {
	t.Helper()
	q := &index.Query{Level: index.StudyLevel, Identifier: &dicom.Dataset{Elements: []dicom.Element{
		{Tag: tag.StudyDate, VR: "DA"},
		{Tag: tag.PatientName, VR: "PN"},
		{Tag: tag.PatientID, VR: "LO"},
		{Tag: tag.StudyInstanceUID, VR: "UI"},
		{Tag: tag.ModalitiesInStudy, VR: "CS"},
		{Tag: tag.NumberOfStudyRelatedSeries, VR: "IS"},
		{Tag: tag.NumberOfStudyRelatedInstances, VR: "IS"},
	}}}
	var out []string
	for m, err := range db.Find(t.Context(), q) {
		if err != nil {
			t.Fatal(err)
		}
		var vals []string
		for _, e := range m.Elements {
			vals = append(vals, e.Tag.String()+"="+strings.Join(e.Values, `\`))
		}
		out = append(out, strings.Join(vals, " "))
	}
	slices.Sort(out)
	return out
}

func openIndex(t *testing.T) *sqlindex.DB {
	t.Helper()
	db, err := sqlite.Open(t.Context(), filepath.Join(t.TempDir(), "index.db"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { db.Close() })
	return db
}

// TestReindex archives instances, rebuilds the index from storage alone
// into an empty database, and checks that it answers as the original did,
// record for record.
func TestReindex(t *testing.T) {
	f := newFixture(t, Config{})
	sops := archiveSome(t, f)
	ctx := t.Context()

	db := openIndex(t)
	var calls []Progress
	p, err := Reindex(ctx, f.store, db, func(p Progress) { calls = append(calls, p) })
	if err != nil {
		t.Fatalf("Reindex: %v", err)
	}
	if p.Objects != len(sops) || p.Failed != 0 || p.Bytes == 0 || len(calls) != len(sops) {
		t.Errorf("Reindex = %+v after %d progress calls, want %d objects", p, len(calls), len(sops))
	}

	want, err := f.db.Counts(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if got, err := db.Counts(ctx); err != nil || got != want {
		t.Errorf("Counts = %+v, %v; the original index has %+v", got, err, want)
	}
	if got, want := studies(t, db), studies(t, f.db); len(want) != 3 || !slices.Equal(got, want) {
		t.Errorf("study query answers\n%s\nthe original index\n%s", strings.Join(got, "\n"), strings.Join(want, "\n"))
	}
	for _, sop := range sops {
		orig, err := f.db.Instance(ctx, sop)
		if err != nil {
			t.Fatal(err)
		}
		got, err := db.Instance(ctx, sop)
		if err != nil {
			t.Fatalf("reindexed %s: %v", sop, err)
		}
		// When the instance arrived is in its key, to the microsecond.
		if fmt.Sprintf("%+v", *got) != fmt.Sprintf("%+v", *orig) {
			t.Errorf("%s: reindexed record\n%+v\noriginal\n%+v", sop, *got, *orig)
		}
		gm, err1 := db.Metadata(ctx, got)
		om, err2 := f.db.Metadata(ctx, orig)
		if err1 != nil || err2 != nil || !bytes.Equal(gm, om) {
			t.Errorf("%s: metadata document after reindex (%v)\n%s\noriginally (%v)\n%s", sop, err1, gm, err2, om)
		}
		ga, err1 := db.InstanceAttributes(ctx, sop)
		oa, err2 := f.db.InstanceAttributes(ctx, sop)
		if err1 != nil || err2 != nil || fmt.Sprint(ga) != fmt.Sprint(oa) {
			t.Errorf("%s: instance attributes %v (%v), originally %v (%v)", sop, ga, err1, oa, err2)
		}
	}

	// Reindexing into the same index again changes nothing.
	if _, err := Reindex(ctx, f.store, db, nil); err != nil {
		t.Fatal(err)
	}
	if got, err := db.Counts(ctx); err != nil || got != want {
		t.Errorf("Counts after a second Reindex = %+v, %v", got, err)
	}
}

// TestReindexBadObjects checks that objects that cannot be indexed are
// counted and reported, and do not stop the others.
func TestReindexBadObjects(t *testing.T) {
	f := newFixture(t, Config{})
	sops := archiveSome(t, f)
	ctx := t.Context()
	bad := map[string][]byte{
		"junk/not-dicom.dcm": []byte("this is not DICOM"),
		// File Meta Information that names another instance than the
		// data set holds.
		"9/9/9.dcm": append(dicom.AppendFileMeta(nil, dicom.FileMeta{
			MediaStorageSOPClassUID: uid.CTImageStorage, MediaStorageSOPInstanceUID: "9.9",
			TransferSyntaxUID: uid.ExplicitVRLittleEndian, ImplementationClassUID: dicom.ImplementationClassUID,
		}), patientInstance("9", "9.1", "9.1.1", "X", "X", "OT", 1).b.Bytes()...),
	}
	for key, b := range bad {
		if _, err := f.store.Put(ctx, key, bytes.NewReader(b), int64(len(b))); err != nil {
			t.Fatal(err)
		}
	}
	db := openIndex(t)
	failed := map[string]string{}
	p, err := Reindex(ctx, f.store, db, func(p Progress) {
		if p.Err != nil {
			failed[p.Key] = p.Err.Error()
		}
	})
	if err != nil {
		t.Fatal(err)
	}
	if p.Objects != len(sops) || p.Failed != 2 || len(failed) != 2 {
		t.Errorf("Reindex = %+v, failures %q", p, failed)
	}
	for key := range bad {
		if !strings.Contains(failed[key], key) {
			t.Errorf("failure of %s reported as %q", key, failed[key])
		}
	}
	if !strings.Contains(failed["9/9/9.dcm"], "does not match") {
		t.Errorf("mismatched meta reported as %q", failed["9/9/9.dcm"])
	}
}

// TestReindexCancelled checks that Reindex stops when its context ends.
func TestReindexCancelled(t *testing.T) {
	f := newFixture(t, Config{})
	archiveSome(t, f)
	ctx, cancel := context.WithCancel(t.Context())
	db := openIndex(t)
	_, err := Reindex(ctx, f.store, db, func(Progress) { cancel() })
	if err == nil || ctx.Err() == nil {
		t.Errorf("Reindex with a cancelled context = %v", err)
	}
}

// reversed lists a store's objects in reverse order.
type reversed struct{ storage.Store }

func (r reversed) List(ctx context.Context, prefix string) iter.Seq2[storage.Info, error] {
	return func(yield func(storage.Info, error) bool) {
		var all []storage.Info
		for info, err := range r.Store.List(ctx, prefix) {
			if err != nil {
				yield(info, err)
				return
			}
			all = append(all, info)
		}
		for _, info := range slices.Backward(all) {
			if !yield(info, nil) {
				return
			}
		}
	}
}

// TestReindexVersions rebuilds the index from a bucket that holds three
// versions of one instance, as a crash in the middle of replacing it can
// leave: the latest wins in whatever order storage lists them, Verify
// reports the others as orphans, and Repair deletes them and nothing
// else.
func TestReindexVersions(t *testing.T) {
	ctx := t.Context()
	f := newFixture(t, Config{})
	sops := archiveSome(t, f)
	sop := sops[0]
	var keys []string
	var objects [][]byte
	for i := range 3 {
		d := patientInstance("1.2.1", "1.2.1.1", sop, "Doe^Jane", "P1", "CT", 10+i)
		res, err := f.put(d, sop)
		if err != nil {
			t.Fatal(err)
		}
		keys = append(keys, res.Instance.Key)
		objects = append(objects, readAll(t, f.store, res.Instance.Key))
	}
	// Only the latest version is left; put the others back.
	for i := range 2 {
		if _, err := f.store.Stat(ctx, keys[i]); !errors.Is(err, storage.ErrNotFound) {
			t.Fatalf("version %d left after it was replaced: %v", i, err)
		}
		if _, err := f.store.Put(ctx, keys[i], bytes.NewReader(objects[i]), int64(len(objects[i]))); err != nil {
			t.Fatal(err)
		}
	}
	want, err := f.db.Instance(ctx, sop)
	if err != nil {
		t.Fatal(err)
	}
	for name, store := range map[string]storage.Store{"in order": f.store, "reversed": reversed{f.store}} {
		t.Run(name, func(t *testing.T) {
			db := openIndex(t)
			p, err := Reindex(ctx, store, db, nil)
			if err != nil || p.Failed != 0 || p.Superseded != 2 {
				t.Fatalf("Reindex = %+v, %v; want 2 superseded", p, err)
			}
			got, err := db.Instance(ctx, sop)
			if err != nil || got.Key != keys[2] || got.SHA256 != want.SHA256 {
				t.Fatalf("reindexed record %+v, %v; want key %s", got, err, keys[2])
			}
		})
	}
	problems, _ := verify(t, f)
	if len(problems) != 2 || problems[0].Key != keys[0] || problems[1].Key != keys[1] || problems[0].Kind != Orphan || problems[1].Kind != Orphan {
		t.Fatalf("Verify reported %v; want the two earlier versions as orphans", problems)
	}
	repaired := map[string]Repaired{}
	if err := Repair(ctx, f.store, f.db, problems, 0, func(p Problem, r Repaired) { repaired[p.Key] = r }); err != nil {
		t.Fatal(err)
	}
	if repaired[keys[0]] != Deleted || repaired[keys[1]] != Deleted {
		t.Errorf("Repair did %v", repaired)
	}
	if problems, res := verify(t, f); len(problems) != 0 || res.Objects != len(sops) {
		t.Errorf("Verify after Repair: %v, %+v", problems, res)
	}
}

// TestUnversionedKeys keeps serving an archive written before keys had
// versions: its objects are indexed by Reindex, read, verified, and
// replaced by a versioned one that the old one gives way to.
func TestUnversionedKeys(t *testing.T) {
	ctx := t.Context()
	old := newFixture(t, Config{})
	d := patientInstance("1.2.1", "1.2.1.1", "1.2.1.1.1", "Doe^Jane", "P1", "CT", 1)
	res, err := old.put(d, "1.2.1.1.1")
	if err != nil {
		t.Fatal(err)
	}
	legacy := Key("1.2.1", "1.2.1.1", "1.2.1.1.1", "")
	b := readAll(t, old.store, res.Instance.Key)
	f := newFixture(t, Config{})
	if _, err := f.store.Put(ctx, legacy, bytes.NewReader(b), int64(len(b))); err != nil {
		t.Fatal(err)
	}
	if p, err := Reindex(ctx, f.store, f.db, nil); err != nil || p.Objects != 1 {
		t.Fatalf("Reindex = %+v, %v", p, err)
	}
	in, err := f.db.Instance(ctx, "1.2.1.1.1")
	if err != nil || in.Key != legacy || in.SHA256 != res.Instance.SHA256 {
		t.Fatalf("record %+v, %v", in, err)
	}
	if m, err := f.svc.Metadata(ctx, in); err != nil || !bytes.Contains(m.JSON, []byte("Doe^Jane")) {
		t.Errorf("Metadata of an unversioned object: %s, %v", m.JSON, err)
	}
	if problems, _ := verify(t, f); len(problems) != 0 {
		t.Errorf("Verify: %v", problems)
	}
	res, err = f.put(patientInstance("1.2.1", "1.2.1.1", "1.2.1.1.1", "Doe^Jane", "P1", "CT", 2), "1.2.1.1.1")
	if err != nil || res.Replaced == nil || res.Replaced.Key != legacy {
		t.Fatalf("replace of an unversioned object: %+v, %v", res, err)
	}
	if keys := f.objects(t); len(keys) != 1 || keys[0] != res.Instance.Key {
		t.Errorf("objects %v", keys)
	}
}

// TestReindexNHSIssuers rebuilds an archive whose NHS numbers come under
// an issuer of its own: the rebuilt index, configured as serve was,
// knows the patient's NHS number again, and one left on the defaults
// does not.
func TestReindexNHSIssuers(t *testing.T) {
	ctx := t.Context()
	const issuer, number = "RXH-NHS", "9434765919"
	f := newFixture(t, Config{NHSIssuers: nhs.Issuers{issuer}})
	d := &ds{}
	d.str(tag.SOPClassUID, "UI", uid.CTImageStorage).str(tag.SOPInstanceUID, "UI", "1.2.9.1.1").
		str(tag.StudyDate, "DA", "20240131").str(tag.Modality, "CS", "CT").
		str(tag.PatientName, "PN", "Doe^Jane").str(tag.PatientID, "LO", number).str(tag.IssuerOfPatientID, "LO", issuer).
		str(tag.StudyInstanceUID, "UI", "1.2.9").str(tag.SeriesInstanceUID, "UI", "1.2.9.1")
	d.el(tag.PixelData, "OW", make([]byte, 64))
	if _, err := f.put(d, "1.2.9.1.1"); err != nil {
		t.Fatal(err)
	}
	key := index.PatientKey{ID: number, Issuer: issuer}
	for _, c := range []struct {
		name string
		opts []sqlindex.Option
		want string
	}{
		{"configured", []sqlindex.Option{sqlindex.WithNHSIssuers(issuer)}, number},
		{"defaults", nil, ""},
	} {
		t.Run(c.name, func(t *testing.T) {
			db, err := sqlite.Open(ctx, filepath.Join(t.TempDir(), "index.db"), c.opts...)
			if err != nil {
				t.Fatal(err)
			}
			defer db.Close()
			if _, err := Reindex(ctx, f.store, db, nil); err != nil {
				t.Fatal(err)
			}
			p, err := db.Person(ctx, key)
			if err != nil {
				t.Fatal(err)
			}
			if p.NHSNumber != c.want {
				t.Errorf("rebuilt person's NHS number %q, want %q", p.NHSNumber, c.want)
			}
		})
	}
}
