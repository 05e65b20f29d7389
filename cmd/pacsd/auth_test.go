package main

import (
	"net/http/httptest"
	"testing"
)

func TestOpenRequest(t *testing.T) {
	for _, tc := range []struct {
		method, path string
		header       map[string]string
		open         bool
	}{
		{"GET", "/healthz", nil, true},
		{"HEAD", "/readyz", nil, true},
		{"POST", "/healthz", nil, false},
		{"GET", "/", nil, true},
		{"GET", "/ui/app.0123abcd.js", nil, true},
		{"GET", "/api/ui-config", nil, true},
		{"GET", "/api/audit", nil, false},
		{"GET", "/dicom-web/studies", nil, false},
		{"GET", "/wado", nil, false},
		{"OPTIONS", "/dicom-web/studies", map[string]string{"Origin": "https://viewer.example", "Access-Control-Request-Method": "GET"}, true},
		{"OPTIONS", "/dicom-web/studies", map[string]string{"Origin": "https://viewer.example"}, false},
		{"OPTIONS", "/dicom-web/studies", nil, false},
	} {
		r := httptest.NewRequest(tc.method, tc.path, nil)
		for k, v := range tc.header {
			r.Header.Set(k, v)
		}
		if got := openRequest(r); got != tc.open {
			t.Errorf("%s %s %v: open %v, want %v", tc.method, tc.path, tc.header, got, tc.open)
		}
	}
}
