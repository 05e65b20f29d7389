package archive

import (
	"bufio"
	"bytes"
	"compress/flate"
	"context"
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"strconv"
	"time"

	"github.com/pacsd/pacsd/dicom"
	"github.com/pacsd/pacsd/dicom/tag"
	"github.com/pacsd/pacsd/dicom/uid"
	"github.com/pacsd/pacsd/index"
	"github.com/pacsd/pacsd/storage"
)

// Archive compression. Compress re-encodes the object of an instance
// stored uncompressed in a lossless syntax, as a new version beside the
// original (see Key), and keeps in the new object's File Meta
// Information, as Private Information (0002,0102) under pacsd's
// Private Information Creator UID, what it takes to rebuild the
// original object byte for byte: the original's bytes up to its pixel
// data's value (its File Meta Information and header, as received) and
// after it, its SHA-256, size and transfer syntax, and who sent it
// when. The pixels between come from decoding the new object. So the
// bucket alone rebuilds the original, and Reindex its record.
//
// The steps, each durable before the next: the new object is written
// and read back; each of its frames is decoded and compared bit for bit
// with the original's, and the original rebuilt from it must have the
// original's SHA-256; the index then records the new object, with the
// original's description (index.PutRequest.Original); only then is the
// original deleted. A crash before the record leaves the original
// recorded and the new object an orphan, which Verify reports and which
// nothing names; one after leaves the original object an orphan.

// CompressCreatorUID is the Private Information Creator UID (0002,0100)
// of the description of the original that Compress writes.
const CompressCreatorUID = "2.25.178239298575117012990867082312310792798"

// Errors of Compress.
var (
	// ErrSkipped reports an instance Compress leaves as it is, for good:
	// not stored uncompressed, pixels the encoder cannot take, or an
	// original that the re-encoding cannot give back exactly. The
	// wrapping error says why.
	ErrSkipped = errors.New("archive: instance left uncompressed")
	// ErrChanged reports an instance replaced or removed while Compress
	// worked on it; nothing of the compression is kept.
	ErrChanged = errors.New("archive: instance changed during compression")
)

// Codecs re-encodes pixel data for Compress and decodes it for the
// retrieval of originals; recompress.Codecs adapts a codec registry.
type Codecs interface {
	// Transcode converts a data set without File Meta Information,
	// from one transfer syntax to another, a frame at a time. Pixels
	// the encoder cannot take are an error wrapping ErrSkipped.
	Transcode(ctx context.Context, dst io.Writer, src io.Reader, from, to string) error
	// DecodeFrame decodes one frame, src, of the image header
	// describes, encoded in transfer syntax ts, to a native frame
	// (little endian, colour by pixel), in dst if it has the room.
	DecodeFrame(dst, src []byte, ts string, header *dicom.Dataset) ([]byte, error)
}

// Compression is what Compress did.
type Compression struct {
	// Instance is the record of the new object.
	Instance *index.Instance
	// Original describes the object replaced.
	Original index.Original
}

// Saved returns the bytes the compression saved.
func (c *Compression) Saved() int64 { return c.Original.Size - c.Instance.Size }

// originalRecord is the description of the original kept in the new
// object, as JSON compressed with DEFLATE.
type originalRecord struct {
	// Key is the original object's: while it exists, Reindex prefers it
	// (see recoverOriginal).
	Key               string    `json:"key"`
	SHA256            string    `json:"sha256"`
	TransferSyntaxUID string    `json:"ts"`
	Size              int64     `json:"size"`
	ReceivedAt        time.Time `json:"received_at"`
	Source            string    `json:"source,omitempty"`
	Principal         string    `json:"principal,omitempty"`
	// Prefix is the original object up to its pixel data's value,
	// Suffix what follows the Pixels bytes of native frames.
	Prefix []byte `json:"prefix"`
	Pixels int64  `json:"pixels"`
	Suffix []byte `json:"suffix"`
}

// maxRecord bounds the description of the original: File Meta
// Information is read with a bound (dicom.ReadFileMeta's), and a header
// that does not fit is better left uncompressed.
const maxRecord = 768 << 10

// maxKept bounds the bytes of the original besides its pixels that
// Compress holds in memory to keep them (before DEFLATE: headers compress
// well).
const maxKept = 8 << 20

