package auth

import (
	"context"
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"encoding/json"
	"errors"
	"net/http"
	"net/http/httptest"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	jose "github.com/go-jose/go-jose/v4"
)

// fakeProvider is an OpenID Connect discovery document and key set
// served on loopback, with keys the test signs tokens with.
type fakeProvider struct {
	srv     *httptest.Server
	mu      sync.Mutex
	keys    map[string]crypto.Signer // by kid
	public  []string                 // kids published
	fetches atomic.Int32
}

func newFakeProvider(t *testing.T) *fakeProvider {
	t.Helper()
	p := &fakeProvider{keys: map[string]crypto.Signer{}}
	mux := http.NewServeMux()
	mux.HandleFunc("/.well-known/openid-configuration", func(w http.ResponseWriter, r *http.Request) {
		json.NewEncoder(w).Encode(map[string]any{
			"issuer":                                p.issuer(),
			"jwks_uri":                              p.issuer() + "/keys",
			"authorization_endpoint":                p.issuer() + "/auth",
			"token_endpoint":                        p.issuer() + "/token",
			"id_token_signing_alg_values_supported": []string{"ES256"},
		})
	})
	mux.HandleFunc("/keys", func(w http.ResponseWriter, r *http.Request) {
		p.fetches.Add(1)
		p.mu.Lock()
		defer p.mu.Unlock()
		var set jose.JSONWebKeySet
		for _, kid := range p.public {
			set.Keys = append(set.Keys, jose.JSONWebKey{Key: p.keys[kid].Public(), KeyID: kid, Algorithm: "ES256", Use: "sig"})
		}
		json.NewEncoder(w).Encode(set)
	})
	p.srv = httptest.NewServer(mux)
	t.Cleanup(p.srv.Close)
	p.addKey(t, "k1", true)
	return p
}

func (p *fakeProvider) issuer() string { return p.srv.URL }

func (p *fakeProvider) addKey(t *testing.T, kid string, publish bool) {
	t.Helper()
	k, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	p.keys[kid] = k
	if publish {
		p.public = append(p.public, kid)
	}
}

func (p *fakeProvider) publish(kid string) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.public = append(p.public, kid)
}

// sign makes a token signed with the key kid, with claims over the
// defaults (a valid token for audience "pacsd").
func (p *fakeProvider) sign(t *testing.T, kid string, claims map[string]any) string {
	t.Helper()
	now := time.Now()
	all := map[string]any{
		"iss": p.issuer(), "sub": "alice", "aud": []string{"pacsd"},
		"iat": now.Unix(), "exp": now.Add(time.Hour).Unix(), "scope": "read write",
	}
	for k, v := range claims {
		if v == nil {
			delete(all, k)
			continue
		}
		all[k] = v
	}
	p.mu.Lock()
	key := p.keys[kid]
	p.mu.Unlock()
	signer, err := jose.NewSigner(jose.SigningKey{Algorithm: jose.ES256, Key: jose.JSONWebKey{Key: key, KeyID: kid}},
		(&jose.SignerOptions{}).WithType("JWT"))
	if err != nil {
		t.Fatal(err)
	}
	payload, _ := json.Marshal(all)
	jws, err := signer.Sign(payload)
	if err != nil {
		t.Fatal(err)
	}
	s, err := jws.CompactSerialize()
	if err != nil {
		t.Fatal(err)
	}
	return s
}

func newTestOIDC(t *testing.T, p *fakeProvider, mut func(*OIDCConfig)) *OIDC {
	t.Helper()
	cfg := OIDCConfig{Issuer: p.issuer(), Audience: "pacsd", MinRefresh: time.Nanosecond}
	if mut != nil {
		mut(&cfg)
	}
	o, err := NewOIDC(t.Context(), cfg)
	if err != nil {
		t.Fatal(err)
	}
	return o
}

