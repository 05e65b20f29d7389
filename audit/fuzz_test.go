package audit

import (
	"context"
	"os"
	"path/filepath"
	"testing"
)

// FuzzJournal reads arbitrary bytes as a journal file: Verify and Search
// never panic, and a journal Verify finds intact Search reads whole,
// record for record.
func FuzzJournal(f *testing.F) {
	dir := f.TempDir()
	j, err := Open(context.Background(), dir, Options{})
	if err != nil {
		f.Fatal(err)
	}
	for i := range 4 {
		j.Log(storeOf(i, "P1", "1.2.3", "CT01"))
	}
	if err := j.Close(context.Background()); err != nil {
		f.Fatal(err)
	}
	b, err := os.ReadFile(filepath.Join(dir, "journal-000001.log"))
	if err != nil {
		f.Fatal(err)
	}
	f.Add(b)
	f.Add(b[:len(b)/2])
	f.Add([]byte("{}\n"))
	f.Add([]byte(`{"seq":1,"prev":"` + string(make([]byte, 64)) + `"}` + "\n"))
	work := f.TempDir()
	f.Fuzz(func(t *testing.T, journal []byte) {
		// One directory serves every input: fuzzing runs them one at a
		// time in each process.
		dir := work
		if err := os.WriteFile(filepath.Join(dir, "journal-000001.log"), journal, 0o600); err != nil {
			t.Fatal(err)
		}
		rep, verr := Verify(t.Context(), dir, nil)
		var n uint64
		var serr error
		for _, err := range Search(t.Context(), dir, Filter{}) {
			if err != nil {
				serr = err
				break
			}
			n++
		}
		if verr == nil && (serr != nil || n != rep.Records) {
			t.Fatalf("Verify found %d records intact; Search read %d, %v", rep.Records, n, serr)
		}
	})
}
