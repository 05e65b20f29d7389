package main

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"mime"
	"mime/multipart"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/pacsd/pacsd/deid"
	"github.com/pacsd/pacsd/dicom/tag"
	"github.com/pacsd/pacsd/internal/testpeer"
)

// TestResearchWADO serves a principal with the research scope alone over
// DICOMweb: searches answer de-identified matches under the pseudonyms
// pacsd export gives, the same on every request; retrievals by those
// pseudonyms answer the same de-identified copies an export writes,
// without the instance with burned-in annotation; the original UIDs name
// nothing; per-issuer restrictions hold; and the reads are audited under
// the research principal.
func TestResearchWADO(t *testing.T) {
	testpeer.Need(t, "storescu", "dcmdump")
	src := t.TempDir()
	studies, sops := writeDeidCorpus(t, src)
	tokens := filepath.Join(t.TempDir(), "tokens")
	token := func(name, scopes, issuers string) string {
		args := []string{"token", "create", name, "--scopes", scopes, "--token-file", tokens}
		if issuers != "" {
			args = append(args, "--issuers", issuers)
		}
		var stdout, stderr bytes.Buffer
		if err := run(t.Context(), args, func(string) string { return "" }, &stdout, &stderr); err != nil {
			t.Fatalf("pacsd token create: %v\n%s", err, stderr.String())
		}
		return strings.TrimSpace(stdout.String())
	}
	research, otherTrust, reader := token("researcher", "research", ""), token("other-researcher", "research", "OTHER"), token("reader", "read", "")
	key := writeDeidKey(t)
	keyBytes, err := os.ReadFile(key)
	if err != nil {
		t.Fatal(err)
	}
	d, err := deid.New(deid.Options{Key: keyBytes})
	if err != nil {
		t.Fatal(err)
	}
	data := t.TempDir()
	p := startPacsd(t, data, "--http-auth", "token", "--token-file", tokens, "--deid-key", key)
	files, _ := filepath.Glob(filepath.Join(src, "*.dcm"))
	if out, err := p.dcmtk("storescu", files...); err != nil {
		t.Fatalf("storescu: %v\n%s", err, out)
	}
	base := "http://" + p.httpAddr + "/dicom-web"
	identifying := append([]string{"Doe", "MRN-123", "ACC0", "ACC1"}, append(slices.Clone(studies), sops...)...)
	leaks := func(body string) []string {
		var found []string
		for _, s := range identifying {
			if strings.Contains(body, s) {
				found = append(found, s)
			}
		}
		return found
	}

	// Searches: pseudonymous UIDs under the project key, the same twice.
	resp, first := request(t, "GET", base+"/studies?includefield=all", research, nil)
	_, again := request(t, "GET", base+"/studies?includefield=all", research, nil)
	var matches []map[string]struct{ Value []any }
	if resp.StatusCode != 200 || json.Unmarshal([]byte(first), &matches) != nil || len(matches) != 2 {
		t.Fatalf("QIDO-RS of studies by the research principal: status %d, %s", resp.StatusCode, first)
	}
	if first != again {
		t.Errorf("two searches answer differently:\n%s\n%s", first, again)
	}
	if l := leaks(first); len(l) > 0 {
		t.Errorf("de-identified search answers %v:\n%s", l, first)
	}
	for _, st := range studies {
		if !strings.Contains(first, d.UID(st)) {
			t.Errorf("search lacks study %s under its pseudonym %s", st, d.UID(st))
		}
	}
	pseudo0, pseudo1 := d.UID(studies[0]), d.UID(studies[1])
	if resp, body := request(t, "GET", base+"/studies/"+pseudo1+"/instances", research, nil); resp.StatusCode != 200 || strings.Count(body, `"00080018"`) != 1 || len(leaks(body)) > 0 {
		t.Errorf("instances of the study with burned-in annotation: status %d, %s; want the one without", resp.StatusCode, body)
	}
	if resp, body := request(t, "GET", base+"/studies?StudyInstanceUID="+pseudo0, research, nil); resp.StatusCode != 200 || !strings.Contains(body, pseudo0) {
		t.Errorf("search by a pseudonymous UID: status %d, %s", resp.StatusCode, body)
	}
	if resp, body := request(t, "GET", base+"/studies?PatientName=Doe*", research, nil); resp.StatusCode != 400 {
		t.Errorf("search on a name by the research principal: status %d, %s; want 400", resp.StatusCode, body)
	}
	if resp, body := request(t, "GET", base+"/studies", otherTrust, nil); resp.StatusCode != 204 {
		t.Errorf("search by a research principal of another issuer: status %d, %s; want 204", resp.StatusCode, body)
	}

	// The original UIDs name nothing.
	for _, path := range []string{"/studies/" + studies[0] + "/metadata", "/studies/" + studies[0] + "/series/" + studies[0] + ".1/instances/" + sops[0] + "/frames/1"} {
		if resp, body := request(t, "GET", base+path, research, nil); resp.StatusCode != 404 {
			t.Errorf("GET %s by its original UIDs: status %d, %s; want 404", path, resp.StatusCode, body)
		}
	}
	if resp, _ := request(t, "GET", base+"/studies?StudyInstanceUID="+studies[0], research, nil); resp.StatusCode != 204 {
		t.Errorf("search by an original UID: status %d, want 204", resp.StatusCode)
	}

	// Metadata, frames, rendered by the pseudonymous UIDs.
	resp, body := request(t, "GET", base+"/studies/"+pseudo0+"/metadata", research, nil)
	if resp.StatusCode != 200 || strings.Count(body, `"00080018"`) != 2 || len(leaks(body)) > 0 || !strings.Contains(body, d.UID(sops[0])) {
		t.Errorf("metadata: status %d, %s", resp.StatusCode, body)
	}
	instance := base + "/studies/" + pseudo0 + "/series/" + d.UID(studies[0]+".1") + "/instances/" + d.UID(sops[0])
	if resp, _ := request(t, "GET", instance+"/frames/1", research, map[string]string{"Accept": "multipart/related; type=application/octet-stream"}); resp.StatusCode != 200 {
		t.Errorf("frames: status %d", resp.StatusCode)
	}
	if resp, _ := request(t, "GET", instance+"/rendered", research, map[string]string{"Accept": "image/png"}); resp.StatusCode != 200 {
		t.Errorf("rendered: status %d", resp.StatusCode)
	}
	burned := base + "/studies/" + pseudo1 + "/series/" + d.UID(studies[1]+".1") + "/instances/" + d.UID(sops[3])
	if resp, _ := request(t, "GET", burned+"/frames/1", research, nil); resp.StatusCode != 404 {
		t.Errorf("frames of the instance with burned-in annotation: status %d, want 404", resp.StatusCode)
	}
	for _, path := range []string{instance + "/bulkdata/132/10", base + "/studies/" + pseudo0 + "/thumbnail", "http://" + p.httpAddr + "/api/studies"} {
		if resp, _ := request(t, "GET", path, research, nil); resp.StatusCode != 403 {
			t.Errorf("GET %s by the research principal: status %d, want 403", path, resp.StatusCode)
		}
	}

	// Objects: the same de-identified copies as pacsd export writes.
	wado := t.TempDir()
	for _, st := range []string{pseudo0, pseudo1} {
		retrieveTo(t, base+"/studies/"+st, research, wado)
	}
	// pydicom reads each copy: its File Meta Information names the
	// pseudonymous instance, and the attributes say it is de-identified.
	py := `import glob, json, sys
import pydicom
out = []
for f in sorted(glob.glob(sys.argv[1] + "/*.dcm")):
    ds = pydicom.dcmread(f)
    out.append({"meta": ds.file_meta.MediaStorageSOPInstanceUID, "sop": ds.SOPInstanceUID, "removed": ds.PatientIdentityRemoved,
                "name": str(ds.get("PatientName", "")), "id": ds.PatientID, "birth": ds.get("PatientBirthDate", ""), "study": ds.StudyInstanceUID})
print(json.dumps(out))`
	pyOut, pyErr, err := testpeer.Run(t.Context(), testpeer.PydicomPython(t), "-c", py, wado)
	var read []map[string]string
	if err != nil || json.Unmarshal([]byte(pyOut), &read) != nil || len(read) != 3 {
		t.Fatalf("pydicom: %v\n%s%s", err, pyOut, pyErr)
	}
	for _, r := range read {
		if r["meta"] != r["sop"] || r["removed"] != "YES" || r["name"] != "" || !strings.HasPrefix(r["id"], "ANON-") || r["birth"] == "19700101" ||
			(r["study"] != pseudo0 && r["study"] != pseudo1) || !strings.HasPrefix(r["sop"], "2.25.") || slices.Contains(sops, r["sop"]) {
			t.Errorf("pydicom reads a WADO-RS copy as %v", r)
		}
	}
	if resp, _ := request(t, "GET", base+"/studies/"+studies[0], reader, map[string]string{"Accept": "multipart/related; type=application/dicom"}); resp.StatusCode != 200 {
		t.Errorf("a reader's retrieve of the original: status %d", resp.StatusCode)
	}
	p.stop()
	exported := t.TempDir()
	for _, st := range studies {
		var stdout, stderr bytes.Buffer
		run(t.Context(), []string{"export", "--data", data, "--study", st, "--to", exported, "--deidentify", "basic", "--deid-key", key}, func(string) string { return "" }, &stdout, &stderr)
	}
	got, want := dumpExport(t, wado), dumpExport(t, exported)
	if len(got) != 3 || len(want) != 3 {
		t.Fatalf("WADO-RS gave %d de-identified instances, export %d; want 3 each", len(got), len(want))
	}
	bySOP := map[string]map[uint32]string{}
	for _, w := range want {
		bySOP[w[uint32(tag.SOPInstanceUID)]] = w
	}
	for _, g := range got {
		w := bySOP[g[uint32(tag.SOPInstanceUID)]]
		if w == nil {
			t.Errorf("WADO-RS instance %s is not one the export wrote", g[uint32(tag.SOPInstanceUID)])
			continue
		}
		for k, v := range w {
			if k>>16 != 2 && g[k] != v {
				t.Errorf("instance %s: (%04X,%04X) %q by WADO-RS, %q by export", g[uint32(tag.SOPInstanceUID)], k>>16, k&0xffff, g[k], v)
			}
		}
		for k, v := range g {
			if _, ok := w[k]; !ok && k>>16 != 2 {
				t.Errorf("instance %s: (%04X,%04X) %q by WADO-RS only", g[uint32(tag.SOPInstanceUID)], k>>16, k&0xffff, v)
			}
		}
	}

	// The audit trail names the research principal and the study read.
	var audited bool
	for _, m := range auditMessages(t, data) {
		if strings.Contains(m, `csd-code="110104"`) && strings.Contains(m, `UserID="researcher"`) && strings.Contains(m, studies[0]) {
			audited = true
		}
	}
	if !audited {
		t.Error("no audit message of the research principal's retrieve")
	}
}

