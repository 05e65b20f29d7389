package deploy

import (
	"encoding/json"
	"io"
	"net"
	"os"
	"regexp"
	"slices"
	"strings"
	"testing"
	"time"

	dto "github.com/prometheus/client_model/go"

	"github.com/pacsd/pacsd/metrics"
)

// families returns the metric families of a registry on which every
// method has been called once, so that every vector has a series, with
// the label names of each.
func families(t *testing.T) map[string][]string {
	t.Helper()
	r := metrics.New(metrics.Config{KnownAEs: []string{"CT01"}, Version: "test"})
	r.ObserveAssociation("CT01", true)
	r.ObserveCStore("CT01", 0, time.Millisecond, 1)
	r.ObserveHTTP("/dicom-web/studies", "GET", 200, time.Millisecond)
	r.ObserveStoragePut("s3", time.Millisecond, io.EOF)
	r.ObserveStorageGet("s3", time.Millisecond, nil)
	r.ObserveIndexCommit(time.Millisecond, io.EOF)
	r.SetIndexCounts(metrics.IndexCounts{})
	r.SetQueue("REPORTING", metrics.QueueState{})
	r.SetMigration("OLDPACS", metrics.MigrationState{})
	r.ObserveMigrated("OLDPACS", 1, 1)
	r.SetSpoolBacklog(0, 0)
	r.ObserveCompression("compressed", 2, 1)
	c1, c2 := net.Pipe()
	defer c1.Close()
	defer c2.Close()
	go io.Copy(io.Discard, c2)
	r.Conn(c1, "dimse").Write([]byte("x"))
	go c2.Write([]byte("y"))
	r.Conn(c1, "dimse").Read(make([]byte, 1))
	mfs, err := r.Gatherer().Gather()
	if err != nil {
		t.Fatal(err)
	}
	out := map[string][]string{}
	for _, mf := range mfs {
		var labels []string
		for _, m := range mf.Metric {
			for _, lp := range m.Label {
				if !slices.Contains(labels, lp.GetName()) {
					labels = append(labels, lp.GetName())
				}
			}
		}
		name := mf.GetName()
		out[name] = labels
		if mf.GetType() == dto.MetricType_HISTOGRAM {
			out[name+"_bucket"] = append(slices.Clone(labels), "le")
			out[name+"_sum"] = labels
			out[name+"_count"] = labels
		}
	}
	return out
}

// TestGrafanaDashboard checks that every query of the dashboard names a
// metric that package metrics registers, and filters and groups only by
// labels that metric has (or that Prometheus adds: instance, job).
func TestGrafanaDashboard(t *testing.T) {
	b, err := os.ReadFile("grafana/pacsd.json")
	if err != nil {
		t.Fatal(err)
	}
	var dash struct {
		Title  string
		Panels []struct {
			Title   string
			Type    string
			Targets []struct{ Expr string }
		}
	}
	if err := json.Unmarshal(b, &dash); err != nil {
		t.Fatal(err)
	}
	fams := families(t)
	metric := regexp.MustCompile(`\b(pacsd_[a-z_]+)(\{[^}]*\})?`)
	selectorLabel := regexp.MustCompile(`([a-z_]+)\s*(=~|!~|!=|=)`)
	grouping := regexp.MustCompile(`\bby \(([^)]*)\)`)
	used := map[string]bool{}
	queries := 0
	for _, p := range dash.Panels {
		if p.Type == "row" {
			continue
		}
		if len(p.Targets) == 0 {
			t.Errorf("panel %q has no query", p.Title)
		}
		for _, tg := range p.Targets {
			queries++
			ms := metric.FindAllStringSubmatch(tg.Expr, -1)
			if len(ms) == 0 {
				t.Errorf("panel %q: %q names no pacsd metric", p.Title, tg.Expr)
			}
			var names []string
			for _, m := range ms {
				labels, ok := fams[m[1]]
				if !ok {
					t.Errorf("panel %q: %s is not a metric of package metrics", p.Title, m[1])
					continue
				}
				used[strings.TrimSuffix(strings.TrimSuffix(strings.TrimSuffix(m[1], "_bucket"), "_sum"), "_count")] = true
				names = append(names, m[1])
				for _, l := range selectorLabel.FindAllStringSubmatch(m[2], -1) {
					if l[1] != "instance" && l[1] != "job" && !slices.Contains(labels, l[1]) {
						t.Errorf("panel %q: %s has no label %s (it has %v)", p.Title, m[1], l[1], labels)
					}
				}
			}
			for _, g := range grouping.FindAllStringSubmatch(tg.Expr, -1) {
				for l := range strings.SplitSeq(g[1], ",") {
					l = strings.TrimSpace(l)
					ok := l == "instance" || l == "job" || slices.ContainsFunc(names, func(n string) bool { return slices.Contains(fams[n], l) })
					if !ok {
						t.Errorf("panel %q: grouping by %s, which none of %v has", p.Title, l, names)
					}
				}
			}
		}
	}
	t.Logf("%d queries in %d panels", queries, len(dash.Panels))
	// The dashboard shows every family but the build information, which
	// only feeds its node selector.
	for name := range fams {
		if _, histogram := fams[name+"_bucket"]; !histogram && (strings.HasSuffix(name, "_bucket") || strings.HasSuffix(name, "_sum") || strings.HasSuffix(name, "_count")) {
			continue // a histogram's series; the histogram itself is checked
		}
		if !used[name] && name != "pacsd_build_info" {
			t.Errorf("the dashboard shows nothing of %s", name)
		}
	}
}
