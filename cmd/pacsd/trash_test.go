package main

import (
	"bytes"
	"encoding/json"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/pacsd/pacsd/dicom"
	"github.com/pacsd/pacsd/dicom/tag"
	"github.com/pacsd/pacsd/dicom/uid"
	"github.com/pacsd/pacsd/index"
	"github.com/pacsd/pacsd/internal/dcmgen"
	"github.com/pacsd/pacsd/internal/testpeer"
)

// TestDeleteRestorePurge deletes at each level through DICOMweb and the
// command line while pacsd serve runs, checks that QIDO-RS, findscu and
// WADO-RS stop showing what was deleted at once, restores it, purges the
// trash (the objects leave storage, pacsd verify is clean), and applies
// an IOCM rejection note sent by storescu: the instance it names is
// hidden, and refused when sent again. On SQLite and PostgreSQL.
func TestDeleteRestorePurge(t *testing.T) {
	testpeer.Need(t, "storescu", "findscu", "postgres")
	t.Run("SQLite", func(t *testing.T) { testDeleteRestorePurge(t, nil) })
	t.Run("PostgreSQL", func(t *testing.T) {
		pg := testpeer.StartPostgresT(t)
		testDeleteRestorePurge(t, []string{"--index", pg.NewDatabaseT(t)})
	})
}

