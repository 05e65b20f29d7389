package main

import (
	"bytes"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/pacsd/pacsd/internal/dcmgen"
)

// TestRoutesTest runs pacsd routes test on generated files and on a file
// that is not DICOM.
func TestRoutesTest(t *testing.T) {
	dir := t.TempDir()
	config := filepath.Join(dir, "pacsd.json")
	os.WriteFile(config, []byte(`{
  "remote_aes": ["REPORTING=127.0.0.1:104"],
  "remote_webs": ["TRUSTB_WEB=https://b.example/dicom-web"],
  "routes": [
    {"name": "ct-to-reporting", "when": {"calling_ae": "^(CT01|CT02)$", "Modality": "CT|MR", "StudyDescription": "(?i)head"},
     "to": ["REPORTING", "TRUSTB_WEB"], "delay": "30s", "priority": "normal"},
    {"name": "mr-night", "when": {"Modality": "^MR$"}, "to": ["TRUSTB_WEB"], "window": "19:00-07:00", "priority": "low"}
  ]}`), 0o644)
	head, err := dcmgen.Create(filepath.Join(dir, "head.dcm"), &dcmgen.Instance{Study: dcmgen.Study{Description: "CT HEAD w/o"}, Series: dcmgen.Series{Modality: "CT"}, Rows: 4, Columns: 4})
	if err != nil {
		t.Fatal(err)
	}
	mr, err := dcmgen.Create(filepath.Join(dir, "mr.dcm"), &dcmgen.Instance{Series: dcmgen.Series{Modality: "MR"}, Rows: 4, Columns: 4})
	if err != nil {
		t.Fatal(err)
	}
	junk := filepath.Join(dir, "junk.dcm")
	os.WriteFile(junk, []byte("not DICOM"), 0o644)
	env := func(string) string { return "" }

	var out, errOut bytes.Buffer
	err = run(t.Context(), []string{"routes", "test", "--config", config, "--calling-ae", "CT01", head.Path, mr.Path}, env, &out, &errOut)
	if err != nil {
		t.Fatalf("routes test: %v\n%s", err, errOut.String())
	}
	got := out.String()
	for _, want := range []string{
		head.Path + ":\n  REPORTING in 30s, priority normal (routes: ct-to-reporting)\n  TRUSTB_WEB in 30s, priority normal (routes: ct-to-reporting)\n",
		mr.Path + ":\n  TRUSTB_WEB ",
		"priority low, window 19:00-07:00 (routes: mr-night)",
	} {
		if !strings.Contains(got, want) {
			t.Errorf("output lacks %q:\n%s", want, got)
		}
	}
	out.Reset()
	err = run(t.Context(), []string{"routes", "test", "--config", config, "--calling-ae", "CT03", head.Path, junk}, env, &out, &errOut)
	if err == nil || exitStatus(err) != 1 {
		t.Errorf("a file that is not DICOM: %v", err)
	}
	if !strings.Contains(out.String(), head.Path+": no route") || !strings.Contains(out.String(), junk+": ") {
		t.Errorf("output:\n%s", out.String())
	}

	// Configurations that cannot work are refused with the reason.
	for _, tc := range []struct{ config, want string }{
		{`{"routes": [{"name": "x", "to": ["NOWHERE"]}]}`, `"NOWHERE" is neither`},
		{`{"forward": ["NOWHERE"]}`, `"NOWHERE" is neither`},
		{`{"remote_webs": ["W=ftp://x"]}`, "http:// or https://"},
		{`{"remote_webs": ["W=https://user:pw@x/dicom-web"]}`, "credentials do not belong"},
		{`{"remote_aes": ["A=h:1"], "remote_webs": ["A=https://x"]}`, "also a remote AE"},
		{`{"remote_aes": ["A=h:1"], "destinations": {"B": {}}}`, `"B" is neither`},
		{`{"remote_webs": ["W=https://x"], "destinations": {"W": {"commit": true}}}`, "commit is for DIMSE"},
		{`{"remote_aes": ["A=h:1"], "destinations": {"A": {"backoff": "soon"}}}`, "not a positive duration"},
		{`{"remote_web_tokens": {"W": "t"}}`, "no DICOMweb destination"},
	} {
		os.WriteFile(config, []byte(tc.config), 0o644)
		err := run(t.Context(), []string{"routes", "test", "--config", config, head.Path}, env, &out, &errOut)
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%s: %v, want %q", tc.config, err, tc.want)
		}
	}
}
