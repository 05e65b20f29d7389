package main

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/pacsd/pacsd/dicom/tag"
	"github.com/pacsd/pacsd/internal/dcmgen"
	"github.com/pacsd/pacsd/internal/testpeer"
)

// identityBackends runs fn with the index on SQLite and on PostgreSQL.
func identityBackends(t *testing.T, fn func(t *testing.T, flags ...string)) {
	t.Run("SQLite", func(t *testing.T) { fn(t) })
	t.Run("PostgreSQL", func(t *testing.T) {
		pg := testpeer.StartPostgresT(t)
		fn(t, "--index", pg.NewDatabaseT(t))
	})
}

// writeStudy writes a study of one series per count given into dir, for
// the patient given, and returns its UIDs.
func writeStudy(t *testing.T, dir string, patient dcmgen.Patient, extra []dcmgen.Element, counts ...int) (study string, series []string, sops []string) {
	t.Helper()
	study = dcmgen.UID()
	for s, n := range counts {
		se := dcmgen.UID()
		series = append(series, se)
		for i := 1; i <= n; i++ {
			in := &dcmgen.Instance{Patient: patient, InstanceNumber: i, Rows: 8, Columns: 8, Extra: extra}
			in.Study = dcmgen.Study{UID: study, Description: "CT HEAD", AccessionNumber: "ACC1"}
			in.Series = dcmgen.Series{UID: se, Modality: "CT", Number: s + 1}
			f, err := dcmgen.Create(filepath.Join(dir, fmt.Sprintf("%s-%d-%d.dcm", patient.ID, s, i)), in)
			if err != nil {
				t.Fatal(err)
			}
			sops = append(sops, f.SOPInstanceUID)
		}
	}
	return study, series, sops
}

// storeFrom sends files to p from the calling AE given.
func storeFrom(t *testing.T, p *instance, aet string, files ...string) {
	t.Helper()
	args := append([]string{"-aet", aet, "-aec", "PACSD", p.host(), p.port()}, files...)
	if _, stderr, err := testpeer.Run(context.Background(), "storescu", args...); err != nil {
		t.Fatalf("storescu as %s: %v\n%s", aet, err, stderr)
	}
}

// apiCall makes a request of p's API and decodes its JSON answer into
// out, if not nil; it returns the status.
func apiCall(t *testing.T, p *instance, method, path string, body any, out any) int {
	t.Helper()
	var r io.Reader
	if body != nil {
		b, _ := json.Marshal(body)
		r = bytes.NewReader(b)
	}
	req, _ := http.NewRequest(method, "http://"+p.httpAddr+path, r)
	req.Header.Set("Content-Type", "application/json")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	if out != nil && resp.StatusCode < 300 {
		if err := json.Unmarshal(b, out); err != nil {
			t.Fatalf("%s %s: %v: %s", method, path, err, b)
		}
	}
	return resp.StatusCode
}

// strValue returns the first value of a tag in a DICOM JSON object.
func strValue(m map[string]any, tg tag.Tag) string {
	e, _ := m[tg.Hex()].(map[string]any)
	vs, _ := e["Value"].([]any)
	if len(vs) == 0 {
		return ""
	}
	switch v := vs[0].(type) {
	case string:
		return v
	case map[string]any:
		s, _ := v["Alphabetic"].(string)
		return s
	}
	return fmt.Sprint(vs[0])
}

func studyKeys(ms []map[string]any) []string {
	var out []string
	for _, m := range ms {
		out = append(out, strValue(m, tag.PatientID)+"^"+strValue(m, tag.IssuerOfPatientID))
	}
	slices.Sort(out)
	return out
}

func TestPatientsAcrossTrusts(t *testing.T) {
	testpeer.Need(t, "storescu", "findscu", "getscu", "dcmdump")
	identityBackends(t, testPatientsAcrossTrusts)
}

