package render

import (
	"bufio"
	"bytes"
	"compress/flate"
	"encoding/binary"
	"io"
	"os"
	"testing"

	"github.com/pacsd/pacsd/dicom"
	"github.com/pacsd/pacsd/dicom/uid"
)

// instance is a DICOM file read for rendering: its transfer syntax, its
// header, and its data set's bytes (inflated if the syntax deflates
// them), which the Pixel Data locations count from.
type instance struct {
	ts     string
	ds     *dicom.Dataset
	pixel  *dicom.PixelData
	data   []byte
	params Params
}

// readInstance reads a Part-10 file with pacsd's own parser. It returns
// false for a file without File Meta Information or without Pixel Data.
func readInstance(t *testing.T, path string) (*instance, bool) {
	t.Helper()
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	br := bufio.NewReader(f)
	meta, _, err := dicom.ReadFileMeta(br)
	if err != nil {
		return nil, false
	}
	data, err := io.ReadAll(br)
	if err != nil {
		t.Fatal(err)
	}
	ts, ok := uid.LookupTransferSyntax(meta.TransferSyntaxUID)
	if !ok {
		return nil, false
	}
	if ts.Deflated {
		// The caller of Render inflates; so does this reader, before
		// it locates the pixel data.
		if data, err = io.ReadAll(flate.NewReader(bytes.NewReader(data))); err != nil {
			t.Fatal(err)
		}
		ts.Deflated = false
	}
	s := dicom.NewScanner(bytes.NewReader(data), ts, dicom.Limits{Inline: 256 << 10})
	if _, err := s.Identify(); err != nil {
		s.Close()
		return nil, false
	}
	if _, err := io.Copy(io.Discard, s.Rest()); err != nil {
		t.Fatal(err)
	}
	h := s.Header()
	if h.Err != nil || h.PixelData == nil {
		return nil, false
	}
	in := &instance{ts: meta.TransferSyntaxUID, ds: h.Dataset, pixel: h.PixelData, data: data}
	if in.params, err = ParamsFrom(h.Dataset); err != nil {
		return nil, false
	}
	return in, true
}

// frame returns the bytes of frame i as Render takes them, with the
// options that go with them: the span Frame computes of native pixel
// data, or the fragments of an encapsulated frame, found through the Basic
// Offset Table if there is one.
func (in *instance) frame(t *testing.T, i int) ([]byte, Options) {
	t.Helper()
	px := in.pixel
	if !px.Encapsulated {
		sp, err := Frame(in.params, i)
		if err != nil {
			t.Fatal(err)
		}
		start := px.Offset + sp.Offset
		if start+sp.Length > px.Offset+px.Length {
			t.Fatalf("frame %d (%+v) beyond the pixel data (%d bytes)", i, sp, px.Length)
		}
		return in.data[start : start+sp.Length], Options{BitOffset: sp.BitOffset}
	}
	if len(px.Fragments) < 2 {
		t.Fatalf("encapsulated pixel data with %d items", len(px.Fragments))
	}
	bot, frags := px.Fragments[0], px.Fragments[1:]
	frames := max(in.params.NumberOfFrames, 1)
	value := func(f dicom.Fragment) []byte { return in.data[f.Offset : f.Offset+f.Length] }
	switch {
	case len(frags) == frames:
		return value(frags[i]), Options{}
	case frames == 1:
		var out []byte
		for _, f := range frags {
			out = append(out, value(f)...)
		}
		return out, Options{}
	case bot.Length >= int64(4*frames):
		// Offsets count from the first byte of the first fragment's
		// item tag, 8 bytes before its value.
		b := value(bot)
		base := frags[0].Offset - 8
		lo := base + int64(binary.LittleEndian.Uint32(b[4*i:]))
		hi := int64(1) << 62
		if i+1 < frames {
			hi = base + int64(binary.LittleEndian.Uint32(b[4*i+4:]))
		}
		var out []byte
		for _, f := range frags {
			if at := f.Offset - 8; at >= lo && at < hi {
				out = append(out, value(f)...)
			}
		}
		return out, Options{}
	}
	t.Fatalf("cannot tell the fragments of frame %d", i)
	return nil, Options{}
}
