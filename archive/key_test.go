package archive

import (
	"strings"
	"testing"
	"time"

	"github.com/pacsd/pacsd/storage"
)

func TestKeys(t *testing.T) {
	var v versions
	t0 := time.Date(2026, 3, 14, 10, 15, 2, 123456789, time.UTC)
	a := v.next(t0)
	b := v.next(t0) // the same moment: still later
	c := v.next(t0.Add(-time.Hour))
	if !(a < b && b < c) {
		t.Fatalf("versions %s, %s, %s do not sort in the order they were made", a, b, c)
	}
	if at, ok := versionTime(a); !ok || !at.Equal(t0.Truncate(time.Microsecond)) {
		t.Errorf("versionTime(%s) = %v, %v", a, at, ok)
	}
	for _, tc := range []struct {
		key  string
		want Location
		ok   bool
	}{
		{Key("1.2", "1.2.3", "1.2.3.4", a), Location{"1.2", "1.2.3", "1.2.3.4", a}, true},
		{"1.2/1.2.3/1.2.3.4.dcm", Location{"1.2", "1.2.3", "1.2.3.4", ""}, true},
		{"1.2/1.2.3/1.2.3.4_junk.dcm", Location{}, false},
		{"1.2/1.2.3/1.2.3.4_" + a, Location{}, false},
		{"1.2/1.2.3/x.dcm", Location{}, false},
		{"1.2/1.2.3.4.dcm", Location{}, false},
		{"a/b/c/1.2.3.4.dcm", Location{}, false},
		{"", Location{}, false},
	} {
		got, ok := ParseKey(tc.key)
		if ok != tc.ok || got != tc.want {
			t.Errorf("ParseKey(%q) = %+v, %v; want %+v, %v", tc.key, got, ok, tc.want, tc.ok)
		}
	}
	if !newer(Key("1", "2", "3", b), Key("1", "2", "3", a)) || newer(Key("1", "2", "3", ""), Key("1", "2", "3", a)) {
		t.Error("newer does not follow the versions")
	}
	if err := storage.ValidKey(Key(strings.Repeat("1.", 31)+"1", strings.Repeat("2.", 31)+"2", strings.Repeat("3.", 31)+"3", a)); err != nil {
		t.Errorf("the key of the longest UIDs: %v", err)
	}
}

// FuzzParseKey checks that a key ParseKey reads is the key Key makes of
// what it read, so that reindex and verify find an instance's objects
// under the names the archive gives them, and nothing else.
func FuzzParseKey(f *testing.F) {
	for _, k := range []string{
		"1.2/1.2.3/1.2.3.4.dcm",
		"1.2/1.2.3/1.2.3.4_20260314T101502.123456Z_9f3a1c2e7d4b6a58.dcm",
		"1.2/1.2.3/1.2.3.4_20260314T101502.123456Z_9F3A1C2E7D4B6A58.dcm",
		"1.2/1.2.3/1.2.3.4_20261314T101502.123456Z_9f3a1c2e7d4b6a58.dcm",
		"1.2/1.2.3/_.dcm",
		"junk/not-dicom.dcm",
	} {
		f.Add(k)
	}
	f.Fuzz(func(t *testing.T, key string) {
		loc, ok := ParseKey(key)
		if !ok {
			return
		}
		if again := Key(loc.StudyInstanceUID, loc.SeriesInstanceUID, loc.SOPInstanceUID, loc.Version); again != key {
			t.Fatalf("ParseKey(%q) = %+v, which Key makes %q", key, loc, again)
		}
		if loc.Version != "" {
			at, ok := versionTime(loc.Version)
			stamp, _, _ := strings.Cut(loc.Version, "_")
			if !ok || at.Format(versionLayout) != stamp {
				t.Fatalf("ParseKey(%q) accepted the version %q", key, loc.Version)
			}
		}
	})
}
