package main

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"testing"

	"github.com/pacsd/pacsd/dicom"
	"github.com/pacsd/pacsd/internal/testpeer"
)

// TestDicomwebOrthanc has the DICOMweb client of Orthanc's plugin (Debian's
// orthanc-dicomweb) use pacsd as a remote DICOMweb server: it searches
// pacsd with QIDO-RS, pulls a study and a series into Orthanc with WADO-RS,
// and pushes a study that only Orthanc holds into pacsd with STOW-RS. Data
// sets must cross byte for byte both ways.
func TestDicomwebOrthanc(t *testing.T) {
	testpeer.Need(t, "Orthanc", "storescu")
	ctx := t.Context()
	dir := t.TempDir()
	studies := writeCorpus(t, dir)
	A, B, C, D := studies[0], studies[1], studies[2], studies[3]
	// pacsd gets A, B and C over DIMSE; D goes to Orthanc alone, which
	// stores it in pacsd with STOW-RS.
	files, _ := filepath.Glob(filepath.Join(dir, "*.dcm"))
	var toPacsd, toOrthanc []string
	for _, f := range files {
		m, _ := part10(t, f)
		if slices.Contains(flat(D.sops), m.MediaStorageSOPInstanceUID) {
			toOrthanc = append(toOrthanc, f)
		} else {
			toPacsd = append(toPacsd, f)
		}
	}
	data := t.TempDir()
	p := startPacsd(t, data)
	if out, err := p.dcmtk("storescu", toPacsd...); err != nil {
		t.Fatalf("storescu to pacsd: %v\n%s", err, out)
	}
	orthanc := testpeer.StartOrthancT(t, testpeer.OrthancOptions{
		DICOMweb:        true,
		DICOMwebServers: map[string]string{"pacsd": "http://" + p.httpAddr + "/dicom-web/"},
	})

	t.Run("Orthanc searches pacsd", func(t *testing.T) {
		got := orthancQIDO(t, orthanc, "/studies", map[string]string{"PatientName": "Doe*"})
		if uids := column(got, "0020000D"); !slices.Equal(sorted(uids...), sorted(A.uid, B.uid)) {
			t.Errorf("studies of Doe*: %v, want %v", uids, sorted(A.uid, B.uid))
		}
		if names := column(got, "00100010"); !slices.Equal(names, []string{"Doe^John", "Doe^John"}) {
			t.Errorf("patient names %q", names)
		}
		// A name in ISO_IR 100 comes back as UTF-8 (ISO_IR 192).
		got = orthancQIDO(t, orthanc, "/studies", map[string]string{"PatientID": "PID002"})
		if uids := column(got, "0020000D"); !slices.Equal(uids, []string{C.uid}) {
			t.Fatalf("studies of PID002: %v, want %s", uids, C.uid)
		}
		if name, desc := column(got, "00100010")[0], column(got, "00081030")[0]; name != "Müller^Jürgen" || desc != "Röntgen Thorax" {
			t.Errorf("PID002: PatientName %q, StudyDescription %q", name, desc)
		}
		got = orthancQIDO(t, orthanc, "/studies/"+C.uid+"/series", nil)
		if uids := column(got, "0020000E"); !slices.Equal(sorted(uids...), sorted(C.seriesUID...)) {
			t.Errorf("series of C: %v, want %v", uids, C.seriesUID)
		}
		if mods := column(got, "00080060"); !slices.Equal(sorted(mods...), []string{"CT", "US"}) {
			t.Errorf("modalities of C's series: %v", mods)
		}
		got = orthancQIDO(t, orthanc, "/studies/"+A.uid+"/instances", nil)
		if uids := column(got, "00080018"); !slices.Equal(sorted(uids...), sorted(flat(A.sops)...)) {
			t.Errorf("instances of A: %v, want %v", uids, flat(A.sops))
		}
	})

	t.Run("Orthanc retrieves from pacsd", func(t *testing.T) {
		var res struct{ ReceivedInstancesCount any }
		resources := []map[string]string{{"Study": A.uid}, {"Study": C.uid, "Series": C.seriesUID[0]}}
		if err := orthanc.PostJSON(ctx, "/dicom-web/servers/pacsd/retrieve", map[string]any{"Resources": resources}, &res); err != nil {
			t.Fatal(err)
		}
		want := append(flat(A.sops), C.sops[0]...)
		if n := fmt.Sprint(res.ReceivedInstancesCount); n != fmt.Sprint(len(want)) {
			t.Errorf("Orthanc received %s instances, want %d", n, len(want))
		}
		a := openArchive(t, data)
		got := orthancDatasets(t, orthanc)
		if keys := sorted(mapKeys(got)...); !slices.Equal(keys, sorted(want...)) {
			t.Fatalf("Orthanc holds %v, want %v", describeSOPs(studies, keys), describeSOPs(studies, sorted(want...)))
		}
		for _, sop := range want {
			stored := storedDataset(t, a, sop)
			if !bytes.Equal(got[sop], stored) {
				t.Errorf("%s: Orthanc's data set (%d bytes) differs from pacsd's (%d bytes)", sop, len(got[sop]), len(stored))
			}
			if !bytes.Equal(stored, originalDataset(t, dir, sop)) {
				t.Errorf("%s: pacsd's data set differs from the file sent", sop)
			}
		}
	})

	t.Run("Orthanc stores in pacsd", func(t *testing.T) {
		var study string
		for _, f := range toOrthanc {
			study = orthancUpload(t, orthanc, f)
		}
		var res struct{ InstancesCount any }
		if err := orthanc.PostJSON(ctx, "/dicom-web/servers/pacsd/stow", map[string]any{"Resources": []string{study}, "Synchronous": true}, &res); err != nil {
			t.Fatal(err)
		}
		if n := fmt.Sprint(res.InstancesCount); n != fmt.Sprint(D.instanceCount()) {
			t.Errorf("Orthanc sent %s instances, want %d", n, D.instanceCount())
		}
		got := orthancStudyDatasets(t, orthanc, D.uid)
		a := openArchive(t, data)
		for _, sop := range flat(D.sops) {
			_, stored, row := a.object(t, sop)
			if !bytes.Equal(stored, originalDataset(t, dir, sop)) || !bytes.Equal(stored, got[sop]) {
				t.Errorf("%s: data set stored by STOW-RS (%d bytes) differs from the file (and Orthanc's copy)", sop, len(stored))
			}
			if row.StudyInstanceUID != D.uid {
				t.Errorf("%s: indexed in study %s, want %s", sop, row.StudyInstanceUID, D.uid)
			}
		}
		// And pacsd's search finds the study and its instances. The
		// study's instance count is not read from Orthanc's answer: Orthanc
		// 1.10 with plugin 1.7 shows every IS attribute without its value,
		// as JSON numbers are what PS3.18 F.2.3 makes of IS, from its own
		// DICOMweb server as much as from pacsd.
		found := orthancQIDO(t, orthanc, "/studies", map[string]string{"StudyInstanceUID": D.uid})
		if uids := column(found, "0020000D"); !slices.Equal(uids, []string{D.uid}) {
			t.Errorf("search for D after STOW-RS: %v", uids)
		}
		found = orthancQIDO(t, orthanc, "/studies/"+D.uid+"/instances", nil)
		if uids := column(found, "00080018"); !slices.Equal(sorted(uids...), sorted(flat(D.sops)...)) {
			t.Errorf("instances of D after STOW-RS: %v, want %v", uids, flat(D.sops))
		}
	})
}

