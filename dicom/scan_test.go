package dicom

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"io"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"

	"github.com/pacsd/pacsd/dicom/tag"
	"github.com/pacsd/pacsd/dicom/uid"
	"github.com/pacsd/pacsd/internal/testpeer"
)

// scanAll runs a Scanner over data the way the archive does and checks
// that the bytes it passes on are the bytes it was given.
func scanAll(t *testing.T, data []byte, ts uid.TransferSyntax, lim Limits) (Identity, Header, error) {
	t.Helper()
	s := NewScanner(bytes.NewReader(data), ts, lim)
	id, err := s.Identify()
	if err != nil {
		s.Close()
		return id, s.Header(), err
	}
	var got bytes.Buffer
	got.Write(s.Prefix())
	if _, err := io.Copy(&got, s.Rest()); err != nil {
		t.Fatalf("copy rest: %v", err)
	}
	if !bytes.Equal(got.Bytes(), data) {
		t.Fatalf("bytes passed on differ from the input: %d bytes vs %d", got.Len(), len(data))
	}
	return id, s.Header(), nil
}

func readPart10(path string) (FileMeta, []byte, error) {
	f, err := os.Open(path)
	if err != nil {
		return FileMeta{}, nil, err
	}
	defer f.Close()
	br := bufio.NewReader(f)
	m, _, err := ReadFileMeta(br)
	if err != nil {
		return m, nil, err
	}
	rest, err := io.ReadAll(br)
	return m, rest, err
}

// TestScanMatchesDcmdump reads every pydicom test file and checks the
// identity and every top-level text and integer value against what
// dcmtk's dcmdump reads from the same file.
func TestScanMatchesDcmdump(t *testing.T) {
	testpeer.Need(t, "dcmdump")
	total := 0
	for _, path := range testpeer.PydicomFilesT(t) {
		t.Run(filepath.Base(path), func(t *testing.T) {
			dump, err := testpeer.Dump(context.Background(), path)
			if err != nil {
				t.Skipf("dcmdump cannot read it either: %v", err)
			}
			want := map[tag.Tag]string{}
			for k, v := range dump {
				want[tag.Tag(k)] = v
			}
			m, data, err := readPart10(path)
			if errors.Is(err, ErrNotPart10) {
				// Files without File Meta Information (or without
				// its transfer syntax) are not what C-STORE or
				// STOW-RS deliver.
				t.Skipf("not Part-10: %v", err)
			}
			if err != nil {
				t.Fatal(err)
			}
			ts, ok := uid.LookupTransferSyntax(m.TransferSyntaxUID)
			if !ok {
				t.Fatalf("transfer syntax %q unknown", m.TransferSyntaxUID)
			}
			id, h, err := scanAll(t, data, ts, Limits{})
			if err != nil {
				t.Fatalf("Identify: %v", err)
			}
			for k, v := range map[tag.Tag]string{tag.SOPClassUID: id.SOPClassUID, tag.SOPInstanceUID: id.SOPInstanceUID,
				tag.StudyInstanceUID: id.StudyInstanceUID, tag.SeriesInstanceUID: id.SeriesInstanceUID} {
				if want[k] != v {
					t.Errorf("identity %v = %q, dcmdump says %q", k, v, want[k])
				}
			}
			checked := 0
			for _, e := range h.Dataset.Elements {
				w, ok := want[e.Tag]
				if !ok {
					continue
				}
				checked++
				if got := strings.Join(e.Values, `\`); got != w {
					t.Errorf("%v %s = %q, dcmdump says %q", e.Tag, e.VR, got, w)
				}
			}
			if h.Err != nil {
				t.Logf("header incomplete: %v (%d values checked)", h.Err, checked)
				if !strings.Contains(path, "truncated") {
					t.Errorf("unexpected header error: %v", h.Err)
				}
			}
			total += checked
		})
	}
	if total < 1000 {
		t.Errorf("only %d values compared with dcmdump", total)
	}
	t.Logf("%d values compared with dcmdump", total)
}

func TestMetaRoundTrip(t *testing.T) {
	m := FileMeta{
		MediaStorageSOPClassUID:         uid.CTImageStorage,
		MediaStorageSOPInstanceUID:      "1.2.3.4.5",
		TransferSyntaxUID:               uid.ExplicitVRLittleEndian,
		ImplementationClassUID:          ImplementationClassUID,
		ImplementationVersionName:       ImplementationVersionName,
		SendingApplicationEntityTitle:   "MODALITY",
		ReceivingApplicationEntityTitle: "PACSD",
		PrivateInformationCreatorUID:    "1.2.3.9",
		PrivateInformation:              []byte{1, 2, 3, 4},
	}
	b := AppendFileMeta(nil, m)
	got, n, err := ReadFileMeta(bufio.NewReader(bytes.NewReader(append(b, 8, 0, 0x16, 0))))
	if err != nil || n != int64(len(b)) || !reflect.DeepEqual(got, m) {
		t.Fatalf("ReadFileMeta = %+v, %d, %v; want %+v, %d", got, n, err, m, len(b))
	}
	if _, _, err := ReadFileMeta(bufio.NewReader(strings.NewReader("not dicom"))); !errors.Is(err, ErrNotPart10) {
		t.Errorf("non-DICOM: %v", err)
	}
}
