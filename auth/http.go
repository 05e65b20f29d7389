package auth

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"strings"
)

// Authenticator turns a bearer token into a principal. An unknown or
// invalid token is an error wrapping ErrInvalidToken; any other error
// (the identity provider cannot be reached) is the service's.
type Authenticator interface {
	Authenticate(ctx context.Context, token string) (*Principal, error)
}

// Anonymous returns the principal of every request when authentication is
// off (--http-auth none): it may do everything.
func Anonymous() *Principal {
	return &Principal{Name: "anonymous", Kind: KindAnonymous, Scopes: Read | Write | Delete | Admin}
}

// ParseModes reads --http-auth: "none", or "oidc", "token" or both
// separated by a comma. It reports which are on.
func ParseModes(s string) (oidc, token bool, err error) {
	if strings.TrimSpace(s) == "none" {
		return false, false, nil
	}
	for m := range strings.SplitSeq(s, ",") {
		switch strings.TrimSpace(m) {
		case "oidc":
			oidc = true
		case "token":
			token = true
		default:
			return false, false, fmt.Errorf("auth: --http-auth %q: want none, oidc, token or oidc,token", s)
		}
	}
	return oidc, token, nil
}

// Middleware authenticates HTTP requests by their bearer token
// (Authorization: Bearer, RFC 6750 §2.1) and checks their scope. It puts
// the principal in the request's context (FromContext) for the handlers.
//
// Without a token, or with one no authenticator accepts, it answers 401
// with WWW-Authenticate: Bearer (error="invalid_token" when a token was
// given); without the scope the request needs, 403 with
// error="insufficient_scope". A token is never logged.
type Middleware struct {
	// Authenticators are tried in order; a token that starts with
	// TokenPrefix goes only to those that are not JWT-based, and any
	// other token to the others first. Empty means authentication is
	// off and every request is Anonymous.
	Authenticators []Authenticator
	// Realm is the realm of WWW-Authenticate (default "pacsd").
	Realm string
	// Open reports requests that need no authentication, such as
	// /healthz; nil means none.
	Open func(*http.Request) bool
	// Need returns the scopes of which a request needs one (default
	// MethodScope).
	Need func(*http.Request) Scope
	// Observe, if set, is called once per request that presented a
	// token or needed one, with the principal or the error: ErrNoToken for a
	// request without a token, one wrapping ErrInvalidToken for a token
	// refused, ErrScope,
	// with the principal, for a request beyond its scopes. The audit
	// trail records failures from it.
	Observe func(r *http.Request, p *Principal, err error)
	Logger  *slog.Logger
}

// MethodScope is the default scope a request needs: Read (or Research)
// for GET, HEAD and OPTIONS, Delete for DELETE, and Write for the rest.
func MethodScope(r *http.Request) Scope {
	switch r.Method {
	case http.MethodGet, http.MethodHead, http.MethodOptions:
		return Read | Research
	case http.MethodDelete:
		return Delete
	}
	return Write
}

// ErrNoToken reports a request without credentials.
var ErrNoToken = errors.New("auth: no bearer token")

// ErrScope reports a request that the principal's scopes do not allow.
var ErrScope = errors.New("auth: insufficient scope")

// Wrap returns next behind the middleware. In echo, mount it with
// e.Use(echo.WrapMiddleware(m.Wrap)), or wrap the whole echo instance.
func (m *Middleware) Wrap(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if m.Open != nil && m.Open(r) {
			next.ServeHTTP(w, r)
			return
		}
		if len(m.Authenticators) == 0 {
			next.ServeHTTP(w, r.WithContext(NewContext(r.Context(), Anonymous())))
			return
		}
		p, err := m.authenticate(r)
		if err != nil {
			if m.Observe != nil {
				m.Observe(r, nil, err)
			}
			m.unauthorized(w, r, err)
			return
		}
		need := MethodScope
		if m.Need != nil {
			need = m.Need
		}
		s := need(r)
		if !grants(p, s) {
			err = fmt.Errorf("%w: %s needs %s", ErrScope, r.Method+" "+r.URL.Path, s)
		}
		if m.Observe != nil {
			m.Observe(r, p, err)
		}
		if err != nil {
			m.logger().Info("request refused: scope missing", "principal", p.Name, "kind", p.Kind, "need", s.String(), "method", r.Method, "path", r.URL.Path)
			w.Header().Set("WWW-Authenticate", fmt.Sprintf(`Bearer realm=%q, error="insufficient_scope", scope=%q`, m.realm(), strings.ReplaceAll(s.String(), ",", " ")))
			writeError(w, "insufficient scope: this request needs "+s.String(), http.StatusForbidden)
			return
		}
		next.ServeHTTP(w, r.WithContext(NewContext(r.Context(), p)))
	})
}

