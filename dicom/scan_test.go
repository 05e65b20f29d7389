package dicom

import (
	"bufio"
	"bytes"
	"errors"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"

	"github.com/pacsd/pacsd/dicom/tag"
	"github.com/pacsd/pacsd/dicom/uid"
)

// scanAll runs a Scanner over data the way the archive does and checks
// that the bytes it passes on are the bytes it was given.
func scanAll(t *testing.T, data []byte, ts uid.TransferSyntax, lim Limits) (Identity, error, Header) {
	t.Helper()
	s := NewScanner(bytes.NewReader(data), ts, lim)
	id, err := s.Identify()
	if err != nil {
		s.Close()
		return id, err, s.Header()
	}
	var got bytes.Buffer
	got.Write(s.Prefix())
	if _, err := io.Copy(&got, s.Rest()); err != nil {
		t.Fatalf("copy rest: %v", err)
	}
	if !bytes.Equal(got.Bytes(), data) {
		t.Fatalf("bytes passed on differ from the input: %d bytes vs %d", got.Len(), len(data))
	}
	return id, nil, s.Header()
}

// pydicomFiles lists the Part-10 test files of Debian's python3-pydicom.
func pydicomFiles(t *testing.T) []string {
	t.Helper()
	out, err := exec.Command("dpkg", "-L", "python3-pydicom").Output()
	if err != nil {
		if os.Getenv("CI") == "true" {
			t.Fatalf("python3-pydicom is not installed: %v", err)
		}
		t.Skip("python3-pydicom is not installed; run make test, which installs it")
	}
	var files []string
	for _, p := range strings.Split(string(out), "\n") {
		if !strings.Contains(p, "/test_files/") || strings.Contains(p, "dicomdirtests") {
			continue
		}
		f, err := os.Open(p)
		if err != nil {
			continue
		}
		head := make([]byte, 132)
		n, _ := io.ReadFull(f, head)
		f.Close()
		if n == 132 && string(head[128:]) == "DICM" {
			files = append(files, p)
		}
	}
	if len(files) < 40 {
		t.Fatalf("only %d pydicom test files found", len(files))
	}
	return files
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
	dcmdump, err := exec.LookPath("dcmdump")
	if err != nil {
		if os.Getenv("CI") == "true" {
			t.Fatal("dcmdump (dcmtk) is not installed")
		}
		t.Skip("dcmdump (dcmtk) is not installed; run make test, which installs it")
	}
	total := 0
	for _, path := range pydicomFiles(t) {
		t.Run(filepath.Base(path), func(t *testing.T) {
			out, err := exec.Command(dcmdump, "-q", "+U8", "+L", "-Un", path).Output()
			if err != nil {
				t.Skipf("dcmdump cannot read it either: %v", err)
			}
			want := dumpTopLevel(string(out))
			m, data, err := readPart10(path)
			if errors.Is(err, ErrNotPart10) && strings.Contains(path, "missing_tsyntax") {
				t.Skipf("no transfer syntax, as the file's name says: %v", err)
			}
			if err != nil {
				t.Fatal(err)
			}
			ts, ok := uid.LookupTransferSyntax(m.TransferSyntaxUID)
			if !ok {
				t.Fatalf("transfer syntax %q unknown", m.TransferSyntaxUID)
			}
			id, err, h := scanAll(t, data, ts, Limits{})
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
				if !ok || e.Tag == tag.SpecificCharacterSet {
					// dcmdump +U8 relabels what it converts as
					// ISO_IR 192.
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

var dumpLine = regexp.MustCompile(`^\(([0-9a-f]{4}),([0-9a-f]{4})\) (\w\w) (?:\[(.*)\]|(\(no value available\))|(-?[0-9][^ ]*(?:\\-?[0-9][^ ]*)*))\s+#`)

// dumpTopLevel returns the top-level text and integer values of a dcmdump
// listing, multiple values joined by backslashes.
func dumpTopLevel(out string) map[tag.Tag]string {
	vals := map[tag.Tag]string{}
	for _, line := range strings.Split(out, "\n") {
		m := dumpLine.FindStringSubmatch(line)
		if m == nil {
			continue
		}
		g, _ := strconv.ParseUint(m[1], 16, 16)
		e, _ := strconv.ParseUint(m[2], 16, 16)
		t := tag.New(uint16(g), uint16(e))
		if g == 2 {
			continue
		}
		switch m[3] {
		case "AE", "AS", "CS", "DA", "DS", "DT", "IS", "LO", "PN", "SH", "TM", "UI":
			parts := strings.Split(m[4], `\`)
			for i := range parts {
				parts[i] = strings.Trim(parts[i], " ")
			}
			vals[t] = strings.Join(parts, `\`)
			if strings.Trim(vals[t], `\`) == "" {
				vals[t] = ""
			}
		case "LT", "ST", "UT":
			vals[t] = strings.TrimRight(m[4], " ")
		case "US", "UL", "SS", "SL":
			vals[t] = m[6]
		}
	}
	return vals
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
	}
	b := AppendFileMeta(nil, m)
	got, n, err := ReadFileMeta(bufio.NewReader(bytes.NewReader(append(b, 8, 0, 0x16, 0))))
	if err != nil || n != int64(len(b)) || got != m {
		t.Fatalf("ReadFileMeta = %+v, %d, %v; want %+v, %d", got, n, err, m, len(b))
	}
	if _, _, err := ReadFileMeta(bufio.NewReader(strings.NewReader("not dicom"))); !errors.Is(err, ErrNotPart10) {
		t.Errorf("non-DICOM: %v", err)
	}
}
