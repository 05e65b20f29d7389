package auth

import (
	"encoding/base64"
	"encoding/json"
	"errors"
	"net/http"
	"net/http/httptest"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/pacsd/pacsd/internal/testpeer"
)

// TestOIDCWithHydra checks tokens issued by a real OpenID Connect
// provider, Ory Hydra: accepted when valid, refused when expired, for
// another audience or tampered with, and still accepted after the
// provider rotates its signing key.
func TestOIDCWithHydra(t *testing.T) {
	testpeer.Need(t, testpeer.HydraCommand)
	// The token hook gives each trust's client its issuers claim, as an
	// identity provider's claim mapping would.
	hook := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		var req struct {
			Request struct {
				ClientID string `json:"client_id"`
			} `json:"request"`
		}
		if err := json.NewDecoder(r.Body).Decode(&req); err != nil {
			http.Error(w, err.Error(), http.StatusBadRequest)
			return
		}
		issuers, ok := map[string][]string{"trust-rxh": {"RXH"}, "trust-rgt": {"RGT", "RGT2"}}[req.Request.ClientID]
		if !ok {
			w.WriteHeader(http.StatusNoContent)
			return
		}
		json.NewEncoder(w).Encode(map[string]any{"session": map[string]any{"access_token": map[string]any{"issuers": issuers}}})
	}))
	t.Cleanup(hook.Close)
	h := testpeer.StartHydraT(t, testpeer.HydraOptions{TokenHook: hook.URL, TopLevelClaims: []string{"issuers"}})
	ctx := t.Context()

	clients := map[string]testpeer.HydraClient{
		"trust-rxh": {ID: "trust-rxh", Secret: "secret-rxh-0123456789", Scopes: []string{"read", "write"}, Audience: []string{"pacsd"}},
		"trust-rgt": {ID: "trust-rgt", Secret: "secret-rgt-0123456789", Scopes: []string{"read"}, Audience: []string{"pacsd"}},
		"archivist": {ID: "archivist", Secret: "secret-arc-0123456789", Scopes: []string{"admin"}, Audience: []string{"pacsd", "other-app"}, Lifespan: "30s"},
	}
	for _, c := range clients {
		if err := h.CreateClient(ctx, c); err != nil {
			t.Fatal(err)
		}
	}
	token := func(id string, scopes []string, audience string) string {
		t.Helper()
		tok, err := h.Token(ctx, clients[id], scopes, audience)
		if err != nil {
			t.Fatal(err)
		}
		return tok
	}
	o, err := NewOIDC(ctx, OIDCConfig{Issuer: h.Issuer, Audience: "pacsd", MinRefresh: time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}

	t.Run("accepted", func(t *testing.T) {
		for _, tc := range []struct {
			client  string
			scopes  []string
			want    Scope
			issuers []string
		}{
			{"trust-rxh", []string{"read", "write"}, Read | Write, []string{"RXH"}},
			{"trust-rxh", []string{"read"}, Read, []string{"RXH"}},
			{"trust-rgt", []string{"read"}, Read, []string{"RGT", "RGT2"}},
			{"archivist", []string{"admin"}, Admin, nil},
		} {
			p, err := o.Authenticate(ctx, token(tc.client, tc.scopes, "pacsd"))
			if err != nil {
				t.Fatalf("%s: %v", tc.client, err)
			}
			if p.Name != tc.client || p.Scopes != tc.want || !slices.Equal(p.Issuers, tc.issuers) {
				t.Errorf("%s: principal %+v, want scopes %v issuers %v", tc.client, p, tc.want, tc.issuers)
			}
		}
	})

	t.Run("scp array claim", func(t *testing.T) {
		scp, err := NewOIDC(ctx, OIDCConfig{Issuer: h.Issuer, Audience: "pacsd", RolesClaim: "scp", IssuersClaim: "ext.issuers"})
		if err != nil {
			t.Fatal(err)
		}
		p, err := scp.Authenticate(ctx, token("trust-rgt", []string{"read"}, "pacsd"))
		if err != nil || p.Scopes != Read || !slices.Equal(p.Issuers, []string{"RGT", "RGT2"}) {
			t.Errorf("principal %+v, %v", p, err)
		}
	})

	t.Run("wrong audience", func(t *testing.T) {
		_, err := o.Authenticate(ctx, token("archivist", []string{"admin"}, "other-app"))
		if !errors.Is(err, ErrInvalidToken) || !strings.Contains(err.Error(), "audience") {
			t.Errorf("error %v", err)
		}
	})

	t.Run("expired", func(t *testing.T) {
		tok := token("archivist", []string{"admin"}, "pacsd") // lives 30 s
		for _, tc := range []struct {
			after time.Duration
			ok    bool
		}{
			{0, true},
			{75 * time.Second, true}, // 45 s past expiry: within the leeway
			{2 * time.Minute, false},
		} {
			late, err := NewOIDC(ctx, OIDCConfig{Issuer: h.Issuer, Audience: "pacsd", Now: func() time.Time { return time.Now().Add(tc.after) }})
			if err != nil {
				t.Fatal(err)
			}
			_, err = late.Authenticate(ctx, tok)
			if (err == nil) != tc.ok {
				t.Errorf("%v after issue: error %v, want success %v", tc.after, err, tc.ok)
			}
			if err != nil && !strings.Contains(err.Error(), "expired") {
				t.Errorf("%v after issue: error %v does not say expired", tc.after, err)
			}
		}
	})

	t.Run("bad signature", func(t *testing.T) {
		parts := strings.Split(token("trust-rgt", []string{"read"}, "pacsd"), ".")
		other := strings.Split(token("trust-rxh", []string{"read", "write"}, "pacsd"), ".")
		// trust-rgt's header and claims with trust-rxh's signature.
		_, err := o.Authenticate(ctx, parts[0]+"."+parts[1]+"."+other[2])
		if !errors.Is(err, ErrInvalidToken) || !strings.Contains(err.Error(), "signature") {
			t.Errorf("error %v", err)
		}
	})

	t.Run("wrong issuer", func(t *testing.T) {
		fake := newFakeProvider(t)
		_, err := o.Authenticate(ctx, fake.sign(t, "k1", nil))
		if !errors.Is(err, ErrInvalidToken) {
			t.Errorf("a token of another provider: %v", err)
		}
	})

	t.Run("key rotation", func(t *testing.T) {
		before := token("trust-rxh", []string{"read"}, "pacsd")
		if err := h.RotateKeys(ctx, "rotated-key-1"); err != nil {
			t.Fatal(err)
		}
		after := token("trust-rxh", []string{"read"}, "pacsd")
		if kid := headerKID(t, after); kid != "rotated-key-1" {
			t.Fatalf("Hydra signed with %q after the rotation", kid)
		}
		if headerKID(t, before) == "rotated-key-1" {
			t.Fatal("the token before the rotation has the new key")
		}
		for name, tok := range map[string]string{"new key": after, "old key": before} {
			if _, err := o.Authenticate(ctx, tok); err != nil {
				t.Errorf("%s: %v", name, err)
			}
		}
	})
}

func headerKID(t *testing.T, jwt string) string {
	t.Helper()
	var h struct {
		KID string `json:"kid"`
	}
	b, err := decodeSegment(strings.Split(jwt, ".")[0])
	if err != nil {
		t.Fatal(err)
	}
	if err := json.Unmarshal(b, &h); err != nil {
		t.Fatal(err)
	}
	return h.KID
}

func decodeSegment(s string) ([]byte, error) {
	return base64.RawURLEncoding.DecodeString(s)
}
