package nhs

import (
	"errors"
	"testing"
)

func TestNormalize(t *testing.T) {
	for _, c := range []struct {
		in, want string
	}{
		// Numbers NHS Digital publishes for testing, and their written forms.
		{"9434765919", "9434765919"},
		{"943 476 5919", "9434765919"},
		{"943-476-5919", "9434765919"},
		{" 4010232137 ", "4010232137"},
		// A remainder of 0 makes the check digit 0 (11 - 0 = 11).
		{"0100000010", "0100000010"},
		{"9434765918", ""}, // wrong check digit
		{"9434765910", ""},
		{"1000000010", ""}, // check digit would be 10: no valid number
		{"943476591", ""},  // nine digits
		{"94347659190", ""},
		{"94347659A9", ""},
		{"", ""},
	} {
		t.Run(c.in, func(t *testing.T) {
			got, err := Normalize(c.in)
			if c.want == "" {
				if !errors.Is(err, ErrInvalid) {
					t.Fatalf("Normalize(%q) = %q, %v; want ErrInvalid", c.in, got, err)
				}
				return
			}
			if err != nil || got != c.want {
				t.Fatalf("Normalize(%q) = %q, %v; want %q", c.in, got, err, c.want)
			}
		})
	}
}

func TestIssuers(t *testing.T) {
	is := Issuers(DefaultIssuers)
	for in, want := range map[string]bool{"NHS": true, "nhs ": true, OID: true, "RXH": false, "": false} {
		if got := is.Has(in); got != want {
			t.Errorf("Has(%q) = %v, want %v", in, got, want)
		}
	}
}

func FuzzNormalize(f *testing.F) {
	for _, s := range []string{"9434765919", "943 476 5919", "1000000010", "x"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		n, err := Normalize(s)
		if err != nil {
			return
		}
		if len(n) != 10 {
			t.Fatalf("Normalize(%q) = %q, not ten digits", s, n)
		}
		if again, err := Normalize(n); err != nil || again != n {
			t.Fatalf("Normalize(%q) = %q, %v; not stable", n, again, err)
		}
	})
}
