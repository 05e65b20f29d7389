package webtest

import (
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/pacsd/pacsd/internal/dcmgen"
	"github.com/pacsd/pacsd/internal/testpeer"
)

// signInPlan is what scripts/ui-signin.mjs does.
type signInPlan struct {
	Chromium   string `json:"chromium"`
	URL        string `json:"url"`     // pacsd's origin
	Issuer     string `json:"issuer"`  // Hydra's, ending in "/"
	Control    string `json:"control"` // where the script switches Hydra's user
	SearchName string `json:"searchName"`
	Studies    struct {
		RXH string `json:"rxh"`
		RGT string `json:"rgt"`
	} `json:"studies"`
	ScreenshotDir string `json:"screenshotDir"`
	TimeoutMS     int    `json:"timeoutMs"`
}

type signInStudy struct {
	Heading string
	Actions []string
}

type signInResult struct {
	Steps     map[string]*string
	Anonymous struct {
		Text string
		QIDO struct {
			Status          int
			WWWAuthenticate string
		}
	}
	Full struct {
		Who, Hash   string
		Search      []string
		ExpiresInMS float64
		Token       string
		Study       signInStudy
	}
	Renewed struct {
		Search      []string
		Token       string
		SignInShown bool
	}
	Revoked struct {
		Text    string
		Session bool
	}
	SignedOut struct {
		URL, Text string
		Session   bool
	}
	Reader struct {
		Who             string
		Search          []string
		Study, Other    signInStudy
		OtherText       string
		Nav             []string
		HasRefreshToken bool
	}
	Expired struct {
		Text, Who, Hash, Heading string
	}
	TokenRequests []string // grant_type of each request to Hydra's token endpoint
	Requests      []struct {
		Method, URL string
		Status      int
		Auth        bool
	}
	OtherHosts    []string
	ConsoleErrors []struct{ Text, URL string }
	PageErrors    []string
	Screenshots   []string
}

// checkSignInRun logs where a sign-in script left its screenshots and
// what it asked Hydra's token endpoint, and fails the test for each
// challenge Hydra's login app could not answer and each step of the
// script that failed.
func checkSignInRun(t *testing.T, h *testpeer.Hydra, artifacts string, tokenRequests []string, steps map[string]*string) {
	t.Helper()
	t.Logf("screenshots in %s", artifacts)
	t.Logf("token requests to Hydra: %q", tokenRequests)
	for _, f := range h.LoginFailures() {
		t.Errorf("Hydra's login app: %s", f)
	}
	for name, e := range steps {
		if e != nil {
			t.Errorf("step %s: %s", name, *e)
		}
	}
}

// tokenLifespan is how long Hydra's access tokens live in TestUISignIn:
// short, so that they run out while the page is used, and long enough
// for a sign-in and a search on a busy machine.
const tokenLifespan = 15 * time.Second