func testPatientsAcrossTrusts(t *testing.T, flags ...string) {
	const number = "9434765919"
	dir := t.TempDir()
	nhsItem := func(n string) []dcmgen.Element {
		return []dcmgen.Element{{Tag: dcmgen.Tag(tag.OtherPatientIDsSequence), VR: "SQ", Value: []dcmgen.Item{{
			{Tag: dcmgen.Tag(tag.PatientID), VR: "LO", Value: n},
			{Tag: dcmgen.Tag(tag.IssuerOfPatientID), VR: "LO", Value: "NHS"},
		}}}}
	}
	ct := filepath.Join(dir, "ct")
	mr := filepath.Join(dir, "mr")
	os.MkdirAll(ct, 0o755)
	os.MkdirAll(mr, 0o755)
	// The same Patient ID from two trusts' modalities, without issuers.
	a, _, sopsA := writeStudy(t, ct, dcmgen.Patient{Name: "Trust^A", ID: "123"}, nil, 1)
	b, _, _ := writeStudy(t, mr, dcmgen.Patient{Name: "Trust^B", ID: "123"}, nil, 1)
	// One person: an NHS number in Other Patient IDs at one trust, as the
	// Patient ID at another.
	c, _, _ := writeStudy(t, ct, dcmgen.Patient{Name: "Linked^Person", ID: "L1"}, nhsItem(number), 1)
	d, _, _ := writeStudy(t, mr, dcmgen.Patient{Name: "Linked^Person", ID: number, IssuerOfPatientID: "NHS"}, nil, 1)
	// A wrong check digit links nobody.
	writeStudy(t, mr, dcmgen.Patient{Name: "Typo^Person", ID: "L9"}, nhsItem("9434765918"), 1)

	data := t.TempDir()
	p := startPacsd(t, data, append([]string{"--issuer-by-ae", "CT01=RXH,MR02=RYJ"}, flags...)...)
	defer p.stop()
	ctFiles, _ := filepath.Glob(filepath.Join(ct, "*.dcm"))
	mrFiles, _ := filepath.Glob(filepath.Join(mr, "*.dcm"))
	storeFrom(t, p, "CT01", ctFiles...)
	storeFrom(t, p, "MR02", mrFiles...)

	// Two patients 123, each with its issuer, in QIDO-RS and C-FIND.
	if got := studyKeys(qido(t, p, "/studies?PatientID=123&includefield=IssuerOfPatientID")); !slices.Equal(got, []string{"123^RXH", "123^RYJ"}) {
		t.Errorf("QIDO-RS PatientID=123: %q", got)
	}
	rs := p.findscu(t, "-S", "QueryRetrieveLevel=STUDY", "PatientID=123", "IssuerOfPatientID", "StudyInstanceUID")
	if got := values(rs, tag.IssuerOfPatientID); !slices.Equal(got, []string{"RXH", "RYJ"}) {
		t.Errorf("C-FIND PatientID=123: issuers %q", got)
	}
	// A C-GET returns data sets that carry the issuer, and record that
	// it was added.
	out := t.TempDir()
	if o, err := p.dcmtk("getscu", "-S", "-od", out, "-k", "QueryRetrieveLevel=STUDY", "-k", "StudyInstanceUID="+a); err != nil {
		t.Fatalf("getscu: %v\n%s", err, o)
	}
	got, err := testpeer.Dump(context.Background(), filepath.Join(out, "CT."+sopsA[0]))
	if err != nil {
		t.Fatal(err)
	}
	if got[uint32(tag.IssuerOfPatientID)] != "RXH" || got[uint32(tag.PatientID)] != "123" {
		t.Errorf("C-GET data set: Patient ID %q, issuer %q", got[uint32(tag.PatientID)], got[uint32(tag.IssuerOfPatientID)])
	}
	if dump, _, err := testpeer.Run(context.Background(), "dcmdump", "-q", filepath.Join(out, "CT."+sopsA[0])); err != nil ||
		!strings.Contains(dump, "(0400,0561) SQ") || !strings.Contains(dump, "[COERCE]") {
		t.Errorf("C-GET data set has no Original Attributes Sequence recording the issuer added: %v\n%s", err, dump)
	}

	// By NHS number, every linked patient's study, each with its own ID.
	want := []string{number + "^NHS", "L1^RXH"}
	for _, issuer := range []string{"NHS", "2.16.840.1.113883.2.1.4.1"} {
		got := studyKeys(qido(t, p, "/studies?PatientID="+number+"&IssuerOfPatientID="+url.QueryEscape(issuer)+"&includefield=IssuerOfPatientID"))
		if !slices.Equal(got, want) {
			t.Errorf("QIDO-RS by NHS number, issuer %s: %q, want %q", issuer, got, want)
		}
	}
	rs = p.findscu(t, "-S", "QueryRetrieveLevel=STUDY", "PatientID="+number, "IssuerOfPatientID=NHS", "StudyInstanceUID")
	if got := values(rs, tag.StudyInstanceUID); !slices.Equal(got, sorted(c, d)) {
		t.Errorf("C-FIND by NHS number: studies %q, want %q", got, sorted(c, d))
	}
	var person struct {
		NHSNumber string `json:"nhs_number"`
		Patients  []struct {
			PatientID string `json:"patient_id"`
			Studies   []struct {
				Study string `json:"study"`
			} `json:"studies"`
		} `json:"patients"`
	}
	if st := apiCall(t, p, "GET", "/api/patients/L1%5ERXH", nil, &person); st != 200 || person.NHSNumber != number || len(person.Patients) != 2 {
		t.Errorf("GET /api/patients/L1^RXH = %d %+v", st, person)
	}
	person.NHSNumber, person.Patients = "", nil
	if st := apiCall(t, p, "GET", "/api/patients/L9%5ERYJ", nil, &person); st != 200 || person.NHSNumber != "" || len(person.Patients) != 1 {
		t.Errorf("GET /api/patients/L9^RYJ (invalid NHS number) = %d %+v", st, person)
	}
	if findLog(p.log(), "NHS number with an invalid check digit indexed as a plain ID, not linked") == nil {
		t.Error("no warning of the invalid NHS number")
	}

	// Linked by hand, with the CLI while serve runs, then unlinked with
	// the API.
	var cli bytes.Buffer
	args := append([]string{"patient", "link", "123^RXH", "L1^RXH", "--data", data}, flags...)
	if err := run(t.Context(), args, func(string) string { return "" }, &cli, &cli); err != nil {
		t.Fatalf("pacsd patient link: %v\n%s", err, cli.String())
	}
	if got := studyKeys(qido(t, p, "/studies?PatientID="+number+"&IssuerOfPatientID=NHS&includefield=IssuerOfPatientID")); !slices.Equal(got, []string{"123^RXH", number + "^NHS", "L1^RXH"}) {
		t.Errorf("after pacsd patient link: %q", got)
	}
	if st := apiCall(t, p, "POST", "/api/patients/unlink", map[string]any{"patients": []string{"123^RXH"}}, nil); st != http.StatusNoContent {
		t.Errorf("POST /api/patients/unlink = %d", st)
	}
	if got := studyKeys(qido(t, p, "/studies?PatientID="+number+"&IssuerOfPatientID=NHS&includefield=IssuerOfPatientID")); !slices.Equal(got, want) {
		t.Errorf("after unlink: %q", got)
	}
	// Linked by hand through the API, corrected, and one study deleted:
	// all of it, and the issuers given by sender, come back in an index
	// rebuilt from storage alone, served without --issuer-by-ae.
	if st := apiCall(t, p, "POST", "/api/patients/link", map[string]any{"patients": []string{"123^RYJ", "L1^RXH"}}, nil); st != http.StatusOK {
		t.Errorf("POST /api/patients/link = %d", st)
	}
	if st := apiCall(t, p, "POST", "/api/studies/"+a+"/update?reason=misspelt", map[string]any{"00100010": map[string]any{"vr": "PN", "Value": []any{map[string]any{"Alphabetic": "Trust^Alpha"}}}}, nil); st != http.StatusOK {
		t.Errorf("POST /api/studies/%s/update = %d", a, st)
	}
	del, _ := http.NewRequest("DELETE", "http://"+p.httpAddr+"/dicom-web/studies/"+b+"?reason=duplicate", nil)
	if resp, err := http.DefaultClient.Do(del); err != nil || resp.StatusCode/100 != 2 {
		t.Fatalf("DELETE study %s: %v %v", b, resp, err)
	}
	visible := func(p *instance) string {
		var v strings.Builder
		for _, q := range []string{"/studies?includefield=IssuerOfPatientID&includefield=PatientName",
			"/studies?PatientID=" + number + "&IssuerOfPatientID=NHS&includefield=IssuerOfPatientID"} {
			res := qido(t, p, q)
			var rows []string
			for _, m := range res {
				rows = append(rows, strValue(m, tag.StudyInstanceUID)+" "+strings.Join(studyKeys([]map[string]any{m}), "")+" "+fmt.Sprint(m[tag.PatientName.String()]))
			}
			slices.Sort(rows)
			fmt.Fprintf(&v, "%s\n  %s\n", q, strings.Join(rows, "\n  "))
		}
		var corrections []map[string]any
		apiCall(t, p, "GET", "/api/corrections?study="+a, nil, &corrections)
		for _, c := range corrections {
			delete(c, "id")
			fmt.Fprintf(&v, "correction %v\n", c)
		}
		var person any
		apiCall(t, p, "GET", "/api/patients/L1%5ERXH", nil, &person)
		fmt.Fprintf(&v, "person %v\n", person)
		return v.String()
	}
	before := visible(p)
	// serve writes every link and unlink by hand to the audit trail, the
	// command line's too: Instances Accessed (Update) of each patient.
	waitUpdates(t, p, "patient=L1", 2)
	p.stop()
	rebuilt := "sqlite://" + filepath.Join(t.TempDir(), "rebuilt.db")
	cli.Reset()
	if err := run(t.Context(), []string{"reindex", "--data", data, "--index", rebuilt}, func(string) string { return "" }, &cli, &cli); err != nil {
		t.Fatalf("pacsd reindex: %v\n%s", err, cli.String())
	}
	if !strings.Contains(cli.String(), "replayed 5 records") {
		t.Errorf("pacsd reindex does not report the two links, the unlink, the correction and the deletion replayed:\n%s", cli.String())
	}
	p2 := startPacsd(t, data, "--index", rebuilt)
	defer p2.stop()
	if after := visible(p2); after != before {
		t.Errorf("the rebuilt index shows\n%s\nthe first showed\n%s", after, before)
	}
	cli.Reset()
	if err := run(t.Context(), []string{"verify", "--data", data, "--index", rebuilt}, func(string) string { return "" }, &cli, &cli); err != nil {
		t.Errorf("pacsd verify of the rebuilt index: %v\n%s", err, cli.String())
	}
}

