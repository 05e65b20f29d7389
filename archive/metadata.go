package archive

import (
	"bufio"
	"bytes"
	"context"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"strconv"

	"github.com/pacsd/pacsd/dicom"
	"github.com/pacsd/pacsd/dicom/tag"
	"github.com/pacsd/pacsd/dicom/uid"
	"github.com/pacsd/pacsd/index"
)

// BulkDataPrefix begins every BulkDataURI in Metadata.JSON: the URIs are
// relative to the instance's URL, which only the HTTP front door knows,
// and it replaces the prefix with an absolute one. The rest of the URI is
// "OFFSET/LENGTH": the value's bytes in the object.
const BulkDataPrefix = "bulkdata/"

// Metadata is what DICOMweb serves of an instance without reading its
// object: the header as DICOM JSON and where each frame of its pixel data
// lies in the object, so that frames are served by ranged reads.
type Metadata struct {
	// JSON is the header as a DICOM JSON object (PS3.18 Annex F), binary
	// values of more than dicom.Limits.Inline bytes as BulkDataURIs
	// beginning with BulkDataPrefix, and Pixel Data's too.
	JSON json.RawMessage `json:"json"`
	// TransferSyntaxUID is the syntax of the object's data set.
	TransferSyntaxUID string `json:"ts"`
	// Frames locates the frames of the pixel data: each is one or more
	// ranges of the object, concatenated (an encapsulated frame may span
	// fragments). Empty when the instance has no pixel data or its frames
	// cannot be located. The ranges of a deflated object, and the
	// offsets of its BulkDataURIs, are of the object as
	// dicom.InflatedObject reads it: its data set inflated.
	Frames []Frame `json:"frames,omitempty"`
}

// Frame is one frame of pixel data, as ranges of bytes of an object.
type Frame []Range

// Range is a run of bytes of an object.
type Range struct {
	Offset int64 `json:"o"`
	Length int64 `json:"n"`
}

// Size returns the frame's length in bytes.
func (f Frame) Size() int64 {
	var n int64
	for _, r := range f {
		n += r.Length
	}
	return n
}

// ErrNoMetadata reports an instance whose header cannot be read back
// from its object.
var ErrNoMetadata = errors.New("archive: no metadata")

// Metadata returns the metadata of an archived instance: the document
// the index keeps, computed at ingest, or, for an instance without one,
// the object's header read back; with the header as the instance is
// served (see amend.go).
func (s *Service) Metadata(ctx context.Context, in *index.Instance) (*Metadata, error) {
	m, err := s.storedMetadata(ctx, in)
	if err != nil {
		return nil, err
	}
	e, err := s.editOf(ctx, in)
	if err != nil || e == nil {
		return m, err
	}
	out := *m
	if out.JSON, err = amendJSON(m.JSON, e); err != nil {
		return nil, fmt.Errorf("%w: %s: %v", ErrNoMetadata, in.SOPInstanceUID, err)
	}
	return &out, nil
}

// storedMetadata returns the metadata of an instance's object, as
// stored.
func (s *Service) storedMetadata(ctx context.Context, in *index.Instance) (*Metadata, error) {
	doc, err := s.cfg.Index.Metadata(ctx, in)
	switch {
	case err == nil:
		if m, err := decodeMetadata(doc); err == nil {
			return m, nil
		}
		s.log.Warn("metadata kept in the index cannot be read; reading the object", "sop_instance_uid", in.SOPInstanceUID)
	case !errors.Is(err, index.ErrNotFound):
		return nil, fmt.Errorf("%w: index: %v", ErrUnavailable, err)
	}
	return s.readMetadata(ctx, in)
}

