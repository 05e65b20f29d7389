package auth

import (
	"context"
	"crypto/sha256"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/coreos/go-oidc/v3/oidc"
	jose "github.com/go-jose/go-jose/v4"
)

// OIDCConfig configures bearer token checks against an OpenID Connect
// provider.
type OIDCConfig struct {
	// Issuer is the provider's issuer URL (--oidc-issuer); discovery
	// reads ISSUER/.well-known/openid-configuration, and tokens must
	// carry exactly this iss.
	Issuer string
	// Audience must be among the token's aud (--oidc-audience).
	Audience string
	// RolesClaim names the claim whose values are scopes
	// (--oidc-roles-claim, default "scope"): a space-separated string or
	// an array of strings. A name with dots that is not itself a claim
	// is a path into nested objects, e.g. "realm_access.roles".
	RolesClaim string
	// IssuersClaim names the claim listing the issuers of patient IDs
	// the caller may see (--oidc-issuers-claim, default "issuers"): an
	// array of strings, or a string of issuers separated by "|". Absent
	// means all.
	IssuersClaim string
	// Leeway is the clock skew allowed on exp and nbf (default and most
	// 60 s).
	Leeway time.Duration
	// MinRefresh is the shortest interval between two fetches of the
	// provider's keys (default 10 s).
	MinRefresh time.Duration
	// HTTPClient reaches the provider (default: a client with a 10 s
	// timeout).
	HTTPClient *http.Client
	// Now is the clock (default time.Now).
	Now func() time.Time
}

// MaxLeeway is the most clock skew OIDC allows on a token's times.
const MaxLeeway = 60 * time.Second

// OIDC authenticates bearer tokens issued by an OpenID Connect provider.
type OIDC struct {
	cfg      OIDCConfig
	verifier *oidc.IDTokenVerifier
	keys     *remoteKeys
	verified tokenCache
}

// signingAlgs are the signature algorithms accepted. HMAC and "none" are
// left out: a provider's tokens are checked with its public keys only.
var signingAlgs = []string{
	"RS256", "RS384", "RS512", "PS256", "PS384", "PS512",
	"ES256", "ES384", "ES512", "EdDSA",
}

