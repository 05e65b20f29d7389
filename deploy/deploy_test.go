package deploy

import (
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"

	"github.com/pacsd/pacsd/internal/testpeer"
)

// TestSystemdUnit checks the unit with systemd's own tools: `verify`
// (syntax, directives, the command exists and is executable) and
// `security` (the exposure score of its sandboxing must stay "OK", at
// most 2.0 of 10). The unit names /usr/local/bin/pacsd, which a test
// machine lacks; verify only checks that the command exists and is
// executable, so the copy checked names this test's own executable in its
// place, and nothing else changes. TestSingleNode runs pacsd with the
// unit's arguments.
func TestSystemdUnit(t *testing.T) {
	testpeer.Need(t, "systemd-analyze")
	unit, err := os.ReadFile(filepath.Join("systemd", "pacsd.service"))
	if err != nil {
		t.Fatal(err)
	}
	const bin = "/usr/local/bin/pacsd"
	if !strings.Contains(string(unit), "ExecStart="+bin+" serve --config /etc/pacsd/pacsd.json\n") {
		t.Fatalf("the unit does not start %s serve --config /etc/pacsd/pacsd.json, as deploy/README.md says", bin)
	}
	for _, d := range []string{"DynamicUser=yes", "StateDirectory=pacsd", "ProtectSystem=strict", "ProtectHome=yes",
		"NoNewPrivileges=yes", "PrivateTmp=yes", "CapabilityBoundingSet=\n", "SystemCallFilter=@system-service"} {
		if !strings.Contains(string(unit), "\n"+d) {
			t.Errorf("the unit lacks %q", strings.TrimSpace(d))
		}
	}
	self, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	copyPath := filepath.Join(t.TempDir(), "pacsd.service")
	if err := os.WriteFile(copyPath, []byte(strings.ReplaceAll(string(unit), bin, self)), 0o644); err != nil {
		t.Fatal(err)
	}
	if out, err := exec.CommandContext(t.Context(), "systemd-analyze", "verify", copyPath).CombinedOutput(); err != nil || len(out) > 0 {
		t.Errorf("systemd-analyze verify: %v\n%s", err, out)
	}
	out, err := exec.CommandContext(t.Context(), "systemd-analyze", "security", "--offline=yes", "--threshold=20", copyPath).CombinedOutput()
	score := regexp.MustCompile(`Overall exposure level for \S+: (\S+ \S+)`).FindSubmatch(out)
	if err != nil || score == nil {
		t.Errorf("systemd-analyze security --threshold=20: %v\n%s", err, out)
	} else {
		t.Logf("systemd-analyze security: exposure %s", score[1])
	}
}

// node is a pacsd started from an example configuration.
type node struct{ *testpeer.Pacsd }

// startNode runs `pacsd serve --config config`, as the unit does, and
// waits until it serves. The data directory and the listen addresses are
// the test's own (flags, which override the file).
func startNode(t *testing.T, config string) *node {
	t.Helper()
	return &node{testpeer.StartPacsdT(t, raceEnabled, "--config", config)}
}

func (n *node) hostPort(t *testing.T) (string, string) {
	t.Helper()
	h, p, err := net.SplitHostPort(n.DIMSEAddr)
	if err != nil {
		t.Fatal(err)
	}
	return h, p
}

// echo runs echoscu against the node as callingAE and reports whether
// the association was accepted.
func (n *node) echo(t *testing.T, callingAE string) bool {
	t.Helper()
	h, p := n.hostPort(t)
	_, _, err := testpeer.Run(t.Context(), "echoscu", "-aet", callingAE, "-aec", "PACSD", h, p)
	return err == nil
}

func (n *node) store(t *testing.T, callingAE string, files ...string) {
	t.Helper()
	h, p := n.hostPort(t)
	args := append([]string{"-aet", callingAE, "-aec", "PACSD", h, p}, files...)
	if _, stderr, err := testpeer.Run(t.Context(), "storescu", args...); err != nil {
		t.Fatalf("storescu: %v\n%s", err, stderr)
	}
}

// studies returns the Study Instance UIDs QIDO-RS finds on the node.
func (n *node) studies(t *testing.T) []string {
	t.Helper()
	resp, err := http.Get("http://" + n.HTTPAddr + "/dicom-web/studies")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	if resp.StatusCode == http.StatusNoContent {
		return nil
	}
	var matches []struct {
		Study struct{ Value []string } `json:"0020000D"`
	}
	if err := json.NewDecoder(resp.Body).Decode(&matches); err != nil {
		t.Fatal(err)
	}
	var uids []string
	for _, m := range matches {
		uids = append(uids, m.Study.Value...)
	}
	return uids
}

func (n *node) ready(t *testing.T) {
	t.Helper()
	resp, err := http.Get("http://" + n.HTTPAddr + "/readyz")
	if err != nil {
		t.Fatal(err)
	}
	b, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		t.Errorf("/readyz: %s %s", resp.Status, b)
	}
}

const sample = "../testdata/dicom/ct-explicit-le.dcm"

// sampleStudy is the Study Instance UID of sample.
func sampleStudy(t *testing.T) string {
	t.Helper()
	attrs, err := testpeer.Dump(t.Context(), sample)
	if err != nil {
		t.Fatal(err)
	}
	return attrs[0x0020000D]
}

