package main

import (
	"bytes"
	"encoding/json"
	"io"
	"mime"
	"mime/multipart"
	"net/http"
	"net/textproto"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/pacsd/pacsd/archive"
	"github.com/pacsd/pacsd/internal/testpeer"
)

// TestCrossProtocol stores by one front door and reads by the other: an
// instance sent by storescu is found by QIDO-RS and retrieved by WADO-RS
// byte for byte; one sent by STOW-RS is found by findscu and retrieved
// by getscu byte for byte.
func TestCrossProtocol(t *testing.T) {
	testpeer.Need(t, "storescu", "findscu", "getscu")
	files := testpeer.PydicomFilesT(t)
	pick := func(name string) string {
		for _, f := range files {
			if filepath.Base(f) == name {
				return f
			}
		}
		t.Fatalf("no %s among the pydicom files", name)
		return ""
	}
	ct, mr := pick("CT_small.dcm"), pick("MR_small.dcm")
	p := startPacsd(t, t.TempDir())
	base := "http://" + p.httpAddr + "/dicom-web"

	t.Run("storescu to WADO-RS", func(t *testing.T) {
		if out, err := p.dcmtk("storescu", ct); err != nil {
			t.Fatalf("storescu: %v\n%s", err, out)
		}
		resp, err := http.Get(base + "/instances?PatientID=1CT1")
		if err != nil {
			t.Fatal(err)
		}
		var found []map[string]map[string]any
		json.NewDecoder(resp.Body).Decode(&found)
		resp.Body.Close()
		if len(found) != 1 {
			t.Fatalf("QIDO found %d instances, want 1", len(found))
		}
		url := found[0]["00081190"]["Value"].([]any)[0].(string)
		req, _ := http.NewRequest("GET", url, nil)
		req.Header.Set("Accept", `multipart/related; type="application/dicom"; transfer-syntax=*`)
		resp, err = http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		_, params, _ := mime.ParseMediaType(resp.Header.Get("Content-Type"))
		part, err := multipart.NewReader(resp.Body, params["boundary"]).NextPart()
		if err != nil {
			t.Fatal(err)
		}
		got, _ := io.ReadAll(part)
		// storescu re-encodes what it reads; what pacsd received is what
		// it stored, and that is what WADO-RS must return.
		meta, _ := part10(t, ct)
		var stored []byte
		filepath.WalkDir(filepath.Join(p.data, "objects"), func(path string, d os.DirEntry, err error) error {
			rel, _ := filepath.Rel(filepath.Join(p.data, "objects"), path)
			if loc, ok := archive.ParseKey(filepath.ToSlash(rel)); err == nil && ok && loc.SOPInstanceUID == meta.MediaStorageSOPInstanceUID {
				stored, _ = os.ReadFile(path)
			}
			return nil
		})
		if stored == nil || !bytes.Equal(got, stored) {
			t.Errorf("WADO-RS object (%d bytes) differs from the stored one (%d bytes)", len(got), len(stored))
		}
	})

	t.Run("STOW-RS to getscu", func(t *testing.T) {
		data, err := os.ReadFile(mr)
		if err != nil {
			t.Fatal(err)
		}
		var body bytes.Buffer
		mw := multipart.NewWriter(&body)
		w, _ := mw.CreatePart(textproto.MIMEHeader{"Content-Type": {"application/dicom"}})
		w.Write(data)
		mw.Close()
		resp, err := http.Post(base+"/studies", `multipart/related; type="application/dicom"; boundary=`+mw.Boundary(), &body)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != 200 {
			t.Fatalf("STOW-RS: %d", resp.StatusCode)
		}
		meta, want := part10(t, mr)
		find := func(keys ...string) string {
			args := []string{"-v", "-S"}
			for _, k := range keys {
				args = append(args, "-k", k)
			}
			out, err := p.dcmtk("findscu", args...)
			if err != nil {
				t.Fatalf("findscu %v: %v\n%s", keys, err, out)
			}
			_, rsp, ok := strings.Cut(out, "Find Response: 1")
			if !ok {
				t.Fatalf("findscu %v found nothing:\n%s", keys, out)
			}
			return rsp
		}
		study := studyOf(t, find("QueryRetrieveLevel=STUDY", "PatientID=4MR1", "StudyInstanceUID"))
		series := seriesOf(t, find("QueryRetrieveLevel=SERIES", "StudyInstanceUID="+study, "SeriesInstanceUID"))
		if out := find("QueryRetrieveLevel=IMAGE", "StudyInstanceUID="+study, "SeriesInstanceUID="+series, "SOPInstanceUID"); !strings.Contains(out, meta.MediaStorageSOPInstanceUID) {
			t.Fatalf("findscu did not find the STOW-RS instance:\n%s", out)
		}
		dir := t.TempDir()
		if out, err := p.dcmtk("getscu", "-S", "+B", "-od", dir, "-k", "QueryRetrieveLevel=IMAGE", "-k", "PatientID=4MR1",
			"-k", "StudyInstanceUID="+study, "-k", "SeriesInstanceUID="+series,
			"-k", "SOPInstanceUID="+meta.MediaStorageSOPInstanceUID); err != nil {
			t.Fatalf("getscu: %v\n%s", err, out)
		}
		got := dirFiles(t, dir)
		path, ok := got[meta.MediaStorageSOPInstanceUID]
		if len(got) != 1 || !ok {
			t.Fatalf("getscu received %d files, not the instance", len(got))
		}
		if _, ds := part10(t, path); !bytes.Equal(ds, want) {
			t.Errorf("getscu data set differs from the one STOW-RS stored")
		}
	})
}

// studyOf and seriesOf read a UID from findscu's dump of a response.
func studyOf(t *testing.T, out string) string  { return dumpUID(t, out, "(0020,000d)") }
func seriesOf(t *testing.T, out string) string { return dumpUID(t, out, "(0020,000e)") }

func dumpUID(t *testing.T, out, tg string) string {
	t.Helper()
	for _, line := range strings.Split(out, "\n") {
		if i := strings.Index(line, tg+" UI ["); i >= 0 {
			rest := line[i+len(tg)+5:]
			if j := strings.Index(rest, "]"); j >= 0 {
				return rest[:j]
			}
		}
	}
	t.Fatalf("no %s in:\n%s", tg, out)
	return ""
}