// orthancQIDO has Orthanc's DICOMweb client search pacsd and returns the
// matches as Orthanc gives them: attributes by tag, each with its value
// as text.
func orthancQIDO(t *testing.T, o *testpeer.Orthanc, uri string, args map[string]string) []map[string]string {
	t.Helper()
	body := map[string]any{"Uri": uri}
	if args != nil {
		body["Arguments"] = args
	}
	var res []map[string]struct{ Value any }
	if err := o.PostJSON(t.Context(), "/dicom-web/servers/pacsd/qido", body, &res); err != nil {
		t.Fatal(err)
	}
	out := make([]map[string]string, len(res))
	for i, m := range res {
		out[i] = map[string]string{}
		for tag, e := range m {
			if e.Value != nil {
				out[i][tag] = fmt.Sprint(e.Value)
			}
		}
	}
	return out
}

// column returns the values of one attribute in every match, in order.
func column(matches []map[string]string, tag string) []string {
	var out []string
	for _, m := range matches {
		out = append(out, m[tag])
	}
	return out
}

// orthancDatasets returns the data sets of every instance Orthanc holds, by
// SOP Instance UID.
func orthancDatasets(t *testing.T, o *testpeer.Orthanc) map[string][]byte {
	t.Helper()
	var ids []string
	if err := o.GetJSON(t.Context(), "/instances", &ids); err != nil {
		t.Fatal(err)
	}
	return orthancFiles(t, o, ids)
}

