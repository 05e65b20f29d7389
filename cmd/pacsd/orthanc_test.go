package main

import (
	"bufio"
	"bytes"
	"context"
	"fmt"
	"io"
	"net/http"
	"path/filepath"
	"slices"
	"strconv"
	"testing"
	"time"

	"github.com/pacsd/pacsd/dicom"
	"github.com/pacsd/pacsd/dicom/tag"
	"github.com/pacsd/pacsd/dicom/uid"
	"github.com/pacsd/pacsd/dimse"
	"github.com/pacsd/pacsd/internal/testpeer"
)

// TestOrthanc runs query/retrieve both ways between pacsd and a real
// Orthanc: pacsd's client finds studies in Orthanc and pulls them in with
// C-GET and C-MOVE (pacsd retrieve), and Orthanc, through its REST API,
// queries pacsd with C-FIND and has it C-MOVE a study to Orthanc.
func TestOrthanc(t *testing.T) {
	testpeer.Need(t, "Orthanc", "storescu")
	ctx := context.Background()
	dir := t.TempDir()
	studies := writeCorpus(t, dir)
	A, B, C, D := studies[0], studies[1], studies[2], studies[3]
	// Orthanc gets studies A and B, pacsd C and D.
	files, _ := filepath.Glob(filepath.Join(dir, "*.dcm"))
	var toOrthanc, toPacsd []string
	for _, f := range files {
		m, _ := part10(t, f)
		if slices.ContainsFunc(append(append([]string{}, flat(A.sops)...), flat(B.sops)...), func(s string) bool { return s == m.MediaStorageSOPInstanceUID }) {
			toOrthanc = append(toOrthanc, f)
		} else {
			toPacsd = append(toPacsd, f)
		}
	}

	port, err := testpeer.FreePort()
	if err != nil {
		t.Fatal(err)
	}
	orthanc := testpeer.StartOrthancT(t, testpeer.OrthancOptions{
		Modalities: map[string]testpeer.Modality{"pacsd": {AET: "PACSD", Host: "127.0.0.1", Port: port}},
	})
	data := t.TempDir()
	remote := "ORTHANC=" + orthanc.DICOMAddr
	p := startPacsd(t, data, "--dimse-addr", "127.0.0.1:"+strconv.Itoa(port), "--remote-ae", remote)
	if _, stderr, err := testpeer.Run(ctx, "storescu", append([]string{"-aet", "DCMTK", "-aec", orthanc.AET, "127.0.0.1", strconv.Itoa(orthanc.DICOMPort)}, toOrthanc...)...); err != nil {
		t.Fatalf("storescu to Orthanc: %v\n%s", err, stderr)
	}
	if out, err := p.dcmtk("storescu", toPacsd...); err != nil {
		t.Fatalf("storescu to pacsd: %v\n%s", err, out)
	}

	t.Run("pacsd finds Orthanc's studies", func(t *testing.T) {
		d := &dimse.Dialer{CallingAE: "PACSD", CalledAE: orthanc.AET, Proposals: []dimse.Proposal{
			{AbstractSyntax: uid.StudyRootQueryRetrieveInformationModelFind, TransferSyntaxes: []string{uid.ExplicitVRLittleEndian}},
		}}
		a, err := d.Dial(ctx, orthanc.DICOMAddr)
		if err != nil {
			t.Fatal(err)
		}
		defer a.Release(ctx)
		q := &dicom.Dataset{Elements: []dicom.Element{
			{Tag: tag.QueryRetrieveLevel, VR: "CS", Values: []string{"STUDY"}},
			{Tag: tag.PatientName, VR: "PN", Values: []string{"Doe*"}},
			{Tag: tag.StudyInstanceUID, VR: "UI"},
		}}
		var got []string
		for m, err := range a.Find(ctx, uid.StudyRootQueryRetrieveInformationModelFind, q) {
			if err != nil {
				t.Fatal(err)
			}
			got = append(got, m.First(tag.StudyInstanceUID))
		}
		slices.Sort(got)
		if want := sorted(A.uid, B.uid); !slices.Equal(got, want) {
			t.Errorf("found %v, want %v", got, want)
		}
	})

	retrieve := func(t *testing.T, st *qrStudy, extra ...string) {
		t.Helper()
		var out, errb bytes.Buffer
		args := append([]string{"retrieve", "--data", data, "--remote-ae", remote, "--from", "ORTHANC",
			"--key", "StudyInstanceUID=" + st.uid, "--log-format", "json"}, extra...)
		if err := run(ctx, args, testEnv, &out, &errb); err != nil {
			t.Fatalf("pacsd retrieve: %v\n%s\n%s", err, out.String(), errb.String())
		}
		t.Logf("%s", out.String())
	}

	t.Run("pacsd retrieve with C-GET", func(t *testing.T) {
		retrieve(t, A)
		checkArchived(t, data, dir, A)
	})

	t.Run("pacsd retrieve with C-MOVE", func(t *testing.T) {
		retrieve(t, B, "--move")
		checkArchived(t, data, dir, B)
	})

	t.Run("Orthanc finds pacsd's studies", func(t *testing.T) {
		var q struct{ ID string }
		if err := orthanc.PostJSON(ctx, "/modalities/pacsd/query", map[string]any{
			"Level": "Study", "Query": map[string]string{"PatientID": "PID002", "StudyInstanceUID": "", "AccessionNumber": ""},
		}, &q); err != nil {
			t.Fatal(err)
		}
		var answers []map[string]struct {
			Value any
		}
		if err := orthanc.GetJSON(ctx, "/queries/"+q.ID+"/answers?expand", &answers); err != nil {
			t.Fatal(err)
		}
		if len(answers) != 1 || fmt.Sprint(answers[0]["0020,000d"].Value) != C.uid || fmt.Sprint(answers[0]["0008,0050"].Value) != "ACC003" {
			t.Fatalf("answers %v", answers)
		}
	})

	t.Run("Orthanc has pacsd C-MOVE a study to it", func(t *testing.T) {
		var job map[string]any
		if err := orthanc.PostJSON(ctx, "/modalities/pacsd/move", map[string]any{
			"Level": "Study", "Resources": []map[string]string{{"StudyInstanceUID": D.uid}}, "TargetAet": orthanc.AET, "Synchronous": true,
		}, &job); err != nil {
			t.Fatal(err)
		}
		var found []string
		deadline := time.Now().Add(20 * time.Second)
		for time.Now().Before(deadline) {
			found = nil
			if err := orthanc.PostJSON(ctx, "/tools/find", map[string]any{"Level": "Instance", "Query": map[string]string{"StudyInstanceUID": D.uid}}, &found); err != nil {
				t.Fatal(err)
			}
			if len(found) == D.instanceCount() {
				break
			}
			time.Sleep(100 * time.Millisecond)
		}
		if len(found) != D.instanceCount() {
			t.Fatalf("Orthanc holds %d of the study's %d instances", len(found), D.instanceCount())
		}
		// Orthanc keeps the data set as pacsd sent it: compare with the
		// file the study was made from.
		for _, id := range found {
			b, err := orthancFile(ctx, orthanc, id)
			if err != nil {
				t.Fatal(err)
			}
			m, n, err := dicom.ReadFileMeta(bufioReader(b))
			if err != nil {
				t.Fatal(err)
			}
			want := originalDataset(t, dir, m.MediaStorageSOPInstanceUID)
			if !bytes.Equal(b[n:], want) {
				t.Errorf("%s: Orthanc received a different data set", m.MediaStorageSOPInstanceUID)
			}
		}
	})
}

