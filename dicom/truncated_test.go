package dicom

import (
	"bytes"
	"compress/flate"
	"errors"
	"strings"
	"testing"

	"github.com/pacsd/pacsd/dicom/tag"
	"github.com/pacsd/pacsd/dicom/uid"
)

// truncationSample is a data set holding every structure a cut can fall
// in, with the offsets where the cuts of TestTruncatedGolden fall.
type truncationSample struct {
	data []byte
	// top lists the offsets of the top-level element boundaries: a data
	// set cut there is whole.
	top []int
	// at names offsets inside the data set's structures.
	at map[string]int
}

// buildTruncationSample encodes the sample in syntax sx. Sequences and
// items of defined length need their lengths before their content, so
// each is encoded apart first.
func buildTruncationSample(sx syntax) truncationSample {
	s := truncationSample{at: map[string]int{}}
	e := &enc{sx: sx}
	mark := func() { s.top = append(s.top, e.b.Len()) }
	mark()
	e.str(tag.SOPClassUID, "UI", uid.CTImageStorage)
	mark()
	e.str(tag.SOPInstanceUID, "UI", "1.2.3.4")
	mark()
	e.str(tag.StudyInstanceUID, "UI", "1.2.3")
	mark()
	e.str(tag.SeriesInstanceUID, "UI", "1.2.3.5")
	mark()

	start := e.b.Len()
	e.str(tag.ImageComments, "LT", "a comment of some length")
	s.at["tag"] = start + 2
	s.at["VR or length"] = start + 5
	s.at["length"] = start + 7
	s.at["text value"] = start + 15
	mark()

	// A sequence of defined length holding one item of defined length.
	inner := &enc{sx: sx}
	inner.str(tag.ScheduledProcedureStepID, "SH", "STEP-42")
	item := &enc{sx: sx}
	item.el(tag.Item, "", uint32(inner.b.Len()), inner.b.Bytes())
	e.el(tag.RequestAttributesSequence, "SQ", uint32(item.b.Len()), item.b.Bytes())
	s.at["item header in a sequence of defined length"] = e.b.Len() - item.b.Len() + 4
	s.at["element of an item of defined length"] = e.b.Len() - 3
	mark()

	// A sequence and an item of undefined length.
	e.el(tag.ContentSequence, "SQ", undefinedLength, nil)
	e.el(tag.Item, "", undefinedLength, nil)
	e.str(tag.ValueType, "CS", "TEXT")
	s.at["item of undefined length never closed"] = e.b.Len()
	e.el(tag.ItemDelimitationItem, "", 0, nil)
	s.at["sequence of undefined length never closed"] = e.b.Len()
	s.at["sequence delimiter"] = e.b.Len() + 3
	e.el(tag.SequenceDelimitationItem, "", 0, nil)
	mark()

	// A private sequence sent as UN: implicit VR little endian items.
	e.str(tag.New(0x0041, 0x0010), "LO", "ACME")
	mark()
	if sx.explicit {
		e.el(tag.New(0x0041, 0x1001), "UN", undefinedLength, nil)
	} else {
		e.el(tag.New(0x0041, 0x1001), "SQ", undefinedLength, nil)
	}
	im := &enc{sx: syntax{bigEndian: sx.bigEndian && !sx.explicit}}
	im.el(tag.Item, "", undefinedLength, nil)
	im.str(tag.New(0x0041, 0x1002), "", "private")
	e.b.Write(im.b.Bytes())
	s.at["UN sequence never closed"] = e.b.Len()
	im = &enc{sx: im.sx}
	im.el(tag.ItemDelimitationItem, "", 0, nil)
	im.el(tag.SequenceDelimitationItem, "", 0, nil)
	e.b.Write(im.b.Bytes())
	mark()

	// Encapsulated pixel data: an empty offset table and one fragment.
	e.el(tag.PixelData, "OB", undefinedLength, nil)
	e.el(tag.Item, "", 0, nil)
	e.el(tag.Item, "", 6, []byte("frame1"))
	s.at["inside a fragment"] = e.b.Len() - 3
	s.at["fragments without their delimiter"] = e.b.Len()
	e.el(tag.SequenceDelimitationItem, "", 0, nil)
	mark()
	s.data = e.b.Bytes()
	return s
}

// scanCut scans data and returns the error that reports what was wrong
// with it: Identify's, or else the header's.
func scanCut(t *testing.T, data []byte, ts uid.TransferSyntax) error {
	t.Helper()
	_, h, err := scanAll(t, data, ts, Limits{})
	if err != nil {
		return err
	}
	return h.Err
}

