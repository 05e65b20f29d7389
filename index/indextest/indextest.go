package indextest

import (
	"github.com/pacsd/pacsd/index/sqlindex"

	"context"
	"encoding/json"
	"errors"
	"fmt"
	"reflect"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/pacsd/pacsd/audit"
	"github.com/pacsd/pacsd/deid"
	"github.com/pacsd/pacsd/dicom"
	"github.com/pacsd/pacsd/dicom/tag"
	"github.com/pacsd/pacsd/index"
)

// Run runs the suite as subtests of t. open must return a DB over an
// empty database, made with the options given, that stays usable until
// its test ends; it should register the DB's Close with t.Cleanup.
// Subtests run in parallel, each on a DB of its own.
func Run(t *testing.T, open func(t *testing.T, opts ...sqlindex.Option) *sqlindex.DB) {
	tests := []struct {
		name string
		fn   func(*testing.T, *sqlindex.DB)
		opts []sqlindex.Option
	}{
		{"PutGet", testPutGet, nil},
		{"NotFound", testNotFound, nil},
		{"Replace", testReplace, nil},
		{"Delete", testDelete, nil},
		{"Trash", testTrash, nil},
		{"Reject", testReject, nil},
		{"Metadata", testMetadata, nil},
		{"Move", testMove, nil},
		{"Aggregates", testAggregates, nil},
		{"Model", testModel, nil},
		{"PatientIssuer", testPatientIssuer, nil},
		{"Identity", testIdentity, nil},
		{"Links", testLinks, nil},
		{"Corrections", testCorrections, nil},
		{"Records", testRecords, nil},
		{"LatestInstanceWins", testLatestInstanceWins, nil},
		{"NonASCII", testNonASCII, nil},
		{"InvalidText", testInvalidText, nil},
		{"AllAttributes", testAllAttributes, nil},
		{"PartialHeader", testPartialHeader, nil},
		{"Concurrent", testConcurrent, nil},
		{"ConcurrentSameInstance", testConcurrentSameInstance, nil},
		{"Atomic", testAtomic, nil},
		{"CancelledContext", testCancelledContext, nil},
		{"Instances", testInstances, nil},
		{"ReceivedAt", testReceivedAt, nil},
		{"PreparePut", testPreparePut, nil},
		{"Check", testCheck, nil},
		{"GroupCommit", testGroupCommit, nil},
		{"FindText", testFindText, nil},
		{"FindNames", testFindNames, nil},
		{"FindDates", testFindDates, nil},
		{"FindAggregates", testFindAggregates, nil},
		{"FindSequences", testFindSequences, nil},
		{"FindLevels", testFindLevels, nil},
		{"FindReturnKeys", testFindReturnKeys, nil},
		{"FindInvalid", testFindInvalid, nil},
		{"FindUnsupported", testFindUnsupported, nil},
		{"FindPaging", testFindPaging, nil},
		{"FindStreaming", testFindStreaming, []sqlindex.Option{sqlindex.WithBatchSize(2)}},
		{"FindLarge", testFindLarge, nil},
		{"FindInstances", testFindInstances, []sqlindex.Option{sqlindex.WithBatchSize(2)}},
		{"ChangeFeed", testChangeFeed, nil},
		{"ChangeFeedWait", testChangeFeedWait, nil},
		{"ChangeFeedConcurrent", testChangeFeedConcurrent, nil},
		{"FindIssuers", testFindIssuers, nil},
		{"AuditHead", testAuditHead, nil},
		{"DeidMapping", testDeidMapping, nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			tt.fn(t, open(t, tt.opts...))
		})
	}
}

func put(t *testing.T, db *sqlindex.DB, in *index.Instance) *index.Instance {
	t.Helper()
	ch, err := db.Put(t.Context(), &index.PutRequest{Instance: in})
	if err != nil {
		t.Fatalf("Put(%s): %v", in.SOPInstanceUID, err)
	}
	switch {
	case ch.Previous == nil && ch.Kind != index.Created, ch.Previous != nil && ch.Kind != index.Replaced:
		t.Errorf("Put(%s): change %v with previous record %v", in.SOPInstanceUID, ch.Kind, ch.Previous)
	case ch.Instance == nil || ch.Instance.SOPInstanceUID != in.SOPInstanceUID || ch.Instance.Key != in.Key:
		t.Errorf("Put(%s): change records %+v", in.SOPInstanceUID, ch.Instance)
	}
	return ch.Previous
}

// stored is what the index gives back of in: Header nil, ReceivedAt to
// the microsecond in UTC.
func stored(in *index.Instance) index.Instance {
	out := *in
	out.Header, out.Metadata = nil, nil
	out.ReceivedAt = in.ReceivedAt.Truncate(time.Microsecond).UTC()
	return out
}

func checkInstance(t *testing.T, db *sqlindex.DB, want *index.Instance) {
	t.Helper()
	got, err := db.Instance(t.Context(), want.SOPInstanceUID)
	if err != nil {
		t.Fatalf("Instance(%s): %v", want.SOPInstanceUID, err)
	}
	if w := stored(want); !reflect.DeepEqual(*got, w) {
		t.Errorf("Instance(%s) = %+v, want %+v", want.SOPInstanceUID, *got, w)
	}
}

func checkCounts(t *testing.T, db *sqlindex.DB, want index.Counts) {
	t.Helper()
	got, err := db.Counts(t.Context())
	if err != nil {
		t.Fatalf("Counts: %v", err)
	}
	if got != want {
		t.Errorf("Counts = %+v, want %+v", got, want)
	}
}

func getPatient(t *testing.T, db *sqlindex.DB, id, issuer string) *index.Patient {
	t.Helper()
	p, err := db.Patient(t.Context(), id, issuer)
	if err != nil {
		t.Fatalf("Patient(%q, %q): %v", id, issuer, err)
	}
	return p
}

func getStudy(t *testing.T, db *sqlindex.DB, uid string) *index.Study {
	t.Helper()
	s, err := db.Study(t.Context(), uid)
	if err != nil {
		t.Fatalf("Study(%s): %v", uid, err)
	}
	return s
}

func getSeries(t *testing.T, db *sqlindex.DB, uid string) *index.Series {
	t.Helper()
	s, err := db.Series(t.Context(), uid)
	if err != nil {
		t.Fatalf("Series(%s): %v", uid, err)
	}
	return s
}

func checkGone(t *testing.T, what string, err error) {
	t.Helper()
	if !errors.Is(err, index.ErrNotFound) {
		t.Errorf("%s: error %v, want ErrNotFound", what, err)
	}
}

func checkAttr(t *testing.T, what string, ds *dicom.Dataset, tg tag.Tag, want string) {
	t.Helper()
	if got := ds.String(tg); got != want {
		t.Errorf("%s %s = %q, want %q", what, tg, got, want)
	}
}

