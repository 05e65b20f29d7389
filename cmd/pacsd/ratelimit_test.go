package main

import (
	"net/http"
	"net/http/httptest"
	"testing"
	"testing/synctest"
	"time"

	"github.com/pacsd/pacsd/auth"
)

func TestHTTPRate(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		h := newLimiters(1).limitHTTP(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {}))
		get := func(p *auth.Principal, addr string) *httptest.ResponseRecorder {
			r := httptest.NewRequest("GET", "/dicom-web/studies", nil)
			r.RemoteAddr = addr
			if p != nil {
				r = r.WithContext(auth.NewContext(r.Context(), p))
			}
			w := httptest.NewRecorder()
			h.ServeHTTP(w, r)
			return w
		}
		a := &auth.Principal{Name: "trust-a", Kind: auth.KindToken}
		// A burst of ten, from any address.
		for i := range 10 {
			if w := get(a, "10.0.0.1:1234"); w.Code != 200 {
				t.Fatalf("request %d: status %d", i, w.Code)
			}
		}
		w := get(a, "10.0.0.2:1234")
		if w.Code != 429 || w.Header().Get("Retry-After") != "1" || w.Header().Get("X-Content-Type-Options") != "nosniff" {
			t.Fatalf("request beyond the burst: status %d, headers %v", w.Code, w.Header())
		}
		// Others are not held back: another token, anonymous callers.
		if w := get(&auth.Principal{Name: "trust-b", Kind: auth.KindToken}, "10.0.0.1:1234"); w.Code != 200 {
			t.Errorf("another token: status %d", w.Code)
		}
		if w := get(auth.Anonymous(), "10.0.0.3:1"); w.Code != 200 {
			t.Errorf("an anonymous caller: status %d", w.Code)
		}
		time.Sleep(time.Second)
		if w := get(a, "10.0.0.1:1234"); w.Code != 200 {
			t.Errorf("a second later: status %d", w.Code)
		}
	})
}

func TestAERate(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		l := newLimiters(10) // a burst of 100
		start := time.Now()
		for range 120 {
			if err := l.wait(t.Context(), "CT01"); err != nil {
				t.Fatal(err)
			}
		}
		if d := time.Since(start); d < 1900*time.Millisecond || d > 2100*time.Millisecond {
			t.Errorf("120 operations at 10 a second after a burst of 100 took %v, want 2s", d)
		}
		start = time.Now()
		if err := l.wait(t.Context(), "MR01"); err != nil || time.Since(start) != 0 {
			t.Errorf("another AE waited %v: %v", time.Since(start), err)
		}
		if newLimiters(0) != nil || newLimiters(0).wait(t.Context(), "CT01") != nil {
			t.Error("a rate of 0 limits")
		}
	})
}
