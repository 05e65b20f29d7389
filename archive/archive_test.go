package archive

import (
	"bufio"
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"errors"
	"io"
	"path/filepath"
	"testing"

	"github.com/pacsd/pacsd/dicom"
	"github.com/pacsd/pacsd/dicom/tag"
	"github.com/pacsd/pacsd/dicom/uid"
	"github.com/pacsd/pacsd/index"
	"github.com/pacsd/pacsd/index/sqlite"
	"github.com/pacsd/pacsd/storage"
	"github.com/pacsd/pacsd/storage/mem"
)

// ds builds an explicit VR little endian data set.
type ds struct{ b bytes.Buffer }

func (d *ds) el(t tag.Tag, vr string, v []byte) *ds {
	binary.Write(&d.b, binary.LittleEndian, [2]uint16{t.Group(), t.Element()})
	d.b.WriteString(vr)
	switch vr {
	case "OB", "OW", "SQ", "UN", "UT":
		d.b.Write([]byte{0, 0})
		binary.Write(&d.b, binary.LittleEndian, uint32(len(v)))
	default:
		binary.Write(&d.b, binary.LittleEndian, uint16(len(v)))
	}
	d.b.Write(v)
	return d
}

func (d *ds) str(t tag.Tag, vr, s string) *ds {
	if len(s)%2 == 1 {
		if vr == "UI" {
			s += "\x00"
		} else {
			s += " "
		}
	}
	return d.el(t, vr, []byte(s))
}

func instance(study, series, sop string) *ds {
	d := &ds{}
	d.str(tag.SOPClassUID, "UI", uid.CTImageStorage).str(tag.SOPInstanceUID, "UI", sop).
		str(tag.Modality, "CS", "CT").str(tag.PatientName, "PN", "Doe^Jane").str(tag.PatientID, "LO", "P1").
		str(tag.StudyInstanceUID, "UI", study).str(tag.SeriesInstanceUID, "UI", series).
		str(tag.InstanceNumber, "IS", "1")
	d.el(tag.PixelData, "OW", make([]byte, 4096))
	return d
}

type fixture struct {
	store storage.Store
	db    *index.DB
	svc   *Service
}

func newFixture(t *testing.T, cfg Config) *fixture {
	t.Helper()
	db, err := sqlite.Open(context.Background(), filepath.Join(t.TempDir(), "index.db"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { db.Close() })
	f := &fixture{store: mem.New(), db: db}
	if cfg.Store == nil {
		cfg.Store = f.store
	}
	if cfg.Index == nil {
		cfg.Index = db
	}
	cfg.AETitle = "PACSD"
	f.svc = New(cfg)
	return f
}

func (f *fixture) put(d *ds, sop string) (*Result, error) {
	return f.svc.Store(context.Background(), &StoreRequest{
		SOPClassUID: uid.CTImageStorage, SOPInstanceUID: sop, TransferSyntaxUID: uid.ExplicitVRLittleEndian,
		CallingAE: "MODALITY", CalledAE: "PACSD", Dataset: bytes.NewReader(d.b.Bytes()),
	})
}

func (f *fixture) objects(t *testing.T) []string {
	var keys []string
	for info, err := range f.store.List(context.Background(), "") {
		if err != nil {
			t.Fatal(err)
		}
		keys = append(keys, info.Key)
	}
	return keys
}

func TestStoreKeepsBytesVerbatim(t *testing.T) {
	f := newFixture(t, Config{})
	d := instance("1.2.3", "1.2.3.4", "1.2.3.4.5")
	res, err := f.put(d, "1.2.3.4.5")
	if err != nil || res.Warning != nil {
		t.Fatalf("Store: %v, warning %v", err, res.Warning)
	}
	obj, err := f.store.Open(context.Background(), "1.2.3/1.2.3.4/1.2.3.4.5.dcm")
	if err != nil {
		t.Fatal(err)
	}
	defer obj.Close()
	b, _ := io.ReadAll(obj)
	// The object is our File Meta Information and then the data set
	// exactly as received.
	br := bytes.NewReader(b)
	m, n, err := dicom.ReadFileMeta(bufioReader(br))
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(b[n:], d.b.Bytes()) {
		t.Fatal("data set bytes changed")
	}
	if m.MediaStorageSOPInstanceUID != "1.2.3.4.5" || m.TransferSyntaxUID != uid.ExplicitVRLittleEndian || m.SendingApplicationEntityTitle != "MODALITY" {
		t.Errorf("meta %+v", m)
	}
	sum := sha256.Sum256(b)
	in, err := f.db.Instance(context.Background(), "1.2.3.4.5")
	if err != nil {
		t.Fatal(err)
	}
	if in.SHA256 != hex.EncodeToString(sum[:]) || in.Size != int64(len(b)) || in.CallingAE != "MODALITY" {
		t.Errorf("index row %+v", in)
	}
}

func TestStoreRefusals(t *testing.T) {
	tests := []struct {
		name string
		d    *ds
		sop  string
		want error
	}{
		{"instance UID mismatch", instance("1.2.3", "1.2.3.4", "1.2.3.4.5"), "1.2.3.4.6", ErrMismatch},
		{"path in study UID", instance("../../etc", "1.2.3.4", "1.2.3.4.5"), "1.2.3.4.5", ErrInvalid},
		{"dots in series UID", instance("1.2.3", "1..2", "1.2.3.4.5"), "1.2.3.4.5", ErrInvalid},
		{"no study UID", (&ds{}).str(tag.SOPClassUID, "UI", uid.CTImageStorage).str(tag.SOPInstanceUID, "UI", "1.2").str(tag.SeriesInstanceUID, "UI", "1.3"), "1.2", ErrInvalid},
		{"not DICOM", func() *ds { d := &ds{}; d.b.WriteString("GET / HTTP/1.1\r\nHost: pacs\r\n\r\n"); return d }(), "", ErrInvalid},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			f := newFixture(t, Config{})
			_, err := f.put(tt.d, tt.sop)
			if !errors.Is(err, tt.want) {
				t.Fatalf("Store = %v, want %v", err, tt.want)
			}
			if keys := f.objects(t); len(keys) != 0 {
				t.Errorf("objects stored: %v", keys)
			}
			n := 0
			for _, err := range f.db.Instances(context.Background()) {
				if err != nil {
					t.Fatal(err)
				}
				n++
			}
			if n != 0 {
				t.Errorf("%d index rows", n)
			}
		})
	}
}

