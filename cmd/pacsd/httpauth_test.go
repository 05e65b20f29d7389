package main

import (
	"bytes"
	"encoding/json"
	"io"
	"net/http"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/pacsd/pacsd/internal/testpeer"
)

// request sends an HTTP request with a bearer token, if not empty, and
// returns the response with its body read.
func request(t *testing.T, method, url, token string, header map[string]string) (*http.Response, string) {
	t.Helper()
	req, err := http.NewRequestWithContext(t.Context(), method, url, nil)
	if err != nil {
		t.Fatal(err)
	}
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	for k, v := range header {
		req.Header.Set(k, v)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp, string(b)
}

// createToken runs pacsd token create and returns what it printed.
func createToken(t *testing.T, file, name, scopes string) string {
	t.Helper()
	var stdout, stderr bytes.Buffer
	if err := run(t.Context(), []string{"token", "create", name, "--scopes", scopes, "--token-file", file}, func(string) string { return "" }, &stdout, &stderr); err != nil {
		t.Fatalf("pacsd token create: %v\n%s", err, stderr.String())
	}
	return stdout.String()
}

// TestHTTPAuth runs pacsd with bearer tokens of a real OpenID Connect
// provider (Ory Hydra) and machine tokens: what each may do, what is
// refused with 401 and 403, what stays open, and what the audit trail
// records of the refusals.
func TestHTTPAuth(t *testing.T) {
	testpeer.Need(t, testpeer.HydraCommand)
	h := testpeer.StartHydraT(t, testpeer.HydraOptions{})
	ctx := t.Context()
	clients := map[string]testpeer.HydraClient{
		"viewer":    {ID: "viewer", Secret: "secret-viewer-0123456789", Scopes: []string{"read"}, Audience: []string{"pacsd", "other-app"}},
		"shortlife": {ID: "shortlife", Secret: "secret-short-0123456789", Scopes: []string{"read"}, Audience: []string{"pacsd"}, Lifespan: "1s"},
	}
	for _, c := range clients {
		if err := h.CreateClient(ctx, c); err != nil {
			t.Fatal(err)
		}
	}
	token := func(client, audience string) string {
		t.Helper()
		tok, err := h.Token(ctx, clients[client], []string{"read"}, audience)
		if err != nil {
			t.Fatal(err)
		}
		return tok
	}

	tokens := filepath.Join(t.TempDir(), "tokens")
	admin := createToken(t, tokens, "auditor", "admin")
	reader := createToken(t, tokens, "ci-bot", "read")
	if !strings.HasPrefix(admin, "pacsd_") || strings.Count(admin, "\n") != 1 || strings.TrimSpace(admin) == strings.TrimSpace(reader) {
		t.Fatalf("pacsd token create printed %q and %q, want one token a line", admin, reader)
	}
	admin, reader = strings.TrimSpace(admin), strings.TrimSpace(reader)

	data := t.TempDir()
	p := startPacsd(t, data, "--http-auth", "oidc,token", "--oidc-issuer", h.Issuer, "--oidc-audience", "pacsd",
		"--oidc-leeway", "1s", "--token-file", tokens)
	base := "http://" + p.httpAddr
	studies := base + "/dicom-web/studies"
	expiring := token("shortlife", "pacsd")
	issued := time.Now()

	// The archive is empty: a QIDO-RS search that is allowed answers 204.
	for _, tc := range []struct {
		name, method, url, token string
		header                   map[string]string
		status                   int
		www                      string // in WWW-Authenticate
	}{
		{"health without a token", "GET", base + "/healthz", "", nil, 200, ""},
		{"readiness without a token", "GET", base + "/readyz", "", nil, 200, ""},
		{"QIDO without a token", "GET", studies, "", nil, 401, `Bearer realm="pacsd"`},
		{"QIDO with a provider's token", "GET", studies, token("viewer", "pacsd"), nil, 204, ""},
		{"QIDO with a token for another audience", "GET", studies, token("viewer", "other-app"), nil, 401, `error="invalid_token"`},
		{"QIDO with a machine token", "GET", studies, reader, nil, 204, ""},
		{"QIDO with an unknown machine token", "GET", studies, "pacsd_" + strings.Repeat("x", 43), nil, 401, `error="invalid_token"`},
		{"STOW with a read-only token", "POST", studies, reader, nil, 403, `error="insufficient_scope"`},
		{"the audit trail with a read-only token", "GET", base + "/api/audit", reader, nil, 403, `scope="admin"`},
		{"re-identification with a read-only token", "GET", base + "/api/reidentify/uid/1.2.3", reader, nil, 403, `scope="admin"`},
		{"CORS preflight without a token", "OPTIONS", studies, "", map[string]string{"Origin": "http://viewer.test", "Access-Control-Request-Method": "GET", "Access-Control-Request-Headers": "authorization"}, 204, ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			resp, body := request(t, tc.method, tc.url, tc.token, tc.header)
			if resp.StatusCode != tc.status {
				t.Fatalf("status %d, want %d: %s", resp.StatusCode, tc.status, body)
			}
			if got := resp.Header.Get("WWW-Authenticate"); !strings.Contains(got, tc.www) || (tc.www == "") != (got == "") {
				t.Errorf("WWW-Authenticate %q, want %q", got, tc.www)
			}
		})
	}
	t.Run("a browser can read a refusal", func(t *testing.T) {
		resp, _ := request(t, "GET", studies, "", map[string]string{"Origin": "http://viewer.test"})
		if resp.StatusCode != 401 || resp.Header.Get("Access-Control-Allow-Origin") == "" || !strings.Contains(resp.Header.Get("Access-Control-Expose-Headers"), "WWW-Authenticate") {
			t.Errorf("401 to a browser: status %d, headers %v", resp.StatusCode, resp.Header)
		}
	})
	t.Run("expired token", func(t *testing.T) {
		if resp, body := request(t, "GET", studies, expiring, nil); resp.StatusCode != 204 {
			t.Fatalf("fresh token: status %d: %s", resp.StatusCode, body)
		}
		// Lifespan 1 s, leeway 1 s.
		time.Sleep(time.Until(issued.Add(3 * time.Second)))
		if resp, body := request(t, "GET", studies, expiring, nil); resp.StatusCode != 401 {
			t.Fatalf("expired token: status %d: %s", resp.StatusCode, body)
		}
	})
	t.Run("key rotation", func(t *testing.T) {
		if err := h.RotateKeys(ctx, "rotated-key"); err != nil {
			t.Fatal(err)
		}
		fresh := token("viewer", "pacsd")
		// pacsd fetches the provider's keys again for a key ID it has
		// not seen, at most once per 10 s.
		deadline := time.Now().Add(15 * time.Second)
		for {
			resp, body := request(t, "GET", studies, fresh, nil)
			if resp.StatusCode == 204 {
				break
			}
			if time.Now().After(deadline) {
				t.Fatalf("a token signed with the new key: status %d: %s", resp.StatusCode, body)
			}
			time.Sleep(500 * time.Millisecond)
		}
	})
	t.Run("the audit trail records the refusals", func(t *testing.T) {
		// ci-bot's STOW-RS, audit query and re-identification, beyond
		// its scope, and its QIDO-RS search, newest first, a page of one
		// at a time.
		var got, queries []auditRecord
		url := base + "/api/audit?user=ci-bot&limit=1"
		for range 5 {
			resp, body := request(t, "GET", url, admin, nil)
			if resp.StatusCode != 200 {
				t.Fatalf("GET %s: status %d: %s", url, resp.StatusCode, body)
			}
			var page auditPage
			if err := json.Unmarshal([]byte(body), &page); err != nil {
				t.Fatal(err)
			}
			for _, r := range page.Records {
				if r.Event == "Query" {
					queries = append(queries, r)
				} else {
					got = append(got, r)
				}
			}
			if page.Next == "" {
				break
			}
			url = base + "/api/audit?user=ci-bot&limit=1&before=" + page.Next
		}
		if len(got) != 3 || got[0].Seq <= got[1].Seq || len(queries) != 1 || queries[0].Outcome != 0 {
			t.Fatalf("records of ci-bot: %+v, queries %+v", got, queries)
		}
		for _, r := range got {
			if r.Event != "Security Alert" || r.User != "ci-bot" || r.Outcome != 4 || r.Source.Address != "127.0.0.1" || !strings.Contains(r.Detail, "needs") {
				t.Errorf("record of ci-bot: %+v", r)
			}
		}
		if resp, body := request(t, "GET", base+"/api/audit?limit=0", admin, nil); resp.StatusCode != 400 || !strings.Contains(body, `"error"`) {
			t.Errorf("limit=0: status %d: %s", resp.StatusCode, body)
		}
		var failed int
		for _, m := range auditMessages(t, data) {
			if strings.Contains(m, `csd-code="110114"`) && strings.Contains(m, `EventOutcomeIndicator="4"`) {
				failed++
			}
		}
		// Wrong audience, unknown machine token, expired token; and as
		// many refusals of the rotated key's token as pacsd answered
		// before it knew the key.
		if failed < 3 {
			t.Errorf("%d failed logins recorded, want at least 3", failed)
		}
	})
}