func testPutGet(t *testing.T, db *sqlindex.DB) {
	h := header(t,
		tag.PatientID, "PID1", tag.PatientName, "Doe^Jane", tag.PatientBirthDate, "19700101", tag.PatientSex, "F",
		tag.StudyDate, "20240501", tag.StudyTime, "120000", tag.AccessionNumber, "ACC1", tag.StudyDescription, "CT chest",
		tag.Modality, "CT", tag.SeriesNumber, "3", tag.SeriesDescription, "Axial",
		tag.InstanceNumber, "7", tag.Rows, "512", tag.Columns, "512",
	)
	in := instance("1.2.3.1", "1.2.3.100", "1.2.3", base, h)
	if replaced := put(t, db, in); replaced != nil {
		t.Errorf("Put of a new instance replaced %+v", replaced)
	}
	checkInstance(t, db, in)
	checkCounts(t, db, index.Counts{Patients: 1, Studies: 1, Series: 1, Instances: 1})

	p := getPatient(t, db, "PID1", "")
	checkAttr(t, "patient", p.Attributes, tag.PatientName, "Doe^Jane")
	checkAttr(t, "patient", p.Attributes, tag.PatientBirthDate, "19700101")
	checkAttr(t, "patient", p.Attributes, tag.PatientID, "PID1")
	if p.NumberOfPatientRelatedStudies != 1 || p.NumberOfPatientRelatedSeries != 1 || p.NumberOfPatientRelatedInstances != 1 {
		t.Errorf("patient aggregates = %d/%d/%d, want 1/1/1", p.NumberOfPatientRelatedStudies, p.NumberOfPatientRelatedSeries, p.NumberOfPatientRelatedInstances)
	}
	if p.UpdatedAt.IsZero() {
		t.Errorf("patient UpdatedAt is zero")
	}

	s := getStudy(t, db, "1.2.3")
	if s.PatientID != "PID1" || s.IssuerOfPatientID != "" {
		t.Errorf("study patient = %q/%q, want PID1/\"\"", s.PatientID, s.IssuerOfPatientID)
	}
	checkAttr(t, "study", s.Attributes, tag.StudyInstanceUID, "1.2.3")
	checkAttr(t, "study", s.Attributes, tag.AccessionNumber, "ACC1")
	checkAttr(t, "study", s.Attributes, tag.StudyDescription, "CT chest")
	if _, ok := s.Attributes.Find(tag.PatientName); ok {
		t.Errorf("study attributes hold the patient's name")
	}
	if !slices.Equal(s.ModalitiesInStudy, []string{"CT"}) || !slices.Equal(s.SOPClassesInStudy, []string{ctImage}) {
		t.Errorf("study modalities %q, SOP classes %q", s.ModalitiesInStudy, s.SOPClassesInStudy)
	}
	if s.NumberOfStudyRelatedSeries != 1 || s.NumberOfStudyRelatedInstances != 1 {
		t.Errorf("study aggregates = %d/%d, want 1/1", s.NumberOfStudyRelatedSeries, s.NumberOfStudyRelatedInstances)
	}

	se := getSeries(t, db, "1.2.3.100")
	if se.StudyInstanceUID != "1.2.3" || se.NumberOfSeriesRelatedInstances != 1 {
		t.Errorf("series study %s, instances %d", se.StudyInstanceUID, se.NumberOfSeriesRelatedInstances)
	}
	checkAttr(t, "series", se.Attributes, tag.Modality, "CT")
	checkAttr(t, "series", se.Attributes, tag.SeriesNumber, "3")

	ia, err := db.InstanceAttributes(t.Context(), "1.2.3.1")
	if err != nil {
		t.Fatalf("InstanceAttributes: %v", err)
	}
	checkAttr(t, "instance", ia, tag.InstanceNumber, "7")
	checkAttr(t, "instance", ia, tag.Rows, "512")
	checkAttr(t, "instance", ia, tag.SOPClassUID, ctImage)
	checkAttr(t, "instance", ia, tag.SOPInstanceUID, "1.2.3.1")
}

func testNotFound(t *testing.T, db *sqlindex.DB) {
	ctx := t.Context()
	_, err := db.Instance(ctx, "9.9.9")
	checkGone(t, "Instance", err)
	checkGone(t, "Delete", db.Delete(ctx, "9.9.9"))
	_, err = db.Study(ctx, "9.9.9")
	checkGone(t, "Study", err)
	_, err = db.Series(ctx, "9.9.9")
	checkGone(t, "Series", err)
	_, err = db.Patient(ctx, "nobody", "")
	checkGone(t, "Patient", err)
	_, err = db.InstanceAttributes(ctx, "9.9.9")
	checkGone(t, "InstanceAttributes", err)
	checkCounts(t, db, index.Counts{})
	for in, err := range db.Instances(ctx) {
		t.Errorf("Instances of an empty index yielded %v, %v", in, err)
	}
}

func testReplace(t *testing.T, db *sqlindex.DB) {
	first := instance("1.2.3.1", "1.2.3.100", "1.2.3", base, patientHeader(t, "P", "", "Doe^Jane"))
	put(t, db, first)
	second := instance("1.2.3.1", "1.2.3.100", "1.2.3", base.Add(time.Minute), patientHeader(t, "P", "", "Doe^Janet"))
	second.Key = "elsewhere/1.2.3.1.dcm"
	second.Size = 4242
	second.SHA256 = strings.Repeat("cd", 32)
	second.TransferSyntaxUID = "1.2.840.10008.1.2.4.50"
	second.CallingAE = "OTHER"
	second.SOPClassUID = mrImage
	replaced := put(t, db, second)
	if replaced == nil {
		t.Fatalf("Put of an indexed instance returned no replaced record")
	}
	if w := stored(first); !reflect.DeepEqual(*replaced, w) {
		t.Errorf("replaced = %+v, want %+v", *replaced, w)
	}
	checkInstance(t, db, second)
	checkCounts(t, db, index.Counts{Patients: 1, Studies: 1, Series: 1, Instances: 1})
	s := getStudy(t, db, "1.2.3")
	if !slices.Equal(s.SOPClassesInStudy, []string{mrImage}) || s.NumberOfStudyRelatedInstances != 1 {
		t.Errorf("study after replace: SOP classes %q, %d instances", s.SOPClassesInStudy, s.NumberOfStudyRelatedInstances)
	}
	checkAttr(t, "patient", getPatient(t, db, "P", "").Attributes, tag.PatientName, "Doe^Janet")
}

func testDelete(t *testing.T, db *sqlindex.DB) {
	h := patientHeader(t, "P", "", "Doe^Jane")
	a := instance("1.2.3.1", "1.2.3.100", "1.2.3", base, h)
	b := instance("1.2.3.2", "1.2.3.100", "1.2.3", base, h)
	put(t, db, a)
	put(t, db, b)
	if err := db.Delete(t.Context(), a.SOPInstanceUID); err != nil {
		t.Fatalf("Delete: %v", err)
	}
	_, err := db.Instance(t.Context(), a.SOPInstanceUID)
	checkGone(t, "Instance of a deleted instance", err)
	checkInstance(t, db, b)
	checkCounts(t, db, index.Counts{Patients: 1, Studies: 1, Series: 1, Instances: 1})
	if n := getSeries(t, db, "1.2.3.100").NumberOfSeriesRelatedInstances; n != 1 {
		t.Errorf("series has %d instances after a delete, want 1", n)
	}
	if err := db.Delete(t.Context(), b.SOPInstanceUID); err != nil {
		t.Fatalf("Delete: %v", err)
	}
	checkCounts(t, db, index.Counts{})
	_, err = db.Study(t.Context(), "1.2.3")
	checkGone(t, "Study left empty", err)
	_, err = db.Series(t.Context(), "1.2.3.100")
	checkGone(t, "Series left empty", err)
	_, err = db.Patient(t.Context(), "P", "")
	checkGone(t, "Patient left empty", err)
	checkGone(t, "Delete again", db.Delete(t.Context(), b.SOPInstanceUID))
}

