package migratetest

import (
	"errors"
	"fmt"
	"slices"
	"testing"
	"time"

	"github.com/pacsd/pacsd/migrate"
)

// Run runs the conformance suite on the States newState returns, a new,
// empty one for each test.
func Run(t *testing.T, newState func(t *testing.T) migrate.State) {
	tests := []struct {
		name string
		fn   func(*testing.T, migrate.State)
	}{
		{"Begin", testBegin},
		{"Claim", testClaim},
		{"Update", testUpdate},
		{"AddStudies", testAddStudies},
		{"PutStudy", testPutStudy},
		{"Studies", testStudies},
		{"PatientStudies", testPatientStudies},
		{"Totals", testTotals},
		{"Progress", testProgress},
		{"Files", testFiles},
		{"NotFound", testNotFound},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) { tt.fn(t, newState(t)) })
	}
}

// result holds what a call returned, for must(call).get(t).
type result[T any] struct {
	v   T
	err error
}

func must[T any](v T, err error) result[T] { return result[T]{v, err} }

func (r result[T]) get(t *testing.T) T {
	t.Helper()
	if r.err != nil {
		t.Fatal(r.err)
	}
	return r.v
}

func ok(t *testing.T, err error) {
	t.Helper()
	if err != nil {
		t.Fatal(err)
	}
}

func testBegin(t *testing.T, s migrate.State) {
	ctx := t.Context()
	a := must(s.Begin(ctx, "OLDPACS", migrate.KindDIMSE)).get(t)
	if a.ID == "" || a.Source != "OLDPACS" || a.Kind != migrate.KindDIMSE || a.Started.IsZero() || a.Running {
		t.Fatalf("Begin = %+v", a)
	}
	again := must(s.Begin(ctx, "OLDPACS", migrate.KindDIMSE)).get(t)
	if again.ID != a.ID || !again.Started.Equal(a.Started) {
		t.Errorf("Begin again = %+v, want the migration %+v", again, a)
	}
	time.Sleep(2 * time.Millisecond) // Started orders the list
	b := must(s.Begin(ctx, "https://old.example/dicom-web", migrate.KindDICOMweb)).get(t)
	if b.ID == a.ID {
		t.Fatalf("two sources share migration %s", a.ID)
	}
	list := must(s.Migrations(ctx)).get(t)
	var ids []string
	for _, m := range list {
		ids = append(ids, m.ID)
	}
	if !slices.Equal(ids, []string{b.ID, a.ID}) {
		t.Errorf("Migrations = %v, want newest first %v", ids, []string{b.ID, a.ID})
	}
	got := must(s.Migration(ctx, b.ID)).get(t)
	if got.Source != b.Source || got.Kind != migrate.KindDICOMweb {
		t.Errorf("Migration(%s) = %+v", b.ID, got)
	}
}

func testClaim(t *testing.T, s migrate.State) {
	ctx := t.Context()
	m := must(s.Begin(ctx, "OLDPACS", migrate.KindDIMSE)).get(t)
	now := time.Date(2026, 3, 1, 10, 0, 0, 0, time.UTC)
	ok(t, s.Claim(ctx, m.ID, "", "host-a:1", now))
	got := must(s.Migration(ctx, m.ID)).get(t)
	if got.Owner != "host-a:1" || !got.Running || !got.Heartbeat.Equal(now) {
		t.Fatalf("after Claim: %+v", got)
	}
	if err := s.Claim(ctx, m.ID, "", "host-b:2", now); !errors.Is(err, migrate.ErrClaimed) {
		t.Errorf("second Claim from none = %v, want ErrClaimed", err)
	}
	// Taking over from a known owner, as a process does from one that
	// died.
	ok(t, s.Claim(ctx, m.ID, "host-a:1", "host-b:2", now.Add(time.Minute)))
	if err := s.Claim(ctx, m.ID, "host-a:1", "host-c:3", now); !errors.Is(err, migrate.ErrClaimed) {
		t.Errorf("Claim from a stale owner = %v, want ErrClaimed", err)
	}
	ok(t, s.Claim(ctx, m.ID, "host-b:2", "", now.Add(2*time.Minute)))
	got = must(s.Migration(ctx, m.ID)).get(t)
	if got.Owner != "" || got.Running {
		t.Errorf("after release: %+v", got)
	}
}

