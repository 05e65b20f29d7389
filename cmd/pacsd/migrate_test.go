package main

import (
	"bytes"
	"encoding/csv"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/pacsd/pacsd/internal/dcmgen"
	"github.com/pacsd/pacsd/internal/testpeer"
)

// legacyStudy is a study the legacy archive of these tests holds.
type legacyStudy struct {
	uid  string
	sops []string
}

// writeLegacy writes n studies of two instances on days days from
// first, every other one in Implicit VR Little Endian, into dir.
func writeLegacy(t *testing.T, dir string, n, days int, first time.Time, patient func(i int) dcmgen.Patient) []legacyStudy {
	t.Helper()
	var out []legacyStudy
	for i := range n {
		tmpl := dcmgen.Instance{
			Patient: patient(i),
			Study: dcmgen.Study{UID: dcmgen.UID(), Date: first.AddDate(0, 0, i%days).Format("20060102"),
				Time: fmt.Sprintf("%02d%02d00", 8+i%10, i%60), AccessionNumber: fmt.Sprintf("A%s%d", first.Format("06"), i)},
			Series: dcmgen.Series{UID: dcmgen.UID()},
			Rows:   32, Columns: 32,
		}
		if i%2 == 1 {
			tmpl.Syntax = dcmgen.ImplicitVRLittleEndian
		}
		st := legacyStudy{uid: tmpl.Study.UID}
		for j := range 2 {
			in := tmpl
			in.SOPInstanceUID, in.InstanceNumber = dcmgen.UID(), j+1
			if _, err := dcmgen.Create(filepath.Join(dir, in.SOPInstanceUID+".dcm"), &in); err != nil {
				t.Fatal(err)
			}
			st.sops = append(st.sops, in.SOPInstanceUID)
		}
		out = append(out, st)
	}
	return out
}

// pacsdCmd runs pacsd as a process to its end and returns its output and
// exit status.
func pacsdCmd(t *testing.T, args ...string) (stdout, stderr string, status int) {
	t.Helper()
	exe, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	cmd := exec.CommandContext(t.Context(), exe, args...)
	cmd.Env = append(os.Environ(), "PACSD_TEST_AS_MAIN=1", "TCP_NODELAY=1")
	var out, errOut bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errOut
	err = cmd.Run()
	if ee, ok := errors.AsType[*exec.ExitError](err); ok {
		return out.String(), errOut.String(), ee.ExitCode()
	}
	if err != nil {
		t.Fatalf("pacsd %s: %v", strings.Join(args, " "), err)
	}
	return out.String(), errOut.String(), 0
}

// logged returns the values of key in the JSON log records with message
// msg.
func logged(log, msg, key string) []string {
	var out []string
	for line := range strings.SplitSeq(log, "\n") {
		var rec map[string]any
		if json.Unmarshal([]byte(line), &rec) == nil && rec["msg"] == msg {
			if v, ok := rec[key].(string); ok {
				out = append(out, v)
			}
		}
	}
	return out
}

// reportRows reads the studies of a CSV report from source: the lines
// before the first empty one.
func reportRows(t *testing.T, report, source string) map[string]map[string]string {
	t.Helper()
	head, _, _ := strings.Cut(report, "\n\n")
	recs, err := csv.NewReader(strings.NewReader(head)).ReadAll()
	if err != nil || len(recs) == 0 {
		t.Fatalf("report %q: %v", report, err)
	}
	rows := map[string]map[string]string{}
	for _, r := range recs[1:] {
		row := map[string]string{}
		for i, col := range recs[0] {
			row[col] = r[i]
		}
		if row["source"] == source {
			rows[row["study_instance_uid"]] = row
		}
	}
	return rows
}