// TestSingleNode starts pacsd on the one-node example configuration
// (filesystem and SQLite under the data directory), as the unit does.
// The test moves the data directory and the listen addresses to its own;
// every other setting is the example's. The allow-list of the example is in
// force: its local QA title may store, a modality's title from another
// host may not.
func TestSingleNode(t *testing.T) {
	testpeer.Need(t, "echoscu", "storescu", "dcmdump")
	config, err := filepath.Abs(filepath.Join("single-node", "pacsd.json"))
	if err != nil {
		t.Fatal(err)
	}
	n := startNode(t, config)
	if !n.echo(t, "PACSD_QA") {
		t.Fatal("C-ECHO as PACSD_QA from 127.0.0.1 was refused")
	}
	if n.echo(t, "CT01") {
		t.Error("C-ECHO as CT01 from 127.0.0.1 was accepted; the example allows CT01 only from 10.20.0.11")
	}
	n.store(t, "PACSD_QA", sample)
	if got, want := n.studies(t), sampleStudy(t); len(got) != 1 || got[0] != want {
		t.Errorf("QIDO-RS finds studies %v, want [%s]", got, want)
	}
	n.ready(t)
	// pacsd status, as deploy/README.md runs it, with the test's port.
	out, stderr, err := testpeer.Run(t.Context(), n.Bin, "status", "--config", config, "--http-addr", n.HTTPAddr)
	if err != nil || !strings.Contains(out, ", ready, up ") || !strings.Contains(out, "1 instances") {
		t.Errorf("pacsd status: %v\n%s%s", err, out, stderr)
	}
	if err := n.Stop(); err != nil {
		t.Error(err)
	}
	if b, _ := os.ReadFile(n.Log()); !strings.Contains(string(b), `"msg":"pacsd stopped"`) {
		t.Errorf("pacsd did not stop cleanly:\n%s", n.LogTail(20))
	}
}

// TestTwoNodes starts two pacsd nodes on the two-node example
// configuration, sharing a MinIO bucket and a PostgreSQL database: what
// one node stores, the other finds. The test replaces only what names the
// servers of a trust — the S3 endpoint and its TLS, the PostgreSQL host,
// user, database and TLS — with its own; the credentials come from the
// environment, as the example's pacsd.env gives them.
func TestTwoNodes(t *testing.T) {
	testpeer.Need(t, "echoscu", "storescu", "dcmdump")
	s3 := testpeer.StartMinIOT(t)
	pg := testpeer.StartPostgresT(t)
	b, err := os.ReadFile(filepath.Join("two-nodes", "pacsd.json"))
	if err != nil {
		t.Fatal(err)
	}
	var cfg map[string]any
	if err := json.Unmarshal(b, &cfg); err != nil {
		t.Fatal(err)
	}
	storage, err := url.Parse(cfg["storage"].(string))
	if err != nil {
		t.Fatal(err)
	}
	q := storage.Query()
	if q.Get("endpoint") == "" || q.Get("secure") != "true" {
		t.Fatalf("the example's storage %s names no endpoint or does not use TLS", storage)
	}
	q.Set("endpoint", s3.Endpoint)
	q.Set("secure", "false")
	storage.RawQuery = q.Encode()
	cfg["storage"] = storage.String()
	if idx := cfg["index"].(string); !strings.HasPrefix(idx, "postgres://") || !strings.Contains(idx, "sslmode=verify-full") {
		t.Fatalf("the example's index %s is not PostgreSQL over verified TLS", idx)
	}
	cfg["index"] = pg.NewDatabaseT(t)
	out, _ := json.Marshal(cfg)
	config := filepath.Join(t.TempDir(), "pacsd.json")
	if err := os.WriteFile(config, out, 0o600); err != nil {
		t.Fatal(err)
	}
	// As systemd passes what pacsd.env holds.
	t.Setenv("AWS_ACCESS_KEY_ID", s3.AccessKey)
	t.Setenv("AWS_SECRET_ACCESS_KEY", s3.SecretKey)
	a := startNode(t, config)
	bnode := startNode(t, config)
	a.store(t, "PACSD_QA", sample)
	if got, want := bnode.studies(t), sampleStudy(t); len(got) != 1 || got[0] != want {
		t.Errorf("the second node finds studies %v, want [%s] stored through the first", got, want)
	}
	if !bnode.echo(t, "PACSD_QA") {
		t.Error("the second node refused C-ECHO")
	}
	a.ready(t)
	bnode.ready(t)
}

// TestExamplesHoldNoSecrets: credentials belong in pacsd.env, readable by
// root only, never in a configuration file that is copied around.
func TestExamplesHoldNoSecrets(t *testing.T) {
	for _, f := range []string{"single-node/pacsd.json", "two-nodes/pacsd.json"} {
		b, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		var cfg map[string]any
		if err := json.Unmarshal(b, &cfg); err != nil {
			t.Fatalf("%s: %v", f, err)
		}
		for k, v := range cfg {
			s := fmt.Sprint(v)
			if strings.Contains(k, "secret") || strings.Contains(k, "access_key") || strings.Contains(k, "token") ||
				regexp.MustCompile(`://[^/@]+:[^/@]+@`).MatchString(s) {
				t.Errorf("%s: %s holds a secret", f, k)
			}
		}
	}
}
