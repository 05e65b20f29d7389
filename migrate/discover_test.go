package migrate_test

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/pacsd/pacsd/migrate"
)

// rows makes n study rows on days days from 20240101, at times and with
// names and modalities spread as a department's would be.
func rows(n, days int) []migrate.Study {
	mods := []string{"CT", "MR", `CR\SR`, "US"}
	var out []migrate.Study
	for i := range n {
		d := time.Date(2024, 1, 1+i%days, 0, 0, 0, 0, time.UTC)
		out = append(out, migrate.Study{
			StudyInstanceUID: fmt.Sprintf("1.2.3.%d", i+1),
			PatientName:      fmt.Sprintf("%cOE^%d", 'A'+i*7%26, i),
			StudyDate:        d.Format("20060102"),
			StudyTime:        fmt.Sprintf("%02d%02d%02d", i*5%24, i*13%60, i%60),
			Modalities:       mods[i%len(mods)],
		})
	}
	return out
}

func sourceOf(limit int, silent bool, rs []migrate.Study) *fakeSource {
	src := &fakeSource{limit: limit, silent: silent}
	for _, r := range rs {
		src.studies = append(src.studies, &fakeStudy{row: r})
	}
	return src
}

// discover runs a discovery and returns the distinct studies it found.
func discover(t *testing.T, d *migrate.Discovery) (map[string]bool, migrate.DiscoveryResult) {
	t.Helper()
	found := map[string]bool{}
	d.Found = func(_ context.Context, studies []*migrate.Study) error {
		for _, s := range studies {
			found[s.StudyInstanceUID] = true
		}
		return nil
	}
	res, err := d.Run(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	return found, res
}

func TestDiscoverySplits(t *testing.T) {
	all := rows(600, 20)
	all = append(all, migrate.Study{StudyInstanceUID: "9.1", PatientName: "NODATE^A"}, migrate.Study{StudyInstanceUID: "9.2", StudyDate: "20240105", PatientName: "NOTIME^B"})
	for _, tt := range []struct {
		name         string
		limit        int
		silent       bool
		since, until string
		want         int
	}{
		{"capped with a status", 5, false, "", "", len(all)},
		{"capped silently at a round number", 100, true, "", "", len(all)},
		{"capped silently at another number", 6, true, "", "", len(all)},
		{"capped silently in a date range", 6, true, "20240103", "20240106", 121},
		{"not capped", 0, false, "", "", len(all)},
		{"a date range", 5, false, "20240103", "20240104", 60},
		{"from a date on", 7, false, "20240119", "", 60},
	} {
		t.Run(tt.name, func(t *testing.T) {
			src := sourceOf(tt.limit, tt.silent, all)
			found, res := discover(t, &migrate.Discovery{Source: src, Since: tt.since, Until: tt.until})
			if len(found) != tt.want {
				t.Errorf("found %d studies, want %d", len(found), tt.want)
			}
			if len(res.Incomplete) > 0 {
				t.Errorf("incomplete: %v", res.Incomplete)
			}
			if res.Queries != src.queries {
				t.Errorf("Queries = %d, the source answered %d", res.Queries, src.queries)
			}
			t.Logf("%d queries", res.Queries)
		})
	}
}

func TestDiscoveryIncomplete(t *testing.T) {
	// Twelve studies on one day, at one time, of one modality and one
	// initial: nothing splits them below a cap of 5.
	var rs []migrate.Study
	for i := range 12 {
		rs = append(rs, migrate.Study{StudyInstanceUID: fmt.Sprintf("1.%d", i), StudyDate: "20240101", StudyTime: "101010", PatientName: "SAME^X", Modalities: "CT"})
	}
	src := sourceOf(5, false, rs)
	found, res := discover(t, &migrate.Discovery{Source: src})
	if len(res.Incomplete) != 1 || len(found) != 5 {
		t.Fatalf("found %d, incomplete %v", len(found), res.Incomplete)
	}
	t.Logf("%d queries; incomplete: %v", res.Queries, res.Incomplete)
}

// TestDiscoveryFilterNotSplit caps a source whose studies a --filter on
// Modalities in Study selects: the modality is not split by, since the
// filter fixes it.
func TestDiscoveryFilterNotSplit(t *testing.T) {
	var rs []migrate.Study
	for i := range 40 {
		rs = append(rs, migrate.Study{StudyInstanceUID: fmt.Sprintf("1.%d", i), StudyDate: "20240101", StudyTime: "101010",
			PatientName: fmt.Sprintf("%c^X", 'A'+i%20), Modalities: []string{"CT", "MR"}[i%2]})
	}
	key, _ := migrate.ParseKey("ModalitiesInStudy=CT")
	src := sourceOf(5, false, rs)
	found, res := discover(t, &migrate.Discovery{Source: src, Keys: []migrate.Key{key}})
	if len(found) != 20 || len(res.Incomplete) != 0 {
		t.Errorf("found %d studies of CT, want 20; incomplete %v", len(found), res.Incomplete)
	}
	for uid := range found {
		var n int
		fmt.Sscanf(uid, "1.%d", &n)
		if n%2 != 0 {
			t.Errorf("found %s, an MR study", uid)
		}
	}
}

func TestDiscoveryFilter(t *testing.T) {
	rs := rows(40, 4)
	rs[3].PatientID = "P7"
	rs[17].PatientID = "P7"
	key, err := migrate.ParseKey("PatientID=P7")
	if err != nil {
		t.Fatal(err)
	}
	found, _ := discover(t, &migrate.Discovery{Source: sourceOf(5, false, rs), Keys: []migrate.Key{key}})
	if len(found) != 2 || !found[rs[3].StudyInstanceUID] || !found[rs[17].StudyInstanceUID] {
		t.Errorf("found %v", found)
	}
	for _, bad := range []string{"PatientID", "NoSuchKeyword=1", "StudyDate=20240101", "00080000=1", "00020010=1.2", "ReferencedSeriesSequence=1"} {
		if _, err := migrate.ParseKey(bad); err == nil {
			t.Errorf("ParseKey(%q) took it", bad)
		}
	}
}