func TestCorrections(t *testing.T) {
	testpeer.Need(t, "storescu", "findscu", "getscu", "dcmdump")
	identityBackends(t, testCorrections)
}

func testCorrections(t *testing.T, flags ...string) {
	dir := t.TempDir()
	study, series, sops := writeStudy(t, dir, dcmgen.Patient{Name: "Wrong^Name", ID: "P1", IssuerOfPatientID: "RXH"}, nil, 2, 1)
	other, _, _ := writeStudy(t, dir, dcmgen.Patient{Name: "Other^Patient", ID: "P2", IssuerOfPatientID: "RXH"}, nil, 1)
	data := t.TempDir()
	p := startPacsd(t, data, flags...)
	defer p.stop()
	files, _ := filepath.Glob(filepath.Join(dir, "*.dcm"))
	storeFrom(t, p, "CT01", files...)

	nameInQIDO := func() string {
		ms := qido(t, p, "/studies?StudyInstanceUID="+study+"&includefield=PatientName")
		if len(ms) != 1 {
			t.Fatalf("QIDO-RS of the study: %d matches", len(ms))
		}
		return strValue(ms[0], tag.PatientName)
	}
	update := map[string]any{"00100010": map[string]any{"vr": "PN", "Value": []any{map[string]any{"Alphabetic": "Right^Name"}}}}

	// No reason: 400, nothing changes.
	if st := apiCall(t, p, "POST", "/api/studies/"+study+"/update", update, nil); st != http.StatusBadRequest {
		t.Errorf("update without a reason = %d, want 400", st)
	}
	if got := nameInQIDO(); got != "Wrong^Name" {
		t.Fatalf("name after a refused update = %q", got)
	}
	var made struct {
		ID int64 `json:"id"`
	}
	if st := apiCall(t, p, "POST", "/api/studies/"+study+"/update?reason=wrong+patient+name", update, &made); st != 200 || made.ID == 0 {
		t.Fatalf("update = %d %+v", st, made)
	}

	// QIDO-RS, C-FIND and /metadata show it at once.
	if got := nameInQIDO(); got != "Right^Name" {
		t.Errorf("QIDO-RS after the correction: %q", got)
	}
	rs := p.findscu(t, "-S", "QueryRetrieveLevel=STUDY", "StudyInstanceUID="+study, "PatientName")
	if got := values(rs, tag.PatientName); !slices.Equal(got, []string{"Right^Name"}) {
		t.Errorf("C-FIND after the correction: %q", got)
	}
	md := qido(t, p, "/studies/"+study+"/series/"+series[0]+"/instances/"+sops[0]+"/metadata")
	if len(md) != 1 || strValue(md[0], tag.PatientName) != "Right^Name" || md[0][tag.OriginalAttributesSequence.Hex()] == nil {
		t.Errorf("metadata after the correction: %v", md)
	}

	// WADO-RS: pydicom reads the new name, and the old one in Original
	// Attributes Sequence.
	wado := filepath.Join(t.TempDir(), "wado.dcm")
	getTo(t, "http://"+p.httpAddr+"/dicom-web/studies/"+study+"/series/"+series[0]+"/instances/"+sops[0], "application/dicom; transfer-syntax=*", wado)
	script := `import sys, pydicom
ds = pydicom.dcmread(sys.argv[1])
old = ds.OriginalAttributesSequence[-1].ModifiedAttributesSequence[0].PatientName
print(str(ds.PatientName) + "|" + str(old) + "|" + ds.OriginalAttributesSequence[-1].ReasonForTheAttributeModification + "|" + str(len(ds.PixelData)))`
	o, stderr, err := testpeer.Run(context.Background(), testpeer.PydicomPython(t), "-c", script, wado)
	if err != nil {
		t.Fatalf("pydicom: %v\n%s", err, stderr)
	}
	if got := strings.TrimSpace(o); got != "Right^Name|Wrong^Name|CORRECT|128" {
		t.Errorf("pydicom reads %q", got)
	}

	// getscu retrieves the corrected data sets.
	out := t.TempDir()
	if o, err := p.dcmtk("getscu", "-S", "-od", out, "-k", "QueryRetrieveLevel=STUDY", "-k", "StudyInstanceUID="+study); err != nil {
		t.Fatalf("getscu: %v\n%s", err, o)
	}
	got, err := testpeer.Dump(context.Background(), filepath.Join(out, "CT."+sops[0]))
	if err != nil || got[uint32(tag.PatientName)] != "Right^Name" {
		t.Errorf("C-GET data set: %q, %v", got[uint32(tag.PatientName)], err)
	}

	// The original, byte for byte.
	orig := filepath.Join(t.TempDir(), "orig.dcm")
	getTo(t, "http://"+p.httpAddr+"/api/instances/"+sops[0]+"/original", "", orig)
	b, _ := os.ReadFile(orig)
	sum := sha256.Sum256(b)
	if stored := findObject(t, filepath.Join(data, "objects"), sops[0]); stored == nil || !bytes.Equal(stored, b) {
		t.Errorf("/original (%d bytes, sha256 %s) differs from the stored object", len(b), hex.EncodeToString(sum[:]))
	}

	// The wrong-patient fix, and the list.
	if st := apiCall(t, p, "POST", "/api/series/"+series[1]+"/move?reason=wrong+patient", map[string]any{"study": other}, nil); st != 200 {
		t.Errorf("series move = %d", st)
	}
	if ms := qido(t, p, "/studies/"+other+"/series"); len(ms) != 2 {
		t.Errorf("the target study has %d series, want 2", len(ms))
	}
	var list []struct {
		ID        int64          `json:"id"`
		Reason    string         `json:"reason"`
		Principal string         `json:"principal"`
		Time      string         `json:"time"`
		Before    map[string]any `json:"before"`
		After     map[string]any `json:"after"`
	}
	if st := apiCall(t, p, "GET", "/api/corrections?study="+study, nil, &list); st != 200 || len(list) != 2 ||
		list[0].Reason != "wrong patient name" || strValue(list[0].Before, tag.PatientName) != "Wrong^Name" || list[0].Principal == "" || list[0].Time == "" {
		t.Errorf("GET /api/corrections = %d %+v", st, list)
	}

	// Undo restores, and the CLI corrects while serve runs.
	if st := apiCall(t, p, "POST", fmt.Sprintf("/api/corrections/%d/undo?reason=it+was+right", made.ID), nil, nil); st != 200 {
		t.Errorf("undo = %d", st)
	}
	if got := nameInQIDO(); got != "Wrong^Name" {
		t.Errorf("QIDO-RS after undo: %q", got)
	}
	getTo(t, "http://"+p.httpAddr+"/dicom-web/studies/"+study+"/series/"+series[0]+"/instances/"+sops[0], "application/dicom; transfer-syntax=*", wado)
	if after, _ := os.ReadFile(wado); !bytes.HasSuffix(b, after[bytes.Index(after, []byte("DICM"))+4+len(metaGroup(after)):]) {
		t.Error("after undo, WADO-RS does not serve the data set as received")
	}
	var cli bytes.Buffer
	args := append([]string{"correct", "study", study, "--set", "PatientName=Cli^Name", "--reason", "from the ward", "--data", data}, flags...)
	if err := run(t.Context(), args, func(string) string { return "" }, &cli, &cli); err != nil {
		t.Fatalf("pacsd correct: %v\n%s", err, cli.String())
	}
	if got := nameInQIDO(); got != "Cli^Name" {
		t.Errorf("QIDO-RS after pacsd correct: %q", got)
	}

	// serve writes every correction to the audit trail, the command
	// line's too: one Instances Accessed (Update) record each.
	var listed []map[string]any
	if st := apiCall(t, p, "GET", "/api/corrections?study="+study, nil, &listed); st != 200 || len(listed) == 0 {
		t.Fatalf("corrections list = %d, %d entries", st, len(listed))
	}
	waitUpdates(t, p, "study="+study, len(listed))
}

