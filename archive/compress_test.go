package archive

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"

	"github.com/pacsd/pacsd/dicom"
	"github.com/pacsd/pacsd/dicom/codec"
	"github.com/pacsd/pacsd/dicom/tag"
	"github.com/pacsd/pacsd/dicom/uid"
	"github.com/pacsd/pacsd/index"
	"github.com/pacsd/pacsd/index/sqlite"
	"github.com/pacsd/pacsd/storage"
)

// testCodecs is the codec registry as Compress needs it (what
// recompress.Codecs does, which this package cannot import).
type testCodecs struct{ reg *codec.Registry }

func (c testCodecs) Transcode(ctx context.Context, dst io.Writer, src io.Reader, from, to string) error {
	_, err := c.reg.Transcode(ctx, dst, src, from, to, codec.TranscodeOptions{})
	if errors.Is(err, codec.ErrUnsupported) {
		return fmt.Errorf("%w: %v", ErrSkipped, err)
	}
	return err
}

func (c testCodecs) DecodeFrame(dst, src []byte, ts string, h *dicom.Dataset) ([]byte, error) {
	n := func(t tag.Tag) int { v, _ := strconv.Atoi(strings.TrimSpace(h.First(t))); return v }
	im := codec.Image{Rows: n(tag.Rows), Columns: n(tag.Columns), SamplesPerPixel: max(1, n(tag.SamplesPerPixel)),
		BitsAllocated: n(tag.BitsAllocated), BitsStored: n(tag.BitsStored), PixelRepresentation: n(tag.PixelRepresentation),
		PhotometricInterpretation: strings.TrimSpace(h.First(tag.PhotometricInterpretation))}
	out, _, err := c.reg.TranscodeFrame(dst, src, ts, uid.ExplicitVRLittleEndian, im)
	return out, err
}

func newTestCodecs() testCodecs { return testCodecs{codec.New(codec.Options{})} }

// picture describes a test image.
type picture struct {
	name                             string
	rows, cols, spp, bits, stored    int
	signed                           bool
	frames                           int
	photometric                      string
	planar                           int
	junkHighBits, trailing, implicit bool
}

var pictures = []picture{
	{name: "mono8 odd", rows: 63, cols: 65, spp: 1, bits: 8, stored: 8, frames: 1, photometric: "MONOCHROME2"},
	{name: "mono16 signed", rows: 64, cols: 48, spp: 1, bits: 16, stored: 12, signed: true, frames: 1, photometric: "MONOCHROME2"},
	{name: "rgb8", rows: 48, cols: 64, spp: 3, bits: 8, stored: 8, frames: 1, photometric: "RGB"},
	{name: "multiframe16 padded", rows: 32, cols: 32, spp: 1, bits: 16, stored: 16, frames: 3, photometric: "MONOCHROME1", trailing: true},
	{name: "implicit VR", rows: 32, cols: 32, spp: 1, bits: 16, stored: 10, frames: 2, photometric: "MONOCHROME2", implicit: true},
}

