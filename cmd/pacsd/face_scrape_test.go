package main

import (
	"bytes"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/pacsd/pacsd/internal/testpeer"
)

// TestMetricsAtScrape checks that /metrics shows the forwarding queue and
// the index as they are when scraped: the scrape after a known operation
// (a study stored, its task dropped), once scrapeMaxAge has passed, shows
// it, without waiting for any sampling.
func TestMetricsAtScrape(t *testing.T) {
	testpeer.Need(t, "storescu")
	port, err := testpeer.FreePort()
	if err != nil {
		t.Fatal(err)
	}
	data := t.TempDir()
	config := filepath.Join(t.TempDir(), "pacsd.json")
	if err := os.WriteFile(config, fmt.Appendf(nil, `{"remote_aes": ["DEAD=127.0.0.1:%d"], "forward": ["DEAD"],
 "destinations": {"DEAD": {"max_attempts": 1}}}`, port), 0o644); err != nil {
		t.Fatal(err)
	}
	p := startPacsd(t, data, "--config", config)
	defer p.stop()
	base := "http://" + p.httpAddr
	// tasks sums DEAD's tasks over the states not done: the forwarder
	// moves the task between them meanwhile.
	tasks := func(m map[string]float64) float64 {
		var n float64
		for _, s := range []string{"pending", "in_flight", "failed"} {
			n += m[fmt.Sprintf(`pacsd_queue_tasks{destination="DEAD",state=%q}`, s)]
		}
		return n
	}
	m := scrape(t, base)
	if _, ok := m[`pacsd_queue_tasks{destination="DEAD",state="pending"}`]; !ok || tasks(m) != 0 {
		t.Errorf("before any study: DEAD has %v tasks (reported %v), want 0", tasks(m), ok)
	}
	if got := m[`pacsd_index_entities{level="study"}`]; got != 0 {
		t.Errorf("before any study: %v studies", got)
	}

	dir, files := writeSeries(t, 3)
	if out, err := p.dcmtk("storescu", "+sd", dir); err != nil {
		t.Fatalf("storescu: %v\n%s", err, out)
	}
	time.Sleep(scrapeMaxAge)
	m = scrape(t, base)
	if got := tasks(m); got != 1 {
		t.Errorf("after a study: DEAD has %v tasks, want 1", got)
	}
	if got := m[`pacsd_index_entities{level="study"}`] + 10*m[`pacsd_index_entities{level="instance"}`]; got != 1+10*3 {
		t.Errorf("after a study: the index counts %v studies and %v instances, want 1 and 3",
			m[`pacsd_index_entities{level="study"}`], m[`pacsd_index_entities{level="instance"}`])
	}
	if _, ok := m[`pacsd_queue_oldest_pending_seconds{destination="DEAD"}`]; !ok {
		t.Error("no pacsd_queue_oldest_pending_seconds for DEAD")
	}

	// A task is dropped once it has failed, rather than while it is
	// being sent.
	for deadline := time.Now().Add(30 * time.Second); scrape(t, base)[`pacsd_queue_tasks{destination="DEAD",state="failed"}`] != 1; time.Sleep(200 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatalf("the task did not fail:\n%s", p.proc.LogTail(20))
		}
	}
	var out bytes.Buffer
	env := func(string) string { return "" }
	if err := run(t.Context(), []string{"queue", "drop", "--to", "DEAD", "--study", files[0].StudyInstanceUID, "--data", data, "--config", config},
		env, &out, &out); err != nil || !strings.Contains(out.String(), "dropped") {
		t.Fatalf("queue drop: %v\n%s", err, out.String())
	}
	time.Sleep(scrapeMaxAge)
	if got := tasks(scrape(t, base)); got != 0 {
		t.Errorf("after the task was dropped: DEAD has %v tasks, want 0", got)
	}
}

// checkSpoolBacklog checks that /readyz and the next scrape of /metrics
// report n objects waiting in the spool.
func checkSpoolBacklog(t *testing.T, httpAddr string, n int) {
	t.Helper()
	var ready struct {
		Checks map[string]struct{ Status, Detail string }
	}
	if code := getJSON(t, "http://"+httpAddr+"/readyz", &ready); code != 200 || ready.Checks["spool"].Status != "ok" ||
		!strings.HasPrefix(ready.Checks["spool"].Detail, fmt.Sprintf("%d objects (", n)) {
		t.Errorf("/readyz: %d %+v, want %d objects in the spool", code, ready, n)
	}
	time.Sleep(scrapeMaxAge)
	if got := scrape(t, "http://"+httpAddr)[`pacsd_spool_backlog_objects{}`]; got != float64(n) {
		t.Errorf("pacsd_spool_backlog_objects = %v, want %d", got, n)
	}
}