// retrieveTo retrieves a study by WADO-RS, as stored, into dir, one file
// per part.
func retrieveTo(t *testing.T, url, token, dir string) {
	t.Helper()
	req, _ := http.NewRequestWithContext(t.Context(), "GET", url, nil)
	req.Header.Set("Accept", `multipart/related; type="application/dicom"; transfer-syntax=*`)
	req.Header.Set("Authorization", "Bearer "+token)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	_, params, err := mime.ParseMediaType(resp.Header.Get("Content-Type"))
	if resp.StatusCode != 200 || err != nil {
		b, _ := io.ReadAll(resp.Body)
		t.Fatalf("GET %s: status %d, %s", url, resp.StatusCode, b)
	}
	mr := multipart.NewReader(resp.Body, params["boundary"])
	for {
		part, err := mr.NextPart()
		if err == io.EOF {
			return
		}
		if err != nil {
			t.Fatalf("GET %s: %v", url, err)
		}
		f, err := os.CreateTemp(dir, "part-*")
		if err != nil {
			t.Fatal(err)
		}
		if _, err := io.Copy(f, part); err != nil {
			t.Fatal(err)
		}
		f.Close()
		dump, err := testpeer.Dump(t.Context(), f.Name())
		if err != nil {
			t.Fatalf("part of %s: %v", url, err)
		}
		os.Rename(f.Name(), filepath.Join(dir, dump[uint32(tag.SOPInstanceUID)]+".dcm"))
	}
}