// testMove puts instances again under other parents, as a corrected
// resend does.
func testMove(t *testing.T, db *sqlindex.DB) {
	p1 := patientHeader(t, "P1", "", "One")
	p2 := patientHeader(t, "P2", "", "Two")
	x := instance("1.1", "1.100", "1", base, p1)
	y := instance("1.2", "1.100", "1", base, p1)
	put(t, db, x)
	put(t, db, y)

	// x moves to another series, study and patient; y keeps the old ones.
	x2 := instance("1.1", "2.100", "2", base.Add(time.Second), p2)
	if r := put(t, db, x2); r == nil || r.SeriesInstanceUID != "1.100" {
		t.Fatalf("replaced = %+v, want the record in series 1.100", r)
	}
	checkCounts(t, db, index.Counts{Patients: 2, Studies: 2, Series: 2, Instances: 2})
	if n := getSeries(t, db, "1.100").NumberOfSeriesRelatedInstances; n != 1 {
		t.Errorf("old series has %d instances, want 1", n)
	}
	if s := getStudy(t, db, "1"); s.NumberOfStudyRelatedInstances != 1 || s.NumberOfStudyRelatedSeries != 1 {
		t.Errorf("old study has %d series, %d instances, want 1, 1", s.NumberOfStudyRelatedSeries, s.NumberOfStudyRelatedInstances)
	}
	if p := getPatient(t, db, "P1", ""); p.NumberOfPatientRelatedInstances != 1 {
		t.Errorf("old patient has %d instances, want 1", p.NumberOfPatientRelatedInstances)
	}
	if s := getStudy(t, db, "2"); s.PatientID != "P2" || s.NumberOfStudyRelatedInstances != 1 {
		t.Errorf("new study of patient %s with %d instances", s.PatientID, s.NumberOfStudyRelatedInstances)
	}

	// y follows: the old series, study and patient are left empty.
	put(t, db, instance("1.2", "2.100", "2", base.Add(2*time.Second), p2))
	checkCounts(t, db, index.Counts{Patients: 1, Studies: 1, Series: 1, Instances: 2})
	for _, uid := range []string{"1.100"} {
		_, err := db.Series(t.Context(), uid)
		checkGone(t, "old series", err)
	}
	_, err := db.Study(t.Context(), "1")
	checkGone(t, "old study", err)
	_, err = db.Patient(t.Context(), "P1", "")
	checkGone(t, "old patient", err)
	if p := getPatient(t, db, "P2", ""); p.NumberOfPatientRelatedStudies != 1 || p.NumberOfPatientRelatedSeries != 1 || p.NumberOfPatientRelatedInstances != 2 {
		t.Errorf("new patient aggregates %d/%d/%d, want 1/1/2", p.NumberOfPatientRelatedStudies, p.NumberOfPatientRelatedSeries, p.NumberOfPatientRelatedInstances)
	}

	// A newer instance of series 2.100 that names study 3 takes the
	// series, and the instances in it, to study 3 and its patient.
	put(t, db, instance("1.3", "2.100", "3", base.Add(3*time.Second), patientHeader(t, "P3", "", "Three")))
	checkCounts(t, db, index.Counts{Patients: 1, Studies: 1, Series: 1, Instances: 3})
	if s := getSeries(t, db, "2.100"); s.StudyInstanceUID != "3" || s.NumberOfSeriesRelatedInstances != 3 {
		t.Errorf("series in study %s with %d instances, want 3, 3", s.StudyInstanceUID, s.NumberOfSeriesRelatedInstances)
	}
	if p := getPatient(t, db, "P3", ""); p.NumberOfPatientRelatedInstances != 3 {
		t.Errorf("patient P3 has %d instances, want 3", p.NumberOfPatientRelatedInstances)
	}
	// The instance records keep the UIDs they were put with.
	if in, err := db.Instance(t.Context(), "1.2"); err != nil || in.StudyInstanceUID != "2" {
		t.Errorf("Instance(1.2) = %+v, %v; want the study it was put with", in, err)
	}
}

func testAggregates(t *testing.T, db *sqlindex.DB) {
	h := patientHeader(t, "P", "", "Doe")
	ct := with(t, h, tag.Modality, "CT")
	pr := with(t, h, tag.Modality, "PR")
	put(t, db, instance("1.1", "1.100", "1", base, ct))
	put(t, db, instance("1.2", "1.100", "1", base, ct))
	p := instance("1.3", "1.200", "1", base, pr)
	p.SOPClassUID = prState
	put(t, db, p)
	other := instance("2.1", "2.100", "2", base, with(t, h, tag.Modality, "MR"))
	other.SOPClassUID = mrImage
	put(t, db, other)

	s := getStudy(t, db, "1")
	// Both sorted as text.
	if !slices.Equal(s.ModalitiesInStudy, []string{"CT", "PR"}) || !slices.Equal(s.SOPClassesInStudy, []string{prState, ctImage}) {
		t.Errorf("modalities %q, SOP classes %q", s.ModalitiesInStudy, s.SOPClassesInStudy)
	}
	if s.NumberOfStudyRelatedSeries != 2 || s.NumberOfStudyRelatedInstances != 3 {
		t.Errorf("study aggregates %d/%d, want 2/3", s.NumberOfStudyRelatedSeries, s.NumberOfStudyRelatedInstances)
	}
	pt := getPatient(t, db, "P", "")
	if pt.NumberOfPatientRelatedStudies != 2 || pt.NumberOfPatientRelatedSeries != 3 || pt.NumberOfPatientRelatedInstances != 4 {
		t.Errorf("patient aggregates %d/%d/%d, want 2/3/4", pt.NumberOfPatientRelatedStudies, pt.NumberOfPatientRelatedSeries, pt.NumberOfPatientRelatedInstances)
	}

	if err := db.Delete(t.Context(), "1.3"); err != nil {
		t.Fatal(err)
	}
	s = getStudy(t, db, "1")
	if !slices.Equal(s.ModalitiesInStudy, []string{"CT"}) || !slices.Equal(s.SOPClassesInStudy, []string{ctImage}) {
		t.Errorf("after delete: modalities %q, SOP classes %q", s.ModalitiesInStudy, s.SOPClassesInStudy)
	}
	pt = getPatient(t, db, "P", "")
	if pt.NumberOfPatientRelatedStudies != 2 || pt.NumberOfPatientRelatedSeries != 2 || pt.NumberOfPatientRelatedInstances != 3 {
		t.Errorf("after delete: patient aggregates %d/%d/%d, want 2/2/3", pt.NumberOfPatientRelatedStudies, pt.NumberOfPatientRelatedSeries, pt.NumberOfPatientRelatedInstances)
	}
}

func testPatientIssuer(t *testing.T, db *sqlindex.DB) {
	put(t, db, instance("1.1", "1.100", "1", base, patientHeader(t, "12345", "TRUST-A", "Smith^Ann")))
	put(t, db, instance("2.1", "2.100", "2", base, patientHeader(t, "12345", "TRUST-B", "Jones^Bob")))
	put(t, db, instance("3.1", "3.100", "3", base, patientHeader(t, "12345", "", "Brown^Cy")))
	put(t, db, instance("4.1", "4.100", "4", base, patientHeader(t, "12345", "TRUST-A", "Smith^Ann")))
	checkCounts(t, db, index.Counts{Patients: 3, Studies: 4, Series: 4, Instances: 4})
	for _, c := range []struct{ issuer, name string }{{"TRUST-A", "Smith^Ann"}, {"TRUST-B", "Jones^Bob"}, {"", "Brown^Cy"}} {
		p := getPatient(t, db, "12345", c.issuer)
		checkAttr(t, "patient of "+c.issuer, p.Attributes, tag.PatientName, c.name)
		checkAttr(t, "patient of "+c.issuer, p.Attributes, tag.IssuerOfPatientID, c.issuer)
	}
	if n := getPatient(t, db, "12345", "TRUST-A").NumberOfPatientRelatedStudies; n != 2 {
		t.Errorf("TRUST-A's patient has %d studies, want 2", n)
	}
	if s := getStudy(t, db, "2"); s.PatientID != "12345" || s.IssuerOfPatientID != "TRUST-B" {
		t.Errorf("study 2 belongs to %q/%q", s.PatientID, s.IssuerOfPatientID)
	}
	_, err := db.Patient(t.Context(), "12345", "TRUST-C")
	checkGone(t, "Patient of another issuer", err)
}