// grants reports whether p holds one of the scopes in need.
func grants(p *Principal, need Scope) bool {
	for _, n := range scopeNames {
		if need&n.s != 0 && p.Can(n.s) {
			return true
		}
	}
	return need == 0
}

// Authenticate returns the principal of r's bearer token, as Wrap does
// for the requests it does not leave open: for a handler of an open
// request that answers differently to a caller who signed in.
func (m *Middleware) Authenticate(r *http.Request) (*Principal, error) { return m.authenticate(r) }

func (m *Middleware) authenticate(r *http.Request) (*Principal, error) {
	token, err := bearer(r)
	if err != nil {
		return nil, err
	}
	var firstErr error
	for _, a := range m.order(token) {
		p, err := a.Authenticate(r.Context(), token)
		if err == nil {
			return p, nil
		}
		if firstErr == nil || !errors.Is(err, ErrInvalidToken) {
			firstErr = err
		}
	}
	if firstErr == nil {
		firstErr = ErrInvalidToken
	}
	return nil, firstErr
}

// order puts the authenticator most likely to know token first, so that
// a machine token never reaches the identity provider's key set and a JWT
// is not hashed against the token file for nothing.
func (m *Middleware) order(token string) []Authenticator {
	if len(m.Authenticators) < 2 {
		return m.Authenticators
	}
	jwt := strings.Count(token, ".") == 2 && !strings.HasPrefix(token, TokenPrefix)
	var first, rest []Authenticator
	for _, a := range m.Authenticators {
		_, isOIDC := a.(*OIDC)
		if isOIDC == jwt {
			first = append(first, a)
		} else {
			rest = append(rest, a)
		}
	}
	return append(first, rest...)
}

// bearer returns the request's bearer token (RFC 6750 §2.1). The form
// and query parameter methods are not accepted: they end up in logs.
func bearer(r *http.Request) (string, error) {
	h := r.Header.Values("Authorization")
	if len(h) == 0 {
		return "", ErrNoToken
	}
	if len(h) > 1 {
		return "", fmt.Errorf("%w: more than one Authorization header", ErrInvalidToken)
	}
	scheme, token, ok := strings.Cut(strings.TrimSpace(h[0]), " ")
	if !ok || !strings.EqualFold(scheme, "Bearer") {
		return "", fmt.Errorf("%w: the Authorization scheme is not Bearer", ErrInvalidToken)
	}
	token = strings.TrimSpace(token)
	if token == "" || len(token) > 16<<10 {
		return "", fmt.Errorf("%w: empty or oversized bearer token", ErrInvalidToken)
	}
	return token, nil
}

// unauthorized answers 401, or 503 when the identity provider could not
// be asked.
func (m *Middleware) unauthorized(w http.ResponseWriter, r *http.Request, err error) {
	switch {
	case errors.Is(err, ErrNoToken):
		w.Header().Set("WWW-Authenticate", fmt.Sprintf("Bearer realm=%q", m.realm()))
		writeError(w, "authentication required: send Authorization: Bearer TOKEN", http.StatusUnauthorized)
	case errors.Is(err, ErrInvalidToken):
		m.logger().Info("request refused: invalid token", "why", err.Error(), "method", r.Method, "path", r.URL.Path, "remote", r.RemoteAddr)
		w.Header().Set("WWW-Authenticate", fmt.Sprintf(`Bearer realm=%q, error="invalid_token", error_description="the token is invalid or expired"`, m.realm()))
		writeError(w, "invalid or expired token", http.StatusUnauthorized)
	default:
		m.logger().Warn("cannot authenticate", "err", err, "method", r.Method, "path", r.URL.Path)
		w.Header().Set("Retry-After", "5")
		writeError(w, "authentication is unavailable", http.StatusServiceUnavailable)
	}
}

// writeError answers a refusal as the /api does, {"error": why}; why is
// a constant of this file, never request text.
func writeError(w http.ResponseWriter, why string, status int) {
	h := w.Header()
	h.Set("Content-Type", "application/json")
	h.Set("X-Content-Type-Options", "nosniff")
	w.WriteHeader(status)
	json.NewEncoder(w).Encode(map[string]string{"error": why})
}

func (m *Middleware) realm() string {
	if m.Realm != "" {
		return m.Realm
	}
	return "pacsd"
}

func (m *Middleware) logger() *slog.Logger {
	if m.Logger != nil {
		return m.Logger
	}
	return slog.New(slog.DiscardHandler)
}
