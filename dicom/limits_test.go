package dicom

import (
	"bytes"
	"errors"
	"io"
	"runtime"
	"testing"

	"github.com/pacsd/pacsd/dicom/tag"
)

// emptyElements returns a data set of the identifying UIDs followed by
// empty binary elements to about size bytes: the data set of a denial of
// service that made the Scanner keep a located value for each. (Elements
// before the identity are held to Limits.Identify, another bound.)
func emptyElements(size int) []byte {
	e := &enc{sx: syntax{explicit: true}}
	e.ids()
	for e.b.Len() < size {
		e.el(tag.New(0x0029, 0x1001), "OB", 0, nil)
	}
	return e.b.Bytes()
}

// TestHeaderMemoryBounded scans data sets of empty binary elements of two
// sizes and checks that the memory the Scanner keeps, and what it
// allocates on the way, stays within a small multiple of Limits.Header
// and does not grow with the data set.
func TestHeaderMemoryBounded(t *testing.T) {
	lim := Limits{Header: 1 << 20}
	measure := func(data []byte) (retained, allocated uint64, h Header) {
		var before, after runtime.MemStats
		runtime.GC()
		runtime.ReadMemStats(&before)
		s := NewScanner(bytes.NewReader(data), explicitLE, lim)
		if _, err := s.Identify(); err != nil {
			t.Fatal(err)
		}
		if _, err := io.Copy(io.Discard, s.Rest()); err != nil {
			t.Fatal(err)
		}
		h = s.Header()
		runtime.GC()
		runtime.ReadMemStats(&after)
		runtime.KeepAlive(h)
		runtime.KeepAlive(data)
		return after.HeapAlloc - min(after.HeapAlloc, before.HeapAlloc), after.TotalAlloc - before.TotalAlloc, h
	}
	small, large := emptyElements(2<<20), emptyElements(8<<20)
	_, smallAlloc, _ := measure(small)
	retained, largeAlloc, h := measure(large)
	t.Logf("%d bytes in: %d bytes kept, %d allocated (%d for %d bytes in); %d elements, %d omitted; %v",
		len(large), retained, largeAlloc, smallAlloc, len(small), len(h.Dataset.Elements), len(h.Omitted), h.Err)
	if retained > 2*uint64(lim.Header) {
		t.Errorf("the header of %d bytes of data set keeps %d bytes, more than twice Limits.Header (%d)", len(large), retained, lim.Header)
	}
	if largeAlloc > smallAlloc+smallAlloc/2 {
		t.Errorf("allocation grows with the data set: %d bytes for %d bytes in, %d for %d", largeAlloc, len(large), smallAlloc, len(small))
	}
	if !errors.Is(h.Err, ErrHeaderTooLarge) || errors.Is(h.Err, ErrMalformed) {
		t.Errorf("header error %v, want ErrHeaderTooLarge alone", h.Err)
	}
	if h.Dataset.First(tag.PatientName) != "Doe^Jane" {
		t.Error("elements before the limit lost")
	}
}

// TestHeaderLimitKeepsPixelData checks that Pixel Data is located, and
// its element kept, after elements that did not fit.
func TestHeaderLimitKeepsPixelData(t *testing.T) {
	e := &enc{sx: syntax{explicit: true}}
	e.ids()
	e.el(tag.New(0x0029, 0x1001), "OB", 3000, bytes.Repeat([]byte{1}, 3000)) // held: too large
	e.el(tag.PixelData, "OW", 5000, bytes.Repeat([]byte{2}, 5000))           // located: fits
	_, h, err := scanAll(t, e.b.Bytes(), explicitLE, Limits{Header: 1500, Inline: 4096})
	if err != nil || h.Err != nil {
		t.Fatalf("%v / %v", err, h.Err)
	}
	if len(h.Omitted) != 1 || h.Omitted[0] != tag.New(0x0029, 0x1001) {
		t.Errorf("Omitted %v", h.Omitted)
	}
	if h.PixelData == nil || h.PixelData.Length != 5000 {
		t.Fatalf("pixel data %+v", h.PixelData)
	}
	if px, ok := h.Dataset.Find(tag.PixelData); !ok || px.Binary == nil || px.Binary.Offset != h.PixelData.Offset {
		t.Errorf("Pixel Data element %+v", px)
	}
}
