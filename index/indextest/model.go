package indextest

import (
	"github.com/pacsd/pacsd/index/sqlindex"

	"errors"
	"fmt"
	"maps"
	"math/rand/v2"
	"reflect"
	"slices"
	"testing"
	"time"

	"github.com/pacsd/pacsd/dicom/tag"
	"github.com/pacsd/pacsd/index"
)

// model is the index's contract written as plainly as possible: the same
// rules over maps, with every aggregate counted afresh when asked for.
type model struct {
	instances map[string]*modelInstance
	series    map[string]*modelSeries
	studies   map[string]*modelStudy
	patients  map[patientKey]*modelPatient
}

type patientKey struct{ id, issuer string }

type modelInstance struct {
	rec    index.Instance // as stored: Header nil
	series string
}

type modelSeries struct {
	study    string
	at       time.Time
	modality string
}

type modelStudy struct {
	patient     patientKey
	at          time.Time
	description string
}

type modelPatient struct {
	at   time.Time
	name string
}

func newModel() *model {
	return &model{
		instances: map[string]*modelInstance{},
		series:    map[string]*modelSeries{},
		studies:   map[string]*modelStudy{},
		patients:  map[patientKey]*modelPatient{},
	}
}

// put applies the rules of Put: each level is created, or takes the
// instance's attributes and parent when the instance is not older than
// the one they came from; levels left empty disappear.
func (m *model) put(in *index.Instance, pk patientKey, name, description, modality string) {
	recv := in.ReceivedAt.Truncate(time.Microsecond)
	if p := m.patients[pk]; p == nil || !recv.Before(p.at) {
		m.patients[pk] = &modelPatient{at: recv, name: name}
	}
	if s := m.studies[in.StudyInstanceUID]; s == nil || !recv.Before(s.at) {
		m.studies[in.StudyInstanceUID] = &modelStudy{patient: pk, at: recv, description: description}
	}
	if s := m.series[in.SeriesInstanceUID]; s == nil || !recv.Before(s.at) {
		m.series[in.SeriesInstanceUID] = &modelSeries{study: in.StudyInstanceUID, at: recv, modality: modality}
	}
	m.instances[in.SOPInstanceUID] = &modelInstance{rec: stored(in), series: in.SeriesInstanceUID}
	m.prune()
}

func (m *model) delete(sop string) bool {
	if m.instances[sop] == nil {
		return false
	}
	delete(m.instances, sop)
	m.prune()
	return true
}

func (m *model) prune() {
	for uid := range m.series {
		if len(m.instancesOf(uid)) == 0 {
			delete(m.series, uid)
		}
	}
	for uid := range m.studies {
		if len(m.seriesOf(uid)) == 0 {
			delete(m.studies, uid)
		}
	}
	for pk := range m.patients {
		if len(m.studiesOf(pk)) == 0 {
			delete(m.patients, pk)
		}
	}
}

func (m *model) instancesOf(series string) []*modelInstance {
	var out []*modelInstance
	for _, in := range m.instances {
		if in.series == series {
			out = append(out, in)
		}
	}
	return out
}

func (m *model) seriesOf(study string) []string {
	var out []string
	for uid, s := range m.series {
		if s.study == study {
			out = append(out, uid)
		}
	}
	return out
}

func (m *model) studiesOf(pk patientKey) []string {
	var out []string
	for uid, s := range m.studies {
		if s.patient == pk {
			out = append(out, uid)
		}
	}
	return out
}