// TestRouteDeidentified sends by a route that says "deidentify": "basic"
// to a remote AE (storescp) and to a DICOMweb destination (a second
// pacsd, by STOW-RS): both receive the same de-identified copies, under
// the pseudonyms an export gives, and neither the instance with burned-in
// annotation; a route sending the originals to the same destination is
// refused at start.
func TestRouteDeidentified(t *testing.T) {
	testpeer.Need(t, "storescu", "storescp", "dcmdump")
	src := t.TempDir()
	studies, sops := writeDeidCorpus(t, src)
	scp := testpeer.StartStoreSCPT(t, testpeer.StoreSCPOptions{AET: "RESEARCH", Args: []string{"+B"}})
	peer := startPacsd(t, t.TempDir())
	key := writeDeidKey(t)
	keyBytes, _ := os.ReadFile(key)
	d, err := deid.New(deid.Options{Key: keyBytes})
	if err != nil {
		t.Fatal(err)
	}
	config := filepath.Join(t.TempDir(), "pacsd.json")
	routes := `{"routes": [{"name": "research", "when": {"Modality": "CT"}, "to": ["RESEARCH", "RESEARCH_WEB"], "deidentify": "basic"}]}`
	if err := os.WriteFile(config, []byte(routes), 0o600); err != nil {
		t.Fatal(err)
	}
	flags := []string{"--remote-ae", "RESEARCH=" + scp.Addr, "--remote-web", "RESEARCH_WEB=http://" + peer.httpAddr + "/dicom-web", "--config", config, "--deid-key", key}

	// The same destination de-identified by one route and not by
	// another is refused.
	mixed := filepath.Join(t.TempDir(), "mixed.json")
	os.WriteFile(mixed, []byte(`{"routes": [{"name": "research", "to": ["RESEARCH"], "deidentify": "basic"}, {"name": "all", "to": ["RESEARCH"]}]}`), 0o600)
	var stdout, stderr bytes.Buffer
	err = run(t.Context(), []string{"serve", "--data", t.TempDir(), "--remote-ae", "RESEARCH=" + scp.Addr, "--config", mixed, "--deid-key", key, "--dimse-addr", "127.0.0.1:0", "--http-addr", "127.0.0.1:0"},
		func(string) string { return "" }, &stdout, &stderr)
	if err == nil || !strings.Contains(err.Error(), "destination of its own") {
		t.Errorf("serve with a destination de-identified by one route and not another: %v", err)
	}

	data := t.TempDir()
	p := startPacsd(t, data, flags...)
	files, _ := filepath.Glob(filepath.Join(src, "*.dcm"))
	if out, err := p.dcmtk("storescu", files...); err != nil {
		t.Fatalf("storescu: %v\n%s", err, out)
	}
	waitReceived(t, scp, 3, time.Minute)
	var web []map[string]struct{ Value []any }
	for deadline := time.Now().Add(time.Minute); time.Now().Before(deadline); time.Sleep(200 * time.Millisecond) {
		_, body := request(t, "GET", "http://"+peer.httpAddr+"/dicom-web/instances?includefield=PatientName", "", nil)
		if json.Unmarshal([]byte(body), &web) == nil && len(web) >= 3 {
			break
		}
	}
	time.Sleep(time.Second) // the fourth, burned in, must not come
	got, err := scp.Files()
	if err != nil {
		t.Fatal(err)
	}
	_, body := request(t, "GET", "http://"+peer.httpAddr+"/dicom-web/instances?includefield=PatientName", "", nil)
	if err := json.Unmarshal([]byte(body), &web); err != nil || len(web) != 3 || len(got) != 3 {
		t.Fatalf("the storescp received %d instances, the DICOMweb destination %d (%v); want 3 each", len(got), len(web), err)
	}
	for _, m := range web {
		sop := fmt.Sprint(m["00080018"].Value...)
		if _, ok := got[sop]; !ok || slices.Contains(sops, sop) {
			t.Errorf("the DICOMweb destination holds %s, which the storescp did not receive under that UID", sop)
		}
		if study := fmt.Sprint(m["0020000D"].Value...); study != d.UID(studies[0]) && study != d.UID(studies[1]) {
			t.Errorf("the DICOMweb destination holds study %s, not a pseudonym of the project key", study)
		}
		if strings.Contains(body, "Doe") || strings.Contains(body, "MRN-123") {
			t.Errorf("the DICOMweb destination holds identifying data: %s", body)
		}
	}
	for sop, f := range got {
		dump, err := testpeer.Dump(t.Context(), f)
		if err != nil {
			t.Fatal(err)
		}
		if dump[uint32(tag.PatientIdentityRemoved)] != "YES" || strings.Contains(dump[uint32(tag.PatientName)], "Doe") || dump[uint32(tag.SOPInstanceUID)] != sop {
			t.Errorf("storescp received %s: %v", sop, dump)
		}
	}
}

