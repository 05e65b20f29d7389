package testpeer_test

import (
	"crypto/sha256"
	"encoding/base64"
	"encoding/json"
	"net/http"
	"net/http/cookiejar"
	"net/url"
	"slices"
	"strings"
	"testing"

	"github.com/pacsd/pacsd/internal/testpeer"
)

// TestHydraAuthorizationCode walks the Authorization Code flow with PKCE
// of a public client through Hydra and its login and consent app, as a
// browser would: the app signs in the user, grants the scopes the user
// may have among those asked for, puts the user's issuers in the access
// token, and signs in whoever SetUser names next.
func TestHydraAuthorizationCode(t *testing.T) {
	h := testpeer.StartHydraT(t, testpeer.HydraOptions{
		User:           testpeer.HydraUser{Subject: "alice", Name: "Alice", Scopes: []string{"read", "write"}, Issuers: []string{"RXH"}},
		TopLevelClaims: []string{"issuers"},
	})
	const redirect = "http://127.0.0.1:9/callback"
	err := h.CreatePublicClient(t.Context(), testpeer.PublicClient{
		ID: "app", RedirectURIs: []string{redirect}, Scopes: []string{"openid", "offline_access", "read", "write", "delete"}, Audience: []string{"pacsd"},
	})
	if err != nil {
		t.Fatal(err)
	}
	signIn := func(t *testing.T) map[string]any {
		t.Helper()
		jar, _ := cookiejar.New(nil)
		var code string
		client := &http.Client{Jar: jar, CheckRedirect: func(req *http.Request, via []*http.Request) error {
			if strings.HasPrefix(req.URL.String(), redirect) {
				code = req.URL.Query().Get("code")
				if code == "" {
					t.Errorf("came back with %s", req.URL.RawQuery)
				}
				return http.ErrUseLastResponse
			}
			return nil
		}}
		verifier := strings.Repeat("v", 50)
		sum := sha256.Sum256([]byte(verifier))
		q := url.Values{
			"response_type": {"code"}, "client_id": {"app"}, "redirect_uri": {redirect},
			"scope": {"openid read delete"}, "state": {"state-0123456789"}, "audience": {"pacsd"},
			"code_challenge": {base64.RawURLEncoding.EncodeToString(sum[:])}, "code_challenge_method": {"S256"},
		}
		resp, err := client.Get(h.Issuer + "oauth2/auth?" + q.Encode())
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if code == "" {
			t.Fatalf("no code: %s; login app failures %q", resp.Status, h.LoginFailures())
		}
		resp, err = client.PostForm(h.Issuer+"oauth2/token", url.Values{
			"grant_type": {"authorization_code"}, "client_id": {"app"}, "code": {code},
			"redirect_uri": {redirect}, "code_verifier": {verifier},
		})
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		var tok struct {
			AccessToken string `json:"access_token"`
		}
		if err := json.NewDecoder(resp.Body).Decode(&tok); err != nil || resp.StatusCode != http.StatusOK {
			t.Fatalf("token: %s %v", resp.Status, err)
		}
		b, err := base64.RawURLEncoding.DecodeString(strings.Split(tok.AccessToken, ".")[1])
		if err != nil {
			t.Fatal(err)
		}
		var claims map[string]any
		if err := json.Unmarshal(b, &claims); err != nil {
			t.Fatal(err)
		}
		return claims
	}

	c := signIn(t)
	// delete was asked for but alice may not have it.
	if c["sub"] != "alice" || c["scope"] != "openid read" || !slices.Equal(strs(c["aud"]), []string{"pacsd"}) || !slices.Equal(strs(c["issuers"]), []string{"RXH"}) {
		t.Errorf("alice's access token: %v", c)
	}
	h.SetUser(testpeer.HydraUser{Subject: "bob", Scopes: []string{"read", "delete"}})
	c = signIn(t)
	if c["sub"] != "bob" || c["scope"] != "openid read delete" || c["issuers"] != nil {
		t.Errorf("bob's access token: %v", c)
	}
	if n := h.Logins(); n != 2 {
		t.Errorf("%d logins, want 2", n)
	}
}

func strs(v any) []string {
	var out []string
	list, _ := v.([]any)
	for _, x := range list {
		s, _ := x.(string)
		out = append(out, s)
	}
	return out
}