func (r *originalRecord) encode() ([]byte, error) {
	doc, err := json.Marshal(r)
	if err != nil {
		return nil, err
	}
	var b bytes.Buffer
	zw, _ := flate.NewWriter(&b, flate.BestCompression) // the level is valid
	zw.Write(doc)
	if err := zw.Close(); err != nil {
		return nil, err
	}
	if b.Len() > maxRecord {
		return nil, fmt.Errorf("%w: header of %d bytes too large to keep with the compressed object", ErrSkipped, len(r.Prefix)+len(r.Suffix))
	}
	return b.Bytes(), nil
}

// compressedOriginal reads the description of the original from the
// File Meta Information of an object; false when Compress did not
// write the object.
func compressedOriginal(fm dicom.FileMeta) (*originalRecord, bool, error) {
	if fm.PrivateInformationCreatorUID != CompressCreatorUID {
		return nil, false, nil
	}
	zr := flate.NewReader(bytes.NewReader(fm.PrivateInformation))
	defer zr.Close()
	var r originalRecord
	// What Compress keeps is at most maxKept bytes, a third more in
	// base64.
	if err := json.NewDecoder(io.LimitReader(zr, 2*maxKept+1<<20)).Decode(&r); err != nil {
		return nil, true, fmt.Errorf("archive: description of the original: %w", err)
	}
	if _, ok := uid.LookupTransferSyntax(r.TransferSyntaxUID); !ok || r.Pixels < 0 || r.Size != int64(len(r.Prefix))+r.Pixels+int64(len(r.Suffix)) {
		return nil, true, errors.New("archive: description of the original is inconsistent")
	}
	return &r, true, nil
}

// uncompressed reports whether Compress takes objects of syntax ts.
func uncompressed(ts string) bool {
	return ts == uid.ImplicitVRLittleEndian || ts == uid.ExplicitVRLittleEndian
}

