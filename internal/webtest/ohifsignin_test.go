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

// ohifSignInPlan is what scripts/ohif-signin.mjs does.
type ohifSignInPlan struct {
	Chromium      string   `json:"chromium"`
	SignedInURL   string   `json:"signedInURL"`  // the viewer configured with the provider
	AnonymousURL  string   `json:"anonymousURL"` // the viewer configured without
	PacsdOrigin   string   `json:"pacsdOrigin"`
	Issuer        string   `json:"issuer"`
	PatientNames  []string `json:"patientNames"`
	Study         string   `json:"study"` // opened in the viewer
	ScreenshotDir string   `json:"screenshotDir"`
	TimeoutMS     int      `json:"timeoutMs"`
}

type ohifRequest struct {
	Method, URL string
	Status      int
	Auth        bool
}

type ohifSignInResult struct {
	Steps     map[string]*string
	Anonymous struct {
		Visible  []string
		Requests []ohifRequest
	}
	SignedIn struct {
		Visible         []string
		Requests        []ohifRequest
		VisitedProvider bool
		Path            string
	}
	Renewed struct {
		Before, After string
		QIDO          struct {
			Status int
			Auth   bool
		}
		Visible  []string
		Requests []ohifRequest
	}
	Viewer struct {
		Frames []struct {
			Status int
			Auth   bool
		}
	}
	TokenRequests []string
	Blocked       []string
	PageErrors    []string
	Screenshots   []string
}