func testLatestInstanceWins(t *testing.T, db *sqlindex.DB) {
	h := func(name, desc, mod string) *dicom.Dataset {
		return with(t, patientHeader(t, "P", "", name), tag.StudyDescription, desc, tag.Modality, mod)
	}
	put(t, db, instance("1.1", "1.100", "1", base.Add(10*time.Second), h("Old^Name", "first", "CT")))
	put(t, db, instance("1.2", "1.100", "1", base.Add(20*time.Second), h("New^Name", "second", "MR")))
	check := func(name, desc, mod string) {
		t.Helper()
		checkAttr(t, "patient", getPatient(t, db, "P", "").Attributes, tag.PatientName, name)
		checkAttr(t, "study", getStudy(t, db, "1").Attributes, tag.StudyDescription, desc)
		checkAttr(t, "series", getSeries(t, db, "1.100").Attributes, tag.Modality, mod)
	}
	check("New^Name", "second", "MR")
	// Received earlier, indexed later: it does not overwrite.
	put(t, db, instance("1.3", "1.100", "1", base.Add(15*time.Second), h("Older^Name", "third", "OT")))
	check("New^Name", "second", "MR")
	// Received at the same time: the later put wins.
	put(t, db, instance("1.4", "1.100", "1", base.Add(20*time.Second), h("Same^Time", "fourth", "US")))
	check("Same^Time", "fourth", "US")
	if m := getStudy(t, db, "1").ModalitiesInStudy; !slices.Equal(m, []string{"US"}) {
		t.Errorf("ModalitiesInStudy = %q, want the series' latest modality", m)
	}

	// The study follows the patient of its latest instance; the patient
	// left without studies is deleted. An older instance naming a third
	// patient changes nothing and leaves no patient behind.
	put(t, db, instance("1.5", "1.100", "1", base.Add(30*time.Second), patientHeader(t, "Q", "", "Other^Patient")))
	if s := getStudy(t, db, "1"); s.PatientID != "Q" {
		t.Errorf("study belongs to %q, want Q", s.PatientID)
	}
	_, err := db.Patient(t.Context(), "P", "")
	checkGone(t, "patient left without studies", err)
	put(t, db, instance("1.6", "1.100", "1", base, patientHeader(t, "R", "", "Third^Patient")))
	if s := getStudy(t, db, "1"); s.PatientID != "Q" {
		t.Errorf("study belongs to %q after an older instance, want Q", s.PatientID)
	}
	_, err = db.Patient(t.Context(), "R", "")
	checkGone(t, "patient of an older instance", err)
	checkCounts(t, db, index.Counts{Patients: 1, Studies: 1, Series: 1, Instances: 6})
	if p := getPatient(t, db, "Q", ""); p.NumberOfPatientRelatedInstances != 6 {
		t.Errorf("patient Q has %d instances, want 6", p.NumberOfPatientRelatedInstances)
	}
}

func testNonASCII(t *testing.T, db *sqlindex.DB) {
	names := []struct{ id, name, norm string }{
		{"JP", "Yamada^Tarou=山田^太郎=やまだ^たろう", "YAMADA^TAROU=山田^太郎=やまだ^たろう"},
		{"DE", "Müller^Jürgen", "MÜLLER^JÜRGEN"},
		{"FR", "d'Ételan^Zoë^^^", "D'ÉTELAN^ZOË"},
		{"GR", "Παπαδόπουλος^Νίκος", "ΠΑΠΑΔΌΠΟΥΛΟΣ^ΝΊΚΟΣ"},
		{"KR", "Hong^Gildong==홍^길동", "HONG^GILDONG==홍^길동"},
		{"EMPTY-GROUPS", "Doe^John==", "DOE^JOHN"},
	}
	for i, n := range names {
		h := with(t, patientHeader(t, n.id, "", n.name),
			tag.OtherPatientNames, []string{n.name, "alias^one"},
			tag.ReferringPhysicianName, "Øster^Åse",
			tag.StudyDescription, "Thorax ¾ Ansicht – 胸部")
		put(t, db, instance(fmt.Sprintf("1.%d", i), fmt.Sprintf("1.%d.1", i), fmt.Sprintf("%d", i+1), base, h))
		p := getPatient(t, db, n.id, "")
		checkAttr(t, "patient", p.Attributes, tag.PatientName, n.name)
		if got := p.Search[tag.PatientName]; got != n.norm {
			t.Errorf("normalized name of %q = %q, want %q", n.name, got, n.norm)
		}
		if got, want := p.Search[tag.OtherPatientNames], n.norm+`\ALIAS^ONE`; got != want {
			t.Errorf("normalized other names = %q, want %q", got, want)
		}
		if got := p.Attributes.Strings(tag.OtherPatientNames); !slices.Equal(got, []string{n.name, "alias^one"}) {
			t.Errorf("other names = %q", got)
		}
		s := getStudy(t, db, fmt.Sprintf("%d", i+1))
		checkAttr(t, "study", s.Attributes, tag.StudyDescription, "Thorax ¾ Ansicht – 胸部")
		if got := s.Search[tag.ReferringPhysicianName]; got != "ØSTER^ÅSE" {
			t.Errorf("normalized referring physician = %q", got)
		}
	}
}

// attr is an attribute the index keeps, with a value to put.
type attr struct {
	tag tag.Tag
	v   any
}

