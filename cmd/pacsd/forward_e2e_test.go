package main

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/pacsd/pacsd/internal/dcmgen"
	"github.com/pacsd/pacsd/internal/testpeer"
)

// receivedOnce checks that scp holds every file of files once, its data
// set bytes as sent, and that it received none more than once beyond
// extra.
func receivedOnce(t *testing.T, scp *testpeer.StoreSCP, files []dcmgen.File, extra int) {
	t.Helper()
	got, err := scp.Files()
	if err != nil {
		t.Fatal(err)
	}
	for _, f := range files {
		path, ok := got[f.SOPInstanceUID]
		if !ok {
			t.Errorf("%s did not arrive", f.SOPInstanceUID)
			continue
		}
		_, want := part10(t, f.Path)
		if _, ds := part10(t, path); !bytes.Equal(ds, want) {
			t.Errorf("%s arrived changed", f.SOPInstanceUID)
		}
	}
	b, _ := os.ReadFile(scp.Process().Log())
	if n := strings.Count(string(b), "Received Store Request"); n < len(files) || n > len(files)+extra {
		t.Errorf("storescp received %d C-STOREs for %d instances (at most %d more allowed)", n, len(files), extra)
	}
}

// waitReceived waits until scp holds n instances.
func waitReceived(t *testing.T, scp *testpeer.StoreSCP, n int, limit time.Duration) {
	t.Helper()
	deadline := time.Now().Add(limit)
	for {
		got, err := scp.Files()
		if err != nil {
			t.Fatal(err)
		}
		if len(got) >= n {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("storescp holds %d of %d instances after %s", len(got), n, limit)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// TestForwardKilled kills pacsd (SIGKILL) while it forwards 300
// instances to storescp and starts it again: every instance arrives,
// byte for byte, and none more than once but those in flight at the kill.
func TestForwardKilled(t *testing.T) {
	testpeer.Need(t, "storescu", "storescp")
	scp := testpeer.StartStoreSCPT(t, testpeer.StoreSCPOptions{AET: "DEST", Args: []string{"+B"}})
	data := t.TempDir()
	// A bandwidth cap of 4 Mbit/s makes forwarding the 5 MB take some
	// 10 s, so that pacsd is killed in the middle of it.
	config := filepath.Join(t.TempDir(), "pacsd.json")
	os.WriteFile(config, []byte(`{"destinations": {"DEST": {"max_mbps": 4}}}`), 0o644)
	flags := []string{"--remote-ae", "DEST=" + scp.Addr, "--forward", "DEST", "--config", config}
	p := startPacsd(t, data, flags...)
	dir, files := writeSeriesIn(t, 300, 16<<10, "KILLED")
	if out, err := p.dcmtk("storescu", "+sd", dir); err != nil {
		t.Fatalf("storescu: %v\n%s", err, out)
	}
	waitReceived(t, scp, 60, time.Minute)
	if err := p.proc.Kill(); err != nil {
		t.Fatal(err)
	}
	got, _ := scp.Files()
	if len(got) >= len(files) {
		t.Fatalf("all %d instances had arrived when pacsd was killed", len(got))
	}
	t.Logf("%d instances at the destination when pacsd was killed", len(got))
	p = startPacsd(t, data, flags...)
	defer p.stop()
	waitReceived(t, scp, len(files), 2*time.Minute)
	time.Sleep(time.Second)
	// A node restarted takes its tasks back at once: what it had sent
	// since it last recorded progress, a second before the kill at
	// most, is sent again.
	receivedOnce(t, scp, files, 40)
	var out bytes.Buffer
	if err := run(t.Context(), []string{"queue", "--data", data, "--remote-ae", "DEST=" + scp.Addr, "--config", config}, func(string) string { return "" }, &out, &out); err != nil {
		t.Fatalf("pacsd queue: %v\n%s", err, out.String())
	}
	if !strings.Contains(out.String(), "DEST pending=0 in_flight=0 failed=0 done_24h=1 oldest_pending=0s") {
		t.Errorf("pacsd queue:\n%s", out.String())
	}
}

// TestForwardTwoNodes stores 200 instances through two pacsd nodes on
// one PostgreSQL and one bucket, forwarding to storescp, and kills one
// while it forwards: the other finishes, and each instance arrives once
// but those in flight at the kill.
func TestForwardTwoNodes(t *testing.T) {
	testpeer.Need(t, "storescu", "storescp", "minio", "postgres")
	scp := testpeer.StartStoreSCPT(t, testpeer.StoreSCPOptions{AET: "DEST", Args: []string{"+B"}})
	a3 := newS3Archive(t)
	pg := testpeer.StartPostgresT(t)
	db := pg.NewDatabaseT(t)
	// Each node forwards at 8 Mbit/s at most, so that node A is killed
	// in the middle; B takes its task over 3 s later.
	config := filepath.Join(t.TempDir(), "pacsd.json")
	os.WriteFile(config, []byte(`{"destinations": {"DEST": {"max_mbps": 8}}}`), 0o644)
	flags := []string{"--storage", a3.url(), "--index", db, "--remote-ae", "DEST=" + scp.Addr, "--forward", "DEST",
		"--config", config, "--forward-lease", "3s"}
	A := startPacsd(t, t.TempDir(), flags...)
	B := startPacsd(t, t.TempDir(), flags...)
	defer B.stop()
	var files []dcmgen.File
	dirA, fa := writeSeriesIn(t, 100, 32<<10, "A")
	dirB, fb := writeSeriesIn(t, 100, 32<<10, "B")
	files = append(fa, fb...)
	done := make(chan error, 2)
	go func() { _, err := A.dcmtk("storescu", "+sd", dirA); done <- err }()
	go func() { _, err := B.dcmtk("storescu", "+sd", dirB); done <- err }()
	for range 2 {
		if err := <-done; err != nil {
			t.Fatalf("storescu: %v", err)
		}
	}
	waitReceived(t, scp, 50, time.Minute)
	if err := A.proc.Kill(); err != nil {
		t.Fatal(err)
	}
	if got, _ := scp.Files(); len(got) >= len(files) {
		t.Fatalf("all %d instances had arrived when node A was killed", len(got))
	}
	// B takes A's task over once its lease has run out.
	waitReceived(t, scp, len(files), 2*time.Minute)
	time.Sleep(time.Second)
	receivedOnce(t, scp, files, 40)
}

// writeSeriesIn writes a series of n instances of about size bytes, of
// a study of its own, its patient named name.
func writeSeriesIn(t *testing.T, n int, size int64, name string) (string, []dcmgen.File) {
	t.Helper()
	dir := t.TempDir()
	files, err := dcmgen.WriteSeries(dir, n, size, dcmgen.Instance{Patient: dcmgen.Patient{Name: name, ID: name}})
	if err != nil {
		t.Fatal(err)
	}
	return dir, files
}

// TestQueueCommands: with a destination that refuses connections, the
// queue commands and the API show, retry and drop its tasks while pacsd
// serve runs.
func TestQueueCommands(t *testing.T) {
	testpeer.Need(t, "storescu")
	port, err := testpeer.FreePort()
	if err != nil {
		t.Fatal(err)
	}
	data := t.TempDir()
	config := filepath.Join(t.TempDir(), "pacsd.json")
	os.WriteFile(config, []byte(fmt.Sprintf(`{"remote_aes": ["DEAD=127.0.0.1:%d"], "forward": ["DEAD"],
 "destinations": {"DEAD": {"max_attempts": 1}}}`, port)), 0o644)
	p := startPacsd(t, data, "--config", config)
	defer p.stop()
	dir, files := writeSeries(t, 3)
	if out, err := p.dcmtk("storescu", "+sd", dir); err != nil {
		t.Fatalf("storescu: %v\n%s", err, out)
	}
	study := files[0].StudyInstanceUID
	env := func(string) string { return "" }
	pacsd := func(args ...string) string {
		t.Helper()
		var out bytes.Buffer
		if err := run(t.Context(), append(args, "--data", data, "--config", config), env, &out, &out); err != nil {
			t.Fatalf("pacsd %v: %v\n%s", args, err, out.String())
		}
		return out.String()
	}
	deadline := time.Now().Add(30 * time.Second)
	for !strings.Contains(pacsd("queue"), "failed=1") {
		if time.Now().After(deadline) {
			t.Fatalf("the task did not fail:\n%s\n%s", pacsd("queue"), p.proc.LogTail(20))
		}
		time.Sleep(200 * time.Millisecond)
	}
	var rep struct {
		Destinations []struct {
			Name      string `json:"name"`
			Failed    int    `json:"failed"`
			LastError string `json:"last_error"`
		} `json:"destinations"`
	}
	if err := json.Unmarshal([]byte(pacsd("queue", "--json")), &rep); err != nil || len(rep.Destinations) != 1 || rep.Destinations[0].Failed != 1 ||
		!strings.Contains(rep.Destinations[0].LastError, "connection refused") {
		t.Errorf("queue --json: %+v %v", rep, err)
	}
	resp, err := http.Get("http://" + p.httpAddr + "/api/queue")
	if err != nil || resp.StatusCode != 200 {
		t.Fatalf("GET /api/queue: %v %v", resp, err)
	}
	resp.Body.Close()
	if out := pacsd("queue", "retry", "--to", "DEAD", "--failed"); !strings.Contains(out, "1 tasks requeued") {
		t.Errorf("queue retry: %s", out)
	}
	if out := pacsd("send", "--to", "DEAD", "--study", study); !strings.Contains(out, "queued 3 instances") {
		t.Errorf("send: %s", out)
	}
	resp, err = http.Post("http://"+p.httpAddr+"/api/studies/"+study+"/send", "application/json", strings.NewReader(`{"to": ["DEAD"]}`))
	if err != nil || resp.StatusCode != http.StatusAccepted {
		t.Fatalf("POST send: %v %v", resp, err)
	}
	resp.Body.Close()
	if out := pacsd("queue", "drop", "--to", "DEAD", "--study", study); !strings.Contains(out, "dropped") {
		t.Errorf("queue drop: %s", out)
	}
	if out := pacsd("queue"); !strings.Contains(out, "DEAD pending=0 in_flight=0 failed=0") {
		t.Errorf("queue after drop: %s", out)
	}
	var errOut bytes.Buffer
	if err := run(t.Context(), []string{"queue", "drop", "--to", "DEAD", "--study", study, "--data", data, "--config", config}, env, &errOut, &errOut); err == nil {
		t.Error("dropping a task twice succeeded")
	}
	// /readyz does not depend on destinations.
	resp, err = http.Get("http://" + p.httpAddr + "/readyz")
	if err != nil || resp.StatusCode != 200 {
		t.Errorf("/readyz with a dead destination: %v %v", resp, err)
	}
}

// TestForwardOrthanc runs pacsd serve with routes to Orthanc over DIMSE
// with Storage Commitment, which Orthanc reports on an association of its
// own to pacsd, and by STOW-RS to its DICOMweb plugin with a QIDO-RS
// count, and to a DICOMweb server that wants a bearer token, given in the
// environment over the config file's: each study arrives where its route
// says, byte for byte, and the token appears in no log.
func TestForwardOrthanc(t *testing.T) {
	testpeer.Need(t, "Orthanc", "storescu")
	port, err := testpeer.FreePort()
	if err != nil {
		t.Fatal(err)
	}
	o := testpeer.StartOrthancT(t, testpeer.OrthancOptions{DICOMweb: true,
		Modalities: map[string]testpeer.Modality{"pacsd": {AET: "PACSD", Host: "127.0.0.1", Port: port}}})
	var mu sync.Mutex
	var tokens []string
	tokenWeb := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		io.Copy(io.Discard, r.Body)
		mu.Lock()
		tokens = append(tokens, r.Header.Get("Authorization"))
		mu.Unlock()
		w.Header().Set("Content-Type", "application/dicom+json")
		io.WriteString(w, "{}")
	}))
	defer tokenWeb.Close()
	t.Setenv("PACSD_REMOTE_WEB_TOKEN_TOKEN_WEB", "env-t0k3n")
	config := filepath.Join(t.TempDir(), "pacsd.json")
	os.WriteFile(config, []byte(fmt.Sprintf(`{
  "remote_aes": [%q],
  "remote_webs": [%q, %q],
  "remote_web_tokens": {"TOKEN_WEB": "file-t0k3n"},
  "routes": [
    {"name": "dimse", "when": {"PatientName": "^VIA_DIMSE$"}, "to": [%q]},
    {"name": "web", "when": {"PatientName": "^VIA_WEB$", "source": "^dimse$"}, "to": ["ORTHANC_WEB", "TOKEN_WEB"], "delay": "1s"}
  ],
  "destinations": {%q: {"commit": true, "commit_timeout": "1m"}, "ORTHANC_WEB": {"verify": true, "max_batch_bytes": 100000}}
}`, o.AET+"="+o.DICOMAddr, "ORTHANC_WEB="+o.DICOMwebURL, "TOKEN_WEB="+tokenWeb.URL, o.AET, o.AET)), 0o644)
	data := t.TempDir()
	p := startPacsd(t, data, "--dimse-addr", "127.0.0.1:"+strconv.Itoa(port), "--config", config)
	defer p.stop()
	dirD, viaDIMSE := writeSeriesIn(t, 5, 32<<10, "VIA_DIMSE")
	dirW, viaWeb := writeSeriesIn(t, 5, 32<<10, "VIA_WEB")
	if out, err := p.dcmtk("storescu", "+sd", dirD, dirW); err != nil {
		t.Fatalf("storescu: %v\n%s", err, out)
	}

	var rep struct {
		Destinations []struct {
			Name      string `json:"name"`
			Pending   int    `json:"pending"`
			InFlight  int    `json:"in_flight"`
			Failed    int    `json:"failed"`
			Done24h   int    `json:"done_24h"`
			LastError string `json:"last_error"`
		} `json:"destinations"`
	}
	deadline := time.Now().Add(time.Minute)
	for {
		var out bytes.Buffer
		if err := run(t.Context(), []string{"queue", "--json", "--data", data, "--config", config}, func(string) string { return "" }, &out, &out); err != nil {
			t.Fatalf("pacsd queue: %v\n%s", err, out.String())
		}
		rep.Destinations = nil
		if err := json.Unmarshal(out.Bytes(), &rep); err != nil {
			t.Fatal(err)
		}
		done := len(rep.Destinations) == 3
		for _, d := range rep.Destinations {
			done = done && d.Done24h == 1 && d.Pending+d.InFlight+d.Failed == 0
		}
		if done {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("not forwarded within a minute: %+v\n%s", rep, p.proc.LogTail(20))
		}
		time.Sleep(200 * time.Millisecond)
	}
	for _, tc := range []struct {
		name  string
		files []dcmgen.File
	}{{"DIMSE", viaDIMSE}, {"STOW-RS", viaWeb}} {
		got := orthancStudyDatasets(t, o, tc.files[0].StudyInstanceUID)
		if len(got) != len(tc.files) {
			t.Errorf("%s: Orthanc holds %d instances of the study, want %d", tc.name, len(got), len(tc.files))
		}
		for _, f := range tc.files {
			if _, want := part10(t, f.Path); !bytes.Equal(got[f.SOPInstanceUID], want) {
				t.Errorf("%s: %s did not arrive unchanged", tc.name, f.SOPInstanceUID)
			}
		}
	}
	mu.Lock()
	if len(tokens) == 0 || slices.ContainsFunc(tokens, func(s string) bool { return s != "Bearer env-t0k3n" }) {
		t.Errorf("TOKEN_WEB got Authorization %q, want the environment's token", tokens)
	}
	mu.Unlock()
	if log := p.log(); strings.Contains(log, "t0k3n") {
		t.Error("a token is in the log")
	}
	if findLog(p.log(), "storage commitment result for no waiting request; dropped") != nil {
		t.Error("Orthanc's commitment result reached no waiting sender")
	}
}

