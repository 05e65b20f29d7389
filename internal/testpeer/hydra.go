package testpeer

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"
)

// HydraCommand is the name under which scripts/install-test-deps installs
// Ory Hydra, an OpenID Certified OAuth 2.0 and OpenID Connect provider.
// It is not "hydra", the name of an unrelated Debian program.
const HydraCommand = "ory-hydra"

// HydraOptions configures StartHydra.
type HydraOptions struct {
	// Dir holds the configuration and log. Required by StartHydra;
	// StartHydraT uses a new tb.TempDir() when empty.
	Dir string
	// TokenHook, if set, is the URL Hydra posts every token request to
	// before it issues the token; the hook's answer adds claims
	// (oauth2.token_hook).
	TokenHook string
	// TopLevelClaims are claims set by the hook that Hydra copies to the
	// top level of access tokens (oauth2.allowed_top_level_claims);
	// otherwise they stay under "ext".
	TopLevelClaims []string
	// User is who the login and consent app signs browsers in as, until
	// Hydra.SetUser changes it. Every Hydra has the app: the
	// Authorization Code flow of browser clients (PublicClient) goes
	// through it. Without a Subject, every sign-in fails.
	User HydraUser
	// CORSOrigins are the origins whose pages may call Hydra's public
	// endpoints (discovery, keys, token) from a browser: origins, or
	// "*" for any. None: no page may.
	CORSOrigins []string
	// AccessTokenLifespan of the tokens of the Authorization Code and
	// refresh grants, as Hydra reads durations ("30s"); empty means
	// Hydra's default of an hour.
	AccessTokenLifespan string
}

// Hydra is a running Ory Hydra that issues JWT access tokens, with its
// data in memory. Its issuer is its public URL.
type Hydra struct {
	Issuer   string // public URL, ending in "/"
	AdminURL string
	proc     *Process
	client   *http.Client
	login    *loginApp
}

// StartHydra starts Hydra on two free ports of 127.0.0.1 and waits until
// it serves its discovery document. Access tokens are JWTs whose scopes
// are both a space-separated "scope" string and an "scp" array.
func StartHydra(ctx context.Context, opts HydraOptions) (*Hydra, error) {
	if opts.Dir == "" {
		return nil, errors.New("testpeer: HydraOptions.Dir is empty")
	}
	ctx, cancel := context.WithTimeout(ctx, startTimeout)
	defer cancel()
	login, err := startLoginApp(opts.User)
	if err != nil {
		return nil, err
	}
	h := &Hydra{client: &http.Client{}, login: login}
	p, err := retryPorts(ctx, func(ports []int) (*Process, error) {
		h.Issuer = "http://127.0.0.1:" + strconv.Itoa(ports[0]) + "/"
		h.AdminURL = "http://127.0.0.1:" + strconv.Itoa(ports[1])
		cfg := map[string]any{
			"dsn": "memory",
			"serve": map[string]any{
				"public": map[string]any{"host": "127.0.0.1", "port": ports[0]},
				"admin":  map[string]any{"host": "127.0.0.1", "port": ports[1]},
			},
			"urls": map[string]any{
				"self":    map[string]any{"issuer": h.Issuer},
				"login":   login.url("/login"),
				"consent": login.url("/consent"),
				"logout":  login.url("/logout"),
			},
			"strategies": map[string]any{"access_token": "jwt", "jwt": map[string]any{"scope_claim": "both"}},
			// The system secret encrypts Hydra's database, here in
			// memory and gone when the test ends.
			"secrets": map[string]any{"system": []string{"pacsd-test-secret-not-for-use-elsewhere"}},
			"log":     map[string]any{"level": "warn"},
		}
		if len(opts.CORSOrigins) > 0 {
			public := cfg["serve"].(map[string]any)["public"].(map[string]any)
			public["cors"] = map[string]any{"enabled": true, "allowed_origins": opts.CORSOrigins}
		}
		if opts.AccessTokenLifespan != "" {
			cfg["ttl"] = map[string]any{"access_token": opts.AccessTokenLifespan}
		}
		// Public clients (browser apps) must prove the code is theirs
		// (RFC 7636), as OAuth 2.0 for browser-based apps requires.
		oauth2 := map[string]any{"pkce": map[string]any{"enforced_for_public_clients": true}}
		if opts.TokenHook != "" {
			oauth2["token_hook"] = opts.TokenHook
		}
		if len(opts.TopLevelClaims) > 0 {
			oauth2["allowed_top_level_claims"] = opts.TopLevelClaims
		}
		cfg["oauth2"] = oauth2
		b, _ := json.Marshal(cfg)
		file := filepath.Join(opts.Dir, "hydra.json")
		if err := os.WriteFile(file, b, 0o600); err != nil {
			return nil, fmt.Errorf("testpeer: %w", err)
		}
		// --dev allows an http issuer on loopback; --sqa-opt-out stops
		// Hydra from sending usage reports.
		p, err := Start(ctx, Cmd{Name: HydraCommand, Args: []string{"serve", "all", "--dev", "--sqa-opt-out", "-c", file}, Dir: opts.Dir})
		if err != nil {
			return nil, err
		}
		if err := p.WaitTCP(ctx, "127.0.0.1:"+strconv.Itoa(ports[0])); err != nil {
			return p, err
		}
		return p, h.waitReady(ctx, p)
	}, 2)
	if err != nil {
		login.close()
		return nil, err
	}
	h.proc = p
	login.setAdminURL(h.AdminURL)
	return h, nil
}