// testAllAttributes puts an instance whose header has every attribute
// the index keeps, and reads each back at its level.
func testAllAttributes(t *testing.T, db *sqlindex.DB) {
	code := func(value, scheme, meaning string) *dicom.Dataset {
		return header(t, tag.CodeValue, value, tag.CodingSchemeDesignator, scheme, tag.CodeMeaning, meaning)
	}
	patient := []attr{
		{tag.PatientID, "PID-9"},
		{tag.IssuerOfPatientID, "HOSP"},
		{tag.PatientName, "Doe^Jane^Q^Dr^PhD"},
		{tag.IssuerOfPatientIDQualifiersSequence, []*dicom.Dataset{header(t, tag.UniversalEntityID, "1.2.3.4", tag.UniversalEntityIDType, "ISO")}},
		{tag.ReferencedPatientSequence, []*dicom.Dataset{header(t, tag.ReferencedSOPClassUID, "1.2.840.10008.3.1.2.1.1", tag.ReferencedSOPInstanceUID, "1.2.3.9")}},
		{tag.PatientBirthDate, "19800229"},
		{tag.PatientBirthTime, "235959.999999"},
		{tag.PatientSex, "O"},
		{tag.OtherPatientIDs, `OLD-1\OLD-2`},
		{tag.OtherPatientIDsSequence, []*dicom.Dataset{
			header(t, tag.PatientID, "X1", tag.IssuerOfPatientID, "OTHER", tag.TypeOfPatientID, "TEXT"),
			header(t, tag.PatientID, "X2", tag.IssuerOfPatientID, "THIRD", tag.TypeOfPatientID, "TEXT"),
		}},
		{tag.OtherPatientNames, `Roe^Jane\Smith^J`},
		{tag.EthnicGroup, "Unknown"},
		{tag.PatientComments, `Free text with a \ backslash`},
		{tag.PatientSpeciesDescription, "Canis lupus familiaris"},
		{tag.PatientSpeciesCodeSequence, []*dicom.Dataset{code("448771007", "SCT", "Canis lupus familiaris")}},
		{tag.PatientBreedDescription, "Beagle"},
		{tag.PatientBreedCodeSequence, []*dicom.Dataset{code("132387000", "SCT", "Beagle dog")}},
		{tag.BreedRegistrationSequence, []*dicom.Dataset{header(t, tag.BreedRegistrationNumber, "B-1")}},
		{tag.ResponsiblePerson, "Owner^Olga"},
		{tag.ResponsiblePersonRole, "OWNER"},
		{tag.ResponsibleOrganization, "Kennel Club"},
	}
	study := []attr{
		{tag.StudyInstanceUID, "1.2.9"},
		{tag.StudyDate, "20240501"},
		{tag.StudyTime, "101112.131415"},
		{tag.AccessionNumber, "A-77"},
		{tag.IssuerOfAccessionNumberSequence, []*dicom.Dataset{header(t, tag.LocalNamespaceEntityID, "RIS")}},
		{tag.StudyID, "S-1"},
		{tag.ReferringPhysicianName, "Ref^Rita"},
		{tag.StudyDescription, "MR brain"},
		{tag.ProcedureCodeSequence, []*dicom.Dataset{code("P-1", "99LOCAL", "Brain MR")}},
		{tag.NameOfPhysiciansReadingStudy, `Read^One\Read^Two`},
		{tag.AdmittingDiagnosesDescription, `Headache\Nausea`},
		{tag.ReferencedStudySequence, []*dicom.Dataset{header(t, tag.ReferencedSOPClassUID, "1.2.840.10008.3.1.2.3.1", tag.ReferencedSOPInstanceUID, "1.2.9.9")}},
		{tag.PatientAge, "044Y"},
		{tag.PatientSize, "1.72"},
		{tag.PatientWeight, "70.5"},
		{tag.Occupation, "Engineer"},
		{tag.AdditionalPatientHistory, "None"},
		{tag.TimezoneOffsetFromUTC, "+0200"},
	}
	series := []attr{
		{tag.SeriesInstanceUID, "1.2.9.1"},
		{tag.Modality, "MR"},
		{tag.SeriesNumber, "4"},
		{tag.SeriesDescription, "T1 sag"},
		{tag.SeriesDate, "20240501"},
		{tag.SeriesTime, "101500"},
		{tag.BodyPartExamined, "HEAD"},
		{tag.Laterality, "L"},
		{tag.PerformedProcedureStepStartDate, "20240501"},
		{tag.PerformedProcedureStepStartTime, "101000"},
		{tag.PerformedProcedureStepID, "PPS-1"},
		{tag.PerformedProcedureStepDescription, "Brain routine"},
		{tag.RequestAttributesSequence, []*dicom.Dataset{
			header(t, tag.ScheduledProcedureStepID, "SPS-1", tag.RequestedProcedureID, "RP-1"),
			header(t, tag.ScheduledProcedureStepID, "SPS-2", tag.RequestedProcedureID, "RP-2"),
		}},
		{tag.InstitutionName, "General Hospital"},
		{tag.InstitutionalDepartmentName, "Radiology"},
		{tag.StationName, "MR1"},
		{tag.PerformingPhysicianName, "Perf^Paul"},
		{tag.OperatorsName, `Op^One\Op^Two`},
		{tag.Manufacturer, "ACME"},
		{tag.ManufacturerModelName, "Magnet 3000"},
		{tag.ProtocolName, "BRAIN_T1"},
		{tag.TimezoneOffsetFromUTC, "+0200"},
	}
	inst := []attr{
		{tag.SOPClassUID, srBasic},
		{tag.SOPInstanceUID, "1.2.9.1.1"},
		{tag.InstanceNumber, "12"},
		{tag.ContentDate, "20240502"},
		{tag.ContentTime, "080000"},
		{tag.AcquisitionDateTime, "20240501101500.000000+0200"},
		{tag.Rows, "256"},
		{tag.Columns, "192"},
		{tag.BitsAllocated, "16"},
		{tag.NumberOfFrames, "3"},
		{tag.PhotometricInterpretation, "MONOCHROME2"},
		{tag.ImageType, `ORIGINAL\PRIMARY\AXIAL`},
		{tag.ContentLabel, "LABEL"},
		{tag.ContentDescription, "A description"},
		{tag.CompletionFlag, "COMPLETE"},
		{tag.VerificationFlag, "VERIFIED"},
		{tag.ConceptNameCodeSequence, []*dicom.Dataset{code("18748-4", "LN", "Diagnostic imaging report")}},
		{tag.ContentTemplateSequence, []*dicom.Dataset{header(t, tag.MappingResource, "DCMR", tag.TemplateIdentifier, "2000")}},
		{tag.ObservationDateTime, "20240502080000"},
		{tag.TimezoneOffsetFromUTC, "+0200"},
	}
	var pairs []any
	for _, level := range [][]attr{patient, study, series, inst} {
		for _, a := range level {
			// Timezone Offset From UTC is kept at three levels.
			if !slices.Contains(pairs, any(a.tag)) {
				pairs = append(pairs, a.tag, a.v)
			}
		}
	}
	in := instance("1.2.9.1.1", "1.2.9.1", "1.2.9", base, header(t, pairs...))
	in.SOPClassUID = srBasic
	put(t, db, in)

	p := getPatient(t, db, "PID-9", "HOSP")
	checkLevel(t, "patient", p.Attributes, patient)
	checkLevel(t, "study", getStudy(t, db, "1.2.9").Attributes, study)
	se := getSeries(t, db, "1.2.9.1")
	checkLevel(t, "series", se.Attributes, series)
	ia, err := db.InstanceAttributes(t.Context(), "1.2.9.1.1")
	if err != nil {
		t.Fatalf("InstanceAttributes: %v", err)
	}
	checkLevel(t, "instance", ia, inst)

	for tg, want := range map[tag.Tag]string{
		tag.ScheduledProcedureStepID: `SPS-1\SPS-2`,
		tag.RequestedProcedureID:     `RP-1\RP-2`,
		tag.PerformingPhysicianName:  "PERF^PAUL",
		tag.OperatorsName:            `OP^ONE\OP^TWO`,
	} {
		if got := se.Search[tg]; got != want {
			t.Errorf("series search value of %s = %q, want %q", tg, got, want)
		}
	}
	for tg, want := range map[tag.Tag]string{
		tag.PatientName:       "DOE^JANE^Q^DR^PHD",
		tag.OtherPatientNames: `ROE^JANE\SMITH^J`,
		tag.ResponsiblePerson: "OWNER^OLGA",
	} {
		if got := p.Search[tg]; got != want {
			t.Errorf("patient search value of %s = %q, want %q", tg, got, want)
		}
	}
}

// checkLevel checks that ds holds exactly the attributes of a level, with
// their values; sequences are compared as DICOM JSON.
func checkLevel(t *testing.T, level string, ds *dicom.Dataset, want []attr) {
	t.Helper()
	for _, a := range want {
		e, ok := ds.Find(a.tag)
		if !ok {
			t.Errorf("%s: %s is missing", level, a.tag)
			continue
		}
		switch v := a.v.(type) {
		case string:
			if w := values(a.tag, v); !slices.Equal(e.Values, w) {
				t.Errorf("%s: %s = %q, want %q", level, a.tag, e.Values, w)
			}
		case []*dicom.Dataset:
			got, _ := json.Marshal(e.Items)
			w, _ := json.Marshal(v)
			if string(got) != string(w) {
				t.Errorf("%s: %s = %s, want %s", level, a.tag, got, w)
			}
		}
	}
	if len(ds.Elements) != len(want) {
		var tags []string
		for _, e := range ds.Elements {
			tags = append(tags, e.Tag.String())
		}
		t.Errorf("%s: %d attributes %v, want %d", level, len(ds.Elements), tags, len(want))
	}
}