// Compress re-encodes the object of in, as the index records it, in
// transfer syntax ts, losslessly, with Config.Codecs, as described
// above. It returns an error wrapping ErrSkipped for an instance to
// leave as it is, ErrChanged for one replaced meanwhile, and other
// errors (storage or the index unavailable, ctx done) for one to try
// again; nothing then is lost, and at worst an orphan is left for
// Verify.
func (s *Service) Compress(ctx context.Context, in *index.Instance, ts string) (*Compression, error) {
	codecs := s.cfg.Codecs
	if codecs == nil {
		return nil, errors.New("archive: compress: no codecs")
	}
	if !uncompressed(in.TransferSyntaxUID) {
		return nil, fmt.Errorf("%w: stored in %s, not uncompressed little endian", ErrSkipped, uid.Name(in.TransferSyntaxUID))
	}
	if _, ok := uid.LookupTransferSyntax(ts); !ok || dicom.Transcodable(ts) {
		return nil, fmt.Errorf("archive: compress: %q is not a compressed transfer syntax", ts)
	}
	// The original, read whole: its hash must be the one recorded, and
	// its header says where its frames are.
	orig, _, err := readInstance(ctx, s.cfg.Store, storage.Info{Key: in.Key}, s.cfg.Limits)
	switch {
	case errors.Is(err, storage.ErrNotFound):
		return nil, fmt.Errorf("%w: %s: %w", ErrChanged, in.Key, err)
	case errors.Is(err, ErrInvalid):
		return nil, fmt.Errorf("%w: %v", ErrSkipped, err)
	case err != nil:
		return nil, fmt.Errorf("%w: read %s: %v", ErrUnavailable, in.Key, err)
	case orig.SHA256 != in.SHA256 || orig.Size != in.Size:
		s.log.Error("object differs from its record; verify reports it", "key", in.Key, "sha256", orig.SHA256, "recorded_sha256", in.SHA256)
		return nil, fmt.Errorf("%w: object %s differs from its record", ErrSkipped, in.Key)
	}
	pixels, err := s.nativePixels(ctx, orig)
	if err != nil {
		return nil, err
	}
	obj, err := s.Open(ctx, in)
	if err != nil {
		return nil, err
	}
	defer obj.Close()
	if kept := in.Size - pixels.Length; kept > maxKept {
		return nil, fmt.Errorf("%w: %d bytes besides the pixels, more than the %d kept with a compressed object", ErrSkipped, kept, maxKept)
	}
	rec := &originalRecord{Key: in.Key, SHA256: in.SHA256, TransferSyntaxUID: in.TransferSyntaxUID, Size: in.Size,
		ReceivedAt: in.ReceivedAt, Source: in.Source, Principal: in.Principal, Pixels: pixels.Length}
	rec.Prefix = make([]byte, pixels.Offset)
	rec.Suffix = make([]byte, in.Size-pixels.Offset-pixels.Length)
	if _, err := obj.ReadAt(rec.Prefix, 0); err != nil {
		return nil, fmt.Errorf("%w: read %s: %v", ErrUnavailable, in.Key, err)
	}
	if _, err := obj.ReadAt(rec.Suffix, pixels.Offset+pixels.Length); err != nil && !(errors.Is(err, io.EOF) && len(rec.Suffix) == 0) {
		return nil, fmt.Errorf("%w: read %s: %v", ErrUnavailable, in.Key, err)
	}
	fm, dataStart, err := dicom.ReadFileMeta(bufio.NewReader(bytes.NewReader(rec.Prefix)))
	if err != nil {
		return nil, fmt.Errorf("%w: %v", ErrSkipped, err)
	}
	private, err := rec.encode()
	if err != nil {
		return nil, err
	}
	fm.TransferSyntaxUID = ts
	fm.PrivateInformationCreatorUID, fm.PrivateInformation = CompressCreatorUID, private
	meta := dicom.AppendFileMeta(nil, fm)

	// The new version sorts just after the original, so that any
	// version stored since, by this node or another, sorts after it: a
	// store that raced the compression wins, as it would have won over
	// the original.
	key := Key(in.StudyInstanceUID, in.SeriesInstanceUID, in.SOPInstanceUID, s.compressedVersion(in))
	written, err := s.writeCompressed(ctx, obj, key, meta, dataStart, in.TransferSyntaxUID, ts)
	if err != nil {
		return nil, err
	}
	// From here on the new object exists: anything that fails deletes
	// it, unless it is recorded.
	keep := false
	defer func() {
		if !keep {
			dctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), deleteTimeout)
			s.discard(dctx, key)
			cancel()
		}
	}()
	got, err := s.checkCompressed(ctx, key, written, obj, pixels)
	if err != nil {
		return nil, err
	}
	if got.Size >= in.Size {
		return nil, fmt.Errorf("%w: %s saves nothing: %d bytes, the original %d", ErrSkipped, uid.Name(ts), got.Size, in.Size)
	}
	got.CallingAE, got.CalledAE, got.Source, got.Principal = in.CallingAE, in.CalledAE, in.Source, in.Principal
	got.ReceivedAt, got.Amended = in.ReceivedAt, in.Amended
	original := index.Original{Key: key, SHA256: in.SHA256, TransferSyntaxUID: in.TransferSyntaxUID, Size: in.Size, CompressedAt: s.now().UTC()}
	put := &index.PutRequest{Instance: got, Original: &original, Check: func(current *index.Instance) error {
		if current == nil || current.Key != in.Key {
			return ErrChanged
		}
		return nil
	}}
	put.NHSNumber = s.nhsNumber(index.Overlay(got.Header, got.Amended), got.SOPInstanceUID)
	// The new object is durable and checked: recording it must not stop
	// halfway because the caller gave up.
	fctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), s.cfg.CommitTimeout)
	defer cancel()
	p, err := s.cfg.Index.PreparePut(fctx, put)
	if err != nil {
		return nil, fmt.Errorf("%w: index: %v", ErrUnavailable, err)
	}
	start := time.Now()
	_, err = p.Commit(fctx)
	var failed error
	if err != nil && !errors.Is(err, ErrChanged) && !errors.Is(err, index.ErrRejected) {
		failed = err
	}
	s.obs.ObserveIndexCommit(time.Since(start), failed)
	switch {
	case err == nil:
	case errors.Is(err, ErrChanged), errors.Is(err, index.ErrRejected):
		return nil, fmt.Errorf("%w: %s", ErrChanged, in.SOPInstanceUID)
	default:
		if !s.recorded(fctx, key, in.SOPInstanceUID) {
			return nil, fmt.Errorf("%w: index %s: %v", ErrUnavailable, in.SOPInstanceUID, err)
		}
	}
	keep = true
	dctx, dcancel := context.WithTimeout(fctx, deleteTimeout)
	if err := s.cfg.Store.Delete(dctx, in.Key); err != nil {
		s.log.Error("original of a compressed instance not deleted; verify reports it as an orphan", "key", in.Key, "err", err)
	}
	dcancel()
	return &Compression{Instance: got, Original: original}, nil
}