// TestMigrate migrates a legacy Orthanc, whose C-FIND answers are capped
// at 5 matches, with the pacsd program: killed in the middle and run
// again on a PostgreSQL index while pacsd serve answers from the same
// archive; then a source with lost files, a conflicting duplicate and a
// patient known by two names.
func TestMigrate(t *testing.T) {
	testpeer.Need(t, "Orthanc", "dcmsend", "findscu")
	corpus := t.TempDir()
	y2024 := time.Date(2024, 1, 1, 0, 0, 0, 0, time.UTC)
	good := writeLegacy(t, corpus, 24, 8, y2024, func(i int) dcmgen.Patient {
		return dcmgen.Patient{ID: fmt.Sprintf("P%d", i), Name: fmt.Sprintf("%cOE^P%d", 'A'+i%26, i)}
	})
	// 2023 holds the troubles: a patient known by two names, and studies
	// to be broken below.
	y2023 := time.Date(2023, 6, 1, 0, 0, 0, 0, time.UTC)
	bad := writeLegacy(t, corpus, 4, 4, y2023, func(i int) dcmgen.Patient {
		if i < 2 {
			return dcmgen.Patient{ID: "TWIN", Name: []string{"TWIN^ONE", "TWIN^TWO"}[i]}
		}
		return dcmgen.Patient{ID: fmt.Sprintf("Q%d", i), Name: "QUEUE^Q"}
	})
	o := testpeer.StartOrthancT(t, testpeer.OrthancOptions{
		AET:      "OLDPACS",
		DICOMweb: true,
		// No cache of files in memory: a test deletes files behind
		// Orthanc's back.
		Config: map[string]any{"LimitFindResults": 5, "MaximumStorageCacheSize": 0},
	})
	testpeer.RunT(t, "dcmsend", "-aet", "LOADER", "-aec", o.AET, "+sd", "-nuc", "127.0.0.1", fmt.Sprint(o.DICOMPort), corpus)
	remote := "--remote-ae=OLDPACS=" + o.DICOMAddr

	t.Run("killed and run again", func(t *testing.T) {
		pg := testpeer.StartPostgresT(t)
		data, idx := t.TempDir(), pg.NewDatabaseT(t)
		srv := startPacsd(t, data, "--index", idx)
		exe, _ := os.Executable()
		args := []string{"migrate", "--from", "OLDPACS", remote, "--since", "20240101", "--data", data, "--index", idx,
			"--dimse-addr", "127.0.0.1:0", "--log-format", "json", "--concurrency", "1", "--max-mbps", "0.1"}
		// SIGTERM stops the first run after the study in flight, with
		// exit status 0.
		termed := sigtermMigration(t, exe, args)
		proc := testpeer.StartT(t, testpeer.Cmd{Name: exe, Args: args, Dir: t.TempDir(), Env: []string{"PACSD_TEST_AS_MAIN=1"}})
		var first []string
		deadline := time.Now().Add(2 * time.Minute)
		for len(first) < 6 && time.Now().Before(deadline) {
			time.Sleep(50 * time.Millisecond)
			b, _ := os.ReadFile(proc.Log())
			first = logged(string(b), "migration: study verified", "study_instance_uid")
		}
		// pacsd serve answers for what the migration stored so far.
		out, err := srv.dcmtk("findscu", "-S", "-k", "QueryRetrieveLevel=STUDY", "-k", "StudyInstanceUID")
		if n := strings.Count(out, "(0020,000d)"); err != nil || n < 6 {
			t.Errorf("pacsd serve finds %d studies while the migration runs: %v\n%s", n, err, out)
		}
		// So do its API and pacsd migrate status, from the index.
		resp, err := http.Get("http://" + srv.httpAddr + "/api/migrations")
		if err != nil {
			t.Fatal(err)
		}
		var api struct {
			Migrations []struct{ Source, State string }
		}
		json.NewDecoder(resp.Body).Decode(&api)
		resp.Body.Close()
		if len(api.Migrations) != 1 || api.Migrations[0].Source != "OLDPACS" || api.Migrations[0].State != "running" {
			t.Errorf("GET /api/migrations while the migration runs: %+v", api)
		}
		if out, _, _ := pacsdCmd(t, "migrate", "status", "--data", data, "--index", idx); !strings.Contains(out, "OLDPACS (dimse): running") {
			t.Errorf("pacsd migrate status while the migration runs:\n%s", out)
		}
		if err := proc.Kill(); err != nil {
			t.Fatal(err)
		}
		b, _ := os.ReadFile(proc.Log())
		first = logged(string(b), "migration: study verified", "study_instance_uid")
		if len(first) < 6 || len(first)+len(termed) >= len(good) {
			t.Fatalf("%d studies verified when killed; want some, not all:\n%s", len(first), proc.LogTail(20))
		}
		for _, s := range termed {
			if slices.Contains(first, s) {
				t.Errorf("study %s, verified before SIGTERM, was migrated again", s)
			}
		}
		first = append(first, termed...)

		stdout, stderr, status := pacsdCmd(t, append(slices.Clone(args[:len(args)-4]), "--concurrency", "3")...)
		if status != 0 || !strings.Contains(stdout, fmt.Sprintf("%d studies: %d verified", len(good), len(good))) {
			t.Fatalf("rerun: exit %d\n%s\n%s", status, stdout, stderr)
		}
		again := logged(stderr, "migration: study verified", "study_instance_uid")
		for _, s := range first {
			if slices.Contains(again, s) {
				t.Errorf("study %s, verified before the kill, was migrated again", s)
			}
		}
		if len(first)+len(again) < len(good) {
			t.Errorf("%d + %d studies verified by the two runs, of %d", len(first), len(again), len(good))
		}
		report, _, _ := pacsdCmd(t, "migrate", "report", "--data", data, "--index", idx)
		rows := reportRows(t, report, "OLDPACS")
		for _, s := range good {
			if r := rows[s.uid]; r["state"] != "verified" || r["instances_here"] != "2" || r["instances_source"] != "2" {
				t.Errorf("study %s in the report: %v", s.uid, r)
			}
		}
		for _, s := range first {
			if rows[s]["attempts"] != "1" {
				t.Errorf("study %s verified in the first run has %s attempts", s, rows[s]["attempts"])
			}
		}
		// Migrated instances are served as stored.
		srv.stop()
		a := openArchiveAt(t, data, idx)
		for _, s := range good {
			for _, sop := range s.sops {
				if _, ds, row := a.object(t, sop); row.Source != "migrate" || row.CallingAE != "OLDPACS" || len(ds) == 0 {
					t.Errorf("instance %s: source %q, calling AE %q", sop, row.Source, row.CallingAE)
				}
			}
		}
		status2, _, _ := pacsdCmd(t, "migrate", "status", "--data", data, "--index", idx)
		if !strings.Contains(status2, "OLDPACS (dimse): finished") || !strings.Contains(status2, fmt.Sprintf("studies %d: %d verified", len(good), len(good))) {
			t.Errorf("status:\n%s", status2)
		}
	})

	t.Run("DICOMweb archive by name", func(t *testing.T) {
		// pacsd serve runs on the same SQLite index meanwhile.
		data := t.TempDir()
		srv := startPacsd(t, data)
		out, errOut, status := pacsdCmd(t, "migrate", "--remote-web", "OLDWEB="+o.DICOMwebURL, "--from", "OLDWEB",
			"--since", "20240101", "--data", data, "--concurrency", "3")
		if status != 0 || !strings.Contains(out, fmt.Sprintf("%d studies: %d verified", len(good), len(good))) {
			t.Fatalf("exit %d\n%s\n%s", status, out, errOut)
		}
		found, err := srv.dcmtk("findscu", "-S", "-k", "QueryRetrieveLevel=STUDY", "-k", "StudyInstanceUID")
		if n := strings.Count(found, "(0020,000d)"); err != nil || n != len(good) {
			t.Errorf("pacsd serve finds %d studies of the %d migrated: %v\n%s", n, len(good), err, found)
		}
		// Its metrics count the migration's studies, from the index,
		// at the next scrape.
		verified := regexp.MustCompile(fmt.Sprintf(`(?m)^pacsd_migration_studies\{source="[^"]+",state="verified"\} %d$`, len(good)))
		var metrics []byte
		for deadline := time.Now().Add(scrapeMaxAge + 10*time.Second); time.Now().Before(deadline); time.Sleep(500 * time.Millisecond) {
			if metrics, err = httpGetBody(t.Context(), "http://"+srv.httpAddr+"/metrics"); err == nil && verified.Match(metrics) {
				break
			}
		}
		if !verified.Match(metrics) {
			t.Errorf("/metrics does not count %d verified studies of the migration:\n%s", len(good), grepLines(metrics, "pacsd_migration"))
		}
		srv.stop()
		a := openArchive(t, data)
		for _, s := range good {
			for _, sop := range s.sops {
				if _, _, row := a.object(t, sop); row.Source != "migrate" {
					t.Errorf("instance %s: source %q", sop, row.Source)
				}
			}
		}
	})

	t.Run("failures and conflicts", func(t *testing.T) {
		data := t.TempDir()
		// pacsd already holds an instance of bad[3] with other content.
		dup := t.TempDir()
		clash := dcmgen.Instance{SOPInstanceUID: bad[3].sops[0], Study: dcmgen.Study{UID: bad[3].uid}, Patient: dcmgen.Patient{ID: "Q3", Name: "QUEUE^Q"}, Rows: 8, Columns: 8}
		if _, err := dcmgen.Create(filepath.Join(dup, "clash.dcm"), &clash); err != nil {
			t.Fatal(err)
		}
		if out, errOut, status := pacsdCmd(t, "import", "--data", data, dup); status != 0 {
			t.Fatalf("import: exit %d\n%s%s", status, out, errOut)
		}
		// Orthanc loses the files of bad[2].
		if lost, err := o.RemoveFiles(bad[2].sops...); err != nil || lost != 2 {
			t.Fatalf("removed %d of Orthanc's files: %v", lost, err)
		}
		out, errOut, status := pacsdCmd(t, "migrate", "--from", "OLDPACS", remote, "--until", "20231231", "--data", data,
			"--dimse-addr", "127.0.0.1:0", "--max-attempts", "2", "--log-format", "json")
		if status != 1 {
			t.Fatalf("exit %d, want 1\n%s\n%s", status, out, errOut)
		}
		reportFile := filepath.Join(t.TempDir(), "report.csv")
		if _, _, status := pacsdCmd(t, "migrate", "report", "--data", data, "--out", reportFile); status != 0 {
			t.Fatalf("report: exit %d", status)
		}
		b, _ := os.ReadFile(reportFile)
		rows := reportRows(t, string(b), "OLDPACS")
		for i, want := range []struct{ state, reason string }{
			{"conflict", "name differs"}, {"conflict", "name differs"},
			{"failed", "missing"}, {"conflict", bad[3].sops[0]},
		} {
			if r := rows[bad[i].uid]; r["state"] != want.state || !strings.Contains(r["last_error"], want.reason) {
				t.Errorf("study %d in the report: %v; want %s with %q", i, r, want.state, want.reason)
			}
		}
		if r := rows[bad[2].uid]; r["attempts"] != "2" || !strings.Contains(r["last_error"], bad[2].sops[1]) {
			t.Errorf("failed study: %v", r)
		}
		a := openArchive(t, data)
		if _, ds, _ := a.object(t, bad[3].sops[0]); !bytes.Equal(ds, fileDataset(t, filepath.Join(dup, "clash.dcm"))) {
			t.Error("the instance pacsd held was replaced by the source's")
		}
		json, _, _ := pacsdCmd(t, "migrate", "report", "--data", data, "--format", "json")
		if !strings.Contains(json, `"source": "import"`) || !strings.Contains(json, `"source": "OLDPACS"`) {
			t.Errorf("the JSON report does not list the import and the migration:\n%s", json)
		}
	})
}

