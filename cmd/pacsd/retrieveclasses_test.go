package main

import (
	"bytes"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"

	"github.com/pacsd/pacsd/internal/testpeer"
)

// TestRetrieveStudyLevel retrieves a whole study by C-GET from pacsd and
// from dcmtk's dcmqrscp: the SOP classes to propose are learnt by
// hierarchical C-FINDs, from SOP Classes in Study (0008,0062) where the
// remote answers it (pacsd), and where it answers neither that nor an
// instance's SOP Class UID (dcmqrscp), the common storage classes.
func TestRetrieveStudyLevel(t *testing.T) {
	testpeer.Need(t, "storescu", "dcmqrscp")
	src := t.TempDir()
	studies, _ := writeDeidCorpus(t, src)
	files, _ := filepath.Glob(filepath.Join(src, "*.dcm"))

	source := startPacsd(t, t.TempDir())
	if out, err := source.dcmtk("storescu", files...); err != nil {
		t.Fatalf("storescu: %v\n%s", err, out)
	}

	// pacsd answers SOP Classes in Study at STUDY level (PS3.4 C.6.2.1.2).
	out, stderr, err := testpeer.Run(t.Context(), "findscu", "-v", "-S", "-aec", "PACSD", "-k", "QueryRetrieveLevel=STUDY", "-k", "StudyInstanceUID="+studies[1],
		"-k", "SOPClassesInStudy", source.host(), source.port())
	if err != nil || !strings.Contains(out+stderr, "UI =CTImageStorage") {
		t.Errorf("findscu of SOP Classes in Study: %v\n%s%s", err, out, stderr)
	}

	dir := t.TempDir()
	storage := filepath.Join(dir, "storage")
	os.Mkdir(storage, 0o755)
	port, err := testpeer.FreePort()
	if err != nil {
		t.Fatal(err)
	}
	cfg := fmt.Sprintf("NetworkTCPPort = %d\nMaxPDUSize = 16384\nMaxAssociations = 16\n\nHostTable BEGIN\nHostTable END\n\nVendorTable BEGIN\nVendorTable END\n\nAETable BEGIN\nLEGACY %s RW (100, 1024mb) ANY\nAETable END\n", port, storage)
	cfgPath := filepath.Join(dir, "dcmqrscp.cfg")
	if err := os.WriteFile(cfgPath, []byte(cfg), 0o644); err != nil {
		t.Fatal(err)
	}
	p := testpeer.StartT(t, testpeer.Cmd{Name: "dcmqrscp", Args: []string{"-c", cfgPath, strconv.Itoa(port)}, Dir: dir})
	legacy := "127.0.0.1:" + strconv.Itoa(port)
	if err := p.WaitTCP(t.Context(), legacy); err != nil {
		t.Fatal(err)
	}
	testpeer.RunT(t, "storescu", append([]string{"-aec", "LEGACY", "127.0.0.1", strconv.Itoa(port)}, files...)...)

	for _, tc := range []struct{ name, remote string }{
		{"pacsd", "PACSD=" + source.dimseAddr},
		{"dcmqrscp", "LEGACY=" + legacy},
	} {
		t.Run(tc.name, func(t *testing.T) {
			from, _, _ := strings.Cut(tc.remote, "=")
			var stdout, stderr bytes.Buffer
			err := run(t.Context(), []string{"retrieve", "--data", t.TempDir(), "--from", from, "--remote-ae", tc.remote,
				"--level", "STUDY", "--key", "StudyInstanceUID=" + studies[1]}, func(string) string { return "" }, &stdout, &stderr)
			if err != nil || !strings.Contains(stdout.String(), "retrieved 2 instances") {
				t.Fatalf("pacsd retrieve of a study from %s: %v\n%s%s", tc.name, err, stdout.String(), stderr.String())
			}
		})
	}
}
