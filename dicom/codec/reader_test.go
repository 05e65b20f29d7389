package codec

import (
	"bytes"
	"context"
	"errors"
	"io"
	"strconv"
	"sync/atomic"
	"testing"
	"time"

	"github.com/pacsd/pacsd/dicom"
	"github.com/pacsd/pacsd/dicom/tag"
	"github.com/pacsd/pacsd/dicom/uid"
)

// endless is a data set whose pixel data claims 600,000 frames and
// never ends: a conversion of it ends only when it is stopped.
type endless struct {
	head   *bytes.Reader
	closed atomic.Bool
}

func newEndless(im Image) *endless {
	var d []byte
	d = appendElement(d, tag.SOPInstanceUID, "UI", []byte("1.2.3"))
	d = appendElement(d, tag.SamplesPerPixel, "US", us(1))
	d = appendElement(d, tag.PhotometricInterpretation, "CS", []byte(im.PhotometricInterpretation))
	d = appendElement(d, tag.NumberOfFrames, "IS", []byte(strconv.Itoa(600_000)))
	d = appendElement(d, tag.Rows, "US", us(im.Rows))
	d = appendElement(d, tag.Columns, "US", us(im.Columns))
	d = appendElement(d, tag.BitsAllocated, "US", us(im.BitsAllocated))
	d = appendElement(d, tag.BitsStored, "US", us(im.BitsStored))
	d = appendElement(d, tag.HighBit, "US", us(im.BitsStored-1))
	d = appendElement(d, tag.PixelRepresentation, "US", us(0))
	// Pixel Data, OW, of the largest length a value can have.
	d = append(d, 0xE0, 0x7F, 0x10, 0x00, 'O', 'W', 0, 0, 0xFE, 0xFF, 0xFF, 0xFF)
	return &endless{head: bytes.NewReader(d)}
}

func (e *endless) Read(p []byte) (int, error) {
	if e.head.Len() > 0 {
		return e.head.Read(p)
	}
	for i := range p {
		p[i] = byte(i)
	}
	return len(p), nil
}

func (e *endless) Close() error {
	e.closed.Store(true)
	return nil
}

// TestTranscodeReader checks that the reader gives what Transcode writes,
// that the conversion's errors come out of Read, and that Close ends the
// conversion's goroutine and closes the source, whether the conversion
// has ended or not.
func TestTranscodeReader(t *testing.T) {
	reg := New(Options{})
	im := Image{Rows: 64, Columns: 48, SamplesPerPixel: 1, BitsAllocated: 16, BitsStored: 12, PhotometricInterpretation: Monochrome2}

	t.Run("same as Transcode", func(t *testing.T) {
		ds, _ := nativeDataset(im, 3, 7)
		var want bytes.Buffer
		if _, err := reg.Transcode(t.Context(), &want, bytes.NewReader(ds), uid.ExplicitVRLittleEndian, uid.JPEGLSLossless, TranscodeOptions{}); err != nil {
			t.Fatal(err)
		}
		src := &closeCounter{Reader: bytes.NewReader(ds)}
		r := reg.TranscodeReader(t.Context(), src, uid.ExplicitVRLittleEndian, uid.JPEGLSLossless, TranscodeOptions{})
		got, err := io.ReadAll(r)
		if err != nil {
			t.Fatal(err)
		}
		if err := r.Close(); err != nil {
			t.Fatal(err)
		}
		if !bytes.Equal(got, want.Bytes()) {
			t.Errorf("%d bytes read, differing from the %d Transcode writes", len(got), want.Len())
		}
		if src.closes != 1 {
			t.Errorf("source closed %d times, want once", src.closes)
		}
	})

	t.Run("error on Read", func(t *testing.T) {
		ds, _ := nativeDataset(im, 1, 7)
		var jls bytes.Buffer
		if _, err := reg.Transcode(t.Context(), &jls, bytes.NewReader(ds), uid.ExplicitVRLittleEndian, uid.JPEGLSLossless, TranscodeOptions{}); err != nil {
			t.Fatal(err)
		}
		// The data set ends inside its pixel data.
		b := jls.Bytes()
		r := reg.TranscodeReader(t.Context(), io.NopCloser(bytes.NewReader(b[:len(b)-40])), uid.JPEGLSLossless, uid.ExplicitVRLittleEndian, TranscodeOptions{})
		defer r.Close()
		if _, err := io.ReadAll(r); !errors.Is(err, dicom.ErrMalformed) {
			t.Fatalf("Read: %v, want dicom.ErrMalformed", err)
		}
	})

	t.Run("closed early", func(t *testing.T) {
		src := newEndless(im)
		r := reg.TranscodeReader(t.Context(), src, uid.ExplicitVRLittleEndian, uid.RLELossless, TranscodeOptions{})
		if _, err := io.ReadFull(r, make([]byte, 100_000)); err != nil {
			t.Fatal(err)
		}
		closeWithin(t, r, 10*time.Second)
		if !src.closed.Load() {
			t.Error("the source is not closed")
		}
		if _, err := r.Read(make([]byte, 10)); !errors.Is(err, io.ErrClosedPipe) {
			t.Errorf("Read after Close: %v", err)
		}
	})

	t.Run("cancelled", func(t *testing.T) {
		ctx, cancel := context.WithCancel(t.Context())
		src := newEndless(im)
		r := reg.TranscodeReader(ctx, src, uid.ExplicitVRLittleEndian, uid.RLELossless, TranscodeOptions{})
		if _, err := io.ReadFull(r, make([]byte, 100_000)); err != nil {
			t.Fatal(err)
		}
		cancel()
		if _, err := io.Copy(io.Discard, r); !errors.Is(err, context.Canceled) {
			t.Errorf("Read after the context is cancelled: %v", err)
		}
		closeWithin(t, r, 10*time.Second)
	})
}

// closeWithin closes r and checks that its goroutine has ended by then.
func closeWithin(t *testing.T, r io.ReadCloser, d time.Duration) {
	t.Helper()
	closed := make(chan error, 1)
	go func() { closed <- r.Close() }()
	select {
	case err := <-closed:
		if err != nil {
			t.Errorf("Close: %v", err)
		}
	case <-time.After(d):
		t.Fatal("Close did not return: the conversion goes on")
	}
	select {
	case <-r.(*transcodeReader).done:
	default:
		t.Error("Close returned before the conversion's goroutine ended")
	}
}

type closeCounter struct {
	io.Reader
	closes int
}

func (c *closeCounter) Close() error {
	c.closes++
	return nil
}