func TestStoreIncompleteHeaderIsKept(t *testing.T) {
	f := newFixture(t, Config{})
	d := instance("1.2.3", "1.2.3.4", "1.2.3.4.5")
	// A private element whose length runs past the end of the data set.
	d.el(tag.New(0x7FE1, 0x1010), "OB", nil)
	raw := d.b.Bytes()
	binary.LittleEndian.PutUint32(raw[len(raw)-4:], 1000)
	res, err := f.put(d, "1.2.3.4.5")
	if err != nil {
		t.Fatalf("Store: %v", err)
	}
	if !errors.Is(res.Warning, ErrIncomplete) {
		t.Fatalf("warning %v, want ErrIncomplete", res.Warning)
	}
	if keys := f.objects(t); len(keys) != 1 {
		t.Fatalf("objects %v", keys)
	}
}

func TestDuplicates(t *testing.T) {
	t.Run("replace moves the object", func(t *testing.T) {
		f := newFixture(t, Config{})
		if _, err := f.put(instance("1.2.3", "1.2.3.4", "9.9"), "9.9"); err != nil {
			t.Fatal(err)
		}
		res, err := f.put(instance("1.2.7", "1.2.7.4", "9.9"), "9.9")
		if err != nil || res.Replaced == nil || res.Replaced.Key != "1.2.3/1.2.3.4/9.9.dcm" {
			t.Fatalf("Store = %+v, %v", res, err)
		}
		if keys := f.objects(t); len(keys) != 1 || keys[0] != "1.2.7/1.2.7.4/9.9.dcm" {
			t.Errorf("objects %v", keys)
		}
	})
	t.Run("keep", func(t *testing.T) {
		f := newFixture(t, Config{Duplicates: DuplicateKeep})
		f.put(instance("1.2.3", "1.2.3.4", "9.9"), "9.9")
		res, err := f.put(instance("1.2.7", "1.2.7.4", "9.9"), "9.9")
		if err != nil || !res.Kept {
			t.Fatalf("Store = %+v, %v", res, err)
		}
		if keys := f.objects(t); len(keys) != 1 || keys[0] != "1.2.3/1.2.3.4/9.9.dcm" {
			t.Errorf("objects %v", keys)
		}
	})
	t.Run("reject", func(t *testing.T) {
		f := newFixture(t, Config{Duplicates: DuplicateReject})
		f.put(instance("1.2.3", "1.2.3.4", "9.9"), "9.9")
		if _, err := f.put(instance("1.2.3", "1.2.3.4", "9.9"), "9.9"); !errors.Is(err, ErrDuplicate) {
			t.Fatalf("Store = %v", err)
		}
	})
}

// failingStore fails every Put.
type failingStore struct{ storage.Store }