func testDeleteRestorePurge(t *testing.T, flags []string) {
	data := t.TempDir()
	p := startPacsd(t, data, flags...)
	defer p.stop()
	study := dcmgen.UID()
	dir := t.TempDir()
	var files []dcmgen.File
	for _, name := range []string{"a", "b"} {
		os.Mkdir(filepath.Join(dir, name), 0o755)
		fs, err := dcmgen.WriteSeries(filepath.Join(dir, name), 3, 8<<10, dcmgen.Instance{
			Patient: dcmgen.Patient{Name: "Trash^Tom", ID: "TRASH"}, Study: dcmgen.Study{UID: study}, Series: dcmgen.Series{Modality: "CT"}})
		if err != nil {
			t.Fatal(err)
		}
		files = append(files, fs...)
	}
	if out, err := p.dcmtk("storescu", "+sd", "+r", dir); err != nil {
		t.Fatalf("storescu: %v\n%s", err, out)
	}
	base := "http://" + p.httpAddr + "/dicom-web"
	qido := func(path string) int {
		t.Helper()
		resp, err := http.Get(base + path)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		if resp.StatusCode == http.StatusNoContent {
			return 0
		}
		var found []map[string]any
		if err := json.NewDecoder(resp.Body).Decode(&found); err != nil {
			t.Fatalf("GET %s: %d %v", path, resp.StatusCode, err)
		}
		return len(found)
	}
	instances := func() int { t.Helper(); return qido("/studies/" + study + "/instances") }
	del := func(path string, want int) {
		t.Helper()
		req, _ := http.NewRequest(http.MethodDelete, base+path+"?reason=test", nil)
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != want {
			t.Fatalf("DELETE %s = %d, want %d", path, resp.StatusCode, want)
		}
	}
	env := func(k string) string {
		if k == "USER" {
			return "tester"
		}
		return ""
	}
	pacsd := func(args ...string) (string, error) {
		t.Helper()
		var out bytes.Buffer
		err := run(t.Context(), append(append(args, "--data", data), flags...), env, &out, &out)
		return out.String(), err
	}
	must := func(args ...string) string {
		t.Helper()
		out, err := pacsd(args...)
		if err != nil {
			t.Fatalf("pacsd %v: %v\n%s", args, err, out)
		}
		return out
	}

	if n := instances(); n != 6 {
		t.Fatalf("QIDO found %d instances before deleting, want 6", n)
	}
	one := files[0]
	del("/studies/"+study+"/series/"+one.SeriesInstanceUID+"/instances/"+one.SOPInstanceUID, http.StatusNoContent)
	if n := instances(); n != 5 {
		t.Errorf("QIDO found %d instances after deleting one, want 5", n)
	}
	resp, err := http.Get(base + "/studies/" + study + "/series/" + one.SeriesInstanceUID + "/instances/" + one.SOPInstanceUID)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusNotFound {
		t.Errorf("WADO-RS of a deleted instance = %d, want 404", resp.StatusCode)
	}
	del("/studies/"+study+"/series/"+files[3].SeriesInstanceUID, http.StatusNoContent)
	del("/studies/"+study+"/series/"+files[3].SeriesInstanceUID, http.StatusNotFound)
	found := p.findscu(t, "-S", "QueryRetrieveLevel=STUDY", "StudyInstanceUID="+study, "NumberOfStudyRelatedInstances")
	if got := values(found, tag.NumberOfStudyRelatedInstances); len(got) != 1 || got[0] != "2" {
		t.Errorf("findscu: Number of Study Related Instances = %v, want [2]", got)
	}

	// The command line, on the index serve uses: serve shows it at once.
	if out, err := pacsd("delete", "--study", study); err == nil {
		t.Errorf("delete without --reason succeeded: %s", out)
	}
	if out := must("delete", "--study", study, "--reason", "wrong patient"); !strings.Contains(out, "moved 2 instances") {
		t.Errorf("delete: %s", out)
	}
	if n := qido("/studies?StudyInstanceUID=" + study); n != 0 {
		t.Errorf("QIDO found the deleted study")
	}
	if found := p.findscu(t, "-S", "QueryRetrieveLevel=STUDY", "StudyInstanceUID="+study); len(found) != 0 {
		t.Errorf("findscu found the deleted study: %v", found)
	}
	if out := must("restore", "--study", study); !strings.Contains(out, "restored 6 instances") {
		t.Errorf("restore: %s", out)
	}
	if n := instances(); n != 6 {
		t.Errorf("QIDO found %d instances after restoring, want 6", n)
	}
	// The web interface's way: DELETE, then POST .../restore.
	del("/studies/"+study, http.StatusNoContent)
	restore := func(want int) {
		t.Helper()
		resp, err := http.Post("http://"+p.httpAddr+"/api/studies/"+study+"/restore", "", nil)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != want {
			t.Errorf("POST /api/studies/{study}/restore = %d, want %d", resp.StatusCode, want)
		}
	}
	restore(http.StatusNoContent)
	if n := instances(); n != 6 {
		t.Errorf("QIDO found %d instances after restoring through the API, want 6", n)
	}
	restore(http.StatusNotFound)

	// An IOCM rejection note names one instance: hidden at once, and
	// refused when sent again.
	rejected := files[1]
	note := writeRejectionNote(t, study, rejected)
	if out, err := p.dcmtk("storescu", "-R", note); err != nil {
		t.Fatalf("storescu of the rejection note: %v\n%s", err, out)
	}
	if n := qido("/studies/" + study + "/series/" + rejected.SeriesInstanceUID + "/instances?SOPInstanceUID=" + rejected.SOPInstanceUID); n != 0 {
		t.Errorf("QIDO found the rejected instance")
	}
	out, _ := p.dcmtk("storescu", "-v", rejected.Path)
	// 0x0124, Refused: Not Authorized (PS3.7 C.5), which dcmtk prints
	// without a name.
	if !strings.Contains(out, "Status: 0x124") {
		t.Errorf("storescu of a rejected instance was not refused:\n%s", out)
	}
	b, err := os.ReadFile(rejected.Path)
	if err != nil {
		t.Fatal(err)
	}
	if status, body := stow(t, p, b); status != http.StatusConflict || failureReason(body) != "292" {
		t.Errorf("STOW-RS of a rejected instance = %d, FailureReason %q; want 409 and 292 (0x0124)\n%s", status, failureReason(body), body)
	}
	if !strings.Contains(p.log(), "instance rejected by a rejection note") {
		t.Errorf("pacsd did not log the refusal")
	}

	// Purge: the deleted study's objects leave storage; the hidden one
	// stays; verify is clean.
	must("delete", "--study", study, "--reason", "retention test")
	if out := must("purge"); !strings.Contains(out, "purged 6 objects") {
		t.Errorf("purge: %s", out)
	}
	objects := 0
	filepath.WalkDir(filepath.Join(data, "objects"), func(path string, d os.DirEntry, err error) error {
		if err == nil && !d.IsDir() && strings.Contains(path, study) {
			objects++
		}
		return nil
	})
	if objects != 1 {
		t.Errorf("%d objects of the study left in storage after the purge, want 1 (the hidden one)", objects)
	}
	if out, err := pacsd("verify"); err != nil {
		t.Errorf("verify after purge: %v\n%s", err, out)
	}

	testRetention(t, p, pacsd)

	resp, err = http.Get("http://" + p.httpAddr + "/api/deletions?study=" + study)
	if err != nil {
		t.Fatal(err)
	}
	var events []index.Event
	json.NewDecoder(resp.Body).Decode(&events)
	resp.Body.Close()
	var actions []string
	for _, e := range events {
		actions = append(actions, e.Action)
	}
	want := "delete delete delete restore delete restore reject delete"
	if got := strings.Join(actions, " "); got != want {
		t.Errorf("removal log of the study: %s, want %s", got, want)
	}
	if len(events) > 2 && (events[2].Principal != "tester" || events[2].Reason != "wrong patient" || events[2].Instances != 2 ||
		events[2].PatientID != "TRASH") {
		t.Errorf("CLI deletion logged as %+v", events[2])
	}

	// serve writes every entry of the log to the audit trail, those of
	// the commands run beside it too.
	deadline := time.Now().Add(30 * time.Second)
	for {
		var page struct {
			Records []struct {
				Event, User, Patient string
			} `json:"records"`
		}
		resp, err := http.Get("http://" + p.httpAddr + "/api/audit?study=" + study)
		if err != nil {
			t.Fatal(err)
		}
		json.NewDecoder(resp.Body).Decode(&page)
		resp.Body.Close()
		byUser, studiesDeleted := map[string]int{}, 0
		for _, r := range page.Records {
			if r.Event == "DICOM Instances Transferred" {
				continue // the stores of the study, audited too
			}
			byUser[r.User]++
			if r.Event == "DICOM Study Deleted" && r.Patient == "TRASH" {
				studiesDeleted++
			}
		}
		// Two deletions by DICOMweb (anonymous: DICOM Instances
		// Accessed, Delete), then a deletion of the study (DICOM Study
		// Deleted) and its restore through the API (anonymous too),
		// and the rejection note (DCMTK); two deletions of the study
		// (DICOM Study Deleted) and a restore by the command line
		// (tester).
		if byUser["tester"] == 3 && byUser["anonymous"] == 4 && byUser["DCMTK"] == 1 && studiesDeleted == 3 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("audit records of deletions by user: %v (%+v)", byUser, page.Records)
		}
		time.Sleep(200 * time.Millisecond)
	}
}