// dataset returns p as a data set in explicit VR little endian (or
// implicit), with smooth pixels that compress.
func (p picture) dataset(t testing.TB, sop string) []byte {
	t.Helper()
	d := &ds{}
	d.str(tag.SOPClassUID, "UI", uid.CTImageStorage).str(tag.SOPInstanceUID, "UI", sop).
		str(tag.Modality, "CS", "CT").str(tag.PatientName, "PN", "Doe^Jane").str(tag.PatientID, "LO", "P1").
		str(tag.StudyInstanceUID, "UI", "1.2.9").str(tag.SeriesInstanceUID, "UI", "1.2.9.1").str(tag.InstanceNumber, "IS", "1")
	us := func(v int) []byte { return binary.LittleEndian.AppendUint16(nil, uint16(v)) }
	d.el(tag.SamplesPerPixel, "US", us(p.spp)).str(tag.PhotometricInterpretation, "CS", p.photometric)
	if p.spp > 1 {
		d.el(tag.PlanarConfiguration, "US", us(p.planar))
	}
	d.str(tag.NumberOfFrames, "IS", strconv.Itoa(p.frames))
	d.el(tag.Rows, "US", us(p.rows)).el(tag.Columns, "US", us(p.cols)).el(tag.BitsAllocated, "US", us(p.bits)).
		el(tag.BitsStored, "US", us(p.stored)).el(tag.HighBit, "US", us(p.stored-1))
	rep := 0
	if p.signed {
		rep = 1
	}
	d.el(tag.PixelRepresentation, "US", us(rep))
	rng := rand.New(rand.NewPCG(1, uint64(p.rows)))
	var px []byte
	samples := p.rows * p.cols * p.spp * p.frames
	for i := range samples {
		v := (i%p.cols)*3 + (i/p.cols)%7 + rng.IntN(4)
		if p.signed {
			v -= 1 << (p.stored - 2)
		}
		v &= 1<<p.stored - 1
		if p.signed && v&(1<<(p.stored-1)) != 0 {
			v |= ^(1<<p.stored - 1) // sign-extended, as PS3.5 8.1.1 allows and codecs write
		}
		if p.junkHighBits {
			v |= 1 << 15
		}
		if p.bits == 8 {
			px = append(px, byte(v))
		} else {
			px = binary.LittleEndian.AppendUint16(px, uint16(v))
		}
	}
	vr := "OW"
	if p.bits == 8 {
		vr = "OB"
	}
	if len(px)%2 == 1 {
		px = append(px, 0xA5) // a pad byte that is not zero, kept as received
	}
	d.el(tag.PixelData, vr, px)
	if p.trailing {
		d.el(tag.New(0xFFFC, 0xFFFC), "OB", []byte{1, 2, 3, 4})
	}
	if !p.implicit {
		return d.b.Bytes()
	}
	var out bytes.Buffer
	from, _ := uid.LookupTransferSyntax(uid.ExplicitVRLittleEndian)
	to, _ := uid.LookupTransferSyntax(uid.ImplicitVRLittleEndian)
	if err := dicom.Transcode(&out, bytes.NewReader(d.b.Bytes()), from, to); err != nil {
		t.Fatal(err)
	}
	return out.Bytes()
}

func (p picture) syntax() string {
	if p.implicit {
		return uid.ImplicitVRLittleEndian
	}
	return uid.ExplicitVRLittleEndian
}

func storePicture(t *testing.T, svc *Service, p picture, sop string) (*index.Instance, []byte) {
	t.Helper()
	data := p.dataset(t, sop)
	res, err := svc.Store(t.Context(), &StoreRequest{SOPClassUID: uid.CTImageStorage, SOPInstanceUID: sop, TransferSyntaxUID: p.syntax(),
		CallingAE: "CT1", CalledAE: "PACSD", Source: SourceDIMSE, Dataset: bytes.NewReader(data)})
	if err != nil {
		t.Fatal(err)
	}
	return res.Instance, data
}

// slurp reads what an open returns to its end.
func slurp[R io.ReadCloser](t *testing.T) func(R, error) []byte {
	return func(r R, err error) []byte {
		t.Helper()
		if err != nil {
			t.Fatal(err)
		}
		defer r.Close()
		b, err := io.ReadAll(r)
		if err != nil {
			t.Fatal(err)
		}
		return b
	}
}

func sha(b []byte) string { s := sha256.Sum256(b); return hex.EncodeToString(s[:]) }