// sigtermMigration runs pacsd with args until it has verified a study,
// then sends it SIGTERM: it must stop after the studies in flight and
// exit 0. It returns the studies it verified.
func sigtermMigration(t *testing.T, exe string, args []string) []string {
	t.Helper()
	stderr, err := os.Create(filepath.Join(t.TempDir(), "stderr"))
	if err != nil {
		t.Fatal(err)
	}
	defer stderr.Close()
	var stdout bytes.Buffer
	cmd := exec.CommandContext(t.Context(), exe, args...)
	cmd.Env = append(os.Environ(), "PACSD_TEST_AS_MAIN=1", "TCP_NODELAY=1")
	cmd.Stdout, cmd.Stderr = &stdout, stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	for deadline := time.Now().Add(time.Minute); time.Now().Before(deadline); time.Sleep(50 * time.Millisecond) {
		b, _ := os.ReadFile(stderr.Name())
		if len(logged(string(b), "migration: study verified", "study_instance_uid")) > 0 {
			break
		}
	}
	if err := cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	err = cmd.Wait()
	b, _ := os.ReadFile(stderr.Name())
	if err != nil || !strings.Contains(stdout.String(), "stopped; run the same command again") {
		t.Fatalf("pacsd migrate after SIGTERM: %v\n%s\n%s", err, stdout.String(), tailLines(string(b), 10))
	}
	verified := logged(string(b), "migration: study verified", "study_instance_uid")
	if len(verified) == 0 {
		t.Fatalf("no study verified before SIGTERM:\n%s", tailLines(string(b), 10))
	}
	return verified
}

