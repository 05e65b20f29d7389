package auth

import (
	"context"
	"errors"
	"testing"
)

func TestParseScopes(t *testing.T) {
	for _, tc := range []struct {
		in      string
		want    Scope
		wantErr bool
	}{
		{"read", Read, false},
		{"read,write", Read | Write, false},
		{" READ , Delete ", Read | Delete, false},
		{"admin,research", Admin | Research, false},
		{"", 0, true},
		{"read,", 0, true},
		{"readonly", 0, true},
	} {
		t.Run(tc.in, func(t *testing.T) {
			got, err := ParseScopes(tc.in)
			if (err != nil) != tc.wantErr {
				t.Fatalf("ParseScopes(%q) error %v, want error %v", tc.in, err, tc.wantErr)
			}
			if err != nil && !errors.Is(err, ErrUnknownScope) {
				t.Errorf("error %v does not wrap ErrUnknownScope", err)
			}
			if got != tc.want {
				t.Errorf("ParseScopes(%q) = %v, want %v", tc.in, got, tc.want)
			}
		})
	}
	if s := (Read | Admin | Research).String(); s != "read,admin,research" {
		t.Errorf("String = %q", s)
	}
}

func TestPrincipalCan(t *testing.T) {
	admin := &Principal{Scopes: Admin}
	research := &Principal{Scopes: Research}
	reader := &Principal{Scopes: Read | Research}
	for _, tc := range []struct {
		name string
		p    *Principal
		s    Scope
		want bool
	}{
		{"admin reads", admin, Read, true},
		{"admin deletes", admin, Delete, true},
		{"admin is not research", admin, Research, false},
		{"research cannot read", research, Read, false},
		{"research", research, Research, true},
		{"reader cannot write", reader, Write, false},
		{"nil", nil, Read, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if got := tc.p.Can(tc.s); got != tc.want {
				t.Errorf("Can(%v) = %v, want %v", tc.s, got, tc.want)
			}
		})
	}
	if !research.ResearchOnly() || reader.ResearchOnly() || admin.ResearchOnly() {
		t.Error("ResearchOnly wrong")
	}
}

func TestAllowsIssuer(t *testing.T) {
	all := &Principal{}
	two := &Principal{Issuers: []string{"RXH", "RGT"}}
	none := &Principal{Issuers: []string{}}
	for _, tc := range []struct {
		name   string
		p      *Principal
		issuer string
		want   bool
	}{
		{"all, any", all, "XYZ", true},
		{"all, empty", all, "", true},
		{"listed", two, "RGT", true},
		{"listed with padding", two, "RXH ", true},
		{"not listed", two, "RXX", false},
		{"case counts", two, "rxh", false},
		{"restricted never sees no issuer", two, "", false},
		{"empty list sees nothing", none, "RXH", false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if got := tc.p.AllowsIssuer(tc.issuer); got != tc.want {
				t.Errorf("AllowsIssuer(%q) = %v, want %v", tc.issuer, got, tc.want)
			}
		})
	}
	if !all.AllIssuers() || two.AllIssuers() || none.AllIssuers() {
		t.Error("AllIssuers wrong")
	}
}

func TestContext(t *testing.T) {
	if _, ok := FromContext(context.Background()); ok {
		t.Fatal("principal in an empty context")
	}
	p := &Principal{Name: "x"}
	got, ok := FromContext(NewContext(context.Background(), p))
	if !ok || got != p {
		t.Fatalf("FromContext = %v, %v", got, ok)
	}
}
