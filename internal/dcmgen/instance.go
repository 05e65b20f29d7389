package dcmgen

import (
	"bufio"
	"cmp"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"os"
	"slices"
	"strings"
)

// SOP classes dcmgen chooses by itself.
const (
	// CTImageStorage is the default SOP class of a single-frame instance.
	CTImageStorage = "1.2.840.10008.5.1.4.1.1.2"
	// MultiFrameGrayscaleByteSCStorage is the default SOP class of a
	// multi-frame instance with 8 bits allocated: CT Image Storage is a
	// single-frame IOD, so a multi-frame instance needs another class.
	MultiFrameGrayscaleByteSCStorage = "1.2.840.10008.5.1.4.1.1.7.2"
	// MultiFrameGrayscaleWordSCStorage is the default SOP class of a
	// multi-frame instance with 16 bits allocated.
	MultiFrameGrayscaleWordSCStorage = "1.2.840.10008.5.1.4.1.1.7.3"
)

// Patient is the patient level of a study tree.
type Patient struct {
	Name              string // PN, e.g. "Doe^Jane"
	ID                string
	IssuerOfPatientID string
	BirthDate         string // DA, YYYYMMDD
	Sex               string // M, F or O
}

// Study is the study level of a study tree. An empty UID is filled with a
// new one when the first instance is written or sized.
type Study struct {
	UID                    string
	Date                   string // DA, YYYYMMDD
	Time                   string // TM, HHMMSS
	AccessionNumber        string
	StudyID                string
	Description            string
	ReferringPhysicianName string
}

// Series is the series level of a study tree. An empty UID (and, for a
// cross-sectional image, an empty FrameOfReferenceUID) is filled with a new
// one when the first instance is written or sized. An empty Modality is
// derived from the SOP class: CT for CT Image Storage, OT otherwise.
type Series struct {
	UID                 string
	Modality            string
	Number              int // 0 writes an empty Series Number
	Description         string
	BodyPartExamined    string
	FrameOfReferenceUID string
}

// Instance describes one grayscale image instance together with the
// patient, study and series it belongs to. Instances that share a Study and
// Series value (with their UIDs filled) form one study tree; WriteSeries
// makes such a series.
//
// The zero Instance is usable: writing it fills in new UIDs, CT Image
// Storage, 64×64 pixels of 16 bits and one frame. The image is
// MONOCHROME2, one sample per pixel, unsigned; with 16 bits allocated 12
// are stored.
type Instance struct {
	Patient Patient
	Study   Study
	Series  Series

	// SOPClassUID defaults to CTImageStorage for one frame and to a
	// multi-frame grayscale secondary capture class for more.
	SOPClassUID    string
	SOPInstanceUID string
	InstanceNumber int // 0 writes an empty Instance Number

	Rows, Columns  int // default 64
	BitsAllocated  int // 8 or 16, default 16
	NumberOfFrames int // default 1

	// SpecificCharacterSet, e.g. "ISO_IR 100" or "ISO_IR 192", is written
	// as (0008,0005), and the patient, study and series strings above are
	// encoded in it.
	SpecificCharacterSet string

	// Syntax is the transfer syntax of the dataset.
	Syntax Syntax

	// Extra elements are added to the ones dcmgen generates; one with the
	// tag of a generated element replaces it. They need not be sorted.
	// Group 0002 and Pixel Data cannot be given here.
	Extra []Element

	// Pixels, if not nil, supplies exactly PixelLength bytes of Pixel
	// Data. If nil, a deterministic gradient is generated, different in
	// every row and frame, so that compression or a wrong offset shows.
	Pixels io.Reader
}

// PixelLength returns the length of the Pixel Data value in bytes, before
// padding.
func (in *Instance) PixelLength() int64 {
	return int64(in.Rows) * int64(in.Columns) * int64(max(in.NumberOfFrames, 1)) * int64(in.BitsAllocated/8)
}

