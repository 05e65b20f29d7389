package migrate_test

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/pacsd/pacsd/archive"
	"github.com/pacsd/pacsd/dicom"
	"github.com/pacsd/pacsd/index"
	"github.com/pacsd/pacsd/index/sqlindex"
	"github.com/pacsd/pacsd/index/sqlite"
	"github.com/pacsd/pacsd/internal/dcmgen"
	"github.com/pacsd/pacsd/internal/testpeer"
	"github.com/pacsd/pacsd/migrate"
	"github.com/pacsd/pacsd/migrate/migratetest"
	"github.com/pacsd/pacsd/storage/file"
)

// corpus is the legacy archive's content: studies of small instances,
// as files, and each instance's data set by SOP Instance UID.
type corpus struct {
	dir      string
	studies  []string
	datasets map[string][]byte
	// byStudy lists each study's SOP Instance UIDs.
	byStudy map[string][]string
}

// writeCorpus writes n studies of perStudy instances over days days,
// every other study in Implicit VR Little Endian, patients of several
// initials and study times over the day.
func writeCorpus(t testing.TB, n, days, perStudy int) *corpus {
	t.Helper()
	c := &corpus{dir: t.TempDir(), datasets: map[string][]byte{}, byStudy: map[string][]string{}}
	for i := range n {
		d := time.Date(2024, 3, 1+i%days, 0, 0, 0, 0, time.UTC)
		tmpl := dcmgen.Instance{
			Patient: dcmgen.Patient{ID: fmt.Sprintf("LEG%03d", i), Name: fmt.Sprintf("%cLEGACY^PAT%d", 'A'+i*5%26, i), BirthDate: "19600101"},
			Study:   dcmgen.Study{UID: dcmgen.UID(), Date: d.Format("20060102"), Time: fmt.Sprintf("%02d%02d00", 7+i%12, i%60), AccessionNumber: fmt.Sprintf("ACC%d", i)},
			Series:  dcmgen.Series{UID: dcmgen.UID()},
			Rows:    32, Columns: 32,
		}
		if i%2 == 1 {
			tmpl.Syntax = dcmgen.ImplicitVRLittleEndian
		}
		c.studies = append(c.studies, tmpl.Study.UID)
		for j := range perStudy {
			in := tmpl
			in.SOPInstanceUID, in.InstanceNumber = dcmgen.UID(), j+1
			f, err := dcmgen.Create(filepath.Join(c.dir, in.SOPInstanceUID+".dcm"), &in)
			if err != nil {
				t.Fatal(err)
			}
			c.datasets[in.SOPInstanceUID] = datasetOfFile(t, f.Path)
			c.byStudy[tmpl.Study.UID] = append(c.byStudy[tmpl.Study.UID], in.SOPInstanceUID)
		}
	}
	return c
}

func datasetOfFile(t testing.TB, path string) []byte {
	t.Helper()
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	return datasetOf(t, f)
}

// send stores the corpus into a peer with dcmsend, which proposes each
// file's own transfer syntax, so the peer keeps it as written.
func (c *corpus) send(t testing.TB, aet, addr string) {
	t.Helper()
	host, port, _ := strings.Cut(addr, ":")
	stdout, stderr := testpeer.RunT(t, "dcmsend", "-aet", "LOADER", "-aec", aet, "+sd", "-nuc", host, port, c.dir)
	if strings.Contains(stdout+stderr, "failed") {
		t.Logf("dcmsend: %s%s", stdout, stderr)
	}
}

// pacsdArchive is a real archive in a temporary directory.
type pacsdArchive struct {
	*archive.Service
	db *sqlindex.DB
}

// Store implements migrate.Archive as pacsd migrate does.
func (a *pacsdArchive) Store(ctx context.Context, req *migrate.StoreRequest) (*index.Instance, error) {
	res, err := a.Service.Store(ctx, &archive.StoreRequest{SOPClassUID: req.SOPClassUID, SOPInstanceUID: req.SOPInstanceUID,
		TransferSyntaxUID: req.TransferSyntaxUID, CallingAE: req.CallingAE, CalledAE: req.CalledAE, Source: req.Source, Dataset: req.Dataset})
	switch {
	case errors.Is(err, archive.ErrInvalid), errors.Is(err, archive.ErrMismatch):
		return nil, fmt.Errorf("%w: %w", migrate.ErrRefused, err)
	case err != nil:
		return nil, err
	}
	return res.Instance, nil
}

