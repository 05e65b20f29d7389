package webtest

import (
	"archive/zip"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/pacsd/pacsd/ui"
)

// fakeAPI answers the /api endpoints of docs/api.md that pacsd does not
// serve yet, with fixed data, and records what the page sends them, so
// that the page is tested against the contract the server will meet.
type fakeAPI struct {
	mu      sync.Mutex
	calls   []apiCall
	scopes  []string
	changes int
}

type apiCall struct {
	Method, Path string
	Query        url.Values
	Body         string
}

func (f *fakeAPI) record(r *http.Request) {
	b, _ := io.ReadAll(io.LimitReader(r.Body, 1<<20))
	f.mu.Lock()
	defer f.mu.Unlock()
	f.calls = append(f.calls, apiCall{Method: r.Method, Path: r.URL.Path, Query: r.URL.Query(), Body: string(b)})
}

func (f *fakeAPI) recorded() []apiCall {
	f.mu.Lock()
	defer f.mu.Unlock()
	return slices.Clone(f.calls)
}

func (f *fakeAPI) principalScopes() []string {
	f.mu.Lock()
	defer f.mu.Unlock()
	return slices.Clone(f.scopes)
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	json.NewEncoder(w).Encode(v)
}

// register adds the fake endpoints to mux.
func (f *fakeAPI) register(mux *http.ServeMux) {
	mux.HandleFunc("GET /api/queue", func(w http.ResponseWriter, r *http.Request) {
		writeJSON(w, 200, map[string]any{"destinations": []map[string]any{
			{"name": "REPORTING", "kind": "dimse", "address": "10.1.2.3:104", "pending": 12, "in_flight": 2, "failed": 1,
				"done_24h": 340, "oldest_pending_seconds": 95.5, "last_error": "association rejected: called AE title not recognized"},
			{"name": "TRUSTB_WEB", "kind": "dicomweb", "address": "https://pacs.trustb.example/dicom-web", "pending": 0, "in_flight": 0,
				"failed": 0, "done_24h": 12, "oldest_pending_seconds": 0},
		}})
	})
	mux.HandleFunc("GET /api/queue/{dest}/tasks", func(w http.ResponseWriter, r *http.Request) {
		writeJSON(w, 200, map[string]any{"tasks": []map[string]any{
			{"study": "1.2.826.0.1.3680043.2.1125.1", "patient": "DOE^JOHN", "destination": r.PathValue("dest"), "state": "failed",
				"attempts": 5, "last_attempt": "2026-03-01T10:00:00Z", "last_error": "C-STORE 0xA700: out of resources"},
		}})
	})
	mux.HandleFunc("POST /api/queue/{dest}/retry", func(w http.ResponseWriter, r *http.Request) {
		f.record(r)
		writeJSON(w, 200, map[string]any{"requeued": 1})
	})
	mux.HandleFunc("GET /api/migrations", func(w http.ResponseWriter, r *http.Request) {
		writeJSON(w, 200, map[string]any{"migrations": []map[string]any{{
			"id": "m1", "source": "OLDPACS", "state": "running", "started": "2026-03-01T08:00:00Z", "updated": "2026-03-01T10:00:00Z",
			"studies":   map[string]int{"total": 200, "pending": 95, "done": 10, "verified": 90, "failed": 4, "conflict": 1},
			"instances": 41000, "bytes": 21474836480, "bytes_per_second": 9500000, "studies_per_hour": 50, "eta_seconds": 6840,
		}}})
	})
	mux.HandleFunc("GET /api/migrations/{id}/studies", func(w http.ResponseWriter, r *http.Request) {
		writeJSON(w, 200, map[string]any{"studies": []map[string]any{
			{"study": "1.2.3.4.5.6", "patient_id": "P123", "patient_name": "ROE^RICHARD", "study_date": "20190304", "modalities": "CT",
				"instances_source": 120, "instances_here": 118, "state": "failed", "attempts": 3,
				"last_error": "2 instances missing after 3 attempts: C-GET sub-operations failed (0xA702)"},
		}})
	})
	mux.HandleFunc("POST /api/studies/{study}/send", func(w http.ResponseWriter, r *http.Request) {
		f.record(r)
		writeJSON(w, 202, map[string]any{"tasks": []map[string]any{{"destination": "REPORTING", "study": r.PathValue("study"), "state": "pending"}}})
	})
	mux.HandleFunc("POST /api/studies/{study}/update", func(w http.ResponseWriter, r *http.Request) {
		f.record(r)
		if r.URL.Query().Get("reason") == "" {
			writeJSON(w, 400, map[string]string{"error": "a reason is required"})
			return
		}
		writeJSON(w, 200, map[string]any{"id": "c1", "reason": r.URL.Query().Get("reason")})
	})
	mux.HandleFunc("DELETE /dicom-web/studies/{study}", func(w http.ResponseWriter, r *http.Request) {
		f.record(r)
		w.WriteHeader(http.StatusNoContent)
	})
	mux.HandleFunc("POST /api/studies/{study}/restore", func(w http.ResponseWriter, r *http.Request) {
		f.record(r)
		w.WriteHeader(http.StatusNoContent)
	})
	mux.HandleFunc("POST /api/studies/{study}/archive-ticket", func(w http.ResponseWriter, r *http.Request) {
		f.record(r)
		writeJSON(w, 200, map[string]any{"url": "/api/studies/" + url.PathEscape(r.PathValue("study")) + "/archive.zip?ticket=t1", "expires_in": 60})
	})
	mux.HandleFunc("/api/studies/{study}/archive.zip", func(w http.ResponseWriter, r *http.Request) {
		f.record(r)
		w.Header().Set("Content-Type", "application/zip")
		w.Header().Set("Content-Disposition", `attachment; filename="study.zip"`)
		if r.Method == http.MethodHead {
			return
		}
		if r.URL.Query().Get("ticket") != "t1" && !strings.HasPrefix(r.Header.Get("Authorization"), "Bearer ") {
			http.Error(w, "no ticket", http.StatusUnauthorized)
			return
		}
		zw := zip.NewWriter(w)
		fw, _ := zw.Create(r.PathValue("study") + "/1.dcm")
		fw.Write(make([]byte, 1000))
		zw.Close()
	})
	mux.HandleFunc("GET /api/audit", func(w http.ResponseWriter, r *http.Request) {
		writeJSON(w, 200, map[string]any{"records": []map[string]any{
			{"time": "2026-03-01T10:00:00Z", "event": "DICOM Instances Transferred", "action": "C", "outcome": 0, "user": "CT01",
				"source": map[string]string{"ae": "CT01", "address": "10.0.0.5"}, "patient": "P123", "study": "1.2.3", "detail": "12 instances stored"},
			{"time": "2026-03-01T09:59:00Z", "event": "User Authentication", "action": "E", "outcome": 4, "user": "mallory",
				"source": map[string]string{"address": "10.9.9.9"}, "detail": "token signature invalid"},
		}, "next": ""})
	})
	mux.HandleFunc("GET /api/system", func(w http.ResponseWriter, r *http.Request) {
		writeJSON(w, 200, map[string]any{
			"version": "test", "uptime_seconds": 3725, "ae_title": "PACSD", "dimse_addr": "127.0.0.1:11112", "http_addr": "127.0.0.1:8042",
			"associations": map[string]int{"active": 3, "max": 64},
			"storage":      map[string]any{"kind": "s3", "location": "s3://pacs-objects", "used_bytes": 5 << 40},
			"index": map[string]any{"kind": "postgres", "location": "postgres://pacsd@db/pacsd",
				"counts": map[string]int{"patients": 10, "studies": 20, "series": 40, "instances": 4000}},
			"spool": map[string]any{"objects": 2, "bytes": 1 << 20},
		})
	})
	mux.HandleFunc("GET /api/changes", func(w http.ResponseWriter, r *http.Request) {
		f.mu.Lock()
		f.changes++
		n := f.changes
		f.mu.Unlock()
		q := r.URL.Query()
		switch {
		case q.Get("limit") == "0":
			writeJSON(w, 200, map[string]any{"changes": []any{}, "last_seq": 10})
		case n == 2 && q.Get("after") == "10":
			writeJSON(w, 200, map[string]any{"changes": []map[string]any{{"seq": 11, "type": "created", "time": "2026-03-01T10:00:00Z",
				"study": "1.2.3", "series": "1.2.3.4", "instance": "1.2.3.4.5"}}, "last_seq": 11})
		default:
			// Long-poll: nothing new within the wait.
			select {
			case <-r.Context().Done():
			case <-time.After(2 * time.Second):
			}
			writeJSON(w, 200, map[string]any{"changes": []any{}, "last_seq": 11})
		}
	})
	mux.HandleFunc("POST /_test/scopes", func(w http.ResponseWriter, r *http.Request) {
		f.mu.Lock()
		f.scopes = strings.Split(r.URL.Query().Get("set"), ",")
		f.mu.Unlock()
		w.WriteHeader(http.StatusNoContent)
	})
}