// waitUpdates waits for the audit trail to hold want Instances Accessed
// records that the audit API's query q finds, the command line's among
// them.
func waitUpdates(t *testing.T, p *instance, q string, want int) {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for {
		var page struct {
			Records []struct{ Event, User string } `json:"records"`
		}
		if st := apiCall(t, p, "GET", "/api/audit?"+q, nil, &page); st != 200 {
			t.Fatalf("GET /api/audit = %d", st)
		}
		n, byCLI := 0, false
		for _, r := range page.Records {
			if r.Event == "DICOM Instances Accessed" {
				n++
				byCLI = byCLI || r.User == "pacsd"
			}
		}
		if n == want && byCLI {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("audit trail holds %d update records of %s (the command line's among them: %v), want %d", n, q, byCLI, want)
		}
		time.Sleep(200 * time.Millisecond)
	}
}

// metaGroup returns the File Meta Information elements of a Part-10
// object, after its preamble and magic.
func metaGroup(b []byte) []byte {
	i := bytes.Index(b, []byte("DICM")) + 4
	j := i
	for j+8 <= len(b) && b[j] == 0x02 && b[j+1] == 0x00 {
		vr := string(b[j+4 : j+6])
		switch vr {
		case "OB", "OW", "UN", "SQ", "UT", "UC", "UR", "OD", "OF", "OL", "OV":
			n := int(b[j+8]) | int(b[j+9])<<8 | int(b[j+10])<<16 | int(b[j+11])<<24
			j += 12 + n
		default:
			j += 8 + (int(b[j+6]) | int(b[j+7])<<8)
		}
	}
	return b[i:j]
}

