package main

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"strings"
	"time"

	auditlog "github.com/pacsd/pacsd/audit"
	"github.com/pacsd/pacsd/auth"
	"github.com/pacsd/pacsd/dimse"
)

// tokenFileSettings name the file of machine tokens, which serve checks
// and token create appends to.
type tokenFileSettings struct {
	TokenFile string `name:"token-file" placeholder:"FILE" help:"file of machine tokens: one \"name sha256(token) scopes issuers\" a line; pacsd token create appends to it"`
}

// httpAuthSettings say how callers of DICOMweb and /api sign in.
type httpAuthSettings struct {
	HTTPAuth           string        `name:"http-auth" default:"none" placeholder:"MODES" help:"how HTTP callers authenticate: none, oidc (bearer tokens of --oidc-issuer), token (machine tokens of --token-file), or oidc,token"`
	AllowAnonymousHTTP bool          `name:"allow-anonymous-http" help:"serve HTTP beyond loopback with --http-auth none: anyone who reaches the port may read and write every study"`
	OIDCIssuer         string        `name:"oidc-issuer" placeholder:"URL" help:"issuer URL of the OpenID Connect provider, whose discovery document and keys pacsd reads"`
	OIDCAudience       string        `name:"oidc-audience" placeholder:"AUD" help:"audience that bearer tokens must carry: pacsd's client or resource ID at the provider"`
	OIDCRolesClaim     string        `name:"oidc-roles-claim" default:"scope" placeholder:"CLAIM" help:"claim of bearer tokens listing pacsd's scopes (read, write, delete, admin, research); a dotted name reaches into objects, e.g. realm_access.roles"`
	OIDCIssuersClaim   string        `name:"oidc-issuers-claim" default:"issuers" placeholder:"CLAIM" help:"claim of bearer tokens listing the issuers of patient IDs the caller may see (absent: all)"`
	OIDCLeeway         time.Duration `name:"oidc-leeway" default:"60s" placeholder:"DURATION" help:"clock skew allowed on bearer tokens' expiry and not-before times (at most 60s)"`
	tokenFileSettings
}

func (h *httpAuthSettings) complete() error {
	oidc, token, err := auth.ParseModes(h.HTTPAuth)
	if err != nil {
		return err
	}
	switch {
	case oidc && (h.OIDCIssuer == "" || h.OIDCAudience == ""):
		return errors.New("--http-auth oidc needs --oidc-issuer and --oidc-audience")
	case h.OIDCLeeway <= 0 || h.OIDCLeeway > auth.MaxLeeway:
		return fmt.Errorf("oidc_leeway %v: want more than 0 and at most %v", h.OIDCLeeway, auth.MaxLeeway)
	case token && h.TokenFile == "":
		return errors.New("--http-auth token needs --token-file (create tokens with pacsd token create)")
	}
	return nil
}

// checkListen refuses an HTTP listen address beyond loopback with
// --http-auth none, unless --allow-anonymous-http says so.
func (h *httpAuthSettings) checkListen(addr string) error {
	oidc, token, _ := auth.ParseModes(h.HTTPAuth)
	if oidc || token || h.AllowAnonymousHTTP || isLoopback(addr) {
		return nil
	}
	return fmt.Errorf("refusing to serve HTTP on %s with --http-auth none: set --http-auth to oidc, token or oidc,token, or --allow-anonymous-http to let anyone who reaches the port read and write every study", addr)
}

