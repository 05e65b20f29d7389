package postgres

import (
	"github.com/pacsd/pacsd/index/sqlindex"

	"database/sql"
	"errors"
	"fmt"
	"math/rand/v2"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	_ "github.com/jackc/pgx/v5/stdlib"

	"github.com/pacsd/pacsd/dicom"
	"github.com/pacsd/pacsd/dicom/tag"
	"github.com/pacsd/pacsd/index"
	"github.com/pacsd/pacsd/index/indextest"
	"github.com/pacsd/pacsd/internal/testpeer"
	"github.com/pacsd/pacsd/migrate"
	"github.com/pacsd/pacsd/migrate/migratetest"
	"github.com/pacsd/pacsd/recompress/recompresstest"
	"github.com/pacsd/pacsd/route"
	"github.com/pacsd/pacsd/route/routetest"
)

func open(t testing.TB, url string, opts ...sqlindex.Option) *sqlindex.DB {
	t.Helper()
	db, err := Open(t.Context(), url, opts...)
	if err != nil {
		t.Fatalf("Open: %v", err)
	}
	t.Cleanup(func() {
		if err := db.Close(); err != nil {
			t.Errorf("Close: %v", err)
		}
	})
	return db
}

// TestPostgres runs the tests of the package on one server, each on a
// database of its own: the index's conformance suite, then what is
// particular to PostgreSQL. Restart comes last, as it restarts the
// server under everyone.
func TestPostgres(t *testing.T) {
	pg := testpeer.StartPostgresT(t)
	t.Run("Conformance", func(t *testing.T) {
		indextest.Run(t, func(t *testing.T, opts ...sqlindex.Option) *sqlindex.DB {
			return open(t, pg.NewDatabaseT(t), opts...)
		})
	})
	t.Run("Outbox", func(t *testing.T) {
		// One database serves the suite, a handle with its own clock per
		// test.
		url := pg.NewDatabaseT(t)
		routetest.RunQueueTests(t, func(t *testing.T, now func() time.Time) route.Queue {
			return open(t, url, sqlindex.WithClock(now)).Outbox()
		})
	})
	t.Run("Compressions", func(t *testing.T) {
		recompresstest.Run(t, func(t *testing.T, now func() time.Time, n int) []recompresstest.Handle {
			url := pg.NewDatabaseT(t)
			var hs []recompresstest.Handle
			for range n {
				db := open(t, url, sqlindex.WithClock(now))
				hs = append(hs, recompresstest.Handle{Index: db.Compressions(), Put: db.Put})
			}
			return hs
		})
	})
	t.Run("MigrationState", func(t *testing.T) {
		migratetest.Run(t, func(t *testing.T) migrate.State { return open(t, pg.NewDatabaseT(t)).MigrationState() })
	})
	t.Run("Reopen", func(t *testing.T) { testReopen(t, pg.NewDatabaseT(t)) })
	t.Run("ConcurrentOpen", func(t *testing.T) { testConcurrentOpen(t, pg.NewDatabaseT(t)) })
	t.Run("TwoNodes", func(t *testing.T) { testTwoNodes(t, pg.NewDatabaseT(t)) })
	t.Run("ChangeFeedTwoNodes", func(t *testing.T) {
		url := pg.NewDatabaseT(t)
		indextest.ChangeFeedWriters(t, open(t, url), open(t, url))
	})
	t.Run("Restart", func(t *testing.T) { testRestart(t, pg) })
}

func testInstance(sop, series, study, patient string, recv time.Time) *index.Instance {
	return &index.Instance{
		SOPInstanceUID: sop, SOPClassUID: "1.2.840.10008.5.1.4.1.1.2",
		SeriesInstanceUID: series, StudyInstanceUID: study,
		Key: study + "/" + series + "/" + sop + ".dcm", Size: 1, SHA256: "00", TransferSyntaxUID: "1.2.840.10008.1.2.1",
		ReceivedAt: recv,
		Header: &dicom.Dataset{Elements: []dicom.Element{
			{Tag: tag.PatientName, VR: "PN", Values: []string{"Doe^" + patient}},
			{Tag: tag.PatientID, VR: "LO", Values: []string{patient}},
			{Tag: tag.Modality, VR: "CS", Values: []string{"CT"}},
		}},
	}
}