// getTo saves what a GET answers to path.
func getTo(t *testing.T, u, accept, path string) {
	t.Helper()
	req, _ := http.NewRequest("GET", u, nil)
	if accept != "" {
		req.Header.Set("Accept", accept)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	if resp.StatusCode != 200 {
		t.Fatalf("GET %s: %d %s", u, resp.StatusCode, b)
	}
	if err := os.WriteFile(path, b, 0o644); err != nil {
		t.Fatal(err)
	}
}

// findObject returns the stored object of an instance.
func findObject(t *testing.T, root, sop string) []byte {
	t.Helper()
	var found []byte
	filepath.WalkDir(root, func(path string, d os.DirEntry, err error) error {
		if err == nil && !d.IsDir() && strings.Contains(filepath.Base(path), sop) {
			found, _ = os.ReadFile(path)
		}
		return nil
	})
	return found
}

// BenchmarkCorrectedWADO compares WADO-RS of a series before and after a
// correction of its study: the rate of a corrected series, whose headers
// are rewritten on the way out, against the same series as stored.
func BenchmarkCorrectedWADO(b *testing.B) {
	dir := b.TempDir()
	study := dcmgen.UID()
	se := dcmgen.UID()
	for i := 1; i <= 50; i++ {
		in := &dcmgen.Instance{Patient: dcmgen.Patient{Name: "Wrong^Name", ID: "P1", IssuerOfPatientID: "RXH"}, InstanceNumber: i, Rows: 512, Columns: 512}
		in.Study = dcmgen.Study{UID: study}
		in.Series = dcmgen.Series{UID: se, Modality: "CT", Number: 1}
		if _, err := dcmgen.Create(filepath.Join(dir, fmt.Sprintf("%d.dcm", i)), in); err != nil {
			b.Fatal(err)
		}
	}
	testpeer.Need(b, "storescu")
	p := startPacsdIn(b, nil, b.TempDir())
	defer p.stop()
	files, _ := filepath.Glob(filepath.Join(dir, "*.dcm"))
	args := append([]string{"-aet", "CT01", "-aec", "PACSD", p.host(), p.port()}, files...)
	if _, stderr, err := testpeer.Run(context.Background(), "storescu", args...); err != nil {
		b.Fatalf("storescu: %v\n%s", err, stderr)
	}
	get := func(b *testing.B) {
		req, _ := http.NewRequest("GET", "http://"+p.httpAddr+"/dicom-web/studies/"+study+"/series/"+se, nil)
		req.Header.Set("Accept", `multipart/related; type="application/dicom"; transfer-syntax=*`)
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			b.Fatal(err)
		}
		n, _ := io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		b.SetBytes(n)
	}
	b.Run("as stored", func(b *testing.B) {
		for b.Loop() {
			get(b)
		}
	})
	body := strings.NewReader(`{"00100010": {"vr": "PN", "Value": [{"Alphabetic": "Right^Name"}]}}`)
	resp, err := http.Post("http://"+p.httpAddr+"/api/studies/"+study+"/update?reason=bench", "application/json", body)
	if err != nil || resp.StatusCode != 200 {
		b.Fatalf("update: %v %v", resp, err)
	}
	resp.Body.Close()
	b.Run("corrected", func(b *testing.B) {
		for b.Loop() {
			get(b)
		}
	})
}