func flat(s [][]string) []string {
	var out []string
	for _, x := range s {
		out = append(out, x...)
	}
	return out
}

// originalDataset returns the data set of the generated file of an
// instance.
func originalDataset(t *testing.T, dir, sop string) []byte {
	t.Helper()
	files, _ := filepath.Glob(filepath.Join(dir, "*.dcm"))
	for _, f := range files {
		m, ds := part10(t, f)
		if m.MediaStorageSOPInstanceUID == sop {
			return ds
		}
	}
	t.Fatalf("no generated file for %s", sop)
	return nil
}

// checkArchived checks that pacsd holds every instance of a study with
// the data set of its generated file.
func checkArchived(t *testing.T, data, dir string, st *qrStudy) {
	t.Helper()
	a := openArchive(t, data)
	for _, sop := range flat(st.sops) {
		if got := storedDataset(t, a, sop); !bytes.Equal(got, originalDataset(t, dir, sop)) {
			t.Errorf("%s: archived data set differs from the original", sop)
		}
	}
}

func orthancFile(ctx context.Context, o *testpeer.Orthanc, id string) ([]byte, error) {
	resp, err := httpGetBody(ctx, o.URL+"/instances/"+id+"/file")
	if err != nil {
		return nil, err
	}
	return resp, nil
}

func httpGetBody(ctx context.Context, url string) ([]byte, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return nil, err
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	if resp.StatusCode != 200 {
		return nil, fmt.Errorf("GET %s: %s", url, resp.Status)
	}
	return io.ReadAll(resp.Body)
}

func bufioReader(b []byte) *bufio.Reader { return bufio.NewReader(bytes.NewReader(b)) }