func testUpdate(t *testing.T, s migrate.State) {
	ctx := t.Context()
	m := must(s.Begin(ctx, "OLDPACS", migrate.KindDIMSE)).get(t)
	hb := time.Date(2026, 3, 1, 10, 0, 0, 123000000, time.UTC)
	u := *m
	u.Running, u.Heartbeat, u.Waiting, u.Finished, u.Window = true, hb, true, true, "19:00-07:00"
	u.Source, u.Kind = "ignored", "ignored"
	ok(t, s.Update(ctx, &u))
	got := must(s.Migration(ctx, m.ID)).get(t)
	if !got.Running || !got.Heartbeat.Equal(hb) || !got.Waiting || !got.Finished || got.Window != "19:00-07:00" {
		t.Errorf("after Update: %+v", got)
	}
	if got.Source != "OLDPACS" || got.Kind != migrate.KindDIMSE {
		t.Errorf("Update changed source or kind: %+v", got)
	}
}

func study(uid string, mods ...func(*migrate.Study)) *migrate.Study {
	s := &migrate.Study{StudyInstanceUID: uid, PatientID: "P" + uid, PatientName: "DOE^" + uid, StudyDate: "20240101", Modalities: `CT\SR`, InstancesAtSource: 10}
	for _, m := range mods {
		m(s)
	}
	return s
}

func testAddStudies(t *testing.T, s migrate.State) {
	ctx := t.Context()
	m := must(s.Begin(ctx, "OLDPACS", migrate.KindDIMSE)).get(t)
	ok(t, s.AddStudies(ctx, m.ID, []*migrate.Study{study("1.1"), study("1.2", func(s *migrate.Study) {
		// What discovery gives is pending whatever it says.
		s.State, s.Attempts, s.InstancesHere = migrate.Verified, 5, 3
	})}))
	got := must(s.Study(ctx, m.ID, "1.2")).get(t)
	if got.State != migrate.Pending || got.Attempts != 0 || got.InstancesHere != 0 || got.PatientName != "DOE^1.2" ||
		got.Modalities != `CT\SR` || got.InstancesAtSource != 10 || got.StudyDate != "20240101" {
		t.Fatalf("added study = %+v", got)
	}
	v := *got
	v.State, v.Attempts, v.InstancesHere, v.InstancesAtSource, v.Bytes, v.LastError = migrate.Verified, 2, 12, 12, 1000, "earlier"
	ok(t, s.PutStudy(ctx, m.ID, &v))
	// Discovered again: the state stays, the attributes follow the
	// source.
	ok(t, s.AddStudies(ctx, m.ID, []*migrate.Study{study("1.2", func(s *migrate.Study) {
		s.PatientName, s.Priority, s.InstancesAtSource = "ROE^1.2", true, 11
	})}))
	got = must(s.Study(ctx, m.ID, "1.2")).get(t)
	if got.State != migrate.Verified || got.Attempts != 2 || got.InstancesHere != 12 || got.InstancesAtSource != 12 ||
		got.Bytes != 1000 || got.LastError != "earlier" || got.PatientName != "ROE^1.2" || !got.Priority {
		t.Errorf("rediscovered study = %+v", got)
	}
	// A pending study takes the new count.
	ok(t, s.AddStudies(ctx, m.ID, []*migrate.Study{study("1.1", func(s *migrate.Study) { s.InstancesAtSource = 7 })}))
	if got := must(s.Study(ctx, m.ID, "1.1")).get(t); got.InstancesAtSource != 7 {
		t.Errorf("pending study rediscovered with 7 instances: %d", got.InstancesAtSource)
	}
	// Many at once, as discovery adds them.
	var many []*migrate.Study
	for i := range 1200 {
		many = append(many, study(fmt.Sprintf("2.%04d", i)))
	}
	ok(t, s.AddStudies(ctx, m.ID, many))
	if tot := must(s.Totals(ctx, m.ID)).get(t); tot.Studies != 1202 {
		t.Errorf("Totals.Studies = %d, want 1202", tot.Studies)
	}
}