// testReopen opens a database again, as a restart does: the migrations
// are not run twice and the data is still there. A database migrated
// further than the program knows is refused.
func testReopen(t *testing.T, url string) {
	for i := range 3 {
		db, err := Open(t.Context(), url)
		if err != nil {
			t.Fatalf("Open #%d: %v", i+1, err)
		}
		if _, err := db.Put(t.Context(), &index.PutRequest{Instance: testInstance(fmt.Sprintf("1.%d", i), "1.100", "1", "P1", time.Now())}); err != nil {
			t.Fatal(err)
		}
		c, err := db.Counts(t.Context())
		if err != nil {
			t.Fatal(err)
		}
		if c.Instances != i+1 {
			t.Errorf("open #%d: %d instances, want %d", i+1, c.Instances, i+1)
		}
		db.Close()
	}

	raw, err := sql.Open("pgx", url)
	if err != nil {
		t.Fatal(err)
	}
	defer raw.Close()
	var versions int
	if err := raw.QueryRowContext(t.Context(), `SELECT COUNT(*) FROM schema_migrations`).Scan(&versions); err != nil {
		t.Fatal(err)
	}
	if want, _ := sqlindex.SchemaVersion(sqlindex.PostgreSQL); versions != want {
		t.Errorf("schema_migrations holds %d rows, want %d", versions, want)
	}
	if _, err := raw.ExecContext(t.Context(), `INSERT INTO schema_migrations (version, name, applied_at) VALUES (1000, '1000_future', 0)`); err != nil {
		t.Fatal(err)
	}
	if db, err := Open(t.Context(), url); !errors.Is(err, sqlindex.ErrSchemaTooNew) {
		if err == nil {
			db.Close()
		}
		t.Errorf("Open of a newer schema: %v, want ErrSchemaTooNew", err)
	}
}

// testConcurrentOpen opens one new database from several goroutines at
// once, as several nodes starting together do: one migrates, the others
// wait for it and find it done.
func testConcurrentOpen(t *testing.T, url string) {
	var wg sync.WaitGroup
	for range 6 {
		wg.Go(func() {
			db, err := Open(t.Context(), url)
			if err != nil {
				t.Errorf("Open: %v", err)
				return
			}
			db.Close()
		})
	}
	wg.Wait()
}

// TestOpenErrors checks that a URL that is wrong fails Open at once,
// without the URL's password in the error.
func TestOpenErrors(t *testing.T) {
	for _, url := range []string{
		"postgres://u:secret@127.0.0.1:bad/db",
		"mysql://u:secret@127.0.0.1/db",
	} {
		db, err := Open(t.Context(), url)
		if err == nil {
			db.Close()
			t.Errorf("Open(%q) succeeded", url)
			continue
		}
		if strings.Contains(err.Error(), "secret") {
			t.Errorf("Open(%q): the error shows the password: %v", url, err)
		}
	}
}

// layout places instances in the hierarchy: each in a series, each series
// in a study, each study under a patient.
type layout struct {
	series  map[string]string // SOP Instance UID → Series Instance UID
	study   map[string]string // Series Instance UID → Study Instance UID
	patient map[string]string // Study Instance UID → Patient ID
	recv    time.Time
}