// testPartialHeader puts instances whose header is missing or holds only
// a part of what the index reads.
func testPartialHeader(t *testing.T, db *sqlindex.DB) {
	put(t, db, instance("1.1", "1.100", "1", base, nil))
	put(t, db, instance("1.2", "1.100", "1", base, &dicom.Dataset{}))
	put(t, db, instance("2.1", "2.100", "2", base, header(t, tag.PatientName, "Only^Name", tag.Modality, "CT")))
	checkCounts(t, db, index.Counts{Patients: 2, Studies: 2, Series: 2, Instances: 3})
	// Instances without a Patient ID are filed under a patient of their
	// own study, never merged with another study's.
	p, err := db.StudyPatient(t.Context(), "1")
	if err != nil {
		t.Fatal(err)
	}
	if p.PatientID != "" || p.NumberOfPatientRelatedStudies != 1 || p.NumberOfPatientRelatedInstances != 2 {
		t.Errorf("unidentified patient of study 1: %q, %d studies, %d instances", p.PatientID, p.NumberOfPatientRelatedStudies, p.NumberOfPatientRelatedInstances)
	}
	if p, err := db.StudyPatient(t.Context(), "2"); err != nil || p.Attributes.String(tag.PatientName) != "Only^Name" || p.NumberOfPatientRelatedInstances != 1 {
		t.Errorf("unidentified patient of study 2: %+v, %v", p, err)
	}
	if _, err := db.Patient(t.Context(), "", ""); !errors.Is(err, index.ErrNotFound) {
		t.Errorf("Patient with no ID = %v, want ErrNotFound", err)
	}
	// The study's patient follows its latest instance: once one carries
	// an ID, the study joins that patient and the unidentified one goes.
	put(t, db, instance("2.2", "2.100", "2", base.Add(time.Hour), header(t, tag.PatientID, "PID-2", tag.PatientName, "Only^Name", tag.Modality, "CT")))
	if p, err := db.StudyPatient(t.Context(), "2"); err != nil || p.PatientID != "PID-2" {
		t.Errorf("study 2's patient after an identified instance: %+v, %v", p, err)
	}
	checkCounts(t, db, index.Counts{Patients: 2, Studies: 2, Series: 2, Instances: 4})
	ia, err := db.InstanceAttributes(t.Context(), "1.1")
	if err != nil {
		t.Fatal(err)
	}
	if len(ia.Elements) != 2 {
		t.Errorf("instance without header has attributes %+v, want only its UIDs", ia.Elements)
	}
	if s := getSeries(t, db, "2.100"); s.Attributes.String(tag.Modality) != "CT" {
		t.Errorf("series attributes %+v", s.Attributes.Elements)
	}
	// A value that is not a number is kept as absent in a number column.
	put(t, db, instance("1.3", "1.100", "1", base, header(t, tag.InstanceNumber, "twelve", tag.Rows, "")))
	ia, err = db.InstanceAttributes(t.Context(), "1.3")
	if err != nil {
		t.Fatal(err)
	}
	if e, ok := ia.Find(tag.InstanceNumber); ok {
		t.Errorf("InstanceNumber %q kept", e.Values)
	}
}

// testConcurrent puts the instances of one study from many goroutines at
// once, with readers alongside, and checks that nothing is lost.
func testConcurrent(t *testing.T, db *sqlindex.DB) {
	const writers, each, seriesN = 8, 20, 4
	h := with(t, patientHeader(t, "P", "", "Doe"), tag.Modality, "CT")
	ctx := t.Context()
	var wg sync.WaitGroup
	errs := make(chan error, writers+1)
	stop := make(chan struct{})
	wg.Go(func() {
		for {
			select {
			case <-stop:
				return
			default:
			}
			if _, err := db.Study(ctx, "1"); err != nil && !errors.Is(err, index.ErrNotFound) {
				errs <- fmt.Errorf("study: %w", err)
				return
			}
			if _, err := db.Counts(ctx); err != nil {
				errs <- fmt.Errorf("counts: %w", err)
				return
			}
		}
	})
	var writersWG sync.WaitGroup
	for w := range writers {
		writersWG.Go(func() {
			for i := range each {
				in := instance(fmt.Sprintf("1.%d.%d", w, i), fmt.Sprintf("1.100.%d", (w+i)%seriesN), "1", base.Add(time.Duration(i)*time.Millisecond), h)
				if _, err := db.Put(ctx, &index.PutRequest{Instance: in}); err != nil {
					errs <- err
					return
				}
			}
		})
	}
	writersWG.Wait()
	close(stop)
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
	checkCounts(t, db, index.Counts{Patients: 1, Studies: 1, Series: seriesN, Instances: writers * each})
	s := getStudy(t, db, "1")
	if s.NumberOfStudyRelatedSeries != seriesN || s.NumberOfStudyRelatedInstances != writers*each {
		t.Errorf("study aggregates %d/%d, want %d/%d", s.NumberOfStudyRelatedSeries, s.NumberOfStudyRelatedInstances, seriesN, writers*each)
	}
	for i := range seriesN {
		if n := getSeries(t, db, fmt.Sprintf("1.100.%d", i)).NumberOfSeriesRelatedInstances; n != writers*each/seriesN {
			t.Errorf("series %d has %d instances, want %d", i, n, writers*each/seriesN)
		}
	}
	if n := getPatient(t, db, "P", "").NumberOfPatientRelatedInstances; n != writers*each {
		t.Errorf("patient has %d instances, want %d", n, writers*each)
	}
}

