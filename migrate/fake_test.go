package migrate_test

import (
	"bufio"
	"bytes"
	"cmp"
	"context"
	"errors"
	"fmt"
	"io"
	"slices"
	"strings"
	"sync"
	"testing"

	"github.com/pacsd/pacsd/dicom"
	"github.com/pacsd/pacsd/dicom/uid"
	"github.com/pacsd/pacsd/index"
	"github.com/pacsd/pacsd/internal/dcmgen"
	"github.com/pacsd/pacsd/migrate"
	"github.com/pacsd/pacsd/storage"
	"github.com/pacsd/pacsd/storage/mem"
)

// fakeSource is a legacy archive in memory that caps its answers at
// limit matches, as Orthanc's LimitFindResults does (or silently, at a
// round number, with silent set).
type fakeSource struct {
	limit  int
	silent bool

	mu        sync.Mutex
	studies   []*fakeStudy
	queries   int
	retrieved []string // study UIDs, in the order retrieved
	// drop lists instances a retrieval leaves out, as a source whose
	// files were deleted behind its back.
	drop map[string]bool
}

type fakeStudy struct {
	row       migrate.Study
	instances []fakeInstance
}

type fakeInstance struct {
	ref  migrate.InstanceRef
	ts   string
	data []byte // the data set, without File Meta Information
}

// addStudy adds a study of n small instances.
func (f *fakeSource) addStudy(t testing.TB, row migrate.Study, n int) *fakeStudy {
	t.Helper()
	st := &fakeStudy{row: row}
	tmpl := dcmgen.Instance{
		Patient: dcmgen.Patient{Name: row.PatientName, ID: row.PatientID, BirthDate: row.PatientBirthDate},
		Study:   dcmgen.Study{UID: row.StudyInstanceUID, Date: row.StudyDate, Time: row.StudyTime, AccessionNumber: row.AccessionNumber},
		Series:  dcmgen.Series{UID: dcmgen.UID(), Modality: cmp.Or(row.Modalities, "CT")},
		Rows:    8, Columns: 8,
	}
	for i := range n {
		in := tmpl
		in.SOPInstanceUID = dcmgen.UID()
		in.InstanceNumber = i + 1
		st.instances = append(st.instances, fakeInstance{
			ref:  migrate.InstanceRef{SOPInstanceUID: in.SOPInstanceUID, SOPClassUID: dcmgen.CTImageStorage, SeriesInstanceUID: tmpl.Series.UID},
			ts:   uid.ExplicitVRLittleEndian,
			data: dataset(t, &in),
		})
	}
	st.row.InstancesAtSource = n
	f.mu.Lock()
	f.studies = append(f.studies, st)
	f.mu.Unlock()
	return st
}

// dataset returns the data set dcmgen writes for in.
func dataset(t testing.TB, in *dcmgen.Instance) []byte {
	t.Helper()
	var buf bytes.Buffer
	if _, err := dcmgen.WriteFile(&buf, in); err != nil {
		t.Fatal(err)
	}
	return datasetOf(t, &buf)
}

func (f *fakeSource) Kind() string { return migrate.KindDIMSE }
func (f *fakeSource) Close() error { return nil }

func (f *fakeSource) FindStudies(ctx context.Context, q migrate.Query) (migrate.Answer, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.queries++
	var ans migrate.Answer
	for _, st := range f.studies {
		if matches(q, &st.row) {
			c := st.row
			ans.Studies = append(ans.Studies, &c)
		}
	}
	if f.limit > 0 && len(ans.Studies) > f.limit {
		ans.Studies = ans.Studies[:f.limit]
		ans.Capped, ans.Reason = !f.silent, "limit"
	}
	return ans, nil
}