// recorded reports whether the index names key for an instance, after a
// commit that reported a failure.
func (s *Service) recorded(ctx context.Context, key, sopInstanceUID string) bool {
	in, err := s.cfg.Index.Instance(ctx, sopInstanceUID)
	return err == nil && in.Key == key
}

// compressedVersion returns the version of the compressed object of in:
// a microsecond after the original's.
func (s *Service) compressedVersion(in *index.Instance) string {
	t := in.ReceivedAt
	if loc, ok := ParseKey(in.Key); ok && loc.Version != "" {
		t, _ = versionTime(loc.Version)
	}
	var r [8]byte
	rand.Read(r[:]) // never fails (crypto/rand)
	return t.Add(time.Microsecond).UTC().Truncate(time.Microsecond).Format(versionLayout) + "_" + hex.EncodeToString(r[:])
}

// nativePixels locates the native pixel data of an original: its frames
// one after the other, of the size Image Pixel attributes give them.
func (s *Service) nativePixels(ctx context.Context, orig *index.Instance) (Range, error) {
	h := orig.Header
	if h == nil {
		return Range{}, fmt.Errorf("%w: no header", ErrSkipped)
	}
	px, ok := h.Find(tag.PixelData)
	if !ok {
		return Range{}, fmt.Errorf("%w: no pixel data (0x7FE0,0010)", ErrSkipped)
	}
	if px.VR != "OB" && px.VR != "OW" {
		return Range{}, fmt.Errorf("%w: pixel data of VR %s", ErrSkipped, px.VR)
	}
	bits, _ := strconv.Atoi(h.First(tag.BitsAllocated))
	if bits != 8 && bits != 16 {
		return Range{}, fmt.Errorf("%w: %d bits allocated; the lossless encoders take 8 or 16", ErrSkipped, bits)
	}
	spp, _ := strconv.Atoi(h.First(tag.SamplesPerPixel))
	if planar, _ := strconv.Atoi(h.First(tag.PlanarConfiguration)); spp > 1 && planar != 0 {
		return Range{}, fmt.Errorf("%w: colour by plane, which the encoders write by pixel", ErrSkipped)
	}
	var md *Metadata
	var err error
	if orig.Metadata != nil {
		md, err = decodeMetadata(orig.Metadata)
	} else {
		md, err = s.readMetadata(ctx, orig)
	}
	if err != nil || len(md.Frames) == 0 {
		return Range{}, fmt.Errorf("%w: frames not located: %v", ErrSkipped, err)
	}
	first := md.Frames[0]
	if len(first) != 1 {
		return Range{}, fmt.Errorf("%w: frames not contiguous", ErrSkipped)
	}
	r := first[0]
	for _, f := range md.Frames[1:] {
		if len(f) != 1 || f[0].Offset != r.Offset+r.Length {
			return Range{}, fmt.Errorf("%w: frames not contiguous", ErrSkipped)
		}
		r.Length += f[0].Length
	}
	if r.Offset+r.Length > orig.Size {
		return Range{}, fmt.Errorf("%w: pixel data shorter than its attributes declare", ErrSkipped)
	}
	return r, nil
}

// writeCompressed writes the compressed object under key: meta, then
// the data set of obj after its dataStart bytes of File Meta
// Information, from syntax from to to. It returns the new object's
// SHA-256.
func (s *Service) writeCompressed(ctx context.Context, obj storage.Object, key string, meta []byte, dataStart int64, from, to string) (string, error) {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	pr, pw := io.Pipe()
	done := make(chan error, 1)
	go func() {
		src := io.NewSectionReader(obj, dataStart, obj.Size()-dataStart)
		err := s.cfg.Codecs.Transcode(ctx, pw, bufio.NewReaderSize(ctxReader{ctx, src}, 64<<10), from, to)
		pw.CloseWithError(err)
		done <- err
	}()
	sum := sha256.New()
	body := io.TeeReader(io.MultiReader(bytes.NewReader(meta), sourceReader{pr}), sum)
	start := time.Now()
	_, err := s.cfg.Store.Put(ctx, key, body, -1)
	pr.CloseWithError(errors.New("archive: compressed object written"))
	terr := <-done
	if err == nil {
		s.obs.ObserveStoragePut(s.cfg.Backend, time.Since(start), nil)
		return hex.EncodeToString(sum.Sum(nil)), nil
	}
	// Storage may have kept part of it; nothing names it.
	dctx, dcancel := context.WithTimeout(context.WithoutCancel(ctx), deleteTimeout)
	s.discard(dctx, key)
	dcancel()
	switch {
	case errors.Is(terr, ErrSkipped):
		return "", terr
	case isSourceError(err) && terr != nil && ctx.Err() == nil:
		return "", fmt.Errorf("%w: encoding failed: %v", ErrSkipped, terr)
	}
	s.obs.ObserveStoragePut(s.cfg.Backend, time.Since(start), err)
	return "", fmt.Errorf("%w: store %s: %v", ErrUnavailable, key, err)
}