// readMetadata computes the metadata of an instance from its object.
func (s *Service) readMetadata(ctx context.Context, in *index.Instance) (*Metadata, error) {
	obj, err := s.Open(ctx, in)
	if err != nil {
		return nil, err
	}
	defer obj.Close()
	br := bufio.NewReaderSize(obj, 64<<10)
	fm, metaLen, err := dicom.ReadFileMeta(br)
	if err != nil {
		return nil, fmt.Errorf("%w: %s: %v", ErrNoMetadata, in.Key, err)
	}
	ts, ok := uid.LookupTransferSyntax(fm.TransferSyntaxUID)
	if !ok {
		return nil, fmt.Errorf("%w: %s: transfer syntax %q is unknown", ErrNoMetadata, in.Key, fm.TransferSyntaxUID)
	}
	sc := dicom.NewScanner(br, ts, s.cfg.Limits)
	defer sc.Close()
	if _, err := sc.Identify(); err != nil {
		return nil, fmt.Errorf("%w: %s: %v", ErrNoMetadata, in.Key, err)
	}
	if _, err := io.Copy(io.Discard, sc.Rest()); err != nil {
		return nil, fmt.Errorf("%w: read %s: %v", ErrUnavailable, in.Key, err)
	}
	h := sc.Header()
	if h.Dataset == nil {
		return nil, fmt.Errorf("%w: %s: %v", ErrNoMetadata, in.Key, h.Err)
	}
	return newMetadata(h, metaLen, ts, obj)
}

// ingestMetadata returns the metadata document of an instance being
// stored, for the index; nil when it cannot be made from the header
// alone (a header not read to its end, frames that can only be told
// apart by reading them), and is then computed from the object when
// first asked for.
func ingestMetadata(h dicom.Header, dataStart int64, ts uid.TransferSyntax) []byte {
	if h.Err != nil || h.Dataset == nil {
		return nil
	}
	m, err := newMetadata(h, dataStart, ts, nil)
	if err != nil {
		return nil
	}
	return m.encode()
}

// The document kept in the index is the Metadata without its JSON,
// encoded as JSON on one line, then a newline and the DICOM JSON as it
// is: reading it does not copy or scan the large part.
func (m *Metadata) encode() []byte {
	head, _ := json.Marshal(struct {
		TransferSyntaxUID string  `json:"ts"`
		Frames            []Frame `json:"frames,omitempty"`
	}{m.TransferSyntaxUID, m.Frames}) // plain strings and numbers
	return append(append(head, '\n'), m.JSON...)
}

func decodeMetadata(doc []byte) (*Metadata, error) {
	i := bytes.IndexByte(doc, '\n')
	if i < 0 {
		return nil, errors.New("archive: metadata document without a head")
	}
	m := &Metadata{}
	var head struct {
		TransferSyntaxUID string  `json:"ts"`
		Frames            []Frame `json:"frames"`
	}
	if err := json.Unmarshal(doc[:i], &head); err != nil {
		return nil, fmt.Errorf("archive: metadata document: %w", err)
	}
	m.TransferSyntaxUID, m.Frames, m.JSON = head.TransferSyntaxUID, head.Frames, doc[i+1:]
	return m, nil
}

// errNeedObject reports frames that only the object's bytes can locate.
var errNeedObject = errors.New("archive: frames need the object to be located")

// newMetadata builds the metadata of a data set that starts at offset
// dataStart of an object; r reads the object, for the few encapsulated
// data sets whose frames can only be told apart by their content (with r
// nil, those give errNeedObject).
func newMetadata(h dicom.Header, dataStart int64, ts uid.TransferSyntax, r io.ReaderAt) (*Metadata, error) {
	m := &Metadata{TransferSyntaxUID: ts.UID}
	bulk := func(_ []tag.Tag, b *dicom.Binary) string {
		if b.Offset < 0 {
			return ""
		}
		return BulkDataPrefix + strconv.FormatInt(dataStart+b.Offset, 10) + "/" + strconv.FormatInt(b.Length, 10)
	}
	ds := h.Dataset
	if pd := h.PixelData; pd != nil {
		// Pixel Data is always a BulkDataURI, however small: viewers
		// read it by frame, and series metadata stays small.
		if e, ok := ds.Find(tag.PixelData); ok && e.Binary != nil {
			e.Binary = &dicom.Binary{Offset: pd.Offset, Length: pd.Length, Encapsulated: pd.Encapsulated}
		}
		frames, err := locateFrames(h, dataStart, ts, r)
		if err != nil {
			return nil, err
		}
		m.Frames = frames
	}
	m.JSON = ds.AppendJSON(nil, dicom.JSONOptions{BulkDataURI: bulk})
	return m, nil
}