// writeRejectionNote writes an IHE IOCM rejection note (Key Object
// Selection, 113001 Rejected for Quality Reasons) naming one instance.
func writeRejectionNote(t *testing.T, study string, f dcmgen.File) string {
	t.Helper()
	sop := dcmgen.UID()
	el := func(tg tag.Tag, vr string, v ...string) dicom.Element {
		return dicom.Element{Tag: tg, VR: vr, Values: v}
	}
	sq := func(tg tag.Tag, items ...*dicom.Dataset) dicom.Element {
		return dicom.Element{Tag: tg, VR: "SQ", Items: items}
	}
	item := func(els ...dicom.Element) *dicom.Dataset { return &dicom.Dataset{Elements: els} }
	ds := &dicom.Dataset{Elements: []dicom.Element{
		el(tag.SOPClassUID, "UI", uid.KeyObjectSelectionDocumentStorage),
		el(tag.SOPInstanceUID, "UI", sop),
		el(tag.Modality, "CS", "KO"),
		el(tag.PatientName, "PN", "Trash^Tom"),
		el(tag.PatientID, "LO", "TRASH"),
		el(tag.StudyInstanceUID, "UI", study),
		el(tag.SeriesInstanceUID, "UI", dcmgen.UID()),
		el(tag.ValueType, "CS", "CONTAINER"),
		sq(tag.ConceptNameCodeSequence, item(el(tag.CodeValue, "SH", "113001"), el(tag.CodingSchemeDesignator, "SH", "DCM"),
			el(tag.CodeMeaning, "LO", "Rejected for Quality Reasons"))),
		sq(tag.CurrentRequestedProcedureEvidenceSequence, item(
			el(tag.StudyInstanceUID, "UI", study),
			sq(tag.ReferencedSeriesSequence, item(
				el(tag.SeriesInstanceUID, "UI", f.SeriesInstanceUID),
				sq(tag.ReferencedSOPSequence, item(el(tag.ReferencedSOPClassUID, "UI", f.SOPClassUID), el(tag.ReferencedSOPInstanceUID, "UI", f.SOPInstanceUID))),
			)),
		)),
	}}
	ts, _ := uid.LookupTransferSyntax(uid.ExplicitVRLittleEndian)
	var body bytes.Buffer
	if err := ds.Encode(&body, ts, dicom.EncodeOptions{}); err != nil {
		t.Fatal(err)
	}
	b := dicom.AppendFileMeta(nil, dicom.FileMeta{MediaStorageSOPClassUID: uid.KeyObjectSelectionDocumentStorage, MediaStorageSOPInstanceUID: sop,
		TransferSyntaxUID: ts.UID, ImplementationClassUID: dicom.ImplementationClassUID})
	path := filepath.Join(t.TempDir(), "rejection.dcm")
	if err := os.WriteFile(path, append(b, body.Bytes()...), 0o644); err != nil {
		t.Fatal(err)
	}
	return path
}

