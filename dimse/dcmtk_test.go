package dimse

import (
	"bufio"
	"bytes"
	"context"
	"io"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"testing"

	"github.com/pacsd/pacsd/dicom"
	"github.com/pacsd/pacsd/dicom/uid"
	"github.com/pacsd/pacsd/internal/dcmgen"
	"github.com/pacsd/pacsd/internal/testpeer"
)

// needTool finds a dcmtk tool; under CI a missing peer fails the test.
func needTool(t *testing.T, name string) string {
	t.Helper()
	testpeer.Need(t, name)
	p, err := testpeer.Lookup(name)
	if err != nil {
		t.Fatal(err)
	}
	return p
}

func serveLoopback(t *testing.T, s *Server) (host string, port int) {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	go s.Serve(l)
	t.Cleanup(func() { s.Close() })
	return "127.0.0.1", l.Addr().(*net.TCPAddr).Port
}

func runTool(t *testing.T, name string, args ...string) (string, error) {
	t.Helper()
	cmd := exec.Command(needTool(t, name), args...)
	cmd.Env = append(os.Environ(), "TCP_NODELAY=1")
	out, err := cmd.CombinedOutput()
	return string(out), err
}

func TestDcmtkEchoAndStore(t *testing.T) {
	store := &memStore{}
	s := &Server{AETitle: "PACSD", Echo: echoOK{}, Store: store, Logger: testLogger(t)}
	host, port := serveLoopback(t, s)
	if out, err := runTool(t, "echoscu", "-aet", "DCMTK", "-aec", "PACSD", host, strconv.Itoa(port)); err != nil {
		t.Fatalf("echoscu: %v\n%s", err, out)
	}
	if out, err := runTool(t, "echoscu", "-aet", "DCMTK", "-aec", "WRONG", host, strconv.Itoa(port)); err == nil {
		t.Fatalf("echoscu to a wrong called AE succeeded:\n%s", out)
	}
	files := []string{"CT_small.dcm", "MR_small_bigendian.dcm", "JPEG2000.dcm", "image_dfl.dcm"}
	pydicom := map[string]string{}
	for _, p := range testpeer.PydicomFilesT(t) {
		pydicom[filepath.Base(p)] = p
	}
	for _, f := range files {
		path := pydicom[f]
		if path == "" {
			t.Fatalf("pydicom test file %s not found", f)
		}
		out, err := runTool(t, "dcmsend", "-aet", "DCMTK", "-aec", "PACSD", host, strconv.Itoa(port), path)
		if err != nil {
			t.Fatalf("dcmsend %s: %v\n%s", f, err, out)
		}
		fh, _ := os.Open(path)
		br := bufio.NewReader(fh)
		m, _, err := dicom.ReadFileMeta(br)
		if err != nil {
			t.Fatal(err)
		}
		fh.Close()
		// dcmsend may re-encode a data set (group lengths, padding),
		// so the bytes are compared with storescp's elsewhere; here the
		// data set arrived whole and says what it is.
		got, ok := store.get(m.MediaStorageSOPInstanceUID)
		if !ok {
			t.Fatalf("%s: not received", f)
		}
		ts, _ := uid.LookupTransferSyntax(store.syntax(m.MediaStorageSOPInstanceUID))
		sc := dicom.NewScanner(bytes.NewReader(got), ts, dicom.Limits{})
		id, err := sc.Identify()
		if err != nil || id.SOPInstanceUID != m.MediaStorageSOPInstanceUID {
			t.Errorf("%s: received data set reads as %+v, %v", f, id, err)
		}
		io.Copy(io.Discard, sc.Rest())
		if h := sc.Header(); h.Err != nil {
			t.Errorf("%s: received data set: %v", f, h.Err)
		}
	}
}

// TestClientToStorescp drives dcmtk's storescp with this package's client:
// C-ECHO, then C-STORE of a generated instance streamed from its file,
// which storescp (keeping data sets bit for bit, +B) must receive whole.
func TestClientToStorescp(t *testing.T) {
	scp := testpeer.StartStoreSCPT(t, testpeer.StoreSCPOptions{AET: "STORESCP", Dir: t.TempDir(), Args: []string{"+B"}})
	dir := t.TempDir()
	files, err := dcmgen.WriteSeries(dir, 3, 300<<10, dcmgen.Instance{Series: dcmgen.Series{Modality: "CT"}})
	if err != nil {
		t.Fatal(err)
	}
	d := &Dialer{CallingAE: "PACSD", CalledAE: "STORESCP", Logger: testLogger(t), Proposals: []Proposal{
		{uid.Verification, []string{uid.ImplicitVRLittleEndian}},
		{uid.CTImageStorage, []string{uid.ExplicitVRLittleEndian}},
	}}
	ctx := context.Background()
	a, err := d.Dial(ctx, scp.Addr)
	if err != nil {
		t.Fatal(err)
	}
	if err := a.Echo(ctx); err != nil {
		t.Fatalf("Echo: %v", err)
	}
	for _, f := range files {
		fh, err := os.Open(f.Path)
		if err != nil {
			t.Fatal(err)
		}
		br := bufio.NewReader(fh)
		m, _, err := dicom.ReadFileMeta(br)
		if err != nil {
			t.Fatal(err)
		}
		st, err := a.Store(ctx, &StoreRequest{SOPClassUID: m.MediaStorageSOPClassUID, SOPInstanceUID: m.MediaStorageSOPInstanceUID,
			TransferSyntaxUID: m.TransferSyntaxUID, Dataset: br})
		fh.Close()
		if err != nil || st != StatusSuccess {
			t.Fatalf("Store %s: %v, %v", f.SOPInstanceUID, st, err)
		}
	}
	if err := a.Release(ctx); err != nil {
		t.Fatalf("Release: %v", err)
	}
	got, err := scp.Files()
	if err != nil {
		t.Fatal(err)
	}
	for _, f := range files {
		want, _ := os.ReadFile(f.Path)
		have, err := os.ReadFile(got[f.SOPInstanceUID])
		if err != nil {
			t.Fatalf("storescp did not receive %s: %v", f.SOPInstanceUID, err)
		}
		_, wn, _ := dicom.ReadFileMeta(bufio.NewReader(bytes.NewReader(want)))
		_, hn, _ := dicom.ReadFileMeta(bufio.NewReader(bytes.NewReader(have)))
		if !bytes.Equal(want[wn:], have[hn:]) {
			t.Errorf("%s: storescp received a different data set", f.SOPInstanceUID)
		}
	}
}