// TestCompress compresses images of every kind in every syntax archive
// compression writes, and checks that the original comes back byte for
// byte, through the archive and after a reindex from the bucket alone.
func TestCompress(t *testing.T) {
	for _, ts := range []string{uid.HTJ2KLossless, uid.JPEGLSLossless, uid.JPEG2000Lossless} {
		for _, p := range pictures {
			t.Run(uid.Name(ts)+"/"+p.name, func(t *testing.T) {
				ctx := t.Context()
				f := newFixture(t, Config{Codecs: newTestCodecs()})
				in, data := storePicture(t, f.svc, p, "1.2.9.1.1")
				origObj := slurp[storage.Object](t)(f.svc.Open(ctx, in))

				c, err := f.svc.Compress(ctx, in, ts)
				if err != nil {
					t.Fatal(err)
				}
				if c.Instance.TransferSyntaxUID != ts || c.Original.SHA256 != in.SHA256 || c.Original.Size != in.Size {
					t.Fatalf("compressed to %+v, original %+v", c.Instance, c.Original)
				}
				t.Logf("%d bytes to %d", c.Original.Size, c.Instance.Size)
				if c.Saved() <= 0 {
					t.Errorf("saved %d bytes", c.Saved())
				}
				rec, err := f.db.Instance(ctx, in.SOPInstanceUID)
				if err != nil || rec.Key != c.Instance.Key || rec.TransferSyntaxUID != ts || !rec.ReceivedAt.Equal(in.ReceivedAt) {
					t.Fatalf("record %+v, %v", rec, err)
				}
				if keys := f.objects(t); !slices.Equal(keys, []string{rec.Key}) {
					t.Errorf("objects %q, want only %s", keys, rec.Key)
				}
				if !newer(rec.Key, in.Key) {
					t.Errorf("compressed version %s does not sort after the original %s", rec.Key, in.Key)
				}
				o, err := f.db.Compressions().Original(ctx, rec.Key)
				if err != nil || o.SHA256 != in.SHA256 || o.TransferSyntaxUID != in.TransferSyntaxUID || o.Size != in.Size {
					t.Errorf("original recorded %+v, %v", o, err)
				}

				got := slurp[storage.Object](t)(f.svc.OpenOriginal(ctx, rec))
				if !bytes.Equal(got, origObj) {
					t.Errorf("original rebuilt differs: SHA-256 %s, want %s", sha(got), in.SHA256)
				}
				_, r, err := f.svc.OpenDataset(ctx, rec, p.syntax())
				if got := slurp[io.ReadCloser](t)(r, err); !bytes.Equal(got, data) {
					t.Errorf("data set in the original syntax differs from the one received")
				}
				fm, r, err := f.svc.OpenDataset(ctx, rec, ts)
				slurp[io.ReadCloser](t)(r, err)
				if fm.PrivateInformation != nil || fm.TransferSyntaxUID != ts {
					t.Errorf("data set served compressed with File Meta %+v", fm)
				}

				// The bucket alone gives the record back.
				db2, err := sqlite.Open(ctx, filepath.Join(t.TempDir(), "index.db"))
				if err != nil {
					t.Fatal(err)
				}
				defer db2.Close()
				if _, err := Reindex(ctx, f.store, db2, nil); err != nil {
					t.Fatal(err)
				}
				re, err := db2.Instance(ctx, in.SOPInstanceUID)
				if err != nil || re.Key != rec.Key || !re.ReceivedAt.Equal(in.ReceivedAt) || re.SHA256 != rec.SHA256 {
					t.Errorf("reindexed %+v, %v; want %+v", re, err, rec)
				}
				o2, err := db2.Compressions().Original(ctx, rec.Key)
				if err != nil || o2.SHA256 != in.SHA256 || o2.TransferSyntaxUID != in.TransferSyntaxUID || o2.Size != in.Size {
					t.Errorf("original reindexed %+v, %v", o2, err)
				}
			})
		}
	}
}