func testPutStudy(t *testing.T, s migrate.State) {
	ctx := t.Context()
	m := must(s.Begin(ctx, "OLDPACS", migrate.KindDIMSE)).get(t)
	in := &migrate.Study{
		StudyInstanceUID: "1.2.3", PatientID: "P1", IssuerOfPatientID: "RXH", PatientName: "ROE^RICHARD", PatientBirthDate: "19700101",
		StudyDate: "20190304", StudyTime: "101500", AccessionNumber: "A1", Modalities: "CT", InstancesAtSource: 120,
		InstancesHere: 118, Bytes: 1 << 40, State: migrate.Failed, Attempts: 3, LastError: "2 instances missing: 1.2.3.4, 1.2.3.5", Priority: true,
	}
	ok(t, s.PutStudy(ctx, m.ID, in))
	got := must(s.Study(ctx, m.ID, "1.2.3")).get(t)
	if got.Updated.IsZero() {
		t.Error("Updated not set")
	}
	got.Updated = time.Time{}
	if *got != *in {
		t.Errorf("Study = %+v\nwant %+v", got, in)
	}
	bad := *in
	bad.State = "lost"
	if err := s.PutStudy(ctx, m.ID, &bad); err == nil {
		t.Error("PutStudy took state \"lost\"")
	}
}

func testStudies(t *testing.T, s migrate.State) {
	ctx := t.Context()
	m := must(s.Begin(ctx, "OLDPACS", migrate.KindDIMSE)).get(t)
	states := []migrate.StudyState{migrate.Pending, migrate.Verified, migrate.Failed, migrate.Conflict, migrate.Done}
	for i := range 10 {
		st := study(fmt.Sprintf("1.%d", i))
		st.State = states[i%len(states)]
		ok(t, s.PutStudy(ctx, m.ID, st))
	}
	list := func(f migrate.StudyFilter) []string {
		var out []string
		for st, err := range s.Studies(ctx, m.ID, f) {
			ok(t, err)
			out = append(out, st.StudyInstanceUID)
		}
		return out
	}
	if got := list(migrate.StudyFilter{}); len(got) != 10 || !slices.IsSorted(got) {
		t.Errorf("all studies = %v", got)
	}
	if got, want := list(migrate.StudyFilter{States: []migrate.StudyState{migrate.Failed, migrate.Conflict}}), []string{"1.2", "1.3", "1.7", "1.8"}; !slices.Equal(got, want) {
		t.Errorf("failed and conflict = %v, want %v", got, want)
	}
	if got, want := list(migrate.StudyFilter{After: "1.3", Limit: 3}), []string{"1.4", "1.5", "1.6"}; !slices.Equal(got, want) {
		t.Errorf("page after 1.3 = %v, want %v", got, want)
	}
	// A loop that stops early is allowed.
	for range s.Studies(ctx, m.ID, migrate.StudyFilter{}) {
		break
	}
}

func testPatientStudies(t *testing.T, s migrate.State) {
	ctx := t.Context()
	m := must(s.Begin(ctx, "OLDPACS", migrate.KindDIMSE)).get(t)
	ok(t, s.AddStudies(ctx, m.ID, []*migrate.Study{
		study("1.1", func(s *migrate.Study) { s.PatientID, s.IssuerOfPatientID = "P1", "A" }),
		study("1.2", func(s *migrate.Study) { s.PatientID, s.IssuerOfPatientID = "P1", "A" }),
		study("1.3", func(s *migrate.Study) { s.PatientID, s.IssuerOfPatientID = "P1", "B" }),
		study("1.4", func(s *migrate.Study) { s.PatientID, s.IssuerOfPatientID = "P2", "A" }),
	}))
	var got []string
	for _, st := range must(s.PatientStudies(ctx, m.ID, "P1", "A")).get(t) {
		got = append(got, st.StudyInstanceUID)
	}
	if !slices.Equal(got, []string{"1.1", "1.2"}) {
		t.Errorf("PatientStudies(P1, A) = %v", got)
	}
}

func testTotals(t *testing.T, s migrate.State) {
	ctx := t.Context()
	m := must(s.Begin(ctx, "OLDPACS", migrate.KindDIMSE)).get(t)
	other := must(s.Begin(ctx, "OTHER", migrate.KindDIMSE)).get(t)
	for i, st := range []migrate.StudyState{migrate.Verified, migrate.Verified, migrate.Failed, migrate.Pending} {
		ok(t, s.PutStudy(ctx, m.ID, &migrate.Study{StudyInstanceUID: fmt.Sprintf("1.%d", i), State: st, InstancesAtSource: 10, InstancesHere: 10 - i, Bytes: 100}))
	}
	ok(t, s.PutStudy(ctx, other.ID, &migrate.Study{StudyInstanceUID: "9.9", State: migrate.Verified, InstancesAtSource: 1000}))
	tot := must(s.Totals(ctx, m.ID)).get(t)
	if tot.Studies != 4 || tot.ByState[migrate.Verified] != 2 || tot.ByState[migrate.Failed] != 1 || tot.ByState[migrate.Pending] != 1 ||
		tot.ByState[migrate.Conflict] != 0 || tot.InstancesAtSource != 40 || tot.InstancesHere != 34 || tot.Bytes != 400 {
		t.Errorf("Totals = %+v", tot)
	}
}