func (failingStore) Put(ctx context.Context, key string, r io.Reader, size int64) (storage.Info, error) {
	io.CopyN(io.Discard, r, 100)
	return storage.Info{}, errors.New("disk full")
}

// failingIndex fails every Put.
type failingIndex struct{ Index }

func (failingIndex) PreparePut(context.Context, *index.Instance) (*index.Pending, error) {
	return nil, errors.New("database is locked")
}

func TestStorageAndIndexFailures(t *testing.T) {
	t.Run("storage", func(t *testing.T) {
		f := newFixture(t, Config{Store: failingStore{mem.New()}})
		if _, err := f.put(instance("1.2.3", "1.2.3.4", "1.5"), "1.5"); !errors.Is(err, ErrUnavailable) {
			t.Fatalf("Store = %v, want ErrUnavailable", err)
		}
		if _, err := f.db.Instance(context.Background(), "1.5"); !errors.Is(err, index.ErrNotFound) {
			t.Errorf("index row written for an object not stored: %v", err)
		}
	})
	t.Run("index", func(t *testing.T) {
		f := newFixture(t, Config{})
		f.svc.cfg.Index = failingIndex{f.db}
		if _, err := f.put(instance("1.2.3", "1.2.3.4", "1.5"), "1.5"); !errors.Is(err, ErrUnavailable) {
			t.Fatalf("Store = %v, want ErrUnavailable", err)
		}
		if keys := f.objects(t); len(keys) != 0 {
			t.Errorf("object kept without its index row: %v", keys)
		}
	})
	t.Run("sender", func(t *testing.T) {
		f := newFixture(t, Config{})
		d := instance("1.2.3", "1.2.3.4", "1.5")
		r := io.MultiReader(bytes.NewReader(d.b.Bytes()[:200]), errReader{})
		_, err := f.svc.Store(context.Background(), &StoreRequest{TransferSyntaxUID: uid.ExplicitVRLittleEndian, Dataset: r})
		if err == nil || errors.Is(err, ErrUnavailable) || errors.Is(err, ErrInvalid) {
			t.Fatalf("Store = %v, want the stream's error", err)
		}
		if keys := f.objects(t); len(keys) != 0 {
			t.Errorf("objects %v", keys)
		}
	})
}

type errReader struct{}

func (errReader) Read([]byte) (int, error) { return 0, errors.New("association aborted") }

func bufioReader(r io.Reader) *bufio.Reader { return bufio.NewReader(r) }

// TestOpenDataset reads an archived data set back as stored and
// converted, and stops a conversion by closing it.
func TestOpenDataset(t *testing.T) {
	f := newFixture(t, Config{})
	d := instance("1.2.3", "1.2.3.4", "1.2.3.4.5")
	res, err := f.put(d, "1.2.3.4.5")
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	read := func(ts string) []byte {
		t.Helper()
		fm, r, err := f.svc.OpenDataset(ctx, res.Instance, ts)
		if err != nil {
			t.Fatalf("OpenDataset in %s: %v", ts, err)
		}
		defer r.Close()
		if fm.MediaStorageSOPInstanceUID != "1.2.3.4.5" || fm.TransferSyntaxUID != uid.ExplicitVRLittleEndian {
			t.Errorf("File Meta Information %+v", fm)
		}
		b, err := io.ReadAll(r)
		if err != nil {
			t.Fatal(err)
		}
		return b
	}
	if got := read(uid.ExplicitVRLittleEndian); !bytes.Equal(got, d.b.Bytes()) {
		t.Errorf("data set as stored differs from the one sent")
	}
	be := read(uid.ExplicitVRBigEndian)
	var back bytes.Buffer
	from, _ := uid.LookupTransferSyntax(uid.ExplicitVRBigEndian)
	to, _ := uid.LookupTransferSyntax(uid.ExplicitVRLittleEndian)
	if err := dicom.Transcode(&back, bytes.NewReader(be), from, to); err != nil || !bytes.Equal(back.Bytes(), d.b.Bytes()) {
		t.Errorf("big endian copy does not convert back (%v)", err)
	}
	if _, _, err := f.svc.OpenDataset(ctx, res.Instance, uid.JPEGBaseline8Bit); !errors.Is(err, dicom.ErrUnsupported) {
		t.Errorf("OpenDataset in JPEG Baseline: %v, want ErrUnsupported", err)
	}
	_, r, err := f.svc.OpenDataset(ctx, res.Instance, uid.ImplicitVRLittleEndian)
	if err != nil {
		t.Fatal(err)
	}
	r.Read(make([]byte, 10))
	if err := r.Close(); err != nil { // must not wait for a reader that is gone
		t.Errorf("Close mid-conversion: %v", err)
	}
}