// middleware returns the HTTP authentication of the settings: it opens
// the OpenID Connect provider (discovery and keys, so that a
// misconfiguration shows at start) and the token file. The token file,
// if any, is returned for reloading on SIGHUP.
func (h *httpAuthSettings) middleware(ctx context.Context, trail *auditlog.Trail, log *slog.Logger) (*auth.Middleware, *auth.TokenFile, error) {
	oidc, token, err := auth.ParseModes(h.HTTPAuth)
	if err != nil {
		return nil, nil, err
	}
	m := &auth.Middleware{Open: openRequest, Need: requestScope, Logger: log, Observe: observeHTTP(trail, log)}
	if oidc {
		o, err := auth.NewOIDC(ctx, auth.OIDCConfig{
			Issuer:       h.OIDCIssuer,
			Audience:     h.OIDCAudience,
			RolesClaim:   h.OIDCRolesClaim,
			IssuersClaim: h.OIDCIssuersClaim,
			Leeway:       h.OIDCLeeway,
		})
		if err != nil {
			return nil, nil, err
		}
		m.Authenticators = append(m.Authenticators, o)
	}
	var tf *auth.TokenFile
	if token {
		if tf, err = auth.OpenTokenFile(h.TokenFile); err != nil {
			return nil, nil, err
		}
		m.Authenticators = append(m.Authenticators, tf)
		if tf.Len() == 0 {
			log.Warn("the token file holds no token: create one with pacsd token create", "token_file", h.TokenFile)
		}
	}
	return m, tf, nil
}

// openRequest reports the requests that need no authentication: the
// health checks, which orchestrators call without credentials; the web
// interface's page, assets and configuration (docs/api.md), which hold no
// patient data and tell the browser how to sign in; and the CORS
// preflight requests of browsers, which never carry credentials (the
// request that follows does); and study downloads with a ticket.
func openRequest(r *http.Request) bool {
	get := r.Method == http.MethodGet || r.Method == http.MethodHead
	switch p := r.URL.Path; {
	case p == "/healthz" || p == "/readyz" || p == "/" || p == "/api/ui-config" || strings.HasPrefix(p, "/ui/"):
		return get
	case r.Method == http.MethodOptions:
		return r.Header.Get("Origin") != "" && r.Header.Get("Access-Control-Request-Method") != ""
	case strings.HasPrefix(p, "/api/studies/") && strings.HasSuffix(p, "/archive.zip") && r.URL.Query().Has("ticket"):
		// A browser's download carries a one-time ticket instead of a
		// token, which the API checks (api.Server's archive tickets).
		return get
	}
	return false
}

// requestScope is the scope a request needs: admin for /api/audit and
// /api/reidentify, read for a download ticket, delete for a restore, and
// otherwise what its method asks (auth.MethodScope).
func requestScope(r *http.Request) auth.Scope {
	if r.URL.Path == auditAPIPath || strings.HasPrefix(r.URL.Path, auditAPIPath+"/") || strings.HasPrefix(r.URL.Path, reidentifyAPIPath+"/") {
		return auth.Admin
	}
	if r.Method == http.MethodPost && strings.HasPrefix(r.URL.Path, "/api/studies/") && strings.HasSuffix(r.URL.Path, "/archive-ticket") {
		return auth.Read // a ticket downloads, which reading allows
	}
	if r.Method == http.MethodPost && strings.HasPrefix(r.URL.Path, "/api/studies/") && strings.HasSuffix(r.URL.Path, "/restore") {
		return auth.Delete // undoes a deletion, as docs/api.md says
	}
	return auth.MethodScope(r)
}

// observeHTTP records the refusals of the HTTP authentication in the
// audit trail: a token refused is a failed login, a request beyond its
// scopes the use of a restricted function. A request without a token is
// not a login attempt, and is only answered 401.
func observeHTTP(trail *auditlog.Trail, log *slog.Logger) func(*http.Request, *auth.Principal, error) {
	return func(r *http.Request, p *auth.Principal, err error) {
		switch {
		case err == nil, errors.Is(err, auth.ErrNoToken):
		case errors.Is(err, auth.ErrScope) && p != nil:
			trail.Restricted(auditlog.Actor{User: p.Name, Addr: r.RemoteAddr}, err.Error())
		case errors.Is(err, auth.ErrInvalidToken):
			trail.LoginFailed(auditlog.Actor{Addr: r.RemoteAddr}, err.Error())
		default:
			log.Warn("authentication unavailable", "err", err)
		}
	}
}