func testProgress(t *testing.T, s migrate.State) {
	ctx := t.Context()
	m := must(s.Begin(ctx, "OLDPACS", migrate.KindDIMSE)).get(t)
	ok(t, s.PutStudy(ctx, m.ID, &migrate.Study{StudyInstanceUID: "1.1", State: migrate.Verified, Bytes: 100}))
	ok(t, s.PutStudy(ctx, m.ID, &migrate.Study{StudyInstanceUID: "1.2", State: migrate.Failed, Bytes: 50}))
	n, b, err := s.Progress(ctx, m.ID, time.Now().Add(-time.Hour))
	ok(t, err)
	if n != 1 || b != 100 {
		t.Errorf("Progress over the last hour = %d studies, %d bytes; want 1, 100", n, b)
	}
	n, _, err = s.Progress(ctx, m.ID, time.Now().Add(time.Hour))
	ok(t, err)
	if n != 0 {
		t.Errorf("Progress from an hour on = %d studies", n)
	}
}

func testFiles(t *testing.T, s migrate.State) {
	ctx := t.Context()
	m := must(s.Begin(ctx, "import", migrate.KindImport)).get(t)
	mod := time.Date(2024, 1, 2, 3, 4, 5, 0, time.UTC)
	files := []*migrate.File{
		{Path: "/disk/b/IM1", Size: 10, ModTime: mod, SOPInstanceUID: "1.2.3.1", StudyInstanceUID: "1.2", SHA256: "ab", State: migrate.FileVerified},
		{Path: "/disk/a/readme.txt", Size: 3, ModTime: mod, State: migrate.FileRejected, Reason: "not DICOM: no DICM prefix"},
		{Path: "/disk/c/IM2", Size: 5, ModTime: mod, SOPInstanceUID: "1.2.3.2", StudyInstanceUID: "1.2", State: migrate.FileFailed, Reason: "storage unavailable"},
	}
	for _, f := range files {
		ok(t, s.PutFile(ctx, m.ID, f))
	}
	got := must(s.File(ctx, m.ID, "/disk/b/IM1")).get(t)
	if *got != *files[0] {
		t.Errorf("File = %+v, want %+v", got, files[0])
	}
	var paths []string
	for f, err := range s.Files(ctx, m.ID) {
		ok(t, err)
		paths = append(paths, f.Path)
	}
	if !slices.Equal(paths, []string{"/disk/a/readme.txt", "/disk/b/IM1", "/disk/c/IM2"}) {
		t.Errorf("Files = %v", paths)
	}
	paths = nil
	for f, err := range s.Files(ctx, m.ID, migrate.FileRejected, migrate.FileFailed) {
		ok(t, err)
		paths = append(paths, f.Path)
	}
	if !slices.Equal(paths, []string{"/disk/a/readme.txt", "/disk/c/IM2"}) {
		t.Errorf("rejected and failed files = %v", paths)
	}
	// Read again: the record is replaced.
	again := *files[2]
	again.State, again.Reason, again.SHA256 = migrate.FileVerified, "", "cd"
	ok(t, s.PutFile(ctx, m.ID, &again))
	if got := must(s.File(ctx, m.ID, again.Path)).get(t); *got != again {
		t.Errorf("File after PutFile again = %+v", got)
	}
}

func testNotFound(t *testing.T, s migrate.State) {
	ctx := t.Context()
	if _, err := s.Migration(ctx, "m999"); !errors.Is(err, migrate.ErrNotFound) {
		t.Errorf("Migration(m999) = %v", err)
	}
	m := must(s.Begin(ctx, "OLDPACS", migrate.KindDIMSE)).get(t)
	if _, err := s.Study(ctx, m.ID, "1.2.3"); !errors.Is(err, migrate.ErrNotFound) {
		t.Errorf("Study = %v", err)
	}
	if _, err := s.File(ctx, m.ID, "/nowhere"); !errors.Is(err, migrate.ErrNotFound) {
		t.Errorf("File = %v", err)
	}
}