// complete fills the defaults documented on Instance into in, so that the
// caller learns the UIDs that were written.
func (in *Instance) complete() error {
	if in.BitsAllocated == 0 {
		in.BitsAllocated = 16
	}
	if in.BitsAllocated != 8 && in.BitsAllocated != 16 {
		return fmt.Errorf("dcmgen: BitsAllocated %d: only 8 and 16 are generated", in.BitsAllocated)
	}
	if in.Rows == 0 {
		in.Rows = 64
	}
	if in.Columns == 0 {
		in.Columns = 64
	}
	if in.Rows < 1 || in.Rows > 0xFFFF || in.Columns < 1 || in.Columns > 0xFFFF {
		return fmt.Errorf("dcmgen: %d×%d pixels: Rows and Columns are US values from 1 to 65535", in.Rows, in.Columns)
	}
	if in.NumberOfFrames == 0 {
		in.NumberOfFrames = 1
	}
	if in.NumberOfFrames < 0 {
		return fmt.Errorf("dcmgen: NumberOfFrames %d", in.NumberOfFrames)
	}
	if n := in.PixelLength(); n+n%2 > maxLength32 {
		return fmt.Errorf("dcmgen: %d bytes of pixel data do not fit the 32-bit length of native Pixel Data", n)
	}
	if in.Syntax != ExplicitVRLittleEndian && in.Syntax != ImplicitVRLittleEndian {
		return fmt.Errorf("dcmgen: unknown transfer syntax %d", in.Syntax)
	}
	if in.SOPClassUID == "" {
		switch {
		case in.NumberOfFrames == 1:
			in.SOPClassUID = CTImageStorage
		case in.BitsAllocated == 8:
			in.SOPClassUID = MultiFrameGrayscaleByteSCStorage
		default:
			in.SOPClassUID = MultiFrameGrayscaleWordSCStorage
		}
	}
	if in.Series.Modality == "" {
		in.Series.Modality = "OT"
		if in.SOPClassUID == CTImageStorage {
			in.Series.Modality = "CT"
		}
	}
	fill := func(s *string) {
		if *s == "" {
			*s = UID()
		}
	}
	fill(&in.Study.UID)
	fill(&in.Series.UID)
	fill(&in.SOPInstanceUID)
	if !isSecondaryCapture(in.SOPClassUID) {
		fill(&in.Series.FrameOfReferenceUID)
	}
	return nil
}

// isSecondaryCapture reports whether class is one of the secondary capture
// image classes (PS3.4 B.5, 1.2.840.10008.5.1.4.1.1.7 and its children),
// which have no image plane or frame of reference.
func isSecondaryCapture(class string) bool {
	const sc = "1.2.840.10008.5.1.4.1.1.7"
	return class == sc || strings.HasPrefix(class, sc+".")
}