// TestForwardKilledWhileStoring kills pacsd (SIGKILL) while storescu
// sends it a study it forwards, and starts it again: every instance the
// index holds, which includes every one acknowledged to storescu,
// arrives at the destination, since its task was written with it.
func TestForwardKilledWhileStoring(t *testing.T) {
	testpeer.Need(t, "storescu", "storescp")
	scp := testpeer.StartStoreSCPT(t, testpeer.StoreSCPOptions{AET: "DEST", Args: []string{"+B"}})
	data := t.TempDir()
	flags := []string{"--remote-ae", "DEST=" + scp.Addr, "--forward", "DEST"}
	p := startPacsd(t, data, flags...)
	dir, files := writeSeriesIn(t, 300, 16<<10, "STORING")
	sent := make(chan struct{})
	go func() {
		defer close(sent)
		p.dcmtk("storescu", "+sd", dir) // fails when pacsd is killed
	}()
	deadline := time.Now().Add(time.Minute)
	for strings.Count(p.log(), `"msg":"instance stored"`) < 100 {
		if time.Now().After(deadline) {
			t.Fatalf("pacsd stored under 100 instances in a minute:\n%s", p.proc.LogTail(20))
		}
		time.Sleep(5 * time.Millisecond)
	}
	if err := p.proc.Kill(); err != nil {
		t.Fatal(err)
	}
	<-sent
	p = startPacsd(t, data, flags...)
	defer p.stop()
	study := files[0].StudyInstanceUID
	held := func() map[string]bool {
		resp, err := http.Get("http://" + p.httpAddr + "/dicom-web/studies/" + study + "/instances")
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		var res []struct {
			SOPInstanceUID struct{ Value []string } `json:"00080018"`
		}
		if resp.StatusCode != http.StatusOK {
			t.Fatalf("QIDO-RS: %s", resp.Status)
		}
		if err := json.NewDecoder(resp.Body).Decode(&res); err != nil {
			t.Fatalf("QIDO-RS: %v", err)
		}
		out := map[string]bool{}
		for _, r := range res {
			out[r.SOPInstanceUID.Value[0]] = true
		}
		return out
	}
	indexed := held()
	if len(indexed) < 100 {
		t.Fatalf("the index holds %d instances after the restart, want at least the 100 stored before the kill", len(indexed))
	}
	t.Logf("%d of %d instances stored when pacsd was killed", len(indexed), len(files))
	waitReceived(t, scp, len(indexed), time.Minute)
	got, err := scp.Files()
	if err != nil {
		t.Fatal(err)
	}
	for sop := range indexed {
		if _, ok := got[sop]; !ok {
			t.Errorf("%s, in the index, did not arrive", sop)
		}
	}
}