// TestCorrectionForwarded checks that a correction reaches a destination
// that had the study already: another pacsd, by STOW-RS.
func TestCorrectionForwarded(t *testing.T) {
	testpeer.Need(t, "storescu")
	dir := t.TempDir()
	study, _, _ := writeStudy(t, dir, dcmgen.Patient{Name: "Wrong^Name", ID: "P1", IssuerOfPatientID: "RXH"}, nil, 2)
	dest := startPacsd(t, t.TempDir())
	defer dest.stop()
	data := t.TempDir()
	p := startPacsd(t, data, "--remote-web", "TRUSTB=http://"+dest.httpAddr+"/dicom-web", "--forward", "TRUSTB")
	defer p.stop()
	files, _ := filepath.Glob(filepath.Join(dir, "*.dcm"))
	storeFrom(t, p, "CT01", files...)

	nameAt := func(want string) {
		t.Helper()
		deadline := time.Now().Add(30 * time.Second)
		for {
			ms := qido(t, dest, "/instances?StudyInstanceUID="+study+"&includefield=PatientName")
			got := 0
			for _, m := range ms {
				if strValue(m, tag.PatientName) == want {
					got++
				}
			}
			if got == 2 {
				return
			}
			if time.Now().After(deadline) {
				t.Fatalf("the destination has %d instances named %q, want 2:\n%s", got, want, p.proc.LogTail(20))
			}
			time.Sleep(100 * time.Millisecond)
		}
	}
	nameAt("Wrong^Name")
	update := map[string]any{"00100010": map[string]any{"vr": "PN", "Value": []any{map[string]any{"Alphabetic": "Right^Name"}}}}
	if st := apiCall(t, p, "POST", "/api/studies/"+study+"/update?reason=wrong+name", update, nil); st != 200 {
		t.Fatalf("update = %d", st)
	}
	nameAt("Right^Name")
	// pacsd correct, on the index serve uses, queues the study again
	// as the API does; serve sends it.
	var cli bytes.Buffer
	args := []string{"correct", "study", study, "--set", "PatientName=Cli^Name", "--reason", "from the ward", "--data", data}
	if err := run(t.Context(), args, func(string) string { return "" }, &cli, &cli); err != nil {
		t.Fatalf("pacsd correct: %v\n%s", err, cli.String())
	}
	if !strings.Contains(cli.String(), "queued 2 instances again for TRUSTB") {
		t.Errorf("pacsd correct says %q, want that it queued the study again for TRUSTB", cli.String())
	}
	nameAt("Cli^Name")
}