func newPacsdArchive(t testing.TB) *pacsdArchive {
	t.Helper()
	dir := t.TempDir()
	st, err := file.New(dir)
	if err != nil {
		t.Fatal(err)
	}
	db, err := sqlite.Open(context.Background(), filepath.Join(dir, "index.db"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { db.Close(); st.Close() })
	return &pacsdArchive{Service: archive.New(archive.Config{Store: st, Index: db, AETitle: "PACSD", Duplicates: archive.DuplicateReject}), db: db}
}

func (a *pacsdArchive) dataset(t testing.TB, sop string) []byte { return held(t, a, a.db, sop) }

// TestOrthanc migrates a legacy Orthanc whose C-FIND answers are capped
// at 5 matches, by C-GET, C-MOVE and DICOMweb, and checks that every
// study is verified and every data set is byte for byte the one Orthanc
// holds.
func TestOrthanc(t *testing.T) {
	testpeer.Need(t, "Orthanc", "dcmsend")
	c := writeCorpus(t, 60, 20, 2)
	movePort, err := testpeer.FreePort()
	if err != nil {
		t.Fatal(err)
	}
	o := testpeer.StartOrthancT(t, testpeer.OrthancOptions{
		AET:        "OLDPACS",
		DICOMweb:   true,
		Modalities: map[string]testpeer.Modality{"pacsd": {AET: "PACSD", Host: "127.0.0.1", Port: movePort}},
		// No cache of files in memory: a test deletes files behind
		// Orthanc's back.
		Config: map[string]any{"LimitFindResults": 5, "MaximumStorageCacheSize": 0},
	})
	c.send(t, o.AET, o.DICOMAddr)
	for _, tt := range []struct {
		name string
		src  func() migrate.Source
	}{
		{"C-GET", func() migrate.Source {
			return &migrate.DIMSESource{AETitle: "PACSD", CalledAE: o.AET, Addr: o.DICOMAddr, Via: migrate.ViaGet}
		}},
		{"C-MOVE", func() migrate.Source {
			return &migrate.DIMSESource{AETitle: "PACSD", CalledAE: o.AET, Addr: o.DICOMAddr, Via: migrate.ViaMove,
				MoveAddr: "127.0.0.1:" + strconv.Itoa(movePort)}
		}},
		{"DICOMweb", func() migrate.Source { return &migrate.WebSource{Root: o.DICOMwebURL, PageSize: 7} }},
	} {
		t.Run(tt.name, func(t *testing.T) {
			arch := newPacsdArchive(t)
			src := tt.src()
			defer src.Close()
			st := &migratetest.Memory{}
			m := migrate.New(migrate.Config{State: st, Source: src, Archive: arch, Index: arch.db, Name: o.AET, AETitle: "PACSD",
				Concurrency: 3, Owner: "test:1"})
			sum, err := m.Run(t.Context())
			if err != nil {
				t.Fatal(err)
			}
			if !sum.Complete() || sum.ByState[migrate.Verified] != len(c.studies) {
				t.Fatalf("summary = %+v", sum)
			}
			if tt.name != "DICOMweb" && sum.Discovery.Queries < 20 {
				t.Errorf("discovery sent %d queries; the cap of 5 should have split it", sum.Discovery.Queries)
			}
			t.Logf("discovery: %d queries", sum.Discovery.Queries)
			for _, study := range c.studies {
				for _, sop := range c.byStudy[study] {
					if got, want := arch.dataset(t, sop), orthancDataset(t, o, sop); !bytes.Equal(got, want) {
						t.Errorf("study %s instance %s: the data set pacsd keeps differs from the file Orthanc holds", study, sop)
					}
				}
			}
		})
	}

	// Files deleted from Orthanc's storage behind its back: Orthanc
	// still lists the instances, and fails to send them.
	t.Run("deleted files", func(t *testing.T) {
		broken := map[string]bool{c.studies[7]: true, c.studies[30]: true}
		lost := map[string]bool{c.byStudy[c.studies[30]][0]: true} // one of its instances only
		for _, sop := range c.byStudy[c.studies[7]] {
			lost[sop] = true
		}
		var sops []string
		for sop := range lost {
			sops = append(sops, sop)
		}
		if removed, err := o.RemoveFiles(sops...); err != nil || removed != len(lost) {
			t.Fatalf("removed %d files of %d: %v", removed, len(lost), err)
		}
		arch := newPacsdArchive(t)
		src := &migrate.DIMSESource{AETitle: "PACSD", CalledAE: o.AET, Addr: o.DICOMAddr}
		defer src.Close()
		st := &migratetest.Memory{}
		sum, err := migrate.New(migrate.Config{State: st, Source: src, Archive: arch, Index: arch.db, Name: o.AET, AETitle: "PACSD",
			Concurrency: 3, MaxAttempts: 2, Owner: "test:1"}).Run(t.Context())
		if err != nil {
			t.Fatal(err)
		}
		if sum.Complete() || sum.ByState[migrate.Failed] != 2 || sum.ByState[migrate.Verified] != len(c.studies)-2 {
			t.Fatalf("summary = %+v", sum)
		}
		for study := range broken {
			row, err := st.Study(t.Context(), sum.Migration.ID, study)
			if err != nil {
				t.Fatal(err)
			}
			if row.State != migrate.Failed || row.Attempts != 2 || !strings.Contains(row.LastError, "missing") {
				t.Errorf("study %s = %+v", study, row)
			}
			for _, sop := range c.byStudy[study] {
				if lost[sop] != strings.Contains(row.LastError, sop) {
					t.Errorf("study %s: last error %q, instance %s lost %v", study, row.LastError, sop, lost[sop])
				}
			}
			t.Logf("failed study: %s", row.LastError)
		}
	})
}

// orthancDataset returns the data set of the file Orthanc holds of an
// instance.
func orthancDataset(t testing.TB, o *testpeer.Orthanc, sop string) []byte {
	t.Helper()
	var found []string
	q := map[string]any{"Level": "Instance", "Query": map[string]string{"SOPInstanceUID": sop}}
	if err := o.PostJSON(t.Context(), "/tools/find", q, &found); err != nil || len(found) != 1 {
		t.Fatalf("Orthanc lookup of %s: %v %v", sop, found, err)
	}
	b, err := o.Get(t.Context(), "/instances/"+found[0]+"/file")
	if err != nil {
		t.Fatal(err)
	}
	return datasetOf(t, bytes.NewReader(b))
}

// TestDcmqrscp migrates dcmtk's dcmqrscp, configured with its own
// dcmqrscp.cfg and a storage area filled by storescu, by C-MOVE: the
// default way, since this dcmqrscp refuses C-GET.
func TestDcmqrscp(t *testing.T) {
	testpeer.Need(t, "dcmqrscp", "storescu")
	c := writeCorpus(t, 12, 4, 3)
	dir := t.TempDir()
	storage := filepath.Join(dir, "storage")
	if err := os.Mkdir(storage, 0o755); err != nil {
		t.Fatal(err)
	}
	port, err := testpeer.FreePort()
	if err != nil {
		t.Fatal(err)
	}
	movePort, err := testpeer.FreePort()
	if err != nil {
		t.Fatal(err)
	}
	cfg := fmt.Sprintf(`NetworkTCPPort  = %d
MaxPDUSize      = 16384
MaxAssociations = 16

HostTable BEGIN
pacsd = (PACSD, 127.0.0.1, %d)
HostTable END

VendorTable BEGIN
VendorTable END

AETable BEGIN
LEGACY  %s  RW  (100, 1024mb)  ANY
AETable END
`, port, movePort, storage)
	cfgPath := filepath.Join(dir, "dcmqrscp.cfg")
	if err := os.WriteFile(cfgPath, []byte(cfg), 0o644); err != nil {
		t.Fatal(err)
	}
	// Without C-GET, the default way falls back to C-MOVE.
	p := testpeer.StartT(t, testpeer.Cmd{Name: "dcmqrscp", Args: []string{"-c", cfgPath, "--disable-get", "-dhl", strconv.Itoa(port)}, Dir: dir})
	addr := "127.0.0.1:" + strconv.Itoa(port)
	if err := p.WaitTCP(t.Context(), addr); err != nil {
		t.Fatal(err)
	}
	files, _ := filepath.Glob(filepath.Join(c.dir, "*.dcm"))
	testpeer.RunT(t, "storescu", append([]string{"-aec", "LEGACY", "127.0.0.1", strconv.Itoa(port)}, files...)...)

	arch := newPacsdArchive(t)
	log := &syncBuffer{}
	src := &migrate.DIMSESource{AETitle: "PACSD", CalledAE: "LEGACY", Addr: addr, MoveAddr: "127.0.0.1:" + strconv.Itoa(movePort),
		Logger: slog.New(slog.NewTextHandler(log, nil))}
	defer src.Close()
	st := &migratetest.Memory{}
	sum, err := migrate.New(migrate.Config{State: st, Source: src, Archive: arch, Index: arch.db, Name: "LEGACY", AETitle: "PACSD", Owner: "test:1"}).Run(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	if !sum.Complete() || sum.ByState[migrate.Verified] != len(c.studies) {
		for s := range st.Studies(t.Context(), sum.Migration.ID, migrate.StudyFilter{}) {
			t.Logf("%s %s %s", s.StudyInstanceUID, s.State, s.LastError)
		}
		t.Fatalf("summary = %+v", sum)
	}
	if !strings.Contains(log.String(), "the source refuses C-GET; retrieving by C-MOVE") {
		t.Errorf("no fallback to C-MOVE logged:\n%s", log.String())
	}
	// dcmqrscp writes its own files, in the syntax storescu chose.
	inStorage := map[string][]byte{}
	entries, _ := os.ReadDir(storage)
	for _, e := range entries {
		f, err := os.Open(filepath.Join(storage, e.Name()))
		if err != nil {
			t.Fatal(err)
		}
		if fm, _, err := dicom.ReadFileMeta(bufio.NewReader(f)); err == nil {
			inStorage[fm.MediaStorageSOPInstanceUID] = datasetOfFile(t, f.Name())
		}
		f.Close()
	}
	for _, study := range c.studies {
		for _, sop := range c.byStudy[study] {
			if want, ok := inStorage[sop]; !ok || !bytes.Equal(arch.dataset(t, sop), want) {
				t.Errorf("instance %s: the data set pacsd keeps differs from dcmqrscp's file (found %v)", sop, ok)
			}
		}
	}
}

// syncBuffer is a buffer that several goroutines may write and read.
type syncBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.buf.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.buf.String()
}
