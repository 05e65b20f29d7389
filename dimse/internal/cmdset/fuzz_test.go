package cmdset

import (
	"bytes"
	"errors"
	"os"
	"path/filepath"
	"reflect"
	"testing"
)

// FuzzDecode feeds arbitrary bytes to Decode. It must never panic and must
// fail only with ErrMalformed. Whatever decodes and passes Check must
// encode, and the encoding must decode to the same Command and encode to
// the same bytes; what fails Check must fail to encode.
//
// The seed corpus is the dcmtk captures plus testdata/fuzz/FuzzDecode,
// which holds the golden fixtures, edge cases and anything the fuzzer
// found.
func FuzzDecode(f *testing.F) {
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
		c, err := Decode(b)
		if err != nil {
			if !errors.Is(err, ErrMalformed) {
				t.Fatalf("Decode failed with %v, which is not ErrMalformed", err)
			}
			return
		}
		if cerr := c.Check(); cerr != nil {
			if _, err := c.AppendTo(nil); !errors.Is(err, ErrInvalid) || !errors.Is(cerr, ErrInvalid) {
				t.Fatalf("Check = %v, but AppendTo = %v", cerr, err)
			}
			return
		}
		enc, err := c.AppendTo(nil)
		if err != nil {
			t.Fatalf("decoded %s does not encode: %v", dump(c), err)
		}
		if len(enc) > MaxLength {
			// Encoding adds the group length if b lacked it, which
			// can push a command set at the limit past it.
			return
		}
		c2, err := Decode(enc)
		if err != nil {
			t.Fatalf("encoding of %s does not decode: %v", dump(c), err)
		}
		if !reflect.DeepEqual(c, c2) {
			t.Fatalf("round trip changed the value:\n%s\n%s", dump(c), dump(c2))
		}
		enc2, err := c2.AppendTo(nil)
		if err != nil || !bytes.Equal(enc, enc2) {
			t.Fatalf("second encoding differs (%v)", err)
		}
	})
}