// elements returns the dataset of a completed instance, without Pixel
// Data, sorted by tag.
func (in *Instance) elements() ([]Element, error) {
	optional := func(v string) any {
		if v == "" {
			return nil
		}
		return v
	}
	number := func(n int) any {
		if n == 0 {
			return nil
		}
		return n
	}
	bitsStored := 12
	if in.BitsAllocated == 8 {
		bitsStored = 8
	}
	els := []Element{
		{0x00080016, "UI", in.SOPClassUID},
		{0x00080018, "UI", in.SOPInstanceUID},
		{0x00080020, "DA", in.Study.Date},
		{0x00080030, "TM", in.Study.Time},
		{0x00080050, "SH", in.Study.AccessionNumber},
		{0x00080060, "CS", in.Series.Modality},
		{0x00080070, "LO", "PACSD"},
		{0x00080090, "PN", in.Study.ReferringPhysicianName},
		{0x00100010, "PN", in.Patient.Name},
		{0x00100020, "LO", in.Patient.ID},
		{0x00100030, "DA", in.Patient.BirthDate},
		{0x00100040, "CS", in.Patient.Sex},
		{0x0020000D, "UI", in.Study.UID},
		{0x0020000E, "UI", in.Series.UID},
		{0x00200010, "SH", in.Study.StudyID},
		{0x00200011, "IS", number(in.Series.Number)},
		{0x00200013, "IS", number(in.InstanceNumber)},
		{0x00280002, "US", 1},
		{0x00280004, "CS", "MONOCHROME2"},
		{0x00280010, "US", in.Rows},
		{0x00280011, "US", in.Columns},
		{0x00280100, "US", in.BitsAllocated},
		{0x00280101, "US", bitsStored},
		{0x00280102, "US", bitsStored - 1},
		{0x00280103, "US", 0},
	}
	add := func(e ...Element) { els = append(els, e...) }
	if in.SpecificCharacterSet != "" {
		add(Element{tagSpecificCharacterSet, "CS", in.SpecificCharacterSet})
	}
	// Type 3 attributes are left out when empty rather than written empty.
	if v := optional(in.Study.Description); v != nil {
		add(Element{0x00081030, "LO", v})
	}
	if v := optional(in.Series.Description); v != nil {
		add(Element{0x0008103E, "LO", v})
	}
	if v := optional(in.Patient.IssuerOfPatientID); v != nil {
		add(Element{0x00100021, "LO", v})
	}
	if v := optional(in.Series.BodyPartExamined); v != nil {
		add(Element{0x00180015, "CS", v})
	}
	multiSC := isSecondaryCapture(in.SOPClassUID) && in.SOPClassUID != "1.2.840.10008.5.1.4.1.1.7"
	if in.NumberOfFrames > 1 || multiSC {
		add(Element{0x00280008, "IS", in.NumberOfFrames})
	}
	if isSecondaryCapture(in.SOPClassUID) {
		// The SC Equipment module requires a Conversion Type; WSD is
		// "workstation", the honest answer for generated pixels.
		add(Element{0x00080064, "CS", "WSD"})
		if multiSC {
			// A multi-frame SC image must say which attribute orders its
			// frames; Frame Time then brings in the Cine module.
			add(Element{0x00181063, "DS", 100},
				Element{0x00280009, "AT", Tag(0x00181063)})
		}
	} else {
		// The image plane and frame of reference of a cross-sectional
		// image: an axial stack 1 mm apart, positioned by instance number.
		add(Element{0x00080008, "CS", []string{"ORIGINAL", "PRIMARY", "AXIAL"}},
			Element{0x00180050, "DS", 1},
			Element{0x00200032, "DS", []float64{0, 0, float64(in.InstanceNumber)}},
			Element{0x00200037, "DS", []float64{1, 0, 0, 0, 1, 0}},
			Element{0x00200052, "UI", in.Series.FrameOfReferenceUID},
			Element{0x00201040, "LO", nil},
			Element{0x00280030, "DS", []float64{0.5, 0.5}})
	}
	if in.SOPClassUID == CTImageStorage {
		add(Element{0x00180060, "DS", 120},
			Element{0x00200012, "IS", 1},
			Element{0x00281052, "DS", -1024},
			Element{0x00281053, "DS", 1})
	}
	byTag := make(map[Tag]int, len(els))
	for i, e := range els {
		byTag[e.Tag] = i
	}
	seen := make(map[Tag]bool, len(in.Extra))
	for _, e := range in.Extra {
		switch {
		case e.Tag>>16 == 0x0002:
			return nil, fmt.Errorf("dcmgen: extra element %s: group 0002 is written from the instance's UIDs", e.Tag)
		case e.Tag == tagPixelData:
			return nil, fmt.Errorf("dcmgen: extra element %s: give pixel data as Instance.Pixels", e.Tag)
		case seen[e.Tag]:
			return nil, fmt.Errorf("dcmgen: extra element %s given twice", e.Tag)
		}
		seen[e.Tag] = true
		if i, ok := byTag[e.Tag]; ok {
			els[i] = e
		} else {
			els = append(els, e)
		}
	}
	sortElements(els)
	return els, nil
}

