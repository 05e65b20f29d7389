package testpeer

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"net/url"
	"slices"
	"sync"
	"time"
)

// HydraUser is who Hydra's login and consent app signs a browser in as.
// Hydra leaves both to an app of the deployment (an identity provider's
// login page, a consent screen); the one here asks nothing and accepts
// every request for the user it holds, so that a browser test walks the
// whole Authorization Code flow without a form to fill in.
type HydraUser struct {
	Subject string // the sub claim
	Name    string // the name claim of the ID token
	// Scopes are those the user may be granted: consent grants the
	// scopes a client asks for that are among them. openid is always
	// granted.
	Scopes []string
	// Issuers, if not nil, is the "issuers" claim of the user's access
	// tokens: the Issuers of Patient ID the user may see. Hydra puts it
	// under "ext" unless HydraOptions.TopLevelClaims names it.
	Issuers []string
}

// loginApp is the login, consent and logout app of a Hydra: the
// endpoints that urls.login, urls.consent and urls.logout name. It
// answers each challenge through Hydra's admin API.
type loginApp struct {
	srv    *http.Server
	ln     net.Listener
	client *http.Client

	mu       sync.Mutex
	adminURL string
	user     HydraUser
	logins   int
	failures []string
}

// startLoginApp listens on a free port of 127.0.0.1 and serves the app.
func startLoginApp(user HydraUser) (*loginApp, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, fmt.Errorf("testpeer: hydra login app: %w", err)
	}
	a := &loginApp{ln: ln, client: &http.Client{Timeout: 30 * time.Second}, user: user}
	mux := http.NewServeMux()
	mux.HandleFunc("GET /login", a.login)
	mux.HandleFunc("GET /consent", a.consent)
	mux.HandleFunc("GET /logout", a.logout)
	a.srv = &http.Server{Handler: mux, ReadHeaderTimeout: 10 * time.Second}
	go a.srv.Serve(ln)
	return a, nil
}

func (a *loginApp) url(path string) string { return "http://" + a.ln.Addr().String() + path }

func (a *loginApp) setAdminURL(u string) {
	a.mu.Lock()
	defer a.mu.Unlock()
	a.adminURL = u
}

func (a *loginApp) close() error { return a.srv.Close() }

// fail records why a challenge could not be answered, for the test to
// report, and tells the browser.
func (a *loginApp) fail(w http.ResponseWriter, err error) {
	a.mu.Lock()
	a.failures = append(a.failures, err.Error())
	a.mu.Unlock()
	http.Error(w, err.Error(), http.StatusBadGateway)
}

// login accepts the login challenge as the user.
func (a *loginApp) login(w http.ResponseWriter, r *http.Request) {
	challenge := r.URL.Query().Get("login_challenge")
	a.mu.Lock()
	user := a.user
	a.mu.Unlock()
	if user.Subject == "" {
		a.fail(w, errors.New("testpeer: hydra login app: no user to sign in (HydraOptions.User, Hydra.SetUser)"))
		return
	}
	// Not remembered: each sign-in comes back here, so that a test may
	// change the user between two.
	var out struct {
		RedirectTo string `json:"redirect_to"`
	}
	err := a.admin(r.Context(), http.MethodPut, "/admin/oauth2/auth/requests/login/accept", "login_challenge", challenge,
		map[string]any{"subject": user.Subject, "remember": false}, &out)
	if err != nil {
		a.fail(w, err)
		return
	}
	a.mu.Lock()
	a.logins++
	a.mu.Unlock()
	http.Redirect(w, r, out.RedirectTo, http.StatusFound)
}

// consent grants the scopes asked for that the user may have, and the
// audiences asked for, which Hydra has checked against the client's.
func (a *loginApp) consent(w http.ResponseWriter, r *http.Request) {
	challenge := r.URL.Query().Get("consent_challenge")
	var req struct {
		Subject   string   `json:"subject"`
		Scopes    []string `json:"requested_scope"`
		Audiences []string `json:"requested_access_token_audience"`
	}
	if err := a.admin(r.Context(), http.MethodGet, "/admin/oauth2/auth/requests/consent", "consent_challenge", challenge, nil, &req); err != nil {
		a.fail(w, err)
		return
	}
	a.mu.Lock()
	user := a.user
	a.mu.Unlock()
	if req.Subject != user.Subject {
		a.fail(w, fmt.Errorf("testpeer: hydra consent for %q, who is not the user signed in (%q)", req.Subject, user.Subject))
		return
	}
	granted := []string{}
	for _, s := range req.Scopes {
		if s == "openid" || slices.Contains(user.Scopes, s) {
			granted = append(granted, s)
		}
	}
	access := map[string]any{}
	if user.Issuers != nil {
		access["issuers"] = user.Issuers
	}
	var out struct {
		RedirectTo string `json:"redirect_to"`
	}
	err := a.admin(r.Context(), http.MethodPut, "/admin/oauth2/auth/requests/consent/accept", "consent_challenge", challenge, map[string]any{
		"grant_scope":                 granted,
		"grant_access_token_audience": req.Audiences,
		"remember":                    false,
		"session": map[string]any{
			"access_token": access,
			"id_token":     map[string]any{"name": user.Name},
		},
	}, &out)
	if err != nil {
		a.fail(w, err)
		return
	}
	http.Redirect(w, r, out.RedirectTo, http.StatusFound)
}

// logout accepts every logout: the browser is sent to the client's
// post-logout address.
func (a *loginApp) logout(w http.ResponseWriter, r *http.Request) {
	var out struct {
		RedirectTo string `json:"redirect_to"`
	}
	err := a.admin(r.Context(), http.MethodPut, "/admin/oauth2/auth/requests/logout/accept", "logout_challenge", r.URL.Query().Get("logout_challenge"), nil, &out)
	if err != nil {
		a.fail(w, err)
		return
	}
	http.Redirect(w, r, out.RedirectTo, http.StatusFound)
}

func (a *loginApp) admin(ctx context.Context, method, path, param, challenge string, body, out any) error {
	if challenge == "" {
		return fmt.Errorf("testpeer: hydra %s: no %s", path, param)
	}
	a.mu.Lock()
	admin := a.adminURL
	a.mu.Unlock()
	if admin == "" {
		return errors.New("testpeer: hydra login app: Hydra is not running")
	}
	return adminRequest(ctx, a.client, method, admin+path+"?"+url.Values{param: {challenge}}.Encode(), body, out)
}

// SetUser makes u the user that the next sign-ins are accepted for.
func (h *Hydra) SetUser(u HydraUser) {
	h.login.mu.Lock()
	defer h.login.mu.Unlock()
	h.login.user = u
}

// Logins is the number of sign-ins the login app has accepted: a renewal
// of tokens that asked for none left it unchanged.
func (h *Hydra) Logins() int {
	h.login.mu.Lock()
	defer h.login.mu.Unlock()
	return h.login.logins
}

// LoginFailures are the challenges the login app could not answer, with
// Hydra's reason.
func (h *Hydra) LoginFailures() []string {
	h.login.mu.Lock()
	defer h.login.mu.Unlock()
	return slices.Clone(h.login.failures)
}
