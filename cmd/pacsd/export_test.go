package main

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/pacsd/pacsd/deid"
	"github.com/pacsd/pacsd/dicom/tag"
	"github.com/pacsd/pacsd/internal/dcmgen"
	"github.com/pacsd/pacsd/internal/testpeer"
)

// TestExportDeidentified exports a patient's two studies de-identified:
// the same patient and the same UIDs get the same pseudonyms in every
// export, the index keeps the mapping for re-identification, and an
// instance with burned-in annotation is left out and said so.
func TestExportDeidentified(t *testing.T) {
	testpeer.Need(t, "storescu", "dcmdump")
	src := t.TempDir()
	studies, sops := writeDeidCorpus(t, src)
	data := t.TempDir()
	p := startPacsd(t, data)
	files, _ := filepath.Glob(filepath.Join(src, "*.dcm"))
	if out, err := p.dcmtk("storescu", files...); err != nil {
		t.Fatalf("storescu: %v\n%s", err, out)
	}
	p.stop()

	key := writeDeidKey(t)
	export := func(study, dir string, deidentify bool) (string, error) {
		args := []string{"export", "--data", data, "--study", study, "--to", dir}
		if deidentify {
			args = append(args, "--deidentify", "basic", "--deid-key", key)
		}
		var stdout, stderr bytes.Buffer
		err := run(t.Context(), args, func(string) string { return "" }, &stdout, &stderr)
		return stdout.String() + stderr.String(), err
	}
	dump := func(dir string) []map[uint32]string { return dumpExport(t, dir) }

	plain := t.TempDir()
	if out, err := export(studies[0], plain, false); err != nil {
		t.Fatalf("pacsd export: %v\n%s", err, out)
	}
	if got := dump(plain); len(got) != 2 || got[0][uint32(tag.PatientName)] != "Doe^Jane" || !slices.Contains(sops, got[0][uint32(tag.SOPInstanceUID)]) {
		t.Errorf("plain export: %v", got)
	}

	first, again, second := t.TempDir(), t.TempDir(), t.TempDir()
	for _, e := range []struct{ study, dir string }{{studies[0], first}, {studies[0], again}} {
		if out, err := export(e.study, e.dir, true); err != nil {
			t.Fatalf("pacsd export --deidentify basic: %v\n%s", err, out)
		}
	}
	out, err := export(studies[1], second, true)
	if exitStatus(err) != 1 || !strings.Contains(err.Error(), "burned-in") {
		t.Errorf("export of a study with burned-in annotation: exit status %d, %v, want 1 and a word of it\n%s", exitStatus(err), err, out)
	}
	a, b, c := dump(first), dump(again), dump(second)
	if len(a) != 2 || len(b) != 2 || len(c) != 1 {
		t.Fatalf("de-identified exports hold %d, %d and %d instances, want 2, 2 and 1", len(a), len(b), len(c))
	}
	pseudonym := a[0][uint32(tag.PatientID)]
	for _, d := range slices.Concat(a, b, c) {
		for _, tg := range []tag.Tag{tag.PatientName, tag.PatientID, tag.StudyInstanceUID, tag.SOPInstanceUID, tag.AccessionNumber, tag.StudyDescription} {
			if v := d[uint32(tg)]; v != "" && (strings.Contains(v, "Doe") || strings.Contains(v, "MRN-123") || slices.Contains(studies, v) || slices.Contains(sops, v) || strings.HasPrefix(v, "ACC")) {
				t.Errorf("%v still holds %q", tg, v)
			}
		}
		if d[uint32(tag.PatientID)] != pseudonym || pseudonym == "" {
			t.Errorf("patient ID %q, want the same pseudonym %q in every export", d[uint32(tag.PatientID)], pseudonym)
		}
		if d[uint32(tag.PatientIdentityRemoved)] != "YES" {
			t.Errorf("Patient Identity Removed %q", d[uint32(tag.PatientIdentityRemoved)])
		}
	}
	names := func(ds []map[uint32]string) []string {
		var out []string
		for _, d := range ds {
			out = append(out, d[uint32(tag.SOPInstanceUID)])
		}
		return sorted(out...)
	}
	if !slices.Equal(names(a), names(b)) {
		t.Errorf("two exports of one study: UIDs %v and %v, want the same", names(a), names(b))
	}

	// The index maps each pseudonymous UID back to its original.
	db, err := openIndex(t.Context(), filepath.Join(data, "index.db"))
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	orig, ok, err := db.Original(t.Context(), deid.KindUID, a[0][uint32(tag.StudyInstanceUID)])
	if err != nil || !ok || orig != studies[0] {
		t.Errorf("re-identified study UID: %q, %v, %v; want %s", orig, ok, err, studies[0])
	}
}

// writeDeidCorpus writes two studies of one patient, two instances each,
// the last with burned-in annotation, and returns their UIDs.
func writeDeidCorpus(t *testing.T, dir string) (studies, sops []string) {
	t.Helper()
	patient := dcmgen.Patient{Name: "Doe^Jane", ID: "MRN-123", IssuerOfPatientID: "RXH", BirthDate: "19700101", Sex: "F"}
	studies = []string{dcmgen.UID(), dcmgen.UID()}
	for i, study := range studies {
		for n := 1; n <= 2; n++ {
			in := &dcmgen.Instance{Patient: patient, InstanceNumber: n, Rows: 8, Columns: 8,
				Study:  dcmgen.Study{UID: study, Date: "20240115", Time: "083000", AccessionNumber: fmt.Sprintf("ACC%d", i), Description: "CT Chest for Doe"},
				Series: dcmgen.Series{UID: study + ".1", Modality: "CT", Number: 1}}
			if i == 1 && n == 2 {
				in.Extra = append(in.Extra, dcmgen.Element{Tag: dcmgen.Tag(tag.BurnedInAnnotation), VR: "CS", Value: "YES"})
			}
			f, err := dcmgen.Create(filepath.Join(dir, fmt.Sprintf("%d-%d.dcm", i, n)), in)
			if err != nil {
				t.Fatal(err)
			}
			sops = append(sops, f.SOPInstanceUID)
		}
	}
	return studies, sops
}

