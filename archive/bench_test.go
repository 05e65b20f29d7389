package archive

import (
	"bufio"
	"bytes"
	"context"
	"fmt"
	"os"
	"path/filepath"
	"testing"

	"github.com/pacsd/pacsd/dicom"
	"github.com/pacsd/pacsd/index/sqlite"
	"github.com/pacsd/pacsd/internal/dcmgen"
	"github.com/pacsd/pacsd/storage/file"
)

// BenchmarkStore stores 512 KiB CT instances into the filesystem store
// and a SQLite index, as pacsd serve does: the CPU an instance costs,
// fsyncs included.
func BenchmarkStore(b *testing.B) {
	benchStore(b, IssuerPolicy{}, dcmgen.Patient{})
}

// BenchmarkStoreIssuer is BenchmarkStore with instances without an
// issuer from a sender the policy gives one: the issuer's record in
// storage is written once, not per instance.
func BenchmarkStoreIssuer(b *testing.B) {
	benchStore(b, IssuerPolicy{Default: "RXH"}, dcmgen.Patient{Name: "Bench^Mark", ID: "B1"})
}

func benchStore(b *testing.B, issuers IssuerPolicy, patient dcmgen.Patient) {
	dir := b.TempDir()
	db, err := sqlite.Open(context.Background(), filepath.Join(dir, "index.db"))
	if err != nil {
		b.Fatal(err)
	}
	defer db.Close()
	if err := os.Mkdir(filepath.Join(dir, "objects"), 0o755); err != nil {
		b.Fatal(err)
	}
	fs, err := file.New(filepath.Join(dir, "objects"))
	if err != nil {
		b.Fatal(err)
	}
	svc := New(Config{Store: fs, Index: db, AETitle: "PACSD", Issuers: issuers})
	study, series := dcmgen.UID(), dcmgen.UID()
	in := dcmgen.Instance{Patient: patient, Rows: 512, Columns: 512, BitsAllocated: 16, Study: dcmgen.Study{UID: study}, Series: dcmgen.Series{UID: series, Modality: "CT"}}
	var buf bytes.Buffer
	if _, err := dcmgen.WriteFile(&buf, &in); err != nil {
		b.Fatal(err)
	}
	_, n, err := dicom.ReadFileMeta(bufio.NewReader(bytes.NewReader(buf.Bytes())))
	if err != nil {
		b.Fatal(err)
	}
	data := buf.Bytes()[n:]
	sop := []byte(in.SOPInstanceUID)
	b.SetBytes(int64(len(data)))
	b.ResetTimer()
	for i := 0; b.Loop(); i++ {
		// A new SOP Instance UID of the same length each time.
		uidNew := []byte(fmt.Sprintf("%s.%08d", series, i))[:len(sop)]
		if uidNew[len(uidNew)-1] == '.' {
			uidNew[len(uidNew)-1] = '9' // a UID does not end with a dot
		}
		d := bytes.Replace(data, sop, uidNew, 1)
		if _, err := svc.Store(context.Background(), &StoreRequest{TransferSyntaxUID: "1.2.840.10008.1.2.1", Dataset: bytes.NewReader(d)}); err != nil {
			b.Fatal(err)
		}
	}
}
