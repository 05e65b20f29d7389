package dicom

import (
	"bufio"
	"compress/flate"
	"fmt"
	"io"
	"math"
	"sync"
)

// InflatedObject reads a Part-10 object whose data set is deflated
// (Deflated Explicit VR Little Endian) as if its data set were stored
// inflated: the preamble and File Meta Information as they are, then the
// inflated data set. This is the view in which the offsets of a deflated
// data set are given: the Scanner counts every offset of such a data set
// (Binary.Offset, PixelData, Fragment) in bytes of the inflated data set,
// so an offset plus the length of the File Meta Information (as
// ReadFileMeta returns it) is an offset of an InflatedObject, where the
// value's bytes can be read by ReadAt as from an object stored inflated.
//
// The data set is inflated on the fly from the object's bytes, with the
// memory of one decompressor whatever the object's size. Reads at
// increasing offsets, as the frames of pixel data are read, cost what
// inflating up to them costs; a read before the last one starts inflating
// again from the data set's first byte. An InflatedObject is safe for
// concurrent use, which serializes the reads.
type InflatedObject struct {
	obj io.ReaderAt

	mu        sync.Mutex
	dataStart int64 // length of the File Meta Information; -1 until read
	r         *bufio.Reader
	pos       int64 // offset, in the view, of the next byte r gives
}

// NewInflatedObject returns the inflated view of the deflated object obj.
func NewInflatedObject(obj io.ReaderAt) *InflatedObject {
	return &InflatedObject{obj: obj, dataStart: -1}
}

// ReadAt reads len(p) bytes of the view at offset off. Like every
// io.ReaderAt it returns an error, io.EOF at the end of the data set,
// whenever it reads fewer; a deflated stream that is corrupt or cut short
// is ErrMalformed or ErrTruncated.
func (o *InflatedObject) ReadAt(p []byte, off int64) (int, error) {
	if off < 0 {
		return 0, fmt.Errorf("dicom: inflated object: negative offset %d", off)
	}
	o.mu.Lock()
	defer o.mu.Unlock()
	if o.dataStart < 0 {
		_, n, err := ReadFileMeta(bufio.NewReader(io.NewSectionReader(o.obj, 0, math.MaxInt64)))
		if err != nil {
			return 0, fmt.Errorf("dicom: inflated object: %w", err)
		}
		o.dataStart = n
	}
	n := 0
	if off < o.dataStart {
		m, err := o.obj.ReadAt(p[:min(int64(len(p)), o.dataStart-off)], off)
		n += m
		if err != nil || n == len(p) {
			return n, err
		}
		off += int64(m)
	}
	if o.r == nil || off < o.pos {
		data := io.NewSectionReader(o.obj, o.dataStart, math.MaxInt64-o.dataStart)
		o.r = bufio.NewReaderSize(inflater{flate.NewReader(bufio.NewReaderSize(data, 32<<10))}, 32<<10)
		o.pos = o.dataStart
	}
	if off > o.pos {
		skipped, err := io.CopyN(io.Discard, o.r, off-o.pos)
		o.pos += skipped
		if err != nil {
			return n, err
		}
	}
	m, err := io.ReadFull(o.r, p[n:])
	o.pos += int64(m)
	if err == io.ErrUnexpectedEOF {
		err = io.EOF
	}
	return n + m, err
}