// TestCompressSkips checks that what cannot be given back exactly is
// left as it is.
func TestCompressSkips(t *testing.T) {
	for _, c := range []struct {
		p    picture
		want string
	}{
		{picture{name: "bits above stored", rows: 8, cols: 8, spp: 1, bits: 16, stored: 12, frames: 1, photometric: "MONOCHROME2", junkHighBits: true}, "pixel values"},
		{picture{name: "colour by plane", rows: 8, cols: 8, spp: 3, bits: 8, stored: 8, frames: 1, photometric: "RGB", planar: 1}, "by plane"},
		{picture{name: "1 bit", rows: 8, cols: 8, spp: 1, bits: 1, stored: 1, frames: 1, photometric: "MONOCHROME2"}, "bits allocated"},
	} {
		t.Run(c.p.name, func(t *testing.T) {
			ctx := t.Context()
			f := newFixture(t, Config{Codecs: newTestCodecs()})
			p := c.p
			if p.bits == 1 {
				p.bits = 8 // built as 8 bits, then declared 1
			}
			data := p.dataset(t, "1.2.9.1.1")
			if c.p.bits == 1 {
				data = bytes.Replace(data, []byte{0x28, 0, 0, 1, 'U', 'S', 2, 0, 8, 0}, []byte{0x28, 0, 0, 1, 'U', 'S', 2, 0, 1, 0}, 1)
			}
			res, err := f.svc.Store(ctx, &StoreRequest{TransferSyntaxUID: uid.ExplicitVRLittleEndian, Source: SourceDIMSE, Dataset: bytes.NewReader(data)})
			if err != nil {
				t.Fatal(err)
			}
			in := res.Instance
			_, err = f.svc.Compress(ctx, in, uid.JPEGLSLossless)
			if !errors.Is(err, ErrSkipped) || !strings.Contains(err.Error(), c.want) {
				t.Fatalf("Compress: %v, want ErrSkipped saying %q", err, c.want)
			}
			rec, _ := f.db.Instance(ctx, in.SOPInstanceUID)
			if rec.Key != in.Key || !slices.Equal(f.objects(t), []string{in.Key}) {
				t.Errorf("record %s, objects %q after a skip", rec.Key, f.objects(t))
			}
		})
	}
	t.Run("compressed already", func(t *testing.T) {
		f := newFixture(t, Config{Codecs: newTestCodecs()})
		in := &index.Instance{SOPInstanceUID: "1.2.3", Key: "x", TransferSyntaxUID: uid.JPEGLSLossless}
		if _, err := f.svc.Compress(t.Context(), in, uid.HTJ2KLossless); !errors.Is(err, ErrSkipped) {
			t.Errorf("Compress of a JPEG-LS instance: %v", err)
		}
	})
}

// TestCompressCrashConsistency injects a fault at each step of a
// compression, as a failure or as a crash there. After each, once
// restarted: the instance's record names an object from which the
// original comes back byte for byte, and Verify finds at most orphans,
// which Repair removes without touching the record.
func TestCompressCrashConsistency(t *testing.T) {
	for _, step := range faultSteps {
		for _, crash := range []bool{false, true} {
			name := step
			if crash {
				name += "/crash"
			}
			t.Run(name, func(t *testing.T) {
				ctx := t.Context()
				w := newWorld()
				svc := New(Config{Store: faultStore{w}, Index: fakeIndex{w}, AETitle: "PACSD", Codecs: newTestCodecs()})
				p := pictures[1]
				in, _ := storePicture(t, svc, p, "1.2.9.1.1")
				orig := slurp[storage.Object](t)(svc.Open(ctx, in))
				w.arm(step, crash)
				_, err := svc.Compress(ctx, in, uid.HTJ2KLossless)
				w.mu.Lock()
				fired := w.fired
				w.mu.Unlock()
				if !fired {
					t.Fatalf("the fault at %s never fired", step)
				}
				t.Logf("compress: %v", err)
				if err != nil && errors.Is(err, ErrSkipped) {
					t.Errorf("a fault made Compress skip the instance for good: %v", err)
				}
				w.restart()
				rec, err := fakeIndex{w}.Instance(ctx, in.SOPInstanceUID)
				if err != nil {
					t.Fatal(err)
				}
				checkObject(t, w, rec)
				if got := slurp[storage.Object](t)(svc.OpenOriginal(ctx, rec)); !bytes.Equal(got, orig) {
					t.Errorf("original of %s differs after the fault", rec.Key)
				}
				var problems []Problem
				if _, err := Verify(ctx, faultStore{w}, fakeIndex{w}, func(p Problem) { problems = append(problems, p) }); err != nil {
					t.Fatal(err)
				}
				for _, p := range problems {
					if p.Kind != Orphan || p.Key == rec.Key {
						t.Errorf("Verify: %v", p)
					}
				}
				if err := Repair(ctx, faultStore{w}, fakeIndex{w}, problems, 0, func(Problem, Repaired) {}); err != nil {
					t.Fatal(err)
				}
				after, err := fakeIndex{w}.Instance(ctx, in.SOPInstanceUID)
				if err != nil || after.Key != rec.Key {
					t.Fatalf("Repair changed the record: %+v, %v", after, err)
				}
				if got := slurp[storage.Object](t)(svc.OpenOriginal(ctx, after)); !bytes.Equal(got, orig) {
					t.Errorf("original differs after Repair")
				}
			})
			t.Run(name+"/reindex", func(t *testing.T) {
				// The bucket as the fault left it, indexed anew: the
				// original while it is still stored, else the
				// compressed object, and the original comes back.
				ctx := t.Context()
				w := newWorld()
				svc := New(Config{Store: faultStore{w}, Index: fakeIndex{w}, AETitle: "PACSD", Codecs: newTestCodecs()})
				in, _ := storePicture(t, svc, pictures[1], "1.2.9.1.1")
				orig := slurp[storage.Object](t)(svc.Open(ctx, in))
				w.arm(step, crash)
				svc.Compress(ctx, in, uid.HTJ2KLossless)
				w.restart()
				_, origErr := w.objects.Stat(ctx, in.Key)
				fresh := &world{objects: w.objects, records: map[string]*index.Instance{}, docs: map[string][]byte{}}
				if _, err := Reindex(ctx, faultStore{fresh}, fakeIndex{fresh}, nil); err != nil {
					t.Fatal(err)
				}
				rec, err := fakeIndex{fresh}.Instance(ctx, in.SOPInstanceUID)
				if err != nil {
					t.Fatal(err)
				}
				if origErr == nil && rec.Key != in.Key {
					t.Errorf("reindexed %s while the original %s is stored", rec.Key, in.Key)
				}
				svc2 := New(Config{Store: faultStore{fresh}, Index: fakeIndex{fresh}, Codecs: newTestCodecs()})
				if got := slurp[storage.Object](t)(svc2.OpenOriginal(ctx, rec)); !bytes.Equal(got, orig) {
					t.Errorf("original of the reindexed %s differs", rec.Key)
				}
			})
		}
	}
}