// locateFrames finds the frames of the pixel data of h.
func locateFrames(h dicom.Header, dataStart int64, ts uid.TransferSyntax, r io.ReaderAt) ([]Frame, error) {
	ds, pd := h.Dataset, h.PixelData
	n := 1
	if v := ds.First(tag.NumberOfFrames); v != "" {
		if f, err := strconv.Atoi(v); err == nil && f > 0 {
			n = f
		}
	}
	if !pd.Encapsulated {
		rows, _ := strconv.Atoi(ds.First(tag.Rows))
		cols, _ := strconv.Atoi(ds.First(tag.Columns))
		spp, _ := strconv.Atoi(ds.First(tag.SamplesPerPixel))
		bits, _ := strconv.Atoi(ds.First(tag.BitsAllocated))
		if spp == 0 {
			spp = 1
		}
		if ds.First(tag.PhotometricInterpretation) == "YBR_FULL_422" && spp == 3 {
			spp = 2 // two luminance samples share one pair of chrominance samples
		}
		bitsPerFrame := int64(rows) * int64(cols) * int64(spp) * int64(bits)
		if bitsPerFrame <= 0 || (n > 1 && bitsPerFrame%8 != 0) {
			return nil, nil // frames that do not start on a byte
		}
		size := (bitsPerFrame + 7) / 8
		if size*int64(n) > pd.Length {
			return nil, nil // Pixel Data too short for its frames
		}
		frames := make([]Frame, n)
		for i := range frames {
			frames[i] = Frame{{dataStart + pd.Offset + int64(i)*size, size}}
		}
		return frames, nil
	}
	if len(pd.Fragments) < 2 {
		return nil, nil
	}
	bot, frags := pd.Fragments[0], pd.Fragments[1:]
	abs := func(f dicom.Fragment) Range { return Range{dataStart + f.Offset, f.Length} }
	switch {
	case n == 1:
		f := make(Frame, len(frags))
		for i, fr := range frags {
			f[i] = abs(fr)
		}
		return []Frame{f}, nil
	case len(frags) == n:
		frames := make([]Frame, n)
		for i, fr := range frags {
			frames[i] = Frame{abs(fr)}
		}
		return frames, nil
	case r == nil:
		return nil, errNeedObject
	case bot.Length == 4*int64(n):
		return framesByOffsetTable(bot, frags, dataStart, n, r)
	}
	return framesByMarker(frags, dataStart, n, r)
}

// framesByOffsetTable splits fragments into frames at the offsets of the
// Basic Offset Table, which count from the first fragment's item tag.
func framesByOffsetTable(bot dicom.Fragment, frags []dicom.Fragment, dataStart int64, n int, r io.ReaderAt) ([]Frame, error) {
	table := make([]byte, bot.Length)
	if _, err := r.ReadAt(table, dataStart+bot.Offset); err != nil {
		return nil, fmt.Errorf("%w: read basic offset table: %v", ErrUnavailable, err)
	}
	first := frags[0].Offset - 8 // the first item's tag
	frames := make([]Frame, n)
	fi := 0
	for _, fr := range frags {
		rel := uint32(fr.Offset - 8 - first)
		for fi+1 < n && rel >= binary.LittleEndian.Uint32(table[4*(fi+1):]) {
			fi++
		}
		frames[fi] = append(frames[fi], Range{dataStart + fr.Offset, fr.Length})
	}
	for _, f := range frames {
		if len(f) == 0 {
			return nil, nil // an offset table that does not fit the fragments
		}
	}
	return frames, nil
}

// framesByMarker splits fragments into frames where a fragment begins a
// JPEG (SOI) or JPEG 2000 (SOC) codestream, for data sets without an
// offset table and with more fragments than frames.
func framesByMarker(frags []dicom.Fragment, dataStart int64, n int, r io.ReaderAt) ([]Frame, error) {
	var frames []Frame
	var b [2]byte
	for _, fr := range frags {
		start := false
		if fr.Length >= 2 {
			if _, err := r.ReadAt(b[:], dataStart+fr.Offset); err != nil {
				return nil, fmt.Errorf("%w: read fragment: %v", ErrUnavailable, err)
			}
			start = b[0] == 0xFF && (b[1] == 0xD8 || b[1] == 0x4F)
		}
		if start || len(frames) == 0 {
			frames = append(frames, nil)
		}
		frames[len(frames)-1] = append(frames[len(frames)-1], Range{dataStart + fr.Offset, fr.Length})
	}
	if len(frames) != n {
		return nil, nil
	}
	return frames, nil
}
