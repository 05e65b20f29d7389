package main

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"mime/multipart"
	"net/http"
	"net/textproto"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/pacsd/pacsd/dicom/tag"
	"github.com/pacsd/pacsd/internal/testpeer"
)

// TestPerTrustAccess runs pacsd for two trusts: each one's AE title and
// machine token see, retrieve and store only the patients of its own
// Issuer of Patient ID, over DIMSE, QIDO-RS, WADO-RS and /api; and the
// audit trail records each store, query and retrieve, with who did it
// and the study, in messages that validate against the PS3.15 schema.
func TestPerTrustAccess(t *testing.T) {
	testpeer.Need(t, "storescu", "findscu", "getscu", "xmllint")
	files := t.TempDir()
	corpus := writeCorpus(t, files) // A: TRUST-A, B: TRUST-B, C and D: no issuer
	studyA, studyB := corpus[0], corpus[1]
	// writeCorpus numbers the files from 001.dcm, study by study.
	fileOf := func(st *qrStudy) string {
		n := 1
		for _, s := range corpus[:slices.Index(corpus, st)] {
			n += s.instanceCount()
		}
		return filepath.Join(files, fmt.Sprintf("%03d.dcm", n))
	}

	tokens := filepath.Join(t.TempDir(), "tokens")
	token := func(name, scopes, issuers string) string {
		var stdout, stderr bytes.Buffer
		args := []string{"token", "create", name, "--scopes", scopes, "--token-file", tokens}
		if issuers != "" {
			args = append(args, "--issuers", issuers)
		}
		if err := run(t.Context(), args, func(string) string { return "" }, &stdout, &stderr); err != nil {
			t.Fatalf("pacsd token create: %v\n%s", err, stderr.String())
		}
		return strings.TrimSpace(stdout.String())
	}
	tokenA, tokenB := token("trust-a", "read,write", "TRUST-A"), token("trust-b", "read,write", "TRUST-B")
	research := token("researcher", "research", "")

	data := t.TempDir()
	p := startPacsd(t, data, "--http-auth", "token", "--token-file", tokens,
		"--allow-ae", "DCMTK@127.0.0.1,TRUSTA@127.0.0.1#TRUST-A,TRUSTB@127.0.0.1#TRUST-B")
	ctx := context.Background()
	storescu := func(ae string, files ...string) string {
		args := append([]string{"-v", "-aet", ae, "-aec", "PACSD", p.host(), p.port()}, files...)
		stdout, stderr, _ := testpeer.Run(ctx, "storescu", args...)
		return stdout + stderr
	}
	// TRUST-A's AE stores its own study, and is refused the other's.
	if out := storescu("TRUSTA", fileOf(studyA), fileOf(studyB)); !strings.Contains(out, "Status: 0x124") {
		t.Errorf("storescu as TRUSTA of TRUST-B's instance: want status 0124:\n%s", out)
	}
	all, _ := filepath.Glob(filepath.Join(files, "*.dcm"))
	if out, err := p.dcmtk("storescu", all...); err != nil {
		t.Fatalf("storescu as DCMTK: %v\n%s", err, out)
	}

	t.Run("DIMSE", func(t *testing.T) {
		for ae, want := range map[string][]string{"TRUSTA": {studyA.uid}, "TRUSTB": {studyB.uid}, "DCMTK": {corpus[0].uid, corpus[1].uid, corpus[2].uid, corpus[3].uid}} {
			dir := t.TempDir()
			_, stderr, err := testpeer.Run(ctx, "findscu", "-S", "-X", "-od", dir, "-aet", ae, "-aec", "PACSD", "-k", "QueryRetrieveLevel=STUDY", "-k", "StudyInstanceUID", p.host(), p.port())
			if err != nil {
				t.Fatalf("findscu as %s: %v\n%s", ae, err, stderr)
			}
			rsps, _ := filepath.Glob(filepath.Join(dir, "rsp*.dcm"))
			var got []string
			for _, f := range rsps {
				d, err := testpeer.Dump(ctx, f)
				if err != nil {
					t.Fatal(err)
				}
				got = append(got, d[uint32(tag.StudyInstanceUID)])
			}
			if !slices.Equal(sorted(got...), sorted(want...)) {
				t.Errorf("C-FIND as %s: studies %v, want %v", ae, got, want)
			}
		}
		// A C-GET of the other trust's study finds nothing to send.
		dir := t.TempDir()
		out, stderr, _ := testpeer.Run(ctx, "getscu", "-S", "-od", dir, "-aet", "TRUSTA", "-aec", "PACSD", "-k", "QueryRetrieveLevel=STUDY", "-k", "StudyInstanceUID="+studyB.uid, p.host(), p.port())
		if got, _ := filepath.Glob(filepath.Join(dir, "*")); len(got) != 0 {
			t.Errorf("C-GET as TRUSTA of TRUST-B's study received %d files\n%s%s", len(got), out, stderr)
		}
		if _, stderr, err := testpeer.Run(ctx, "getscu", "-S", "-od", dir, "-aet", "TRUSTA", "-aec", "PACSD", "-k", "QueryRetrieveLevel=STUDY", "-k", "StudyInstanceUID="+studyA.uid, p.host(), p.port()); err != nil {
			t.Fatalf("C-GET as TRUSTA of its study: %v\n%s", err, stderr)
		}
		if got, _ := filepath.Glob(filepath.Join(dir, "*")); len(got) != studyA.instanceCount() {
			t.Errorf("C-GET as TRUSTA of its study received %d files, want %d", len(got), studyA.instanceCount())
		}
	})

	base := "http://" + p.httpAddr + "/dicom-web"
	t.Run("DICOMweb", func(t *testing.T) {
		for _, tc := range []struct {
			token string
			mine  *qrStudy
			other *qrStudy
		}{{tokenA, studyA, studyB}, {tokenB, studyB, studyA}} {
			resp, body := request(t, "GET", base+"/studies", tc.token, nil)
			var got []map[string]json.RawMessage
			if resp.StatusCode != 200 || json.Unmarshal([]byte(body), &got) != nil || len(got) != 1 || !strings.Contains(string(got[0]["0020000D"]), tc.mine.uid) {
				t.Errorf("QIDO-RS: status %d, %s; want only study %s", resp.StatusCode, body, tc.mine.uid)
			}
			if resp, _ := request(t, "GET", base+"/studies/"+tc.mine.uid+"/metadata", tc.token, nil); resp.StatusCode != 200 {
				t.Errorf("WADO-RS of its own study: status %d", resp.StatusCode)
			}
			if resp, _ := request(t, "GET", base+"/studies/"+tc.other.uid, tc.token, map[string]string{"Accept": "multipart/related; type=application/dicom"}); resp.StatusCode != 404 {
				t.Errorf("WADO-RS of the other trust's study: status %d, want 404", resp.StatusCode)
			}
		}
		// STOW-RS of the other trust's patient fails the instance.
		b, err := os.ReadFile(fileOf(studyB))
		if err != nil {
			t.Fatal(err)
		}
		var body bytes.Buffer
		mw := multipart.NewWriter(&body)
		w, _ := mw.CreatePart(textproto.MIMEHeader{"Content-Type": {"application/dicom"}})
		w.Write(b)
		mw.Close()
		req, _ := http.NewRequestWithContext(t.Context(), "POST", base+"/studies", &body)
		req.Header.Set("Content-Type", `multipart/related; type="application/dicom"; boundary=`+mw.Boundary())
		req.Header.Set("Accept", "application/dicom+json")
		req.Header.Set("Authorization", "Bearer "+tokenA)
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		out, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode != 409 || !strings.Contains(string(out), `"Value":[292]`) {
			t.Errorf("STOW-RS by trust-a of TRUST-B's instance: status %d, %s; want 409 with failure reason 0124 (292)", resp.StatusCode, out)
		}

		// The research scope alone gets no original.
		for _, path := range []string{"/studies", "/studies/" + studyA.uid + "/metadata"} {
			if resp, _ := request(t, "GET", base+path, research, nil); resp.StatusCode != 403 {
				t.Errorf("GET %s with the research scope alone: status %d, want 403", path, resp.StatusCode)
			}
		}
		if resp, _ := request(t, "GET", base+"/studies/"+studyA.uid+"/series/"+studyA.seriesUID[0]+"/instances/"+studyA.sops[0][0], tokenA, map[string]string{"Accept": "multipart/related; type=application/dicom"}); resp.StatusCode != 200 {
			t.Errorf("WADO-RS of an instance of its own study: status %d", resp.StatusCode)
		}
	})
	p.stop()

	// The audit trail: every message validates; the refused store, the
	// queries and the retrieves are there with who and which study.
	var refused, queries, gets, wado bool
	for _, m := range auditMessages(t, data) {
		switch {
		case strings.Contains(m, `csd-code="110104"`) && strings.Contains(m, `EventActionCode="C"`) && strings.Contains(m, "AETITLES=TRUSTA") &&
			strings.Contains(m, studyB.uid) && strings.Contains(m, `EventOutcomeIndicator="4"`):
			refused = true
		case strings.Contains(m, `csd-code="110112"`) && strings.Contains(m, "AETITLES=TRUSTB") && strings.Contains(m, "1.2.840.10008.5.1.4.1.2.2.1"):
			queries = true
		case strings.Contains(m, `csd-code="110104"`) && strings.Contains(m, `EventActionCode="R"`) && strings.Contains(m, "AETITLES=TRUSTA") && strings.Contains(m, studyA.uid):
			gets = true
		case strings.Contains(m, `csd-code="110104"`) && strings.Contains(m, `EventActionCode="R"`) && strings.Contains(m, `UserID="trust-b"`) && strings.Contains(m, studyB.uid) &&
			strings.Contains(m, "PID001^^^TRUST-B"):
			wado = true
		}
	}
	for what, ok := range map[string]bool{"TRUSTA's refused store": refused, "TRUSTB's C-FIND": queries, "TRUSTA's C-GET": gets, "trust-b's WADO-RS": wado} {
		if !ok {
			t.Errorf("no audit message of %s", what)
		}
	}
}