// check compares every row of db with the model.
func (m *model) check(t *testing.T, db *sqlindex.DB, step string) {
	t.Helper()
	ctx := t.Context()
	c, err := db.Counts(ctx)
	if err != nil {
		t.Fatalf("%s: Counts: %v", step, err)
	}
	if want := (index.Counts{Patients: len(m.patients), Studies: len(m.studies), Series: len(m.series), Instances: len(m.instances)}); c != want {
		t.Fatalf("%s: Counts = %+v, want %+v", step, c, want)
	}
	for sop, want := range m.instances {
		got, err := db.Instance(ctx, sop)
		if err != nil || !reflect.DeepEqual(*got, want.rec) {
			t.Fatalf("%s: Instance(%s) = %+v, %v; want %+v", step, sop, got, err, want.rec)
		}
	}
	for uid, want := range m.series {
		got, err := db.Series(ctx, uid)
		if err != nil {
			t.Fatalf("%s: Series(%s): %v", step, uid, err)
		}
		if n := len(m.instancesOf(uid)); got.StudyInstanceUID != want.study || got.NumberOfSeriesRelatedInstances != n || got.Attributes.String(tag.Modality) != want.modality {
			t.Fatalf("%s: series %s in study %s with %d instances, modality %q; want %s, %d, %q", step, uid,
				got.StudyInstanceUID, got.NumberOfSeriesRelatedInstances, got.Attributes.String(tag.Modality), want.study, n, want.modality)
		}
	}
	for uid, want := range m.studies {
		got, err := db.Study(ctx, uid)
		if err != nil {
			t.Fatalf("%s: Study(%s): %v", step, uid, err)
		}
		series := m.seriesOf(uid)
		instances := 0
		modalities := map[string]bool{}
		classes := map[string]bool{}
		for _, se := range series {
			if mod := m.series[se].modality; mod != "" {
				modalities[mod] = true
			}
			for _, in := range m.instancesOf(se) {
				instances++
				classes[in.rec.SOPClassUID] = true
			}
		}
		wantModalities := slices.Sorted(maps.Keys(modalities))
		wantClasses := slices.Sorted(maps.Keys(classes))
		if (patientKey{got.PatientID, got.IssuerOfPatientID}) != want.patient ||
			got.NumberOfStudyRelatedSeries != len(series) || got.NumberOfStudyRelatedInstances != instances ||
			!slices.Equal(got.ModalitiesInStudy, wantModalities) || !slices.Equal(got.SOPClassesInStudy, wantClasses) ||
			got.Attributes.String(tag.StudyDescription) != want.description {
			t.Fatalf("%s: study %s of %s/%s: %d series, %d instances, modalities %q, classes %q, description %q;\n"+
				"want %v: %d, %d, %q, %q, %q", step, uid, got.PatientID, got.IssuerOfPatientID,
				got.NumberOfStudyRelatedSeries, got.NumberOfStudyRelatedInstances, got.ModalitiesInStudy, got.SOPClassesInStudy,
				got.Attributes.String(tag.StudyDescription),
				want.patient, len(series), instances, wantModalities, wantClasses, want.description)
		}
	}
	for pk, want := range m.patients {
		got, err := db.Patient(ctx, pk.id, pk.issuer)
		if err != nil {
			t.Fatalf("%s: Patient(%v): %v", step, pk, err)
		}
		studies := m.studiesOf(pk)
		series, instances := 0, 0
		for _, st := range studies {
			for _, se := range m.seriesOf(st) {
				series++
				instances += len(m.instancesOf(se))
			}
		}
		if got.NumberOfPatientRelatedStudies != len(studies) || got.NumberOfPatientRelatedSeries != series ||
			got.NumberOfPatientRelatedInstances != instances || got.Attributes.String(tag.PatientName) != want.name {
			t.Fatalf("%s: patient %v: %d/%d/%d, name %q; want %d/%d/%d, %q", step, pk,
				got.NumberOfPatientRelatedStudies, got.NumberOfPatientRelatedSeries, got.NumberOfPatientRelatedInstances,
				got.Attributes.String(tag.PatientName), len(studies), series, instances, want.name)
		}
	}
}

// testModel runs random sequences of puts, replacements, moves and
// deletes over a few patients, studies, series and instances, so that
// they collide often, and checks the index against the model after every
// step.
func testModel(t *testing.T, db *sqlindex.DB) {
	patients := []patientKey{{"P1", ""}, {"P1", "ISSUER-A"}, {"P2", ""}}
	studies := []string{"1", "2", "3"}
	seriesUIDs := []string{"1.1", "1.2", "2.1", "2.2", "3.1"}
	classes := []string{ctImage, mrImage, prState}
	modalities := []string{"CT", "MR", "PR", ""}
	const sops, steps = 10, 300

	m := newModel()
	r := rand.New(rand.NewPCG(1, 2))
	for i := range steps {
		sop := fmt.Sprintf("9.%d", r.IntN(sops))
		if r.IntN(4) == 0 {
			err := db.Delete(t.Context(), sop)
			if m.delete(sop) {
				if err != nil {
					t.Fatalf("step %d: Delete(%s): %v", i, sop, err)
				}
			} else if !errors.Is(err, index.ErrNotFound) {
				t.Fatalf("step %d: Delete(%s) of an absent instance: %v", i, sop, err)
			}
			m.check(t, db, fmt.Sprintf("step %d (delete %s)", i, sop))
			continue
		}
		pk := patients[r.IntN(len(patients))]
		series := seriesUIDs[r.IntN(len(seriesUIDs))]
		// Series and studies are mostly consistent, as real ones are, but
		// now and then a series turns up in another study.
		study := studies[int(series[0]-'1')]
		if r.IntN(5) == 0 {
			study = studies[r.IntN(len(studies))]
		}
		name := fmt.Sprintf("Name^%d", i)
		description := fmt.Sprintf("description %d", i)
		modality := modalities[r.IntN(len(modalities))]
		h := header(t, tag.PatientID, pk.id, tag.IssuerOfPatientID, pk.issuer, tag.PatientName, name,
			tag.StudyDescription, description, tag.Modality, modality)
		// Few distinct times, so that ties and older instances are common.
		in := instance(sop, series, study, base.Add(time.Duration(r.IntN(6))*time.Second), h)
		in.SOPClassUID = classes[r.IntN(len(classes))]
		prev := m.instances[sop]
		ch, err := db.Put(t.Context(), &index.PutRequest{Instance: in})
		if err != nil {
			t.Fatalf("step %d: Put: %v", i, err)
		}
		replaced := ch.Previous
		switch {
		case prev == nil && replaced != nil:
			t.Fatalf("step %d: Put of a new instance replaced %+v", i, replaced)
		case prev != nil && (replaced == nil || !reflect.DeepEqual(*replaced, prev.rec)):
			t.Fatalf("step %d: Put replaced %+v, want %+v", i, replaced, prev.rec)
		}
		m.put(in, pk, name, description, modality)
		m.check(t, db, fmt.Sprintf("step %d (put %s in %s/%s/%v)", i, sop, study, series, pk))
	}
}
