package archive

import (
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/pacsd/pacsd/index/sqlindex"

	"bufio"
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"encoding/json"
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
	db    *sqlindex.DB
	svc   *Service
}

func newFixture(t testing.TB, cfg Config) *fixture {
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
		CallingAE: "MODALITY", CalledAE: "PACSD", Source: SourceDIMSE, Dataset: bytes.NewReader(d.b.Bytes()),
	})
}

// objects lists the keys of the instances' objects, the archive's
// records left out.
func (f *fixture) objects(t *testing.T) []string {
	var keys []string
	for info, err := range f.store.List(context.Background(), "") {
		if err != nil {
			t.Fatal(err)
		}
		if !IsRecord(info.Key) {
			keys = append(keys, info.Key)
		}
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
	loc, ok := ParseKey(res.Instance.Key)
	if !ok || loc.StudyInstanceUID != "1.2.3" || loc.SeriesInstanceUID != "1.2.3.4" || loc.SOPInstanceUID != "1.2.3.4.5" || loc.Version == "" {
		t.Errorf("key %s: %+v", res.Instance.Key, loc)
	}
	obj, err := f.store.Open(context.Background(), res.Instance.Key)
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

// TestStoreTruncated refuses data sets that end inside an element or
// inside a sequence never closed: nothing is stored or indexed, and the
// sender is told the data set cannot be understood, so that it sends it
// again.
func TestStoreTruncated(t *testing.T) {
	whole := instance("1.2.3", "1.2.3.4", "1.2.3.4.5").b.Bytes()
	// A private element whose length runs past the end of the data set.
	runsPast := &ds{}
	runsPast.b.Write(whole)
	runsPast.el(tag.New(0x7FE1, 0x1010), "OB", nil)
	raw := runsPast.b.Bytes()
	binary.LittleEndian.PutUint32(raw[len(raw)-4:], 1000)
	// A sequence of undefined length that is never closed.
	unclosed := &ds{}
	unclosed.b.Write(whole[:len(whole)-4096-12]) // without Pixel Data
	unclosed.el(tag.ContentSequence, "SQ", nil)
	binary.LittleEndian.PutUint32(unclosed.b.Bytes()[unclosed.b.Len()-4:], 0xFFFFFFFF)
	for name, d := range map[string]*ds{
		"value runs past the end":  runsPast,
		"sequence never closed":    unclosed,
		"cut inside Pixel Data":    {b: *bytes.NewBuffer(whole[:len(whole)-100])},
		"cut inside a UID element": {b: *bytes.NewBuffer(whole[:70])},
	} {
		t.Run(name, func(t *testing.T) {
			f := newFixture(t, Config{})
			_, err := f.put(d, "1.2.3.4.5")
			if !errors.Is(err, ErrInvalid) || !errors.Is(err, dicom.ErrTruncated) {
				t.Fatalf("Store = %v, want ErrInvalid and dicom.ErrTruncated", err)
			}
			if keys := f.objects(t); len(keys) != 0 {
				t.Errorf("objects stored: %v", keys)
			}
			if _, err := f.db.Instance(context.Background(), "1.2.3.4.5"); !errors.Is(err, index.ErrNotFound) {
				t.Errorf("indexed: %v", err)
			}
		})
	}
}

// TestStoreIssuers refuses an instance of a patient whose Issuer of
// Patient ID the sender may not store, before anything is stored.
func TestStoreIssuers(t *testing.T) {
	withIssuer := func(issuer string) *ds {
		d := &ds{}
		d.str(tag.SOPClassUID, "UI", uid.CTImageStorage).str(tag.SOPInstanceUID, "UI", "1.2.3.4.5").
			str(tag.PatientID, "LO", "P1")
		if issuer != "" {
			d.str(tag.IssuerOfPatientID, "LO", issuer)
		}
		d.str(tag.StudyInstanceUID, "UI", "1.2.3").str(tag.SeriesInstanceUID, "UI", "1.2.3.4")
		d.el(tag.PixelData, "OW", make([]byte, 64))
		return d
	}
	for _, tc := range []struct {
		name    string
		issuer  string
		allowed []string
		refused bool
	}{
		{"no restriction", "RGT", nil, false},
		{"no restriction, no issuer", "", nil, false},
		{"allowed issuer", "RXH", []string{"RGT", "RXH"}, false},
		{"other issuer", "RGT", []string{"RXH"}, true},
		{"no issuer", "", []string{"RXH"}, true},
		{"empty list", "RXH", []string{}, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			f := newFixture(t, Config{})
			_, err := f.svc.Store(context.Background(), &StoreRequest{
				TransferSyntaxUID: uid.ExplicitVRLittleEndian, Source: SourceSTOW, Issuers: tc.allowed,
				Dataset: bytes.NewReader(withIssuer(tc.issuer).b.Bytes()),
			})
			if tc.refused != errors.Is(err, ErrRefused) || (!tc.refused && err != nil) {
				t.Fatalf("Store = %v, refused %v", err, tc.refused)
			}
			if keys := f.objects(t); tc.refused != (len(keys) == 0) {
				t.Errorf("objects stored: %v", keys)
			}
		})
	}
}

// TestStoreMalformedKeptWithWarning keeps a data set that is complete by
// its lengths but holds a part the parser cannot read, and says so.
func TestStoreMalformedKeptWithWarning(t *testing.T) {
	f := newFixture(t, Config{})
	d := instance("1.2.3", "1.2.3.4", "1.2.3.4.5")
	// A sequence of defined length whose content is not an item.
	d.el(tag.New(0x0041, 0x1001), "SQ", bytes.Repeat([]byte{0x11}, 16))
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
	ctx := context.Background()
	sent := 0
	send := func(f *fixture, study, series, sop, source, ae string) (*Result, error) {
		sent++ // every copy differs, but for the test of an identical one
		d := patientInstance(study, series, sop, "Doe^Jane", "P1", "CT", sent)
		return f.svc.Store(ctx, &StoreRequest{
			SOPClassUID: uid.CTImageStorage, SOPInstanceUID: sop, TransferSyntaxUID: uid.ExplicitVRLittleEndian,
			CallingAE: ae, CalledAE: "PACSD", Source: source, Dataset: bytes.NewReader(d.b.Bytes()),
		})
	}
	t.Run("replace moves the object", func(t *testing.T) {
		f := newFixture(t, Config{Duplicates: DuplicateReplace})
		first, err := send(f, "1.2.3", "1.2.3.4", "9.9", SourceDIMSE, "CT1")
		if err != nil {
			t.Fatal(err)
		}
		res, err := send(f, "1.2.7", "1.2.7.4", "9.9", SourceSTOW, "")
		if err != nil || res.Replaced == nil || res.Replaced.Key != first.Instance.Key {
			t.Fatalf("Store = %+v, %v", res, err)
		}
		if keys := f.objects(t); len(keys) != 1 || keys[0] != res.Instance.Key || !strings.HasPrefix(keys[0], "1.2.7/1.2.7.4/9.9_") {
			t.Errorf("objects %v", keys)
		}
	})
	t.Run("keep", func(t *testing.T) {
		f := newFixture(t, Config{Duplicates: DuplicateKeep})
		first, _ := send(f, "1.2.3", "1.2.3.4", "9.9", SourceDIMSE, "CT1")
		res, err := send(f, "1.2.7", "1.2.7.4", "9.9", SourceDIMSE, "CT1")
		if err != nil || !res.Kept || res.Instance.Key != first.Instance.Key {
			t.Fatalf("Store = %+v, %v", res, err)
		}
		if keys := f.objects(t); len(keys) != 1 || keys[0] != first.Instance.Key {
			t.Errorf("objects %v", keys)
		}
	})
	t.Run("reject", func(t *testing.T) {
		f := newFixture(t, Config{Duplicates: DuplicateReject})
		send(f, "1.2.3", "1.2.3.4", "9.9", SourceDIMSE, "CT1")
		if _, err := send(f, "1.2.3", "1.2.3.4", "9.9", SourceDIMSE, "CT1"); !errors.Is(err, ErrDuplicate) {
			t.Fatalf("Store = %v", err)
		}
	})
	// The default: only the same sender into the same study and series
	// replaces; anything else is refused and the archived copy stays.
	for _, c := range []struct {
		name                   string
		study, series, src, ae string
		replaces               bool
	}{
		{"same AE, study and series", "1.2.3", "1.2.3.4", SourceDIMSE, "CT1", true},
		{"another AE", "1.2.3", "1.2.3.4", SourceDIMSE, "CT2", false},
		{"same AE, another series", "1.2.3", "1.2.3.5", SourceDIMSE, "CT1", false},
		{"same AE, another study", "1.2.7", "1.2.3.4", SourceDIMSE, "CT1", false},
		{"STOW-RS", "1.2.3", "1.2.3.4", SourceSTOW, "", false},
	} {
		t.Run("same-source-and-series/"+c.name, func(t *testing.T) {
			f := newFixture(t, Config{})
			first, err := send(f, "1.2.3", "1.2.3.4", "9.9", SourceDIMSE, "CT1")
			if err != nil {
				t.Fatal(err)
			}
			res, err := send(f, c.study, c.series, "9.9", c.src, c.ae)
			want := first.Instance.Key
			if c.replaces {
				if err != nil || res.Replaced == nil || res.Replaced.Key != first.Instance.Key {
					t.Fatalf("Store = %+v, %v; want a replacement", res, err)
				}
				want = res.Instance.Key
			} else if !errors.Is(err, ErrDuplicate) {
				t.Fatalf("Store = %+v, %v; want ErrDuplicate", res, err)
			}
			if keys := f.objects(t); len(keys) != 1 || keys[0] != want {
				t.Errorf("objects %v, want %s", keys, want)
			}
			in, err := f.db.Instance(ctx, "9.9")
			if err != nil || in.Key != want {
				t.Errorf("record %+v, %v; want key %s", in, err, want)
			}
		})
	}
	// An exact copy is accepted from anyone, and changes nothing.
	t.Run("same-source-and-series/identical copy", func(t *testing.T) {
		f := newFixture(t, Config{})
		first, err := send(f, "1.2.3", "1.2.3.4", "9.9", SourceDIMSE, "CT1")
		if err != nil {
			t.Fatal(err)
		}
		sent--
		res, err := send(f, "1.2.3", "1.2.3.4", "9.9", SourceDIMSE, "OTHERPACS")
		if err != nil || !res.Kept || res.Instance.Key != first.Instance.Key {
			t.Fatalf("Store of an identical copy = %+v, %v; want it kept", res, err)
		}
		if keys := f.objects(t); len(keys) != 1 || keys[0] != first.Instance.Key {
			t.Errorf("objects %v", keys)
		}
	})
	// STOW-RS resends replace STOW-RS instances: with nobody signed in,
	// every STOW-RS client is the same source.
	t.Run("same-source-and-series/STOW-RS again", func(t *testing.T) {
		f := newFixture(t, Config{})
		send(f, "1.2.3", "1.2.3.4", "9.9", SourceSTOW, "")
		if res, err := send(f, "1.2.3", "1.2.3.4", "9.9", SourceSTOW, ""); err != nil || res.Replaced == nil {
			t.Fatalf("Store = %+v, %v; want a replacement", res, err)
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

func (failingIndex) PreparePut(context.Context, *index.PutRequest) (index.Pending, error) {
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

// TestReadDuringReplace reads an instance while it is replaced again and
// again: whatever record a reader holds, the metadata and the bytes it
// gets are those of that record's version (pixel data filled with the
// version's number, at the offsets of that version), or an error once
// the version is gone; never another version's.
func TestReadDuringReplace(t *testing.T) {
	ctx := t.Context()
	f := newFixture(t, Config{})
	version := func(n int) *ds {
		d := &ds{}
		d.str(tag.SOPClassUID, "UI", uid.CTImageStorage).str(tag.SOPInstanceUID, "UI", "1.2.3.4.5").
			str(tag.Modality, "CS", "CT").str(tag.PatientID, "LO", "P1").
			str(tag.StudyDescription, "LO", strings.Repeat("x", 2*(n%7))). // moves the pixel data
			str(tag.StudyInstanceUID, "UI", "1.2.3").str(tag.SeriesInstanceUID, "UI", "1.2.3.4").
			str(tag.InstanceNumber, "IS", strconv.Itoa(n))
		d.el(tag.Rows, "US", []byte{64, 0}).el(tag.Columns, "US", []byte{64, 0}).
			el(tag.BitsAllocated, "US", []byte{8, 0})
		d.el(tag.PixelData, "OW", bytes.Repeat([]byte{byte(n)}, 64*64))
		return d
	}
	if _, err := f.put(version(1), "1.2.3.4.5"); err != nil {
		t.Fatal(err)
	}
	stop := make(chan struct{})
	var wg sync.WaitGroup
	wg.Go(func() {
		for n := 2; ; n++ {
			select {
			case <-stop:
				return
			default:
			}
			if _, err := f.put(version(n), "1.2.3.4.5"); err != nil {
				t.Errorf("replace %d: %v", n, err)
				return
			}
		}
	})
	reads, stale := 0, 0
	for deadline := time.Now().Add(time.Second); time.Now().Before(deadline); {
		rec, err := f.db.Instance(ctx, "1.2.3.4.5")
		if err != nil {
			t.Fatal(err)
		}
		m, err := f.svc.Metadata(ctx, rec)
		if err != nil {
			if !errors.Is(err, storage.ErrNotFound) {
				t.Fatalf("Metadata: %v", err)
			}
			stale++
			continue
		}
		obj, err := f.svc.Open(ctx, rec)
		if err != nil {
			if !errors.Is(err, storage.ErrNotFound) {
				t.Fatalf("Open: %v", err)
			}
			stale++
			continue
		}
		var number struct {
			InstanceNumber struct{ Value []int } `json:"00200013"`
		}
		if err := json.Unmarshal(m.JSON, &number); err != nil || len(number.InstanceNumber.Value) != 1 || len(m.Frames) != 1 {
			t.Fatalf("metadata %s (%v), frames %v", m.JSON, err, m.Frames)
		}
		n := number.InstanceNumber.Value[0]
		r := m.Frames[0][0]
		frame := make([]byte, r.Length)
		_, err = obj.ReadAt(frame, r.Offset)
		obj.Close()
		if err != nil {
			t.Fatal(err)
		}
		if !bytes.Equal(frame, bytes.Repeat([]byte{byte(n)}, len(frame))) {
			t.Fatalf("the frame read at the offsets of version %d of %s holds other bytes", n, rec.Key)
		}
		reads++
	}
	close(stop)
	wg.Wait()
	t.Logf("%d consistent reads, %d of versions already replaced", reads, stale)
	if reads == 0 {
		t.Error("no read succeeded")
	}
}

// cancelAfterPut is a store whose Put, once the object is durable, sees
// the request cancelled, as when the association ends during the fsync.
type cancelAfterPut struct {
	storage.Store
	cancel context.CancelFunc
}

func (s cancelAfterPut) Put(ctx context.Context, key string, r io.Reader, size int64) (storage.Info, error) {
	info, err := s.Store.Put(ctx, key, r, size)
	s.cancel()
	return info, err
}

// TestStoreFinishesOnceDurable cancels a store once its object is
// durable: the record is committed all the same, and the old version of
// the instance it replaces deleted, so that object and record agree.
func TestStoreFinishesOnceDurable(t *testing.T) {
	f := newFixture(t, Config{})
	first, err := f.put(instance("1.2.3", "1.2.3.4", "1.5"), "1.5")
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(t.Context())
	f.svc.cfg.Store = cancelAfterPut{f.store, cancel}
	d := patientInstance("1.2.3", "1.2.3.4", "1.5", "Doe^Jane", "P1", "CT", 7)
	res, err := f.svc.Store(ctx, &StoreRequest{SOPClassUID: uid.CTImageStorage, SOPInstanceUID: "1.5", TransferSyntaxUID: uid.ExplicitVRLittleEndian,
		CallingAE: "MODALITY", Source: SourceDIMSE, Dataset: bytes.NewReader(d.b.Bytes())})
	if err != nil || ctx.Err() == nil {
		t.Fatalf("Store cancelled once durable = %v (context %v); want success", err, ctx.Err())
	}
	rec, err := f.db.Instance(t.Context(), "1.5")
	if err != nil || rec.Key != res.Instance.Key || rec.SHA256 != res.Instance.SHA256 {
		t.Fatalf("record %+v, %v; want the new version %s", rec, err, res.Instance.Key)
	}
	if keys := f.objects(t); len(keys) != 1 || keys[0] != rec.Key || keys[0] == first.Instance.Key {
		t.Errorf("objects %v; want only %s", keys, rec.Key)
	}
}

// slowSync is a store whose Puts of one key prefix wait, once they have
// read the whole object, until released: an fsync that takes its time.
type slowSync struct {
	storage.Store
	prefix  string
	reached chan struct{}
	release chan struct{}
}

func (s slowSync) Put(ctx context.Context, key string, r io.Reader, size int64) (storage.Info, error) {
	if !strings.HasPrefix(key, s.prefix) {
		return s.Store.Put(ctx, key, r, size)
	}
	b, err := io.ReadAll(r)
	if err != nil {
		return storage.Info{}, err
	}
	close(s.reached)
	<-s.release
	return s.Store.Put(ctx, key, bytes.NewReader(b), int64(len(b)))
}

// TestSlowStorageHoldsNoIndex stores an instance while another one's
// object takes its time to become durable: the index does not wait for
// it (no transaction is open during a Put).
func TestSlowStorageHoldsNoIndex(t *testing.T) {
	f := newFixture(t, Config{})
	slow := slowSync{Store: f.store, prefix: "1.2.3/1.2.3.4/1.5_", reached: make(chan struct{}), release: make(chan struct{})}
	f.svc.cfg.Store = slow
	done := make(chan error, 1)
	go func() {
		_, err := f.put(instance("1.2.3", "1.2.3.4", "1.5"), "1.5")
		done <- err
	}()
	<-slow.reached
	other := make(chan error, 1)
	go func() {
		_, err := f.put(instance("1.2.3", "1.2.3.4", "1.6"), "1.6")
		other <- err
	}()
	select {
	case err := <-other:
		if err != nil {
			t.Fatal(err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("a store waited for another store's storage")
	}
	close(slow.release)
	if err := <-done; err != nil {
		t.Fatal(err)
	}
}
