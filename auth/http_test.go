package auth

import (
	"bytes"
	"errors"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/labstack/echo/v4"
)

func TestParseModes(t *testing.T) {
	for _, tc := range []struct {
		in          string
		oidc, token bool
		err         bool
	}{
		{"none", false, false, false},
		{"oidc", true, false, false},
		{"token", false, true, false},
		{"oidc,token", true, true, false},
		{"token, oidc", true, true, false},
		{"", false, false, true},
		{"basic", false, false, true},
		{"none,oidc", false, false, true},
	} {
		o, k, err := ParseModes(tc.in)
		if o != tc.oidc || k != tc.token || (err != nil) != tc.err {
			t.Errorf("ParseModes(%q) = %v, %v, %v", tc.in, o, k, err)
		}
	}
}

func TestMiddleware(t *testing.T) {
	p := newFakeProvider(t)
	o := newTestOIDC(t, p, nil)
	path := filepath.Join(t.TempDir(), "tokens")
	if err := os.WriteFile(path, nil, 0o600); err != nil {
		t.Fatal(err)
	}
	reader, err := CreateToken(path, "reader", Read, []string{"RXH"})
	if err != nil {
		t.Fatal(err)
	}
	admin, _ := CreateToken(path, "admin", Admin, nil)
	tf, err := OpenTokenFile(path)
	if err != nil {
		t.Fatal(err)
	}
	var logs bytes.Buffer
	var observed []string
	m := &Middleware{
		Authenticators: []Authenticator{o, tf},
		Open:           func(r *http.Request) bool { return r.URL.Path == "/healthz" },
		Need: func(r *http.Request) Scope {
			if strings.HasPrefix(r.URL.Path, "/api/audit") {
				return Admin
			}
			return MethodScope(r)
		},
		Observe: func(r *http.Request, p *Principal, err error) {
			switch {
			case errors.Is(err, ErrScope) && p != nil:
				observed = append(observed, "fail "+p.Name)
			case err != nil:
				observed = append(observed, "fail")
			default:
				observed = append(observed, p.Name)
			}
		},
		Logger: slog.New(slog.NewTextHandler(&logs, nil)),
	}
	h := m.Wrap(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		p, ok := FromContext(r.Context())
		if ok == (r.URL.Path == "/healthz") {
			t.Errorf("%s: principal in the context: %v", r.URL.Path, ok)
			return
		}
		if !ok {
			return
		}
		io.WriteString(w, p.Name+" "+string(p.Kind)+" "+strings.Join(p.Issuers, "|"))
	}))
	jwt := p.sign(t, "k1", map[string]any{"issuers": []string{"RGT"}})
	expired := p.sign(t, "k1", map[string]any{"exp": 1000})
	for _, tc := range []struct {
		name       string
		method     string
		path       string
		auth       []string
		wantStatus int
		wantBody   string
		wantWWW    string
	}{
		{"health is open", "GET", "/healthz", nil, 200, "", ""},
		{"no token", "GET", "/dicom-web/studies", nil, 401, "", `Bearer realm="pacsd"`},
		{"basic auth", "GET", "/dicom-web/studies", []string{"Basic dXNlcjpwYXNz"}, 401, "", `error="invalid_token"`},
		{"unknown token", "GET", "/dicom-web/studies", []string{"Bearer pacsd_nope"}, 401, "", `error="invalid_token"`},
		{"expired JWT", "GET", "/dicom-web/studies", []string{"Bearer " + expired}, 401, "", `error="invalid_token"`},
		{"two headers", "GET", "/dicom-web/studies", []string{"Bearer " + reader, "Bearer " + admin}, 401, "", `error="invalid_token"`},
		{"machine token reads", "GET", "/dicom-web/studies", []string{"Bearer " + reader}, 200, "reader token RXH", ""},
		{"scheme is case-insensitive", "GET", "/dicom-web/studies", []string{"bearer " + reader}, 200, "reader token RXH", ""},
		{"machine token cannot store", "POST", "/dicom-web/studies", []string{"Bearer " + reader}, 403, "", `error="insufficient_scope", scope="write"`},
		{"JWT stores", "POST", "/dicom-web/studies", []string{"Bearer " + jwt}, 200, "alice oidc RGT", ""},
		{"JWT cannot delete", "DELETE", "/dicom-web/studies/1", []string{"Bearer " + jwt}, 403, "", `scope="delete"`},
		{"audit needs admin", "GET", "/api/audit", []string{"Bearer " + reader}, 403, "", `scope="admin"`},
		{"admin reads the audit", "GET", "/api/audit", []string{"Bearer " + admin}, 200, "admin token ", ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			r := httptest.NewRequest(tc.method, tc.path, nil)
			for _, a := range tc.auth {
				r.Header.Add("Authorization", a)
			}
			w := httptest.NewRecorder()
			h.ServeHTTP(w, r)
			if w.Code != tc.wantStatus {
				t.Fatalf("status %d, want %d: %s", w.Code, tc.wantStatus, w.Body)
			}
			if tc.wantBody != "" && w.Body.String() != tc.wantBody {
				t.Errorf("body %q, want %q", w.Body, tc.wantBody)
			}
			if got := w.Header().Get("WWW-Authenticate"); !strings.Contains(got, tc.wantWWW) || (tc.wantWWW == "") != (got == "") {
				t.Errorf("WWW-Authenticate %q, want %q", got, tc.wantWWW)
			}
		})
	}
	for _, secret := range []string{reader, admin, jwt, expired} {
		if strings.Contains(logs.String(), secret) {
			t.Fatal("a token was logged")
		}
	}
	want := []string{"fail", "fail", "fail", "fail", "fail", "reader", "reader", "fail reader", "alice", "fail alice", "fail reader", "admin"}
	if !slices.Equal(observed, want) {
		t.Errorf("observed %v", observed)
	}
}

func TestMiddlewareOff(t *testing.T) {
	m := &Middleware{}
	h := m.Wrap(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		p, _ := FromContext(r.Context())
		if p.Kind != KindAnonymous || !p.Can(Delete) || !p.AllIssuers() {
			t.Errorf("principal %+v", p)
		}
	}))
	w := httptest.NewRecorder()
	h.ServeHTTP(w, httptest.NewRequest("DELETE", "/x", nil))
	if w.Code != 200 {
		t.Errorf("status %d", w.Code)
	}
}

// TestMiddlewareInEcho mounts the middleware in echo as dicomweb will.
func TestMiddlewareInEcho(t *testing.T) {
	path := filepath.Join(t.TempDir(), "tokens")
	tok, err := CreateToken(path, "viewer", Read, nil)
	if err != nil {
		t.Fatal(err)
	}
	tf, _ := OpenTokenFile(path)
	m := &Middleware{Authenticators: []Authenticator{tf}}
	e := echo.New()
	e.Use(echo.WrapMiddleware(m.Wrap))
	e.GET("/studies", func(c echo.Context) error {
		p, _ := FromContext(c.Request().Context())
		return c.String(200, p.Name)
	})
	for _, tc := range []struct {
		auth string
		want int
	}{{"", 401}, {"Bearer " + tok, 200}} {
		r := httptest.NewRequest("GET", "/studies", nil)
		if tc.auth != "" {
			r.Header.Set("Authorization", tc.auth)
		}
		w := httptest.NewRecorder()
		e.ServeHTTP(w, r)
		if w.Code != tc.want {
			t.Errorf("%q: status %d, want %d", tc.auth, w.Code, tc.want)
		}
	}
}