func TestHTTPListenRefusedWithoutAuth(t *testing.T) {
	for _, tc := range []struct {
		settings httpAuthSettings
		addr     string
		ok       bool
	}{
		{httpAuthSettings{HTTPAuth: "none"}, "127.0.0.1:8042", true},
		{httpAuthSettings{HTTPAuth: "none"}, "[::1]:8042", true},
		{httpAuthSettings{HTTPAuth: "none"}, ":8042", false},
		{httpAuthSettings{HTTPAuth: "none"}, "10.0.0.5:8042", false},
		{httpAuthSettings{HTTPAuth: "none", AllowAnonymousHTTP: true}, ":8042", true},
		{httpAuthSettings{HTTPAuth: "token"}, ":8042", true},
		{httpAuthSettings{HTTPAuth: "oidc,token"}, "0.0.0.0:8042", true},
	} {
		err := tc.settings.checkListen(tc.addr)
		if (err == nil) != tc.ok || (err != nil && !strings.Contains(err.Error(), "--http-auth")) {
			t.Errorf("%+v on %s: %v", tc.settings, tc.addr, err)
		}
	}
	// The program exits non-zero, naming --http-auth.
	var stderr bytes.Buffer
	err := run(t.Context(), []string{"serve", "--data", t.TempDir(), "--http-addr", ":0"}, func(string) string { return "" }, io.Discard, &stderr)
	if exitStatus(err) == 0 || !strings.Contains(err.Error(), "--http-auth") {
		t.Errorf("serve --http-addr :0 = %v, want a refusal naming --http-auth", err)
	}
}