func TestOIDCClaims(t *testing.T) {
	p := newFakeProvider(t)
	o := newTestOIDC(t, p, nil)
	now := time.Now()
	for _, tc := range []struct {
		name    string
		claims  map[string]any
		wantErr string
		scopes  Scope
		issuers []string
	}{
		{"valid", nil, "", Read | Write, nil},
		{"scope array", map[string]any{"scope": []string{"read", "admin", "other"}}, "", Read | Admin, nil},
		{"no scope", map[string]any{"scope": nil}, "", 0, nil},
		{"issuers array", map[string]any{"issuers": []string{"RXH", "RGT"}}, "", Read | Write, []string{"RXH", "RGT"}},
		{"issuers string", map[string]any{"issuers": "RXH|RGT"}, "", Read | Write, []string{"RXH", "RGT"}},
		{"issuers star", map[string]any{"issuers": "*"}, "", Read | Write, nil},
		{"issuers empty", map[string]any{"issuers": []string{}}, "", Read | Write, []string{}},
		{"expired within leeway", map[string]any{"exp": now.Add(-30 * time.Second).Unix()}, "", Read | Write, nil},
		{"expired beyond leeway", map[string]any{"exp": now.Add(-90 * time.Second).Unix()}, "expired", 0, nil},
		{"no expiry", map[string]any{"exp": nil}, "", 0, nil},
		{"not yet valid", map[string]any{"nbf": now.Add(5 * time.Minute).Unix()}, "not valid before", 0, nil},
		{"wrong audience", map[string]any{"aud": "other-app"}, "audience", 0, nil},
		{"wrong issuer", map[string]any{"iss": "https://evil.example"}, "different provider", 0, nil},
		{"no subject", map[string]any{"sub": nil}, "subject", 0, nil},
	} {
		t.Run(tc.name, func(t *testing.T) {
			pr, err := o.Authenticate(t.Context(), p.sign(t, "k1", tc.claims))
			if tc.name == "no expiry" {
				// go-oidc reads a missing exp as the zero time.
				if !errors.Is(err, ErrInvalidToken) {
					t.Fatalf("a token without exp was accepted: %v", err)
				}
				return
			}
			if tc.wantErr != "" {
				if !errors.Is(err, ErrInvalidToken) || !strings.Contains(err.Error(), tc.wantErr) {
					t.Fatalf("error %v, want ErrInvalidToken mentioning %q", err, tc.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if pr.Name != "alice" || pr.Kind != KindOIDC || pr.Scopes != tc.scopes || !slices.Equal(pr.Issuers, tc.issuers) || (pr.Issuers == nil) != (tc.issuers == nil) {
				t.Errorf("principal %+v, want scopes %v issuers %v", pr, tc.scopes, tc.issuers)
			}
		})
	}
}

func TestOIDCNestedRolesClaim(t *testing.T) {
	p := newFakeProvider(t)
	o := newTestOIDC(t, p, func(c *OIDCConfig) {
		c.RolesClaim = "realm_access.roles"
		c.IssuersClaim = "https://pacsd.example/issuers"
	})
	tok := p.sign(t, "k1", map[string]any{
		"realm_access":                  map[string]any{"roles": []string{"delete", "research"}},
		"https://pacsd.example/issuers": []string{"RXH"},
	})
	pr, err := o.Authenticate(t.Context(), tok)
	if err != nil {
		t.Fatal(err)
	}
	if pr.Scopes != Delete|Research || !slices.Equal(pr.Issuers, []string{"RXH"}) {
		t.Errorf("principal %+v", pr)
	}
}

func TestOIDCSignatures(t *testing.T) {
	p := newFakeProvider(t)
	o := newTestOIDC(t, p, func(c *OIDCConfig) { c.MinRefresh = time.Hour })
	ctx := t.Context()
	if p.fetches.Load() != 1 {
		t.Fatalf("%d key fetches at start", p.fetches.Load())
	}

	// A token signed by an unpublished key that claims a known kid.
	p.addKey(t, "forger", false)
	good := p.sign(t, "k1", nil)
	forged := p.sign(t, "forger", nil)
	parts, fparts := strings.Split(good, "."), strings.Split(forged, ".")
	spliced := parts[0] + "." + parts[1] + "." + fparts[2]
	if _, err := o.Authenticate(ctx, spliced); !errors.Is(err, ErrInvalidToken) || !strings.Contains(err.Error(), "signature") {
		t.Errorf("bad signature: %v", err)
	}
	tampered := parts[0] + "." + strings.TrimRight(parts[1], "=") + "x." + parts[2]
	if _, err := o.Authenticate(ctx, tampered); !errors.Is(err, ErrInvalidToken) {
		t.Errorf("tampered payload: %v", err)
	}
	if n := p.fetches.Load(); n != 1 {
		t.Errorf("a bad signature with a known kid fetched the keys (%d fetches)", n)
	}

	// HS256 with the public key as secret, and alg none, are refused.
	hs, _ := jose.NewSigner(jose.SigningKey{Algorithm: jose.HS256, Key: []byte("0123456789abcdef0123456789abcdef")}, nil)
	jws, _ := hs.Sign([]byte(`{"iss":"` + p.issuer() + `","sub":"x","aud":"pacsd","exp":9999999999}`))
	hsTok, _ := jws.CompactSerialize()
	if _, err := o.Authenticate(ctx, hsTok); !errors.Is(err, ErrInvalidToken) {
		t.Errorf("HS256: %v", err)
	}
	none := "eyJhbGciOiJub25lIn0." + parts[1] + "."
	if _, err := o.Authenticate(ctx, none); !errors.Is(err, ErrInvalidToken) {
		t.Errorf("alg none: %v", err)
	}
	for _, junk := range []string{"", "a.b", "a.b.c", "pacsd_xyz"} {
		if _, err := o.Authenticate(ctx, junk); !errors.Is(err, ErrInvalidToken) {
			t.Errorf("%q: %v", junk, err)
		}
	}
}

func TestOIDCKeyRotation(t *testing.T) {
	p := newFakeProvider(t)
	now := time.Now()
	var clock atomic.Int64
	clock.Store(now.UnixNano())
	o := newTestOIDC(t, p, func(c *OIDCConfig) {
		c.MinRefresh = 10 * time.Second
		c.Now = func() time.Time { return time.Unix(0, clock.Load()) }
	})
	ctx := t.Context()

	// The provider rotates: a new key is published and used.
	p.addKey(t, "k2", true)
	// The start's fetch was moments ago: within MinRefresh no fetch is
	// made, and the token waits for the next one.
	if _, err := o.Authenticate(ctx, p.sign(t, "k2", nil)); err == nil || !strings.Contains(err.Error(), `no key "k2"`) {
		t.Fatalf("rotated key within MinRefresh: %v", err)
	}
	clock.Add(int64(11 * time.Second))
	if _, err := o.Authenticate(ctx, p.sign(t, "k2", nil)); err != nil {
		t.Fatalf("rotated key: %v", err)
	}
	fetches := p.fetches.Load()
	// Unknown kids do not make more than one fetch per MinRefresh.
	p.addKey(t, "k3", false)
	for range 20 {
		if _, err := o.Authenticate(ctx, p.sign(t, "k3", nil)); err == nil {
			t.Fatal("an unpublished key was accepted")
		}
	}
	if got := p.fetches.Load() - fetches; got > 1 {
		t.Errorf("%d fetches for 20 tokens of an unknown kid", got)
	}
	// The old key still verifies tokens issued before the rotation.
	if _, err := o.Authenticate(ctx, p.sign(t, "k1", nil)); err != nil {
		t.Errorf("old key: %v", err)
	}
	p.publish("k3")
	clock.Add(int64(11 * time.Second))
	if _, err := o.Authenticate(ctx, p.sign(t, "k3", nil)); err != nil {
		t.Errorf("k3 once published: %v", err)
	}
}

func TestNewOIDCNeedsAudience(t *testing.T) {
	p := newFakeProvider(t)
	if _, err := NewOIDC(context.Background(), OIDCConfig{Issuer: p.issuer()}); err == nil || !strings.Contains(err.Error(), "audience") {
		t.Errorf("no audience: %v", err)
	}
	if _, err := NewOIDC(context.Background(), OIDCConfig{Issuer: p.issuer() + "/other", Audience: "a"}); err == nil {
		t.Error("discovery of a wrong issuer succeeded")
	}
}

// TestOIDCVerifiedCache checks the cache of verified tokens: a cached
// token still expires, and a key the provider withdraws stops vouching
// for the tokens it signed once the key set is fetched again.
func TestOIDCVerifiedCache(t *testing.T) {
	p := newFakeProvider(t)
	var clock atomic.Int64
	clock.Store(time.Now().UnixNano())
	o := newTestOIDC(t, p, func(c *OIDCConfig) {
		c.MinRefresh = 10 * time.Second
		c.Leeway = time.Second
		c.Now = func() time.Time { return time.Unix(0, clock.Load()) }
	})
	ctx := t.Context()
	short := p.sign(t, "k1", map[string]any{"exp": time.Now().Add(30 * time.Second).Unix()})
	long := p.sign(t, "k1", nil)
	for i := range 3 {
		for name, tok := range map[string]string{"short": short, "long": long} {
			pr, err := o.Authenticate(ctx, tok)
			if err != nil || pr.Name != "alice" || pr.Scopes != Read|Write {
				t.Fatalf("%s, try %d: %+v, %v", name, i, pr, err)
			}
			pr.Scopes = Admin // a caller's change does not reach the cache
		}
	}
	if n := len(o.verified.m); n != 2 {
		t.Errorf("%d tokens cached, want 2", n)
	}
	clock.Add(int64(40 * time.Second))
	if _, err := o.Authenticate(ctx, short); err == nil || !strings.Contains(err.Error(), "expired") {
		t.Errorf("a cached token past its expiry: %v", err)
	}
	if _, err := o.Authenticate(ctx, long); err != nil {
		t.Errorf("long-lived token: %v", err)
	}

	// The provider withdraws k1 and signs with k2; the next fetch of the
	// key set empties the cache.
	p.addKey(t, "k2", false)
	p.mu.Lock()
	p.public = []string{"k2"}
	p.mu.Unlock()
	if _, err := o.Authenticate(ctx, p.sign(t, "k2", nil)); err != nil {
		t.Fatalf("k2: %v", err)
	}
	if _, err := o.Authenticate(ctx, long); err == nil {
		t.Error("a token of a withdrawn key was still accepted from the cache")
	}
}