// orthancStudyDatasets returns the data sets of the instances of a study
// that Orthanc holds, by SOP Instance UID.
func orthancStudyDatasets(t *testing.T, o *testpeer.Orthanc, study string) map[string][]byte {
	t.Helper()
	var ids []string
	if err := o.PostJSON(t.Context(), "/tools/find", map[string]any{"Level": "Instance", "Query": map[string]string{"StudyInstanceUID": study}}, &ids); err != nil {
		t.Fatal(err)
	}
	return orthancFiles(t, o, ids)
}

func orthancFiles(t *testing.T, o *testpeer.Orthanc, ids []string) map[string][]byte {
	t.Helper()
	out := map[string][]byte{}
	for _, id := range ids {
		b, err := orthancFile(t.Context(), o, id)
		if err != nil {
			t.Fatal(err)
		}
		m, n, err := dicom.ReadFileMeta(bufioReader(b))
		if err != nil {
			t.Fatalf("Orthanc's instance %s: %v", id, err)
		}
		out[m.MediaStorageSOPInstanceUID] = b[n:]
	}
	return out
}

// orthancUpload stores a file in Orthanc through its REST API, which keeps
// the file as it is, and returns the Orthanc ID of its study.
func orthancUpload(t *testing.T, o *testpeer.Orthanc, path string) string {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	req, err := http.NewRequestWithContext(t.Context(), http.MethodPost, o.URL+"/instances", bytes.NewReader(b))
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Content-Type", "application/dicom")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var res struct{ ParentStudy, Status string }
	if err := json.NewDecoder(resp.Body).Decode(&res); err != nil || resp.StatusCode != http.StatusOK || res.Status != "Success" {
		msg, _ := io.ReadAll(resp.Body)
		t.Fatalf("upload %s to Orthanc: %s %+v %v %s", path, resp.Status, res, err, msg)
	}
	return res.ParentStudy
}

// describeSOPs names each instance by its place in the corpus, for
// messages: "A/1/2" is the second instance of the first series of A.
func describeSOPs(studies []*qrStudy, sops []string) []string {
	out := make([]string, len(sops))
	for i, sop := range sops {
		out[i] = sop + " (not in the corpus)"
		for _, st := range studies {
			for j, series := range st.sops {
				if k := slices.Index(series, sop); k >= 0 {
					out[i] = fmt.Sprintf("%s (%s/%d/%d)", sop, st.name, j+1, k+1)
				}
			}
		}
	}
	return out
}

func mapKeys[V any](m map[string]V) []string {
	out := make([]string, 0, len(m))
	for k := range m {
		out = append(out, k)
	}
	return out
}