// twoNodeLayout places 60 instances, 5 a series, in 12 series. The first
// layout puts 2 series in each of 6 studies and 2 studies under each of 3
// patients; the second moves the series to the first 4 studies, 3 each,
// and the studies to other patients, so that writers discover parents
// other writers are changing.
func twoNodeLayout(second bool, recv time.Time) *layout {
	l := &layout{series: map[string]string{}, study: map[string]string{}, patient: map[string]string{}, recv: recv}
	for i := range 60 {
		s := i / 5
		se := fmt.Sprintf("8.%d", s)
		j := s / 2
		if second {
			j = s % 4
		}
		st := fmt.Sprintf("7.%d", j)
		k := j / 2
		if second {
			k = (j + 1) % 3
		}
		l.series[fmt.Sprintf("9.%d", i)] = se
		l.study[se] = st
		l.patient[st] = fmt.Sprintf("P%d", k)
	}
	return l
}

func (l *layout) instance(sop string) *index.Instance {
	var i int
	fmt.Sscanf(sop, "9.%d", &i)
	se := l.series[sop]
	st := l.study[se]
	return testInstance(sop, se, st, l.patient[st], l.recv.Add(time.Duration(i)*time.Millisecond))
}

// check compares the index with the layout of the instances live.
func (l *layout) check(t *testing.T, db *sqlindex.DB, step string, live []string) {
	t.Helper()
	ctx := t.Context()
	perSeries, perStudy, perPatient := map[string]int{}, map[string]int{}, map[string]int{}
	seriesOf, studiesOf := map[string]map[string]bool{}, map[string]map[string]bool{}
	for _, sop := range live {
		se := l.series[sop]
		st := l.study[se]
		p := l.patient[st]
		perSeries[se]++
		perStudy[st]++
		perPatient[p]++
		if seriesOf[st] == nil {
			seriesOf[st] = map[string]bool{}
		}
		seriesOf[st][se] = true
		if studiesOf[p] == nil {
			studiesOf[p] = map[string]bool{}
		}
		studiesOf[p][st] = true
	}
	c, err := db.Counts(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if want := (index.Counts{Patients: len(perPatient), Studies: len(perStudy), Series: len(perSeries), Instances: len(live)}); c != want {
		t.Errorf("%s: Counts = %+v, want %+v", step, c, want)
	}
	for se, n := range perSeries {
		s, err := db.Series(ctx, se)
		if err != nil {
			t.Errorf("%s: Series(%s): %v", step, se, err)
			continue
		}
		if s.StudyInstanceUID != l.study[se] || s.NumberOfSeriesRelatedInstances != n {
			t.Errorf("%s: series %s in study %s with %d instances, want %s and %d", step, se, s.StudyInstanceUID, s.NumberOfSeriesRelatedInstances, l.study[se], n)
		}
	}
	for st, n := range perStudy {
		s, err := db.Study(ctx, st)
		if err != nil {
			t.Errorf("%s: Study(%s): %v", step, st, err)
			continue
		}
		if s.PatientID != l.patient[st] || s.NumberOfStudyRelatedInstances != n || s.NumberOfStudyRelatedSeries != len(seriesOf[st]) ||
			!slices.Equal(s.ModalitiesInStudy, []string{"CT"}) {
			t.Errorf("%s: study %s of patient %s with %d series, %d instances, modalities %q; want %s, %d, %d, CT", step, st,
				s.PatientID, s.NumberOfStudyRelatedSeries, s.NumberOfStudyRelatedInstances, s.ModalitiesInStudy,
				l.patient[st], len(seriesOf[st]), n)
		}
	}
	for p, n := range perPatient {
		pt, err := db.Patient(ctx, p, "")
		if err != nil {
			t.Errorf("%s: Patient(%s): %v", step, p, err)
			continue
		}
		series := 0
		for st := range studiesOf[p] {
			series += len(seriesOf[st])
		}
		if pt.NumberOfPatientRelatedStudies != len(studiesOf[p]) || pt.NumberOfPatientRelatedSeries != series || pt.NumberOfPatientRelatedInstances != n {
			t.Errorf("%s: patient %s with %d studies, %d series, %d instances; want %d, %d, %d", step, p,
				pt.NumberOfPatientRelatedStudies, pt.NumberOfPatientRelatedSeries, pt.NumberOfPatientRelatedInstances,
				len(studiesOf[p]), series, n)
		}
	}
}

// testTwoNodes runs writers on two DBs over one database, as two pacsd
// nodes sharing it do, each putting the same instances in an order of its
// own: they must end with one row of each instance and exact aggregates.
// Then they put every instance again with newer headers that move series
// between studies and studies between patients, and then half of the
// writers delete half of the instances while the others put the rest
// again.
func testTwoNodes(t *testing.T, url string) {
	dbs := []*sqlindex.DB{open(t, url), open(t, url)}
	const writers = 8
	base := time.Date(2024, 5, 1, 12, 0, 0, 0, time.UTC)
	var sops []string
	for i := range 60 {
		sops = append(sops, fmt.Sprintf("9.%d", i))
	}
	run := func(step string, work func(w int, db *sqlindex.DB, sop string) error) {
		t.Helper()
		var wg sync.WaitGroup
		for w := range writers {
			order := slices.Clone(sops)
			rand.New(rand.NewPCG(uint64(w), uint64(len(step)))).Shuffle(len(order), func(i, j int) { order[i], order[j] = order[j], order[i] })
			wg.Go(func() {
				for _, sop := range order {
					if err := work(w, dbs[w%2], sop); err != nil {
						t.Errorf("%s: writer %d, %s: %v", step, w, sop, err)
						return
					}
				}
			})
		}
		wg.Wait()
	}

	first := twoNodeLayout(false, base)
	run("put", func(_ int, db *sqlindex.DB, sop string) error {
		_, err := db.Put(t.Context(), &index.PutRequest{Instance: first.instance(sop)})
		return err
	})
	for _, db := range dbs {
		first.check(t, db, "put", sops)
	}

	second := twoNodeLayout(true, base.Add(time.Hour))
	run("move", func(_ int, db *sqlindex.DB, sop string) error {
		_, err := db.Put(t.Context(), &index.PutRequest{Instance: second.instance(sop)})
		return err
	})
	second.check(t, dbs[0], "move", sops)

	var odd []string
	for i, sop := range sops {
		if i%2 == 1 {
			odd = append(odd, sop)
		}
	}
	run("delete", func(w int, db *sqlindex.DB, sop string) error {
		even := !slices.Contains(odd, sop)
		switch {
		case w < writers/2 && even:
			if err := db.Delete(t.Context(), sop); err != nil && !errors.Is(err, index.ErrNotFound) {
				return err
			}
		case w >= writers/2 && !even:
			_, err := db.Put(t.Context(), &index.PutRequest{Instance: second.instance(sop)})
			return err
		}
		return nil
	})
	second.check(t, dbs[1], "delete", odd)
}

// testRestart restarts the server under a DB, cleanly and after a crash:
// the DB carries on once it is back, and what it committed is there.
func testRestart(t *testing.T, pg *testpeer.Postgres) {
	db := open(t, pg.NewDatabaseT(t))
	put := func(sop string) {
		t.Helper()
		if _, err := db.Put(t.Context(), &index.PutRequest{Instance: testInstance(sop, "1.100", "1", "P1", time.Now())}); err != nil {
			t.Fatalf("Put(%s): %v", sop, err)
		}
	}
	put("1.1")
	if err := pg.Restart(t.Context()); err != nil {
		t.Fatal(err)
	}
	put("1.2")
	if err := pg.Process().Kill(); err != nil {
		t.Fatal(err)
	}
	if err := pg.Restart(t.Context()); err != nil {
		t.Fatal(err)
	}
	put("1.3")
	c, err := db.Counts(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	if c != (index.Counts{Patients: 1, Studies: 1, Series: 1, Instances: 3}) {
		t.Errorf("Counts = %+v, want the 3 instances put", c)
	}
}