// testConcurrentSameInstance puts one instance from many goroutines at
// once, under alternating parents. The archive serializes that itself;
// the index must stay consistent even when it does not.
func testConcurrentSameInstance(t *testing.T, db *sqlindex.DB) {
	const n = 16
	var wg sync.WaitGroup
	errs := make(chan error, n)
	for i := range n {
		study := fmt.Sprintf("%d", i%2+1)
		in := instance("9.1", study+".100", study, base.Add(time.Duration(i)*time.Second), patientHeader(t, "P"+study, "", "X"))
		wg.Go(func() {
			if _, err := db.Put(t.Context(), &index.PutRequest{Instance: in}); err != nil {
				errs <- err
			}
		})
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
	checkCounts(t, db, index.Counts{Patients: 1, Studies: 1, Series: 1, Instances: 1})
}

// testAtomic makes a put fail after its patient, study and series are
// written, on an SOP Instance UID longer than the 64 characters a UID may
// have (PS3.5 §9), and checks that none of it remains.
func testAtomic(t *testing.T, db *sqlindex.DB) {
	put(t, db, instance("1.1", "1.100", "1", base, with(t, patientHeader(t, "P1", "", "First"), tag.StudyDescription, "before")))
	before := getStudy(t, db, "1")

	bad := instance("1."+strings.Repeat("9", 63), "1.200", "1", base.Add(time.Hour),
		with(t, patientHeader(t, "P2", "", "Second"), tag.StudyDescription, "after"))
	if _, err := db.Put(t.Context(), &index.PutRequest{Instance: bad}); err == nil {
		t.Fatalf("Put of an instance with a %d-character UID succeeded", len(bad.SOPInstanceUID))
	}
	checkCounts(t, db, index.Counts{Patients: 1, Studies: 1, Series: 1, Instances: 1})
	after := getStudy(t, db, "1")
	if after.PatientID != "P1" || after.Attributes.String(tag.StudyDescription) != "before" || after.NumberOfStudyRelatedSeries != 1 {
		t.Errorf("study after a failed put: patient %s, description %q, %d series", after.PatientID, after.Attributes.String(tag.StudyDescription), after.NumberOfStudyRelatedSeries)
	}
	if !after.UpdatedAt.Equal(before.UpdatedAt) {
		t.Errorf("study UpdatedAt changed from %v to %v by a failed put", before.UpdatedAt, after.UpdatedAt)
	}
	_, err := db.Patient(t.Context(), "P2", "")
	checkGone(t, "patient of a failed put", err)
	_, err = db.Series(t.Context(), "1.200")
	checkGone(t, "series of a failed put", err)

	// Too long a study or series UID fails the same way, at other points.
	for _, in := range []*index.Instance{
		instance("2.1", "2.100", "2."+strings.Repeat("8", 63), base, patientHeader(t, "P3", "", "Third")),
		instance("2.1", "2."+strings.Repeat("8", 63), "2", base, patientHeader(t, "P3", "", "Third")),
	} {
		if _, err := db.Put(t.Context(), &index.PutRequest{Instance: in}); err == nil {
			t.Errorf("Put of %+v succeeded", in)
		}
	}
	checkCounts(t, db, index.Counts{Patients: 1, Studies: 1, Series: 1, Instances: 1})

	// The DB is still usable.
	put(t, db, instance("1.2", "1.100", "1", base, patientHeader(t, "P1", "", "First")))
	checkCounts(t, db, index.Counts{Patients: 1, Studies: 1, Series: 1, Instances: 2})
}

func testCancelledContext(t *testing.T, db *sqlindex.DB) {
	put(t, db, instance("1.1", "1.100", "1", base, patientHeader(t, "P", "", "Doe")))
	ctx, cancel := context.WithCancel(t.Context())
	cancel()
	if _, err := db.Put(ctx, &index.PutRequest{Instance: instance("1.2", "1.100", "1", base, patientHeader(t, "P", "", "Doe"))}); err == nil {
		t.Errorf("Put with a cancelled context succeeded")
	}
	if err := db.Delete(ctx, "1.1"); err == nil {
		t.Errorf("Delete with a cancelled context succeeded")
	}
	checkCounts(t, db, index.Counts{Patients: 1, Studies: 1, Series: 1, Instances: 1})
	if _, err := db.Instance(ctx, "1.1"); err == nil {
		t.Errorf("Instance with a cancelled context succeeded")
	}
}

func testInstances(t *testing.T, db *sqlindex.DB) {
	// More than one batch of a backend that reads in batches of a few
	// hundred.
	const n = 600
	var want []index.Instance
	for i := range n {
		in := instance(fmt.Sprintf("1.%d", i), fmt.Sprintf("1.100.%d", i%3), "1", base.Add(time.Duration(i)*time.Second), nil)
		put(t, db, in)
		want = append(want, stored(in))
	}
	// Replacing keeps an instance's place.
	re := instance("1.5", "1.100.2", "1", base.Add(time.Hour), nil)
	put(t, db, re)
	want[5] = stored(re)

	var got []index.Instance
	for in, err := range db.Instances(t.Context()) {
		if err != nil {
			t.Fatalf("Instances: %v", err)
		}
		if in.Header != nil {
			t.Errorf("Instances yielded a Header")
		}
		got = append(got, *in)
	}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("Instances yielded %d records, want %d in order:\n got %+v\nwant %+v", len(got), len(want), got, want)
	}

	// The loop body may write, and an early break releases what the
	// loop held.
	seen := 0
	for in, err := range db.Instances(t.Context()) {
		if err != nil {
			t.Fatal(err)
		}
		put(t, db, instance(in.SOPInstanceUID+".9", "1.100.0", "1", base, nil))
		if seen++; seen == 3 {
			break
		}
	}
	if seen != 3 {
		t.Errorf("loop ran %d times, want 3", seen)
	}
	if err := db.Delete(t.Context(), "1.0"); err != nil {
		t.Fatal(err)
	}
	checkCounts(t, db, index.Counts{Patients: 1, Studies: 1, Series: 3, Instances: n + 2})

	ctx, cancel := context.WithCancel(t.Context())
	cancel()
	var failed bool
	for _, err := range db.Instances(ctx) {
		if err != nil {
			failed = true
		}
	}
	if !failed {
		t.Errorf("Instances with a cancelled context yielded no error")
	}
}

func testReceivedAt(t *testing.T, db *sqlindex.DB) {
	in := instance("1.1", "1.100", "1", time.Date(2031, 12, 31, 23, 59, 59, 999999999, time.FixedZone("X", -5*3600)), nil)
	put(t, db, in)
	got, err := db.Instance(t.Context(), "1.1")
	if err != nil {
		t.Fatal(err)
	}
	if want := time.Date(2032, 1, 1, 4, 59, 59, 999999000, time.UTC); got.ReceivedAt != want {
		t.Errorf("ReceivedAt = %v, want %v", got.ReceivedAt, want)
	}
	// A zero ReceivedAt is taken from the DB's clock.
	zero := instance("1.2", "1.100", "1", time.Time{}, nil)
	put(t, db, zero)
	got, err = db.Instance(t.Context(), "1.2")
	if err != nil {
		t.Fatal(err)
	}
	if got.ReceivedAt.IsZero() || got.ReceivedAt.Location() != time.UTC {
		t.Errorf("ReceivedAt of an instance put without one = %v", got.ReceivedAt)
	}
	if zero.ReceivedAt != (time.Time{}) {
		t.Errorf("Put changed the caller's Instance")
	}
}