// tailLines returns the last n lines of s.
func tailLines(s string, n int) string {
	lines := strings.Split(strings.TrimRight(s, "\n"), "\n")
	return strings.Join(lines[max(0, len(lines)-n):], "\n")
}

// fileDataset returns the data set of a Part-10 file.
func fileDataset(t *testing.T, path string) []byte {
	_, ds := part10(t, path)
	return ds
}

// TestImport imports a directory tree with a DICOMDIR (made by dcmtk's
// dcmmkdir, listing a file that has since gone), loose Part-10 files, a
// bare data set, a file that is not DICOM and a truncated one.
func TestImport(t *testing.T) {
	testpeer.Need(t, "dcmmkdir")
	tree := t.TempDir()
	disk, loose := filepath.Join(tree, "DISK1"), filepath.Join(tree, "loose")
	os.MkdirAll(filepath.Join(disk, "DICOM"), 0o755)
	os.MkdirAll(loose, 0o755)
	mk := func(path, study string, syntax dcmgen.Syntax) string {
		in := dcmgen.Instance{Patient: dcmgen.Patient{ID: "D1", Name: "DISK^ONE"}, Study: dcmgen.Study{UID: study, Date: "20200101", Time: "101010"},
			SOPInstanceUID: dcmgen.UID(), Rows: 16, Columns: 16, Syntax: syntax}
		if _, err := dcmgen.Create(path, &in); err != nil {
			t.Fatal(err)
		}
		return in.SOPInstanceUID
	}
	onDisk, inLoose := dcmgen.UID(), dcmgen.UID()
	var sops []string
	for i := range 3 {
		sops = append(sops, mk(filepath.Join(disk, "DICOM", fmt.Sprintf("IM%06d", i)), onDisk, dcmgen.Syntax(i%2)))
	}
	testpeer.RunT(t, "dcmmkdir", "--output-file", filepath.Join(disk, "DICOMDIR"), "+I", "+id", disk, "--recurse", "DICOM")
	os.Remove(filepath.Join(disk, "DICOM", "IM000002"))
	sops = sops[:2]
	for i := range 2 {
		sops = append(sops, mk(filepath.Join(loose, fmt.Sprintf("%d.dcm", i)), inLoose, dcmgen.ImplicitVRLittleEndian))
	}
	// A bare data set: a Part-10 file without its preamble and meta.
	bare := filepath.Join(t.TempDir(), "bare.dcm")
	sops = append(sops, mk(bare, inLoose, dcmgen.ImplicitVRLittleEndian))
	os.WriteFile(filepath.Join(loose, "IMG0007"), fileDataset(t, bare), 0o644)
	mk(filepath.Join(loose, "cut.dcm"), inLoose, dcmgen.ExplicitVRLittleEndian)
	b, _ := os.ReadFile(filepath.Join(loose, "cut.dcm"))
	os.WriteFile(filepath.Join(loose, "cut.dcm"), b[:len(b)-200], 0o644)
	os.WriteFile(filepath.Join(tree, "README.txt"), []byte("Images left by the old vendor.\n"), 0o644)

	data := t.TempDir()
	// Routes see imported instances as coming from import: their tasks
	// are queued for pacsd serve to send.
	config := filepath.Join(t.TempDir(), "pacsd.json")
	os.WriteFile(config, []byte(`{"remote_aes": ["ONWARD=127.0.0.1:1", "ELSEWHERE=127.0.0.1:2"], "routes": [
		{"name": "imports", "when": {"source": "^import$"}, "to": ["ONWARD"]},
		{"name": "migrations", "when": {"source": "^migrate$"}, "to": ["ELSEWHERE"]}]}`), 0o644)
	stdout, stderr, status := pacsdCmd(t, "import", "--config", config, "--data", data, "--log-format", "json", tree)
	if status != 0 || !strings.Contains(stdout, "import: 5 files verified, 0 already verified, 2 not DICOM or not whole") {
		t.Fatalf("import: exit %d\n%s%s", status, stdout, stderr)
	}
	queue, _, _ := pacsdCmd(t, "queue", "--config", config, "--data", data)
	if !strings.Contains(queue, "ONWARD pending=2 ") || !strings.Contains(queue, "ELSEWHERE pending=0 ") {
		t.Errorf("the queue after the import of two studies:\n%s", queue)
	}
	a := openArchive(t, data)
	for _, sop := range sops {
		if _, _, row := a.object(t, sop); row.Source != "import" {
			t.Errorf("instance %s: source %q", sop, row.Source)
		}
	}
	if _, ds, _ := a.object(t, sops[4]); !bytes.Equal(ds, fileDataset(t, bare)) {
		t.Error("the bare data set is not stored as it was")
	}
	report, _, _ := pacsdCmd(t, "migrate", "report", "--data", data)
	rows := reportRows(t, report, "import")
	if r := rows[onDisk]; r["state"] != "verified" || r["instances_here"] != "2" || r["patient_name"] != "DISK^ONE" {
		t.Errorf("study of the disk: %v", r)
	}
	if r := rows[inLoose]; r["state"] != "verified" || r["instances_here"] != "3" {
		t.Errorf("study of the loose files: %v", r)
	}
	for _, want := range []string{"README.txt,rejected,", "cut.dcm,rejected,", "IM000002,rejected,listed in "} {
		if !strings.Contains(report, want) {
			t.Errorf("report lacks %q:\n%s", want, report)
		}
	}
	stdout, _, status = pacsdCmd(t, "import", "--data", data, tree)
	if status != 0 || !strings.Contains(stdout, "0 files verified, 5 already verified") {
		t.Errorf("import again: exit %d\n%s", status, stdout)
	}
}