// TestTruncatedGolden cuts a data set at each kind of place a transfer
// can stop and checks that each cut is reported as truncation, while a
// data set cut between top-level elements, which is whole by its
// lengths, is not.
func TestTruncatedGolden(t *testing.T) {
	for _, ts := range []uid.TransferSyntax{explicitLE, implicitLE, explicitBE} {
		sx := syntax{explicit: ts.ExplicitVR, bigEndian: ts.BigEndian}
		s := buildTruncationSample(sx)
		t.Run(uid.Name(ts.UID), func(t *testing.T) {
			if err := scanCut(t, s.data, ts); err != nil {
				t.Fatalf("whole data set: %v", err)
			}
			for name, at := range s.at {
				if !sx.explicit && strings.Contains(name, "VR") {
					continue
				}
				t.Run(name, func(t *testing.T) {
					err := scanCut(t, s.data[:at], ts)
					if !errors.Is(err, ErrTruncated) || !errors.Is(err, ErrMalformed) {
						t.Fatalf("cut at %d: %v, want ErrTruncated and ErrMalformed", at, err)
					}
				})
			}
			// Every other cut: truncated inside an element, whole at a
			// top-level boundary.
			boundary := map[int]bool{}
			for _, b := range s.top {
				boundary[b] = true
			}
			for at := range len(s.data) {
				err := scanCut(t, s.data[:at], ts)
				if boundary[at] {
					if errors.Is(err, ErrTruncated) {
						t.Errorf("cut at the element boundary %d: %v", at, err)
					}
				} else if !errors.Is(err, ErrTruncated) {
					t.Errorf("cut at %d of %d: %v, want ErrTruncated", at, len(s.data), err)
				}
			}
		})
	}
}

// TestTruncatedBulk cuts a data set inside a value too large for the
// scanner's buffer, which the scanner leaves to the caller alone.
func TestTruncatedBulk(t *testing.T) {
	e := &enc{sx: syntax{explicit: true}}
	e.ids()
	px := bytes.Repeat([]byte{0x5A}, 256<<10)
	e.el(tag.PixelData, "OW", uint32(len(px)), px)
	data := e.b.Bytes()
	if err := scanCut(t, data, explicitLE); err != nil {
		t.Fatalf("whole data set: %v", err)
	}
	for _, short := range []int{1, 2, 1000, 100 << 10, len(px) - 1} {
		err := scanCut(t, data[:len(data)-short], explicitLE)
		if !errors.Is(err, ErrTruncated) {
			t.Errorf("%d bytes short: %v, want ErrTruncated", short, err)
		}
	}
}

// TestTruncatedDeflated cuts a deflated data set: in the compressed
// stream, and where the compressed stream is whole but the data set it
// holds is not.
func TestTruncatedDeflated(t *testing.T) {
	deflated := uid.TransferSyntax{UID: uid.DeflatedExplicitVRLittleEndian, ExplicitVR: true, Deflated: true}
	s := buildTruncationSample(syntax{explicit: true})
	compress := func(b []byte) []byte {
		var out bytes.Buffer
		fw, _ := flate.NewWriter(&out, flate.BestCompression)
		fw.Write(b)
		fw.Close()
		return out.Bytes()
	}
	whole := compress(s.data)
	if err := scanCut(t, whole, deflated); err != nil {
		t.Fatalf("whole data set: %v", err)
	}
	tests := []struct {
		name string
		data []byte
	}{
		{"compressed stream cut", whole[:len(whole)-8]},
		{"data set cut inside a value", compress(s.data[:s.at["text value"]])},
		{"sequence never closed", compress(s.data[:s.at["sequence of undefined length never closed"]])},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if err := scanCut(t, tt.data, deflated); !errors.Is(err, ErrTruncated) {
				t.Fatalf("%v, want ErrTruncated", err)
			}
		})
	}
}

// TestMalformedNotTruncated checks that data sets whose lengths account
// for every byte, but whose content is broken, are not reported as
// truncated.
func TestMalformedNotTruncated(t *testing.T) {
	tests := []struct {
		name  string
		build func(e *enc)
	}{
		{"element overruns its item", func(e *enc) {
			e.el(tag.ContentSequence, "SQ", undefinedLength, nil)
			e.el(tag.Item, "", 10, nil)
			e.el(tag.ReferencedSOPClassUID, "UI", 20, []byte("1.2.3.4.5.6.7.8.9.10"))
			e.el(tag.ItemDelimitationItem, "", 0, nil)
			e.el(tag.SequenceDelimitationItem, "", 0, nil)
		}},
		{"item outside a sequence", func(e *enc) {
			e.el(tag.Item, "", 0, nil)
		}},
		{"VR that is not a VR", func(e *enc) {
			e.el(tag.ImageComments, "\x01\x02", 2, []byte("ab"))
		}},
		{"delimiter in a sequence of defined length", func(e *enc) {
			e.el(tag.ContentSequence, "SQ", 8, nil)
			e.el(tag.SequenceDelimitationItem, "", 0, nil)
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			e := &enc{sx: syntax{explicit: true}}
			e.ids()
			tt.build(e)
			err := scanCut(t, e.b.Bytes(), explicitLE)
			if !errors.Is(err, ErrMalformed) || errors.Is(err, ErrTruncated) {
				t.Fatalf("%v, want ErrMalformed without ErrTruncated", err)
			}
		})
	}
}

// TestTranscodeTruncated checks that Transcode reports a cut data set as
// truncated as the Scanner does.
func TestTranscodeTruncated(t *testing.T) {
	s := buildTruncationSample(syntax{explicit: true})
	for name, at := range s.at {
		if name == "inside a fragment" || name == "fragments without their delimiter" {
			continue // encapsulated values are not transcoded at all
		}
		t.Run(name, func(t *testing.T) {
			err := Transcode(&bytes.Buffer{}, bytes.NewReader(s.data[:at]), explicitLE, implicitLE)
			if !errors.Is(err, ErrTruncated) {
				t.Fatalf("%v, want ErrTruncated", err)
			}
		})
	}
}
