package migrate_test

import (
	"bytes"
	"context"
	"fmt"
	"slices"
	"strings"
	"testing"
	"testing/synctest"
	"time"

	"github.com/pacsd/pacsd/internal/dcmgen"
	"github.com/pacsd/pacsd/migrate"
	"github.com/pacsd/pacsd/migrate/migratetest"
	"github.com/pacsd/pacsd/route"
)

// legacy returns a source of n studies over days days from 20240101, a
// few instances each, with patient names of several initials.
func legacy(t testing.TB, n, days, limit int) *fakeSource {
	src := &fakeSource{limit: limit}
	for i := range n {
		d := time.Date(2024, 1, 1+i%days, 0, 0, 0, 0, time.UTC)
		src.addStudy(t, migrate.Study{
			StudyInstanceUID: fmt.Sprintf("1.2.826.0.1.3680043.10.1.%d", i+1),
			PatientID:        fmt.Sprintf("P%d", i), PatientName: fmt.Sprintf("%c%s^TEST", 'A'+i%26, "DOE"),
			StudyDate: d.Format("20060102"), StudyTime: fmt.Sprintf("%02d%02d00", 8+i%10, i%60),
			AccessionNumber: fmt.Sprintf("A%d", i), Modalities: "CT",
		}, 2+i%3)
	}
	return src
}

func newMigrator(src migrate.Source, arch *memArchive, st migrate.State, mod func(*migrate.Config)) *migrate.Migrator {
	cfg := migrate.Config{State: st, Source: src, Archive: arch, Index: arch, Name: "OLDPACS", AETitle: "PACSD", Owner: "test:1"}
	if mod != nil {
		mod(&cfg)
	}
	return migrate.New(cfg)
}

