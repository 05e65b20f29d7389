package testpeer_test

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/pacsd/pacsd/internal/dcmgen"
	"github.com/pacsd/pacsd/internal/testpeer"
)

// recordingTB captures how Need ends a test, without ending this one.
type recordingTB struct {
	testing.TB
	fatal, skip string
}

func (r *recordingTB) Helper()                           {}
func (r *recordingTB) Fatalf(format string, args ...any) { r.fatal = fmt.Sprintf(format, args...) }
func (r *recordingTB) Skipf(format string, args ...any)  { r.skip = fmt.Sprintf(format, args...) }

const missingProgram = "pacsd-testpeer-no-such-program"

func TestNeed(t *testing.T) {
	tests := []struct {
		name      string
		ci        string
		programs  []string
		wantFatal bool
		wantSkip  bool
	}{
		{"missing outside CI skips", "", []string{missingProgram}, false, true},
		{"missing under CI=false skips", "false", []string{missingProgram}, false, true},
		{"missing under CI fails", "true", []string{missingProgram}, true, false},
		{"present passes", "true", []string{"sh"}, false, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Setenv("CI", tt.ci)
			r := &recordingTB{TB: t}
			testpeer.Need(r, tt.programs...)
			if got := r.fatal != ""; got != tt.wantFatal {
				t.Errorf("Fatalf called: %v (%q), want %v", got, r.fatal, tt.wantFatal)
			}
			if got := r.skip != ""; got != tt.wantSkip {
				t.Errorf("Skipf called: %v (%q), want %v", got, r.skip, tt.wantSkip)
			}
			for _, msg := range []string{r.fatal, r.skip} {
				if msg != "" && (!strings.Contains(msg, missingProgram) || !strings.Contains(msg, "make test")) {
					t.Errorf("message %q should name the program and `make test`", msg)
				}
			}
		})
	}
}

func TestLookup(t *testing.T) {
	if _, err := testpeer.Lookup(missingProgram); !errors.Is(err, testpeer.ErrNotInstalled) {
		t.Errorf("Lookup(%q) = %v, want ErrNotInstalled", missingProgram, err)
	}
	testpeer.Need(t, "Orthanc") // Debian puts it outside a normal user's PATH
	p, err := testpeer.Lookup("Orthanc")
	if err != nil || !filepath.IsAbs(p) {
		t.Errorf("Lookup(Orthanc) = %q, %v", p, err)
	}
}

func TestFreePort(t *testing.T) {
	p, err := testpeer.FreePort()
	if err != nil || p <= 0 || p > 65535 {
		t.Fatalf("FreePort() = %d, %v", p, err)
	}
}

func TestProcess(t *testing.T) {
	t.Run("Stop ends a running process", func(t *testing.T) {
		p := testpeer.StartT(t, testpeer.Cmd{Name: "sh", Args: []string{"-c", `echo "nodelay=$TCP_NODELAY"; exec sleep 60`}})
		// The shell writes its line at its own pace; a log that stays
		// empty fails the comparison below.
		for deadline := time.Now().Add(10 * time.Second); p.LogTail(1) == "" && time.Now().Before(deadline); {
			time.Sleep(10 * time.Millisecond)
		}
		if err := p.Stop(); err != nil {
			t.Fatalf("Stop: %v", err)
		}
		select {
		case <-p.Exited():
		default:
			t.Fatal("Stop returned before the process exited")
		}
		if got := p.LogTail(5); got != "nodelay=1" {
			t.Errorf("log = %q, want the TCP_NODELAY=1 the environment must carry", got)
		}
	})
	t.Run("WaitTCP fails when the process exits", func(t *testing.T) {
		port, err := testpeer.FreePort()
		if err != nil {
			t.Fatal(err)
		}
		p, err := testpeer.Start(t.Context(), testpeer.Cmd{Name: "sh", Args: []string{"-c", "echo cannot bind; exit 3"}, Dir: t.TempDir()})
		if err != nil {
			t.Fatal(err)
		}
		err = p.WaitTCP(t.Context(), fmt.Sprintf("127.0.0.1:%d", port))
		if err == nil || !strings.Contains(err.Error(), "cannot bind") || !strings.Contains(err.Error(), "exit status 3") {
			t.Errorf("WaitTCP = %v, want an error with the exit status and the log", err)
		}
		if err := p.Stop(); err == nil {
			t.Error("Stop of a process that failed on its own returned nil")
		}
	})
	t.Run("Run reports the command line", func(t *testing.T) {
		_, _, err := testpeer.Run(context.Background(), "sh", "-c", "echo oops >&2; exit 2", "arg with space")
		if err == nil || !strings.Contains(err.Error(), `'echo oops >&2; exit 2' 'arg with space'`) || !strings.Contains(err.Error(), "oops") {
			t.Errorf("Run error = %v, want the quoted command line and stderr", err)
		}
	})
}

// generated writes one small generated instance into dir.
func generated(t *testing.T, dir string) dcmgen.File {
	t.Helper()
	in := dcmgen.Instance{Patient: dcmgen.Patient{Name: "Peer^Test", ID: "TESTPEER"}}
	f, err := dcmgen.Create(filepath.Join(dir, "in.dcm"), &in)
	if err != nil {
		t.Fatal(err)
	}
	return f
}