// NewOIDC discovers the provider at cfg.Issuer and returns an
// authenticator of its tokens. It fetches the provider's keys once, so
// that a misconfigured provider is reported at start.
func NewOIDC(ctx context.Context, cfg OIDCConfig) (*OIDC, error) {
	if cfg.Issuer == "" {
		return nil, errors.New("auth: OIDC needs an issuer URL (--oidc-issuer)")
	}
	if cfg.Audience == "" {
		return nil, errors.New("auth: OIDC needs an audience (--oidc-audience): without one, tokens issued for any other application would be accepted")
	}
	if cfg.RolesClaim == "" {
		cfg.RolesClaim = "scope"
	}
	if cfg.IssuersClaim == "" {
		cfg.IssuersClaim = "issuers"
	}
	if cfg.Leeway <= 0 || cfg.Leeway > MaxLeeway {
		cfg.Leeway = MaxLeeway
	}
	if cfg.MinRefresh <= 0 {
		cfg.MinRefresh = 10 * time.Second
	}
	if cfg.HTTPClient == nil {
		cfg.HTTPClient = &http.Client{Timeout: 10 * time.Second}
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	provider, err := oidc.NewProvider(oidc.ClientContext(ctx, cfg.HTTPClient), cfg.Issuer)
	if err != nil {
		return nil, fmt.Errorf("auth: OIDC discovery at %s: %w", cfg.Issuer, err)
	}
	var meta struct {
		JWKSURI string   `json:"jwks_uri"`
		Algs    []string `json:"id_token_signing_alg_values_supported"`
	}
	if err := provider.Claims(&meta); err != nil {
		return nil, fmt.Errorf("auth: OIDC discovery at %s: %w", cfg.Issuer, err)
	}
	if meta.JWKSURI == "" {
		return nil, fmt.Errorf("auth: OIDC discovery at %s: no jwks_uri", cfg.Issuer)
	}
	o := &OIDC{cfg: cfg}
	o.keys = &remoteKeys{url: meta.JWKSURI, client: cfg.HTTPClient, minRefresh: cfg.MinRefresh, now: cfg.Now, refreshed: o.verified.clear}
	if err := o.keys.refresh(ctx, time.Time{}); err != nil {
		return nil, err
	}
	o.verifier = oidc.NewVerifier(cfg.Issuer, o.keys, &oidc.Config{
		ClientID:             cfg.Audience,
		SupportedSigningAlgs: signingAlgs,
		// Expiry is checked below, with the leeway go-oidc lacks.
		SkipExpiryCheck: true,
	})
	return o, nil
}

// Authenticate checks a bearer token and returns its principal. A token
// it has verified before is found in a cache, by its SHA-256, and only
// its times are checked again.
func (o *OIDC) Authenticate(ctx context.Context, token string) (*Principal, error) {
	if strings.Count(token, ".") != 2 {
		return nil, fmt.Errorf("%w: not a JWT", ErrInvalidToken)
	}
	sum := sha256.Sum256([]byte(token))
	now := o.cfg.Now()
	if c, ok := o.verified.get(sum); ok {
		if err := o.checkTimes(now, c.exp, c.nbf); err != nil {
			o.verified.remove(sum)
			return nil, err
		}
		p := *c.p
		return &p, nil
	}
	p, exp, nbf, err := o.verify(ctx, token, now)
	if err != nil {
		return nil, err
	}
	o.verified.put(sum, cachedToken{p: p, exp: exp, nbf: nbf}, now, o.cfg.Leeway)
	cp := *p
	return &cp, nil
}

// checkTimes checks a token's expiry and not-before time, with the
// leeway.
func (o *OIDC) checkTimes(now, exp, nbf time.Time) error {
	if now.After(exp.Add(o.cfg.Leeway)) {
		return fmt.Errorf("%w: expired at %s", ErrInvalidToken, exp.UTC().Format(time.RFC3339))
	}
	if !nbf.IsZero() && now.Add(o.cfg.Leeway).Before(nbf) {
		return fmt.Errorf("%w: not valid before %s", ErrInvalidToken, nbf.UTC().Format(time.RFC3339))
	}
	return nil
}

// verify checks a token's signature, issuer, audience and times, and
// returns its principal with its expiry and not-before times.
func (o *OIDC) verify(ctx context.Context, token string, now time.Time) (p *Principal, exp, nbf time.Time, err error) {
	t, err := o.verifier.Verify(ctx, token)
	fail := func(err error) (*Principal, time.Time, time.Time, error) { return nil, time.Time{}, time.Time{}, err }
	if err != nil {
		return fail(fmt.Errorf("%w: %w", ErrInvalidToken, err))
	}
	var claims map[string]any
	if err := t.Claims(&claims); err != nil {
		return fail(fmt.Errorf("%w: claims: %w", ErrInvalidToken, err))
	}
	if t.Expiry.IsZero() {
		return fail(fmt.Errorf("%w: no expiry (exp)", ErrInvalidToken))
	}
	exp = t.Expiry
	nbf, _ = numericDate(claims["nbf"])
	if err := o.checkTimes(now, exp, nbf); err != nil {
		return fail(err)
	}
	p = &Principal{Name: t.Subject, Kind: KindOIDC}
	if p.Name == "" {
		return fail(fmt.Errorf("%w: no subject (sub)", ErrInvalidToken))
	}
	for _, v := range claimStrings(claims, o.cfg.RolesClaim, " ") {
		if s, err := ParseScope(v); err == nil {
			p.Scopes |= s
		}
	}
	if raw, ok := lookupClaim(claims, o.cfg.IssuersClaim); ok {
		list := claimStrings(claims, o.cfg.IssuersClaim, "|")
		if p.Issuers, err = parseIssuers(strings.Join(list, "|")); err != nil {
			return fail(fmt.Errorf("%w: claim %s: %w", ErrInvalidToken, o.cfg.IssuersClaim, err))
		}
		if raw != nil && p.Issuers == nil && !slices.Contains(list, "*") {
			// A claim that is present but empty grants no issuer,
			// rather than all of them.
			p.Issuers = []string{}
		}
	}
	return p, exp, nbf, nil
}

// maxVerified bounds the tokens the cache of verified tokens holds.
const maxVerified = 10000

// tokenCache holds the principals of tokens verified, by the SHA-256 of
// the token, until they expire. A viewer sends its token with every
// request, and checking an RS256 signature and decoding the claims twice
// costs more than the query it guards. The cache is emptied whenever the
// provider's key set is fetched again, so that a key the provider has
// withdrawn stops vouching for tokens at once. It is safe for concurrent
// use; the zero value is empty.
type tokenCache struct {
	mu sync.Mutex
	m  map[[sha256.Size]byte]cachedToken
}

type cachedToken struct {
	p        *Principal
	exp, nbf time.Time
}

func (c *tokenCache) get(sum [sha256.Size]byte) (cachedToken, bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	t, ok := c.m[sum]
	return t, ok
}

// put adds a token, first dropping the expired ones when the cache is
// full, and any one if that freed nothing.
func (c *tokenCache) put(sum [sha256.Size]byte, t cachedToken, now time.Time, leeway time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.m == nil {
		c.m = map[[sha256.Size]byte]cachedToken{}
	}
	if len(c.m) >= maxVerified {
		for k, v := range c.m {
			if now.After(v.exp.Add(leeway)) {
				delete(c.m, k)
			}
		}
		for k := range c.m {
			if len(c.m) < maxVerified {
				break
			}
			delete(c.m, k)
		}
	}
	c.m[sum] = t
}

func (c *tokenCache) remove(sum [sha256.Size]byte) {
	c.mu.Lock()
	defer c.mu.Unlock()
	delete(c.m, sum)
}

func (c *tokenCache) clear() {
	c.mu.Lock()
	defer c.mu.Unlock()
	clear(c.m)
}

// numericDate reads a JWT NumericDate.
func numericDate(v any) (time.Time, bool) {
	f, ok := v.(float64)
	if !ok {
		return time.Time{}, false
	}
	return time.Unix(int64(f), 0), true
}

// lookupClaim finds a claim by its name, or else by a dotted path into
// nested objects.
func lookupClaim(claims map[string]any, name string) (any, bool) {
	if v, ok := claims[name]; ok {
		return v, true
	}
	var cur any = claims
	for part := range strings.SplitSeq(name, ".") {
		m, ok := cur.(map[string]any)
		if !ok {
			return nil, false
		}
		if cur, ok = m[part]; !ok {
			return nil, false
		}
	}
	return cur, true
}

// claimStrings returns a claim's values: the elements of an array of
// strings, or a string split at sep.
func claimStrings(claims map[string]any, name, sep string) []string {
	v, _ := lookupClaim(claims, name)
	var out []string
	switch v := v.(type) {
	case string:
		if sep == " " {
			return strings.Fields(v)
		}
		for s := range strings.SplitSeq(v, sep) {
			if s = strings.TrimSpace(s); s != "" {
				out = append(out, s)
			}
		}
	case []any:
		for _, e := range v {
			if s, ok := e.(string); ok && strings.TrimSpace(s) != "" {
				out = append(out, strings.TrimSpace(s))
			}
		}
	}
	return out
}

// remoteKeys is the provider's key set (JWKS), fetched from its jwks_uri
// and cached. A token signed with a key ID not in the cache makes it fetch
// the set again (the provider has rotated its keys), at most once per
// minRefresh; a token whose key is known but whose signature is wrong is
// refused without a fetch.
type remoteKeys struct {
	url        string
	client     *http.Client
	minRefresh time.Duration
	now        func() time.Time

	// refreshed, if set, is called after each fetch.
	refreshed func()

	fetchMu sync.Mutex // one fetch at a time
	mu      sync.RWMutex
	keys    []jose.JSONWebKey
	fetched time.Time
}

// maxJWKS bounds a key set response.
const maxJWKS = 1 << 20

// VerifySignature implements oidc.KeySet.
func (k *remoteKeys) VerifySignature(ctx context.Context, raw string) ([]byte, error) {
	algs := make([]jose.SignatureAlgorithm, len(signingAlgs))
	for i, a := range signingAlgs {
		algs[i] = jose.SignatureAlgorithm(a)
	}
	jws, err := jose.ParseSignedCompact(raw, algs)
	if err != nil {
		return nil, fmt.Errorf("malformed JWT: %w", err)
	}
	if len(jws.Signatures) != 1 {
		return nil, errors.New("want exactly one signature")
	}
	kid := jws.Signatures[0].Header.KeyID
	k.mu.RLock()
	keys, fetched := k.keys, k.fetched
	k.mu.RUnlock()
	if !hasKey(keys, kid) {
		if err := k.refresh(ctx, fetched); err != nil {
			return nil, err
		}
		k.mu.RLock()
		keys = k.keys
		k.mu.RUnlock()
	}
	for i := range keys {
		if kid != "" && keys[i].KeyID != kid {
			continue
		}
		if payload, err := jws.Verify(&keys[i]); err == nil {
			return payload, nil
		}
	}
	if !hasKey(keys, kid) {
		return nil, fmt.Errorf("no key %q in the provider's key set", kid)
	}
	return nil, errors.New("signature does not match the provider's key")
}

func hasKey(keys []jose.JSONWebKey, kid string) bool {
	if kid == "" {
		return len(keys) > 0
	}
	return slices.ContainsFunc(keys, func(k jose.JSONWebKey) bool { return k.KeyID == kid })
}

// refresh fetches the key set unless it was fetched after seen (by
// another caller meanwhile) or less than minRefresh ago.
func (k *remoteKeys) refresh(ctx context.Context, seen time.Time) error {
	k.fetchMu.Lock()
	defer k.fetchMu.Unlock()
	k.mu.RLock()
	fetched := k.fetched
	k.mu.RUnlock()
	if fetched.After(seen) || (!fetched.IsZero() && k.now().Sub(fetched) < k.minRefresh) {
		return nil
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, k.url, nil)
	if err != nil {
		return fmt.Errorf("auth: key set: %w", err)
	}
	resp, err := k.client.Do(req)
	if err != nil {
		return fmt.Errorf("auth: key set: %w", err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("auth: key set %s: %s", k.url, resp.Status)
	}
	body, err := io.ReadAll(io.LimitReader(resp.Body, maxJWKS+1))
	if err != nil {
		return fmt.Errorf("auth: key set: %w", err)
	}
	if len(body) > maxJWKS {
		return fmt.Errorf("auth: key set %s is larger than %d bytes", k.url, maxJWKS)
	}
	var set jose.JSONWebKeySet
	if err := json.Unmarshal(body, &set); err != nil {
		return fmt.Errorf("auth: key set %s: %w", k.url, err)
	}
	var keys []jose.JSONWebKey
	for _, key := range set.Keys {
		if key.Use == "" || key.Use == "sig" {
			keys = append(keys, key)
		}
	}
	k.mu.Lock()
	k.keys, k.fetched = keys, k.now()
	k.mu.Unlock()
	if k.refreshed != nil {
		k.refreshed()
	}
	return nil
}