func run(t *testing.T, m *migrate.Migrator) *migrate.Summary {
	t.Helper()
	sum, err := m.Run(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	return sum
}

func TestMigrateEveryStudy(t *testing.T) {
	src := legacy(t, 30, 10, 4)
	arch, st := newMemArchive(), &migratetest.Memory{}
	sum := run(t, newMigrator(src, arch, st, nil))
	if !sum.Complete() || sum.ByState[migrate.Verified] != 30 || sum.Stopped {
		t.Fatalf("summary = %+v", sum)
	}
	if len(sum.Discovery.Incomplete) != 0 {
		t.Errorf("incomplete discovery: %v", sum.Discovery.Incomplete)
	}
	for _, fs := range src.studies {
		row, err := st.Study(t.Context(), sum.Migration.ID, fs.row.StudyInstanceUID)
		if err != nil {
			t.Fatal(err)
		}
		if row.State != migrate.Verified || row.InstancesAtSource != len(fs.instances) || row.InstancesHere != len(fs.instances) ||
			row.Attempts != 1 || row.PatientName != fs.row.PatientName || row.Bytes == 0 {
			t.Errorf("study %s = %+v", fs.row.StudyInstanceUID, row)
		}
		for _, in := range fs.instances {
			if !bytes.Equal(arch.stored(t, in.ref.SOPInstanceUID), in.data) {
				t.Errorf("instance %s: stored data set differs from the source's", in.ref.SOPInstanceUID)
			}
		}
	}
	if mig, _ := st.Migration(t.Context(), sum.Migration.ID); mig.Running || !mig.Finished || mig.Owner != "" {
		t.Errorf("migration after the run = %+v", mig)
	}

	// Run again: nothing is fetched twice.
	before := len(src.retrievals())
	sum = run(t, newMigrator(src, arch, st, nil))
	if !sum.Complete() || sum.ByState[migrate.Verified] != 30 {
		t.Errorf("second run summary = %+v", sum)
	}
	if got := len(src.retrievals()); got != before {
		t.Errorf("second run retrieved %d studies", got-before)
	}
}

func TestMigrateOrder(t *testing.T) {
	src := legacy(t, 6, 6, 0)
	prio := src.studies[1].row
	for _, tt := range []struct {
		order string
		want  []int // indexes into src.studies
	}{
		{migrate.NewestFirst, []int{1, 5, 4, 3, 2, 0}},
		{migrate.OldestFirst, []int{1, 0, 2, 3, 4, 5}},
	} {
		t.Run(tt.order, func(t *testing.T) {
			src.retrieved = nil
			run(t, newMigrator(src, newMemArchive(), &migratetest.Memory{}, func(c *migrate.Config) {
				c.Order, c.Concurrency = tt.order, 1
				c.Priority = map[string]bool{prio.AccessionNumber: true}
			}))
			var want []string
			for _, i := range tt.want {
				want = append(want, src.studies[i].row.StudyInstanceUID)
			}
			if got := src.retrievals(); !slices.Equal(got, want) {
				t.Errorf("retrieved %v\nwant      %v", got, want)
			}
		})
	}
}

func TestMigrateFailsMissingInstances(t *testing.T) {
	src := legacy(t, 5, 5, 0)
	lost := src.studies[2]
	src.drop = map[string]bool{lost.instances[0].ref.SOPInstanceUID: true}
	arch, st := newMemArchive(), &migratetest.Memory{}
	sum := run(t, newMigrator(src, arch, st, nil))
	if sum.Complete() || sum.ByState[migrate.Verified] != 4 || sum.ByState[migrate.Failed] != 1 {
		t.Fatalf("summary = %+v", sum)
	}
	row, _ := st.Study(t.Context(), sum.Migration.ID, lost.row.StudyInstanceUID)
	if row.State != migrate.Failed || row.Attempts != 3 || row.InstancesHere != len(lost.instances)-1 ||
		!strings.Contains(row.LastError, lost.instances[0].ref.SOPInstanceUID) {
		t.Errorf("failed study = %+v", row)
	}
	// The source is mended: the next run retries the failed study only.
	src.drop, src.retrieved = nil, nil
	sum = run(t, newMigrator(src, arch, st, nil))
	if !sum.Complete() || !slices.Equal(src.retrievals(), []string{lost.row.StudyInstanceUID}) {
		t.Errorf("rerun: summary %+v, retrieved %v", sum, src.retrievals())
	}
}

func TestMigrateConflicts(t *testing.T) {
	src := legacy(t, 4, 4, 0)
	arch, st := newMemArchive(), &migratetest.Memory{}
	// pacsd already holds an instance of study 0 with other content.
	dup := src.studies[0].instances[0]
	other := dataset(t, &dcmgen.Instance{SOPInstanceUID: dup.ref.SOPInstanceUID, Rows: 8, Columns: 8,
		Study: dcmgen.Study{UID: src.studies[0].row.StudyInstanceUID}, Patient: src.studies[0].instancesPatient()})
	keeper := &fakeSource{studies: []*fakeStudy{{row: src.studies[0].row, instances: []fakeInstance{{ref: dup.ref, ts: dup.ts, data: other}}}}}
	if err := keeper.Retrieve(t.Context(), src.studies[0].row.StudyInstanceUID, nil, nil, storeOnly{arch}); err != nil {
		t.Fatal(err)
	}
	// Studies 1 and 4 name the same patient differently.
	twin := src.studies[1].row
	twin.StudyInstanceUID, twin.PatientName = twin.StudyInstanceUID+".9", "OTHER^NAME"
	src.addStudy(t, twin, 2)
	// The instances of study 2 disagree on the patient's birth date.
	odd := &src.studies[2].instances[1]
	oddPatient := src.studies[2].instancesPatient()
	oddPatient.BirthDate = "19011231"
	odd.data = dataset(t, &dcmgen.Instance{SOPInstanceUID: odd.ref.SOPInstanceUID, Rows: 8, Columns: 8,
		Study: dcmgen.Study{UID: src.studies[2].row.StudyInstanceUID}, Patient: oddPatient})
	sum := run(t, newMigrator(src, arch, st, nil))
	if sum.ByState[migrate.Conflict] != 4 || sum.ByState[migrate.Verified] != 1 {
		for s := range st.Studies(t.Context(), sum.Migration.ID, migrate.StudyFilter{}) {
			t.Logf("%s %s %s %s", s.StudyInstanceUID, s.PatientID, s.State, s.LastError)
		}
		t.Fatalf("summary = %+v", sum)
	}
	row, _ := st.Study(t.Context(), sum.Migration.ID, src.studies[0].row.StudyInstanceUID)
	if row.State != migrate.Conflict || !strings.Contains(row.LastError, dup.ref.SOPInstanceUID) || row.Attempts != 1 {
		t.Errorf("study with a conflicting duplicate = %+v", row)
	}
	if !bytes.Equal(arch.stored(t, dup.ref.SOPInstanceUID), other) {
		t.Error("the instance pacsd held was replaced")
	}
	for _, i := range []int{1, 4} {
		row, _ := st.Study(t.Context(), sum.Migration.ID, src.studies[i].row.StudyInstanceUID)
		if row.State != migrate.Conflict || !strings.Contains(row.LastError, "name differs") {
			t.Errorf("study %d of a patient with two names = %+v", i, row)
		}
	}
	row, _ = st.Study(t.Context(), sum.Migration.ID, src.studies[2].row.StudyInstanceUID)
	if row.State != migrate.Conflict || !strings.Contains(row.LastError, "instances disagree on the patient") || !strings.Contains(row.LastError, "19011231") {
		t.Errorf("study whose instances disagree on the patient = %+v", row)
	}
}

// storeOnly receives instances into an archive, outside any migration.
type storeOnly struct{ a *memArchive }

func (s storeOnly) Receive(ctx context.Context, in *migrate.Incoming) error {
	_, err := s.a.Store(ctx, &migrate.StoreRequest{SOPClassUID: in.SOPClassUID, SOPInstanceUID: in.SOPInstanceUID,
		TransferSyntaxUID: in.TransferSyntaxUID, Dataset: in.Dataset})
	return err
}

func TestMigrateStopsAfterStudiesInFlight(t *testing.T) {
	src := legacy(t, 10, 5, 0)
	arch, st := newMemArchive(), &migratetest.Memory{}
	ctx, cancel := context.WithCancel(t.Context())
	stopper := &stopAfter{n: 3, cancel: cancel}
	m := newMigrator(&hookedSource{fakeSource: src, hook: stopper}, arch, st, func(c *migrate.Config) { c.Concurrency = 1 })
	sum, err := m.Run(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if !sum.Stopped || sum.ByState[migrate.Verified] != 3 || sum.ByState[migrate.Pending] != 7 {
		t.Fatalf("summary = %+v", sum)
	}
	mig, _ := st.Migration(t.Context(), sum.Migration.ID)
	if mig.Finished || mig.Running {
		t.Errorf("stopped migration = %+v", mig)
	}
	sum = run(t, newMigrator(src, arch, st, nil))
	if !sum.Complete() || len(src.retrievals()) != 10 {
		t.Errorf("after the rerun: %+v, %d retrievals", sum, len(src.retrievals()))
	}
}

// hookedSource calls hook after each retrieval.
type hookedSource struct {
	*fakeSource
	hook *stopAfter
}

func (h *hookedSource) Retrieve(ctx context.Context, study string, refs, only []migrate.InstanceRef, dst migrate.Receiver) error {
	err := h.fakeSource.Retrieve(ctx, study, refs, only, dst)
	if h.hook.n--; h.hook.n == 0 {
		h.hook.cancel()
	}
	return err
}

type stopAfter struct {
	n      int
	cancel context.CancelFunc
}

func TestMigrateClaimed(t *testing.T) {
	src := legacy(t, 1, 1, 0)
	st := &migratetest.Memory{}
	mig, _ := st.Begin(t.Context(), "OLDPACS", migrate.KindDIMSE)
	if err := st.Claim(t.Context(), mig.ID, "", "other:2", time.Now()); err != nil {
		t.Fatal(err)
	}
	_, err := newMigrator(src, newMemArchive(), st, nil).Run(t.Context())
	if err == nil || !strings.Contains(err.Error(), "another process") {
		t.Errorf("Run while another process runs the migration = %v", err)
	}
	// A process that died is taken over at once.
	sum, err := newMigrator(src, newMemArchive(), st, func(c *migrate.Config) {
		c.Alive = func(owner string) bool { return owner != "other:2" }
	}).Run(t.Context())
	if err != nil || !sum.Complete() {
		t.Errorf("Run after the other process died: %v, %+v", err, sum)
	}
}

// TestMigrateWindow runs a migration with a window that opens at 22:00
// on a fake clock: nothing moves before, everything after.
func TestMigrateWindow(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		src := legacy(t, 3, 3, 0)
		st := &migratetest.Memory{}
		w, err := route.ParseWindow("22:00-23:00", time.UTC)
		if err != nil {
			t.Fatal(err)
		}
		start := time.Now()
		m := newMigrator(src, newMemArchive(), st, func(c *migrate.Config) { c.Window = w })
		done := make(chan *migrate.Summary)
		go func() {
			sum, err := m.Run(t.Context())
			if err != nil {
				t.Error(err)
			}
			done <- sum
		}()
		time.Sleep(21 * time.Hour)
		synctest.Wait()
		if n := len(src.retrievals()); n != 0 {
			t.Errorf("%d studies retrieved outside the window", n)
		}
		migs, _ := st.Migrations(t.Context())
		if !migs[0].Waiting || !migs[0].Running || migs[0].Window != "22:00-23:00" {
			t.Errorf("migration while it waits = %+v", migs[0])
		}
		sum := <-done
		if !sum.Complete() {
			t.Errorf("summary = %+v", sum)
		}
		if opened := start.Add(22 * time.Hour); time.Now().Before(opened) {
			t.Errorf("finished at %v, before the window opened at %v", time.Now(), opened)
		}
	})
}

// TestMigrateBandwidth migrates through a cap on a fake clock: the run
// takes as long as its bytes at the cap.
func TestMigrateBandwidth(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		src := legacy(t, 4, 2, 0)
		var total int
		for _, st := range src.studies {
			for _, in := range st.instances {
				total += len(in.data)
			}
		}
		const mbps = 0.1 // 12,500 bytes a second
		start := time.Now()
		sum := run(t, newMigrator(src, newMemArchive(), &migratetest.Memory{}, func(c *migrate.Config) { c.Limiter = route.NewLimiter(mbps) }))
		if !sum.Complete() {
			t.Fatalf("summary = %+v", sum)
		}
		// The limiter lets its first burst, 4 KiB, through at once.
		want := time.Duration(float64(total-4096) / (mbps * 1e6 / 8) * float64(time.Second))
		if took := time.Since(start); took < want*8/10 || took > want*12/10 {
			t.Errorf("%d bytes at %v Mbit/s took %v, want about %v", total, mbps, took, want)
		}
	})
}
