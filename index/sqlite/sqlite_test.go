package sqlite

import (
	"github.com/pacsd/pacsd/index/sqlindex"

	"database/sql"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/pacsd/pacsd/dicom"
	"github.com/pacsd/pacsd/dicom/tag"
	"github.com/pacsd/pacsd/index"
	"github.com/pacsd/pacsd/index/indextest"
	"github.com/pacsd/pacsd/migrate"
	"github.com/pacsd/pacsd/migrate/migratetest"
)

func open(t testing.TB, path string, opts ...sqlindex.Option) *sqlindex.DB {
	t.Helper()
	db, err := Open(t.Context(), path, opts...)
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

func TestConformance(t *testing.T) {
	indextest.Run(t, func(t *testing.T, opts ...sqlindex.Option) *sqlindex.DB {
		// A directory that does not exist yet: Open creates it.
		return open(t, filepath.Join(t.TempDir(), "a", "b", "index.db"), opts...)
	})
}

// TestMigrationState runs the conformance suite of package migrate's
// State on the index's tables of migrations.
func TestMigrationState(t *testing.T) {
	migratetest.Run(t, func(t *testing.T) migrate.State {
		return open(t, filepath.Join(t.TempDir(), "index.db")).MigrationState()
	})
}

func TestConformanceMemory(t *testing.T) {
	indextest.Run(t, func(t *testing.T, opts ...sqlindex.Option) *sqlindex.DB { return open(t, Memory, opts...) })
}

// TestSettings checks what every connection Open makes is set to.
func TestSettings(t *testing.T) {
	path := filepath.Join(t.TempDir(), "index.db")
	open(t, path)
	raw, err := sql.Open("sqlite3", dsn(path))
	if err != nil {
		t.Fatal(err)
	}
	defer raw.Close()
	for _, c := range []struct {
		pragma, want string
	}{
		{"journal_mode", "wal"},
		{"synchronous", "2"}, // FULL
		{"foreign_keys", "1"},
		{"busy_timeout", fmt.Sprint(BusyTimeout.Milliseconds())},
	} {
		var got string
		if err := raw.QueryRowContext(t.Context(), "PRAGMA "+c.pragma).Scan(&got); err != nil {
			t.Fatalf("PRAGMA %s: %v", c.pragma, err)
		}
		if got != c.want {
			t.Errorf("PRAGMA %s = %s, want %s", c.pragma, got, c.want)
		}
	}
}

func testInstance(sop, series, study string, recv time.Time) *index.Instance {
	return &index.Instance{
		SOPInstanceUID: sop, SOPClassUID: "1.2.840.10008.5.1.4.1.1.2",
		SeriesInstanceUID: series, StudyInstanceUID: study,
		Key: study + "/" + series + "/" + sop + ".dcm", Size: 1, SHA256: "00", TransferSyntaxUID: "1.2.840.10008.1.2.1",
		ReceivedAt: recv,
		Header: &dicom.Dataset{Elements: []dicom.Element{
			{Tag: tag.PatientName, VR: "PN", Values: []string{"Doe^Jane"}},
			{Tag: tag.PatientID, VR: "LO", Values: []string{"P1"}},
		}},
	}
}

// TestReopen opens a database again, as a restart does: the migrations are
// not run twice and the data is still there. A database migrated further
// than the program knows is refused.
func TestReopen(t *testing.T) {
	path := filepath.Join(t.TempDir(), "index.db")
	for i := range 3 {
		db, err := Open(t.Context(), path)
		if err != nil {
			t.Fatalf("Open #%d: %v", i+1, err)
		}
		if _, err := db.Put(t.Context(), &index.PutRequest{Instance: testInstance(fmt.Sprintf("1.%d", i), "1.100", "1", time.Now())}); err != nil {
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

	raw, err := sql.Open("sqlite3", dsn(path))
	if err != nil {
		t.Fatal(err)
	}
	defer raw.Close()
	var versions int
	if err := raw.QueryRow(`SELECT COUNT(*) FROM schema_migrations`).Scan(&versions); err != nil {
		t.Fatal(err)
	}
	if want, _ := sqlindex.SchemaVersion(sqlindex.SQLite); versions != want {
		t.Errorf("schema_migrations holds %d rows, want %d", versions, want)
	}
	if _, err := raw.Exec(`INSERT INTO schema_migrations (version, name, applied_at) VALUES (1000, '1000_future', 0)`); err != nil {
		t.Fatal(err)
	}
	if db, err := Open(t.Context(), path); !errors.Is(err, sqlindex.ErrSchemaTooNew) {
		if err == nil {
			db.Close()
		}
		t.Errorf("Open of a newer schema: %v, want ErrSchemaTooNew", err)
	}
}

// TestConcurrentOpen opens one new database from several goroutines at
// once, as two processes starting together would: one migrates, the
// others find it done.
func TestConcurrentOpen(t *testing.T) {
	path := filepath.Join(t.TempDir(), "index.db")
	var wg sync.WaitGroup
	for range 4 {
		wg.Go(func() {
			db, err := Open(t.Context(), path)
			if err != nil {
				t.Errorf("Open: %v", err)
				return
			}
			db.Close()
		})
	}
	wg.Wait()
}

// TestWritersAcrossHandles runs 8 writers on two DBs over the same file,
// which queue in SQLite rather than in one DB: none may fail with
// SQLITE_BUSY.
func TestWritersAcrossHandles(t *testing.T) {
	path := filepath.Join(t.TempDir(), "index.db")
	dbs := []*sqlindex.DB{open(t, path), open(t, path)}
	const writers, each = 8, 15
	var wg sync.WaitGroup
	var failed atomic.Int32
	for w := range writers {
		db := dbs[w%2]
		wg.Go(func() {
			for i := range each {
				in := testInstance(fmt.Sprintf("1.%d.%d", w, i), fmt.Sprintf("1.100.%d", i%3), "1", time.Now())
				if _, err := db.Put(t.Context(), &index.PutRequest{Instance: in}); err != nil {
					failed.Add(1)
					t.Errorf("Put: %v", err)
					return
				}
			}
		})
	}
	wg.Wait()
	if failed.Load() > 0 {
		return
	}
	for _, db := range dbs {
		c, err := db.Counts(t.Context())
		if err != nil {
			t.Fatal(err)
		}
		if want := (index.Counts{Patients: 1, Studies: 1, Series: 3, Instances: writers * each}); c != want {
			t.Errorf("Counts = %+v, want %+v", c, want)
		}
		s, err := db.Study(t.Context(), "1")
		if err != nil {
			t.Fatal(err)
		}
		if s.NumberOfStudyRelatedInstances != writers*each {
			t.Errorf("study has %d instances, want %d", s.NumberOfStudyRelatedInstances, writers*each)
		}
	}
}

// TestClock checks the times the DB takes from its clock.
func TestClock(t *testing.T) {
	now := time.Date(2030, 1, 2, 3, 4, 5, 6000, time.UTC)
	db := open(t, Memory, sqlindex.WithClock(func() time.Time { return now }))
	in := testInstance("1.1", "1.100", "1", time.Time{})
	if _, err := db.Put(t.Context(), &index.PutRequest{Instance: in}); err != nil {
		t.Fatal(err)
	}
	got, err := db.Instance(t.Context(), "1.1")
	if err != nil {
		t.Fatal(err)
	}
	if !got.ReceivedAt.Equal(now) {
		t.Errorf("ReceivedAt = %v, want the clock's %v", got.ReceivedAt, now)
	}
	s, err := db.Study(t.Context(), "1")
	if err != nil {
		t.Fatal(err)
	}
	if !s.UpdatedAt.Equal(now) {
		t.Errorf("UpdatedAt = %v, want the clock's %v", s.UpdatedAt, now)
	}
}

// TestPathNeedsEscaping opens a database whose path holds characters that
// mean something in a URI.
func TestPathNeedsEscaping(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "a dir with spaces%20")
	path := filepath.Join(dir, "index?#1.db")
	open(t, path)
	if _, err := os.Stat(path); err != nil {
		t.Errorf("the database is not where asked: %v", err)
	}
}