// checkCompressed reads the new object back from storage and checks it:
// its hash is what was written, every frame decodes to the original's
// pixels bit for bit, and the original rebuilt from it has the
// original's SHA-256. It returns the new object's record.
func (s *Service) checkCompressed(ctx context.Context, key, sha string, orig storage.Object, pixels Range) (*index.Instance, error) {
	got, _, err := readInstance(ctx, s.cfg.Store, storage.Info{Key: key}, s.cfg.Limits)
	if err != nil {
		return nil, fmt.Errorf("%w: read back %s: %v", ErrUnavailable, key, err)
	}
	if got.SHA256 != sha {
		return nil, fmt.Errorf("%w: %s reads back with SHA-256 %s, written %s", ErrUnavailable, key, got.SHA256, sha)
	}
	var offset int64
	var frame []byte
	check := func(n int, native []byte) error {
		frame = grow(frame, len(native))
		if offset+int64(len(native)) > pixels.Length {
			return fmt.Errorf("%w: frame %d decodes to more pixels than the original has", ErrSkipped, n)
		}
		if _, err := orig.ReadAt(frame, pixels.Offset+offset); err != nil {
			return fmt.Errorf("%w: read original: %v", ErrUnavailable, err)
		}
		if i := firstDifference(frame, native); i >= 0 {
			return fmt.Errorf("%w: frame %d decodes to other pixel values than the original's (byte %d)", ErrSkipped, n, i)
		}
		offset += int64(len(native))
		return nil
	}
	sum := sha256.New()
	rec, err := s.rebuild(ctx, got, sum, check)
	if err != nil {
		return nil, err
	}
	if h := hex.EncodeToString(sum.Sum(nil)); h != rec.SHA256 {
		return nil, fmt.Errorf("%w: the original rebuilt has SHA-256 %s, not %s", ErrSkipped, h, rec.SHA256)
	}
	return got, nil
}

func grow(b []byte, n int) []byte {
	if cap(b) < n {
		return make([]byte, n)
	}
	return b[:n]
}

// firstDifference returns the index of the first byte where a and b
// differ, or -1 when they are equal.
func firstDifference(a, b []byte) int {
	if bytes.Equal(a, b) {
		return -1
	}
	for i := range min(len(a), len(b)) {
		if a[i] != b[i] {
			return i
		}
	}
	return min(len(a), len(b))
}