func TestStoreSCP(t *testing.T) {
	t.Parallel()
	testpeer.Need(t, "echoscu", "storescu", "dcmdump")
	scp := testpeer.StartStoreSCPT(t, testpeer.StoreSCPOptions{AET: "TESTSCP"})
	host, port := hostPort(scp.Addr)

	testpeer.RunT(t, "echoscu", "-aec", scp.AET, host, port)

	f := generated(t, t.TempDir())
	testpeer.RunT(t, "storescu", "-aec", scp.AET, host, port, f.Path)
	files, err := scp.Files()
	if err != nil {
		t.Fatal(err)
	}
	got, ok := files[f.SOPInstanceUID]
	if !ok || len(files) != 1 {
		t.Fatalf("Files() = %v, want one file for %s", files, f.SOPInstanceUID)
	}
	out, _ := testpeer.RunT(t, "dcmdump", "+P", "SOPInstanceUID", got)
	if !strings.Contains(out, f.SOPInstanceUID) {
		t.Errorf("dcmdump of the received file: %s", out)
	}
}

func TestOrthanc(t *testing.T) {
	t.Parallel()
	testpeer.Need(t, "echoscu", "storescu")
	scp := testpeer.StartStoreSCPT(t, testpeer.StoreSCPOptions{})
	o := testpeer.StartOrthancT(t, testpeer.OrthancOptions{
		AET:        "TESTORTHANC",
		DICOMweb:   true,
		Modalities: map[string]testpeer.Modality{"scp": scp.Modality()},
	})
	ctx := t.Context()
	host, port := hostPort(o.DICOMAddr)
	testpeer.RunT(t, "echoscu", "-aec", o.AET, host, port)

	f := generated(t, t.TempDir())
	testpeer.RunT(t, "storescu", "-aec", o.AET, host, port, f.Path)

	var ids []string
	if err := o.GetJSON(ctx, "/instances", &ids); err != nil {
		t.Fatal(err)
	}
	if len(ids) != 1 {
		t.Fatalf("GET /instances = %v, want one instance", ids)
	}
	var tags map[string]string
	if err := o.GetJSON(ctx, "/instances/"+ids[0]+"/simplified-tags", &tags); err != nil {
		t.Fatal(err)
	}
	if tags["SOPInstanceUID"] != f.SOPInstanceUID || tags["PatientName"] != "Peer^Test" {
		t.Errorf("stored tags = %v, want the instance that was sent", tags)
	}

	// Orthanc reaches the modality from its configuration: C-ECHO, then
	// C-STORE of the instance it holds.
	if err := o.PostJSON(ctx, "/modalities/scp/echo", map[string]any{}, nil); err != nil {
		t.Fatal(err)
	}
	if err := o.PostJSON(ctx, "/modalities/scp/store", ids, nil); err != nil {
		t.Fatal(err)
	}
	files, err := scp.Files()
	if err != nil {
		t.Fatal(err)
	}
	if _, ok := files[f.SOPInstanceUID]; !ok {
		t.Errorf("storescp received %v, want %s from Orthanc", files, f.SOPInstanceUID)
	}

	// The DICOMweb plugin answers QIDO-RS.
	var studies []map[string]struct{ Value []any }
	if err := o.GetJSON(ctx, "/dicom-web/studies", &studies); err != nil {
		t.Fatal(err)
	}
	if len(studies) != 1 || !slices.Contains(studies[0]["0020000D"].Value, any(f.StudyInstanceUID)) {
		t.Errorf("QIDO-RS studies = %v, want %s", studies, f.StudyInstanceUID)
	}
	if !strings.HasPrefix(o.DICOMwebURL, o.URL) {
		t.Errorf("DICOMwebURL %q is not under %q", o.DICOMwebURL, o.URL)
	}
}

func TestPydicomFiles(t *testing.T) {
	files := testpeer.PydicomFilesT(t)
	names := map[string]bool{}
	for _, f := range files {
		names[filepath.Base(f)] = true
		if fi, err := os.Stat(f); err != nil || !fi.Mode().IsRegular() {
			t.Errorf("%s is not a regular file: %v", f, err)
		}
	}
	for _, want := range []string{"CT_small.dcm", "MR_small_bigendian.dcm", "ExplVR_LitEndNoMeta.dcm", "ExplVR_BigEndNoMeta.dcm", "rtstruct.dcm", "JPEG2000.dcm"} {
		if !names[want] {
			t.Errorf("%s is missing from %d files", want, len(files))
		}
	}
	for name := range names {
		if strings.HasPrefix(name, "DICOMDIR") || strings.HasSuffix(name, ".json") || strings.HasSuffix(name, ".gz") || name == "README" {
			t.Errorf("%s should have been left out", name)
		}
	}
	// no_meta.dcm starts with a stray byte and is not a readable dataset.
	if names["no_meta.dcm"] {
		t.Error("no_meta.dcm does not parse as DICOM and should have been left out")
	}
}

func hostPort(addr string) (string, string) {
	i := strings.LastIndexByte(addr, ':')
	return addr[:i], addr[i+1:]
}