// waitReady polls the discovery document until it answers.
func (h *Hydra) waitReady(ctx context.Context, p *Process) error {
	for {
		req, _ := http.NewRequestWithContext(ctx, http.MethodGet, h.Issuer+".well-known/openid-configuration", nil)
		resp, err := h.client.Do(req)
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return h.makeKeys(ctx)
			}
		}
		select {
		case <-p.Exited():
			return p.exitError()
		case <-ctx.Done():
			return fmt.Errorf("testpeer: hydra not ready: %w", ctx.Err())
		case <-time.After(100 * time.Millisecond):
		}
	}
}

// makeKeys fetches Hydra's key set once. Hydra makes its signing keys
// (RSA 4096) when they are first asked for, which takes seconds on a busy
// machine, longer than a client under test waits for an answer.
func (h *Hydra) makeKeys(ctx context.Context) error {
	req, _ := http.NewRequestWithContext(ctx, http.MethodGet, h.Issuer+".well-known/jwks.json", nil)
	resp, err := h.client.Do(req)
	if err != nil {
		return fmt.Errorf("testpeer: hydra key set: %w", err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("testpeer: hydra key set: %s", resp.Status)
	}
	return nil
}

// StartHydraT starts Hydra for tb as StartHydra does, skipping or failing
// tb as Need does if it is not installed. Stop is registered with
// tb.Cleanup.
func StartHydraT(tb testing.TB, opts HydraOptions) *Hydra {
	tb.Helper()
	Need(tb, HydraCommand)
	if opts.Dir == "" {
		opts.Dir = tb.TempDir()
	}
	h, err := StartHydra(tb.Context(), opts)
	check(tb, err)
	cleanup(tb, h.proc)
	tb.Cleanup(func() { h.login.close() })
	return h
}

// Stop ends Hydra and its login app.
func (h *Hydra) Stop() error {
	err := h.proc.Stop()
	h.login.close()
	return err
}

// HydraClient is an OAuth 2.0 client registered with Hydra for the client
// credentials grant.
type HydraClient struct {
	ID, Secret string
	Scopes     []string // the scopes it may ask for
	Audience   []string // the audiences it may ask for
	// Lifespan of its access tokens, as Hydra reads durations ("30s");
	// empty means Hydra's default of an hour.
	Lifespan string
}

// CreateClient registers c.
func (h *Hydra) CreateClient(ctx context.Context, c HydraClient) error {
	body := map[string]any{
		"client_id":                  c.ID,
		"client_secret":              c.Secret,
		"grant_types":                []string{"client_credentials"},
		"scope":                      strings.Join(c.Scopes, " "),
		"audience":                   c.Audience,
		"token_endpoint_auth_method": "client_secret_post",
	}
	if c.Lifespan != "" {
		body["client_credentials_grant_access_token_lifespan"] = c.Lifespan
	}
	return h.admin(ctx, "/admin/clients", body, nil)
}

// PublicClient is a browser app registered with Hydra: a public client
// (no secret) of the Authorization Code flow with PKCE, which may renew
// its tokens with refresh tokens when it is granted offline_access.
type PublicClient struct {
	ID string
	// RedirectURIs are the addresses the browser comes back to with the
	// code; PostLogoutRedirectURIs those it comes back to after signing
	// out.
	RedirectURIs, PostLogoutRedirectURIs []string
	Scopes                               []string // the scopes it may ask for
	Audience                             []string // the audiences it may ask for
}

// CreatePublicClient registers c.
func (h *Hydra) CreatePublicClient(ctx context.Context, c PublicClient) error {
	return h.admin(ctx, "/admin/clients", map[string]any{
		"client_id":                  c.ID,
		"grant_types":                []string{"authorization_code", "refresh_token"},
		"response_types":             []string{"code"},
		"scope":                      strings.Join(c.Scopes, " "),
		"audience":                   c.Audience,
		"redirect_uris":              c.RedirectURIs,
		"post_logout_redirect_uris":  c.PostLogoutRedirectURIs,
		"token_endpoint_auth_method": "none",
	}, nil)
}

// Token gets an access token for c by the client credentials grant,
// asking for scopes and audience.
func (h *Hydra) Token(ctx context.Context, c HydraClient, scopes []string, audience string) (string, error) {
	form := url.Values{
		"grant_type":    {"client_credentials"},
		"client_id":     {c.ID},
		"client_secret": {c.Secret},
		"scope":         {strings.Join(scopes, " ")},
	}
	if audience != "" {
		form.Set("audience", audience)
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, h.Issuer+"oauth2/token", strings.NewReader(form.Encode()))
	if err != nil {
		return "", err
	}
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	resp, err := h.client.Do(req)
	if err != nil {
		return "", fmt.Errorf("testpeer: hydra token: %w", err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
	if resp.StatusCode != http.StatusOK {
		return "", fmt.Errorf("testpeer: hydra token: %s: %s", resp.Status, b)
	}
	var out struct {
		AccessToken string `json:"access_token"`
	}
	if err := json.Unmarshal(b, &out); err != nil || out.AccessToken == "" {
		return "", fmt.Errorf("testpeer: hydra token: no access_token in %s", b)
	}
	return out.AccessToken, nil
}

// RevokeConsent revokes every consent subject gave, and with them the
// access and refresh tokens issued on it: a refresh by a browser app
// signed in as subject fails from then on.
func (h *Hydra) RevokeConsent(ctx context.Context, subject string) error {
	u := h.AdminURL + "/admin/oauth2/auth/sessions/consent?" + url.Values{"subject": {subject}, "all": {"true"}}.Encode()
	return adminRequest(ctx, h.client, http.MethodDelete, u, nil, nil)
}

// RotateKeys adds a new key to the set that signs access tokens; Hydra
// signs new tokens with it and keeps publishing the old one.
func (h *Hydra) RotateKeys(ctx context.Context, kid string) error {
	return h.admin(ctx, "/admin/keys/hydra.jwt.access-token", map[string]any{"alg": "RS256", "use": "sig", "kid": kid}, nil)
}

func (h *Hydra) admin(ctx context.Context, path string, body, out any) error {
	return adminRequest(ctx, h.client, http.MethodPost, h.AdminURL+path, body, out)
}

// adminRequest sends a request with a JSON body, if any, to Hydra's admin
// API and decodes the JSON answer into out, if not nil.
func adminRequest(ctx context.Context, client *http.Client, method, u string, body, out any) error {
	var rd io.Reader
	if body != nil {
		b, err := json.Marshal(body)
		if err != nil {
			return err
		}
		rd = bytes.NewReader(b)
	}
	req, err := http.NewRequestWithContext(ctx, method, u, rd)
	if err != nil {
		return err
	}
	if body != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	resp, err := client.Do(req)
	if err != nil {
		return fmt.Errorf("testpeer: hydra %s: %w", req.URL.Path, err)
	}
	defer resp.Body.Close()
	rb, _ := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
	if resp.StatusCode/100 != 2 {
		return fmt.Errorf("testpeer: hydra %s %s: %s: %s", method, req.URL.Path, resp.Status, rb)
	}
	if out != nil {
		return json.Unmarshal(rb, out)
	}
	return nil
}