// testRetention stores a mammogram of 2000 and a CT of 2000, then runs
// pacsd retention with the rule "MG for 8 years" as of 2005 (nothing
// due) and 2010: the mammogram is listed, and moved to the trash by
// --apply; the CT, which no rule covers, stays. The patient's birth date
// is known: an age rule keeps a study whose patient's age it cannot
// tell.
func testRetention(t *testing.T, p *instance, pacsd func(args ...string) (string, error)) {
	t.Helper()
	dir := t.TempDir()
	var studies []string
	for _, modality := range []string{"MG", "CT"} {
		fs, err := dcmgen.WriteSeries(dir, 1, 4<<10, dcmgen.Instance{Patient: dcmgen.Patient{Name: "Old^Olga", ID: "OLD", BirthDate: "19500101"},
			Study: dcmgen.Study{Date: "20000101"}, Series: dcmgen.Series{Modality: modality}})
		if err != nil {
			t.Fatal(err)
		}
		studies = append(studies, fs[0].StudyInstanceUID)
	}
	if out, err := p.dcmtk("storescu", "+sd", dir); err != nil {
		t.Fatalf("storescu: %v\n%s", err, out)
	}
	config := filepath.Join(t.TempDir(), "pacsd.json")
	os.WriteFile(config, []byte(`{"retention": [{"when": {"Modality": "MG"}, "keep": "8y", "from": "StudyDate"},
 {"when": {"age_at_study_under": "18y"}, "keep_until_age": "25y"}]}`), 0o644)
	retention := func(args ...string) string {
		t.Helper()
		out, err := pacsd(append([]string{"retention", "--config", config}, args...)...)
		if err != nil {
			t.Fatalf("pacsd retention %v: %v\n%s", args, err, out)
		}
		return out
	}
	if out := retention("--dry-run", "--now", "20050101"); !strings.Contains(out, "0 studies expired") {
		t.Errorf("retention as of 2005: %s", out)
	}
	if out := retention("--dry-run", "--now", "20100101"); !strings.Contains(out, studies[0]) || strings.Contains(out, studies[1]) ||
		!strings.Contains(out, "1 studies expired (dry run") {
		t.Errorf("retention --dry-run as of 2010: %s", out)
	}
	found := func(study string) bool {
		resp, err := http.Get("http://" + p.httpAddr + "/dicom-web/studies?StudyInstanceUID=" + study)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		return resp.StatusCode == http.StatusOK
	}
	if !found(studies[0]) {
		t.Fatalf("the dry run deleted the mammogram")
	}
	if out := retention("--apply", "--now", "20100101"); !strings.Contains(out, "1 instances moved to the trash") {
		t.Errorf("retention --apply: %s", out)
	}
	if found(studies[0]) || !found(studies[1]) {
		t.Errorf("after retention --apply: mammogram found %v, CT found %v; want false, true", found(studies[0]), found(studies[1]))
	}
}

// TestDeletedNotForwarded queues a series for a destination with a
// delay, deletes one of its instances before the delay ends, and checks
// that the destination receives the others only.
func TestDeletedNotForwarded(t *testing.T) {
	testpeer.Need(t, "storescu", "storescp")
	scp := testpeer.StartStoreSCPT(t, testpeer.StoreSCPOptions{AET: "DEST"})
	config := filepath.Join(t.TempDir(), "pacsd.json")
	os.WriteFile(config, []byte(`{"routes": [{"name": "later", "to": ["DEST"], "delay": "3s"}]}`), 0o644)
	p := startPacsd(t, t.TempDir(), "--remote-ae", "DEST="+scp.Addr, "--config", config)
	defer p.stop()
	dir, files := writeSeriesIn(t, 3, 8<<10, "FORWARDED")
	if out, err := p.dcmtk("storescu", "+sd", dir); err != nil {
		t.Fatalf("storescu: %v\n%s", err, out)
	}
	gone := files[0]
	req, _ := http.NewRequest(http.MethodDelete, "http://"+p.httpAddr+"/dicom-web/studies/"+gone.StudyInstanceUID+"/series/"+
		gone.SeriesInstanceUID+"/instances/"+gone.SOPInstanceUID, nil)
	resp, err := http.DefaultClient.Do(req)
	if err != nil || resp.StatusCode != http.StatusNoContent {
		t.Fatalf("DELETE: %v %v", resp, err)
	}
	resp.Body.Close()
	waitReceived(t, scp, 2, time.Minute)
	time.Sleep(time.Second)
	got, err := scp.Files()
	if err != nil {
		t.Fatal(err)
	}
	if _, sent := got[gone.SOPInstanceUID]; sent || len(got) != 2 {
		t.Errorf("the destination received %d instances, the deleted one %v", len(got), sent)
	}
}