func writeDeidKey(t *testing.T) string {
	t.Helper()
	key := filepath.Join(t.TempDir(), "deid.key")
	if err := os.WriteFile(key, []byte(strings.Repeat("0123456789abcdef", 4)), 0o600); err != nil {
		t.Fatal(err)
	}
	return key
}

// dumpExport reads the DICOM files in dir with dcmdump; each must be
// named by its SOP Instance UID.
func dumpExport(t *testing.T, dir string) []map[uint32]string {
	t.Helper()
	files, _ := filepath.Glob(filepath.Join(dir, "*.dcm"))
	var out []map[uint32]string
	for _, f := range files {
		d, err := testpeer.Dump(context.Background(), f)
		if err != nil {
			t.Fatal(err)
		}
		if filepath.Base(f) != d[uint32(tag.SOPInstanceUID)]+".dcm" {
			t.Errorf("%s holds instance %s", filepath.Base(f), d[uint32(tag.SOPInstanceUID)])
		}
		out = append(out, d)
	}
	return out
}

// TestForwardDeidentified forwards to a destination set to de-identify:
// it receives de-identified copies under the same pseudonyms an export
// gives, and not the instance with burned-in annotation.
func TestForwardDeidentified(t *testing.T) {
	testpeer.Need(t, "storescu", "storescp", "dcmdump")
	src := t.TempDir()
	studies, sops := writeDeidCorpus(t, src)
	scp := testpeer.StartStoreSCPT(t, testpeer.StoreSCPOptions{AET: "RESEARCH", Args: []string{"+B"}})
	config := filepath.Join(t.TempDir(), "pacsd.json")
	if err := os.WriteFile(config, []byte(`{"destinations": {"RESEARCH": {"deidentify": "basic"}}}`), 0o600); err != nil {
		t.Fatal(err)
	}
	key := writeDeidKey(t)
	data := t.TempDir()
	p := startPacsd(t, data, "--remote-ae", "RESEARCH="+scp.Addr, "--forward", "RESEARCH", "--config", config, "--deid-key", key)
	files, _ := filepath.Glob(filepath.Join(src, "*.dcm"))
	if out, err := p.dcmtk("storescu", files...); err != nil {
		t.Fatalf("storescu: %v\n%s", err, out)
	}
	waitReceived(t, scp, 3, time.Minute)
	time.Sleep(time.Second) // the fourth, burned in, must not come
	got, err := scp.Files()
	if err != nil {
		t.Fatal(err)
	}
	// An admin finds the original of a pseudonym; the lookup is audited.
	for sop := range got {
		resp, body := request(t, "GET", "http://"+p.httpAddr+"/api/reidentify/uid/"+sop, "", nil)
		var m map[string]string
		if resp.StatusCode != 200 || json.Unmarshal([]byte(body), &m) != nil || !slices.Contains(sops, m["original"]) {
			t.Errorf("GET /api/reidentify/uid/%s: status %d, %s", sop, resp.StatusCode, body)
		}
		break
	}
	if resp, _ := request(t, "GET", "http://"+p.httpAddr+"/api/reidentify/uid/1.2.3", "", nil); resp.StatusCode != 404 {
		t.Errorf("re-identifying an unknown pseudonym: status %d", resp.StatusCode)
	}
	p.stop()
	var audited int
	for _, m := range auditMessages(t, data) {
		if strings.Contains(m, "re-identified uid") {
			audited++
		}
	}
	if audited != 2 {
		t.Errorf("%d re-identifications audited, want 2", audited)
	}
	if len(got) != 3 {
		t.Fatalf("the de-identifying destination received %d instances, want 3 (not the one with burned-in annotation)", len(got))
	}
	for sop, f := range got {
		d, err := testpeer.Dump(context.Background(), f)
		if err != nil {
			t.Fatal(err)
		}
		if slices.Contains(sops, sop) || strings.Contains(d[uint32(tag.PatientName)], "Doe") || d[uint32(tag.PatientID)] == "MRN-123" ||
			slices.Contains(studies, d[uint32(tag.StudyInstanceUID)]) || d[uint32(tag.SOPInstanceUID)] != sop {
			t.Errorf("instance %s received: patient %q %q, study %s", sop, d[uint32(tag.PatientName)], d[uint32(tag.PatientID)], d[uint32(tag.StudyInstanceUID)])
		}
	}
	// An export under the same key names the same pseudonyms.
	dir := t.TempDir()
	var stdout, stderr bytes.Buffer
	if err := run(t.Context(), []string{"export", "--data", data, "--study", studies[0], "--to", dir, "--deidentify", "basic", "--deid-key", key},
		func(string) string { return "" }, &stdout, &stderr); err != nil {
		t.Fatalf("pacsd export: %v\n%s", err, stderr.String())
	}
	for _, d := range dumpExport(t, dir) {
		if _, ok := got[d[uint32(tag.SOPInstanceUID)]]; !ok {
			t.Errorf("exported instance %s was not forwarded under the same UID", d[uint32(tag.SOPInstanceUID)])
		}
	}
}