// TestMigrateUsage checks the command lines of migrate and import: a
// value that is also the name of a flag elsewhere stays a value, and what
// cannot run exits 2.
func TestMigrateUsage(t *testing.T) {
	getenv := func(string) string { return "" }
	kctx, err := parse([]string{"migrate", "--from", "OLD", "--via", "move", "--filter", "ModalitiesInStudy=CT"}, getenv, io.Discard, io.Discard)
	if err != nil {
		t.Fatal(err)
	}
	c, ok := kctx.Selected().Target.Addr().Interface().(*migrateRunCommand)
	if !ok || c.Via != "move" || c.From != "OLD" || c.Concurrency != 2 || c.MaxAttempts != 3 || c.Order != "newest" || len(c.Filters) != 1 {
		t.Errorf("pacsd migrate --from OLD --via move: %+v", kctx.Selected().Target.Interface())
	}
	data := t.TempDir()
	for _, args := range [][]string{
		{"migrate"},
		{"migrate", "--from", "OLD", "--via", "fax"},
		{"migrate", "--from", "OLD", "--remote-ae", "OLD=127.0.0.1:1", "--since", "2024-01-01", "--data", data},
		{"migrate", "--from", "OLD", "--remote-ae", "OLD=127.0.0.1:1", "--window", "9-5", "--data", data},
		{"migrate", "--from", "NOWHERE", "--data", data},
		{"migrate", "report", "--format", "xls", "--data", data},
		{"import", "--data", data, filepath.Join(data, "missing")},
	} {
		if got := exitCode(t, args...); got != 2 {
			t.Errorf("pacsd %s: exit status %d, want 2", strings.Join(args, " "), got)
		}
	}
}

// grepLines returns the lines of b that contain s.
func grepLines(b []byte, s string) string {
	var out []string
	for _, l := range strings.Split(string(b), "\n") {
		if strings.Contains(l, s) {
			out = append(out, l)
		}
	}
	return strings.Join(out, "\n")
}
