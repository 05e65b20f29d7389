package dicom

import (
	"bytes"
	"encoding/json"
	"os"
	"path/filepath"
	"testing"
)

// FuzzParseJSON parses DICOM JSON, seeded with the golden documents. A
// document ParseJSON accepts must encode as valid JSON that parses again
// to a data set encoding the same: one round trip normalizes (numbers,
// person names), a second changes nothing.
func FuzzParseJSON(f *testing.F) {
	paths, _ := filepath.Glob(filepath.Join("testdata", "json", "*.json"))
	for _, p := range paths {
		if b, err := os.ReadFile(p); err == nil {
			f.Add(b)
		}
	}
	for _, s := range []string{
		`{}`,
		`{"00100010":{"vr":"PN","Value":[{"Alphabetic":"Doe^Jane","Ideographic":"山田"}]}}`,
		`{"00280010":{"vr":"US","Value":[512]},"00201041":{"vr":"DS","Value":[1.5e3,null,"7"]}}`,
		`{"00081115":{"vr":"SQ","Value":[{"0020000E":{"vr":"UI","Value":["1.2.3"]}},{}]}}`,
		`{"00091001":{"vr":"OB","InlineBinary":"AQID"},"7FE00010":{"vr":"OW","BulkDataURI":"x"}}`,
		`{"00720082":{"vr":"SV","Value":[-9007199254740993,"18446744073709551615"]}}`,
	} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, doc []byte) {
		ds, err := ParseJSON(doc)
		if err != nil {
			return
		}
		once := ds.AppendJSON(nil, JSONOptions{})
		if !json.Valid(once) {
			t.Fatalf("AppendJSON wrote invalid JSON: %s", once)
		}
		again, err := ParseJSON(once)
		if err != nil {
			t.Fatalf("ParseJSON refuses what AppendJSON wrote: %v\n%s", err, once)
		}
		if twice := again.AppendJSON(nil, JSONOptions{}); !bytes.Equal(once, twice) {
			t.Fatalf("a second round trip changes the document:\n%s\n%s", once, twice)
		}
	})
}