func sortElements(els []Element) {
	slices.SortStableFunc(els, func(a, b Element) int { return cmp.Compare(a.Tag, b.Tag) })
}

func (in *Instance) pixelVR() string {
	if in.BitsAllocated == 8 {
		return "OB"
	}
	return "OW"
}

// write writes the completed instance to w. With measure set it writes
// everything but the Pixel Data value, for which it only counts bytes.
func (in *Instance) write(w io.Writer, measure bool) (int64, error) {
	els, err := in.elements()
	if err != nil {
		return 0, err
	}
	wr, err := NewWriter(w, Meta{SOPClassUID: in.SOPClassUID, SOPInstanceUID: in.SOPInstanceUID, Syntax: in.Syntax})
	if err != nil {
		return 0, err
	}
	i := 0
	for ; i < len(els) && els[i].Tag < tagPixelData; i++ {
		if err := wr.WriteElement(els[i]); err != nil {
			return wr.Written(), err
		}
	}
	if measure {
		err = wr.reserve(tagPixelData, in.pixelVR(), in.PixelLength())
	} else {
		r := in.Pixels
		if r == nil {
			r = newPattern(in.Rows, in.Columns, in.BitsAllocated, in.NumberOfFrames)
		}
		err = wr.WriteStream(tagPixelData, in.pixelVR(), in.PixelLength(), r)
	}
	if err != nil {
		return wr.Written(), err
	}
	for ; i < len(els); i++ {
		if err := wr.WriteElement(els[i]); err != nil {
			return wr.Written(), err
		}
	}
	return wr.Written(), nil
}

// WriteFile writes in as a Part-10 file to w and returns the number of
// bytes written. It first fills in's empty UIDs and defaults (see
// Instance), so the caller can read back what was written. Memory use does
// not grow with the size of the pixel data.
func WriteFile(w io.Writer, in *Instance) (int64, error) {
	if err := in.complete(); err != nil {
		return 0, err
	}
	bw := bufio.NewWriterSize(w, 64<<10)
	n, err := in.write(bw, false)
	if err != nil {
		return n, err
	}
	return n, bw.Flush()
}

// Size returns the exact length of the file WriteFile would write for in.
// Like WriteFile it first fills in's empty UIDs and defaults, because the
// length of each UID counts.
func (in *Instance) Size() (int64, error) {
	if err := in.complete(); err != nil {
		return 0, err
	}
	return in.write(io.Discard, true)
}

// FitSize makes in a single-frame image whose file is as large as possible
// but at most size bytes: it keeps Columns (default 512) and
// BitsAllocated and chooses Rows, so the file falls short of size by less
// than one row. A single frame has at most 65535 rows; use FitFrames for
// larger files.
func (in *Instance) FitSize(size int64) error {
	if in.Columns == 0 {
		in.Columns = 512
	}
	in.Rows, in.NumberOfFrames = 1, 1
	overhead, err := in.Size()
	if err != nil {
		return err
	}
	rowBytes := in.PixelLength()
	overhead -= rowBytes
	rows := (size - overhead) / rowBytes
	if rows < 1 || rows > 0xFFFF {
		return fmt.Errorf("dcmgen: a single frame of %d columns cannot make a file of %d bytes (it would need %d rows)", in.Columns, size, rows)
	}
	// An odd number of 8-bit samples gains a padding byte, so the result
	// is measured once more.
	for in.Rows = int(rows); in.Rows > 1; in.Rows-- {
		if got, err := in.Size(); err != nil || got <= size {
			return err
		}
	}
	return nil
}