// TestOHIFSignIn opens the OHIF viewer, served from its own origin, on a
// pacsd that checks the bearer tokens of Ory Hydra (--http-auth oidc) and
// lets only the viewer's origin call it from a browser (--cors-origins).
// Configured with Hydra as its OpenID Connect provider (Authorization Code
// with PKCE, OHIF's oidc settings), the viewer sends the browser to sign
// in, comes back, shows the study list and draws a study with the token,
// and renews the token when it runs out; configured without, it gets
// nothing from pacsd but 401s.
func TestOHIFSignIn(t *testing.T) {
	needNodeModules(t)
	chromium := needChromium(t)
	dist := ohifDist(t)
	h := testpeer.StartHydraT(t, testpeer.HydraOptions{
		User:        testpeer.HydraUser{Subject: "dr-viewer", Name: "Dr Viewer", Scopes: []string{"offline_access", "read"}},
		CORSOrigins: []string{"*"}, // the viewer's port is not known yet
		// Short, so that the token runs out while the viewer is open.
		AccessTokenLifespan: tokenLifespan.String(),
	})

	// The viewers' addresses first, for pacsd's allow-list of origins.
	signedIn := httptest.NewUnstartedServer(nil)
	anonymous := httptest.NewUnstartedServer(nil)
	origin := func(s *httptest.Server) string { return "http://" + s.Listener.Addr().String() }
	p := startPacsd(t, "--http-auth", "oidc", "--oidc-issuer", h.Issuer, "--oidc-audience", "pacsd", "--oidc-leeway", "1s",
		"--cors-origins", origin(signedIn)+","+origin(anonymous))
	err := h.CreatePublicClient(t.Context(), testpeer.PublicClient{
		ID:                     "ohif-viewer",
		RedirectURIs:           []string{origin(signedIn) + "/callback"},
		PostLogoutRedirectURIs: []string{origin(signedIn) + "/logout-redirect"},
		Scopes:                 []string{"openid", "offline_access", "read"},
		Audience:               []string{"pacsd"},
	})
	if err != nil {
		t.Fatal(err)
	}

	dir := t.TempDir()
	names := []string{"Viewer^Alpha", "Viewer^Beta"}
	var study string
	for i, name := range names {
		uid := dcmgen.UID()
		if i == 0 {
			study = uid
		}
		f, err := dcmgen.Create(filepath.Join(dir, name+".dcm"), &dcmgen.Instance{
			Patient: dcmgen.Patient{Name: name, ID: "OHIF" + name[len("Viewer^"):]},
			Study:   dcmgen.Study{UID: uid, Date: "20260301", Description: "Sign-in"},
			Series:  dcmgen.Series{UID: dcmgen.UID(), Modality: "CT", Number: 1}, Rows: 64, Columns: 64,
		})
		if err != nil {
			t.Fatal(err)
		}
		p.store(t, f.Path)
	}

	withOIDC := ohifConfig(p)
	// OHIF's oidc settings (platform/app/public/config/google.js shows
	// them), read by oidc-client-ts: a public client using the code flow
	// with PKCE, asking Hydra for pacsd's audience, renewing its token
	// with the refresh token that offline_access brings.
	withOIDC["oidc"] = []any{map[string]any{
		"authority":                h.Issuer,
		"client_id":                "ohif-viewer",
		"redirect_uri":             "/callback",
		"post_logout_redirect_uri": "/logout-redirect",
		"response_type":            "code",
		"scope":                    "openid offline_access read",
		"extraQueryParams":         map[string]string{"audience": "pacsd"},
		"automaticSilentRenew":     true,
		// oidc-client-ts renews a minute before expiry by default,
		// which a token of tokenLifespan is from the start.
		"accessTokenExpiringNotificationTimeInSeconds": 5,
		"revokeAccessTokenOnSignout":                   true,
	}}
	signedIn.Config.Handler = viewerHandlerConfig(t, dist, withOIDC)
	anonymous.Config.Handler = viewerHandlerConfig(t, dist, ohifConfig(p))
	signedIn.Start()
	anonymous.Start()
	t.Cleanup(signedIn.Close)
	t.Cleanup(anonymous.Close)

	artifacts := artifactDir(t)
	plan := ohifSignInPlan{
		Chromium: chromium, SignedInURL: signedIn.URL, AnonymousURL: anonymous.URL, PacsdOrigin: p.origin(), Issuer: h.Issuer,
		Study: study, ScreenshotDir: artifacts, TimeoutMS: 30000,
	}
	for _, n := range names {
		plan.PatientNames = append(plan.PatientNames, formatPN(n))
	}
	var res ohifSignInResult
	runNode(t, 4*time.Minute, "ohif-signin.mjs", plan, &res)
	checkSignInRun(t, h, artifacts, res.TokenRequests, res.Steps)
	for _, e := range res.PageErrors {
		t.Logf("page error: %s", e)
	}
	if len(res.Blocked) > 0 {
		t.Logf("requests off loopback, refused: %v", res.Blocked)
	}

	// pacsd lets the viewer's origin, and no other, send its token from
	// a browser: the preflight of a QIDO-RS with an Authorization header.
	t.Run("preflight", func(t *testing.T) {
		for _, tc := range []struct {
			origin  string
			allowed bool
		}{{origin(signedIn), true}, {"http://127.0.0.1:9", false}} {
			req, _ := http.NewRequestWithContext(t.Context(), http.MethodOptions, p.root()+"/studies", nil)
			req.Header.Set("Origin", tc.origin)
			req.Header.Set("Access-Control-Request-Method", "GET")
			req.Header.Set("Access-Control-Request-Headers", "authorization")
			resp, err := http.DefaultClient.Do(req)
			if err != nil {
				t.Fatal(err)
			}
			resp.Body.Close()
			got := resp.Header.Get("Access-Control-Allow-Origin") == tc.origin &&
				strings.Contains(strings.ToLower(resp.Header.Get("Access-Control-Allow-Headers")), "authorization")
			if got != tc.allowed {
				t.Errorf("preflight from %s: %s, headers %v; want allowed %v", tc.origin, resp.Status, resp.Header, tc.allowed)
			}
		}
	})

	t.Run("without sign-in", func(t *testing.T) {
		a := res.Anonymous
		if len(a.Visible) > 0 {
			t.Errorf("the viewer without sign-in shows %q", a.Visible)
		}
		if len(a.Requests) == 0 {
			t.Error("the viewer without sign-in asked pacsd nothing")
		}
		for _, r := range a.Requests {
			if r.Status != http.StatusUnauthorized && r.Method != http.MethodOptions {
				t.Errorf("without sign-in pacsd answered %s %s with %d", r.Method, r.URL, r.Status)
			}
		}
	})

	t.Run("signed in", func(t *testing.T) {
		s := res.SignedIn
		// OHIF signs in again when the viewer page is loaded anew (the
		// script opens the study by its address), before it reads the
		// user it stored; a provider remembering the session would let
		// that pass unseen. So at least one login, not exactly one.
		if !s.VisitedProvider || h.Logins() < 1 || !slices.Contains(res.TokenRequests, "authorization_code") {
			t.Errorf("sign-in: went to Hydra %v, %d logins, token requests %q", s.VisitedProvider, h.Logins(), res.TokenRequests)
		}
		if !slices.Equal(s.Visible, plan.PatientNames) {
			t.Errorf("the study list shows %q, want %q (at %s)", s.Visible, plan.PatientNames, s.Path)
		}
		qido := 0
		for _, r := range s.Requests {
			if r.Method == http.MethodOptions {
				continue
			}
			if !r.Auth || r.Status >= 400 {
				t.Errorf("%s %s: token sent %v, status %d", r.Method, r.URL, r.Auth, r.Status)
			}
			if strings.HasPrefix(r.URL, "/dicom-web/studies?") {
				qido++
			}
		}
		if qido == 0 {
			t.Error("the signed-in viewer searched no study")
		}
		if len(res.Viewer.Frames) == 0 || res.Viewer.Frames[0].Status != http.StatusOK || !res.Viewer.Frames[0].Auth {
			t.Errorf("the viewer's first frame: %+v", res.Viewer.Frames)
		}
	})

	t.Run("renewed", func(t *testing.T) {
		r := res.Renewed
		if !slices.Contains(res.TokenRequests, "refresh_token") || r.After == "" || r.After == r.Before {
			t.Errorf("the token was not renewed: token requests %q", res.TokenRequests)
		}
		if r.QIDO.Status != http.StatusOK || !r.QIDO.Auth || !slices.Equal(r.Visible, plan.PatientNames) {
			t.Errorf("the study list after the first token ran out: QIDO-RS %+v, shows %q", r.QIDO, r.Visible)
		}
		for _, q := range r.Requests {
			if q.Status == http.StatusUnauthorized {
				t.Errorf("pacsd refused %s %s once the first token ran out", q.Method, q.URL)
			}
		}
	})
}