// rebuild writes to w the original of the compressed object of in,
// byte for byte, a frame at a time, and returns its description; check,
// if not nil, sees each native frame first. It fails, wrapping
// ErrSkipped, when the object does not give back what its description
// says.
func (s *Service) rebuild(ctx context.Context, in *index.Instance, w io.Writer, check func(n int, native []byte) error) (*originalRecord, error) {
	obj, err := s.Open(ctx, in)
	if err != nil {
		return nil, err
	}
	defer obj.Close()
	fm, _, err := dicom.ReadFileMeta(bufio.NewReaderSize(io.NewSectionReader(obj, 0, obj.Size()), 64<<10))
	if err != nil {
		return nil, fmt.Errorf("%w: %s: %v", ErrSkipped, in.Key, err)
	}
	rec, ok, err := compressedOriginal(fm)
	switch {
	case err != nil:
		return nil, fmt.Errorf("%w: %s: %v", ErrSkipped, in.Key, err)
	case !ok:
		return nil, fmt.Errorf("%w: %s was not written by Compress", ErrSkipped, in.Key)
	}
	var md *Metadata
	if in.Metadata != nil {
		md, err = decodeMetadata(in.Metadata)
	} else {
		md, err = s.storedMetadata(ctx, in)
	}
	if err != nil {
		return nil, err
	}
	header := in.Header
	if header == nil {
		if header, err = dicom.ParseJSON(md.JSON); err != nil {
			return nil, fmt.Errorf("%w: header of %s: %v", ErrSkipped, in.Key, err)
		}
	}
	if _, err := w.Write(rec.Prefix); err != nil {
		return nil, err
	}
	var src, native []byte
	var total int64
	for n, f := range md.Frames {
		if err := ctx.Err(); err != nil {
			return nil, err
		}
		size := f.Size()
		if size > 2*rec.Pixels+1<<20 || size > obj.Size() {
			return nil, fmt.Errorf("%w: frame %d of %s: %d bytes compressed", ErrSkipped, n+1, in.Key, size)
		}
		src = grow(src, int(size))
		at := 0
		for _, r := range f {
			if _, err := obj.ReadAt(src[at:at+int(r.Length)], r.Offset); err != nil {
				return nil, fmt.Errorf("%w: read %s: %v", ErrUnavailable, in.Key, err)
			}
			at += int(r.Length)
		}
		native, err = s.cfg.Codecs.DecodeFrame(native[:0], src, fm.TransferSyntaxUID, header)
		if err != nil {
			return nil, fmt.Errorf("%w: frame %d of %s does not decode: %v", ErrSkipped, n+1, in.Key, err)
		}
		if total += int64(len(native)); total > rec.Pixels {
			return nil, fmt.Errorf("%w: %s decodes to more pixels than the original had", ErrSkipped, in.Key)
		}
		if check != nil {
			if err := check(n+1, native); err != nil {
				return nil, err
			}
		}
		if _, err := w.Write(native); err != nil {
			return nil, err
		}
	}
	if total != rec.Pixels {
		return nil, fmt.Errorf("%w: %s decodes to %d bytes of pixels, the original had %d", ErrSkipped, in.Key, total, rec.Pixels)
	}
	if _, err := w.Write(rec.Suffix); err != nil {
		return nil, err
	}
	return rec, nil
}

// Original is the object an instance was received as, rebuilt from the
// object Compress wrote. It reads from start to end: Seek only tells
// where it is, and ReadAt is not supported.
type Original struct {
	io.Reader
	size   int64
	sha256 string
	read   int64
	closer func() error
}

// Size returns the original object's length in bytes.
func (o *Original) Size() int64 { return o.size }

// SHA256 returns the hex SHA-256 of the original object, which the index
// keeps as the instance's original (the object stored now has its own).
func (o *Original) SHA256() string { return o.sha256 }

func (o *Original) Read(p []byte) (int, error) {
	n, err := o.Reader.Read(p)
	o.read += int64(n)
	return n, err
}

// Seek reports the position read so far; it cannot move it.
func (o *Original) Seek(offset int64, whence int) (int64, error) {
	if (whence == io.SeekCurrent && offset == 0) || (whence == io.SeekStart && offset == o.read) {
		return o.read, nil
	}
	return o.read, errors.New("archive: an original rebuilt is read from start to end")
}

// ReadAt is not supported: the original is rebuilt from start to end.
func (o *Original) ReadAt([]byte, int64) (int, error) {
	return 0, errors.New("archive: an original rebuilt is read from start to end")
}

// Close ends the rebuilding.
func (o *Original) Close() error { return o.closer() }

// OpenOriginal opens the object an instance was received as: its object,
// or for an instance Compress re-encoded, the original rebuilt from it,
// byte for byte, a frame at a time. The caller closes it.
func (s *Service) OpenOriginal(ctx context.Context, in *index.Instance) (storage.Object, error) {
	obj, err := s.Open(ctx, in)
	if err != nil || uncompressed(in.TransferSyntaxUID) {
		return obj, err
	}
	fm, _, err := dicom.ReadFileMeta(bufio.NewReaderSize(io.NewSectionReader(obj, 0, obj.Size()), 64<<10))
	if err != nil {
		return obj, nil // served as it is; its reader finds out
	}
	rec, ok, err := compressedOriginal(fm)
	if !ok {
		return obj, nil
	}
	obj.Close()
	if err != nil {
		return nil, fmt.Errorf("archive: %s: %w", in.Key, err)
	}
	o := s.openRebuilt(ctx, in, rec.Size)
	o.sha256 = rec.SHA256
	return o, nil
}