// TestUISignIn signs in to pacsd's web interface through a real OpenID
// Connect provider, Ory Hydra, with pacsd checking Hydra's tokens
// (--http-auth oidc): Authorization Code with PKCE, Hydra's login and
// consent answered by the test's app. Without sign-in the page asks for
// it and pacsd answers 401. A user with every scope sees both trusts'
// studies and the delete and correct actions, and the page renews the
// user's short-lived token while it is used; when Hydra revokes the
// user's tokens, the page asks to sign in again. A reader of one trust
// then sees only that trust's studies and no action beyond reading; the
// reader's token, which cannot be renewed, runs out, and the page asks to
// sign in again and then comes back to the same study. Signing out ends
// the session at Hydra too.
func TestUISignIn(t *testing.T) {
	needNodeModules(t)
	chromium := needChromium(t)
	full := testpeer.HydraUser{Subject: "dr-full", Name: "Dr Full", Scopes: []string{"offline_access", "read", "write", "delete"}}
	reader := testpeer.HydraUser{Subject: "dr-reader", Name: "Dr Reader", Scopes: []string{"read"}, Issuers: []string{"RXH"}}
	h := testpeer.StartHydraT(t, testpeer.HydraOptions{
		User:           full,
		TopLevelClaims: []string{"issuers"},
		// The pages of pacsd, on a port not known yet (Hydra takes no
		// pattern of ports), read Hydra's discovery document and call its
		// token endpoint.
		CORSOrigins:         []string{"*"},
		AccessTokenLifespan: tokenLifespan.String(),
	})
	p := startPacsd(t, "--http-auth", "oidc", "--oidc-issuer", h.Issuer, "--oidc-audience", "pacsd", "--oidc-leeway", "1s",
		"--ui-client-id", "pacsd-ui", "--ui-scopes", "offline_access,read,write,delete")
	err := h.CreatePublicClient(t.Context(), testpeer.PublicClient{
		ID:                     "pacsd-ui",
		RedirectURIs:           []string{p.origin() + "/"},
		PostLogoutRedirectURIs: []string{p.origin() + "/"},
		Scopes:                 []string{"openid", "offline_access", "read", "write", "delete"},
		Audience:               []string{"pacsd"},
	})
	if err != nil {
		t.Fatal(err)
	}

	// One study of each of two trusts.
	dir := t.TempDir()
	var plan signInPlan
	for _, tr := range []struct {
		issuer string
		uid    *string
	}{{"RXH", &plan.Studies.RXH}, {"RGT", &plan.Studies.RGT}} {
		*tr.uid = dcmgen.UID()
		f, err := dcmgen.Create(filepath.Join(dir, tr.issuer+".dcm"), &dcmgen.Instance{
			Patient: dcmgen.Patient{Name: "Trust^" + tr.issuer, ID: "P-" + tr.issuer, IssuerOfPatientID: tr.issuer},
			Study:   dcmgen.Study{UID: *tr.uid, Date: "20260301"},
			Series:  dcmgen.Series{UID: dcmgen.UID(), Modality: "CT", Number: 1}, Rows: 8, Columns: 8,
		})
		if err != nil {
			t.Fatal(err)
		}
		p.store(t, f.Path)
	}

	control := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		switch {
		case r.Method == http.MethodPost && r.URL.Path == "/user" && r.URL.Query().Get("name") == "reader":
			h.SetUser(reader)
		case r.Method == http.MethodPost && r.URL.Path == "/revoke":
			if err := h.RevokeConsent(r.Context(), full.Subject); err != nil {
				http.Error(w, err.Error(), http.StatusBadGateway)
				return
			}
		default:
			http.NotFound(w, r)
			return
		}
		w.WriteHeader(http.StatusNoContent)
	}))
	t.Cleanup(control.Close)

	artifacts := artifactDir(t)
	plan.Chromium, plan.URL, plan.Issuer, plan.Control = chromium, p.origin(), h.Issuer, control.URL
	plan.SearchName, plan.ScreenshotDir, plan.TimeoutMS = "Trust*", artifacts, 20000
	var res signInResult
	runNode(t, 3*time.Minute, "ui-signin.mjs", plan, &res)
	checkSignInRun(t, h, artifacts, res.TokenRequests, res.Steps)
	for _, e := range res.PageErrors {
		t.Errorf("page error: %s", e)
	}
	for _, e := range res.ConsoleErrors {
		// Chromium logs every 4xx of a fetch: the anonymous QIDO's 401,
		// the reader's 404 of the other trust's study and Hydra's refusal
		// of the revoked refresh token are meant.
		if strings.HasPrefix(e.Text, "Failed to load resource") && (strings.HasPrefix(e.URL, p.origin()) || e.URL == h.Issuer+"oauth2/token") {
			continue
		}
		t.Errorf("console error: %s (%s)", e.Text, e.URL)
	}
	for _, u := range res.OtherHosts {
		t.Errorf("the page asked another host for %s", u)
	}
	both := []string{plan.Studies.RXH, plan.Studies.RGT}
	slices.Sort(both)

	t.Run("anonymous", func(t *testing.T) {
		a := res.Anonymous
		if a.QIDO.Status != http.StatusUnauthorized || !strings.HasPrefix(a.QIDO.WWWAuthenticate, "Bearer") {
			t.Errorf("QIDO-RS without a token: %d, WWW-Authenticate %q", a.QIDO.Status, a.QIDO.WWWAuthenticate)
		}
		if strings.Contains(a.Text, "Trust") || !strings.Contains(a.Text, "Sign in with your organisation") {
			t.Errorf("the page without sign-in shows %q", a.Text)
		}
	})

	t.Run("every scope", func(t *testing.T) {
		f := res.Full
		if !strings.Contains(f.Who, "Dr Full") {
			t.Errorf("signed in as %q", f.Who)
		}
		if !strings.Contains(f.Hash, "name=Trust") {
			t.Errorf("after sign-in the page is at %q, not the search it was asked for", f.Hash)
		}
		if got := slices.Sorted(slices.Values(f.Search)); !slices.Equal(got, both) {
			t.Errorf("search shows %v, want both trusts' %v", got, both)
		}
		if f.ExpiresInMS <= 0 || f.ExpiresInMS > float64(tokenLifespan.Milliseconds()) {
			t.Errorf("the token expires in %.0f ms, Hydra's lifespan is %v", f.ExpiresInMS, tokenLifespan)
		}
		for _, want := range []string{"Download ZIP", "Send…", "Correct…", "Delete…"} {
			if !slices.Contains(f.Study.Actions, want) {
				t.Errorf("study actions %q lack %q", f.Study.Actions, want)
			}
		}
	})

	t.Run("renewed", func(t *testing.T) {
		r := res.Renewed
		if got := slices.Sorted(slices.Values(r.Search)); !slices.Equal(got, both) || r.SignInShown {
			t.Errorf("once the first token ran out: search shows %v, sign-in asked %v", got, r.SignInShown)
		}
		if r.Token == "" || r.Token == res.Full.Token {
			t.Error("the access token was not renewed")
		}
		if !slices.Contains(res.TokenRequests, "refresh_token") {
			t.Errorf("no refresh grant among the token requests %q", res.TokenRequests)
		}
	})

	t.Run("revoked", func(t *testing.T) {
		r := res.Revoked
		if !strings.Contains(r.Text, "Your sign-in has ended") || r.Session {
			t.Errorf("once Hydra revoked the tokens the page shows %q, keeps a session %v", r.Text, r.Session)
		}
	})

	t.Run("reader of one trust", func(t *testing.T) {
		r := res.Reader
		if !strings.Contains(r.Who, "Dr Reader") || !strings.Contains(r.Who, "RXH") {
			t.Errorf("signed in as %q, want Dr Reader of RXH", r.Who)
		}
		if !slices.Equal(r.Search, []string{plan.Studies.RXH}) {
			t.Errorf("search shows %v, want RXH's %s only", r.Search, plan.Studies.RXH)
		}
		if r.Study.Heading != "Trust, RXH" {
			t.Errorf("RXH's study page: heading %q", r.Study.Heading)
		}
		for _, a := range r.Study.Actions {
			if a == "Send…" || a == "Correct…" || a == "Delete…" {
				t.Errorf("a reader is offered %q (actions %q)", a, r.Study.Actions)
			}
		}
		if r.Other.Heading != "Study not found" || strings.Contains(r.OtherText, "Trust, RGT") {
			t.Errorf("RGT's study for RXH's reader: heading %q, page %q", r.Other.Heading, r.OtherText)
		}
		if slices.Contains(r.Nav, "Audit") {
			t.Errorf("a reader sees the pages %q", r.Nav)
		}
		if r.HasRefreshToken {
			t.Error("the reader, not granted offline_access, has a refresh token")
		}
	})

	t.Run("expired", func(t *testing.T) {
		e := res.Expired
		if !strings.Contains(e.Text, "Your sign-in has ended") {
			t.Errorf("once the reader's token ran out the page shows %q", e.Text)
		}
		if !strings.Contains(e.Who, "Dr Reader") || !strings.HasPrefix(e.Hash, "#/study/"+plan.Studies.RXH) || e.Heading != "Trust, RXH" {
			t.Errorf("signed in again as %q at %q, heading %q", e.Who, e.Hash, e.Heading)
		}
		if s := res.SignedOut; s.Session || !strings.HasPrefix(s.URL, p.origin()+"/") || !strings.Contains(s.Text, "Sign in with your organisation") {
			t.Errorf("after signing out: at %s, session kept %v, page %q", s.URL, s.Session, s.Text)
		}
		// The full user once, the reader twice; renewing asked nobody.
		if n := h.Logins(); n != 3 {
			t.Errorf("%d logins at Hydra, want 3", n)
		}
	})

	// Every request to pacsd after sign-in carried the token and none was
	// refused: the page never sent one with a token run out.
	for _, r := range res.Requests {
		if r.Status == http.StatusUnauthorized && r.Auth {
			t.Errorf("pacsd refused the token of %s %s", r.Method, r.URL)
		}
	}
}
