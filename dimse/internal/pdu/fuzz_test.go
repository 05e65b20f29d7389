package pdu

import (
	"bytes"
	"errors"
	"io"
	"math"
	"os"
	"path/filepath"
	"reflect"
	"runtime"
	"testing"
)

// fuzzMaxLength is the maximum PDU length of the fuzzed Reader: small, so
// that the fuzzer reaches the "too long" path, and large enough for every
// fixture.
const fuzzMaxLength = 1 << 16

// FuzzReader feeds arbitrary bytes to a Reader. Decoding must never panic,
// must allocate in proportion to the bytes received rather than to the
// lengths they claim, and must fail only with an *Error or an io error.
// Whatever decodes must encode, and the encoding must decode to the same
// value and encode to the same bytes.
//
// The seed corpus is the dcmtk captures plus testdata/fuzz/FuzzReader,
// which holds the golden fixtures, edge cases and anything the fuzzer
// found.
func FuzzReader(f *testing.F) {
	files, err := filepath.Glob(filepath.Join("testdata", "dcmtk", "*.bin"))
	if err != nil {
		f.Fatal(err)
	}
	for _, name := range files {
		b, err := os.ReadFile(name)
		if err != nil {
			f.Fatal(err)
		}
		f.Add(b)
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		r := NewReader(bytes.NewReader(b), fuzzMaxLength)
		var allocated uint64
		var before, after runtime.MemStats
		for {
			runtime.ReadMemStats(&before)
			p, err := r.Next()
			runtime.ReadMemStats(&after)
			allocated += after.TotalAlloc - before.TotalAlloc
			if err != nil {
				var e *Error
				if err != io.EOF && !errors.Is(err, io.ErrUnexpectedEOF) && !errors.As(err, &e) {
					t.Fatalf("Next failed with %T %v", err, err)
				}
				break
			}
			checkRoundTrip(t, p)
		}
		// The body buffer never exceeds the maximum, whatever the
		// lengths claimed.
		if cap(r.buf) > fuzzMaxLength {
			t.Errorf("body buffer of %d bytes, more than the maximum %d", cap(r.buf), fuzzMaxLength)
		}
		// A decoded PDU takes at most a few times the bytes it came
		// from (slice headers for tiny items), and the body buffer
		// grows by steps of up to 64 KiB ahead of the data. The bound
		// is loose because TotalAlloc also counts what the fuzzing
		// engine allocates meanwhile; TestAllocationFollowsData checks
		// the tight case of a long claim with little data.
		if limit := 64*uint64(len(b)) + 8<<20; allocated > limit {
			t.Errorf("decoding %d bytes allocated %d", len(b), allocated)
		}
	})
}

// checkRoundTrip encodes p, decodes the encoding and checks that the result
// is p and that it encodes to the same bytes.
func checkRoundTrip(t *testing.T, p PDU) {
	t.Helper()
	enc, err := p.AppendTo(nil)
	if err != nil {
		t.Fatalf("decoded %#v does not encode: %v", p, err)
	}
	p2, err := NewReader(bytes.NewReader(enc), math.MaxUint32).Next()
	if err != nil {
		t.Fatalf("encoding of %#v does not decode: %v", p, err)
	}
	if !reflect.DeepEqual(p, p2) {
		t.Fatalf("round trip changed the value:\n%#v\n%#v", p, p2)
	}
	enc2, err := p2.AppendTo(nil)
	if err != nil || !bytes.Equal(enc, enc2) {
		t.Fatalf("second encoding differs (%v)", err)
	}
}