// withRefusalCORS lets a browser on an allowed origin read a refusal of
// the authentication (401, 403), which is answered before DICOMweb's own
// CORS headers are set: without them the viewer sees a network error
// rather than a request to sign in. allowed is DICOMweb's list (nil: any).
func withRefusalCORS(allowed []string, next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if origin := r.Header.Get("Origin"); origin != "" && originAllowed(allowed, origin) {
			h := w.Header()
			if allowed == nil {
				h.Set("Access-Control-Allow-Origin", "*")
			} else {
				h.Set("Access-Control-Allow-Origin", origin)
				h.Add("Vary", "Origin")
			}
			h.Set("Access-Control-Expose-Headers", "WWW-Authenticate")
		}
		next.ServeHTTP(w, r)
	})
}

func originAllowed(allowed []string, origin string) bool {
	if allowed == nil {
		return true
	}
	for _, o := range allowed {
		if o == "*" || strings.EqualFold(o, origin) {
			return true
		}
	}
	return false
}

// aeAuthorizer decides who a calling AE is: by the allow-list, or, when
// none applies (loopback only, or --allow-any-ae), any calling AE is a
// principal with read and write on every issuer.
type aeAuthorizer struct {
	list *auth.AllowList // nil: no allow-list applies
}

// newAEAuthorizer builds the DIMSE allow-list of the settings, resolving
// its host names once.
func newAEAuthorizer(ctx context.Context, d *dimseSettings) (*aeAuthorizer, error) {
	if d.AllowAnyAE || len(d.AllowAE) == 0 {
		return &aeAuthorizer{}, nil
	}
	list, err := auth.ParseAllowList(d.AllowAE)
	if err != nil {
		return nil, err
	}
	if err := list.Resolve(ctx, nil); err != nil {
		return nil, err
	}
	return &aeAuthorizer{list: list}, nil
}

// allowCaller is dimse.Server.AllowCaller; nil when every caller is allowed.
func (a *aeAuthorizer) allowCaller() func(string, net.Addr) bool {
	if a.list == nil {
		return nil
	}
	return a.list.AllowCaller
}

// associationContext is dimse.Server.AssociationContext: the association's
// principal goes into the context of every operation on it, where the
// services find it with auth.FromContext.
func (a *aeAuthorizer) associationContext(ctx context.Context, as *dimse.Association) context.Context {
	if a.list == nil {
		return auth.NewContext(ctx, auth.OpenAE(as.CallingAE()))
	}
	if p, ok := a.list.Authorize(as.CallingAE(), as.RemoteAddr()); ok {
		return auth.NewContext(ctx, p)
	}
	return ctx // not reached: the association was accepted by the same list
}

// needsClientCert reports whether the allow-list pins a certificate, so
// that the TLS listener asks clients for one.
func (a *aeAuthorizer) needsClientCert() bool { return a.list != nil && a.list.NeedsClientCert() }

// checkCertBindings refuses entries bound to a certificate's CN or DNS
// name without a client CA to verify certificates against: anyone can
// make a certificate with any name.
func (a *aeAuthorizer) checkCertBindings(clientCA string) error {
	if a.list == nil || clientCA != "" {
		return nil
	}
	for _, e := range a.list.Entries() {
		if e.Cert != nil && e.Cert.SHA256 == nil {
			return fmt.Errorf("allow_ae %s@%s needs --tls-client-ca: a certificate's name means nothing unless a CA vouches for it (or pin it with cert:SHA256=…)", e.AETitle, e.Cert)
		}
	}
	return nil
}

// observeAssociations records the DIMSE associations accepted and refused
// in the audit trail.
func observeAssociations(trail *auditlog.Trail) func(dimse.AssociationEvent) {
	return func(ev dimse.AssociationEvent) {
		who := auditlog.Actor{User: ev.CallingAE, AETitle: ev.CallingAE}
		if ev.RemoteAddr != nil {
			who.Addr = ev.RemoteAddr.String()
		}
		if ev.Accepted {
			trail.AssociationAccepted(who, ev.CalledAE)
			return
		}
		reason := ev.Reason
		if ev.CallingAE != "" {
			reason = fmt.Sprintf("association from %s to %s rejected: %s", ev.CallingAE, ev.CalledAE, ev.Reason)
		}
		trail.AssociationRefused(who, reason)
	}
}
