package dicomweb

import (
	"bytes"
	"errors"
	"io"
	"testing"

	"github.com/pacsd/pacsd/archive"
)

// countingReaderAt counts the ReadAt calls made of it, each of which is a
// request of its own to an object in S3.
type countingReaderAt struct {
	b     []byte
	calls int
}

func (c *countingReaderAt) ReadAt(p []byte, off int64) (int, error) {
	c.calls++
	return bytes.NewReader(c.b).ReadAt(p, off)
}

// TestFrameReaderReadsInChunks checks that a frame is read from its
// object in one ReadAt a range (up to readChunk), however small the
// reads of its reader, and that an object shorter than the frame's
// ranges is an error.
func TestFrameReaderReadsInChunks(t *testing.T) {
	obj := make([]byte, 3<<20)
	for i := range obj {
		obj[i] = byte(i * 7)
	}
	for _, tt := range []struct {
		name  string
		frame archive.Frame
		read  func(io.Reader) ([]byte, error)
		calls int
	}{
		{"ReadAll", archive.Frame{{Offset: 100, Length: 600 << 10}}, io.ReadAll, 1},
		{"Copy", archive.Frame{{Offset: 100, Length: 600 << 10}}, copyAll, 1},
		{"two fragments", archive.Frame{{Offset: 10, Length: 1000}, {Offset: 5000, Length: 200 << 10}}, io.ReadAll, 2},
		{"larger than a chunk", archive.Frame{{Offset: 0, Length: readChunk + 5}}, copyAll, 2},
		{"one large read", archive.Frame{{Offset: 3, Length: 999}}, func(r io.Reader) ([]byte, error) {
			b := make([]byte, 999)
			_, err := io.ReadFull(r, b)
			return b, err
		}, 1},
	} {
		t.Run(tt.name, func(t *testing.T) {
			c := &countingReaderAt{b: obj}
			got, err := tt.read(frameReader(c, tt.frame, 1))
			if err != nil {
				t.Fatal(err)
			}
			var want []byte
			for _, r := range tt.frame {
				want = append(want, obj[r.Offset:r.Offset+r.Length]...)
			}
			if !bytes.Equal(got, want) {
				t.Errorf("%d bytes read, not the frame's %d", len(got), len(want))
			}
			if c.calls != tt.calls {
				t.Errorf("%d ReadAt calls, want %d", c.calls, tt.calls)
			}
		})
	}
	t.Run("object too short", func(t *testing.T) {
		c := &countingReaderAt{b: obj[:1000]}
		if _, err := io.ReadAll(frameReader(c, archive.Frame{{Offset: 500, Length: 1000}}, 1)); !errors.Is(err, io.ErrUnexpectedEOF) {
			t.Errorf("%v, want io.ErrUnexpectedEOF", err)
		}
	})
}

// copyAll reads r as io.Copy does, 32 KiB at a time.
func copyAll(r io.Reader) ([]byte, error) {
	var b bytes.Buffer
	_, err := io.CopyBuffer(struct{ io.Writer }{&b}, struct{ io.Reader }{r}, make([]byte, 32<<10))
	return b.Bytes(), err
}