// openRebuilt rebuilds the original of in as it is read.
func (s *Service) openRebuilt(ctx context.Context, in *index.Instance, size int64) *Original {
	ctx, cancel := context.WithCancel(ctx)
	pr, pw := io.Pipe()
	done := make(chan struct{})
	go func() {
		defer close(done)
		_, err := s.rebuild(ctx, in, pw, nil)
		if err != nil {
			err = fmt.Errorf("archive: rebuild the original of %s: %w", in.SOPInstanceUID, err)
		}
		pw.CloseWithError(err)
	}()
	return &Original{Reader: pr, size: size, closer: func() error {
		cancel()
		pr.Close()
		<-done
		return nil
	}}
}

// openOriginalDataset opens, in syntax ts, the data set of an instance
// stored compressed by Compress, from its original rebuilt byte for
// byte: the original's own bytes when ts is its syntax. It reports false
// for an object Compress did not write.
func (s *Service) openOriginalDataset(ctx context.Context, in *index.Instance, ts string) (dicom.FileMeta, io.ReadCloser, bool, error) {
	obj, err := s.OpenOriginal(ctx, in)
	if err != nil {
		return dicom.FileMeta{}, nil, true, err
	}
	rebuilt, ok := obj.(*Original)
	if !ok {
		obj.Close()
		return dicom.FileMeta{}, nil, false, nil
	}
	br := bufio.NewReaderSize(rebuilt, 64<<10)
	fm, _, err := dicom.ReadFileMeta(br)
	if err != nil {
		rebuilt.Close()
		return dicom.FileMeta{}, nil, true, fmt.Errorf("archive: original of %s: %w", in.Key, err)
	}
	orig := *in
	orig.TransferSyntaxUID = fm.TransferSyntaxUID
	e, err := s.editOf(ctx, in)
	if err != nil {
		rebuilt.Close()
		return dicom.FileMeta{}, nil, true, err
	}
	if e != nil {
		from, to, encapsulated, err := amendSyntaxes(&orig, ts)
		if err != nil {
			rebuilt.Close()
			return dicom.FileMeta{}, nil, true, err
		}
		return fm, amended(br, from, to, encapsulated, e, rebuilt.Close), true, nil
	}
	if ts == fm.TransferSyntaxUID {
		return fm, &datasetReader{Reader: br, close: rebuilt.Close}, true, nil
	}
	return fm, transcoded(br, fm.TransferSyntaxUID, ts, rebuilt.Close), true, nil
}

// errOriginalKept reports a compressed object whose original is still
// in storage: a compression that stopped before it was done, whose
// object may not have been checked.
var errOriginalKept = errors.New("archive: the original of a compressed object is still stored")

// recoverOriginal reads the description of the original that Compress
// kept in the object of in, for Reindex: it restores in's arrival and
// sender, and returns the description for the index, or nil for an
// object Compress did not write. While the original object is still in
// storage it returns errOriginalKept: the compression stopped before
// deleting it, perhaps before checking the new object, and the original
// is the one to index (the compressed object is then an orphan, and a
// later compression starts again).
func recoverOriginal(ctx context.Context, store storage.Store, in *index.Instance) (*index.Original, error) {
	if dicom.Transcodable(in.TransferSyntaxUID) {
		return nil, nil
	}
	obj, err := store.Open(ctx, in.Key)
	if err != nil {
		return nil, err
	}
	defer obj.Close()
	fm, _, err := dicom.ReadFileMeta(bufio.NewReaderSize(io.NewSectionReader(obj, 0, obj.Size()), 64<<10))
	if err != nil {
		return nil, fmt.Errorf("%w: %w", ErrInvalid, err)
	}
	rec, ok, err := compressedOriginal(fm)
	if !ok || err != nil {
		return nil, err
	}
	if rec.Key != "" {
		switch _, err := store.Stat(ctx, rec.Key); {
		case err == nil:
			return nil, errOriginalKept
		case !errors.Is(err, storage.ErrNotFound):
			return nil, err
		}
	}
	in.ReceivedAt, in.Source, in.Principal = rec.ReceivedAt, rec.Source, rec.Principal
	return &index.Original{Key: in.Key, SHA256: rec.SHA256, TransferSyntaxUID: rec.TransferSyntaxUID, Size: rec.Size}, nil
}