// TestExportAudited runs pacsd export while pacsd serve runs: each export,
// plain or de-identified, reaches the audit trail as a transfer to its
// directory under the user who ran it, which pacsd audit --study shows,
// and the chain stays intact.
func TestExportAudited(t *testing.T) {
	testpeer.Need(t, "storescu")
	src := t.TempDir()
	studies, _ := writeDeidCorpus(t, src)
	data := t.TempDir()
	key := writeDeidKey(t)
	p := startPacsd(t, data)
	files, _ := filepath.Glob(filepath.Join(src, "*.dcm"))
	if out, err := p.dcmtk("storescu", files...); err != nil {
		t.Fatalf("storescu: %v\n%s", err, out)
	}
	plain, deidentified := t.TempDir(), t.TempDir()
	for _, args := range [][]string{
		{"--to", plain},
		{"--to", deidentified, "--deidentify", "basic", "--deid-key", key},
	} {
		var stdout, stderr bytes.Buffer
		getenv := func(k string) string { return map[string]string{"USER": "alice"}[k] }
		if err := run(t.Context(), append([]string{"export", "--data", data, "--study", studies[0]}, args...), getenv, &stdout, &stderr); err != nil {
			t.Fatalf("pacsd export %v: %v\n%s", args, err, stderr.String())
		}
	}
	var out string
	for deadline := time.Now().Add(30 * time.Second); time.Now().Before(deadline); time.Sleep(200 * time.Millisecond) {
		var err error
		if out, err = pacsdAudit(t, "--data", data, "--study", studies[0], "--user", "alice"); err == nil && strings.Count(out, "\n") >= 3 {
			break
		}
	}
	if strings.Count(out, "alice") < 2 || !strings.Contains(out, plain) || !strings.Contains(out, deidentified) {
		t.Errorf("pacsd audit --study %s --user alice while serving: want the two exports\n%s", studies[0], out)
	}
	if out, err := pacsdAudit(t, "verify", "--data", data); err != nil || !strings.Contains(out, "chain intact") {
		t.Errorf("pacsd audit verify: %v\n%s", err, out)
	}
	p.stop()
	var messages int
	for _, m := range auditMessages(t, data) {
		if strings.Contains(m, `csd-code="110104"`) && strings.Contains(m, `UserID="alice"`) && strings.Contains(m, studies[0]) && strings.Contains(m, "1.2.840.10008.5.1.4.1.1.2") {
			messages++
		}
	}
	if messages != 2 {
		t.Errorf("%d DICOM Instances Transferred messages of alice's exports, want 2", messages)
	}
}