func matches(q migrate.Query, s *migrate.Study) bool {
	switch {
	case q.EmptyDate && s.StudyDate != "":
		return false
	case !q.EmptyDate && q.DateFrom != "" && (s.StudyDate == "" || s.StudyDate < q.DateFrom || s.StudyDate > q.DateTo):
		return false
	case q.EmptyTime && s.StudyTime != "":
		return false
	case q.TimeFrom != "" && (s.StudyTime == "" || s.StudyTime < q.TimeFrom || s.StudyTime > q.TimeTo):
		return false
	case q.Modality != "" && !slices.Contains(strings.Split(s.Modalities, `\`), q.Modality):
		return false
	case q.NameInitial != "" && !strings.HasPrefix(strings.ToUpper(s.PatientName), q.NameInitial):
		return false
	}
	for _, k := range q.Keys {
		switch {
		case k.String() == "PatientID="+s.PatientID:
		case strings.HasPrefix(k.String(), "ModalitiesInStudy=") && slices.Contains(strings.Split(s.Modalities, `\`), k.Value):
		default:
			return false
		}
	}
	return true
}

func (f *fakeSource) study(uid string) *fakeStudy {
	f.mu.Lock()
	defer f.mu.Unlock()
	for _, st := range f.studies {
		if st.row.StudyInstanceUID == uid {
			return st
		}
	}
	return nil
}

func (f *fakeSource) Instances(ctx context.Context, study string) ([]migrate.InstanceRef, error) {
	st := f.study(study)
	if st == nil {
		return nil, errors.New("no such study")
	}
	var refs []migrate.InstanceRef
	for _, in := range st.instances {
		refs = append(refs, in.ref)
	}
	return refs, nil
}

func (f *fakeSource) Retrieve(ctx context.Context, study string, refs, only []migrate.InstanceRef, dst migrate.Receiver) error {
	f.mu.Lock()
	f.retrieved = append(f.retrieved, study)
	f.mu.Unlock()
	st := f.study(study)
	failed := 0
	for _, in := range st.instances {
		if only != nil && !slices.ContainsFunc(only, func(r migrate.InstanceRef) bool { return r == in.ref }) {
			continue
		}
		if f.drop[in.ref.SOPInstanceUID] {
			failed++
			continue
		}
		err := dst.Receive(ctx, &migrate.Incoming{SOPClassUID: in.ref.SOPClassUID, SOPInstanceUID: in.ref.SOPInstanceUID,
			TransferSyntaxUID: in.ts, CallingAE: "OLDPACS", Dataset: bytes.NewReader(in.data), Exact: true})
		if err != nil {
			failed++
		}
	}
	if failed > 0 {
		return fmt.Errorf("%d sub-operations failed", failed)
	}
	return nil
}

func (f *fakeSource) retrievals() []string {
	f.mu.Lock()
	defer f.mu.Unlock()
	return slices.Clone(f.retrieved)
}

// memArchive is an archive and index in memory, enough for a migration:
// it keeps data sets by SOP Instance UID.
type memArchive struct {
	mu    sync.Mutex
	store *mem.Store
	rows  map[string]*index.Instance
	// patients holds the patient attributes of the latest instance, by
	// Patient ID.
	patients map[string]*dicom.Dataset
}

func newMemArchive() *memArchive {
	return &memArchive{store: mem.New(), rows: map[string]*index.Instance{}, patients: map[string]*dicom.Dataset{}}
}

func (a *memArchive) Store(ctx context.Context, req *migrate.StoreRequest) (*index.Instance, error) {
	ts, _ := uid.LookupTransferSyntax(req.TransferSyntaxUID)
	sc := dicom.NewScanner(req.Dataset, ts, dicom.Limits{})
	defer sc.Close()
	id, err := sc.Identify()
	if err != nil {
		return nil, fmt.Errorf("%w: %v", migrate.ErrRefused, err)
	}
	a.mu.Lock()
	_, dup := a.rows[id.SOPInstanceUID]
	a.mu.Unlock()
	if dup {
		return nil, fmt.Errorf("%w: %s", migrate.ErrConflict, id.SOPInstanceUID)
	}
	meta := dicom.AppendFileMeta(nil, dicom.FileMeta{MediaStorageSOPClassUID: id.SOPClassUID, MediaStorageSOPInstanceUID: id.SOPInstanceUID, TransferSyntaxUID: ts.UID})
	rest, err := io.ReadAll(sc.Rest())
	if err != nil {
		return nil, err
	}
	// As the archive does, a data set that ends inside an element is
	// refused.
	h := sc.Header()
	if errors.Is(h.Err, dicom.ErrTruncated) {
		return nil, fmt.Errorf("%w: %w", migrate.ErrRefused, h.Err)
	}
	key := id.SOPInstanceUID
	info, err := a.store.Put(ctx, key, io.MultiReader(bytes.NewReader(meta), bytes.NewReader(sc.Prefix()), bytes.NewReader(rest)), -1)
	if err != nil {
		return nil, err
	}
	in := &index.Instance{SOPInstanceUID: id.SOPInstanceUID, SOPClassUID: id.SOPClassUID, StudyInstanceUID: id.StudyInstanceUID,
		SeriesInstanceUID: id.SeriesInstanceUID, Key: key, Size: info.Size, TransferSyntaxUID: ts.UID, CallingAE: req.CallingAE, Source: req.Source, Header: h.Dataset}
	a.mu.Lock()
	a.rows[id.SOPInstanceUID] = in
	a.patients[h.Dataset.First(0x00100020)] = h.Dataset
	a.mu.Unlock()
	return in, nil
}

func (a *memArchive) Open(ctx context.Context, in *index.Instance) (storage.Object, error) {
	return a.store.Open(ctx, in.Key)
}

func (a *memArchive) Instance(ctx context.Context, sop string) (*index.Instance, error) {
	a.mu.Lock()
	defer a.mu.Unlock()
	in, ok := a.rows[sop]
	if !ok {
		return nil, fmt.Errorf("%s: %w", sop, index.ErrNotFound)
	}
	c := *in
	c.Header = nil
	return &c, nil
}

func (a *memArchive) Patient(ctx context.Context, id, issuer string) (*index.Patient, error) {
	a.mu.Lock()
	defer a.mu.Unlock()
	ds, ok := a.patients[id]
	if !ok {
		return nil, index.ErrNotFound
	}
	return &index.Patient{PatientID: id, Attributes: ds}, nil
}

// stored returns the data set pacsd keeps of an instance.
func (a *memArchive) stored(t testing.TB, sop string) []byte { return held(t, a, a, sop) }

// held returns the data set an archive keeps of an instance.
func held(t testing.TB, a migrate.Archive, ix migrate.Index, sop string) []byte {
	t.Helper()
	in, err := ix.Instance(t.Context(), sop)
	if err != nil {
		t.Fatalf("pacsd does not hold %s: %v", sop, err)
	}
	obj, err := a.Open(t.Context(), in)
	if err != nil {
		t.Fatal(err)
	}
	defer obj.Close()
	return datasetOf(t, obj)
}

// datasetOf returns the data set of the Part-10 file r reads.
func datasetOf(t testing.TB, r io.Reader) []byte {
	t.Helper()
	br := bufio.NewReader(r)
	if _, _, err := dicom.ReadFileMeta(br); err != nil {
		t.Fatal(err)
	}
	b, err := io.ReadAll(br)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// instancesPatient is the patient of the study's instances.
func (st *fakeStudy) instancesPatient() dcmgen.Patient {
	return dcmgen.Patient{Name: st.row.PatientName, ID: st.row.PatientID, BirthDate: st.row.PatientBirthDate}
}