// fakeOP is an OpenID Connect provider as far as the page's sign-in
// needs one: discovery, an authorization endpoint that consents at once,
// and a token endpoint that checks the PKCE verifier against the
// challenge, the client and the redirect URI.
type fakeOP struct {
	issuer      string
	clientID    string
	redirectURI string

	mu       sync.Mutex
	codes    map[string]pkceRequest
	tokens   map[string]bool
	failures []string
	issued   int
}

type pkceRequest struct{ challenge, nonce, redirect, scope string }

func newFakeOP(clientID, redirectURI string) *fakeOP {
	return &fakeOP{clientID: clientID, redirectURI: redirectURI, codes: map[string]pkceRequest{}, tokens: map[string]bool{}}
}

func (o *fakeOP) fail(format string, args ...any) {
	o.mu.Lock()
	defer o.mu.Unlock()
	o.failures = append(o.failures, fmt.Sprintf(format, args...))
}

func randomString() string {
	b := make([]byte, 16)
	rand.Read(b)
	return base64.RawURLEncoding.EncodeToString(b)
}

func (o *fakeOP) handler() http.Handler {
	mux := http.NewServeMux()
	cors := func(w http.ResponseWriter) {
		w.Header().Set("Access-Control-Allow-Origin", "*")
		w.Header().Set("Access-Control-Allow-Headers", "Content-Type, Accept")
	}
	mux.HandleFunc("GET /.well-known/openid-configuration", func(w http.ResponseWriter, r *http.Request) {
		cors(w)
		writeJSON(w, 200, map[string]any{
			"issuer": o.issuer, "authorization_endpoint": o.issuer + "/authorize", "token_endpoint": o.issuer + "/token",
			"response_types_supported": []string{"code"}, "code_challenge_methods_supported": []string{"S256"},
		})
	})
	mux.HandleFunc("GET /authorize", func(w http.ResponseWriter, r *http.Request) {
		q := r.URL.Query()
		switch {
		case q.Get("response_type") != "code":
			o.fail("authorize: response_type %q", q.Get("response_type"))
		case q.Get("client_id") != o.clientID:
			o.fail("authorize: client_id %q", q.Get("client_id"))
		case q.Get("redirect_uri") != o.redirectURI:
			o.fail("authorize: redirect_uri %q, want %q", q.Get("redirect_uri"), o.redirectURI)
		case q.Get("code_challenge_method") != "S256" || len(q.Get("code_challenge")) != 43:
			o.fail("authorize: code challenge %q by %q", q.Get("code_challenge"), q.Get("code_challenge_method"))
		case q.Get("state") == "" || q.Get("nonce") == "":
			o.fail("authorize: no state or nonce")
		case !slices.Contains(strings.Fields(q.Get("scope")), "openid"):
			o.fail("authorize: scope %q lacks openid", q.Get("scope"))
		default:
			code := randomString()
			o.mu.Lock()
			o.codes[code] = pkceRequest{challenge: q.Get("code_challenge"), nonce: q.Get("nonce"), redirect: q.Get("redirect_uri"), scope: q.Get("scope")}
			o.mu.Unlock()
			http.Redirect(w, r, q.Get("redirect_uri")+"?"+url.Values{"code": {code}, "state": {q.Get("state")}}.Encode(), http.StatusFound)
			return
		}
		http.Redirect(w, r, q.Get("redirect_uri")+"?error=invalid_request&state="+url.QueryEscape(q.Get("state")), http.StatusFound)
	})
	mux.HandleFunc("POST /token", func(w http.ResponseWriter, r *http.Request) {
		cors(w)
		if err := r.ParseForm(); err != nil {
			writeJSON(w, 400, map[string]string{"error": "invalid_request"})
			return
		}
		o.mu.Lock()
		req, ok := o.codes[r.PostForm.Get("code")]
		delete(o.codes, r.PostForm.Get("code")) // a code is good once
		o.mu.Unlock()
		sum := sha256.Sum256([]byte(r.PostForm.Get("code_verifier")))
		switch {
		case r.PostForm.Get("grant_type") != "authorization_code":
			o.fail("token: grant_type %q", r.PostForm.Get("grant_type"))
		case !ok:
			o.fail("token: unknown or reused code")
		case r.PostForm.Get("client_id") != o.clientID:
			o.fail("token: client_id %q", r.PostForm.Get("client_id"))
		case r.PostForm.Get("redirect_uri") != req.redirect:
			o.fail("token: redirect_uri %q, want %q", r.PostForm.Get("redirect_uri"), req.redirect)
		case base64.RawURLEncoding.EncodeToString(sum[:]) != req.challenge:
			o.fail("token: the code verifier does not hash to the challenge")
		default:
			tok := "tok-" + randomString()
			o.mu.Lock()
			o.tokens[tok] = true
			o.issued++
			o.mu.Unlock()
			enc := base64.RawURLEncoding.EncodeToString
			claims, _ := json.Marshal(map[string]any{"iss": o.issuer, "aud": o.clientID, "sub": "u1", "name": "Dr Test", "nonce": req.nonce, "exp": time.Now().Add(time.Hour).Unix()})
			idToken := enc([]byte(`{"alg":"none"}`)) + "." + enc(claims) + "."
			writeJSON(w, 200, map[string]any{"access_token": tok, "token_type": "Bearer", "expires_in": 3600, "id_token": idToken})
			return
		}
		writeJSON(w, 400, map[string]string{"error": "invalid_grant"})
	})
	return mux
}

func (o *fakeOP) valid(r *http.Request) bool {
	tok, ok := strings.CutPrefix(r.Header.Get("Authorization"), "Bearer ")
	o.mu.Lock()
	defer o.mu.Unlock()
	return ok && o.tokens[tok]
}

// principal is the ui.Config.Principal of the signed-in origin.
func (o *fakeOP) principal(api *fakeAPI) func(*http.Request) *ui.Principal {
	return func(r *http.Request) *ui.Principal {
		if !o.valid(r) {
			return nil
		}
		return &ui.Principal{Name: "Dr Test", Scopes: api.principalScopes(), Issuers: []string{"RXH"}}
	}
}