// FitFrames makes in a multi-frame image whose file is as large as possible
// but at most size bytes: it keeps Rows and Columns (default 512 each) and
// BitsAllocated and chooses NumberOfFrames, at least 2, so the file falls
// short of size by less than one frame. Together with the generated pixels
// (or a Pixels reader) this writes an instance of gigabytes streaming.
func (in *Instance) FitFrames(size int64) error {
	if in.Rows == 0 {
		in.Rows = 512
	}
	if in.Columns == 0 {
		in.Columns = 512
	}
	in.NumberOfFrames = 2
	got, err := in.Size()
	if err != nil {
		return err
	}
	frameBytes := in.PixelLength() / 2
	frames := (size-got)/frameBytes + 2
	if frames < 2 {
		return fmt.Errorf("dcmgen: %d bytes do not hold two frames of %d bytes", size, frameBytes)
	}
	// The Number of Frames value grows with its digits, so the overhead is
	// measured again with the final count.
	for {
		in.NumberOfFrames = int(frames)
		if got, err = in.Size(); err != nil {
			return err
		}
		if got <= size {
			return nil
		}
		if frames--; frames < 2 {
			return fmt.Errorf("dcmgen: %d bytes do not hold two frames of %d bytes", size, frameBytes)
		}
	}
}

// File describes a file dcmgen wrote.
type File struct {
	Path              string
	Size              int64
	SOPClassUID       string
	SOPInstanceUID    string
	StudyInstanceUID  string
	SeriesInstanceUID string
}

// Create writes in to a new file at path, as WriteFile does, and removes
// the file again if writing fails.
func Create(path string, in *Instance) (File, error) {
	f, err := os.Create(path)
	if err != nil {
		return File{}, fmt.Errorf("dcmgen: %w", err)
	}
	n, err := WriteFile(f, in)
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return File{}, errors.Join(fmt.Errorf("dcmgen: write %s: %w", path, err), os.Remove(path))
	}
	return File{
		Path:              path,
		Size:              n,
		SOPClassUID:       in.SOPClassUID,
		SOPInstanceUID:    in.SOPInstanceUID,
		StudyInstanceUID:  in.Study.UID,
		SeriesInstanceUID: in.Series.UID,
	}, nil
}

// pattern generates the default pixel data: sample (row, column) of frame
// f has the value (row + column + 8f) modulo 2^BitsStored. Every row is a
// window into one precomputed ramp, so generating a gigabyte costs only
// copies and the memory is one ramp of (period + columns) samples.
type pattern struct {
	ramp     []byte
	bpp      int // bytes per sample
	period   int // number of distinct sample values
	rowBytes int
	rows     int // rows per frame
	lines    int // rows in all frames
	line     int // current row, counted over all frames
	off      int // bytes of the current row already read
}

func newPattern(rows, cols, bitsAllocated, frames int) *pattern {
	p := &pattern{bpp: bitsAllocated / 8, period: 256, rows: rows, lines: rows * frames}
	if p.bpp == 2 {
		p.period = 4096 // BitsStored is 12
	}
	p.rowBytes = cols * p.bpp
	p.ramp = make([]byte, (p.period+cols)*p.bpp)
	for i := 0; i < p.period+cols; i++ {
		v := i % p.period
		if p.bpp == 2 {
			binary.LittleEndian.PutUint16(p.ramp[2*i:], uint16(v))
		} else {
			p.ramp[i] = byte(v)
		}
	}
	return p
}

func (p *pattern) Read(b []byte) (int, error) {
	n := 0
	for len(b) > 0 {
		if p.line >= p.lines {
			if n == 0 {
				return 0, io.EOF
			}
			break
		}
		row, frame := p.line%p.rows, p.line/p.rows
		start := ((row + 8*frame) % p.period) * p.bpp
		c := copy(b, p.ramp[start+p.off:start+p.rowBytes])
		n += c
		b = b[c:]
		if p.off += c; p.off == p.rowBytes {
			p.off = 0
			p.line++
		}
	}
	return n, nil
}