// testPreparePut checks the two halves of a Put: nothing is visible until
// Commit, nothing remains after Rollback, and a prepared put holds
// nothing: other writers go on while it waits to be committed.
func testPreparePut(t *testing.T, db *sqlindex.DB) {
	ctx := t.Context()
	req := func(sop string) *index.PutRequest {
		return &index.PutRequest{Instance: instance(sop, "5.100", "5", base, header(t, tag.PatientID, "P5"))}
	}
	p, err := db.PreparePut(ctx, req("5.1"))
	if err != nil {
		t.Fatal(err)
	}
	p.Rollback()
	p.Rollback() // harmless
	if _, err := db.Instance(ctx, "5.1"); !errors.Is(err, index.ErrNotFound) {
		t.Fatalf("rolled back instance found: %v", err)
	}
	if _, err := p.Commit(ctx); err == nil {
		t.Error("Commit after Rollback succeeded")
	}
	checkCounts(t, db, index.Counts{})

	p, err = db.PreparePut(ctx, req("5.1"))
	if err != nil {
		t.Fatal(err)
	}
	// Another writer does not wait for the prepared put.
	done := make(chan error, 1)
	go func() {
		_, err := db.Put(ctx, req("5.2"))
		done <- err
	}()
	select {
	case err := <-done:
		if err != nil {
			t.Fatal(err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("a Put waited for a prepared one")
	}
	if _, err := db.Instance(ctx, "5.1"); !errors.Is(err, index.ErrNotFound) {
		t.Fatalf("prepared instance visible before Commit: %v", err)
	}
	ch, err := p.Commit(ctx)
	if err != nil || ch.Kind != index.Created || ch.Previous != nil {
		t.Fatalf("Commit = %+v, %v", ch, err)
	}
	if _, err := p.Commit(ctx); err == nil {
		t.Error("second Commit succeeded")
	}
	p.Rollback() // after Commit: nothing
	checkCounts(t, db, index.Counts{Patients: 1, Studies: 1, Series: 1, Instances: 2})

	// A Commit whose context is done fails, and writes nothing.
	p, err = db.PreparePut(ctx, req("5.3"))
	if err != nil {
		t.Fatal(err)
	}
	cancelled, cancel := context.WithCancel(ctx)
	cancel()
	if _, err := p.Commit(cancelled); !errors.Is(err, context.Canceled) {
		t.Errorf("Commit with a cancelled context: %v", err)
	}
	checkCounts(t, db, index.Counts{Patients: 1, Studies: 1, Series: 1, Instances: 2})
}

// testCheck checks PutRequest.Check: it sees the record the index holds,
// and a put it refuses writes nothing and fails with its error.
func testCheck(t *testing.T, db *sqlindex.DB) {
	ctx := t.Context()
	errNo := errors.New("refused by the test")
	first := instance("6.1", "6.100", "6", base, patientHeader(t, "P6", "", "First"))
	var seen []*index.Instance
	check := func(current *index.Instance) error {
		seen = append(seen, current)
		return nil
	}
	if _, err := db.Put(ctx, &index.PutRequest{Instance: first, Check: check}); err != nil {
		t.Fatal(err)
	}
	if len(seen) != 1 || seen[0] != nil {
		t.Fatalf("Check of a new instance saw %v, want one nil", seen)
	}

	// Refused: the record, its study and patient stay as they were.
	second := instance("6.1", "6.200", "7", base.Add(time.Hour), patientHeader(t, "P7", "", "Second"))
	second.Source, second.Principal, second.CallingAE = "stow", "someone", ""
	_, err := db.Put(ctx, &index.PutRequest{Instance: second, Check: func(current *index.Instance) error {
		seen = append(seen, current)
		return errNo
	}})
	if !errors.Is(err, errNo) {
		t.Fatalf("refused Put: %v, want the Check's error", err)
	}
	if len(seen) != 2 || seen[1] == nil || !reflect.DeepEqual(*seen[1], stored(first)) {
		t.Errorf("Check saw %+v, want %+v", seen[len(seen)-1], stored(first))
	}
	checkInstance(t, db, first)
	checkCounts(t, db, index.Counts{Patients: 1, Studies: 1, Series: 1, Instances: 1})
	_, err = db.Study(ctx, "7")
	checkGone(t, "study of a refused put", err)

	// Accepted: the new record, with who sent it, replaces the old one.
	ch, err := db.Put(ctx, &index.PutRequest{Instance: second, Check: check})
	if err != nil {
		t.Fatal(err)
	}
	if ch.Kind != index.Replaced || ch.Previous == nil || !reflect.DeepEqual(*ch.Previous, stored(first)) {
		t.Errorf("change %v, previous %+v; want replaced %+v", ch.Kind, ch.Previous, stored(first))
	}
	checkInstance(t, db, second)
	checkCounts(t, db, index.Counts{Patients: 1, Studies: 1, Series: 1, Instances: 1})
}

// testGroupCommit commits many puts at once, some of which their Check
// or the database refuses: the others are all recorded, each Commit
// reports its own outcome, and the aggregates count exactly the
// instances recorded.
func testGroupCommit(t *testing.T, db *sqlindex.DB) {
	const n = 96
	ctx := t.Context()
	errNo := errors.New("refused by the test")
	h := patientHeader(t, "P8", "", "Group")
	pending := make([]index.Pending, n)
	for i := range n {
		in := instance(fmt.Sprintf("8.%d", i), fmt.Sprintf("8.100.%d", i%3), "8", base, h)
		req := &index.PutRequest{Instance: in}
		switch i % 10 {
		case 3:
			req.Check = func(*index.Instance) error { return errNo }
		case 7:
			in.SOPInstanceUID = "8." + strings.Repeat("7", 70) // the schema refuses it
		}
		p, err := db.PreparePut(ctx, req)
		if err != nil {
			t.Fatal(err)
		}
		pending[i] = p
	}
	errs := make([]error, n)
	var wg sync.WaitGroup
	for i, p := range pending {
		wg.Go(func() { _, errs[i] = p.Commit(ctx) })
	}
	wg.Wait()
	recorded := 0
	for i, err := range errs {
		switch i % 10 {
		case 3:
			if !errors.Is(err, errNo) {
				t.Errorf("put %d: %v, want the Check's error", i, err)
			}
		case 7:
			if err == nil {
				t.Errorf("put %d of a UID the schema refuses succeeded", i)
			}
		default:
			if err != nil {
				t.Errorf("put %d: %v", i, err)
			}
			recorded++
		}
	}
	checkCounts(t, db, index.Counts{Patients: 1, Studies: 1, Series: 3, Instances: recorded})
	if s := getStudy(t, db, "8"); s.NumberOfStudyRelatedInstances != recorded {
		t.Errorf("study counts %d instances, want %d", s.NumberOfStudyRelatedInstances, recorded)
	}
}

// testAuditHead checks the index as the audit journals' HeadStore: each
// journal's head apart from the others'.
func testAuditHead(t *testing.T, db *sqlindex.DB) {
	a, b := db.AuditHead("node-a:/var/lib/pacsd/audit"), db.AuditHead("node-b:/var/lib/pacsd/audit")
	h, err := a.LoadHead(t.Context())
	if err != nil || h != (audit.Head{}) {
		t.Fatalf("LoadHead of a new index = %v, %v; want the zero head", h, err)
	}
	other := audit.Head{Seq: 100}
	if err := b.SaveHead(t.Context(), other); err != nil {
		t.Fatal(err)
	}
	for _, seq := range []uint64{1, 7, 3} {
		want := audit.Head{Seq: seq}
		want.Hash[0], want.Hash[31] = byte(seq), 0xff
		if err := a.SaveHead(t.Context(), want); err != nil {
			t.Fatal(err)
		}
		if got, err := a.LoadHead(t.Context()); err != nil || got != want {
			t.Errorf("LoadHead = %v, %v; want %v", got, err, want)
		}
	}
	if got, err := b.LoadHead(t.Context()); err != nil || got != other {
		t.Errorf("LoadHead of another journal = %v, %v; want %v", got, err, other)
	}
}

// testDeidMapping checks the index as de-identification's MappingStore
// and Reidentifier.
func testDeidMapping(t *testing.T, db *sqlindex.DB) {
	ms := []deid.Mapping{
		{Kind: deid.KindUID, Original: "1.2.3", Replacement: "2.25.1"},
		{Kind: deid.KindPatient, Original: "12345^^^RXH", Replacement: "ANON-1"},
	}
	for range 2 { // a replacement recorded again changes nothing
		if err := db.Record(t.Context(), ms); err != nil {
			t.Fatal(err)
		}
	}
	for _, m := range ms {
		if o, ok, err := db.Original(t.Context(), m.Kind, m.Replacement); err != nil || !ok || o != m.Original {
			t.Errorf("Original(%s, %s) = %q, %v, %v; want %q", m.Kind, m.Replacement, o, ok, err, m.Original)
		}
	}
	if o, ok, err := db.Original(t.Context(), deid.KindPatient, "2.25.1"); err != nil || ok {
		t.Errorf("Original of a UID as a patient = %q, %v, %v; want none", o, ok, err)
	}
	if _, ok, err := db.Original(t.Context(), deid.KindUID, "2.25.2"); err != nil || ok {
		t.Errorf("Original of an unknown UID: %v, %v", ok, err)
	}
}