// FuzzOpenOriginal rebuilds originals from damaged compressed objects:
// an error, never a crash, and never bytes other than the original's
// reported as the original.
func FuzzOpenOriginal(f *testing.F) {
	ctx := context.Background()
	fx := newFixture(f, Config{Codecs: newTestCodecs()})
	p := picture{name: "seed", rows: 16, cols: 16, spp: 1, bits: 16, stored: 12, frames: 2, photometric: "MONOCHROME2"}
	data := p.dataset(f, "1.2.9.1.1")
	res, err := fx.svc.Store(ctx, &StoreRequest{TransferSyntaxUID: uid.ExplicitVRLittleEndian, Source: SourceDIMSE, Dataset: bytes.NewReader(data)})
	if err != nil {
		f.Fatal(err)
	}
	orig := res.Instance.SHA256
	c, err := fx.svc.Compress(ctx, res.Instance, uid.JPEGLSLossless)
	if err != nil {
		f.Fatal(err)
	}
	obj, err := fx.store.Open(ctx, c.Instance.Key)
	if err != nil {
		f.Fatal(err)
	}
	seed, _ := io.ReadAll(obj)
	obj.Close()
	f.Add(seed)
	codecs := newTestCodecs()
	f.Fuzz(func(t *testing.T, b []byte) {
		w := newWorld()
		svc := New(Config{Store: faultStore{w}, Index: fakeIndex{w}, Codecs: codecs})
		key := c.Instance.Key
		if _, err := w.objects.Put(ctx, key, bytes.NewReader(b), int64(len(b))); err != nil {
			t.Fatal(err)
		}
		in := *c.Instance
		in.Size, in.Metadata = int64(len(b)), nil
		r, err := svc.OpenOriginal(ctx, &in)
		if err != nil {
			return
		}
		defer r.Close()
		h := sha256.New()
		if _, err := io.Copy(h, io.LimitReader(r, 64<<20)); err != nil {
			return
		}
		if _, ok := r.(*Original); ok && hex.EncodeToString(h.Sum(nil)) != orig && bytes.Equal(b, seed) {
			t.Errorf("the seed's original rebuilt with another SHA-256")
		}
	})
}
